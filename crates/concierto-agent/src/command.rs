//! The `command` executor: runs a local program per task.
//!
//! The program (`command[0]`, with `command[1..]` as arguments) gets the
//! whole prompt as plain text on stdin — the system prompt, a line `---`, then
//! the user message — and answers on stdout. It runs in `working_dir` (else
//! the studio's folder), in a process group of its own, with an environment
//! of its own: nothing of the agent's environment (its API keys, the Slack
//! signing secret, the mail token) but [`BASE_ENV`] (`PATH`, `HOME`, `LANG`,
//! `LC_ALL`, `TZ`, `TMPDIR`) and the names the executor's `env` lists (or maps
//! to `~`), when set; then the values its `env` map sets, and:
//!
//! | variable | value |
//! |---|---|
//! | `CONCIERTO_ROLE` | the role |
//! | `CONCIERTO_TASK_ID`, `CONCIERTO_RUN_ID`, `CONCIERTO_STEP_ID`, `CONCIERTO_ATTEMPT` | the task's identity |
//! | `CONCIERTO_REVIEW_ACTION` | empty, `review`, `revise` or `review_batch` |
//! | `CONCIERTO_MODEL` | the model chosen for the role, when there is one |
//! | `CONCIERTO_TASK_JSON` | the path of a file (mode 0600, in the agent's temporary folder, removed when the program is done) holding the task as JSON: see [`task_json`] |
//!
//! stdin stays the prompt; the JSON is for programs that want the task's
//! parts apart: its params, each input (the step's resolved `context:`
//! included) and what a review asks.
//!
//! | the program | the outcome |
//! |---|---|
//! | exits 0 | `SUCCEEDED` with stdout (`application/json` when it is a JSON object) |
//! | exits 75 (`EX_TEMPFAIL`) | `RETRYABLE` |
//! | exits with another status | `FAILED`, with the last 2 KB of stderr |
//! | is killed by a signal | `RETRYABLE`, naming the signal |
//! | prints more than `max_output_bytes` | its group is killed; `FAILED` |
//! | writes on stderr | only the last 2 KB are kept |
//! | runs past `timeout` | its group is killed; `RETRYABLE` |
//! | cannot be started | `FAILED`, naming the program |
//!
//! `details["exit_status"]` is the exit code, or `signal N`. Tokens are
//! estimated as whitespace-separated words. A program path with a `/` that is
//! relative is taken from the working folder; a bare name is looked up in
//! `PATH`.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use async_trait::async_trait;
use concierto_core::config::ExecutorDef;
use concierto_core::roles::RoleDef;
use concierto_proto::v1::Task;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::AgentError;
use crate::executor::{Executor, Outcome, model_for};
use crate::http::human;
use crate::prompt::{Prompt, answer_outcome, review_action_name, stamp, word_count};

/// The executor's name in results (`Usage.executor`).
pub const COMMAND: &str = "command";

/// `details` key: the exit code, or `signal N`.
pub const DETAIL_EXIT_STATUS: &str = "exit_status";

/// The exit code meaning "try again later" (`EX_TEMPFAIL` of `sysexits.h`).
pub const EX_TEMPFAIL: i32 = 75;

/// The variables of the agent's environment every program gets, when set;
/// others only when the executor's `env` names them.
pub const BASE_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// How much of the end of stderr a failure carries.
const STDERR_TAIL: usize = 2048;

/// Runs a local program per task. See the module documentation.
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    def: ExecutorDef,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

impl CommandExecutor {
    /// For executor `def` of a studio whose folder is `base_dir` (the working
    /// folder when `def` sets none).
    pub fn new(def: &ExecutorDef, base_dir: &Path) -> Result<Self, AgentError> {
        let Some((program, args)) = def.command.split_first() else {
            return Err(AgentError::InvalidExecutor {
                executor: def.name.clone(),
                why: "a command executor needs `command`: the program and its arguments".into(),
            });
        };
        if program.trim().is_empty() {
            return Err(AgentError::InvalidExecutor {
                executor: def.name.clone(),
                why: "its `command` starts with an empty program name".into(),
            });
        }
        let dir = def
            .working_dir
            .clone()
            .unwrap_or_else(|| base_dir.to_path_buf());
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let path = Path::new(program);
        let program = if program.contains('/') && path.is_relative() {
            dir.join(path)
        } else {
            path.to_path_buf()
        };
        Ok(CommandExecutor {
            def: def.clone(),
            program,
            args: args.to_vec(),
            dir,
        })
    }

    /// The definition it was built from.
    pub fn def(&self) -> &ExecutorDef {
        &self.def
    }

    /// The program it runs (absolute when given as a relative path).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The folder it runs in.
    pub fn working_dir(&self) -> &Path {
        &self.dir
    }

    fn command(
        &self,
        role: &RoleDef,
        task: &Task,
        model: &str,
        task_file: &Path,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        // Only what is allowed of the agent's environment: it holds secrets.
        cmd.env_clear();
        let passed = BASE_ENV
            .iter()
            .copied()
            .chain(self.def.pass_env.iter().map(String::as_str));
        for name in passed {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .envs(&self.def.env)
            .env("CONCIERTO_ROLE", &role.name)
            .env("CONCIERTO_TASK_ID", &task.task_id)
            .env("CONCIERTO_RUN_ID", &task.run_id)
            .env("CONCIERTO_STEP_ID", &task.step_id)
            .env("CONCIERTO_ATTEMPT", task.attempt.to_string())
            .env("CONCIERTO_REVIEW_ACTION", review_action_name(task))
            .env(TASK_JSON_ENV, task_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if !model.is_empty() {
            cmd.env("CONCIERTO_MODEL", model);
        }
        cmd
    }

    /// How the program is named in reasons.
    fn shown(&self) -> String {
        self.def
            .command
            .first()
            .cloned()
            .unwrap_or_else(|| self.program.display().to_string())
    }

    async fn run(&self, role: &RoleDef, task: &Task, model: &str, prompt: &str) -> Outcome {
        let shown = self.shown();
        // Removed when dropped, whichever way this returns.
        let task_file = match write_task_json(&role.name, task) {
            Ok(f) => f,
            Err(e) => {
                return Outcome::retryable(format!(
                    "command `{shown}`: cannot write the task's JSON file: {e}"
                ));
            }
        };
        let mut child = match self.command(role, task, model, task_file.path()).spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound if self.program.is_absolute() => {
                        format!("{} does not exist", self.program.display())
                    }
                    std::io::ErrorKind::NotFound => "program not found in PATH".to_string(),
                    std::io::ErrorKind::PermissionDenied => {
                        format!("{} is not executable (chmod +x it)", self.program.display())
                    }
                    _ => e.to_string(),
                };
                return Outcome::failed(format!("cannot run command `{shown}`: {why}"));
            }
        };
        // The child leads its own process group: killing the group kills what
        // it started too. Armed until the child is reaped, so that a cancelled
        // task (this future dropped) leaves nothing running.
        let mut group = GroupKiller(child.id());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let max = self.def.max_output_bytes;
        let pgid = group.0;
        let io = async {
            let write = async {
                if let Some(mut s) = stdin {
                    // A program that does not read its stdin is not an error.
                    let _ = s.write_all(prompt.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            };
            let read = async {
                let read = read_limited(stdout, max).await;
                if read.is_none() {
                    kill_group(pgid);
                }
                read
            };
            let ((), out, err) = tokio::join!(write, read, read_tail(stderr, STDERR_TAIL));
            (out, err, child.wait().await)
        };
        let finished = tokio::time::timeout(self.def.timeout, io).await;
        let (out, err, status) = match finished {
            Ok(done) => {
                // Reaped (or the wait failed): its group id is no longer ours
                // to kill; a group to kill for too much output already was.
                group.disarm();
                done
            }
            Err(_) => {
                group.kill();
                let status = child.wait().await;
                let mut o = Outcome::retryable(format!(
                    "command `{shown}` timed out after {}; it was killed",
                    human(self.def.timeout)
                ));
                if let Ok(status) = status {
                    o.details
                        .insert(DETAIL_EXIT_STATUS.into(), exit_status(status));
                }
                return o;
            }
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                return Outcome::retryable(format!(
                    "command `{shown}`: cannot wait for it to finish: {e}"
                ));
            }
        };
        let mut o = match out {
            None => Outcome::failed(format!(
                "command `{shown}` output exceeded {max} bytes (max_output_bytes); it was killed"
            )),
            Some(stdout) => {
                let stderr = stderr_text(&err);
                match (status.code(), status.signal()) {
                    (Some(0), _) => answer_outcome(task, &String::from_utf8_lossy(&stdout)),
                    (Some(EX_TEMPFAIL), _) => Outcome::retryable(format!(
                        "command `{shown}` exited with status {EX_TEMPFAIL} (EX_TEMPFAIL: try again later): {stderr}"
                    )),
                    (Some(code), _) => Outcome::failed(format!(
                        "command `{shown}` exited with status {code}: {stderr}"
                    )),
                    (None, Some(sig)) => Outcome::retryable(format!(
                        "command `{shown}` was killed by signal {sig} ({}): {stderr}",
                        signal_name(sig)
                    )),
                    (None, None) => Outcome::retryable(format!(
                        "command `{shown}` ended without a status: {stderr}"
                    )),
                }
            }
        };
        o.details
            .insert(DETAIL_EXIT_STATUS.into(), exit_status(status));
        o
    }
}

#[async_trait]
impl Executor for CommandExecutor {
    fn name(&self) -> &str {
        COMMAND
    }

    fn model(&self, role: &RoleDef) -> String {
        model_for(&self.def, role)
    }

    async fn execute(&self, role: &RoleDef, task: &Task) -> Outcome {
        let started = Instant::now();
        let model = model_for(&self.def, role);
        let prompt = Prompt::render(role, task).plain_text();
        let out = self.run(role, task, &model, &prompt).await;
        let tokens = (word_count(&prompt), word_count(&out.output));
        stamp(out, &self.def, &model, tokens, started)
    }
}

/// The variable naming the task's JSON file.
pub const TASK_JSON_ENV: &str = "CONCIERTO_TASK_JSON";

/// The task as the program's JSON file has it:
///
/// ```json
/// {"task_id": "...", "run_id": "...", "step_id": "...", "attempt": 1,
///  "role": "...", "workflow": "...", "instruction": "...", "labels": [],
///  "params": {"brief": "..."},
///  "inputs": [{"name": "metrics", "content": "...", "content_type": "text/markdown"}],
///  "context": [{"kind": "metrics", "names": [], "window": "since last run", ...}],
///  "review": null | {"loop", "round", "subject_step", "draft", "notes", "action", "pass_mark"},
///  "deadline": "2026-03-10T12:10:00Z" | null}
/// ```
pub fn task_json(role: &str, task: &Task) -> serde_json::Value {
    use serde_json::json;
    let mut params: Vec<(&String, &String)> = task.params.iter().collect();
    params.sort();
    let params: serde_json::Map<String, serde_json::Value> = params
        .into_iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "task_id": task.task_id,
        "run_id": task.run_id,
        "step_id": task.step_id,
        "attempt": task.attempt,
        "role": role,
        "workflow": task.workflow,
        "instruction": task.instruction,
        "labels": task.labels,
        "params": params,
        "inputs": task.inputs.iter().map(|i| json!({
            "name": i.name,
            "content": i.content,
            "content_type": i.content_type,
        })).collect::<Vec<_>>(),
        "context": task.context.iter().map(|c| json!({
            "kind": c.kind,
            "names": c.names,
            "window": c.window,
            "workflow": c.workflow,
            "query": c.query,
            "limit": c.limit,
            "max_bytes": c.max_bytes,
        })).collect::<Vec<_>>(),
        "review": task.review.as_ref().map(|r| json!({
            "loop": r.r#loop,
            "round": r.round,
            "subject_step": r.subject_step,
            "draft": r.draft,
            "notes": r.notes,
            "action": review_action_name(task),
            "pass_mark": r.pass_mark,
        })),
        "deadline": task.deadline.as_ref().and_then(|d| {
            chrono::DateTime::from_timestamp(d.seconds, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }),
    })
}

/// Writes [`task_json`] to a new private temporary file.
fn write_task_json(role: &str, task: &Task) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write as _;
    let mut f = tempfile::Builder::new()
        .prefix("concierto-task-")
        .suffix(".json")
        .tempfile()?;
    serde_json::to_writer(&mut f, &task_json(role, task)).map_err(std::io::Error::other)?;
    f.flush()?;
    Ok(f)
}

/// Kills a process group (`kill -KILL -<pgid>`) when dropped, unless
/// disarmed: a cancelled or timed-out task leaves nothing running.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn kill(&mut self) {
        kill_group(self.0.take());
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGKILL to process group `pgid`.
fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid else {
        return;
    };
    let target = format!("-{pgid}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if killed.is_err() {
        // No `kill` program: the shell's builtin.
        let _ = std::process::Command::new("sh")
            .args(["-c", "kill -KILL -- \"$1\"", "sh", &target])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// All of `r`, or `None` when it is longer than `max` bytes (reading stops
/// there).
async fn read_limited(r: Option<impl AsyncRead + Unpin>, max: u64) -> Option<Vec<u8>> {
    let Some(mut r) = r else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return Some(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() as u64 > max {
                    return None;
                }
            }
        }
    }
}

/// The last `keep` bytes of `r`.
async fn read_tail(r: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let Some(mut r) = r else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 2 * keep {
                    out.drain(..out.len() - keep);
                }
            }
        }
    }
}

/// The stderr tail as text for a reason.
fn stderr_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim();
    if text.is_empty() {
        "(no stderr)".to_string()
    } else {
        text.to_string()
    }
}

/// `3`, or `signal 9`.
fn exit_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "unknown".to_string(),
    }
}

/// `SIGKILL` for 9.
fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "a signal",
    }
}
