//! Failed-run notices on Slack: a `concierto.v1.RunFailed` the orchestrator
//! publishes durably on `event.run.failed` (a run failed and its workflow has
//! no `on_failure` path, so nothing in the studio handles it) becomes a direct
//! message to each of the studio's escalation contacts: every reviewer named in
//! any reviewer's `escalation` list ([`crate::notify::failure_contacts_of`]).
//!
//! ```text
//!  event.run.failed (stream EVENTS, message id = run id)
//!     │ durable consumer `feedback-run-failed`, shared by the feedback
//!     │ replicas; created at the next message (no replay of old failures)
//!     ▼
//!  run already told? (store tree `run_failed_notices`) ── yes ─▶ ack
//!     │ no
//!     ▼
//!  each contact with a Slack id not yet told of this run:
//!    "Run `r-1` of workflow daily failed at step draft (content-creator): …
//!     Retry it from the failed step: `concierto run retry r-1` …"
//!     ├ sent ─▶ recorded for (run, contact)
//!     └ Slack down (5xx, 429, no answer, after the notifier's retries)
//!          ─▶ nak: again after `redeliver_after`; after 5 deliveries the
//!             notice is dead-lettered (and the dead-letter alert fires)
//!     ▼
//!  the run recorded as told, ack
//! ```
//!
//! So each contact hears of a run once, across redeliveries, restarts and
//! replicas (the records are in the feedback service's store). A refusal by
//! Slack (`channel_not_found`, …) is logged and not retried. Records older
//! than [`KEEP_RECORDS`] are dropped when the notifier starts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use concierto_bus::{Bus, ConsumerSpec, Delivery, StreamLimits, standard_streams};
use concierto_core::clock::SharedClock;
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, Op};
use concierto_core::subjects;
use concierto_proto::v1;

use crate::FeedbackError;
use crate::notify::{Notification, Notifier, NotifyError};

/// The stream `event.run.failed` is stored in.
pub const STREAM: &str = "EVENTS";
/// Durable name of the consumer, shared by feedback replicas.
pub const DURABLE: &str = "feedback-run-failed";
/// Store tree of the notices sent: `<run id>` once every contact was told,
/// `<run id>\x1f<contact>` per contact told; values are the time (ms, big-endian).
pub const TREE: &str = "run_failed_notices";
/// How long the records are kept (30 days): long past any redelivery.
pub const KEEP_RECORDS: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest name (run id, workflow, step, role) quoted in a message.
const MAX_NAME_CHARS: usize = 200;
/// Longest error quoted in a message.
const MAX_ERROR_CHARS: usize = 500;
/// Deliveries of one notice before it is dead-lettered.
const MAX_DELIVER: u64 = 5;
/// Separates a run id from a contact in a record key (ids never hold it).
const SEP: u8 = 0x1f;

fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    // Slack mrkdwn: no links or mentions from names or errors.
    out.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A name in backticks (a backtick in it would end the code span).
fn code(s: &str) -> String {
    format!("`{}`", clip(s, MAX_NAME_CHARS).replace('`', "'"))
}

/// The text every contact gets for `ev`.
pub fn failure_text(ev: &v1::RunFailed) -> String {
    let mut at = String::new();
    if !ev.step_id.is_empty() {
        at = format!(" at step {}", code(&ev.step_id));
        if !ev.role.is_empty() {
            at.push_str(&format!(" ({})", clip(&ev.role, MAX_NAME_CHARS)));
        }
    }
    let when = ev
        .at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map_or(String::new(), |d| {
            format!(" at {}", d.to_rfc3339_opts(SecondsFormat::Secs, true))
        });
    let trigger = if ev.trigger.is_empty() {
        String::new()
    } else {
        format!(", started by trigger {}", code(&ev.trigger))
    };
    let error = ev.error.trim();
    let error = if error.is_empty() {
        "(no error given)".to_string()
    } else {
        clip(error, MAX_ERROR_CHARS)
    };
    let id = code(&ev.run_id);
    let bare = clip(&ev.run_id, MAX_NAME_CHARS).replace('`', "'");
    format!(
        "Run {id} of workflow {}{trigger} failed{at}{when}: {error}\n\
         Its workflow has no `on_failure` path, so nothing else handles it. \
         Retry it from the failed step: `concierto run retry {bare}` \
         (from the start: `concierto run retry {bare} --from-start`); \
         details: `concierto run show {bare}`.",
        code(&ev.workflow),
    )
}

/// One message of [`failure_text`] per escalation contact, each once.
pub fn failure_messages(notifier: &Notifier, ev: &v1::RunFailed) -> Vec<Notification> {
    let contacts = notifier.recipients().get().failure_contacts.clone();
    let text = failure_text(ev);
    let mut seen: Vec<&str> = Vec::new();
    contacts
        .iter()
        .filter(|c| {
            let new = !c.is_empty() && !seen.contains(&c.as_str());
            if new {
                seen.push(c);
            }
            new
        })
        .map(|c| notifier.to(c, text.clone()))
        .collect()
}

fn run_key(run_id: &str) -> Vec<u8> {
    run_id.as_bytes().to_vec()
}

fn contact_key(run_id: &str, contact: &str) -> Vec<u8> {
    let mut k = run_id.as_bytes().to_vec();
    k.push(SEP);
    k.extend_from_slice(contact.as_bytes());
    k
}

fn millis(t: DateTime<Utc>) -> Vec<u8> {
    t.timestamp_millis().to_be_bytes().to_vec()
}

/// Drops records older than [`KEEP_RECORDS`]; returns how many.
pub fn prune(store: &dyn KvStore, now: DateTime<Utc>) -> Result<usize, FeedbackError> {
    let keep_ms = i64::try_from(KEEP_RECORDS.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now.timestamp_millis().saturating_sub(keep_ms);
    let old: Vec<Op> = store
        .scan_prefix(TREE, b"")?
        .into_iter()
        .filter(|(_, v)| {
            <[u8; 8]>::try_from(v.as_slice()).map_or(true, |b| i64::from_be_bytes(b) < cutoff)
        })
        .map(|(k, _)| Op::Delete(k))
        .collect();
    let n = old.len();
    if n > 0 {
        store.apply(TREE, old)?;
    }
    Ok(n)
}

/// What became of one notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every contact was told now or before (or has no Slack id, or Slack
    /// refused the message for good): acked.
    Done,
    /// Slack could not be reached for someone: try again later.
    Again,
}

/// Handles one `RunFailed`: tells whoever was not told yet, records each.
pub async fn notify_once(
    notifier: &Notifier,
    store: &dyn KvStore,
    clock: &SharedClock,
    ev: &v1::RunFailed,
    delivery: Option<&Delivery>,
) -> Result<Outcome, FeedbackError> {
    if ev.run_id.is_empty() {
        tracing::warn!("a RunFailed without a run id: nobody told");
        return Ok(Outcome::Done);
    }
    if store.get(TREE, &run_key(&ev.run_id))?.is_some() {
        tracing::debug!(run = %ev.run_id, "failed run already told");
        return Ok(Outcome::Done);
    }
    let messages = failure_messages(notifier, ev);
    if messages.is_empty() {
        tracing::warn!(run = %ev.run_id, workflow = %ev.workflow, "a run failed with no on_failure path and the studio names no escalation contacts (reviewers' `escalation`): nobody was told");
    }
    let mut again = false;
    for n in messages {
        let Some(channel) = &n.channel else {
            tracing::debug!(run = %ev.run_id, person = %n.person, "no Slack id: not told of the failed run");
            continue;
        };
        let key = contact_key(&ev.run_id, &n.person);
        if store.get(TREE, &key)?.is_some() {
            continue;
        }
        if let Some(d) = delivery
            && let Err(e) = d.in_progress().await
        {
            tracing::debug!(error = %e, "could not extend the notice's ack_wait");
        }
        match notifier.post(channel, &n.text).await {
            Ok(()) => {
                store.put(TREE, &key, &millis(clock.now()))?;
                tracing::info!(run = %ev.run_id, person = %n.person, "failed run told on Slack");
            }
            Err(e) if transient(&e) => {
                tracing::warn!(run = %ev.run_id, person = %n.person, error = %e, "failed run not told on Slack; trying again later");
                again = true;
            }
            Err(e) => {
                tracing::warn!(run = %ev.run_id, person = %n.person, error = %e, "failed run not told on Slack");
            }
        }
    }
    if again {
        return Ok(Outcome::Again);
    }
    store.put(TREE, &run_key(&ev.run_id), &millis(clock.now()))?;
    Ok(Outcome::Done)
}

/// Slack may take it later: no answer, a 5xx or 429, a long `Retry-After`.
fn transient(e: &NotifyError) -> bool {
    match e {
        NotifyError::Unreachable(_) | NotifyError::RetryAfterTooLong(_) => true,
        NotifyError::Status { status, .. } => *status == 429 || *status >= 500,
        NotifyError::Refused(_) | NotifyError::BadAnswer(_) => false,
    }
}

/// The consumer's settings: created at the next message, 5 deliveries.
pub fn consumer_spec(notifier: &Notifier) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(DURABLE, subjects::RUN_FAILED);
    spec.max_deliver = MAX_DELIVER;
    spec.deliver_new = true;
    // One message's sends with their retries, with room to spare; each send
    // extends it (`in_progress`).
    let retry = notifier.retry();
    spec.ack_wait = (retry.timeout + retry.max_backoff)
        .saturating_mul(retry.attempts.max(1))
        .max(Duration::from_secs(30));
    spec
}

/// Declares the EVENTS stream, prunes old records, creates the durable
/// consumer (before returning: a failure published afterwards is not missed)
/// and tells each failed run's contacts until stopped.
pub async fn start(
    notifier: Notifier,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    limits: &StreamLimits,
) -> Result<ServiceHandle, FeedbackError> {
    let bus: Arc<dyn Bus> = notifier.bus().clone();
    for spec in standard_streams(limits).iter().filter(|s| s.name == STREAM) {
        bus.ensure_stream(spec).await?;
    }
    match prune(store.as_ref(), clock.now()) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(dropped = n, "old failed-run notice records dropped"),
        Err(e) => tracing::warn!(error = %e, "old failed-run notice records not dropped"),
    }
    let spec = consumer_spec(&notifier);
    let consumer = bus.consumer(STREAM, &spec).await?;
    let redeliver_after = notifier.retry().redeliver_after;
    let (handle, control) = ServiceHandle::new("failed-run-notifier");
    let mut signal = control.signal.clone();
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                _ = signal.stopped() => break,
                got = consumer.fetch_proto::<v1::RunFailed>(8, Duration::from_secs(5)) => got,
            };
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(error = %e, "fetching failed-run notices failed; trying again");
                    tokio::select! {
                        _ = signal.stopped() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            for (ev, d) in got {
                let outcome = tokio::select! {
                    _ = signal.stopped() => None,
                    o = notify_once(&notifier, store.as_ref(), &clock, &ev, Some(&d)) => Some(o),
                };
                let settled = match outcome {
                    // Stopping: redelivered to the next notifier at once.
                    None => d.nak(None).await,
                    Some(Ok(Outcome::Done)) => d.ack().await,
                    Some(Ok(Outcome::Again)) => d.nak(Some(redeliver_after)).await,
                    Some(Err(e)) => {
                        tracing::warn!(run = %ev.run_id, error = %e, "failed-run notice not recorded; trying again later");
                        d.nak(Some(redeliver_after)).await
                    }
                };
                if let Err(e) = settled {
                    tracing::warn!(run = %ev.run_id, error = %e, "could not settle a failed-run notice");
                }
            }
        }
        control.finished(Ok(()));
    });
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_the_run_step_and_error_and_how_to_retry() {
        let ev = v1::RunFailed {
            run_id: "daily@2026-12-06T09:00:00Z".into(),
            workflow: "daily-content".into(),
            trigger: "daily".into(),
            step_id: "draft".into(),
            role: "content-creator".into(),
            error: "model refused: <!channel> quota".into(),
            at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        };
        let t = failure_text(&ev);
        assert!(
            t.starts_with(
                "Run `daily@2026-12-06T09:00:00Z` of workflow `daily-content`, started by trigger `daily` \
                 failed at step `draft` (content-creator) at 2023-11-14T22:13:20Z: model refused: &lt;!channel&gt; quota\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("`concierto run retry daily@2026-12-06T09:00:00Z`"),
            "{t}"
        );
        assert!(!t.contains("<!channel>"), "{t}");
        // Bounded: a huge error is cut.
        let long = v1::RunFailed {
            run_id: "r".into(),
            error: "x".repeat(100_000),
            ..Default::default()
        };
        assert!(failure_text(&long).len() < 2_000);
    }

    #[test]
    fn prune_drops_old_records_only() {
        let store = concierto_core::store::SledStore::temporary().expect("store");
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let old = now - chrono::Duration::days(31);
        store.put(TREE, b"old", &millis(old)).expect("put");
        store.put(TREE, b"young", &millis(now)).expect("put");
        store.put(TREE, b"garbled", b"x").expect("put");
        assert_eq!(prune(&store, now).expect("prune"), 2);
        assert!(store.get(TREE, b"young").expect("get").is_some());
        assert!(store.get(TREE, b"old").expect("get").is_none());
    }
}
