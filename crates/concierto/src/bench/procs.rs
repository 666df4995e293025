//! The processes `concierto bench` starts: the studio's services as separate
//! processes of this very binary (`serve orchestrator`, `serve admin`,
//! `agent --role ...`), each logging to a file of the bench's folder, their
//! CPU time read from `/proc/<pid>/stat`, stopped with SIGTERM (then SIGKILL)
//! and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// One running `concierto` process.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `exe args...` as `name`, its output in `<dir>/<name>.log`, with
    /// no `CONCIERTO*` variable of the bench's own environment (the bench
    /// chooses every setting) and `env` added.
    pub fn spawn(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, &str)],
        dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating the log file {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CONCIERTO") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} {}", exe.display(), args.join(" ")))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    /// Its name in the bench.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its CPU time so far (user + system) in clock ticks; `None` once it is
    /// gone or where `/proc` cannot be read.
    pub fn cpu_ticks(&self) -> Option<u64> {
        cpu_ticks_of_pid(self.child.as_ref()?.id())
    }

    /// `Some(why)` when it has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{} cannot be waited for: {e}", self.name)),
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then waits up to `within` for it to exit (a clean stop
    /// releases its lease for the next one); SIGKILL past that.
    pub async fn stop(&mut self, within: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(process = %self.name, "did not stop after SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// utime + stime of a `/proc/<pid>/stat` line: fields 14 and 15, counted
/// after the command name (in parentheses, which may itself hold spaces).
/// The CPU time so far of process `pid` (user + system) in clock ticks.
pub fn cpu_ticks_of_pid(pid: u32) -> Option<u64> {
    cpu_ticks_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn cpu_ticks_of(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`) and where the figure came
/// from; 100, Linux's usual value, when `getconf` cannot tell.
pub fn clock_ticks() -> (u64, &'static str) {
    Command::new("getconf")
        .arg("CLK_TCK")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|n: &u64| *n > 0)
        .map_or((100, "assumed (getconf CLK_TCK failed)"), |n| {
            (n, "getconf CLK_TCK")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (con cierto) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    37 5 0 0 20 0 8 0 12345 100000 500 18446744073709551615";
        assert_eq!(cpu_ticks_of(stat), Some(42));
        assert_eq!(cpu_ticks_of("4242 (x) S 1"), None);
        assert_eq!(cpu_ticks_of("garbage"), None);
    }

    #[test]
    fn our_own_cpu_time_reads_from_proc() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks_of(&stat).is_some(), "{stat}");
        let (ticks, _) = clock_ticks();
        assert!(ticks > 0);
    }
}
