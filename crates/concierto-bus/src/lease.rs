//! Leases: one holder at a time of a named role (the active orchestrator, the
//! active tracker), kept in a revisioned key/value bucket on the bus (a
//! JetStream KV bucket on NATS, a map in the embedded bus) and renewed by its
//! holder.
//!
//! No clock is shared: a contender takes a lease over only after watching its
//! revision stay the same for a whole `ttl` on its own clock, with a
//! compare-and-set on that revision (so two contenders cannot both win), and a
//! holder considers the lease lost, and stops, 5/6 of a `ttl` after it *sent*
//! its last successful renewal (which the bucket stored, and a contender
//! first saw, no earlier than it was sent). The holder's deadline therefore
//! always comes a sixth of a ttl before any contender's, whatever the
//! latencies. A failed renewal is tried again at once (every ttl/20), so a
//! bucket that is away for a leader election of up to about half a ttl costs
//! nothing. A holder that stops cleanly releases the lease (an empty value),
//! which a contender takes at once.
//!
//! A contender can keep its sight of each revision in a shared
//! [`RevisionLog`] (and a watcher can fill it in the background): one that
//! starts contending late then takes a lease that was not renewed for a ttl
//! at once instead of watching a whole ttl more.
//!
//! ```text
//!  contender: get ──▶ none ──▶ create ──────────────────┐
//!              │                                          ▼
//!              └─▶ revision unchanged for ttl ──▶ update(rev) ──▶ holder
//!  holder: update(rev) every ttl/4 ── no success sent within 5/6 ttl ──▶ lost
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::{BusError, Result};

/// A revisioned key/value bucket: what leases are kept in.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// The value and revision of `key`.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>>;
    /// Creates `key`; `None` when it exists already.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>>;
    /// Sets `key` if its revision is still `revision`; `None` when it is not.
    async fn update(&self, key: &str, value: Vec<u8>, revision: u64) -> Result<Option<u64>>;
}

/// Timing of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long a lease nobody renews stays held.
    pub ttl: Duration,
}

impl Default for LeaseOptions {
    /// A 6 s lease: a standby takes over within about 6.5 s of the holder's death.
    fn default() -> Self {
        LeaseOptions {
            ttl: Duration::from_secs(6),
        }
    }
}

impl LeaseOptions {
    fn renew_every(&self) -> Duration {
        self.ttl / 4
    }
    /// After a failed renewal.
    fn retry_every(&self) -> Duration {
        (self.ttl / 20).max(Duration::from_millis(20))
    }
    /// How often a contender looks (a read of one key: cheap).
    pub fn poll_every(&self) -> Duration {
        (self.ttl / 20).max(Duration::from_millis(50))
    }
    /// A holder stops this long after sending its last successful renewal.
    fn self_fence(&self) -> Duration {
        self.ttl * 5 / 6
    }
}

/// When each lease's revision was first seen, by one process: shared by its
/// contenders (and a background watcher) so that a revision's age counts
/// from its first sighting, whoever saw it.
#[derive(Debug, Default)]
pub struct RevisionLog {
    seen: Mutex<HashMap<String, (u64, tokio::time::Instant)>>,
}

impl RevisionLog {
    /// Notes that `name` is at `revision` now; returns when this revision
    /// was first seen.
    pub fn note(&self, name: &str, revision: u64) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match seen.get(name) {
            Some((r, since)) if *r == revision => *since,
            _ => {
                seen.insert(name.to_string(), (revision, now));
                now
            }
        }
    }

    /// How long `name` has been at the revision last noted (`None`: never
    /// noted).
    pub fn unchanged_for(&self, name: &str) -> Option<Duration> {
        let seen = match self.seen.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        seen.get(name).map(|(_, since)| since.elapsed())
    }

    /// Reads every lease in `names` every `every` until dropped, noting
    /// their revisions (a transport error is skipped).
    pub fn watch(
        self: &Arc<Self>,
        store: Arc<dyn LeaseStore>,
        names: Vec<String>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let log = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                for name in &names {
                    if let Ok(Some((_, rev))) = store.get(name).await {
                        let Some(log) = log.upgrade() else { return };
                        log.note(name, rev);
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// Who holds a lease now, as a contender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody.
    Free,
    /// This holder id.
    Held(String),
}

/// A held lease: renewed in the background until dropped or released.
#[derive(Debug)]
pub struct Lease {
    name: String,
    lost: watch::Receiver<bool>,
    valid_until: watch::Receiver<Option<tokio::time::Instant>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True once the lease is lost (another holder took it, or renewals
    /// failed for too long).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Until when this holder may act on the lease: 5/6 of a ttl after it
    /// sent its last successful renewal (`None` once lost or released).
    /// Work that must not outlive the lease ends by then.
    pub fn validity(&self) -> watch::Receiver<Option<tokio::time::Instant>> {
        self.valid_until.clone()
    }

    /// Waits until the lease is lost.
    pub async fn lost(&mut self) {
        while !*self.lost.borrow_and_update() {
            if self.lost.changed().await.is_err() {
                // The renewer ended without saying lost: it was released.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops renewing and gives the lease up so a standby takes it at once.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(r) = self.renewer.take() {
            let _ = r.await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Takes the lease `name` for `holder`, waiting as long as someone else holds
/// it; `waiting` is told who holds it each time that changes (to log it and
/// report not ready). Errors only when the bucket cannot be reached at all at
/// first; later transport errors are retried.
pub async fn acquire(
    store: Arc<dyn LeaseStore>,
    name: &str,
    holder: &str,
    opts: LeaseOptions,
    waiting: impl FnMut(&Holder) + Send,
) -> Result<Lease> {
    let log = RevisionLog::default();
    acquire_noting(store, name, holder, opts, &log, waiting).await
}

/// [`acquire`], with each revision's age counted from its first sighting in
/// `log` (by this call, an earlier one, or a [`RevisionLog::watch`]).
pub async fn acquire_noting(
    store: Arc<dyn LeaseStore>,
    name: &str,
    holder: &str,
    opts: LeaseOptions,
    log: &RevisionLog,
    mut waiting: impl FnMut(&Holder) + Send,
) -> Result<Lease> {
    let me = holder.as_bytes().to_vec();
    let mut told: Option<Holder> = None;
    let mut reached = false;
    loop {
        let current = match store.get(name).await {
            Ok(c) => {
                reached = true;
                c
            }
            Err(e) if !reached => return Err(e),
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "reading the lease failed; trying again");
                tokio::time::sleep(opts.poll_every()).await;
                continue;
            }
        };
        // What takes the lease is sent no earlier than this.
        let sent = tokio::time::Instant::now();
        let taken = match current {
            None => store.create(name, me.clone()).await,
            Some((value, rev)) if value.is_empty() || value == me => {
                store.update(name, me.clone(), rev).await
            }
            Some((value, rev)) => {
                let who = Holder::Held(String::from_utf8_lossy(&value).into_owned());
                if told.as_ref() != Some(&who) {
                    waiting(&who);
                    told = Some(who);
                }
                let since = log.note(name, rev);
                if since.elapsed() >= opts.ttl {
                    tracing::warn!(
                        lease = name,
                        "the lease was not renewed for its ttl; taking it over"
                    );
                    store.update(name, me.clone(), rev).await
                } else {
                    Ok(None)
                }
            }
        };
        match taken {
            Ok(Some(rev)) => return Ok(start_renewing(store, name, me, rev, sent, opts)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "taking the lease failed; trying again")
            }
        }
        tokio::time::sleep(opts.poll_every()).await;
    }
}

fn start_renewing(
    store: Arc<dyn LeaseStore>,
    name: &str,
    me: Vec<u8>,
    rev: u64,
    taken: tokio::time::Instant,
    opts: LeaseOptions,
) -> Lease {
    let (lost_tx, lost) = watch::channel(false);
    let (valid_tx, valid_until) = watch::channel(Some(taken + opts.self_fence()));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let key = name.to_string();
    let renewer = tokio::spawn(async move {
        let mut rev = rev;
        // When the last successful renewal was sent.
        let mut renewed = taken;
        let mut wait = opts.renew_every();
        let lost = |why: &str| {
            tracing::error!(lease = %key, "{why}");
            valid_tx.send_replace(None);
            let _ = lost_tx.send(true);
        };
        loop {
            let deadline = renewed + opts.self_fence();
            tokio::select! {
                _ = &mut stopped => {
                    valid_tx.send_replace(None);
                    // Released: an empty value lets a standby take it at once.
                    if let Err(e) = store.update(&key, Vec::new(), rev).await {
                        tracing::debug!(lease = %key, error = %e, "releasing the lease failed; it lapses after its ttl");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    lost("the lease could not be renewed in time; giving it up");
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
            let sent = tokio::time::Instant::now();
            let attempt = tokio::time::timeout_at(
                deadline.max(sent + opts.retry_every()),
                store.update(&key, me.clone(), rev),
            )
            .await;
            match attempt {
                Ok(Ok(Some(next))) => {
                    rev = next;
                    renewed = sent;
                    valid_tx.send_replace(Some(sent + opts.self_fence()));
                    wait = opts.renew_every();
                    continue;
                }
                Ok(Ok(None)) => {
                    lost("the lease was taken by another holder");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(lease = %key, error = %e, "renewing the lease failed"),
                Err(_) => tracing::warn!(lease = %key, "renewing the lease timed out"),
            }
            wait = opts.retry_every();
        }
    });
    Lease {
        name: name.to_string(),
        lost,
        valid_until,
        stop: Some(stop),
        renewer: Some(renewer),
    }
}

/// The embedded bus's lease bucket: a map in memory.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    entries: Mutex<HashMap<String, (Vec<u8>, u64)>>,
    next: Mutex<u64>,
}

impl MemoryLeases {
    fn next_revision(&self) -> u64 {
        let mut n = match self.next.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        *n += 1;
        *n
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Vec<u8>, u64)>) -> T) -> T {
        match self.entries.lock() {
            Ok(mut e) => f(&mut e),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        Ok(self.with(|e| e.get(key).cloned()))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>> {
        let rev = self.next_revision();
        Ok(self.with(|e| {
            if e.contains_key(key) {
                return None;
            }
            e.insert(key.to_string(), (value, rev));
            Some(rev)
        }))
    }

    async fn update(&self, key: &str, value: Vec<u8>, revision: u64) -> Result<Option<u64>> {
        let rev = self.next_revision();
        Ok(self.with(|e| match e.get_mut(key) {
            Some(entry) if entry.1 == revision => {
                *entry = (value, rev);
                Some(rev)
            }
            _ => None,
        }))
    }
}

/// The NATS lease bucket: JetStream KV bucket `<PREFIX>_LEASES`, its stream
/// made here (NATS 2.9 cannot create buckets through the client's call) with
/// `replicas` copies (`server.bus.replicas`: on a cluster a lease outlives
/// the node that stored it).
pub(crate) struct NatsLeases {
    pub(crate) kv: async_nats::jetstream::kv::Store,
}

impl NatsLeases {
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self> {
        let config = crate::replica::kv_stream(bucket, replicas);
        js.get_or_create_stream(config)
            .await
            .map_err(|e| BusError::Transport(format!("lease bucket {bucket}: {e}")))?;
        let kv = js
            .get_key_value(bucket)
            .await
            .map_err(|e| BusError::Transport(format!("lease bucket {bucket}: {e}")))?;
        Ok(NatsLeases { kv })
    }
}

#[async_trait]
impl LeaseStore for NatsLeases {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        use async_nats::jetstream::kv::Operation;
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| BusError::Transport(format!("lease {key}: {e}")))?;
        Ok(entry.and_then(|e| match e.operation {
            Operation::Put => Some((e.value.to_vec(), e.revision)),
            Operation::Delete | Operation::Purge => None,
        }))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Option<u64>> {
        use async_nats::jetstream::kv::CreateErrorKind;
        match self.kv.create(key, value.into()).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(BusError::Transport(format!("lease {key}: {e}"))),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, revision: u64) -> Result<Option<u64>> {
        use async_nats::jetstream::kv::UpdateErrorKind;
        match self.kv.update(key, value.into(), revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => {
                // NATS answers a stale revision with a publish error
                // ("wrong last sequence"), which the client may not map.
                let text = e.to_string();
                if text.contains("wrong last sequence") || text.contains("10071") {
                    Ok(None)
                } else {
                    Err(BusError::Transport(format!("lease {key}: {text}")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> LeaseOptions {
        LeaseOptions {
            ttl: Duration::from_millis(600),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_holder_a_standby_waits_and_takes_over_after_the_ttl() {
        let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeases::default());
        let mut a = acquire(store.clone(), "orchestrator", "a", fast(), |_| {})
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let b = tokio::spawn({
            let store = store.clone();
            async move {
                acquire(store, "orchestrator", "b", fast(), move |h| {
                    s.lock().unwrap().push(h.clone())
                })
                .await
                .unwrap()
            }
        });
        // While a renews, b waits however long it is.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!b.is_finished());
        assert_eq!(*seen.lock().unwrap(), [Holder::Held("a".into())]);
        assert!(!a.is_lost());
        // a dies without releasing (its renewer stops): b takes over after the ttl.
        if let Some(r) = a.renewer.take() {
            r.abort();
        }
        let started = tokio::time::Instant::now();
        let b = b.await.unwrap();
        let took = started.elapsed();
        // The ttl counts from b's last sight of a renewal, up to one renewal
        // interval before a stopped.
        let opts = fast();
        assert!(
            took + opts.renew_every() >= opts.ttl && took <= opts.ttl + opts.ttl / 2,
            "{took:?}"
        );
        assert_eq!(
            store.get("orchestrator").await.unwrap().unwrap().0,
            b"b".to_vec()
        );
        // a, had it lived, learns it lost at its next renewal.
        b.release().await;
        assert_eq!(store.get("orchestrator").await.unwrap().unwrap().0, b"");
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_at_once_and_a_stolen_one_is_lost() {
        let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeases::default());
        let a = acquire(store.clone(), "l", "a", fast(), |_| {})
            .await
            .unwrap();
        a.release().await;
        let started = tokio::time::Instant::now();
        let mut b = acquire(store.clone(), "l", "b", fast(), |_| {})
            .await
            .unwrap();
        assert!(started.elapsed() < fast().ttl);
        // Someone overwrites it (an operator, a partition healing): b sees it lost.
        let (_, rev) = store.get("l").await.unwrap().unwrap();
        store.update("l", b"c".to_vec(), rev).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), b.lost())
            .await
            .expect("the holder notices");
        assert!(b.is_lost());
    }
}
