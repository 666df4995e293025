//! The dashboard as a control room, in a real headless browser (issue 16's
//! acceptance test): `concierto up` on a fresh data folder with a copy of the
//! example studio (its sample content included) plus one workflow whose
//! second step runs a program that fails until a file exists; `up` runs on a
//! real nats-server (`--nats`) so the test can dead-letter a message. Then
//! `tests/browser/control_room.mjs` (playwright-core driving /usr/bin/chromium)
//! signs in through the first-run link `up` printed, sees the sample items
//! with their palettes, starts a run with a brief from the runs page and sees
//! it appear live in a second tab's runs list, opens its step outputs,
//! retries the failed run from its failed step, pauses and resumes a trigger,
//! decides the retried run's gate at a 390×844 viewport and replays a dead
//! letter. Screenshots go to `$CONCIERTO_ARTIFACTS` (default
//! `target/artifacts/control-room/`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concierto_e2e::concierto_bin;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::NatsServer;
use tonic::transport::Channel;

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "data" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn insert_after(text: &mut String, anchor: &str, add: &str) {
    let at = text
        .find(anchor)
        .unwrap_or_else(|| panic!("the example studio has no line {anchor:?}"))
        + anchor.len();
    text.insert_str(at, add);
}

/// The example studio with its sample content, plus `launch-check`: a draft
/// by content-creator (builtin), then `launch-checker`, a program that fails
/// until `marker` exists, whose output opens the creative review gate.
fn write_studio(dir: &Path, marker: &Path) -> PathBuf {
    let studio = dir.join("studio");
    copy_dir(&root().join("examples/studio"), &studio);
    let file = studio.join("concierto.yaml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    let check = format!(
        "test -f '{}' && echo 'Launch checklist passed: ready to publish.' || {{ echo 'the launch checklist is not there yet' >&2; exit 1; }}",
        marker.display()
    );
    insert_after(
        &mut text,
        "    builtin: { kind: builtin }\n",
        &format!(
            "    flaky: {{ kind: command, command: [\"sh\", \"-c\", {}] }}\n",
            serde_json::to_string(&check).unwrap()
        ),
    );
    insert_after(
        &mut text,
        "  roles:                            # per-role overrides; every key must be a role defined in the role files\n",
        "    launch-checker: { executor: flaky }\n",
    );
    insert_after(
        &mut text,
        "\nworkflows:\n",
        r#"  launch-check:
    description: "Draft the launch post, then run the launch checklist; the creative director approves."
    steps:
      - id: draft
        role: content-creator
        task: "Write the launch post for the spring campaign."
        inputs: [trigger]
        timeout: "1 minute"
        review: none
      - id: check
        role: launch-checker
        task: "Run the launch checklist on the draft."
        inputs: [draft]
        timeout: "1 minute"
        retries: 0
        labels: [campaign_launch]
"#,
    );
    std::fs::write(&file, text).unwrap();
    std::fs::write(
        studio.join("agents/launch-checker.md"),
        "---\nname: launch-checker\ndescription: Runs the launch checklist on a draft.\ntools: Read\n---\nYou run the launch checklist.\n",
    )
    .unwrap();
    file
}

/// `concierto up`, killed when dropped.
struct Up {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Up {
    fn log(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for<T, F, Fut>(up: &Up, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
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

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn run_state(
    admin: &AdminServiceClient<Channel>,
    token: &str,
    id: &str,
) -> Option<v1::RunState> {
    let mut a = admin.clone();
    a.get_run(authed(token, v1::GetRunRequest { run_id: id.into() }))
        .await
        .ok()?
        .into_inner()
        .run
        .map(|r| r.state())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_studio_is_run_from_the_dashboard() {
    let playwright = root().join(".ci/node/node_modules/playwright-core/package.json");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it with `apt-get install -y chromium` (./test.sh does)"
    );
    assert!(
        playwright.exists(),
        "playwright-core is missing: run `npm ci` in .ci/node (./test.sh does)"
    );

    let nats = NatsServer::start().expect("nats-server starts");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("launch-checklist.txt");
    let studio = write_studio(dir.path(), &marker);
    let port = || format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let (grpc, http, library, dashboard, metrics) = (port(), port(), port(), port(), port());
    let (out, err) = (dir.path().join("up.out"), dir.path().join("up.err"));
    let child = Command::new(concierto_bin())
        .arg("up")
        .arg(&studio)
        .arg("--nats")
        .arg(nats.url())
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("CONCIERTO_EXECUTOR")
        .env("CONCIERTO__SERVER__GRPC_ADDR", &grpc)
        .env("CONCIERTO__SERVER__HTTP_ADDR", &http)
        .env("CONCIERTO__SERVER__LIBRARY_ADDR", &library)
        .env("CONCIERTO__SERVER__DASHBOARD_ADDR", &dashboard)
        .env("CONCIERTO__SERVER__METRICS_ADDR", &metrics)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("concierto up starts");
    let up = Up { child, out, err };

    // The first-run sign-in link, printed once on stdout.
    let link = wait_for(&up, "the first-run sign-in link", || {
        let out = up.out.clone();
        async move {
            let text = std::fs::read_to_string(out).ok()?;
            text.split_whitespace()
                .find(|w| w.starts_with("http://") && w.contains("/login#token="))
                .map(str::to_string)
        }
    })
    .await;
    let token = link
        .split_once("#token=")
        .map(|(_, t)| t.to_string())
        .unwrap();
    assert!(
        link.starts_with(&format!("http://{dashboard}/")),
        "the link points at the dashboard: {link}"
    );

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

    // A run that fails at its checklist step (the marker is not there yet).
    admin
        .start_run(authed(
            &token,
            v1::StartRunRequest {
                workflow: "launch-check".into(),
                run_id: "launch-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("the first-run token may start runs");
    wait_for(&up, "launch-1 to fail at its checklist", || {
        let a = admin.clone();
        let token = token.clone();
        async move { (run_state(&a, &token, "launch-1").await? == v1::RunState::Failed).then_some(()) }
    })
    .await;

    // A message no service can read: dead-lettered by the orchestrator.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish(
        "concierto.run.start",
        b"\xff\xfe not a StartRun".as_slice().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_for(&up, "the dead letter", || {
        let mut a = admin.clone();
        let token = token.clone();
        async move {
            let r = a
                .list_dead_letters(authed(&token, v1::ListDeadLettersRequest::default()))
                .await
                .ok()?
                .into_inner();
            (!r.dead_letters.is_empty()).then_some(())
        }
    })
    .await;

    let artifacts = std::env::var_os("CONCIERTO_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/artifacts/control-room"));
    // Screenshots of an earlier run must not pass for this one's.
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/control_room.mjs"))
        .arg(format!("http://{dashboard}"))
        .arg(&link)
        .arg("launch-1")
        .arg(&marker)
        .env("CONCIERTO_ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .expect("the browser script ends within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser script failed ({}):\n{stdout}\n{stderr}\n--- concierto up ---\n{}",
        out.status,
        up.log()
    );
    for shot in [
        "signed-in",
        "library",
        "runs-live",
        "run-outputs",
        "retried",
        "triggers-paused",
        "gate-phone",
        "dead-letters-replayed",
    ] {
        let f = artifacts.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
            "no screenshot {}:\n{stdout}",
            f.display()
        );
    }

    // The retried run went on from its failed step and, its gate approved on
    // the phone, succeeded; the draft was kept from the failed run.
    wait_for(&up, "the retried run to succeed", || {
        let a = admin.clone();
        let token = token.clone();
        async move {
            (run_state(&a, &token, "launch-1~retry1").await? == v1::RunState::Succeeded)
                .then_some(())
        }
    })
    .await;
    let retried = admin
        .get_run(authed(
            &token,
            v1::GetRunRequest {
                run_id: "launch-1~retry1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(retried.retry_of, "launch-1");
    let failed = admin
        .get_run(authed(
            &token,
            v1::GetRunRequest {
                run_id: "launch-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    let draft = |r: &v1::Run| {
        r.steps
            .iter()
            .find(|s| s.step_id == "draft")
            .map(|s| s.output.clone())
            .unwrap()
    };
    assert_eq!(
        draft(&retried),
        draft(&failed),
        "the draft is carried over, not made again"
    );
}
