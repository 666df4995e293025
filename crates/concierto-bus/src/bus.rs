//! The [`Bus`] trait and the types both implementations share.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use concierto_proto::v1::DeadLetter;
use futures::Stream;

use crate::error::Result;
use crate::message::{Message, Outgoing};

/// Where a stream's messages go once consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// A message is removed once a consumer acknowledges (or terminates) it:
    /// each task is done once.
    WorkQueue,
    /// Messages stay until the stream's limits remove them.
    Limits,
}

/// A durable stream: which subjects it stores and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Logical name (`TASKS`); implementations may qualify it with the prefix.
    pub name: String,
    /// Subjects it stores, without the prefix; wildcards allowed.
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: Retention,
    /// Oldest message kept; zero for no limit.
    pub max_age: Duration,
    /// Most messages kept; zero for no limit.
    pub max_msgs: u64,
    /// Most bytes kept; zero for no limit.
    pub max_bytes: u64,
    /// Window in which a repeated message id is stored once.
    pub duplicate_window: Duration,
    /// Copies kept on a NATS cluster (1 on a single server).
    pub replicas: usize,
}

impl StreamSpec {
    /// A stream with no limits and a two-minute duplicate window.
    pub fn new(name: impl Into<String>, subjects: &[&str], retention: Retention) -> Self {
        StreamSpec {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            retention,
            max_age: Duration::ZERO,
            max_msgs: 0,
            max_bytes: 0,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

/// A durable consumer of a stream, shared by every handle opened with the same
/// name: that is how replicas of an agent role share its work.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSpec {
    /// Durable name (e.g. the role, `content-creator`).
    pub durable: String,
    /// Which of the stream's subjects it takes, without the prefix.
    pub filter: String,
    /// How long a delivered message may stay unacknowledged before it is
    /// delivered again.
    pub ack_wait: Duration,
    /// Deliveries after which a message is dead-lettered instead of delivered.
    pub max_deliver: u64,
    /// Most unacknowledged messages at once across all handles; zero for the
    /// implementation's default.
    pub max_ack_pending: u64,
    /// Messages a handle may pull ahead of `fetch`. Zero: none, every fetch
    /// pulls exactly what it asks for (for workers, which must never hold a task
    /// they cannot start: a held task's `ack_wait` runs). More: NATS keeps one
    /// pull subscription per handle and refills it, which is much cheaper per
    /// message — for consumers that drain what they get at once (the
    /// orchestrator's intake).
    pub prefetch: usize,
    /// Where a consumer created by this call starts: `false`, at the oldest
    /// message the stream holds; `true`, at the next message stored (NATS
    /// `DeliverPolicy::New`), so a new listener does not replay the history.
    /// Only the creation counts: a durable that exists keeps its place.
    pub deliver_new: bool,
}

impl ConsumerSpec {
    /// A consumer with a 30 s `ack_wait` and 5 deliveries at most.
    pub fn new(durable: impl Into<String>, filter: impl Into<String>) -> Self {
        ConsumerSpec {
            durable: durable.into(),
            filter: filter.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 0,
            prefetch: 0,
            deliver_new: false,
        }
    }
}

/// What a durable publish stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAck {
    /// The stream's (logical) name.
    pub stream: String,
    /// Sequence of the stored message (of the first copy, for a duplicate).
    pub sequence: u64,
    /// True when the message id had been seen within the duplicate window: the
    /// message was not stored again.
    pub duplicate: bool,
}

/// Receives dead letters. Both implementations have one; subscriptions and
/// consumers keep a handle to it so that nothing they give up on is lost.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Publishes `letter` on `dlq.<letter.subject>`, durably when a stream
    /// stores that subject.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<()>;
}

/// The message bus: core subjects for events and request/reply, durable streams
/// and shared consumers for work that must survive a crash.
///
/// Subjects are given without the studio's prefix; implementations add it.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes a message to every subscriber of `subject` (at most once).
    async fn publish(&self, subject: &str, msg: Outgoing) -> Result<()>;

    /// Subscribes to `subject` (wildcards allowed).
    async fn subscribe(&self, subject: &str) -> Result<Subscription>;

    /// Subscribes as a member of queue group `group`: each message goes to one
    /// member of the group.
    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription>;

    /// Sends a request and waits for the first reply. Fails fast with
    /// `NoResponders` when nobody listens, and with `Timeout` after `timeout`.
    async fn request(&self, subject: &str, msg: Outgoing, timeout: Duration) -> Result<Message>;

    /// Answers a request: `reply` is the request's `Message::reply`.
    async fn respond(&self, reply: &str, msg: Outgoing) -> Result<()>;

    /// Creates the stream, or brings an existing one to `spec`. Idempotent.
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()>;

    /// Stores a message in the stream that covers `subject` and waits for the
    /// store to acknowledge it. A message whose `Nats-Msg-Id` was seen within the
    /// duplicate window is acknowledged as a duplicate and not stored again.
    /// Core subscribers of `subject` receive it too.
    async fn publish_durable(&self, subject: &str, msg: Outgoing) -> Result<PublishAck>;

    /// Creates (idempotently) a durable consumer on `stream` and opens a handle
    /// on it. Handles opened with the same durable name share its messages.
    async fn consumer(&self, stream: &str, spec: &ConsumerSpec) -> Result<Consumer>;

    /// Where dead letters go.
    fn dead_letters(&self) -> Arc<dyn DeadLetters>;

    /// Waits until everything published so far has reached the server.
    async fn flush(&self) -> Result<()>;

    /// Up to `max` messages stored in `stream` (a logical name, `DEADLETTER`)
    /// from sequence `from` on, oldest first, with their sequences: for
    /// listing dead letters and replaying them.
    async fn stream_messages(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, crate::Message)>> {
        let _ = (from, max);
        Err(crate::BusError::NotFound(format!(
            "reading stream {stream} on this bus"
        )))
    }

    /// Removes the message `seq` from `stream`; false when there is none.
    async fn delete_stream_message(&self, stream: &str, seq: u64) -> Result<bool> {
        let _ = seq;
        Err(crate::BusError::NotFound(format!(
            "deleting from stream {stream} on this bus"
        )))
    }

    /// The bucket leases are kept in (see [`crate::lease`]): a JetStream KV
    /// bucket on NATS, shared by every process of the studio.
    async fn leases(&self) -> Result<Arc<dyn crate::lease::LeaseStore>> {
        Err(crate::BusError::NotFound(
            "a lease bucket on this bus".into(),
        ))
    }

    /// The replica bucket `name` (see [`crate::replica`]): on NATS the
    /// JetStream KV bucket `<PREFIX>_<name>` with `replicas` copies, shared
    /// by every process of the studio; on the embedded bus a map in memory.
    async fn replica(
        &self,
        name: &str,
        replicas: usize,
    ) -> Result<Arc<dyn crate::replica::ReplicaStore>> {
        let _ = replicas;
        Err(crate::BusError::NotFound(format!(
            "a replica bucket {name} on this bus"
        )))
    }

    /// True for a bus inside this process (the embedded bus): nothing on it
    /// outlives the process or reaches another one, so state is not written
    /// through to it.
    fn in_process(&self) -> bool {
        false
    }

    /// The subject prefix (`concierto.` by default).
    fn prefix(&self) -> &str;
}

/// A stream of messages on a subscription. Ends when the bus closes.
pub struct Subscription {
    pub(crate) inner: Pin<Box<dyn Stream<Item = Message> + Send>>,
    pub(crate) subject: String,
    pub(crate) dead_letters: Arc<dyn DeadLetters>,
}

impl Subscription {
    /// The subject (filter) it was opened with.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The next message, or `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Message> {
        futures::StreamExt::next(self).await
    }

    /// The dead-letter sink of the bus this came from.
    pub fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        self.dead_letters.clone()
    }
}

impl Stream for Subscription {
    type Item = Message;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(m)) = &polled {
            crate::observe::incoming(&m.subject);
        }
        polled
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done: never deliver it again.
    Ack,
    /// Not done: deliver it again, after the delay if given.
    Nak(Option<Duration>),
    /// Still working: restart the `ack_wait` clock.
    InProgress,
    /// Never deliver it again, without success.
    Term,
}

/// Implementation side of a delivery's acknowledgement.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Settles the delivery.
    async fn settle(&self, how: Settle) -> Result<()>;
}

/// Implementation side of a consumer handle.
#[async_trait]
pub trait RawConsumer: Send + Sync {
    /// Up to `max` messages: returns as soon as at least one is there, or empty
    /// after `wait`.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>>;
}

/// What an implementation's consumer hands out.
pub struct RawDelivery {
    /// The message.
    pub message: Message,
    /// Deliveries so far, this one included.
    pub delivered: u64,
    /// Sequence in the stream.
    pub stream_seq: u64,
    /// How to settle it.
    pub acker: Box<dyn Acker>,
}

/// A message from a durable consumer, to be settled exactly once.
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// How many times it has been delivered, this time included (1 the first time).
    pub delivered: u64,
    /// Its sequence in the stream.
    pub stream_seq: u64,
    acker: Box<dyn Acker>,
    consumer: Arc<str>,
    dead_letters: Arc<dyn DeadLetters>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.message.subject)
            .field("delivered", &self.delivered)
            .field("stream_seq", &self.stream_seq)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Done with it: it is not delivered again.
    pub async fn ack(self) -> Result<()> {
        self.acker.settle(Settle::Ack).await
    }

    /// Hands it back to be delivered again, after `delay` if given.
    pub async fn nak(self, delay: Option<Duration>) -> Result<()> {
        self.acker.settle(Settle::Nak(delay)).await
    }

    /// Still working on it: restarts its `ack_wait`.
    pub async fn in_progress(&self) -> Result<()> {
        self.acker.settle(Settle::InProgress).await
    }

    /// Gives up on it for good: it goes to the dead-letter subject with `reason`
    /// and is never delivered again.
    pub async fn term(self, reason: impl Into<String>) -> Result<()> {
        self.term_as(reason.into(), "").await
    }

    /// Like [`Delivery::term`], naming the type the payload was expected to be.
    pub(crate) async fn term_as(self, reason: String, expected_type: &str) -> Result<()> {
        let letter = dead_letter_for(
            &self.message,
            reason,
            self.delivered,
            &self.consumer,
            expected_type,
        );
        self.dead_letters.dead_letter(letter).await?;
        self.acker.settle(Settle::Term).await
    }
}

/// A handle on a durable consumer. Deliveries that have exhausted the consumer's
/// `max_deliver` are dead-lettered here and never handed out.
pub struct Consumer {
    raw: Box<dyn RawConsumer>,
    durable: Arc<str>,
    spec: ConsumerSpec,
    stream: String,
    dead_letters: Arc<dyn DeadLetters>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.stream)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Wraps an implementation's consumer.
    pub fn new(
        raw: Box<dyn RawConsumer>,
        stream: impl Into<String>,
        spec: ConsumerSpec,
        dead_letters: Arc<dyn DeadLetters>,
    ) -> Self {
        Consumer {
            raw,
            durable: Arc::from(spec.durable.as_str()),
            spec,
            stream: stream.into(),
            dead_letters,
        }
    }

    /// The consumer's settings.
    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// Up to `max` deliveries: returns as soon as at least one is there, or an
    /// empty list after `wait`.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = self.raw.fetch(max.max(1), left).await?;
            let mut live = Vec::with_capacity(got.len());
            for raw in got {
                let d = Delivery {
                    message: raw.message,
                    delivered: raw.delivered,
                    stream_seq: raw.stream_seq,
                    acker: raw.acker,
                    consumer: self.durable.clone(),
                    dead_letters: self.dead_letters.clone(),
                };
                if self.spec.max_deliver > 0 && d.delivered > self.spec.max_deliver {
                    let reason = format!(
                        "max_deliver exhausted: delivered {} times to consumer {} without success",
                        d.delivered - 1,
                        self.spec.durable
                    );
                    tracing::warn!(subject = %d.message.subject, %reason, "dead-lettering");
                    d.term(reason).await?;
                } else {
                    crate::observe::incoming(&d.message.subject);
                    live.push(d);
                }
            }
            if !live.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(live);
            }
        }
    }
}

/// Builds the dead letter for a message.
pub fn dead_letter_for(
    msg: &Message,
    reason: String,
    deliveries: u64,
    consumer: &str,
    expected_type: &str,
) -> DeadLetter {
    DeadLetter {
        subject: msg.subject.clone(),
        reason,
        payload: msg.payload.to_vec(),
        headers: msg
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        deliveries,
        consumer: consumer.to_string(),
        expected_type: expected_type.to_string(),
        dead_lettered_at: Some(concierto_proto::time::now()),
    }
}

/// The dead-letter subject for `subject`.
pub fn dead_letter_subject(subject: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}.{subject}")
}

/// Dead letters are published under `dlq.` + the original subject.
pub const DEAD_LETTER_PREFIX: &str = "dlq";

/// Encodes a dead letter as an outgoing message.
pub(crate) fn dead_letter_message(letter: &DeadLetter) -> (String, Outgoing) {
    use prost::{Message as _, Name};
    let subject = dead_letter_subject(&letter.subject);
    let out = Outgoing::new(Bytes::from(letter.encode_to_vec())).header(
        crate::message::CONTENT_TYPE,
        crate::message::protobuf_content_type(&DeadLetter::full_name()),
    );
    (subject, out)
}
