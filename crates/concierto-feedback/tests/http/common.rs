//! A harness: an embedded (or given) bus with the standard streams, a temporary
//! store, a manual clock, and the router served on a free loopback port (with
//! each connection's peer address, as `start` serves it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use concierto_bus::{
    Bus, BusError, Consumer, ConsumerSpec, DeadLetters, EmbeddedBus, Message, Outgoing, PublishAck,
    StreamLimits, StreamSpec, Subscription, ensure_standard_streams,
};
use concierto_core::clock::{Clock, ManualClock};
use concierto_core::store::{KvStore, SledStore};
use concierto_feedback::{FeedbackOptions, FeedbackState, Secret, router};
use concierto_proto::v1::Feedback;

pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const EMAIL_TOKEN: &str = "mail-token-123";
/// 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000;

pub fn options() -> FeedbackOptions {
    FeedbackOptions {
        slack_signing_secret: Some(Secret::from(SLACK_SECRET)),
        email_token: Some(Secret::from(EMAIL_TOKEN)),
        csrf_key: Secret::new(*b"0123456789abcdef0123456789abcdef"),
        ..FeedbackOptions::default()
    }
}

pub fn clock() -> ManualClock {
    ManualClock::new(Utc.timestamp_opt(T0, 0).single().expect("valid time"))
}

pub struct Harness {
    pub base: String,
    pub state: FeedbackState,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<SledStore>,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with(Arc::new(EmbeddedBus::default()), options()).await
    }

    pub async fn with_options(opts: FeedbackOptions) -> Harness {
        Self::with(Arc::new(EmbeddedBus::default()), opts).await
    }

    pub async fn with(bus: Arc<dyn Bus>, opts: FeedbackOptions) -> Harness {
        ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
            .await
            .expect("streams");
        let store = Arc::new(SledStore::temporary().expect("store"));
        let clock = clock();
        let state = FeedbackState::new(
            bus.clone(),
            store.clone() as Arc<dyn KvStore>,
            Arc::new(clock.clone()),
            opts,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Harness {
            base: format!("http://{addr}"),
            state,
            bus,
            store,
            clock,
            http: reqwest::Client::new(),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn stored(&self, id: &str) -> Option<Feedback> {
        concierto_feedback::get(self.store.as_ref(), id).expect("store read")
    }

    pub fn stored_count(&self) -> usize {
        concierto_feedback::list(self.store.as_ref(), 1000)
            .expect("store read")
            .len()
    }

    pub fn pending(&self) -> Vec<String> {
        concierto_feedback::pending(self.store.as_ref()).expect("store read")
    }

    /// Signs `body` as Slack would at the clock's current time.
    pub fn slack_request(&self, path: &str, body: &str) -> reqwest::RequestBuilder {
        let ts = self.clock.now().timestamp().to_string();
        slack_request(&self.http, &self.url(path), &ts, body)
    }
}

pub fn slack_request(
    http: &reqwest::Client,
    url: &str,
    ts: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let sig = concierto_feedback::slack::sign(SLACK_SECRET.as_bytes(), ts, body.as_bytes());
    http.post(url)
        .header("X-Slack-Request-Timestamp", ts)
        .header("X-Slack-Signature", sig)
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

pub fn slack_event(event_id: &str, event: serde_json::Value) -> String {
    serde_json::json!({
        "token": "ignored",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": T0,
        "event": event,
    })
    .to_string()
}

/// A consumer of the whole FEEDBACK stream.
pub async fn feedback_consumer(bus: &dyn Bus, durable: &str) -> Consumer {
    bus.consumer("FEEDBACK", &ConsumerSpec::new(durable, "feedback.in.>"))
        .await
        .expect("consumer")
}

/// What the consumer gets (waiting up to `wait` for the first, then briefly
/// for more), acknowledged, with subjects and message ids.
pub async fn drain(consumer: &Consumer, mut wait: Duration) -> Vec<(Feedback, String, String)> {
    let mut out = Vec::new();
    loop {
        let got = consumer
            .fetch_proto::<Feedback>(16, wait)
            .await
            .expect("fetch");
        if got.is_empty() {
            return out;
        }
        for (fb, d) in got {
            let subject = d.message.subject.clone();
            let id = d.message.msg_id().unwrap_or("").to_string();
            d.ack().await.expect("ack");
            out.push((fb, subject, id));
        }
        wait = Duration::from_millis(100);
    }
}

/// An embedded bus whose durable publishes fail while `failing` is set.
#[derive(Clone)]
pub struct FlakyBus {
    pub inner: EmbeddedBus,
    pub failing: Arc<AtomicBool>,
}

impl FlakyBus {
    pub fn new() -> Self {
        FlakyBus {
            inner: EmbeddedBus::default(),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

#[async_trait]
impl Bus for FlakyBus {
    async fn publish(&self, subject: &str, msg: Outgoing) -> concierto_bus::Result<()> {
        self.inner.publish(subject, msg).await
    }
    async fn subscribe(&self, subject: &str) -> concierto_bus::Result<Subscription> {
        self.inner.subscribe(subject).await
    }
    async fn queue_subscribe(
        &self,
        subject: &str,
        group: &str,
    ) -> concierto_bus::Result<Subscription> {
        self.inner.queue_subscribe(subject, group).await
    }
    async fn request(
        &self,
        subject: &str,
        msg: Outgoing,
        timeout: Duration,
    ) -> concierto_bus::Result<Message> {
        self.inner.request(subject, msg, timeout).await
    }
    async fn respond(&self, reply: &str, msg: Outgoing) -> concierto_bus::Result<()> {
        self.inner.respond(reply, msg).await
    }
    async fn ensure_stream(&self, spec: &StreamSpec) -> concierto_bus::Result<()> {
        self.inner.ensure_stream(spec).await
    }
    async fn publish_durable(
        &self,
        subject: &str,
        msg: Outgoing,
    ) -> concierto_bus::Result<PublishAck> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BusError::Transport("injected failure: bus down".into()));
        }
        self.inner.publish_durable(subject, msg).await
    }
    async fn consumer(&self, stream: &str, spec: &ConsumerSpec) -> concierto_bus::Result<Consumer> {
        self.inner.consumer(stream, spec).await
    }
    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        self.inner.dead_letters()
    }
    async fn flush(&self) -> concierto_bus::Result<()> {
        self.inner.flush().await
    }
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
}
