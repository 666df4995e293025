//! The router's senders against real sockets: a local server speaking Slack's
//! Web API (`chat.postMessage`, JSON, bearer token, `429` with `Retry-After`),
//! and the engine's bounds on what it sends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use concierto_proto::v1;
use concierto_router::engine::{MAX_REPLY_CHARS, Send};
use concierto_router::send::MAX_RETRY_AFTER;
use concierto_router::{Engine, RetryPolicy, Senders, SlackSettings};
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-test-token";

/// What the local Slack answers, in order; then `{"ok": true}`.
#[derive(Clone, Default)]
struct Slack {
    answers: Arc<Mutex<Vec<Response>>>,
    posts: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn post_message(
    State(s): State<Slack>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    s.posts.lock().unwrap().push((auth, body));
    let next = {
        let mut a = s.answers.lock().unwrap();
        if a.is_empty() {
            None
        } else {
            Some(a.remove(0))
        }
    };
    next.unwrap_or_else(|| Json(json!({"ok": true, "ts": "1.5"})).into_response())
}

async fn slack(answers: Vec<Response>) -> (Slack, String) {
    let s = Slack {
        answers: Arc::new(Mutex::new(answers)),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/api/chat.postMessage", axum::routing::post(post_message))
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (s, format!("http://{addr}/api"))
}

fn slack_feedback() -> v1::Feedback {
    v1::Feedback {
        feedback_id: "slack-Ev9".into(),
        channel: v1::FeedbackChannel::Slack as i32,
        text: "The banner is off-brand.".into(),
        metadata: [
            ("slack_channel".into(), "C024BE91L".into()),
            ("slack_ts".into(), "1700000000.000100".into()),
        ]
        .into(),
        ..Default::default()
    }
}

fn slack_senders(api_base: &str) -> Senders {
    Senders::new(
        Some(SlackSettings {
            api_base: api_base.to_string(),
            token: TOKEN.into(),
        }),
        None,
        Duration::from_secs(5),
    )
}

fn send(text: &str) -> Send {
    Send {
        feedback: slack_feedback(),
        text: text.into(),
        attempt: 1,
    }
}

fn limited(retry_after: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", retry_after.to_string())],
        Json(json!({"ok": false, "error": "ratelimited"})),
    )
        .into_response()
}

#[tokio::test]
async fn slack_429_names_its_retry_after_and_the_next_try_goes_in_the_thread() {
    let (s, base) = slack(vec![limited("7"), limited("999999")]).await;
    let senders = slack_senders(&base);

    let err = senders.send(&send("Thanks, fixing it.")).await.unwrap_err();
    assert!(!err.permanent, "{err:?}");
    assert!(err.reason.contains("429"), "{err:?}");
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    // A huge Retry-After is bounded.
    let err = senders.send(&send("Thanks, fixing it.")).await.unwrap_err();
    assert_eq!(err.retry_after, Some(MAX_RETRY_AFTER));

    senders.send(&send("Thanks, fixing it.")).await.unwrap();
    let posts = s.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 3);
    let (auth, body) = &posts[2];
    assert_eq!(auth, &format!("Bearer {TOKEN}"));
    assert_eq!(body["channel"], "C024BE91L");
    assert_eq!(body["thread_ts"], "1700000000.000100");
    assert_eq!(body["text"], "Thanks, fixing it.");
}

#[tokio::test]
async fn slack_refusals_are_permanent_unless_slack_says_try_again() {
    let (_, base) = slack(vec![
        Json(json!({"ok": false, "error": "channel_not_found"})).into_response(),
        Json(json!({"ok": false, "error": "internal_error"})).into_response(),
        (StatusCode::FORBIDDEN, "no").into_response(),
        (StatusCode::OK, "x".repeat(200_000)).into_response(),
    ])
    .await;
    let senders = slack_senders(&base);
    let e = senders.send(&send("hi")).await.unwrap_err();
    assert!(
        e.permanent && e.reason.contains("channel_not_found"),
        "{e:?}"
    );
    let e = senders.send(&send("hi")).await.unwrap_err();
    assert!(!e.permanent && e.reason.contains("internal_error"), "{e:?}");
    let e = senders.send(&send("hi")).await.unwrap_err();
    assert!(e.permanent && e.reason.contains("403"), "{e:?}");
    // An answer far larger than Slack's is not read whole.
    let e = senders.send(&send("hi")).await.unwrap_err();
    assert!(e.reason.contains("bytes"), "{e:?}");
    // Nobody listening: worth a retry, and the error names no URL or token.
    let gone = slack_senders("http://127.0.0.1:9/api");
    let e = gone.send(&send("hi")).await.unwrap_err();
    assert!(!e.permanent, "{e:?}");
    assert!(!e.reason.contains(TOKEN), "{e:?}");
}

#[tokio::test]
async fn a_huge_answer_is_sent_capped() {
    let (s, base) = slack(Vec::new()).await;
    let senders = slack_senders(&base);
    let mut e = Engine::new(Vec::new(), RetryPolicy::default(), 10);
    let now = chrono::Utc::now();
    let huge = "word ".repeat(400_000); // 2 MB
    let run = v1::Run {
        run_id: "feedback:slack-Ev9".into(),
        workflow: "human-feedback".into(),
        state: v1::RunState::Succeeded as i32,
        steps: vec![
            v1::RunStep {
                step_id: "categorise".into(),
                state: v1::StepState::Succeeded as i32,
                output: "{\"category\": \"brand\"}".into(),
                ..Default::default()
            },
            v1::RunStep {
                step_id: "respond-brand-guardian".into(),
                state: v1::StepState::Succeeded as i32,
                output: huge,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    e.on_run(&run, now);
    let fx = e.on_feedback("slack-Ev9", Some(slack_feedback()), now);
    assert_eq!(fx.send.len(), 1);
    senders.send(&fx.send[0]).await.unwrap();
    let posts = s.posts.lock().unwrap().clone();
    let text = posts[0].1["text"].as_str().unwrap().to_string();
    assert_eq!(text.chars().count(), MAX_REPLY_CHARS);
    assert!(text.ends_with('…'));
    // What is stored (and shown by `feedback show`) is the same capped text.
    assert_eq!(e.item("slack-Ev9").unwrap().text, text);
}
