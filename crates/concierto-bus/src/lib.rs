//! The Concierto bus: one [`Bus`] trait, two implementations, one conformance
//! suite (`tests/conformance.rs`) run against both.
//!
//! ```text
//!             publish / subscribe / queue groups / request-reply   (core, at most once)
//!  service ──▶ ─────────────────────────────────────────────────▶ service
//!             publish_durable ─▶ stream (TASKS, RESULTS, EVENTS, DEADLETTER)
//!                                  └─▶ durable consumer (one per role, shared by replicas)
//!                                        fetch ─▶ ack | nak(delay) | in_progress | term
//!                                        delivered > max_deliver ─▶ dlq.<subject>
//! ```
//!
//! - [`NatsBus`]: async-nats; JetStream streams and durable pull consumers,
//!   created idempotently at start-up with limits from the configuration.
//! - [`EmbeddedBus`]: in process, same subject syntax and semantics, for
//!   `concierto up` and fast tests; not durable across restarts.
//!
//! Subjects are written without the studio's prefix (`task.content-creator`);
//! the NATS implementation adds it (`concierto.task.content-creator`) so two
//! studios can share a cluster. [`BusExt`] adds typed protobuf helpers; a
//! payload that does not decode is dead-lettered with its reason.

mod bus;
mod durable;
mod embedded;
mod error;
pub mod lease;
mod message;
mod nats;
pub mod observe;
pub mod replica;
pub mod subject;
mod typed;

pub use bus::{
    Acker, Bus, Consumer, ConsumerSpec, DEAD_LETTER_PREFIX, DeadLetters, Delivery, PublishAck,
    RawConsumer, RawDelivery, Retention, Settle, StreamSpec, Subscription, dead_letter_for,
    dead_letter_subject,
};
pub use embedded::EmbeddedBus;
pub use error::{BusError, Result};
pub use lease::{Holder, Lease, LeaseOptions, LeaseStore, MemoryLeases};
pub use message::{
    CONTENT_TYPE, Headers, MSG_ID, Message, Outgoing, TRACEPARENT, protobuf_content_type,
};
pub use nats::{NatsAuth, NatsBus, NatsOptions, NatsTls, redact_url};
pub use replica::{MemoryReplica, ReplicaEntry, ReplicaStore};
pub use typed::{BusExt, ProtoMessage, TypedSubscription, decode, encode};

/// The streams every Concierto studio declares (DESIGN.md section 2), with the
/// given limits applied. Request/reply subjects must stay out of streams: a
/// stream would answer a request with its publish acknowledgement.
pub fn standard_streams(limits: &StreamLimits) -> Vec<StreamSpec> {
    let with = |mut s: StreamSpec| {
        s.max_age = limits.max_age;
        s.max_bytes = limits.max_bytes;
        s.max_msgs = limits.max_msgs;
        s.duplicate_window = limits.duplicate_window;
        s.replicas = limits.replicas.max(1);
        s
    };
    vec![
        with(StreamSpec::new(
            "RUNS",
            &["run.start", "run.start.>"],
            Retention::WorkQueue,
        )),
        with(StreamSpec::new("TASKS", &["task.>"], Retention::WorkQueue)),
        with(StreamSpec::new(
            "RESULTS",
            &["result.>"],
            Retention::WorkQueue,
        )),
        with(StreamSpec::new(
            "EVENTS",
            &[
                "run.event.>",
                "event.>",
                "content.ingested.>",
                "context.>",
                "metric.>",
            ],
            Retention::Limits,
        )),
        with(StreamSpec::new(
            "FEEDBACK",
            &["feedback.in.>"],
            Retention::WorkQueue,
        )),
        with(StreamSpec::new(
            "DELIVERABLES",
            &["deliverable.>"],
            Retention::WorkQueue,
        )),
        with(StreamSpec::new("DEADLETTER", &["dlq.>"], Retention::Limits)),
    ]
}

/// Declares every standard stream on `bus`; safe to call at every start-up and
/// from several processes at once.
pub async fn ensure_standard_streams<B: Bus + ?Sized>(
    bus: &B,
    limits: &StreamLimits,
) -> Result<()> {
    for spec in standard_streams(limits) {
        bus.ensure_stream(&spec).await?;
    }
    Ok(())
}

/// Limits applied to the standard streams (from the `server.bus` section).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimits {
    /// Oldest message kept; zero for none.
    pub max_age: std::time::Duration,
    /// Most bytes per stream; zero for none.
    pub max_bytes: u64,
    /// Most messages per stream; zero for none.
    pub max_msgs: u64,
    /// Deduplication window.
    pub duplicate_window: std::time::Duration,
    /// Copies of every stream on a NATS cluster (`server.bus.replicas`).
    pub replicas: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_age: std::time::Duration::from_secs(7 * 24 * 3600),
            max_bytes: 0,
            max_msgs: 0,
            duplicate_window: std::time::Duration::from_secs(120),
            replicas: 1,
        }
    }
}
