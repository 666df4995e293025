//! The tracker as a service: listeners hand every bus input to one loop that
//! owns the [`Core`]; the loop publishes crossings, writes and flushes the
//! store, then settles deliveries and answers requests.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_bus::{
    Bus, BusExt, Consumer, ConsumerSpec, DEAD_LETTER_PREFIX, Delivery, Outgoing, ProtoMessage,
    TypedSubscription, encode, ensure_standard_streams,
};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::service::{ServiceHandle, StopSignal};
use concierto_core::store::{KvStore, StoreError};
use concierto_core::subjects;
use concierto_proto::v1::{self, MetricSample};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::{Core, MetricView, Outcome};
use crate::series::TREE;
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

    fn set(&self, s: Snapshot) {
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

enum Input {
    Samples(Vec<(MetricSample, Delivery)>),
    Runs(Vec<(v1::RunEvent, Delivery)>),
    Heartbeat(v1::AgentHeartbeat),
    Gate(v1::Gate),
    DeadLetter,
    Record(v1::RecordMetricRequest, String),
    Get(v1::GetMetricsRequest, String),
    Health(String),
    Tick,
    /// A changed studio waits in the loop's pending slot.
    Studio,
}

/// The latest studio handed over and not yet taken (a newer one replaces it).
type Pending = Arc<Mutex<Option<Arc<Studio>>>>;

/// Starts the tracker for `studio`: reads the bus, keeps its series in `store`
/// (tree `tracker`), reads the time from `clock`. Its handle takes a changed studio
/// live ([`ServiceHandle::studio_changed`]): the loop takes it before its next input
/// ([`Core::studio_changed`]).
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: TrackerOptions,
) -> Result<Tracker, TrackerError> {
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
    let (tx, rx) = mpsc::channel::<Input>(1024);
    let pending: Pending = Arc::default();
    let handle = {
        // Weak: the loop ends once the listeners are gone, whoever holds the handle.
        let (pending, wake) = (pending.clone(), tx.downgrade());
        handle.on_studio_change(move |studio| {
            *pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(studio);
            // A full queue is fine: the slot is looked at before every input.
            if let Some(tx) = wake.upgrade() {
                let _ = tx.try_send(Input::Studio);
            }
        })
    };
    let signal = control.signal.clone();
    let mut listeners: Vec<JoinHandle<()>> = vec![
        tokio::spawn(forward(heartbeats, signal.clone(), tx.clone(), |m, _| {
            Some(Input::Heartbeat(m))
        })),
        tokio::spawn(forward(gates, signal.clone(), tx.clone(), |m, _| {
            Some(Input::Gate(m))
        })),
        tokio::spawn(forward(record, signal.clone(), tx.clone(), |m, raw| {
            raw.reply.map(|r| Input::Record(m, r))
        })),
        tokio::spawn(forward(get, signal.clone(), tx.clone(), |m, raw| {
            raw.reply.map(|r| Input::Get(m, r))
        })),
        tokio::spawn(forward(health, signal.clone(), tx.clone(), |_, raw| {
            raw.reply.map(Input::Health)
        })),
    ];
    {
        let (mut signal, tx, mut dead) = (signal.clone(), tx.clone(), dead);
        listeners.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = signal.stopped() => break,
                    next = dead.next() => match next {
                        Some(_) => if tx.send(Input::DeadLetter).await.is_err() { break },
                        None => break,
                    },
                }
            }
        }));
    }
    listeners.push(tokio::spawn(pull(
        consumer,
        signal.clone(),
        tx.clone(),
        (opts.batch, opts.fetch_wait),
        Input::Samples,
    )));
    listeners.push(tokio::spawn(pull(
        runs,
        signal.clone(),
        tx.clone(),
        (opts.batch, opts.fetch_wait),
        Input::Runs,
    )));
    {
        let (mut signal, tx, every) = (signal.clone(), tx.clone(), opts.tick);
        listeners.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = signal.stopped() => break,
                    _ = interval.tick() => if tx.send(Input::Tick).await.is_err() { break },
                }
            }
        }));
    }
    drop(tx);
    let looper = Looper {
        core,
        bus,
        store,
        clock,
        view: view.clone(),
        pending,
        prune_every: opts.prune_every,
        last_prune: None,
        dirty: false,
    };
    let main = tokio::spawn(looper.run(rx));
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
        // The listeners held every sender: the loop drains and ends.
        match main.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(format!("the tracker loop failed: {e}")),
        }
        tracing::info!("tracker stopped");
        control.finished(result);
    });
    Ok(Tracker { handle, view })
}

/// Hands every batch fetched from `consumer` to the loop until stopped.
async fn pull<M: ProtoMessage>(
    consumer: Consumer,
    signal: StopSignal,
    tx: mpsc::Sender<Input>,
    (batch, wait): (usize, Duration),
    wrap: fn(Vec<(M, Delivery)>) -> Input,
) {
    while !signal.is_stopped() {
        match consumer.fetch_proto::<M>(batch, wait).await {
            Ok(got) if got.is_empty() => {}
            Ok(got) => {
                if tx.send(wrap(got)).await.is_err() {
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

/// Hands every message of `sub` to the loop until stopped.
async fn forward<M, F>(
    mut sub: TypedSubscription<M>,
    mut stop: StopSignal,
    tx: mpsc::Sender<Input>,
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
                        && tx.send(input).await.is_err()
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

struct Looper {
    core: Core,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    view: TrackerView,
    pending: Pending,
    prune_every: Duration,
    last_prune: Option<DateTime<Utc>>,
    dirty: bool,
}

fn error_reply(e: &TrackerError) -> Outgoing {
    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, e.reply_header())
}

impl Looper {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) -> Result<(), String> {
        while let Some(input) = rx.recv().await {
            let now = self.clock.now();
            let studio = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(studio) = studio {
                self.take_studio(&studio, now).await;
            }
            self.handle(input, now).await;
            self.view.set(crate::service::Snapshot {
                metrics: self.core.views(now),
                health: self.core.health(now),
            });
        }
        self.flush().await.map_err(|e| format!("final flush: {e}"))
    }

    /// Takes a changed studio: new specs and watches for the next evaluation (done
    /// now), series and watch states kept.
    async fn take_studio(&mut self, studio: &Studio, now: DateTime<Utc>) {
        match self.core.studio_changed(studio, now) {
            Ok((out, changes)) => {
                tracing::info!(
                    added = ?changes.added,
                    removed = ?changes.removed,
                    changed = ?changes.changed,
                    watches = ?changes.watches,
                    "studio changed: progress metrics {changes}"
                );
                if let Err(e) = self.commit(out, true).await {
                    tracing::error!(error = %e, "writing the tracker's state after a studio change failed");
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "a studio change could not be taken; the tracker goes on with the studio it had"
            ),
        }
    }

    async fn handle(&mut self, input: Input, now: DateTime<Utc>) {
        match input {
            Input::Studio => {}
            Input::Samples(batch) => self.samples(batch, now).await,
            Input::Runs(batch) => self.run_events(batch, now).await,
            Input::Heartbeat(hb) => {
                let out = self.core.heartbeat(&hb, now);
                self.commit(out, false).await.unwrap_or(());
            }
            Input::Gate(g) => self.core.gate(&g),
            Input::DeadLetter => self.core.dead_letter(),
            Input::Record(req, reply) => {
                let sample = MetricSample {
                    metric: req.metric,
                    value: req.value,
                    at: None,
                    labels: req.labels,
                    unit: String::new(),
                };
                let answer = match self.core.sample(&sample, now) {
                    Ok(out) => match self.commit(out, true).await {
                        Ok(()) => encode(&v1::RecordMetricResponse {}),
                        Err(e) => error_reply(&e),
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "a metric record was refused");
                        error_reply(&e)
                    }
                };
                self.respond(&reply, answer).await;
            }
            Input::Get(req, reply) => {
                let answer = match self.core.get_metrics(&req, now) {
                    Ok(r) => encode(&r),
                    Err(e) => error_reply(&e),
                };
                self.respond(&reply, answer).await;
            }
            Input::Health(reply) => {
                let answer = encode(&self.core.health(now));
                self.respond(&reply, answer).await;
            }
            Input::Tick => {
                let prune = self.last_prune.is_none_or(|t| {
                    now - t
                        >= chrono::Duration::from_std(self.prune_every)
                            .unwrap_or(chrono::Duration::MAX)
                });
                if prune {
                    self.last_prune = Some(now);
                }
                match self.core.tick(now, prune) {
                    Ok(out) => self.commit(out, false).await.unwrap_or(()),
                    Err(e) => tracing::error!(error = %e, "the tracker's tick failed"),
                }
                if self.dirty
                    && let Err(e) = self.flush().await
                {
                    tracing::error!(error = %e, "flushing the tracker's store failed");
                }
            }
        }
    }

    async fn respond(&self, reply: &str, out: Outgoing) {
        if let Err(e) = self.bus.respond(reply, out).await {
            tracing::warn!(error = %e, "answering a tracker request failed");
        }
    }

    /// Samples from the stream: applied in order (a redelivery of one already
    /// applied is skipped), crossings published, writes flushed, then every
    /// delivery acknowledged; a sample that cannot be taken is dead-lettered.
    async fn samples(&mut self, batch: Vec<(MetricSample, Delivery)>, now: DateTime<Utc>) {
        let mut out = Outcome::default();
        let mut done = Vec::new();
        let mut refused = Vec::new();
        let applied_before = self.core.applied_seq();
        for (s, d) in batch {
            if d.delivered > 1 && d.stream_seq <= self.core.applied_seq() {
                done.push(d);
                continue;
            }
            match self.core.sample(&s, now) {
                Ok(o) => {
                    out.ops.extend(o.ops);
                    out.crossings.extend(o.crossings);
                    self.core.mark_applied(d.stream_seq, &mut out);
                    done.push(d);
                }
                Err(e) => refused.push((d, e.to_string())),
            }
        }
        let ok = self.commit(out, true).await.is_ok();
        if !ok {
            // Not stored: the redeliveries must be applied again, not skipped
            // (the in-memory series count them twice until a restart; losing
            // them would be worse).
            self.core.restore_applied(applied_before);
        }
        for d in done {
            let r = if ok {
                d.ack().await
            } else {
                d.nak(Some(Duration::from_secs(1))).await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "settling a metric sample failed; it will come again");
            }
        }
        for (d, reason) in refused {
            tracing::warn!(subject = %d.message.subject, %reason, "dead-lettering a metric sample");
            if let Err(e) = d.term(reason).await {
                tracing::warn!(error = %e, "dead-lettering a metric sample failed");
            }
        }
    }

    /// Run events from the stream: each counted (a run or step already
    /// counted is skipped by its stored key, so a redelivery counts nothing),
    /// the writes flushed, then every delivery acknowledged; when the store
    /// fails, the rest are handed back to come again.
    async fn run_events(&mut self, batch: Vec<(v1::RunEvent, Delivery)>, now: DateTime<Utc>) {
        let mut ok = true;
        for (e, _) in &batch {
            // A succeeded run with deliverables: its pieces, from its outputs.
            let pieces = match self.core.wants_pieces(e) {
                Ok(true) => {
                    let steps = self
                        .core
                        .deliverable_steps(&e.workflow)
                        .unwrap_or_default()
                        .to_vec();
                    let n =
                        crate::pieces::pieces_of_run(self.bus.as_ref(), &e.run_id, &steps).await;
                    match self.core.deliverables_made(e, n, now) {
                        Ok(out) => self.commit(out, false).await,
                        Err(err) => Err(err.into()),
                    }
                }
                Ok(false) => Ok(()),
                Err(err) => Err(err.into()),
            };
            if let Err(err) = pieces {
                tracing::error!(run = %e.run_id, error = %err, "a run's deliverables could not be counted; it will come again");
                ok = false;
                break;
            }
            let counted = match self.core.run_event(e, now) {
                Ok(out) => self.commit(out, false).await,
                Err(err) => Err(err.into()),
            };
            if let Err(err) = counted {
                tracing::error!(run = %e.run_id, error = %err, "a run event could not be counted; it will come again");
                ok = false;
                break;
            }
        }
        if ok && self.dirty {
            ok = self.flush().await.is_ok();
        }
        for (_, d) in batch {
            let r = if ok {
                d.ack().await
            } else {
                d.nak(Some(Duration::from_secs(1))).await
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "settling a run event failed; it will come again");
            }
        }
    }

    /// Publishes the crossings, then writes (and, with `flush`, flushes) the store.
    async fn commit(&mut self, out: Outcome, flush: bool) -> Result<(), TrackerError> {
        for x in &out.crossings {
            let subject = subjects::metric_event(&x.metric);
            let id = format!(
                "{}@{}@{}",
                x.predicate,
                x.entered,
                x.at.as_ref()
                    .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
                    .unwrap_or(0)
            );
            if let Err(e) = self.bus.publish_durable_proto(&subject, x, &id).await {
                tracing::warn!(error = %e, %subject, "storing a threshold event failed; publishing it without the stream");
                if let Err(e) = self.bus.publish_proto(&subject, x).await {
                    tracing::error!(error = %e, %subject, "publishing a threshold event failed");
                }
            }
        }
        if !out.ops.is_empty() {
            self.store.apply(TREE, out.ops)?;
            self.dirty = true;
        }
        if flush && self.dirty {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TrackerError> {
        let s = self.store.clone();
        tokio::task::spawn_blocking(move || s.flush())
            .await
            .map_err(|e| StoreError::from_message(format!("store flush task: {e}")))??;
        self.dirty = false;
        Ok(())
    }
}
