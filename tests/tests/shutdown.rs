//! A stop is bounded. The `concierto` binary as a deployment runs it — `serve
//! orchestrator scheduler admin` and `agent --role content-creator` against a real
//! nats-server — gets SIGTERM:
//!
//! - with NATS gone (killed just before): each process still exits within 10 s of
//!   the signal (Kubernetes' default `terminationGracePeriodSeconds` is 30 s; the
//!   default `--grace` is 8 s), with a non-zero status, and its stderr names what it
//!   could not flush;
//! - while a worker holds a long task: the stop ends at `--grace` with status 1 and
//!   names the worker that did not stop; a second SIGTERM during a stop exits at once
//!   (status 143); with NATS up and nothing in hand the services stop with status 0.
//!
//! "Within 10 s" is the requirement itself, checked against a deadline; no test
//! measures how fast anything is.

mod admin_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use admin_common::{OPS, WORKFLOW, cli, show, stdout, write_studio};
use concierto_e2e::concierto_bin;
use concierto_testkit::{NatsServer, free_port};

/// How long after SIGTERM a process must have exited.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a process may take to start and report ready.
const START: Duration = Duration::from_secs(60);

/// One `concierto` process: its stderr (the logs) in a file, its metrics server on
/// a port of its own.
struct Proc {
    name: String,
    child: Option<Child>,
    stderr: PathBuf,
    metrics: String,
}

impl Proc {
    /// `concierto <args>` with `RUST_LOG=info`, its own metrics address, and `env`.
    fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let metrics = format!("127.0.0.1:{}", free_port().expect("a free port"));
        let stderr = dir.join(format!("{name}.stderr"));
        let out = std::fs::File::create(dir.join(format!("{name}.stdout"))).expect("stdout file");
        let err = std::fs::File::create(&stderr).expect("stderr file");
        let mut cmd = Command::new(concierto_bin());
        // Nothing of the environment the tests run in (a `CONCIERTO_GRACE`, say).
        for (key, _) in std::env::vars() {
            if key.starts_with("CONCIERTO") {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            // Task starts, read below, are logged at debug.
            .env("RUST_LOG", "info,concierto_agent::worker=debug")
            .env("CONCIERTO__SERVER__METRICS_ADDR", &metrics)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", concierto_bin().display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stderr,
            metrics,
        }
    }

    /// What it logged so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends SIGTERM.
    fn sigterm(&self) {
        let child = self.child.as_ref().expect("the process was started");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {}", self.name);
    }

    /// Waits until it exits or `deadline` passes; its status if it exited.
    fn exit_by(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until its `/readyz` answers 2xx (`concierto probe`, the image's check).
    fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.metrics);
        self.wait_for("/readyz to answer 2xx", || {
            Command::new(concierto_bin())
                .args(["probe", &url, "--timeout", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// Polls `ready` every 100 ms until it holds; panics with the log if the process
    /// exits or [`START`] passes first.
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START;
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) waiting for {what}:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {START:?}:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// A nats-server, the admin test studio (`admin_common`), and the admin API's address.
struct Setup {
    nats: NatsServer,
    dir: tempfile::TempDir,
    studio: String,
    admin: String,
}

impl Setup {
    fn new() -> Setup {
        let nats = NatsServer::start().expect("nats-server starts");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let studio = write_studio(dir.path()).display().to_string();
        let admin = format!("127.0.0.1:{}", free_port().expect("a free port"));
        Setup {
            nats,
            dir,
            studio,
            admin,
        }
    }

    /// `concierto serve orchestrator scheduler admin`, ready.
    fn services(&self) -> Proc {
        let data = self.dir.path().join("data").display().to_string();
        let url = self.nats.url();
        let mut p = Proc::spawn(
            self.dir.path(),
            "services",
            &[
                "serve",
                "orchestrator",
                "scheduler",
                "admin",
                "--nats",
                &url,
                "--file",
                &self.studio,
                "--data",
                &data,
            ],
            &[("CONCIERTO__SERVER__GRPC_ADDR", &self.admin)],
        );
        p.wait_ready();
        p
    }

    /// `concierto agent --role content-creator --id <id> [extra]`, ready.
    fn agent(&self, id: &str, extra: &[&str]) -> Proc {
        let url = self.nats.url();
        let mut args = vec![
            "agent",
            "--role",
            "content-creator",
            "--id",
            id,
            "--nats",
            &url,
            "--file",
            &self.studio,
        ];
        args.extend_from_slice(extra);
        let mut p = Proc::spawn(self.dir.path(), &format!("agent-{id}"), &args, &[]);
        p.wait_ready();
        p
    }

    /// Starts a run of the studio's workflow whose task sleeps a minute; its id.
    fn start_slow_run(&self, services: &mut Proc) -> String {
        let admin = self.admin.clone();
        services.wait_for("the admin API and the orchestrator to answer", || {
            cli(&admin, Some(OPS), &["run", "ls"]).status.success()
        });
        let out = cli(
            &self.admin,
            Some(OPS),
            &[
                "run",
                "start",
                WORKFLOW,
                "--param",
                "builtin.sleep_ms=60000",
            ],
        );
        assert!(out.status.success(), "run start: {}", show(&out));
        stdout(&out).trim().to_string()
    }
}

/// Asserts `p` exits by `deadline`; its status.
fn exits_by(p: &mut Proc, deadline: Instant, why: &str) -> ExitStatus {
    match p.exit_by(deadline) {
        Some(status) => status,
        None => panic!(
            "{} still running {STOP_DEADLINE:?} after SIGTERM ({why}):\n{}",
            p.name,
            p.stderr()
        ),
    }
}

#[test]
fn with_nats_gone_sigterm_still_stops_services_and_agent_within_10s_naming_what_was_not_flushed() {
    let mut setup = Setup::new();
    let url = setup.nats.url();
    let mut services = setup.services();
    let mut agent = setup.agent("w", &[]);

    setup.nats.kill();
    services.sigterm();
    agent.sigterm();
    let deadline = Instant::now() + STOP_DEADLINE;

    for p in [&mut services, &mut agent] {
        let status = exits_by(p, deadline, "NATS is gone");
        let log = p.stderr();
        assert!(
            !status.success(),
            "{}: a stop that could not flush must not report success ({status}):\n{log}",
            p.name
        );
        assert!(
            log.contains("concierto: unclean stop: ")
                && log.contains(&format!("flushed to NATS at {url}")),
            "{}: stderr does not name what it could not flush:\n{log}",
            p.name
        );
    }
}

#[test]
fn a_stop_ends_at_the_grace_period_and_a_second_sigterm_ends_it_at_once() {
    let setup = Setup::new();
    let mut services = setup.services();

    // A worker holding a task of a minute, with a grace of 2 s: the stop is cut there,
    // and the worker that did not stop is named.
    let mut short = setup.agent("short-", &["--grace", "2s"]);
    let run = setup.start_slow_run(&mut services);
    let log = short.stderr.clone();
    short.wait_for("the slow task to start", || {
        read(&log)
            .lines()
            .any(|l| l.contains("task started") && l.contains(&run))
    });
    short.sigterm();
    let status = exits_by(&mut short, Instant::now() + STOP_DEADLINE, "--grace 2s");
    let log = short.stderr();
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(
        log.contains("did not stop within the grace period of 2s")
            && log.contains("agent content-creator.short-0"),
        "stderr does not name the worker that did not stop:\n{log}"
    );

    // A worker holding such a task with a grace of a minute is still draining after
    // the first SIGTERM; the second ends it at once.
    let mut long = setup.agent("long-", &["--grace", "60s"]);
    let run = setup.start_slow_run(&mut services);
    let log = long.stderr.clone();
    long.wait_for("a slow task to start", || {
        read(&log).lines().any(|l| l.contains("task started"))
    });
    long.sigterm();
    long.wait_for("the drain to begin", || {
        read(&log)
            .lines()
            .any(|l| l.contains("agent worker draining"))
    });
    assert!(
        long.exited().is_none(),
        "the worker stopped before its task ended (run {run}):\n{}",
        long.stderr()
    );
    long.sigterm();
    let status = exits_by(
        &mut long,
        Instant::now() + STOP_DEADLINE,
        "a second SIGTERM",
    );
    let log = long.stderr();
    assert_eq!(status.code(), Some(143), "{status}:\n{log}");
    assert!(
        log.contains("concierto: SIGTERM again while stopping: exiting at once"),
        "{log}"
    );

    // With NATS up and nothing in hand, the services stop cleanly.
    services.sigterm();
    let status = exits_by(&mut services, Instant::now() + STOP_DEADLINE, "NATS is up");
    assert!(status.success(), "{status}:\n{}", services.stderr());
}

/// A log file's text (empty while it cannot be read).
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
