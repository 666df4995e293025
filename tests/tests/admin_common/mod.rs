//! What the admin API tests share: a studio with people who have tokens, a
//! sandbox running the services with the admin API on a free port, and the
//! `concierto` client commands run as separate processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use concierto_e2e::{Sandbox, concierto_bin};

/// Tokens of the studio's people (the studio holds only their SHA-256).
pub const OPS: &str = "ops-token-0123456789abcdef";
/// A reviewer of the `creative_review` gate.
pub const CREATIVE: &str = "creative-token-0123456789abcdef";
/// A reviewer of no gate of this studio.
pub const BRAND: &str = "brand-token-0123456789abcdef";
/// A token the studio does not know.
pub const BAD: &str = "not-a-known-token";

/// The workflow whose step opens the `creative_review` gate.
pub const WORKFLOW: &str = "campaign";
/// Its one trigger.
pub const TRIGGER: &str = "weekly_campaign";

/// Writes the studio under `dir`: reviewers `ops` (admin), `creative_director`
/// and `brand_manager` (reviewers), the `campaign` workflow whose `draft` step
/// (content-creator, builtin executor) carries the label `campaign_launch`,
/// and the quality gate `creative_review` on that label for the creative director.
pub fn write_studio(dir: &Path) -> PathBuf {
    write_studio_with(dir, None)
}

/// [`write_studio`], its admin API on TLS with this certificate and key (PEM
/// files) when given.
pub fn write_studio_with(dir: &Path, tls: Option<(&Path, &Path)>) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(&studio).unwrap();
    let sha = concierto_admin::token_sha256;
    let server = match tls {
        Some((cert, key)) => format!(
            "server:\n  tls:\n    cert: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Admin API test"
  timezone: "UTC"
{server}agents:
  paths: ["{agents}"]
  default_executor: builtin
reviewers:
  ops:
    name: "Operations"
    roles: [admin]
    token_sha256: "{ops}"
  creative_director:
    name: "Creative Director"
    roles: [reviewer]
    token_sha256: "{creative}"
  brand_manager:
    name: "Brand Manager"
    roles: [reviewer]
    token_sha256: "{brand}"
workflows:
  {WORKFLOW}:
    description: "Draft the campaign launch post; the creative director approves it."
    steps:
      - id: draft
        role: content-creator
        task: "Write the launch post for the spring campaign."
        inputs: [trigger]
        timeout: "30 seconds"
        labels: [campaign_launch]
triggers:
  scheduled:
    - {TRIGGER}:
        time: "Monday 10:00"
        agents: [content-creator]
        workflow: "{WORKFLOW}"
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
            agents = root.join("examples/studio/agents").display(),
            ops = sha(OPS),
            creative = sha(CREATIVE),
            brand = sha(BRAND),
        ),
    )
    .unwrap();
    file
}

/// A sandbox on that studio running `serve orchestrator scheduler admin` (the
/// admin API on a free port) and a content-creator agent; returns it and the
/// admin address (`127.0.0.1:PORT`).
pub fn start_studio() -> (Sandbox, String) {
    start_studio_with(write_studio)
}

/// [`start_studio`] with the studio `write` writes into the sandbox's folder.
pub fn start_studio_with(write: impl FnOnce(&Path) -> PathBuf) -> (Sandbox, String) {
    let port = concierto_testkit::free_port().expect("a free port");
    let addr = format!("127.0.0.1:{port}");
    let mut sb = Sandbox::new(&[("CONCIERTO__SERVER__GRPC_ADDR", addr.as_str())]);
    let studio = write(sb.dir());
    sb.use_studio(studio);
    sb.spawn("services", &["serve", "orchestrator", "scheduler", "admin"]);
    sb.spawn("content-creator", &["agent", "--role", "content-creator"]);
    (sb, addr)
}

/// `concierto args...` as a user runs it against the admin API at `addr`
/// with `token` (`None`: no token), without any `CONCIERTO*` variable of the
/// environment the tests run in.
pub fn cli(addr: &str, token: Option<&str>, args: &[&str]) -> Output {
    cli_at(&format!("http://{addr}"), token, args)
}

/// [`cli`] with the server given as a URL (`https://...`).
pub fn cli_at(server: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(concierto_bin());
    cmd.args(args).env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("CONCIERTO") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CONCIERTO_SERVER", server);
    if let Some(t) = token {
        cmd.env("CONCIERTO_TOKEN", t);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running {}: {e}", concierto_bin().display()))
}

/// The process's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The process's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status and both streams, for a failure message.
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Calls `f` every 200 ms until it gives `Some`, or panics after `within`
/// with `what` and the sandbox's logs.
pub fn poll<T>(sb: &Sandbox, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}\n{}",
            sb.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the admin API answers and the orchestrator behind it does.
pub fn wait_ready(sb: &Sandbox, addr: &str) {
    poll(
        sb,
        Duration::from_secs(60),
        "the admin API and the orchestrator to answer `run ls`",
        || {
            cli(addr, Some(OPS), &["run", "ls"])
                .status
                .success()
                .then_some(())
        },
    );
}
