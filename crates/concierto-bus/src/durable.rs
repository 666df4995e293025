//! Durable publishes that ride out a NATS node's death.
//!
//! On a cluster a stream's leader moves when the node leading it dies, and a
//! client connected to that node reconnects to another: for a few seconds a
//! publish finds no leader (no responders, "JetStream temporarily
//! unavailable") or its acknowledgement never comes. Each attempt ends in an
//! [`Attempt`]; what was surely not stored is tried again, and so is what may
//! have been stored when the message carries an id (`Nats-Msg-Id`: the
//! stream's duplicate window stores it once however often it is sent). On a
//! cluster the NATS bus gives every durable message an id ([`fresh_id`]) so
//! that every failure is retried.
//!
//! ```text
//!  attempt ─▶ Stored ─────────────────────────────▶ Ok(ack)
//!          ─▶ NotStored ─┐
//!          ─▶ MaybeStored ─ has an id ─┴─▶ wait 100 ms … 1 s ─▶ attempt (until `retry_for`)
//!          ─▶ Failed / MaybeStored without an id ──▶ Err
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bus::PublishAck;
use crate::error::{BusError, Result};

/// How long a durable publish keeps trying through a leader's move or a
/// reconnection: a stream leader is elected again within a few seconds of a
/// node's death.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(20);

/// The outcome of one attempt at a durable publish.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The stream stored it (or had it already).
    Stored(PublishAck),
    /// Nothing was stored (no stream leader answered, the message never left
    /// this process): trying again is safe.
    NotStored(BusError),
    /// It may have been stored (the acknowledgement was lost): safe to send
    /// again only under the same message id.
    MaybeStored(BusError),
    /// Trying again would fail the same way (no stream for the subject, a
    /// message too large, a refused permission).
    Failed(BusError),
}

/// Runs `attempt` until it stores the message, fails for good, or `retry_for`
/// has passed; `has_id` says whether a message that may have been stored can
/// be sent again.
pub(crate) async fn with_retries<F, Fut>(
    subject: &str,
    has_id: bool,
    retry_for: Duration,
    mut attempt: F,
) -> Result<PublishAck>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut delay = Duration::from_millis(100);
    let mut tries = 0u32;
    loop {
        tries += 1;
        let error = match attempt().await {
            Attempt::Stored(ack) => {
                if tries > 1 {
                    tracing::info!(subject, tries, "durable publish stored after retrying");
                }
                return Ok(ack);
            }
            Attempt::Failed(e) => return Err(e),
            Attempt::MaybeStored(e) if !has_id => return Err(e),
            Attempt::NotStored(e) | Attempt::MaybeStored(e) => e,
        };
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(BusError::Transport(format!(
                "{error} (gave up after {tries} tries in {retry_for:?})"
            )));
        }
        tracing::warn!(subject, tries, error = %error, "durable publish failed; trying again");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// A message id no other message of any process has: a random prefix drawn
/// once per process and a counter.
pub(crate) fn fresh_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        h.finish()
    });
    format!("cz-{prefix:016x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether a JetStream error says that no leader could take the message now
/// (NATS 2.9: "JetStream system temporarily unavailable", code 10008; a
/// stream or cluster "not current" while catching up).
pub(crate) fn leader_away(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("temporarily unavailable")
        || e.contains("10008")
        || e.contains("no suitable peers")
        || e.contains("not current")
        || e.contains("no responders")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ack() -> PublishAck {
        PublishAck {
            stream: "TASKS".into(),
            sequence: 7,
            duplicate: false,
        }
    }

    /// Runs `with_retries` over a scripted series of outcomes; returns the
    /// result and how many attempts were made.
    async fn scripted(has_id: bool, script: Vec<Attempt>) -> (Result<PublishAck>, usize) {
        let script = Mutex::new(script.into_iter());
        let tries = Mutex::new(0usize);
        let result = with_retries("task.x", has_id, RETRY_FOR, || {
            *tries.lock().unwrap() += 1;
            let next =
                script.lock().unwrap().next().unwrap_or_else(|| {
                    Attempt::NotStored(BusError::Transport("leader away".into()))
                });
            async move { next }
        })
        .await;
        let n = *tries.lock().unwrap();
        (result, n)
    }

    fn transport(s: &str) -> BusError {
        BusError::Transport(s.into())
    }

    #[tokio::test(start_paused = true)]
    async fn what_was_not_stored_is_sent_again_until_it_is() {
        let (r, n) = scripted(
            false,
            vec![
                Attempt::NotStored(transport("no leader")),
                Attempt::NotStored(transport("no leader")),
                Attempt::Stored(ack()),
            ],
        )
        .await;
        assert_eq!(r.unwrap(), ack());
        assert_eq!(n, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_acknowledgement_is_retried_only_under_a_message_id() {
        let (r, n) = scripted(
            true,
            vec![
                Attempt::MaybeStored(transport("ack timed out")),
                Attempt::Stored(ack()),
            ],
        )
        .await;
        assert_eq!(r.unwrap(), ack());
        assert_eq!(n, 2);
        let (r, n) = scripted(
            false,
            vec![
                Attempt::MaybeStored(transport("ack timed out")),
                Attempt::Stored(ack()),
            ],
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("ack timed out"));
        assert_eq!(n, 1, "without an id a retry could store it twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_fails_at_once_and_a_lasting_outage_after_the_window() {
        let (r, n) = scripted(true, vec![Attempt::Failed(BusError::NoStream("x".into()))]).await;
        assert!(matches!(r, Err(BusError::NoStream(_))));
        assert_eq!(n, 1);
        let started = tokio::time::Instant::now();
        let (r, n) = scripted(true, Vec::new()).await;
        let err = r.unwrap_err().to_string();
        assert!(err.contains("gave up after"), "{err}");
        assert!(started.elapsed() <= RETRY_FOR, "{:?}", started.elapsed());
        assert!(n > 10, "{n}");
    }

    #[test]
    fn ids_are_distinct_and_leader_trouble_is_recognised() {
        let a = fresh_id();
        let b = fresh_id();
        assert_ne!(a, b);
        assert!(a.starts_with("cz-"));
        assert!(leader_away(
            "JetStream system temporarily unavailable (10008)"
        ));
        assert!(!leader_away("maximum payload exceeded"));
    }
}
