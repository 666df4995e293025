//! Human feedback end to end: a signed Slack event posted to the feedback
//! service (a separate process) is stored, categorised by the builtin
//! feedback-synthesizer, routed to the brand specialists by the orchestrator
//! at feedback priority, and listed with its routing and first response over
//! the admin gRPC API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use concierto_e2e::{Sandbox, eventually, get_run};
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const OPS: &str = "ops-token-feedback-0123456789";

fn write_studio(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(&studio).unwrap();
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Feedback test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
feedback_loops:
  human_to_agent:
    - feedback_capture:
        channels: ["slack", "email", "web_form"]
        processor: feedback-synthesizer
        action: "route_to_specialists"
progress_metrics:
  system_health:
    - feedback_response_time:
        target: "< 2 hours"
        type: "sla"
        tracker: support-responder
"#,
            agents = root.join("examples/studio/agents").display(),
            ops = concierto_admin::token_sha256(OPS),
        ),
    )
    .unwrap();
    file
}

/// A plain HTTP/1.1 POST (the feedback service is a real HTTP server).
async fn post(addr: &str, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_message_is_categorised_routed_to_the_brand_specialists_and_listed() {
    let http = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let grpc = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let mut sb = Sandbox::new(&[
        ("CONCIERTO__SERVER__HTTP_ADDR", http.as_str()),
        ("CONCIERTO__SERVER__GRPC_ADDR", grpc.as_str()),
        ("SLACK_SIGNING_SECRET", SECRET),
    ]);
    let studio = write_studio(sb.dir());
    sb.use_studio(studio);
    sb.spawn("services", &["serve", "orchestrator", "feedback", "admin"]);
    for role in [
        "feedback-synthesizer",
        "brand-guardian",
        "creative-director",
    ] {
        sb.spawn(role, &["agent", "--role", role]);
    }
    let client = sb.client().await;
    eventually(Duration::from_secs(30), "the feedback service", || async {
        tokio::net::TcpStream::connect(&http).await.ok()
    })
    .await;

    // A signed Slack event, as Slack's Events API sends it.
    let body = serde_json::json!({
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "EvBrand1",
        "event": {
            "type": "app_mention",
            "user": "U2CERLKJA",
            "text": "The new banner uses a neon green that is off-brand and the logo looks stretched.",
            "channel": "C024BE91L",
            "ts": "1700000000.000100"
        }
    })
    .to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = concierto_feedback::slack::sign(SECRET.as_bytes(), &ts, body.as_bytes());
    let headers = [
        ("x-slack-request-timestamp", ts.clone()),
        ("x-slack-signature", sig),
    ];
    let (status, answer) = post(&http, "/slack/events", &headers, &body).await;
    assert_eq!(status, 200, "{answer}\n{}", sb.logs());
    assert!(answer.contains("slack-EvBrand1"), "{answer}");
    // A forged signature is refused and nothing is stored.
    let forged = [
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", "v0=00".to_string()),
    ];
    assert_eq!(post(&http, "/slack/events", &forged, &body).await.0, 401);

    // The feedback run: categorised as brand, routed to its two specialists.
    let run = eventually(
        Duration::from_secs(60),
        "the feedback run to finish",
        || async {
            get_run(&client, "feedback:slack-EvBrand1")
                .await
                .filter(|r| r.state() == v1::RunState::Succeeded)
        },
    )
    .await;
    assert_eq!(run.priority, v1::Priority::Feedback as i32);
    let steps: Vec<(&str, &str)> = run
        .steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.role.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("categorise", "feedback-synthesizer"),
            ("respond-brand-guardian", "brand-guardian"),
            ("respond-creative-director", "creative-director"),
        ],
        "{}",
        sb.logs()
    );
    assert!(
        run.steps[0].output.contains("\"category\": \"brand\""),
        "{}",
        run.steps[0].output
    );

    // The admin API lists it with its routing and first response.
    let mut admin = AdminServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut req = tonic::Request::new(v1::ListFeedbackRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {OPS}").parse().unwrap());
    let list = admin.list_feedback(req).await.unwrap().into_inner();
    let entry = list
        .entries
        .iter()
        .find(|e| {
            e.feedback
                .as_ref()
                .is_some_and(|f| f.feedback_id == "slack-EvBrand1")
        })
        .expect("listed");
    let routed = entry.routed.as_ref().expect("routed");
    assert_eq!(routed.category(), v1::FeedbackCategory::Brand);
    assert_eq!(routed.roles, ["brand-guardian", "creative-director"]);
    assert!(entry.first_response_at.is_some());
    let log = sb.procs_log("services");
    assert!(log.contains("first response to feedback"), "{log}");
}
