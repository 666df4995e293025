//! The orchestrator as a service: an actix actor owning the [`Engine`], fed by
//! intake loops that fetch from the bus and carry out effects after a flush.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use concierto_bus::{
    Bus, BusExt, Consumer, ConsumerSpec, Delivery, StreamLimits, encode, ensure_standard_streams,
};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::service::{ServiceHandle, StopSignal};
use concierto_core::store::{KvStore, StoreError};
use concierto_core::subjects;
use concierto_proto::v1;
use futures::FutureExt as _;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::engine::{Effects, Engine, EngineError, Limits};
use crate::gates::DecisionKind;
use crate::replica::Replication;

/// Why the orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The bus failed.
    #[error("bus: {0}")]
    Bus(#[from] concierto_bus::BusError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings.
#[derive(Debug, Clone)]
pub struct OrchestratorOptions {
    /// Limits, queue aging and backoff.
    pub limits: Limits,
    /// How often timeouts and retries are checked.
    pub tick: Duration,
    /// Longest wait of one fetch from the bus.
    pub fetch_wait: Duration,
    /// Messages taken per fetch.
    pub batch: usize,
    /// `ack_wait` of the orchestrator's consumers.
    pub ack_wait: Duration,
    /// Stream limits (from `server.bus`).
    pub streams: StreamLimits,
    /// The studio file, which an approved change gate rewrites; `None`: change
    /// gates cannot be approved (only rejected).
    pub studio_file: Option<std::path::PathBuf>,
}

impl Default for OrchestratorOptions {
    fn default() -> Self {
        OrchestratorOptions {
            limits: Limits::default(),
            tick: Duration::from_millis(250),
            fetch_wait: Duration::from_millis(500),
            batch: 128,
            ack_wait: Duration::from_secs(30),
            streams: StreamLimits::default(),
            studio_file: None,
        }
    }
}

/// How often the queue is reported to the tracker when it does not change
/// (`metric.queue_depth`, `metric.queue_oldest_seconds`), on the clock.
const QUEUE_REPORT_EVERY: Duration = Duration::from_secs(10);

struct Orchestrator {
    engine: Engine,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    studio_file: Option<std::path::PathBuf>,
}

/// A changed studio, from the process's reloader.
struct SetStudio(Arc<Studio>);

impl actix::Message for SetStudio {
    type Result = ();
}

impl Handler<SetStudio> for Orchestrator {
    type Result = ();

    fn handle(&mut self, msg: SetStudio, _: &mut Context<Self>) {
        tracing::info!(
            workflows = msg.0.workflows.len(),
            "studio changed: new runs, loops and gates use it; runs in flight keep their steps"
        );
        self.engine.set_studio(msg.0);
    }
}

impl Actor for Orchestrator {
    type Context = Context<Self>;
}

#[derive(Clone)]
enum Input {
    Start(v1::StartRun),
    Result(v1::TaskResult),
    Feedback(v1::Feedback),
    Context(v1::AgentContext),
    Tick,
    /// An input with the `traceparent` of its trace (a run's start keeps it).
    Traced(Box<Input>, String),
}

struct Apply(Vec<Input>);

/// What one [`Apply`] did: the effects of the inputs applied, and the inputs
/// left unapplied because the store could not be read (to be applied again
/// once it can; their deliveries are held meanwhile).
struct Applied {
    fx: Effects,
    left: Vec<Input>,
    error: Option<StoreError>,
}

impl actix::Message for Apply {
    type Result = Applied;
}

impl Orchestrator {
    fn apply_one(&mut self, input: Input, now: DateTime<Utc>) -> Result<Effects, StoreError> {
        let (input, trace) = match input {
            Input::Traced(input, trace) => (*input, trace),
            input => (input, String::new()),
        };
        match input {
            Input::Start(s) => self.engine.start_run_traced(s, trace, now),
            Input::Result(r) => self.engine.apply_result(r, now),
            Input::Feedback(f) => self.engine.start_feedback_traced(f, trace, now),
            Input::Traced(..) => Ok(Effects::default()),
            Input::Context(c) => {
                self.engine.apply_context(c)?;
                Ok(Effects::default())
            }
            Input::Tick => self.engine.tick(now),
        }
    }
}

impl Handler<Apply> for Orchestrator {
    type Result = MessageResult<Apply>;

    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        let mut out = Applied {
            fx: Effects::default(),
            left: Vec::new(),
            error: None,
        };
        for input in msg.0 {
            if out.error.is_some() || !self.store.readable() {
                if out.error.is_none() {
                    out.error = Some(StoreError::from_message(
                        "the store cannot be read until it is reopened",
                    ));
                }
                // A tick that could not run is not worth keeping: the next one comes.
                if !matches!(input, Input::Tick) {
                    out.left.push(input);
                }
                continue;
            }
            let keep = input.clone();
            match self.apply_one(input, now) {
                Ok(fx) => out.fx.extend(fx),
                Err(e) => {
                    if !matches!(keep, Input::Tick) {
                        out.left.push(keep);
                    }
                    out.error = Some(e);
                }
            }
        }
        out.fx
            .metrics
            .extend(self.engine.queue_samples(now, QUEUE_REPORT_EVERY));
        MessageResult(out)
    }
}

struct Recover;

impl actix::Message for Recover {
    type Result = Result<Effects, StoreError>;
}

impl Handler<Recover> for Orchestrator {
    type Result = Result<Effects, StoreError>;

    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        self.engine.recover(now)
    }
}

enum Query {
    Get(v1::GetRunRequest),
    List(v1::ListRunsRequest),
    Cancel(v1::CancelRunRequest),
    Retry(v1::RetryRunRequest, String),
    ListGates(v1::ListGatesRequest),
    GetGate(v1::GetGateRequest),
    DecideGate(v1::DecideGateRequest, String),
    Spend(v1::GetSpendRequest),
}

enum Answer {
    Get(v1::GetRunResponse),
    List(v1::ListRunsResponse),
    Cancel(v1::CancelRunResponse, Effects),
    Retry(v1::RetryRunResponse, Effects),
    ListGates(v1::ListGatesResponse),
    GetGate(v1::GetGateResponse),
    DecideGate(v1::DecideGateResponse, Effects),
    Spend(v1::GetSpendResponse),
}

impl actix::Message for Query {
    type Result = Result<Answer, EngineError>;
}

impl Handler<Query> for Orchestrator {
    type Result = Result<Answer, EngineError>;

    fn handle(&mut self, q: Query, _: &mut Context<Self>) -> Self::Result {
        match q {
            Query::Get(r) => {
                let id = self.engine.resolve_run(&r.run_id)?;
                match self.engine.get(&id)? {
                    Some(run) => Ok(Answer::Get(v1::GetRunResponse { run: Some(run) })),
                    None => Err(EngineError::NotFound(r.run_id)),
                }
            }
            Query::List(r) => Ok(Answer::List(self.engine.list(&r)?)),
            Query::Cancel(r) => {
                let id = self.engine.resolve_run(&r.run_id)?;
                let (run, fx) = self.engine.cancel(&id, &r.reason, self.clock.now())?;
                Ok(Answer::Cancel(v1::CancelRunResponse { run: Some(run) }, fx))
            }
            Query::Retry(r, who) => {
                let (run_id, fx) =
                    self.engine
                        .retry_run(&r.run_id, r.from_start, &who, self.clock.now())?;
                Ok(Answer::Retry(v1::RetryRunResponse { run_id }, fx))
            }
            Query::ListGates(r) => Ok(Answer::ListGates(self.engine.list_gates(&r)?)),
            Query::Spend(r) => Ok(Answer::Spend(
                self.engine.spend_report(r.days, self.clock.now())?,
            )),
            Query::GetGate(r) => {
                let id = self.engine.resolve_gate(&r.gate_id)?;
                match self.engine.get_gate(&id)? {
                    Some(g) => Ok(Answer::GetGate(v1::GetGateResponse { gate: Some(g) })),
                    None => Err(EngineError::NotFound(r.gate_id)),
                }
            }
            Query::DecideGate(mut r, who) => {
                r.gate_id = self.engine.resolve_gate(&r.gate_id)?;
                let kind = match v1::GateDecisionKind::try_from(r.decision) {
                    Ok(v1::GateDecisionKind::Approve) => DecisionKind::Approve,
                    Ok(v1::GateDecisionKind::Reject) => DecisionKind::Reject,
                    Ok(v1::GateDecisionKind::RequestChanges) => DecisionKind::RequestChanges,
                    _ => {
                        return Err(EngineError::Invalid(
                            "decision must be APPROVE, REJECT or REQUEST_CHANGES".into(),
                        ));
                    }
                };
                if who.trim().is_empty() {
                    return Err(EngineError::Invalid(
                        "a gate decision needs the reviewer's identity".into(),
                    ));
                }
                let now = self.clock.now();
                // An approved change is written (validated) before the
                // decision is recorded: on an error the gate stays open.
                let change = match self.engine.change_to_apply(&r.gate_id, &who, kind)? {
                    Some((gate, list)) => Some((
                        gate.clone(),
                        crate::changes::apply(
                            self.studio_file.as_deref(),
                            &gate,
                            &list,
                            &who,
                            now,
                        )?,
                    )),
                    None => None,
                };
                let (gate, mut fx) = self
                    .engine
                    .decide_gate(&r.gate_id, &who, kind, &r.notes, now)?;
                if let Some((record, (applied, publication))) = change {
                    self.engine
                        .record_change(&record, &who, &applied, now, &mut fx)?;
                    self.engine.set_studio(Arc::new(applied.studio));
                    fx.studio.push(publication);
                }
                Ok(Answer::DecideGate(
                    v1::DecideGateResponse { gate: Some(gate) },
                    fx,
                ))
            }
        }
    }
}

/// Makes every write so far durable.
async fn flush(store: &Arc<dyn KvStore>) -> Result<(), String> {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("store flush task: {e}")),
    }
}

/// The health key `/readyz` shows while the orchestrator's store fails
/// (`orchestrator.p<k>.store` for partition k of several).
const STORE_HEALTH: &str = "orchestrator.store";

/// The health key while inputs wait because the store cannot be read
/// (`orchestrator.p<k>.store.read`).
const STORE_READ_HEALTH: &str = "orchestrator.store.read";

/// Publishes tasks (durably) and events. False if a task could not be published:
/// its step stays dispatched and its timeout publishes it again.
async fn publish(bus: &Arc<dyn Bus>, fx: Effects) -> bool {
    let mut ok = true;
    let publishes = fx.tasks.iter().map(|t| {
        let subject = subjects::task(&t.role);
        let run_trace = fx.traces.get(&t.run_id).map(String::as_str);
        // A child of the run's span; the agent's span for the task is its child.
        let span = tracing::info_span!(
            "orchestrator.dispatch",
            service = "orchestrator",
            run_id = %t.run_id,
            step_id = %t.step_id,
            role = %t.role,
            task_id = %t.task_id,
            attempt = t.attempt,
        );
        concierto_telemetry::follow(&span, run_trace);
        let mut out = encode(t).msg_id(t.task_id.clone());
        if let Some(tp) =
            concierto_telemetry::span_traceparent(&span).or_else(|| run_trace.map(str::to_string))
        {
            out = out.traceparent(tp);
        }
        let bus = bus.clone();
        async move { (bus.publish_durable(&subject, out).await, t.task_id.clone()) }
            .instrument(span)
    });
    for (result, task_id) in futures::future::join_all(publishes).await {
        if let Err(e) = result {
            tracing::error!(task = %task_id, error = %e, "publishing a task failed");
            ok = false;
        }
    }
    for ev in &fx.events {
        if let Err(e) = bus
            .publish_proto(&subjects::run_event(&ev.run_id), ev)
            .await
        {
            tracing::warn!(run = %ev.run_id, error = %e, "publishing a run event failed");
        }
    }
    for (kind, gate) in &fx.gates {
        if let Err(e) = bus.publish_proto(&subjects::gate_event(kind), gate).await {
            tracing::warn!(error = %e, "publishing a gate event failed");
        }
    }
    // Durable, so the tracker takes them even if it is down now.
    for m in &fx.metrics {
        if let Err(e) = bus
            .publish_durable(&subjects::metric_sample(&m.metric), encode(m))
            .await
        {
            tracing::warn!(metric = %m.metric, error = %e, "publishing a metric sample failed");
        }
    }
    // Every process applies the new studio; the record is durable.
    for p in &fx.studio {
        if let Err(e) = bus
            .publish_proto(subjects::STUDIO_CHANGED, &p.announce)
            .await
        {
            tracing::warn!(error = %e, "announcing the changed studio failed; other processes pick it up on SIGHUP or a restart");
        }
        if let Err(e) = bus
            .publish_durable(subjects::STUDIO_CHANGE_APPLIED, encode(&p.applied))
            .await
        {
            tracing::warn!(error = %e, "publishing the studio change record failed");
        }
    }
    // Durable (stream EVENTS), message id = run id: the feedback service
    // tells the escalation contacts, once per run.
    for f in &fx.run_failed {
        if let Err(e) = bus
            .publish_durable(subjects::RUN_FAILED, encode(f).msg_id(f.run_id.clone()))
            .await
        {
            tracing::warn!(run = %f.run_id, error = %e, "publishing a run failure alert failed");
        }
    }
    // Durable (stream EVENTS), so a notifier that is down hears of it later.
    for b in &fx.budgets {
        if let Err(e) = bus
            .publish_durable(&subjects::budget_event(&b.scope), encode(b))
            .await
        {
            tracing::warn!(limit = %b.limit, error = %e, "publishing a budget event failed");
        }
    }
    ok
}

async fn settle(deliveries: Vec<Delivery>, ok: bool) {
    for d in deliveries {
        let r = if ok {
            d.ack().await
        } else {
            d.nak(Some(Duration::from_secs(1))).await
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "settling a delivery failed; it will be redelivered");
        }
    }
}

/// Which partition an orchestrator owns (DESIGN.md section 3, "partitioned
/// orchestrators") and where its state is written through.
#[derive(Clone)]
pub struct PartitionSetup {
    /// The partition, `0..partitions`.
    pub k: u32,
    /// `server.partitions`; 1: unpartitioned (subjects `run.start`,
    /// `result.>`, the plain query subjects, consumers `orchestrator`).
    pub partitions: u32,
    /// The store's write-through to the partition's bucket, if any.
    pub replication: Option<Replication>,
}

impl PartitionSetup {
    /// One partition, nothing written through: the orchestrator as before partitions.
    pub fn single() -> Self {
        PartitionSetup {
            k: 0,
            partitions: 1,
            replication: None,
        }
    }

    fn partitioned(&self) -> bool {
        self.partitions > 1
    }

    /// The durable name of this partition's consumer of `what`.
    fn durable(&self, what: &str) -> String {
        if self.partitioned() {
            format!("orchestrator-p{}-{what}", self.k)
        } else {
            "orchestrator".to_string()
        }
    }

    /// The subject this partition answers `subject` on.
    fn query_subject(&self, subject: &str) -> String {
        if self.partitioned() {
            subjects::orchestrator_partition(self.k, subject)
        } else {
            subject.to_string()
        }
    }
}

/// Starts the orchestrator. Must run inside an actix `System`.
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: OrchestratorOptions,
) -> Result<ServiceHandle, OrchestratorError> {
    start_partition(studio, bus, store, clock, opts, PartitionSetup::single()).await
}

/// Starts the orchestrator of one partition: its consumers
/// (`run_start_partition`, `results_partition`, contexts; feedback only when
/// unpartitioned: in a partitioned studio the router of partition 0 turns
/// feedback into run starts), its query subjects and its committer, which
/// writes the store through to the partition's bucket after each flush.
/// Must run inside an actix `System`.
pub async fn start_partition(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: OrchestratorOptions,
    part: PartitionSetup,
) -> Result<ServiceHandle, OrchestratorError> {
    ensure_standard_streams(bus.as_ref(), &opts.streams).await?;
    let consumer = |what: &str, filter: &str| {
        let mut spec = ConsumerSpec::new(part.durable(what), filter);
        spec.ack_wait = opts.ack_wait;
        spec.max_deliver = 10;
        // The orchestrator drains what it pulls at once: let the bus pull ahead.
        spec.prefetch = opts.batch * 2;
        spec
    };
    let (k, p) = (part.k, part.partitions);
    let runs = bus
        .consumer(
            "RUNS",
            &consumer("runs", &subjects::run_start_partition(k, p)),
        )
        .await?;
    let results = bus
        .consumer(
            "RESULTS",
            &consumer("results", &subjects::results_partition(k, p)),
        )
        .await?;
    let feedback = if part.partitioned() {
        None
    } else {
        Some(
            bus.consumer("FEEDBACK", &consumer("feedback", subjects::FEEDBACK_IN))
                .await?,
        )
    };
    let contexts = bus
        .consumer("EVENTS", &consumer("contexts", subjects::CONTEXT))
        .await?;

    let mut engine = Engine::new(studio, store.clone(), opts.limits.clone());
    engine.set_partition(k, p);
    let addr = Orchestrator {
        engine,
        store: store.clone(),
        clock: clock.clone(),
        studio_file: opts.studio_file.clone(),
    }
    .start();
    let (handle, control) = ServiceHandle::new("orchestrator");
    let to_actor = addr.clone();
    let handle = handle.on_studio_change(move |studio| to_actor.do_send(SetStudio(studio)));
    let signal = control.signal.clone();
    let writable = Writable::new(&part);
    let (committer, committed) = mpsc::channel::<Pending>(1024);
    let (flusher, publisher) = spawn_committer(
        store.clone(),
        part.replication.clone(),
        bus.clone(),
        committed,
        writable.clone(),
        signal.clone(),
        opts.ack_wait,
    );
    let fx = addr
        .send(Recover)
        .await
        .map_err(|e| StoreError::from_message(format!("orchestrator actor: {e}")))??;
    let _ = committer.send(Pending::new(fx, Vec::new())).await;
    let mut tasks = vec![
        spawn_intake(
            "run starts",
            runs,
            Input::Start,
            addr.clone(),
            committer.clone(),
            signal.clone(),
            writable.clone(),
            &opts,
        ),
        spawn_intake(
            "results",
            results,
            Input::Result,
            addr.clone(),
            committer.clone(),
            signal.clone(),
            writable.clone(),
            &opts,
        ),
        spawn_intake(
            "contexts",
            contexts,
            Input::Context,
            addr.clone(),
            committer.clone(),
            signal.clone(),
            writable.clone(),
            &opts,
        ),
    ];
    if let Some(feedback) = feedback {
        tasks.push(spawn_intake(
            "feedback",
            feedback,
            Input::Feedback,
            addr.clone(),
            committer.clone(),
            signal.clone(),
            writable.clone(),
            &opts,
        ));
    }
    // Timeouts and retries.
    {
        let (addr, mut signal, committer, writable) = (
            addr.clone(),
            signal.clone(),
            committer.clone(),
            writable.clone(),
        );
        let every = opts.tick;
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = signal.stopped() => break,
                    _ = interval.tick() => apply(&addr, &committer, vec![Input::Tick], Vec::new(), &signal, &writable).await,
                }
            }
        }));
    }
    tasks.push(
        spawn_heartbeats(
            bus.as_ref(),
            addr.clone(),
            committer.clone(),
            signal.clone(),
        )
        .await?,
    );
    // Deliverables left in the outbox (a crash between a commit and its publish).
    tasks.push(crate::deliverables::spawn_resender(
        bus.clone(),
        store.clone(),
        (opts.tick * 20).max(Duration::from_secs(1)),
        signal.clone(),
    ));
    // Queries.
    let queries = tokio::spawn(serve_queries(
        addr.clone(),
        bus.clone(),
        committer.clone(),
        part.clone(),
    ));

    tokio::spawn(async move {
        let mut signal: StopSignal = control.signal.clone();
        signal.stopped().await;
        // The intake loops end after their current fetch and commit.
        let mut result = Ok(());
        for t in tasks {
            if let Err(e) = t.await {
                result = Err(format!("orchestrator task failed: {e}"));
            }
        }
        queries.abort();
        // The intake loops held the last senders: the committer drains and ends.
        drop(committer);
        for t in [flusher, publisher] {
            if let Err(e) = t.await {
                result = Err(format!("orchestrator committer failed: {e}"));
            }
        }
        if let Err(e) = store.flush() {
            result = Err(format!("final flush: {e}"));
        }
        addr.do_send(StopActor);
        tracing::info!("orchestrator stopped");
        control.finished(result);
    });
    Ok(handle)
}

/// A worker's heartbeat (`agent.heartbeat.<role>.<worker>`): the live
/// capacity behind each role's in-flight limit (see `capacity.rs`).
struct Heartbeat(v1::AgentHeartbeat);

impl actix::Message for Heartbeat {
    type Result = Result<Effects, StoreError>;
}

impl Handler<Heartbeat> for Orchestrator {
    type Result = Result<Effects, StoreError>;

    fn handle(&mut self, msg: Heartbeat, _: &mut Context<Self>) -> Self::Result {
        let now = self.clock.now();
        self.engine.apply_heartbeat(&msg.0, now)
    }
}

/// Hears every worker's heartbeats (core NATS: a lost one only delays a
/// change of capacity) and hands them to the actor; what a rise in capacity
/// dispatches goes through the committer like any other effect.
async fn spawn_heartbeats(
    bus: &dyn Bus,
    addr: Addr<Orchestrator>,
    committer: mpsc::Sender<Pending>,
    mut signal: StopSignal,
) -> Result<tokio::task::JoinHandle<()>, OrchestratorError> {
    let mut beats = bus
        .subscribe_proto::<v1::AgentHeartbeat>(subjects::HEARTBEATS)
        .await?;
    Ok(tokio::spawn(async move {
        loop {
            let beat = tokio::select! {
                _ = signal.stopped() => break,
                beat = beats.next() => beat,
            };
            let Some((hb, _)) = beat else { break };
            match addr.send(Heartbeat(hb)).await {
                Ok(Ok(fx)) if fx.tasks.is_empty() && fx.events.is_empty() => {}
                Ok(Ok(fx)) => {
                    let _ = committer.send(Pending::new(fx, Vec::new())).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "applying a heartbeat failed; the next one applies it");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "orchestrator actor unavailable for a heartbeat");
                    break;
                }
            }
        }
    }))
}

struct StopActor;

impl actix::Message for StopActor {
    type Result = ();
}

impl Handler<StopActor> for Orchestrator {
    type Result = ();
    fn handle(&mut self, _: StopActor, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Effects of one applied batch, the deliveries that caused it, and who
/// waits for them to be durable (a cancel or gate decision answered after).
struct Pending {
    fx: Effects,
    deliveries: Vec<Delivery>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Pending {
    fn new(fx: Effects, deliveries: Vec<Delivery>) -> Self {
        Pending {
            fx,
            deliveries,
            done: None,
        }
    }
}

/// False while the store fails: the intake stops fetching (what it holds
/// waits, kept from redelivery, instead of counting toward `max_deliver`).
/// Also names the partition's store health keys: each partition of a
/// process reports (and clears) its own.
#[derive(Clone)]
struct Writable(Arc<std::sync::atomic::AtomicBool>, Arc<(String, String)>);

impl Writable {
    fn new(part: &PartitionSetup) -> Self {
        let keys = if part.partitioned() {
            (
                STORE_HEALTH.replacen("orchestrator.", &format!("orchestrator.p{}.", part.k), 1),
                STORE_READ_HEALTH.replacen(
                    "orchestrator.",
                    &format!("orchestrator.p{}.", part.k),
                    1,
                ),
            )
        } else {
            (STORE_HEALTH.to_string(), STORE_READ_HEALTH.to_string())
        };
        Writable(
            Arc::new(std::sync::atomic::AtomicBool::new(true)),
            Arc::new(keys),
        )
    }
    fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn set(&self, v: bool) {
        self.0.store(v, std::sync::atomic::Ordering::SeqCst);
    }
    /// The key while the store fails.
    fn store_key(&self) -> &str {
        &self.1.0
    }
    /// The key while the store cannot be read.
    fn read_key(&self) -> &str {
        &self.1.1
    }
}

/// Restarts the `ack_wait` of every delivery in `group`.
async fn keep_alive(group: &[Pending]) {
    for p in group {
        for d in &p.deliveries {
            if let Err(e) = d.in_progress().await {
                tracing::debug!(error = %e, "extending a held delivery failed");
            }
        }
    }
}

/// Flushes until it works. A store error is not the messages' fault: they are
/// held (their `ack_wait` restarted, never nak'd, so they do not count toward
/// `max_deliver`), the store is reopened and flushed again with backoff, and
/// `/readyz` says not ready until it heals. False only when a stop came while
/// the store still failed: the group's effects are then dropped and its
/// deliveries handed back (nak'd) by the caller.
async fn flush_until_durable(
    store: &Arc<dyn KvStore>,
    replication: Option<&Replication>,
    rx: &mut mpsc::Receiver<Pending>,
    group: &mut Vec<Pending>,
    writable: &Writable,
    signal: &StopSignal,
    ack_wait: Duration,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    let mut kept_alive = tokio::time::Instant::now();
    let mut failures = 0u64;
    loop {
        // The flush and the write-through run together (one disk sync and
        // one bus round trip at once, not one after the other); the group
        // goes on only once both are done.
        let durable = match replication {
            Some(r) => {
                let (flushed, written) = tokio::join!(flush(store), r.write_through());
                flushed.and(written)
            }
            None => flush(store).await,
        };
        match durable {
            Ok(()) => {
                if failures > 0 {
                    writable.set(true);
                    concierto_core::health::clear(writable.store_key());
                    tracing::info!(
                        failures,
                        held = group.len(),
                        "store writable again; held work goes on"
                    );
                }
                return true;
            }
            Err(e) => {
                failures += 1;
                writable.set(false);
                let held: usize = group.iter().map(|p| p.deliveries.len()).sum();
                concierto_core::health::set_unready(
                    writable.store_key(),
                    format!("the orchestrator's store fails ({e}); {held} messages held"),
                );
                if failures == 1 {
                    tracing::error!(error = %e, held, "store flush failed; holding the work and retrying");
                }
                if signal.is_stopped() && failures > 3 {
                    tracing::error!(
                        error = %e,
                        held,
                        "stopping while the store fails: held messages are handed back"
                    );
                    return false;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        // What reaches the committer meanwhile waits in this group too.
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        if kept_alive.elapsed() >= ack_wait / 3 {
            keep_alive(group).await;
            kept_alive = tokio::time::Instant::now();
        }
    }
}

/// Group commit, in two stages so that one group's publishing overlaps the next
/// group's flush: (1) take every batch waiting, flush the store once; (2) publish
/// their tasks and events, then settle their deliveries. A batch's effects are
/// never published before the flush that covers its writes.
fn spawn_committer(
    store: Arc<dyn KvStore>,
    replication: Option<Replication>,
    bus: Arc<dyn Bus>,
    mut rx: mpsc::Receiver<Pending>,
    writable: Writable,
    signal: StopSignal,
    ack_wait: Duration,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let (flushed_tx, mut flushed_rx) = mpsc::channel::<Vec<Pending>>(4);
    let outbox = store.clone();
    let flusher = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut group = vec![first];
            while group.len() < 512 {
                match rx.try_recv() {
                    Ok(more) => group.push(more),
                    Err(_) => break,
                }
            }
            if !flush_until_durable(
                &store,
                replication.as_ref(),
                &mut rx,
                &mut group,
                &writable,
                &signal,
                ack_wait,
            )
            .await
            {
                // Stopping with the group not durable: its effects are
                // dropped and its messages handed back at once (to the
                // process that takes the partition, or this one restarted).
                for p in group {
                    settle(p.deliveries, false).await;
                }
                continue;
            }
            if flushed_tx.send(group).await.is_err() {
                break;
            }
        }
    });
    let publisher = tokio::spawn(async move {
        while let Some(group) = flushed_rx.recv().await {
            let mut fx = Effects::default();
            let mut deliveries = Vec::new();
            let mut waiting = Vec::new();
            for p in group {
                fx.extend(p.fx);
                deliveries.extend(p.deliveries);
                waiting.extend(p.done);
            }
            let made = std::mem::take(&mut fx.deliverables);
            crate::deliverables::send(&bus, &outbox, &made).await;
            let ok = publish(&bus, fx).await;
            for w in waiting {
                let _ = w.send(());
            }
            settle(deliveries, ok).await;
        }
    });
    (flusher, publisher)
}

/// Fetches `M`s from `consumer` until stopped, applying each batch in the actor.
/// While the store fails it fetches nothing.
#[allow(clippy::too_many_arguments)]
fn spawn_intake<M: concierto_bus::ProtoMessage>(
    what: &'static str,
    consumer: Consumer,
    wrap: fn(M) -> Input,
    addr: Addr<Orchestrator>,
    committer: mpsc::Sender<Pending>,
    signal: StopSignal,
    writable: Writable,
    opts: &OrchestratorOptions,
) -> tokio::task::JoinHandle<()> {
    let (wait, batch) = (opts.fetch_wait, opts.batch);
    tokio::spawn(async move {
        while !signal.is_stopped() {
            if !writable.get() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let got = match consumer.fetch_proto::<M>(batch, wait).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "fetching {what} failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if got.is_empty() {
                continue;
            }
            let mut inputs = Vec::with_capacity(got.len());
            let mut spans = Vec::with_capacity(got.len());
            let mut deliveries = Vec::with_capacity(got.len());
            for (m, d) in got {
                let (input, span) = traced(wrap(m), d.message.traceparent());
                inputs.push(input);
                spans.push(span);
                deliveries.push(d);
            }
            apply(&addr, &committer, inputs, deliveries, &signal, &writable).await;
            // The spans cover each message's handling up to its batch applied.
            drop(spans);
        }
    })
}

/// The span handling `input` (a child of the message's `traceparent`), and the
/// input with the trace it continues: a run keeps its start's span context so
/// its tasks continue the trace (without span export, the context it came with).
fn traced(input: Input, traceparent: Option<&str>) -> (Input, tracing::Span) {
    let span = match &input {
        Input::Start(s) => tracing::info_span!(
            "orchestrator.start_run",
            service = "orchestrator",
            run_id = %s.run_id,
            workflow = %s.workflow,
            trigger = %s.trigger,
        ),
        Input::Result(r) => tracing::info_span!(
            "orchestrator.result",
            service = "orchestrator",
            run_id = %r.run_id,
            step_id = %r.step_id,
            role = %r.role,
            task_id = %r.task_id,
            attempt = r.attempt,
            status = r.status().as_str_name(),
        ),
        Input::Feedback(f) => tracing::info_span!(
            "orchestrator.feedback",
            service = "orchestrator",
            feedback_id = %f.feedback_id,
        ),
        _ => return (input, tracing::Span::none()),
    };
    concierto_telemetry::follow(&span, traceparent);
    let keeps_trace = matches!(input, Input::Start(_) | Input::Feedback(_));
    let trace = concierto_telemetry::span_traceparent(&span)
        .or_else(|| traceparent.map(str::to_string))
        .filter(|_| keeps_trace);
    match trace {
        Some(trace) => (Input::Traced(Box::new(input), trace), span),
        None => (input, span),
    }
}

/// Applies `inputs` in the actor and hands the effects to the committer.
/// Inputs the store could not take yet are applied again with backoff while
/// their deliveries are held (`ack_wait` restarted, never nak'd).
async fn apply(
    addr: &Addr<Orchestrator>,
    committer: &mpsc::Sender<Pending>,
    inputs: Vec<Input>,
    deliveries: Vec<Delivery>,
    signal: &StopSignal,
    writable: &Writable,
) {
    let mut fx = Effects::default();
    let mut inputs = inputs;
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0u32;
    loop {
        let applied = match addr.send(Apply(inputs)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "orchestrator actor unavailable; messages handed back");
                settle(deliveries, false).await;
                return;
            }
        };
        fx.extend(applied.fx);
        if applied.left.is_empty() {
            if failures > 0 {
                concierto_core::health::clear(writable.read_key());
            }
            break;
        }
        inputs = applied.left;
        failures += 1;
        let why = applied
            .error
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the store cannot be read".into());
        concierto_core::health::set_unready(
            writable.read_key(),
            format!("{} messages wait for the store: {why}", inputs.len()),
        );
        if failures == 1 {
            tracing::error!(error = %why, waiting = inputs.len(), "store read failed; holding the messages and retrying");
        }
        if signal.is_stopped() && failures > 3 {
            // Handed back: delivered again to whoever runs next.
            tracing::error!(error = %why, "stopping while the store fails: held messages are handed back");
            concierto_core::health::clear(writable.read_key());
            settle(deliveries, false).await;
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        for d in &deliveries {
            let _ = d.in_progress().await;
        }
    }
    if let Err(mpsc::error::SendError(p)) = committer.send(Pending::new(fx, deliveries)).await {
        settle(p.deliveries, false).await;
    }
}

fn error_reply(e: &EngineError) -> concierto_bus::Outgoing {
    let code = match e {
        EngineError::NotFound(_) => "not_found",
        EngineError::Final(..) | EngineError::GateClosed(..) => "failed_precondition",
        EngineError::NotReviewer { .. } => "permission_denied",
        EngineError::Invalid(_) | EngineError::Ambiguous(_) => "invalid_argument",
        EngineError::Precondition(_) => "failed_precondition",
        EngineError::Store(_) => "internal",
    };
    concierto_bus::Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, format!("{code}: {e}"))
}

/// Forwards the requests of one subject, as queries, to `tx`.
async fn forward<M: concierto_bus::ProtoMessage>(
    bus: &Arc<dyn Bus>,
    subject: String,
    wrap: fn(M, &concierto_bus::Message) -> Query,
    tx: mpsc::Sender<(Query, String)>,
) -> Result<tokio::task::JoinHandle<()>, concierto_bus::BusError> {
    let mut sub = bus
        .queue_subscribe_proto::<M>(&subject, "orchestrator")
        .await?;
    Ok(tokio::spawn(async move {
        while let Some((q, m)) = sub.next().await {
            let Some(reply) = m.reply.clone() else {
                continue;
            };
            if tx.send((wrap(q, &m), reply)).await.is_err() {
                break;
            }
        }
    }))
}

/// Hands `fx` to the committer and waits until it is durable and published.
async fn commit(committer: &mpsc::Sender<Pending>, fx: Effects) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pending = Pending {
        fx,
        deliveries: Vec::new(),
        done: Some(tx),
    };
    if committer.send(pending).await.is_ok() {
        let _ = rx.await;
    }
}

async fn serve_queries(
    addr: Addr<Orchestrator>,
    bus: Arc<dyn Bus>,
    committer: mpsc::Sender<Pending>,
    part: PartitionSetup,
) {
    let on = |subject: &str| part.query_subject(subject);
    let (tx, mut rx) = mpsc::channel::<(Query, String)>(256);
    let subs = futures::future::try_join_all([
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_GET_RUN),
            |q, _| Query::Get(q),
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_LIST_RUNS),
            |q, _| Query::List(q),
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_CANCEL_RUN),
            |q, _| Query::Cancel(q),
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_RETRY_RUN),
            |q, m| {
                let who = m
                    .headers
                    .get(subjects::IDENTITY_HEADER)
                    .unwrap_or_default()
                    .to_string();
                Query::Retry(q, who)
            },
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_LIST_GATES),
            |q, _| Query::ListGates(q),
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_SPEND),
            |q, _| Query::Spend(q),
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_GET_GATE),
            |q, _| Query::GetGate(q),
            tx.clone(),
        )
        .boxed(),
        forward(
            &bus,
            on(subjects::ORCHESTRATOR_DECIDE_GATE),
            |q, m| {
                let who = m
                    .headers
                    .get(subjects::IDENTITY_HEADER)
                    .unwrap_or_default()
                    .to_string();
                Query::DecideGate(q, who)
            },
            tx.clone(),
        )
        .boxed(),
    ])
    .await;
    drop(tx);
    let forwarders = match subs {
        Ok(f) => AbortOnDrop(f),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve run and gate queries");
            return;
        }
    };
    while let Some((query, reply)) = rx.recv().await {
        let out = match addr.send(query).await {
            Ok(Ok(Answer::Get(r))) => encode(&r),
            Ok(Ok(Answer::List(r))) => encode(&r),
            Ok(Ok(Answer::ListGates(r))) => encode(&r),
            Ok(Ok(Answer::GetGate(r))) => encode(&r),
            Ok(Ok(Answer::Spend(r))) => encode(&r),
            Ok(Ok(Answer::Cancel(r, fx))) => {
                commit(&committer, fx).await;
                encode(&r)
            }
            Ok(Ok(Answer::Retry(r, fx))) => {
                commit(&committer, fx).await;
                encode(&r)
            }
            Ok(Ok(Answer::DecideGate(r, fx))) => {
                commit(&committer, fx).await;
                encode(&r)
            }
            Ok(Err(e)) => error_reply(&e),
            Err(e) => concierto_bus::Outgoing::new(Vec::new())
                .header(subjects::ERROR_HEADER, format!("unavailable: {e}")),
        };
        if let Err(e) = bus.respond(&reply, out).await {
            tracing::warn!(error = %e, "answering a query failed");
        }
    }
    drop(forwarders);
}

/// Aborts the tasks when dropped: the forwarders (and their subscriptions)
/// end with `serve_queries` even when it is aborted, so that a stopped
/// orchestrator leaves no member in the queue group to swallow requests.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            f.abort();
        }
    }
}
