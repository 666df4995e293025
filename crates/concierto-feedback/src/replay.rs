//! The Slack replay guard, shared by every replica through the bus.
//!
//! A signed Slack request may be replayed within the signature window (five
//! minutes) to any replica behind the intake's address, and each replica may
//! have its own store. So, once a request's signature is verified, a marker
//! is published durably on [`SEEN_SUBJECT`] with the signature as its message
//! id: the stream [`SEEN_STREAM`] stores an id once within its duplicate
//! window, so the publish of a replay is acknowledged as a duplicate — on any
//! replica, on NATS as on the embedded bus — and the request is refused. The
//! stream keeps markers no longer than the window they guard (twice the
//! timestamp tolerance, plus a minute: a request may arrive stamped up to the
//! tolerance ahead of or behind our clock) and at most [`SEEN_MAX_MSGS`] of
//! them.
//!
//! Each replica also remembers what it saw in memory ([`ReplayGuard`]), which
//! refuses a replay to the same replica without a bus call. When the bus does
//! not answer in time, the request is let through on the local guard alone
//! (with a warning): Slack's intake stays up with the bus down, and a replayed
//! event is still stored once per store (its id is the Slack event id).

use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_bus::{Bus, Outgoing, Retention, StreamSpec};
use tokio::sync::OnceCell;

use crate::slack::{ReplayGuard, SlackAuthError};

/// Stream of the markers of Slack requests seen.
pub const SEEN_STREAM: &str = "FEEDBACK_SLACK_SEEN";
/// Subject markers are published on.
pub const SEEN_SUBJECT: &str = "feedback.slack.seen";
/// Most markers the stream keeps.
pub const SEEN_MAX_MSGS: u64 = 1_000_000;

/// The stream of markers for a timestamp tolerance of `tolerance`.
pub fn seen_stream(tolerance: Duration) -> StreamSpec {
    let window = tolerance.saturating_mul(2) + Duration::from_secs(60);
    let mut spec = StreamSpec::new(SEEN_STREAM, &[SEEN_SUBJECT], Retention::Limits);
    spec.max_age = window;
    spec.duplicate_window = window;
    spec.max_msgs = SEEN_MAX_MSGS;
    spec
}

/// The local guard and the shared one.
#[derive(Debug, Default)]
pub(crate) struct SharedReplayGuard {
    local: ReplayGuard,
    declared: OnceCell<()>,
}

impl SharedReplayGuard {
    /// Refuses a request whose signature was seen by this replica or, through
    /// the bus, by another one; records it otherwise. `timeout` bounds the
    /// bus calls.
    pub(crate) async fn check(
        &self,
        bus: &dyn Bus,
        signature: &str,
        ts: i64,
        now: DateTime<Utc>,
        tolerance: Duration,
        timeout: Duration,
    ) -> Result<(), SlackAuthError> {
        self.local.check(signature, ts, now, tolerance)?;
        let key = signature.trim().to_ascii_lowercase();
        let shared = async {
            self.declared
                .get_or_try_init(|| async { bus.ensure_stream(&seen_stream(tolerance)).await })
                .await?;
            let marker = Outgoing::new(Vec::new()).msg_id(format!("slack-{key}"));
            bus.publish_durable(SEEN_SUBJECT, marker).await
        };
        match tokio::time::timeout(timeout, shared).await {
            Ok(Ok(ack)) if ack.duplicate => Err(SlackAuthError::Replay),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the shared Slack replay guard is unavailable; this replica's guard alone decided");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "the shared Slack replay guard did not answer in time; this replica's guard alone decided"
                );
                Ok(())
            }
        }
    }
}
