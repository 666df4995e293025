//! The tracker as a service: [`start`] loads the state, opens the consumers
//! and subscriptions, starts the [`TrackerActor`](crate::actor) and wires
//! every subject to it as an [`Input`] message:
//!
//! | source | message |
//! |---|---|
//! | `EVENTS` `metric.>` (durable `tracker`) | `Input::Samples` (a fetched batch) |
//! | `EVENTS` `run.event.>` (durable `tracker-runs`) | `Input::Runs` (a fetched batch) |
//! | `agent.heartbeat.>` | `Input::Heartbeat` |
//! | `event.gate.>` | `Input::Gate` |
//! | `dlq.>` | `Input::DeadLetter` |
//! | `tracker.metrics.record` / `.get`, `tracker.health` (queue group `tracker`) | `Input::Record` / `Get` / `Health` |
//! | the handle's studio hook | `SetStudio` |
//!
//! Each listener waits for the actor to have handled its message before it
//! takes the next (back pressure). On stop the listeners end, then
//! `Finish` flushes the store for the last time and stops the actor.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::{Actor as _, Addr};
use concierto_bus::{
    Bus, BusExt, Consumer, ConsumerSpec, DEAD_LETTER_PREFIX, Delivery, ProtoMessage,
    TypedSubscription, encode, ensure_standard_streams,
};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::service::{ServiceHandle, StopSignal};
use concierto_core::store::{KvStore, StoreError};
use concierto_core::subjects;
use concierto_proto::v1;
use tokio::task::JoinHandle;

use crate::actor::{Finish, Input, SetStudio, TrackerActor, Worker};
use crate::core::{Core, MetricView};
use crate::{TrackerError, TrackerOptions};

/// Queue group of the tracker's request subscriptions.
const QUEUE_GROUP: &str = "tracker";
/// Durable name of the samples consumer.
const DURABLE: &str = "tracker";
/// Durable name of the run events consumer.
const DURABLE_RUNS: &str = "tracker-runs";

/// A running tracker: stop it with [`Tracker::stop`]; read its numbers with
/// [`Tracker::view`].
#[derive(Debug)]
pub struct Tracker {
    handle: ServiceHandle,
    view: TrackerView,
}

/// What the tracker shows now, readable from any thread without waiting for
/// its loop (refreshed after every input and every tick).
#[derive(Debug, Clone, Default)]
pub struct TrackerView {
    inner: Arc<RwLock<Snapshot>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) metrics: Vec<MetricView>,
    pub(crate) health: v1::SystemHealth,
}

impl TrackerView {
    pub(crate) fn read(&self) -> Snapshot {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set(&self, s: Snapshot) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Every metric's current value against its target.
    pub fn metrics(&self) -> Vec<MetricView> {
        self.read().metrics
    }

    /// The health as of the last input or tick.
    pub fn health(&self) -> v1::SystemHealth {
        self.read().health
    }
}

impl Tracker {
    /// A handle on what it shows (cheap to clone, for `/metrics` servers).
    pub fn view(&self) -> TrackerView {
        self.view.clone()
    }

    /// Every series' current value and target, and the health numbers, as
    /// Prometheus text-format gauges.
    pub fn prometheus_text(&self) -> String {
        self.view.prometheus_text()
    }

    /// The service handle (for code that stops every service alike).
    pub fn into_handle(self) -> ServiceHandle {
        self.handle
    }

    /// Stops the tracker: listeners end, the loop finishes the input in hand,
    /// the store is flushed.
    pub async fn stop(self) -> Result<(), String> {
        self.handle.stop().await
    }
}

/// Starts the tracker for `studio`: reads the bus, keeps its series in `store`
/// (tree `tracker`), reads the time from `clock`. Its handle takes a changed studio
/// live ([`ServiceHandle::studio_changed`]): the actor takes it in turn with the
/// inputs ([`Core::studio_changed`]). Must be called inside an actix `System`
/// ([`TrackerError::NoSystem`] otherwise).
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: TrackerOptions,
) -> Result<Tracker, TrackerError> {
    if actix::System::try_current().is_none() {
        return Err(TrackerError::NoSystem);
    }
    opts.validate()?;
    ensure_standard_streams(bus.as_ref(), &opts.streams).await?;
    let core_opts = opts.clone();
    let mut core = {
        let (studio, store) = (studio.clone(), store.clone());
        tokio::task::spawn_blocking(move || Core::load(&studio, store, core_opts))
            .await
            .map_err(|e| StoreError::from_message(format!("loading the tracker's store: {e}")))??
    };
    seed_open_gates(bus.as_ref(), &mut core).await;

    let mut spec = ConsumerSpec::new(DURABLE, subjects::METRIC_SAMPLES);
    spec.ack_wait = opts.ack_wait;
    spec.max_deliver = 5;
    spec.prefetch = opts.batch * 2;
    let consumer = bus.consumer("EVENTS", &spec).await?;
    let mut spec = ConsumerSpec::new(DURABLE_RUNS, subjects::RUN_EVENTS);
    spec.ack_wait = opts.ack_wait;
    spec.max_deliver = 5;
    spec.prefetch = opts.batch * 2;
    let runs = bus.consumer("EVENTS", &spec).await?;
    let heartbeats = bus
        .subscribe_proto::<v1::AgentHeartbeat>(subjects::HEARTBEATS)
        .await?;
    let gates = bus
        .subscribe_proto::<v1::Gate>(subjects::GATE_EVENTS)
        .await?;
    let dead = bus.subscribe(&format!("{DEAD_LETTER_PREFIX}.>")).await?;
    let record = bus
        .queue_subscribe_proto::<v1::RecordMetricRequest>(
            subjects::TRACKER_RECORD_METRIC,
            QUEUE_GROUP,
        )
        .await?;
    let get = bus
        .queue_subscribe_proto::<v1::GetMetricsRequest>(subjects::TRACKER_GET_METRICS, QUEUE_GROUP)
        .await?;
    let health = bus
        .queue_subscribe_proto::<v1::GetHealthRequest>(subjects::TRACKER_HEALTH, QUEUE_GROUP)
        .await?;

    let view = TrackerView::default();
    let now = clock.now();
    view.set(Snapshot {
        metrics: core.views(now),
        health: core.health(now),
    });
    let (handle, control) = ServiceHandle::new("tracker");
    let worker = Worker {
        core,
        bus,
        store,
        view: view.clone(),
        prune_every: opts.prune_every,
        last_prune: None,
        dirty: false,
    };
    let addr = TrackerActor::new(worker, clock, opts.tick).start();
    let handle = {
        let addr = addr.clone();
        handle.on_studio_change(move |studio| addr.do_send(SetStudio(studio)))
    };
    let signal = control.signal.clone();
    let mut listeners: Vec<JoinHandle<()>> = vec![
        tokio::spawn(forward(heartbeats, signal.clone(), addr.clone(), |m, _| {
            Some(Input::Heartbeat(m))
        })),
        tokio::spawn(forward(gates, signal.clone(), addr.clone(), |m, _| {
            Some(Input::Gate(m))
        })),
        tokio::spawn(forward(record, signal.clone(), addr.clone(), |m, raw| {
            raw.reply.map(|r| Input::Record(m, r))
        })),
        tokio::spawn(forward(get, signal.clone(), addr.clone(), |m, raw| {
            raw.reply.map(|r| Input::Get(m, r))
        })),
        tokio::spawn(forward(health, signal.clone(), addr.clone(), |_, raw| {
            raw.reply.map(Input::Health)
        })),
    ];
    {
        let (mut signal, addr, mut dead) = (signal.clone(), addr.clone(), dead);
        listeners.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = signal.stopped() => break,
                    next = dead.next() => match next {
                        Some(_) => if addr.send(Input::DeadLetter).await.is_err() { break },
                        None => break,
                    },
                }
            }
        }));
    }
    listeners.push(tokio::spawn(pull(
        consumer,
        signal.clone(),
        addr.clone(),
        (opts.batch, opts.fetch_wait),
        Input::Samples,
    )));
    listeners.push(tokio::spawn(pull(
        runs,
        signal.clone(),
        addr.clone(),
        (opts.batch, opts.fetch_wait),
        Input::Runs,
    )));
    tracing::info!(metrics = studio.progress_metrics.len(), "tracker started");
    tokio::spawn(async move {
        let mut signal = control.signal.clone();
        signal.stopped().await;
        let mut result = Ok(());
        for l in listeners {
            if let Err(e) = l.await {
                result = Err(format!("a tracker listener failed: {e}"));
            }
        }
        // The listeners are gone: the last flush, then the actor stops.
        match addr.send(Finish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(format!("the tracker actor failed: {e}")),
        }
        tracing::info!("tracker stopped");
        control.finished(result);
    });
    Ok(Tracker { handle, view })
}

/// Hands every batch fetched from `consumer` to the actor until stopped.
async fn pull<M: ProtoMessage>(
    consumer: Consumer,
    signal: StopSignal,
    addr: Addr<TrackerActor>,
    (batch, wait): (usize, Duration),
    wrap: fn(Vec<(M, Delivery)>) -> Input,
) {
    while !signal.is_stopped() {
        match consumer.fetch_proto::<M>(batch, wait).await {
            Ok(got) if got.is_empty() => {}
            Ok(got) => {
                if addr.send(wrap(got)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, message = %M::full_name(), "fetching from the stream failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Hands every message of `sub` to the actor until stopped.
async fn forward<M, F>(
    mut sub: TypedSubscription<M>,
    mut stop: StopSignal,
    addr: Addr<TrackerActor>,
    wrap: F,
) where
    M: ProtoMessage,
    F: Fn(M, concierto_bus::Message) -> Option<Input>,
{
    loop {
        tokio::select! {
            biased;
            _ = stop.stopped() => break,
            next = sub.next() => match next {
                Some((m, raw)) => {
                    if let Some(input) = wrap(m, raw)
                        && addr.send(input).await.is_err()
                    {
                        break;
                    }
                }
                None => break,
            },
        }
    }
}

/// Gates opened before the tracker started: asked of the orchestrator once,
/// when it answers.
async fn seed_open_gates(bus: &dyn Bus, core: &mut Core) {
    let mut page_token = String::new();
    for _ in 0..20 {
        let req = v1::ListGatesRequest {
            state: v1::GateState::Open as i32,
            page_size: 500,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let reply = bus
            .request(
                subjects::ORCHESTRATOR_LIST_GATES,
                encode(&req),
                Duration::from_secs(2),
            )
            .await;
        let page = match reply {
            Ok(m) if m.headers.get(subjects::ERROR_HEADER).is_none() => {
                match concierto_bus::decode::<v1::ListGatesResponse>(&m) {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
            _ => {
                tracing::debug!(
                    "no open gates from the orchestrator at start; gate events will tell"
                );
                return;
            }
        };
        for g in &page.gates {
            core.gate(g);
        }
        if page.next_page_token.is_empty() {
            return;
        }
        page_token = page.next_page_token;
    }
}
