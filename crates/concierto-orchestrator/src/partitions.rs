//! The partition runtime (DESIGN.md section 3, "partitioned orchestrators"):
//! every orchestrator process contends for the lease of each of the studio's
//! `server.partitions` partitions and runs one orchestrator (engine actor,
//! intake, committer) per partition it holds, its store written through to
//! the partition's bucket so that any process can take it over.
//!
//! ```text
//!  per partition k:  acquire lease ──▶ sync store with bucket ORCH_P<k> ──▶ start_partition(k)
//!                        ▲                                                     │
//!                        └──── lost (fenced, stopped at once) / over its share ◀┘
//!  partition 0's owner (P > 1): routes run.start, result.<role>, feedback.in.> to their partitions
//!  every process (P > 1): answers the plain query subjects (query_router.rs)
//! ```
//!
//! One partition (`server.partitions: 1`) keeps what came before: lease
//! `orchestrator` (6 s), data folder `<data>/orchestrator`, subjects
//! `run.start` and `result.>`, consumers `orchestrator`, the plain query
//! subjects answered by the active instance; its store is written through to
//! bucket `ORCH_P0` when the bus is NATS.
//!
//! Sharing (P > 1): each process keeps a membership slot (lease
//! `orchestrator-member-<i>`, renewed like any lease); a slot whose revision
//! changed within half a ttl is a live process. A process holding
//! `ceil(P / live processes)` partitions contends for no more, and one
//! holding more hands its highest partition back (stop, write through,
//! release: the other process takes it at once), one at a time, a ttl apart.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierto_bus::lease::{self, Holder, Lease, LeaseOptions, LeaseStore, RevisionLog};
use concierto_bus::{Bus, ReplicaStore};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::service::{ServiceHandle, StopSignal};
use concierto_core::store::{KvStore, SledStore, StoreError};
use tokio::sync::watch;

use crate::replica::{ReplicatedStore, Replication, Synced};
use crate::service::{OrchestratorError, OrchestratorOptions, PartitionSetup, start_partition};

/// How the runtime runs.
#[derive(Debug, Clone)]
pub struct PartitionOptions {
    /// `server.partitions` (1..=64).
    pub partitions: u32,
    /// This process's holder id (host and pid; injectable for tests).
    pub holder: String,
    /// The data folder: partition k lives in `<data>/orchestrator-p<k>`
    /// (`<data>/orchestrator` with one partition).
    pub data_dir: PathBuf,
    /// The partition leases' timing: 4 s by default with several partitions
    /// (a dead process's partitions are held again within 3-4.5 s), 6 s with
    /// one (as before).
    pub lease: LeaseOptions,
    /// Write each partition's store through to its bucket (a NATS bus); off
    /// on the embedded bus, where no other process could take over.
    pub write_through: bool,
}

impl PartitionOptions {
    /// The defaults for `partitions` partitions in `data_dir`.
    pub fn new(partitions: u32, holder: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let partitions = partitions.clamp(1, concierto_core::partition::MAX_PARTITIONS);
        PartitionOptions {
            partitions,
            holder: holder.into(),
            data_dir: data_dir.into(),
            // A holder renews every ttl/4, tries a failed renewal again
            // every ttl/20 and fences itself 5/6 of a ttl after sending its
            // last good one: with 4 s it rides out a lease-bucket leader
            // election of up to about 2.3 s (about 2.5 s measured on
            // loopback after a node dies); past that the partition stops and
            // is taken again (by this process or another) once the bucket
            // answers, nothing lost.
            lease: if partitions > 1 {
                LeaseOptions {
                    ttl: Duration::from_secs(4),
                }
            } else {
                LeaseOptions::default()
            },
            write_through: true,
        }
    }

    /// The lease of partition `k`.
    pub fn lease_name(&self, k: u32) -> String {
        if self.partitions > 1 {
            format!("orchestrator-p{k}")
        } else {
            "orchestrator".to_string()
        }
    }

    /// The data folder of partition `k`.
    pub fn dir(&self, k: u32) -> PathBuf {
        if self.partitions > 1 {
            self.data_dir.join(format!("orchestrator-p{k}"))
        } else {
            self.data_dir.join("orchestrator")
        }
    }
}

/// The bucket of partition `k`.
pub fn bucket_name(k: u32) -> String {
    format!("ORCH_P{k}")
}

/// The health key `/readyz` shows while this process holds no partition.
const HEALTH: &str = "orchestrator.lease";

/// Most membership slots.
const SLOTS: u32 = 16;

/// What every partition task of a process shares.
struct Shared {
    partitions: u32,
    held: Mutex<BTreeSet<u32>>,
    /// Live orchestrator processes, this one included.
    live: AtomicUsize,
    changed: watch::Sender<()>,
    studio: Mutex<Arc<Studio>>,
    /// Running partitions' studio hooks.
    hooks: Mutex<HashMap<u32, concierto_core::service::StudioHook>>,
}

impl Shared {
    fn held(&self) -> BTreeSet<u32> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_held(&self, k: u32, held: bool) {
        {
            let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if held {
                h.insert(k);
            } else {
                h.remove(&k);
            }
            if h.is_empty() {
                concierto_core::health::set_unready(
                    HEALTH,
                    "standby: this orchestrator holds no partition (others hold them, or it is taking one)",
                );
            } else {
                concierto_core::health::clear(HEALTH);
            }
        }
        let _ = self.changed.send(());
    }

    /// The most partitions this process should hold now.
    fn share(&self) -> usize {
        let live = self.live.load(Ordering::SeqCst).max(1);
        (self.partitions as usize).div_ceil(live)
    }

    fn studio(&self) -> Arc<Studio> {
        self.studio
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The studio one partition's engine runs with: with P partitions, each
/// enforces a P-th of the day budgets (studio and roles), so the studio as a
/// whole stays within them (a partition may stop short while another has
/// room left: the price of not sharing spend between partitions).
pub fn partition_studio(studio: &Arc<Studio>, partitions: u32) -> Arc<Studio> {
    if partitions <= 1 {
        return studio.clone();
    }
    let mut s = (**studio).clone();
    let share = |v: &mut Option<f64>| {
        if let Some(d) = v {
            *d /= f64::from(partitions);
        }
    };
    share(&mut s.agents.budget.per_day_usd);
    for r in s.agents.roles.values_mut() {
        share(&mut r.budget.per_day_usd);
    }
    Arc::new(s)
}

/// Starts the orchestrator's partitions in this process (see the module doc).
/// Fails when the bus's recorded partition count is not `server.partitions`.
/// Must run inside an actix `System`.
pub async fn start_partitions(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    clock: SharedClock,
    opts: OrchestratorOptions,
    popts: PartitionOptions,
) -> Result<ServiceHandle, OrchestratorError> {
    let p = popts.partitions;
    // Declared before anything waits for a lease: a caller may publish at once.
    concierto_bus::ensure_standard_streams(bus.as_ref(), &opts.streams).await?;
    let leases = bus.leases().await?;
    if popts.write_through {
        // A cluster still electing its leaders (all processes started at
        // once) answers late: asked again for up to a minute; a different
        // partition count is fatal at once.
        let mut backoff = Duration::from_millis(250);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let checked = match bus.replica(&bucket_name(0), opts.streams.replicas).await {
                Ok(p0) => crate::replica::check_partitions(&p0, p).await,
                Err(e) => Err(Err(format!("opening partition 0's bucket: {e}"))),
            };
            match checked {
                Ok(()) => break,
                Err(Ok(fatal)) => {
                    return Err(OrchestratorError::Store(StoreError::from_message(fatal)));
                }
                Err(Err(e)) if tokio::time::Instant::now() + backoff < give_up => {
                    tracing::warn!(error = %e, "the partition count cannot be checked yet; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(Err(e)) => return Err(OrchestratorError::Store(StoreError::from_message(e))),
            }
        }
    }
    let (changed, _) = watch::channel(());
    let shared = Arc::new(Shared {
        partitions: p,
        held: Mutex::new(BTreeSet::new()),
        live: AtomicUsize::new(1),
        changed,
        studio: Mutex::new(studio),
        hooks: Mutex::new(HashMap::new()),
    });
    concierto_core::health::set_unready(HEALTH, "standby: taking the orchestrator's partitions");
    let (handle, control) = ServiceHandle::new("orchestrator");
    let to_parts = shared.clone();
    let handle = handle.on_studio_change(move |s| {
        *to_parts.studio.lock().unwrap_or_else(|p| p.into_inner()) = s.clone();
        let hooks: Vec<_> = to_parts
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for h in hooks {
            h(partition_studio(&s, to_parts.partitions));
        }
    });
    let signal = control.signal.clone();
    let mut tasks = Vec::new();
    if p > 1 {
        tasks.push(tokio::spawn(membership(
            leases.clone(),
            popts.clone(),
            shared.clone(),
            signal.clone(),
        )));
    }
    let router = if p > 1 {
        Some(crate::query_router::start(bus.clone(), p).await?)
    } else {
        None
    };
    // Every partition lease's revision, watched from the start: a process
    // whose share grows (another died) takes a lease that went unrenewed
    // for a ttl at once, not a ttl after it starts looking.
    let log = Arc::new(RevisionLog::default());
    let names = (0..p).map(|k| popts.lease_name(k)).collect();
    let watcher = log.watch(leases.clone(), names, popts.lease.poll_every());
    let env = Arc::new(Env {
        bus,
        clock,
        opts,
        popts,
        leases,
        log,
        shared: shared.clone(),
    });
    for k in 0..p {
        let env = env.clone();
        let signal = signal.clone();
        tasks.push(actix::spawn(
            async move { run_partition(env, k, signal).await },
        ));
    }
    actix::spawn(async move {
        let mut result = Ok(());
        for t in tasks {
            if let Err(e) = t.await {
                result = Err(format!("an orchestrator partition task failed: {e}"));
            }
        }
        if let Some(r) = router {
            r.abort();
        }
        watcher.abort();
        concierto_core::health::clear(HEALTH);
        control.finished(result);
    });
    Ok(handle)
}

struct Env {
    bus: Arc<dyn Bus>,
    clock: SharedClock,
    opts: OrchestratorOptions,
    popts: PartitionOptions,
    leases: Arc<dyn LeaseStore>,
    log: Arc<RevisionLog>,
    shared: Arc<Shared>,
}

/// A running partition: its orchestrator, the router of partition 0, and
/// what fences its write-through.
struct Running {
    service: ServiceHandle,
    router: Option<ServiceHandle>,
    replication: Option<Replication>,
}

impl Running {
    async fn stop(self) {
        if let Some(r) = self.router
            && let Err(e) = r.stop().await
        {
            tracing::warn!(error = %e, "the partition router stopped with an error");
        }
        if let Err(e) = self.service.stop().await {
            tracing::warn!(error = %e, "the partition stopped with an error");
        }
    }
}

/// Holds partition `k` whenever it can until stopped.
async fn run_partition(env: Arc<Env>, k: u32, mut signal: StopSignal) {
    let name = env.popts.lease_name(k);
    let mut retry = Duration::from_secs(1);
    let mut changed = env.shared.changed.subscribe();
    loop {
        // Only under this process's share (or for an orphan).
        while !may_contend(&env, &name) {
            tokio::select! {
                _ = signal.stopped() => return,
                _ = changed.changed() => {}
                _ = tokio::time::sleep(env.popts.lease.poll_every()) => {}
            }
        }
        let mut said: Option<String> = None;
        let acquired = tokio::select! {
            _ = signal.stopped() => return,
            l = lease::acquire_noting(env.leases.clone(), &name, &env.popts.holder, env.popts.lease, &env.log, |who| {
                if let Holder::Held(h) = who
                    && said.as_deref() != Some(h.as_str())
                {
                    tracing::info!(partition = k, holder = %h, "standby: the partition is held by another orchestrator; this instance takes it when it is free");
                    said = Some(h.clone());
                }
            }) => l,
            _ = no_longer_contending(&env, &name, &mut changed) => continue,
        };
        let lease = match acquired {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(partition = k, error = %e, "the lease bucket cannot be read; trying again");
                tokio::select! {
                    _ = signal.stopped() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                continue;
            }
        };
        tracing::info!(partition = k, holder = %env.popts.holder, "partition lease taken");
        env.shared.set_held(k, true);
        let mut lease = lease;
        let outcome = loop {
            let running = match start_one(&env, k, &lease).await {
                Ok(r) => {
                    retry = Duration::from_secs(1);
                    r
                }
                Err(e) => {
                    tracing::error!(partition = k, error = %e, ?retry, "the partition did not start; releasing its lease and trying again");
                    break Outcome::Failed;
                }
            };
            if let Some(hook) = running.service.studio_hook() {
                env.shared
                    .hooks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(k, hook);
            }
            let outcome = hold(&env, k, &mut lease, running, &mut signal).await;
            env.shared
                .hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
            match outcome {
                // Still held: synced again from the bucket and started anew.
                Outcome::Resync if !lease.is_lost() => {}
                Outcome::Resync => break Outcome::Lost,
                other => break other,
            }
        };
        if !matches!(outcome, Outcome::Lost) {
            lease.release().await;
        }
        env.shared.set_held(k, false);
        match outcome {
            Outcome::Stopped => return,
            Outcome::Lost | Outcome::Resync => {}
            Outcome::Failed => {
                tokio::select! {
                    _ = signal.stopped() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(30));
            }
            Outcome::HandedBack => {
                // Let another process take it before contending again.
                tokio::select! {
                    _ = signal.stopped() => return,
                    _ = tokio::time::sleep(env.popts.lease.ttl * 2) => {}
                }
            }
        }
    }
}

enum Outcome {
    Stopped,
    Lost,
    HandedBack,
    /// The partition's bucket was written by another writer: stopped, to be
    /// synced again while the lease is held.
    Resync,
    /// It did not start.
    Failed,
}

/// Runs partition `k` until the process stops, the lease is lost, its
/// bucket is found written by another writer, or this process holds more
/// than its share and `k` is its highest partition. Releases nothing.
async fn hold(
    env: &Env,
    k: u32,
    lease: &mut Lease,
    running: Running,
    signal: &mut StopSignal,
) -> Outcome {
    let over_share = async {
        loop {
            tokio::time::sleep(env.popts.lease.ttl).await;
            let held = env.shared.held();
            if held.len() > env.shared.share() && held.iter().next_back() == Some(&k) {
                return;
            }
        }
    };
    let broken = async {
        match &running.replication {
            Some(r) => r.broken().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = signal.stopped() => Outcome::Stopped,
        _ = lease.lost() => Outcome::Lost,
        _ = over_share => Outcome::HandedBack,
        _ = broken => Outcome::Resync,
    };
    match outcome {
        Outcome::Lost => {
            tracing::error!(
                partition = k,
                "the partition lease is lost: stopping this partition at once"
            );
            if let Some(r) = &running.replication {
                r.fence();
            }
        }
        Outcome::HandedBack => tracing::info!(
            partition = k,
            "this orchestrator holds more than its share: handing the partition back"
        ),
        _ => {}
    }
    running.stop().await;
    outcome
}

/// Opens partition `k`'s store, brings it in line with its bucket, and starts
/// its orchestrator (and, for partition 0 of several, the router).
async fn start_one(env: &Env, k: u32, lease: &Lease) -> Result<Running, String> {
    let p = env.popts.partitions;
    let dir = env.popts.dir(k);
    let opened = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            SledStore::open(&dir).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("opening the partition's store: {e}"))??
    };
    let (store, replication): (Arc<dyn KvStore>, Option<Replication>) = if env.popts.write_through {
        let bucket: Arc<dyn ReplicaStore> = env
            .bus
            .replica(&bucket_name(k), env.opts.streams.replicas)
            .await
            .map_err(|e| format!("opening the partition's bucket: {e}"))?;
        let (synced, at) = crate::replica::sync(&opened, &bucket).await?;
        match synced {
            Synced::Loaded(n) => {
                tracing::info!(
                    partition = k,
                    entries = n,
                    "partition state loaded from the bus"
                )
            }
            Synced::Seeded(n) => tracing::info!(
                partition = k,
                entries = n,
                "partition bucket seeded from the local store"
            ),
            Synced::Kept => tracing::info!(partition = k, "the local store matches the bus: kept"),
            Synced::Empty => {}
        }
        let store = Arc::new(ReplicatedStore::new(opened));
        let replication = Replication::new(store.clone(), bucket, at).bounded_by(lease.validity());
        (store, Some(replication))
    } else {
        (Arc::new(opened), None)
    };
    let setup = PartitionSetup {
        k,
        partitions: p,
        replication: replication.clone(),
    };
    let studio = partition_studio(&env.shared.studio(), p);
    let service = start_partition(
        studio,
        env.bus.clone(),
        store,
        env.clock.clone(),
        env.opts.clone(),
        setup,
    )
    .await
    .map_err(|e| e.to_string())?;
    let router = if k == 0 && p > 1 {
        match crate::routing::start(env.bus.clone(), p, &env.opts).await {
            Ok(r) => Some(r),
            Err(e) => {
                let _ = service.stop().await;
                return Err(format!("starting the router of partition 0: {e}"));
            }
        }
    } else {
        None
    };
    Ok(Running {
        service,
        router,
        replication,
    })
}

/// Resolves once this process holds its share.
async fn no_longer_contending(env: &Env, name: &str, changed: &mut watch::Receiver<()>) {
    loop {
        if !may_contend(env, name) {
            return;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(env.popts.lease.poll_every()) => {}
        }
    }
}

/// Whether this process contends for the lease `name`: while it holds less
/// than its share, or for an orphan, a lease nobody renewed or took for two
/// ttls (the processes that could have did not count themselves short:
/// their view of who is alive lags). Holding more than its share, a
/// process hands its highest partition back a ttl later.
fn may_contend(env: &Env, name: &str) -> bool {
    env.shared.held().len() < env.shared.share()
        || env
            .log
            .unchanged_for(name)
            .is_some_and(|d| d >= env.popts.lease.ttl * 2)
}

/// Keeps a membership slot and counts the live ones (see the module doc).
async fn membership(
    leases: Arc<dyn LeaseStore>,
    popts: PartitionOptions,
    shared: Arc<Shared>,
    mut signal: StopSignal,
) {
    let ttl = popts.lease.ttl;
    let slot_name = |i: u32| format!("orchestrator-member-{i}");
    // A free slot (a dead process's is free again after its ttl).
    let mut mine: Option<Lease> = None;
    let mut seen: HashMap<u32, (u64, tokio::time::Instant)> = HashMap::new();
    loop {
        if mine.as_ref().is_none_or(Lease::is_lost) {
            mine = None;
            for i in 0..SLOTS {
                let got = tokio::time::timeout(
                    (ttl / 6).max(Duration::from_millis(50)),
                    lease::acquire(
                        leases.clone(),
                        &slot_name(i),
                        &popts.holder,
                        popts.lease,
                        |_| {},
                    ),
                )
                .await;
                if let Ok(Ok(l)) = got {
                    mine = Some(l);
                    break;
                }
            }
        }
        let now = tokio::time::Instant::now();
        let mut live = 0usize;
        for i in 0..SLOTS {
            let Ok(Some((value, rev))) = leases.get(&slot_name(i)).await else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if value == popts.holder.as_bytes() {
                // This process (counted once below): a slot it held before
                // a lost renewal lapses like any other.
                continue;
            }
            let since = match seen.get(&i) {
                Some((r, since)) if *r == rev => *since,
                _ => {
                    seen.insert(i, (rev, now));
                    now
                }
            };
            // A live process renews every ttl/4: a slot unchanged for half a
            // ttl is taken for dead, so the survivors' share grows before
            // the dead process's partition leases lapse (a ttl); the
            // revision log has watched those all along, so they are taken
            // the moment they lapse.
            if now.duration_since(since) <= ttl / 2 {
                live += 1;
            }
        }
        let live = live + 1;
        if shared.live.swap(live, Ordering::SeqCst) != live {
            tracing::info!(live, share = shared.share(), "orchestrator processes seen");
            let _ = shared.changed.send(());
        }
        tokio::select! {
            _ = signal.stopped() => break,
            _ = tokio::time::sleep(ttl / 6) => {}
        }
    }
    if let Some(l) = mine {
        l.release().await;
    }
}
