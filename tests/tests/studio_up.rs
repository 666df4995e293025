//! `concierto up` on the example studio, as a user runs it on a fresh clone
//! with no API key: within a demo cycle content-creator drafts, brand-guardian
//! scores the draft (logged), and the run is stored with its review step and
//! verdict (read back over the admin API). Ctrl-C stops it cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concierto_e2e::{concierto_bin, example_studio};
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};

const TOKEN: &str = "up-test-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_drafts_and_brand_guardian_scores_the_draft_with_no_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("up.log");
    let grpc = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let http = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let library = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let metrics = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let mut child = Command::new(concierto_bin())
        .arg("up")
        .arg(example_studio())
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env("CONCIERTO__SERVER__GRPC_ADDR", &grpc)
        .env("CONCIERTO__SERVER__HTTP_ADDR", &http)
        .env("CONCIERTO__SERVER__LIBRARY_ADDR", &library)
        .env("CONCIERTO__SERVER__METRICS_ADDR", &metrics)
        // A token for the brand manager, so the test can read the runs.
        .env(
            "CONCIERTO__REVIEWERS__BRAND_MANAGER__TOKEN_SHA256",
            concierto_admin::token_sha256(TOKEN),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("up.err")).unwrap(),
        ))
        .spawn()
        .expect("concierto up starts");
    let read = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("up.err")).unwrap_or_default()
    };

    // The demo trigger fires every 30 seconds (at :00 and :30).
    let deadline = Instant::now() + Duration::from_secs(75);
    let line = loop {
        let text = read();
        if let Some(l) = text.lines().find(|l| {
            l.contains("review round decided") && l.contains("review_loop=creator_to_reviewer")
        }) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no review within 75 s:\n{text}");
        assert!(child.try_wait().unwrap().is_none(), "up exited:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(line.contains("score="), "{line}");
    let run_id = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("run="))
        .expect("the run is named")
        .to_string();

    // Stored with the run: the draft, the review step and its verdict.
    let mut admin = AdminServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let run = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut req = tonic::Request::new(v1::GetRunRequest {
                run_id: run_id.clone(),
            });
            req.metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
            let run = admin.get_run(req).await.unwrap().into_inner().run.unwrap();
            if run.state() == v1::RunState::Succeeded || Instant::now() > deadline {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(run.state(), v1::RunState::Succeeded, "{run:?}");
    let draft = run
        .steps
        .iter()
        .find(|s| s.step_id == "draft-content")
        .unwrap();
    assert!(
        draft.output.contains("builtin"),
        "the draft says it came from builtin"
    );
    assert!(draft.review_rounds >= 1);
    let review = run
        .steps
        .iter()
        .find(|s| s.step_id == "draft-content/review-1/brand-guardian")
        .expect("the review step is stored");
    let verdict = review.verdict.as_ref().expect("a verdict");
    assert!((0.0..=1.0).contains(&verdict.score));
    assert!(!verdict.notes.is_empty());
    let usage = review.usage.as_ref().unwrap();
    assert_eq!(
        (usage.executor.as_str(), usage.model.as_str()),
        ("builtin", "builtin-v1")
    );
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );

    // The content library's JSON API answers a reviewer (empty: the example's
    // folders do not exist here); its reads need a token.
    let mut s = tokio::net::TcpStream::connect(&library)
        .await
        .expect("library API");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!(
            "GET /api/items HTTP/1.1\r\nhost: {library}\r\nauthorization: Bearer {TOKEN}\r\n\
             connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"total\""), "{answer}");

    // Ctrl-C: a clean stop.
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "up did not stop:\n{}", read());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}\n{}", read());
}
