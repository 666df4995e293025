//! A hook through which telemetry sees the bus without the bus depending on it.
//!
//! The process installs one [`BusObserver`] (the `concierto-telemetry` crate
//! does, at start-up); both implementations then call it on every message:
//!
//! - before sending, [`BusObserver::traceparent`] gives the W3C `traceparent`
//!   of the current span, stamped on the message unless it already carries one,
//!   so trace context crosses services without every call site passing it;
//! - [`BusObserver::published`] and [`BusObserver::received`] count messages by
//!   [`subject_kind`].
//!
//! Without an observer nothing is stamped or counted.

use std::sync::{Arc, OnceLock};

use crate::message::{Outgoing, TRACEPARENT};

/// Sees every message the bus sends or hands out.
pub trait BusObserver: Send + Sync + 'static {
    /// The `traceparent` of the current span, if there is one to propagate.
    fn traceparent(&self) -> Option<String>;
    /// A message was sent on a subject of this kind.
    fn published(&self, kind: &str);
    /// A message of this kind was handed to a subscriber or consumer.
    fn received(&self, kind: &str);
}

static OBSERVER: OnceLock<Arc<dyn BusObserver>> = OnceLock::new();

/// Installs the process's observer. Only the first call takes effect; returns
/// false when one was installed already.
pub fn set_observer(observer: Arc<dyn BusObserver>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// The kind of a subject (given without the studio's prefix), a label of
/// bounded cardinality: its first token, two for `run.start` and `run.event`,
/// `reply` for reply inboxes.
pub fn subject_kind(subject: &str) -> &str {
    if subject.starts_with("_INBOX") {
        return "reply";
    }
    let mut tokens = subject.splitn(3, '.');
    let first = tokens.next().unwrap_or("");
    if first == "run"
        && let Some(second) = tokens.next()
    {
        return &subject[..first.len() + 1 + second.len()];
    }
    first
}

/// Stamps the current trace context (unless `msg` has a `traceparent`) and
/// counts the publish.
pub(crate) fn outgoing(subject: &str, msg: &mut Outgoing) {
    let Some(o) = OBSERVER.get() else {
        return;
    };
    if msg.headers.get(TRACEPARENT).is_none()
        && let Some(tp) = o.traceparent()
    {
        msg.headers.insert(TRACEPARENT, tp);
    }
    o.published(subject_kind(subject));
}

/// Counts a message handed out.
pub(crate) fn incoming(subject: &str) {
    if let Some(o) = OBSERVER.get() {
        o.received(subject_kind(subject));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_bounded() {
        assert_eq!(subject_kind("task.content-creator"), "task");
        assert_eq!(subject_kind("result.brand-guardian"), "result");
        assert_eq!(subject_kind("run.start"), "run.start");
        assert_eq!(
            subject_kind("run.event.daily@2025-01-01T00:00:00Z"),
            "run.event"
        );
        assert_eq!(subject_kind("run"), "run");
        assert_eq!(subject_kind("_INBOX.abc.def"), "reply");
        assert_eq!(subject_kind("agent.heartbeat.x.y"), "agent");
        assert_eq!(subject_kind(""), "");
    }
}
