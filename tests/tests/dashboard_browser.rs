//! The dashboard in a real headless browser (the issue's acceptance test):
//! `concierto up` on a studio made for the test (builtin executors, a
//! workflow whose step opens a quality gate, a reviewer with a token), one
//! finished run and one waiting at its gate, then `tests/browser/dashboard.mjs`
//! (playwright-core driving /usr/bin/chromium) signs in, loads every page,
//! reads the finished run's timeline, approves the gate from its page, sees
//! the run complete, uploads and collects images, and screenshots every page
//! to `$CONCIERTO_ARTIFACTS` (default `target/artifacts/dashboard/`).
//!
//! Needs chromium (`apt-get install -y chromium`) and the CI node modules
//! (`cd .ci/node && npm ci`); without them the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concierto_e2e::concierto_bin;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use tonic::transport::Channel;

const OPS: &str = "ops-token-browser-0123456789";
const DIRECTOR: &str = "director-token-browser-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write_studio(dir: &Path) -> PathBuf {
    let file = dir.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Dashboard browser test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
  default_executor: builtin
reviewers:
  ops: {{ name: "Operations", roles: [admin], token_sha256: "{ops}" }}
  creative_director: {{ name: "Creative Director", roles: [reviewer], token_sha256: "{director}" }}
workflows:
  campaign:
    description: "Draft the launch post; the creative director approves it."
    steps:
      - id: draft
        role: content-creator
        task: "Write the launch post for the spring campaign."
        inputs: [trigger]
        timeout: "30 seconds"
        labels: [campaign_launch]
  digest:
    description: "A short digest, no gate."
    steps:
      - id: write
        role: content-creator
        task: "Write a three-line studio digest."
        inputs: [trigger]
        timeout: "30 seconds"
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
            agents = root().join("examples/studio/agents").display(),
            ops = concierto_admin::token_sha256(OPS),
            director = concierto_admin::token_sha256(DIRECTOR),
        ),
    )
    .unwrap();
    file
}

/// `concierto up`, killed when dropped.
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_token<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {OPS}").parse().unwrap());
    r
}

async fn wait_for<T, F, Fut>(up: &Up, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_run(admin: &mut AdminServiceClient<Channel>, workflow: &str, id: &str) {
    admin
        .start_run(with_token(v1::StartRunRequest {
            workflow: workflow.into(),
            run_id: id.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
}

async fn run_state(admin: &AdminServiceClient<Channel>, id: &str) -> Option<v1::RunState> {
    let mut a = admin.clone();
    a.get_run(with_token(v1::GetRunRequest { run_id: id.into() }))
        .await
        .ok()?
        .into_inner()
        .run
        .map(|r| r.state())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_a_gate_in_the_browser_and_sees_the_run_complete() {
    // What the browser needs, said plainly when it is missing.
    let playwright = root().join(".ci/node/node_modules/playwright-core/package.json");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it with `apt-get install -y chromium` (as .ci/run does)"
    );
    assert!(
        playwright.exists(),
        "playwright-core is missing: run `npm ci` in .ci/node (as .ci/run does)"
    );
    assert!(
        Command::new("node").arg("--version").output().is_ok(),
        "node is missing: install Node.js (`apt-get install -y nodejs`)"
    );

    let dir = tempfile::tempdir().unwrap();
    let studio = write_studio(dir.path());
    let port = || format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let (grpc, http, library, dashboard, metrics) = (port(), port(), port(), port(), port());
    let log = dir.path().join("up.log");
    let child = Command::new(concierto_bin())
        .arg("up")
        .arg(&studio)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env("CONCIERTO__SERVER__GRPC_ADDR", &grpc)
        .env("CONCIERTO__SERVER__HTTP_ADDR", &http)
        .env("CONCIERTO__SERVER__LIBRARY_ADDR", &library)
        .env("CONCIERTO__SERVER__DASHBOARD_ADDR", &dashboard)
        .env("CONCIERTO__SERVER__METRICS_ADDR", &metrics)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("up.err")).unwrap(),
        ))
        .spawn()
        .expect("concierto up starts");
    let up = Up { child, log };

    let mut admin = wait_for(&up, "the admin API", || {
        let grpc = grpc.clone();
        async move {
            AdminServiceClient::connect(format!("http://{grpc}"))
                .await
                .ok()
        }
    })
    .await;
    wait_for(&up, "the dashboard", || {
        let dashboard = dashboard.clone();
        async move { tokio::net::TcpStream::connect(&dashboard).await.ok() }
    })
    .await;

    // One run that finishes, one that waits at the creative director's gate.
    start_run(&mut admin, "digest", "digest-1").await;
    wait_for(&up, "digest-1 to finish", || {
        let a = admin.clone();
        async move { (run_state(&a, "digest-1").await? == v1::RunState::Succeeded).then_some(()) }
    })
    .await;
    start_run(&mut admin, "campaign", "campaign-1").await;
    wait_for(&up, "campaign-1 to wait at its gate", || {
        let a = admin.clone();
        async move {
            (run_state(&a, "campaign-1").await? == v1::RunState::WaitingGate).then_some(())
        }
    })
    .await;

    let artifacts = std::env::var_os("CONCIERTO_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/artifacts/dashboard"));
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/dashboard.mjs"))
        .arg(format!("http://{dashboard}"))
        .arg(DIRECTOR)
        .arg("digest-1")
        .arg("campaign-1")
        .env("CONCIERTO_ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), out)
        .await
        .expect("the browser script ends within 4 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}\n--- concierto up ---\n{}\n{}",
        out.status,
        up.log(),
        std::fs::read_to_string(dir.path().join("up.err")).unwrap_or_default()
    );
    assert!(
        stdout.contains("the gated run campaign-1 completes"),
        "{stdout}"
    );
    for shot in [
        "login",
        "overview",
        "runs",
        "run-finished",
        "gate",
        "run-after-gate",
        "library-collection",
    ] {
        let f = artifacts.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            f.display()
        );
    }
    assert_eq!(
        run_state(&admin, "campaign-1").await,
        Some(v1::RunState::Succeeded)
    );
}
