//! The `command` executor with real programs: shell scripts written into a
//! temporary folder per test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use concierto_agent::{CommandExecutor, Executor, Outcome};
use concierto_core::config::{ExecutorDef, ExecutorKind};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{ReviewAction, ReviewContext, Task, TaskInput, TaskStatus};

fn role() -> RoleDef {
    RoleDef {
        name: "content-creator".into(),
        description: "Writes posts.".into(),
        tools: Vec::new(),
        model: None,
        executor: Some("tool".into()),
        color: None,
        prompt: "You are the studio's content creator.".into(),
        file: PathBuf::from("agents/content-creator.md"),
        line: 2,
    }
}

fn task() -> Task {
    Task {
        task_id: "run-3/draft/2".into(),
        run_id: "run-3".into(),
        step_id: "draft".into(),
        attempt: 2,
        role: "content-creator".into(),
        instruction: "Write a post about refillable glass jars.".into(),
        inputs: vec![
            TaskInput {
                name: "trigger".into(),
                content: "Refill stations doubled this year.".into(),
                content_type: "text/plain".into(),
            },
            TaskInput {
                name: "logo".into(),
                content: "iVBORw0KGgo=".into(),
                content_type: "image/png".into(),
            },
        ],
        ..Default::default()
    }
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn def(command: &[&str]) -> ExecutorDef {
    let mut d = ExecutorDef::new("tool", ExecutorKind::Command);
    d.command = command.iter().map(|s| s.to_string()).collect();
    d
}

async fn run(d: &ExecutorDef, base: &Path, t: &Task) -> Outcome {
    CommandExecutor::new(d, base)
        .expect("executor")
        .execute(&role(), t)
        .await
}

fn assert_status(out: &Outcome, status: TaskStatus) {
    assert_eq!(
        out.status, status,
        "{} / {:?} / {:?}",
        out.error, out.output, out.details
    );
}

/// True when `pid` no longer runs (gone, or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

#[tokio::test]
async fn the_prompt_goes_to_stdin_and_stdout_is_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    script(
        p,
        "echo.sh",
        "cat > stdin.txt\nprintf '# Echo\\n\\n'\ntr 'a-z' 'A-Z' < stdin.txt",
    );
    let mut d = def(&["./echo.sh"]);
    d.model = Some("local-script-v2".into());
    let out = run(&d, p, &task()).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.content_type, "text/markdown");
    assert!(out.output.starts_with("# Echo\n\nYOU ARE THE STUDIO'S CONTENT CREATOR.\n---\nWRITE A POST ABOUT REFILLABLE GLASS JARS."), "{}", out.output);
    let stdin = std::fs::read_to_string(p.join("stdin.txt")).expect("stdin.txt");
    assert!(
        stdin.starts_with(
            "You are the studio's content creator.\n---\nWrite a post about refillable glass jars.\n\n## Input: trigger\n\nRefill stations doubled this year."
        ),
        "{stdin}"
    );
    assert!(stdin.contains("[image: logo, 12 bytes base64]"), "{stdin}");
    assert_eq!(out.details["exit_status"], "0");
    assert_eq!(out.details["executor_name"], "tool");
    assert_eq!(out.usage.executor, "command");
    assert_eq!(out.usage.model, "local-script-v2");
    let words = |s: &str| s.split_whitespace().count() as u64;
    assert_eq!(out.usage.input_tokens, words(&stdin));
    assert_eq!(out.usage.output_tokens, words(&out.output));
}

#[tokio::test]
async fn the_environment_names_the_task_and_the_configured_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    script(
        &work,
        "env.sh",
        r#"cat > /dev/null
printf '{"role": "%s", "task": "%s", "run": "%s", "step": "%s", "attempt": "%s", "action": "%s", "mode": "%s", "pwd": "%s"}\n' \
  "$CONCIERTO_ROLE" "$CONCIERTO_TASK_ID" "$CONCIERTO_RUN_ID" "$CONCIERTO_STEP_ID" \
  "$CONCIERTO_ATTEMPT" "$CONCIERTO_REVIEW_ACTION" "$AGENT_MODE" "$(pwd)""#,
    );
    let mut d = def(&["./env.sh"]);
    d.working_dir = Some(work.clone());
    d.env.insert("AGENT_MODE".into(), "fast".into());
    let mut t = task();
    t.review = Some(ReviewContext {
        draft: "A draft.".into(),
        notes: "Shorter.".into(),
        action: ReviewAction::Revise as i32,
        ..Default::default()
    });
    let out = run(&d, dir.path(), &t).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&out.output).expect("json");
    assert_eq!(v["role"], "content-creator");
    assert_eq!(v["task"], "run-3/draft/2");
    assert_eq!(v["run"], "run-3");
    assert_eq!(v["step"], "draft");
    assert_eq!(v["attempt"], "2");
    assert_eq!(v["action"], "revise");
    assert_eq!(v["mode"], "fast");
    assert_eq!(
        Path::new(v["pwd"].as_str().expect("pwd"))
            .canonicalize()
            .expect("pwd"),
        work.canonicalize().expect("work")
    );
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_the_end_of_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    script(
        dir.path(),
        "fail.sh",
        "cat > /dev/null\nhead -c 5000 /dev/zero | tr '\\0' 'x' >&2\necho >&2\necho 'cannot parse the brief: no audience' >&2\nexit 3",
    );
    let out = run(&def(&["./fail.sh"]), dir.path(), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert_eq!(out.details["exit_status"], "3");
    assert!(
        out.error
            .starts_with("command `./fail.sh` exited with status 3: "),
        "{}",
        out.error
    );
    assert!(
        out.error.ends_with("cannot parse the brief: no audience"),
        "{}",
        out.error
    );
    assert!(
        out.error.len() < 2200,
        "only the last 2 KB: {}",
        out.error.len()
    );
}

#[tokio::test]
async fn exit_75_is_retryable() {
    let dir = tempfile::tempdir().expect("tempdir");
    script(dir.path(), "busy.sh", "echo 'model busy' >&2\nexit 75");
    let out = run(&def(&["./busy.sh"]), dir.path(), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert_eq!(out.details["exit_status"], "75");
    assert!(out.error.contains("EX_TEMPFAIL"), "{}", out.error);
    assert!(out.error.contains("model busy"), "{}", out.error);
}

#[tokio::test]
async fn a_program_killed_by_a_signal_is_retryable() {
    let dir = tempfile::tempdir().expect("tempdir");
    script(dir.path(), "term.sh", "cat > /dev/null\nkill -TERM $$");
    let out = run(&def(&["./term.sh"]), dir.path(), &task()).await;
    assert_status(&out, TaskStatus::Retryable);
    assert_eq!(out.details["exit_status"], "signal 15");
    assert!(out.error.contains("signal 15 (SIGTERM)"), "{}", out.error);
}

#[tokio::test]
async fn a_program_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    script(
        p,
        "hang.sh",
        "echo $$ > script.pid\nsleep 30 &\necho $! > sleep.pid\nwait",
    );
    let mut d = def(&["./hang.sh"]);
    d.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let out = run(&d, p, &task()).await;
    let took = started.elapsed();

    assert_status(&out, TaskStatus::Retryable);
    assert!(out.error.contains("timed out after 300ms"), "{}", out.error);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(out.details["exit_status"], "signal 9");
    let script_pid = read_pid(&p.join("script.pid"));
    let sleep_pid = read_pid(&p.join("sleep.pid"));
    let alive = std::process::Command::new("kill")
        .args(["-0", &script_pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kill -0");
    assert!(!alive.success(), "the script {script_pid} is gone");
    // Its child was killed with the group: gone, or a zombie awaiting init.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !gone(sleep_pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone(sleep_pid), "the script's sleep {sleep_pid} is gone");
}

#[tokio::test]
async fn dropping_the_task_kills_the_program_and_what_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    script(
        p,
        "hang.sh",
        "echo $$ > script.pid\nsleep 30 &\necho $! > sleep.pid\nwait",
    );
    let ex = CommandExecutor::new(&def(&["./hang.sh"]), p).expect("executor");
    let role = role();
    let t = task();
    // The worker drops the future when a task's deadline passes.
    let cut = tokio::time::timeout(Duration::from_millis(300), ex.execute(&role, &t)).await;
    assert!(cut.is_err(), "still running after 300 ms");
    let deadline = Instant::now() + Duration::from_secs(2);
    let pids = [
        read_pid(&p.join("script.pid")),
        read_pid(&p.join("sleep.pid")),
    ];
    while !pids.iter().all(|&pid| gone(pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in pids {
        assert!(gone(pid), "{pid} is gone");
    }
}

#[tokio::test]
async fn more_output_than_max_output_bytes_fails_and_stops_the_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    script(
        dir.path(),
        "chatty.sh",
        "echo $$ > chatty.pid\nexec yes 'many words'",
    );
    let mut d = def(&["./chatty.sh"]);
    d.max_output_bytes = 1000;
    let started = Instant::now();
    let out = run(&d, dir.path(), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert!(
        out.error.contains("output exceeded 1000 bytes"),
        "{}",
        out.error
    );
    assert!(out.output.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(gone(read_pid(&dir.path().join("chatty.pid"))));
}

#[tokio::test]
async fn a_missing_program_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        &def(&["concierto-no-such-program-4f1c", "--json"]),
        dir.path(),
        &task(),
    )
    .await;
    assert_status(&out, TaskStatus::Failed);
    assert!(
        out.error.contains(
            "cannot run command `concierto-no-such-program-4f1c`: program not found in PATH"
        ),
        "{}",
        out.error
    );

    let out = run(&def(&["./bin/missing.sh"]), dir.path(), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert!(out.error.contains("./bin/missing.sh"), "{}", out.error);
    assert!(out.error.contains("does not exist"), "{}", out.error);
}

#[test]
fn relative_programs_with_a_slash_are_taken_from_the_working_folder() {
    let base = Path::new("/srv/studio");
    let ex = CommandExecutor::new(&def(&["./bin/agent", "-q"]), base).expect("executor");
    assert_eq!(ex.program(), Path::new("/srv/studio/./bin/agent"));
    assert_eq!(ex.working_dir(), base);
    let ex = CommandExecutor::new(&def(&["python3", "agent.py"]), base).expect("executor");
    assert_eq!(ex.program(), Path::new("python3"));
    let mut d = def(&["scripts/run.sh"]);
    d.working_dir = Some(PathBuf::from("/opt/tools"));
    let ex = CommandExecutor::new(&d, base).expect("executor");
    assert_eq!(ex.program(), Path::new("/opt/tools/scripts/run.sh"));
    let e = CommandExecutor::new(&def(&[]), base).expect_err("no command");
    assert!(e.to_string().contains("needs `command`"), "{e}");
}

/// The agent's environment holds secrets (API keys, the Slack signing
/// secret): the program gets only `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`,
/// `TMPDIR`, what the executor's `env` lists, what its map sets, and the
/// `CONCIERTO_*` task variables.
#[test]
fn the_program_gets_only_the_allowed_part_of_the_agents_environment() {
    // SAFETY: set before this test starts any thread (its runtime is built
    // below); nextest runs every test in a process of its own.
    unsafe {
        std::env::set_var("CONCIERTO_TEST_FAKE_SIGNING_SECRET", "fake-secret-3f9c1d");
        std::env::set_var("CONCIERTO_TEST_PASSED", "passed-on");
        std::env::set_var("CONCIERTO_TEST_PASSED_BY_MAP", "passed-too");
        std::env::set_var("TZ", "Europe/Lisbon");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = def(&["/usr/bin/env"]);
    d.pass_env = vec![
        "CONCIERTO_TEST_PASSED".into(),
        "CONCIERTO_TEST_PASSED_BY_MAP".into(),
        "CONCIERTO_TEST_NOT_SET".into(),
    ];
    d.env.insert("STUDIO_MODE".into(), "draft".into());
    let out = runtime.block_on(run(&d, dir.path(), &task()));

    assert_status(&out, TaskStatus::Succeeded);
    let vars: Vec<&str> = out.output.lines().collect();
    assert!(
        !out.output.contains("fake-secret-3f9c1d"),
        "the secret reached the program"
    );
    assert!(
        !out.output.contains("CONCIERTO_TEST_FAKE_SIGNING_SECRET"),
        "{vars:?}"
    );
    assert!(
        vars.contains(&"CONCIERTO_TEST_PASSED=passed-on"),
        "{vars:?}"
    );
    assert!(
        vars.contains(&"CONCIERTO_TEST_PASSED_BY_MAP=passed-too"),
        "{vars:?}"
    );
    assert!(vars.contains(&"TZ=Europe/Lisbon"), "{vars:?}");
    assert!(vars.iter().any(|v| v.starts_with("PATH=")), "{vars:?}");
    assert!(vars.contains(&"STUDIO_MODE=draft"), "{vars:?}");
    assert!(vars.contains(&"CONCIERTO_ROLE=content-creator"), "{vars:?}");
    assert!(
        !vars.iter().any(|v| v.starts_with("CONCIERTO_TEST_NOT_SET")),
        "{vars:?}"
    );
    let allowed = |v: &&str| {
        let name = v.split('=').next().unwrap_or_default();
        concierto_agent::BASE_ENV.contains(&name)
            || d.pass_env.iter().any(|p| p == name)
            || d.env.contains_key(name)
            || name.starts_with("CONCIERTO_")
    };
    let others: Vec<&&str> = vars.iter().filter(|v| !allowed(v)).collect();
    assert!(others.is_empty(), "not allowed: {others:?}");
}

/// A program that floods stderr (20 MiB) keeps only its tail in the failure:
/// stderr is read in a bounded buffer, as stdout is bounded by
/// `max_output_bytes`.
#[tokio::test]
async fn a_stderr_flood_is_kept_to_its_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    script(
        dir.path(),
        "noisy.sh",
        "head -c 20971520 /dev/zero | tr '\\0' 'e' >&2\necho 'the last words' >&2\nexit 3",
    );
    let out = run(&def(&["./noisy.sh"]), dir.path(), &task()).await;
    assert_status(&out, TaskStatus::Failed);
    assert!(out.error.ends_with("the last words"), "{}", out.error.len());
    assert!(out.error.len() < 3000, "{} bytes", out.error.len());
}

/// The task as JSON, in the file `CONCIERTO_TASK_JSON` names: params, inputs
/// (a resolved context among them) and the review apart, while stdin stays
/// the prompt; the file is gone once the program is done.
#[tokio::test]
async fn the_task_json_file_holds_params_and_inputs_and_is_removed_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    script(
        p,
        "json.sh",
        "cat > stdin.txt\nprintf '%s' \"$CONCIERTO_TASK_JSON\" > path.txt\ncat \"$CONCIERTO_TASK_JSON\"",
    );
    let mut t = task();
    t.workflow = "daily-content-pipeline".into();
    t.params
        .insert("brief".into(), "Refill week, warm tone".into());
    t.inputs.push(TaskInput {
        name: "metrics".into(),
        content: "### engagement_rate\n- current: 0.04".into(),
        content_type: "text/markdown".into(),
    });
    t.context.push(concierto_proto::v1::ContextRequest {
        kind: "metrics".into(),
        window: "6 hours".into(),
        max_bytes: 4096,
        ..Default::default()
    });
    let out = run(&def(&["./json.sh"]), p, &t).await;

    assert_status(&out, TaskStatus::Succeeded);
    assert_eq!(out.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&out.output).expect("json");
    assert_eq!(v, concierto_agent::task_json("content-creator", &t));
    assert_eq!(v["params"]["brief"], "Refill week, warm tone");
    assert_eq!(v["inputs"][2]["name"], "metrics");
    assert_eq!(v["context"][0]["window"], "6 hours");
    assert_eq!(v["role"], "content-creator");
    let stdin = std::fs::read_to_string(p.join("stdin.txt")).expect("stdin");
    assert!(
        stdin.contains("## Params\n- brief: Refill week, warm tone"),
        "{stdin}"
    );
    let path = std::fs::read_to_string(p.join("path.txt")).expect("path");
    assert!(path.ends_with(".json"), "{path}");
    assert!(!Path::new(&path).exists(), "the task file is removed after");
}
