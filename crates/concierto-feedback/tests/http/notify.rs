//! Gate notifications over real sockets: a local axum server speaking Slack's
//! `chat.postMessage` (it records every request and answers from a script),
//! gate events published by hand on an embedded bus.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use concierto_bus::{Bus, BusExt, EmbeddedBus};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects::gate_event;
use concierto_feedback::notify::{GateNotifications, NotifyError};
use concierto_feedback::{FeedbackOptions, Notifier, NotifyRetry, Person, Secret, start};
use concierto_proto::v1;
use serde_json::{Value, json};

use crate::common::{clock, options};

const TOKEN: &str = "xoxb-test-7c1e-bot-token";
const GATE_ID: &str = "run-42/draft/brand_approval/1";
const DRAFT: &str = "THE SECRET DRAFT OF THE LAUNCH POST";

/// How the mock answers one request.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Ok,
    NotOk(&'static str),
    RateLimited(u64),
    ServerError,
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    auth: String,
    content_type: String,
    pub(crate) channel: String,
    pub(crate) text: String,
    at: Instant,
}

#[derive(Default)]
struct MockState {
    script: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
}

/// Slack's Web API on 127.0.0.1:0; answers `{"ok":true}` once its script is
/// used up. Stopped when dropped.
pub(crate) struct SlackMock {
    pub(crate) base: String,
    state: Arc<MockState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SlackMock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn post_message(
    State(s): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().expect("lock").push(Seen {
        auth: header("authorization"),
        content_type: header("content-type"),
        channel: json["channel"].as_str().unwrap_or("").to_string(),
        text: json["text"].as_str().unwrap_or("").to_string(),
        at: Instant::now(),
    });
    let answer = s
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(Answer::Ok);
    match answer {
        Answer::Ok => axum::Json(json!({"ok": true, "channel": "D1", "ts": "1700000000.000100"}))
            .into_response(),
        Answer::NotOk(error) => axum::Json(json!({"ok": false, "error": error})).into_response(),
        Answer::RateLimited(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", secs.to_string())],
            axum::Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response(),
        Answer::ServerError => {
            (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response()
        }
    }
}

impl SlackMock {
    pub(crate) async fn start(script: Vec<Answer>) -> SlackMock {
        let state = Arc::new(MockState::default());
        state.script.lock().expect("lock").extend(script);
        let app = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackMock {
            base: format!("http://{addr}/api"),
            state,
            server,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Waits (up to 10 s) until `n` requests came in, and returns them.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {n} Slack requests, got {}: {seen:#?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Everything logged on this thread (the test's runtime is single-threaded:
/// the notifier's task logs here too) while the guard lives.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn person(id: &str, name: &str, slack: Option<&str>) -> Person {
    Person {
        id: id.into(),
        name: name.into(),
        slack: slack.map(str::to_string),
    }
}

/// Ana and Bo review; Cy has no Slack id; Dee is the escalation contact.
fn people() -> Vec<Person> {
    vec![
        person("ana", "Ana Ruiz", Some("U0ANA")),
        person("bo", "Bo Chen", Some("U0BO")),
        person("cy", "Cy Park", None),
        person("dee", "Dee Lopez", Some("U0DEE")),
    ]
}

fn escalations() -> HashMap<String, Vec<String>> {
    HashMap::from([("brand_approval".to_string(), vec!["dee".to_string()])])
}

pub(crate) fn fast() -> NotifyRetry {
    NotifyRetry {
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        redeliver_after: Duration::from_millis(100),
    }
}

/// A gate as the orchestrator publishes it, due 2023-11-14T22:13:20Z.
pub(crate) fn gate(id: &str, reviewers: &[&str]) -> v1::Gate {
    v1::Gate {
        request: Some(v1::GateRequest {
            gate_id: id.into(),
            gate: "brand_approval".into(),
            run_id: "run-42".into(),
            step_id: "draft".into(),
            label: "major_brand_changes".into(),
            reviewers: reviewers.iter().map(|s| s.to_string()).collect(),
            summary: "launch / draft (content-creator): output labelled major_brand_changes".into(),
            content: DRAFT.into(),
            opened_at: Some(prost_types::Timestamp {
                seconds: 1_699_996_400,
                nanos: 0,
            }),
            due_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            round: 1,
        }),
        state: v1::GateState::Open as i32,
        ..Default::default()
    }
}

fn decided(mut g: v1::Gate, kind: v1::GateDecisionKind, who: &str, notes: &str) -> v1::Gate {
    g.state = match kind {
        v1::GateDecisionKind::Approve => v1::GateState::Approved,
        v1::GateDecisionKind::Reject => v1::GateState::Rejected,
        _ => v1::GateState::ChangesRequested,
    } as i32;
    g.decisions.push(v1::GateDecision {
        gate_id: g
            .request
            .as_ref()
            .map(|r| r.gate_id.clone())
            .unwrap_or_default(),
        decision: kind as i32,
        reviewer: who.into(),
        notes: notes.into(),
        decided_at: None,
        automatic: false,
    });
    g
}

async fn publish(bus: &EmbeddedBus, kind: &str, g: &v1::Gate) {
    bus.publish_proto(&gate_event(kind), g)
        .await
        .expect("publish");
}

async fn notifier(bus: &EmbeddedBus, slack: &SlackMock) -> ServiceHandle {
    Notifier::new(
        Arc::new(bus.clone()),
        people(),
        escalations(),
        &slack.base,
        Secret::from(TOKEN),
    )
    .expect("notifier")
    .with_retry(fast())
    .start()
    .await
    .expect("start")
}

fn channels(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.channel.as_str()).collect()
}

#[tokio::test]
async fn reviewers_get_opened_reminder_and_decided_with_the_bearer_token() {
    let (logs, _guard) = Logs::capture();
    let slack = SlackMock::start(Vec::new()).await;
    let bus = EmbeddedBus::default();
    let handle = notifier(&bus, &slack).await;

    let g = gate(GATE_ID, &["ana", "bo"]);
    publish(&bus, "opened", &g).await;
    let seen = slack.wait_for(2).await;
    assert_eq!(channels(&seen), ["U0ANA", "U0BO"]);
    let opened = format!(
        "Quality gate brand_approval is waiting for you: launch / draft (content-creator): \
         output labelled major_brand_changes. Decide before 2023-11-14T22:13:20Z: \
         `concierto gate show {GATE_ID}`"
    );
    for s in &seen {
        assert_eq!(s.auth, format!("Bearer {TOKEN}"));
        assert_eq!(s.content_type, "application/json");
        assert_eq!(s.text, opened);
    }

    let mut reminded = g.clone();
    reminded.reminders = 1;
    publish(&bus, "reminder", &reminded).await;
    let seen = slack.wait_for(4).await;
    assert_eq!(channels(&seen[2..]), ["U0ANA", "U0BO"]);
    assert!(
        seen[2]
            .text
            .starts_with("Reminder (1): gate brand_approval is due at 2023-11-14T22:13:20Z"),
        "{}",
        seen[2].text
    );

    let approved = decided(
        g.clone(),
        v1::GateDecisionKind::Approve,
        "ana",
        "on brand, ship it",
    );
    publish(&bus, "decided", &approved).await;
    let seen = slack.wait_for(5).await;
    // Ana decided: only Bo is told.
    assert_eq!(seen[4].channel, "U0BO");
    assert_eq!(
        seen[4].text,
        format!(
            "Gate brand_approval was approved by Ana Ruiz: on brand, ship it\n\
             `concierto gate show {GATE_ID}`"
        )
    );

    let mut auto = decided(
        g,
        v1::GateDecisionKind::Reject,
        "orchestrator",
        "run cancelled",
    );
    auto.decisions[0].automatic = true;
    publish(&bus, "decided", &auto).await;
    let seen = slack.wait_for(7).await;
    assert_eq!(channels(&seen[5..]), ["U0ANA", "U0BO"]);
    assert!(
        seen[5].text.starts_with(
            "Gate brand_approval was automatically rejected (orchestrator): run cancelled"
        ),
        "{}",
        seen[5].text
    );

    assert!(
        seen.iter().all(|s| !s.text.contains(DRAFT)),
        "the draft never goes to Slack"
    );
    assert!(!logs.text().contains(TOKEN), "the token is never logged");
    handle.stop().await.expect("stops");
}

#[tokio::test]
async fn slack_refusal_is_logged_and_the_next_event_still_goes_out() {
    let (logs, _guard) = Logs::capture();
    let slack = SlackMock::start(vec![Answer::NotOk("channel_not_found")]).await;
    let bus = EmbeddedBus::default();
    let handle = notifier(&bus, &slack).await;

    publish(
        &bus,
        "opened",
        &gate("run-1/draft/brand_approval/1", &["ana"]),
    )
    .await;
    publish(
        &bus,
        "opened",
        &gate("run-2/draft/brand_approval/1", &["bo"]),
    )
    .await;
    let seen = slack.wait_for(2).await;
    assert_eq!(
        channels(&seen),
        ["U0ANA", "U0BO"],
        "ok:false is not retried"
    );
    assert!(seen[1].text.contains("run-2/draft/brand_approval/1"));

    let text = logs.text();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("gate notification not sent on Slack"))
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert!(refused[0].contains("channel_not_found"), "{}", refused[0]);
    assert!(
        refused[0].contains("run-1/draft/brand_approval/1"),
        "{}",
        refused[0]
    );
    assert!(!text.contains(TOKEN));
    handle.stop().await.expect("stops");
}

#[tokio::test]
async fn rate_limited_message_is_sent_again_after_retry_after() {
    let slack = SlackMock::start(vec![Answer::RateLimited(1)]).await;
    let bus = EmbeddedBus::default();
    let handle = notifier(&bus, &slack).await;

    publish(&bus, "opened", &gate(GATE_ID, &["ana"])).await;
    let seen = slack.wait_for(2).await;
    assert_eq!(channels(&seen), ["U0ANA", "U0ANA"]);
    assert_eq!(seen[0].text, seen[1].text);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({waited:?})"
    );
    handle.stop().await.expect("stops");
}

#[tokio::test]
async fn server_errors_and_network_failures_are_retried_then_given_up() {
    let slack = SlackMock::start(vec![
        Answer::ServerError,
        Answer::ServerError,
        Answer::ServerError,
        Answer::ServerError,
    ])
    .await;
    let bus = EmbeddedBus::default();
    let handle = notifier(&bus, &slack).await;

    publish(
        &bus,
        "opened",
        &gate("run-1/draft/brand_approval/1", &["ana"]),
    )
    .await;
    publish(
        &bus,
        "opened",
        &gate("run-2/draft/brand_approval/1", &["bo"]),
    )
    .await;
    // Three tries for Ana (all 500), then Bo: one more 500, then sent.
    let seen = slack.wait_for(5).await;
    assert_eq!(channels(&seen), ["U0ANA", "U0ANA", "U0ANA", "U0BO", "U0BO"]);
    handle.stop().await.expect("stops");

    // Nobody listens on a port just freed: every try fails to connect.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let n = Notifier::new(
        Arc::new(bus.clone()),
        people(),
        escalations(),
        &format!("http://{closed}/api"),
        Secret::from(TOKEN),
    )
    .expect("notifier")
    .with_retry(fast());
    let started = Instant::now();
    let err = n.post("U0ANA", "hello").await.expect_err("unreachable");
    assert!(matches!(err, NotifyError::Unreachable(_)), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    // Two backoffs: 10 ms, then 20 ms.
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn people_without_a_slack_id_are_skipped() {
    let (logs, _guard) = Logs::capture();
    let slack = SlackMock::start(Vec::new()).await;
    let bus = EmbeddedBus::default();
    let handle = notifier(&bus, &slack).await;

    publish(
        &bus,
        "opened",
        &gate("run-1/draft/brand_approval/1", &["cy", "nobody"]),
    )
    .await;
    // Events are handled in order: once Bo's arrives, Cy's would have.
    publish(
        &bus,
        "opened",
        &gate("run-2/draft/brand_approval/1", &["bo"]),
    )
    .await;
    let seen = slack.wait_for(1).await;
    assert_eq!(channels(&seen), ["U0BO"]);
    assert!(seen[0].text.contains("run-2/draft/brand_approval/1"));
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("no Slack id") && l.contains("person=cy")),
        "{text}"
    );
    handle.stop().await.expect("stops");
    assert_eq!(slack.seen().len(), 1);
}

#[tokio::test]
async fn escalation_contacts_get_the_escalated_message() {
    let slack = SlackMock::start(Vec::new()).await;
    let bus = EmbeddedBus::default();
    let handle = notifier(&bus, &slack).await;

    let mut g = gate(GATE_ID, &["ana"]);
    g.escalated = true;
    publish(&bus, "escalated", &g).await;
    let seen = slack.wait_for(2).await;
    assert_eq!(channels(&seen), ["U0DEE", "U0ANA"]);
    assert_eq!(
        seen[0].text,
        format!(
            "Gate brand_approval passed its SLA without a decision; you may decide it: \
             `concierto gate approve|reject|request-changes {GATE_ID}` (launch / draft \
             (content-creator): output labelled major_brand_changes)"
        )
    );
    assert_eq!(
        seen[1].text,
        format!(
            "Gate brand_approval passed its SLA without a decision and was escalated to \
             Dee Lopez; you may still decide it: `concierto gate show {GATE_ID}`"
        )
    );

    // Dee decides: Ana is told, Dee is not.
    let rejected = decided(g, v1::GateDecisionKind::Reject, "dee", "off brand");
    publish(&bus, "decided", &rejected).await;
    let seen = slack.wait_for(3).await;
    assert_eq!(seen[2].channel, "U0ANA");
    assert!(
        seen[2]
            .text
            .starts_with("Gate brand_approval was rejected by Dee Lopez: off brand"),
        "{}",
        seen[2].text
    );
    handle.stop().await.expect("stops");
}

#[tokio::test]
async fn two_replicas_send_each_event_once() {
    let slack = SlackMock::start(Vec::new()).await;
    let bus = EmbeddedBus::default();
    let one = notifier(&bus, &slack).await;
    let two = notifier(&bus, &slack).await;

    for i in 0..4 {
        publish(
            &bus,
            "opened",
            &gate(&format!("run-{i}/draft/brand_approval/1"), &["ana"]),
        )
        .await;
    }
    let seen = slack.wait_for(4).await;
    one.stop().await.expect("stops");
    two.stop().await.expect("stops");
    let mut ids: Vec<String> = slack
        .seen()
        .iter()
        .map(|s| {
            s.text
                .split("`concierto gate show ")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches('`')
                .to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        ids,
        (0..4)
            .map(|i| format!("run-{i}/draft/brand_approval/1"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn feedback_service_starts_the_notifier_with_a_bot_token() {
    let slack = SlackMock::start(Vec::new()).await;
    let bus = EmbeddedBus::default();
    let store = Arc::new(SledStore::temporary().expect("store"));
    let opts = FeedbackOptions {
        gate_notifications: GateNotifications {
            slack_bot_token: Some(Secret::from(TOKEN)),
            slack_api_base: slack.base.clone(),
            people: people(),
            escalations: escalations(),
            failure_contacts: Vec::new(),
            retry: fast(),
        },
        ..options()
    };
    let server = start(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(bus.clone()) as Arc<dyn Bus>,
        store as Arc<dyn KvStore>,
        Arc::new(clock()),
        opts,
    )
    .await
    .expect("start");

    publish(&bus, "opened", &gate(GATE_ID, &["bo"])).await;
    let seen = slack.wait_for(1).await;
    assert_eq!(seen[0].channel, "U0BO");
    assert_eq!(seen[0].auth, format!("Bearer {TOKEN}"));
    assert!(
        seen[0]
            .text
            .starts_with("Quality gate brand_approval is waiting for you")
    );
    server.stop().await.expect("stops");
}

#[tokio::test]
async fn feedback_service_without_a_bot_token_only_warns() {
    let (logs, _guard) = Logs::capture();
    let store = Arc::new(SledStore::temporary().expect("store"));
    let server = start(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(EmbeddedBus::default()) as Arc<dyn Bus>,
        store as Arc<dyn KvStore>,
        Arc::new(clock()),
        options(),
    )
    .await
    .expect("start");
    server.stop().await.expect("stops");
    assert!(
        logs.text()
            .contains("no Slack bot token: gate notifications go only to the bus"),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn a_spent_day_budget_is_sent_to_its_owners_on_slack() {
    let slack = SlackMock::start(Vec::new()).await;
    let bus = EmbeddedBus::default();
    let store = Arc::new(SledStore::temporary().expect("store"));
    let opts = FeedbackOptions {
        gate_notifications: GateNotifications {
            slack_bot_token: Some(Secret::from(TOKEN)),
            slack_api_base: slack.base.clone(),
            people: people(),
            escalations: escalations(),
            failure_contacts: Vec::new(),
            retry: fast(),
        },
        ..options()
    };
    let server = start(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(bus.clone()) as Arc<dyn Bus>,
        store as Arc<dyn KvStore>,
        Arc::new(clock()),
        opts,
    )
    .await
    .expect("start");
    // As the orchestrator publishes it: Cy has no Slack id, Ana is named twice.
    let ev = v1::BudgetReached {
        scope: "day".into(),
        limit: "agents.budget.per_day_usd".into(),
        limit_usd: 25.0,
        spent_usd: 25.2,
        day: "2026-12-06".into(),
        owners: vec!["ana".into(), "cy".into(), "ana".into()],
        ..Default::default()
    };
    bus.publish_proto(&concierto_core::subjects::budget_event("day"), &ev)
        .await
        .expect("publish");
    let seen = slack.wait_for(1).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].channel, "U0ANA");
    assert_eq!(seen[0].auth, format!("Bearer {TOKEN}"));
    assert!(
        seen[0]
            .text
            .contains("The day's budget is spent: $25.2000 of $25.0000"),
        "{}",
        seen[0].text
    );
    server.stop().await.expect("stops");
}
