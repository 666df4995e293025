//! The orchestrator's state machine, free of the bus so it can be tested alone:
//! runs and their steps, the work queue, in-flight limits, timeouts and retries.
//! Every change is written to the store before the caller flushes it and then
//! carries out the [`Effects`] (publishes tasks and events): a step is stored
//! before its task is published.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_core::config::{Priority, Step, Studio};
use concierto_core::store::{KvStore, Op, StoreError};
use concierto_core::subjects;
use concierto_proto::v1;

use crate::gates::{GateEvent, GateRecord, GateStatus};
use crate::queue::{Class, Queued, RoleId, WorkQueue};
use crate::run::{AuxKind, RunRecord, RunState, StepRecord, StepState};

pub(crate) const RUNS: &str = "runs";
/// Step id of a workflow's failure step.
pub const ON_FAILURE: &str = "on-failure";

/// Settings of the orchestrator.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Tasks in flight across all roles.
    pub max_in_flight: usize,
    /// Tasks in flight per role unless the role has its own.
    pub default_role_limit: usize,
    /// Per-role limits.
    pub role_limits: HashMap<String, usize>,
    /// Roles whose studio entry sets `replicas`: their live capacity is
    /// capped by their entry in `role_limits` (see `capacity.rs`).
    pub capped_roles: HashSet<String>,
    /// A worker not heard from for this long lapses, until two heartbeats
    /// show its spacing (then three of its intervals).
    pub heartbeat_lapse: Duration,
    /// Normal work older than this is served with urgent work.
    pub aging: Duration,
    /// First retry delay; doubles each attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Ended runs are removed this long after their last change
    /// (`server.retention`); `None`: kept forever.
    pub retention: Option<Duration>,
}

impl Limits {
    /// The defaults with each role's limit from the studio: `replicas ×
    /// max_in_flight` (1 and 4 when unset).
    pub fn for_studio(studio: &Studio) -> Limits {
        Limits {
            role_limits: role_limits(studio),
            capped_roles: capped_roles(studio),
            retention: studio.server.retention,
            ..Limits::default()
        }
    }
}

/// Each role's in-flight limit from the studio.
fn role_limits(studio: &Studio) -> HashMap<String, usize> {
    studio
        .agents
        .roles
        .iter()
        .map(|(role, settings)| {
            let replicas = settings.replicas.unwrap_or(1) as usize;
            let per = settings.max_in_flight.unwrap_or(4) as usize;
            (role.clone(), (replicas * per).max(1))
        })
        .collect()
}

/// The roles whose `replicas` the studio sets.
fn capped_roles(studio: &Studio) -> HashSet<String> {
    studio
        .agents
        .roles
        .iter()
        .filter(|(_, settings)| settings.replicas.is_some())
        .map(|(role, _)| role.clone())
        .collect()
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 256,
            default_role_limit: 32,
            role_limits: HashMap::new(),
            capped_roles: HashSet::new(),
            heartbeat_lapse: crate::capacity::DEFAULT_LAPSE,
            aging: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retention: Some(concierto_core::config::retention::DEFAULT_RETENTION),
        }
    }
}

/// What the caller must do once the store is flushed.
#[derive(Debug, Default)]
pub struct Effects {
    /// Tasks to publish on `task.<role>`.
    pub tasks: Vec<v1::Task>,
    /// The `traceparent` of the runs of `tasks`, by run id (runs without one
    /// are left out): each task's span is a child of it.
    pub traces: BTreeMap<String, String>,
    /// Events to publish on `run.event.<run>`.
    pub events: Vec<v1::RunEvent>,
    /// Gate changes to publish on `event.gate.<kind>`.
    pub gates: Vec<GateEvent>,
    /// Observations to publish on `metric.<name>` (durably, stream EVENTS):
    /// review scores, feedback response times, the queue per priority class.
    pub metrics: Vec<v1::MetricSample>,
    /// Deliverables of runs that succeeded, for `deliverable.<workflow>`.
    pub deliverables: Vec<v1::Deliverable>,
    /// Budgets reached, for `event.budget.<scope>`.
    pub budgets: Vec<v1::BudgetReached>,
    /// Approved studio changes to announce (`studio.changed`) and record
    /// (`event.studio.changed`).
    pub studio: Vec<crate::changes::StudioPublication>,
    /// Runs that failed with no `on_failure` path, for `event.run.failed`
    /// (durably, message id = run id).
    pub run_failed: Vec<v1::RunFailed>,
    /// Where in `events` the "queued" event of each step these effects
    /// queued is: a step dispatched by the same input has that event replaced
    /// by its "dispatched" one (one event, not two, for a step that never
    /// waited).
    queued_at: Vec<usize>,
}

impl Effects {
    /// Adds `other`'s effects after these.
    pub fn extend(&mut self, other: Effects) {
        self.tasks.extend(other.tasks);
        self.traces.extend(other.traces);
        let base = self.events.len();
        self.queued_at
            .extend(other.queued_at.into_iter().map(|i| base + i));
        self.events.extend(other.events);
        self.gates.extend(other.gates);
        self.metrics.extend(other.metrics);
        self.deliverables.extend(other.deliverables);
        self.budgets.extend(other.budgets);
        self.studio.extend(other.studio);
        self.run_failed.extend(other.run_failed);
    }

    /// Adds `ev`, the "queued" event of a step.
    fn push_queued(&mut self, ev: v1::RunEvent) {
        self.queued_at.push(self.events.len());
        self.events.push(ev);
    }

    /// Adds `ev`, the "dispatched" event of a step. When these effects hold
    /// the step's "queued" event, `ev` takes its place and its sequence
    /// number (returns true: the run's event count goes back by one).
    fn push_dispatched(&mut self, mut ev: v1::RunEvent) -> bool {
        let found = self.queued_at.iter().position(|&i| {
            self.events
                .get(i)
                .is_some_and(|q| q.run_id == ev.run_id && q.step_id == ev.step_id)
        });
        match found.map(|k| self.queued_at.swap_remove(k)) {
            Some(i) => {
                if let Some(q) = self.events.get_mut(i) {
                    ev.seq = q.seq;
                    *q = ev;
                }
                true
            }
            None => {
                self.events.push(ev);
                false
            }
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such run.
    #[error("no run {0}")]
    NotFound(String),
    /// The run is already final.
    #[error("run {0} is already {1:?}")]
    Final(String, RunState),
    /// The gate was already decided.
    #[error("gate {0} is already closed ({1:?})")]
    GateClosed(String, GateStatus),
    /// Someone who may not decide the gate tried to.
    #[error("{who} is not a reviewer of gate {gate} (its reviewers: {})", reviewers.join(", "))]
    NotReviewer {
        /// The gate.
        gate: String,
        /// Who tried.
        who: String,
        /// Who may.
        reviewers: Vec<String>,
    },
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// A short id that names several runs or gates.
    #[error("{0}")]
    Ambiguous(String),
    /// The thing asked about is not in a state that allows the request.
    #[error("{0}")]
    Precondition(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state machine.
pub struct Engine {
    pub(crate) studio: Arc<Studio>,
    store: Arc<dyn KvStore>,
    limits: Limits,
    pub(crate) live: HashMap<String, RunRecord>,
    queue: WorkQueue,
    in_flight: usize,
    /// Tasks in flight per role, by the queue's role id.
    per_role: Vec<usize>,
    /// Each role's in-flight limit now, by the queue's role id (static, or
    /// from live capacity: see `capacity.rs`); rebuilt when either changes.
    pub(crate) role_limit: Vec<usize>,
    /// Live workers per role, from their heartbeats.
    pub(crate) capacity: crate::capacity::Capacity,
    /// Outputs waiting for their batched loop's next review: `(loop, due ms)`
    /// to `(run, step)` in the order collected.
    pub(crate) pending_batches: BTreeMap<(String, i64), Vec<(String, String)>>,
    /// Quality gates waiting for a decision, by id.
    pub(crate) open_gates: BTreeMap<String, GateRecord>,
    /// Standing context per role, by name (see `context.rs`).
    pub(crate) contexts: BTreeMap<String, BTreeMap<String, v1::AgentContext>>,
    /// When the queue was last reported and what it held (see `queue_samples`).
    last_queue_report: Option<(DateTime<Utc>, [usize; 3])>,
    /// Spend per UTC day (see `budget.rs`).
    pub(crate) spend: BTreeMap<String, crate::budget::DaySpend>,
    /// Where retention is (see `history.rs`).
    pub(crate) prune: crate::history::PruneState,
    /// The partition this engine owns and the studio's partition count
    /// (`server.partitions`); `(0, 1)` unpartitioned.
    pub(crate) partition: (u32, u32),
    /// Per live run, what its time-index row last written shows (see
    /// [`index_signature`]): the row is written again only when that changes.
    indexed: std::cell::RefCell<HashMap<String, u64>>,
}

/// Most items one list page holds (a page must fit in one bus message).
pub const MAX_PAGE: usize = 200;
/// Characters of an output a list shows (`GetRun` and `GetGate` give it whole).
pub const PREVIEW_CHARS: usize = 280;

/// The page size asked for: 50 by default, at most [`MAX_PAGE`].
pub(crate) fn page_size(asked: u32) -> usize {
    match asked {
        0 => 50,
        n => (n as usize).min(MAX_PAGE),
    }
}

/// The start of `text` for a list view, marked when cut.
/// What of a run's time-index row can change after its start: its state and
/// its error (workflow, trigger, requester and params are set at the start).
/// The row's last-change time is thus the time of the last such change; for
/// an ended run, when it ended (which retention goes by).
fn index_signature(run: &RunRecord) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::hash::DefaultHasher::new();
    (run.proto_state() as i32, run.state.is_final(), &run.error).hash(&mut h);
    h.finish()
}

pub(crate) fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// One observation for the tracker (`metric.<metric>`), made at `now`.
pub(crate) fn metric_sample(
    metric: &str,
    value: f64,
    unit: &str,
    labels: &[(&str, &str)],
    now: DateTime<Utc>,
) -> v1::MetricSample {
    v1::MetricSample {
        metric: metric.to_string(),
        value,
        at: Some(concierto_proto::time::timestamp(now.into())),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        unit: unit.to_string(),
    }
}

/// Remembers `run`'s trace for the tasks of these effects.
fn note_trace(traces: &mut BTreeMap<String, String>, run: &RunRecord) {
    if !run.traceparent.is_empty() {
        traces.insert(run.run_id.clone(), run.traceparent.clone());
    }
}

fn class_of(priority: i32) -> Class {
    match v1::Priority::try_from(priority).unwrap_or(v1::Priority::Normal) {
        v1::Priority::Feedback => Class::Feedback,
        v1::Priority::Urgent => Class::Urgent,
        _ => Class::Normal,
    }
}

pub(crate) fn step_record(s: &Step) -> StepRecord {
    StepRecord {
        id: s.id.clone(),
        role: s.role.clone(),
        task: s.task.clone(),
        inputs: s.inputs.clone(),
        labels: s.labels.clone(),
        timeout_ms: u64::try_from(s.timeout.as_millis()).unwrap_or(u64::MAX),
        retries: s.retries,
        state: StepState::Waiting,
        attempt: 0,
        deadline_ms: 0,
        retry_at_ms: 0,
        output: String::new(),
        error: String::new(),
        result_labels: Vec::new(),
        worker: String::new(),
        executor: String::new(),
        model: String::new(),
        latency_ms: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0.0,
        tool_calls: Vec::new(),
        started_ms: 0,
        finished_ms: 0,
        review: s.review.clone(),
        rounds: Vec::new(),
        batch_due_ms: 0,
        batch_run: String::new(),
        gate_round: 0,
        context: s.context.clone(),
        aux: None,
        kept_from: String::new(),
    }
}

/// Tool calls kept per step (a model looping on tools cannot grow a run
/// record without bound).
pub const MAX_TOOL_CALLS_KEPT: usize = 64;

/// Text of what the trigger fired on, for steps that take `trigger` as input.
fn trigger_payload(s: &v1::StartRun) -> String {
    match &s.cause {
        Some(v1::start_run::Cause::Content(c)) => format!(
            "New content from {}: {}\n{}\n{}\ntags: {}",
            c.source,
            c.title,
            c.url,
            c.text,
            c.tags.join(", ")
        ),
        Some(v1::start_run::Cause::Threshold(t)) => format!(
            "Metric {} crossed its threshold: {} (value {}).",
            t.metric, t.predicate, t.value
        ),
        Some(v1::start_run::Cause::Feedback(f)) => {
            let fb = f.feedback.clone().unwrap_or_default();
            let mut out = format!("Feedback from {}", fb.author);
            if !fb.subject.is_empty() {
                out.push_str(&format!(", subject \"{}\"", fb.subject));
            }
            if !fb.run_id.is_empty() {
                out.push_str(&format!(", about run {}", fb.run_id));
            }
            if f.category != 0 {
                out.push_str(&format!(" (categorised {:?})", f.category()));
            }
            out.push_str(&format!(":\n{}", fb.text));
            for a in &fb.attachments {
                out.push_str(&format!(
                    "\nattachment: {} ({}, {} bytes)",
                    a.name, a.content_type, a.size
                ));
            }
            out
        }
        None => format!(
            "Trigger {} fired for workflow {}.",
            if s.trigger.is_empty() {
                "(manual)"
            } else {
                &s.trigger
            },
            s.workflow
        ),
    }
}

impl Engine {
    /// An engine over `store`; call [`Engine::recover`] before anything else.
    pub fn new(studio: Arc<Studio>, store: Arc<dyn KvStore>, limits: Limits) -> Self {
        let aging = limits.aging;
        Engine {
            studio,
            store,
            limits,
            live: HashMap::new(),
            queue: WorkQueue::new(aging),
            in_flight: 0,
            per_role: Vec::new(),
            role_limit: Vec::new(),
            capacity: crate::capacity::Capacity::default(),
            pending_batches: BTreeMap::new(),
            open_gates: BTreeMap::new(),
            contexts: BTreeMap::new(),
            last_queue_report: None,
            spend: BTreeMap::new(),
            prune: crate::history::PruneState::default(),
            partition: (0, 1),
            indexed: std::cell::RefCell::new(HashMap::new()),
        }
    }

    /// This engine owns partition `k` of `partitions`: its tasks' results go
    /// to `result.<role>.<k>` (see `subjects::result_for`).
    pub fn set_partition(&mut self, k: u32, partitions: u32) {
        self.partition = (k, partitions.max(1));
    }

    /// Per-role limits and the retention from a changed studio (other limits stay).
    pub(crate) fn set_role_limits(&mut self, studio: &Studio) {
        self.limits.role_limits = role_limits(studio);
        self.limits.capped_roles = capped_roles(studio);
        self.limits.retention = studio.server.retention;
        self.refresh_role_limits();
    }

    pub(crate) fn store_handle(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Quality gates waiting for a decision.
    pub fn open_gates(&self) -> usize {
        self.open_gates.len()
    }

    /// Tasks in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Runs not final.
    pub fn live_runs(&self) -> usize {
        self.live.len()
    }

    /// Steps waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// `queue_depth` and `queue_oldest_seconds` samples for every priority
    /// class (label `priority`: `feedback`, `urgent`, `normal`), for the
    /// tracker: at most once a second when a depth changed, and at least every
    /// `every` (both on the orchestrator's clock). Empty when not due.
    pub fn queue_samples(&mut self, now: DateTime<Utc>, every: Duration) -> Vec<v1::MetricSample> {
        let by_class = self.queue.depth_by_class(now);
        let depths = by_class.map(|(d, _)| d);
        let due = match self.last_queue_report {
            None => true,
            Some((at, last)) => {
                let since = (now - at).to_std().unwrap_or(Duration::ZERO);
                since >= every || (last != depths && since >= Duration::from_secs(1))
            }
        };
        if !due {
            return Vec::new();
        }
        self.last_queue_report = Some((now, depths));
        let at = Some(concierto_proto::time::timestamp(now.into()));
        let mut out = Vec::with_capacity(6);
        for (class, (depth, oldest)) in ["feedback", "urgent", "normal"].into_iter().zip(by_class) {
            for (metric, value, unit) in [
                ("queue_depth", depth as f64, ""),
                ("queue_oldest_seconds", oldest.as_secs_f64(), "s"),
            ] {
                out.push(v1::MetricSample {
                    metric: metric.into(),
                    value,
                    at,
                    labels: [("priority".to_string(), class.to_string())].into(),
                    unit: unit.into(),
                });
            }
        }
        out
    }

    pub(crate) fn persist(&self, run: &RunRecord) -> Result<(), StoreError> {
        // Sized for a typical run up front rather than grown by doubling
        // (reallocations showed in the profile of every step).
        let mut body = Vec::with_capacity(4096);
        serde_json::to_writer(&mut body, run)
            .map_err(|e| StoreError::from_message(format!("encoding run {}: {e}", run.run_id)))?;
        let mut trees = vec![(RUNS, vec![Op::Put(run.run_id.as_bytes().to_vec(), body)])];
        // Its time index row (see `history.rs`) with it, unless the row would
        // show what it already shows: a step's progress does not change it.
        let signature = index_signature(run);
        let unchanged = self.indexed.borrow().get(&run.run_id) == Some(&signature);
        if !unchanged {
            let (key, row) = crate::history::index_row(run)?;
            trees.push((crate::history::RUNS_BY_TIME, vec![Op::Put(key, row)]));
        }
        self.store.apply_trees(trees)?;
        let mut indexed = self.indexed.borrow_mut();
        if run.state.is_final() {
            indexed.remove(&run.run_id);
        } else if !unchanged {
            indexed.insert(run.run_id.clone(), signature);
        }
        Ok(())
    }

    pub(crate) fn load_run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        match self.store.get(RUNS, run_id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::from_message(format!("decoding run {run_id}: {e}"))),
        }
    }

    /// Loads every live run from the store; queued steps go back into the queue
    /// and dispatched ones are published again (same task id, so a copy still
    /// on the bus is deduplicated and a second result is ignored).
    pub fn recover(&mut self, now: DateTime<Utc>) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        self.recover_gates()?;
        self.repair_batches(&mut fx)?;
        self.recover_contexts()?;
        self.recover_deferred_reviews()?;
        let mut index = BTreeMap::new();
        for (_, bytes) in self.store.scan_prefix(RUNS, b"")? {
            let Ok(run) = serde_json::from_slice::<RunRecord>(&bytes) else {
                tracing::error!("a stored run does not decode; left as it is");
                continue;
            };
            let (key, row) = crate::history::index_row(&run)?;
            index.insert(key, row);
            if run.state.is_final() {
                continue;
            }
            let class = class_of(run.priority);
            for s in run.all_steps() {
                match s.state {
                    StepState::Queued => self.queue.push(Queued {
                        run_id: run.run_id.clone(),
                        step_id: s.id.clone(),
                        role: s.role.clone(),
                        class,
                        since: now,
                    }),
                    StepState::Dispatched => {
                        let role = self.queue.role_id(&s.role);
                        self.count_dispatch(role);
                        fx.tasks.push(self.task_for(&run, s));
                        note_trace(&mut fx.traces, &run);
                    }
                    StepState::InReview if s.batch_due_ms > 0 && s.batch_run.is_empty() => {
                        if let Some(l) = &s.review {
                            self.pending_batches
                                .entry((l.clone(), s.batch_due_ms))
                                .or_default()
                                .push((run.run_id.clone(), s.id.clone()));
                        }
                    }
                    _ => {}
                }
            }
            tracing::info!(run = %run.run_id, workflow = %run.workflow, "run recovered");
            self.live.insert(run.run_id.clone(), run);
        }
        self.repair_run_index(index)?;
        self.dispatch(now, &mut fx)?;
        Ok(fx)
    }

    /// Starts a run, once per run id.
    pub fn start_run(
        &mut self,
        s: v1::StartRun,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        self.start_run_traced(s, String::new(), now)
    }

    /// Starts a run, once per run id, in the trace `traceparent` names (empty:
    /// none); the run keeps it so that all its tasks continue that trace.
    pub fn start_run_traced(
        &mut self,
        s: v1::StartRun,
        traceparent: String,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        if s.run_id.is_empty()
            || self.live.contains_key(&s.run_id)
            || self.load_run(&s.run_id)?.is_some()
        {
            tracing::debug!(run = %s.run_id, "start of a known run ignored");
            return Ok(fx);
        }
        if !s.retry_of.is_empty() {
            // A retry asked for on `run.start`: the old run's steps, not the studio's.
            let (old, who) = (s.retry_of.clone(), s.requested_by.clone());
            return match self.start_retry(&old, s.run_id.clone(), s.retry_from_start, &who, now) {
                Ok(fx) => Ok(fx),
                Err(EngineError::Store(e)) => Err(e),
                Err(e) => {
                    tracing::warn!(run = %s.run_id, retry_of = %old, error = %e, "retry refused");
                    Ok(fx)
                }
            };
        }
        let synthetic;
        let wf = match self.studio.workflows.get(&s.workflow) {
            Some(w) => Some(w),
            None if s.workflow == concierto_core::feedback::FEEDBACK_WORKFLOW => {
                synthetic = self.feedback_workflow();
                Some(&synthetic)
            }
            // `metric-report:<metric>`: the tracker role's periodic report.
            None => {
                match concierto_core::config::reports::workflow_named(&self.studio, &s.workflow) {
                    Some(w) => {
                        synthetic = w;
                        Some(&synthetic)
                    }
                    None => None,
                }
            }
        };
        let priority = if s.priority != 0 {
            s.priority
        } else {
            match wf.map(|w| w.priority) {
                Some(Priority::Urgent) => v1::Priority::Urgent as i32,
                _ => v1::Priority::Normal as i32,
            }
        };
        let mut run = RunRecord {
            run_id: s.run_id.clone(),
            workflow: s.workflow.clone(),
            trigger: s.trigger.clone(),
            requested_by: s.requested_by.clone(),
            priority,
            params: s.params.clone().into_iter().collect::<BTreeMap<_, _>>(),
            trigger_payload: trigger_payload(&s),
            state: RunState::Running,
            steps: wf
                .map(|w| w.steps.iter().map(step_record).collect())
                .unwrap_or_default(),
            on_failure: wf.and_then(|w| w.on_failure.as_ref()).map(|f| {
                let mut r = step_record(f);
                r.id = ON_FAILURE.to_string();
                r
            }),
            error: String::new(),
            created_ms: ms(now),
            updated_ms: ms(now),
            event_seq: 0,
            failing: false,
            aux: Vec::new(),
            batch: None,
            traceparent,
            spent_usd: 0.0,
            spent_by_role: BTreeMap::new(),
            paused: String::new(),
            agents: crate::trigger_agents::allowed(&self.studio, &s),
            retry_of: String::new(),
        };
        concierto_telemetry::metrics::run_started(&run.workflow);
        if wf.is_none() {
            run.state = RunState::Failed;
            concierto_telemetry::metrics::run_finished(&run.workflow, "failed");
            run.error = format!("unknown workflow {:?}", s.workflow);
            tracing::warn!(run = %run.run_id, error = %run.error, "run failed at start");
            fx.events.push(run.event(None, run.error.clone(), ms(now)));
            fx.run_failed
                .extend(crate::retry::run_failed(&run, ms(now)));
            self.persist(&run)?;
            return Ok(fx);
        }
        tracing::info!(run = %run.run_id, workflow = %run.workflow, trigger = %run.trigger, "run started");
        fx.events.push(run.event(None, "run started", ms(now)));
        self.advance(&mut run, now, &mut fx);
        self.finish_or_keep(run, now, &mut fx)?;
        self.dispatch(now, &mut fx)?;
        Ok(fx)
    }

    /// Queues the first waiting step whose predecessors are done, or finishes the run.
    pub(crate) fn advance(&mut self, run: &mut RunRecord, now: DateTime<Utc>, fx: &mut Effects) {
        if run.failing {
            let done = run.on_failure.as_ref().is_none_or(|f| !f.state.is_open());
            if done {
                run.state = RunState::Failed;
                concierto_telemetry::metrics::run_finished(&run.workflow, "failed");
                tracing::warn!(run = %run.run_id, error = %run.error.chars().take(200).collect::<String>(), "run failed");
                fx.events.push(run.event(None, run.error.clone(), ms(now)));
                fx.run_failed.extend(crate::retry::run_failed(run, ms(now)));
            } else if let Some(f) = run.on_failure.as_mut()
                && f.state == StepState::Waiting
            {
                f.state = StepState::Queued;
                let id = f.id.clone();
                self.enqueue(run, &id, now, fx);
            }
            return;
        }
        // Steps whose role the run's trigger does not staff are skipped on the way.
        while crate::trigger_agents::skip_unstaffed(run, now, fx) {}
        match run.steps.iter().position(|s| !s.state.is_done()) {
            None => {
                run.state = RunState::Succeeded;
                concierto_telemetry::metrics::run_finished(&run.workflow, "succeeded");
                tracing::info!(run = %run.run_id, workflow = %run.workflow, "run succeeded");
                fx.events.push(run.event(None, "run succeeded", ms(now)));
                let made = crate::deliverables::of_run(&self.studio, run, now);
                if let Err(e) = crate::deliverables::stage(&self.store, &made) {
                    tracing::error!(run = %run.run_id, error = %e, "storing deliverables failed");
                }
                fx.deliverables.extend(made);
            }
            Some(i) if run.steps[i].state == StepState::Waiting => {
                run.steps[i].state = StepState::Queued;
                let id = run.steps[i].id.clone();
                self.enqueue(run, &id, now, fx);
            }
            Some(_) => {}
        }
    }

    pub(crate) fn enqueue(
        &mut self,
        run: &mut RunRecord,
        step_id: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let Some(s) = run.step(step_id) else {
            return;
        };
        self.queue.push(Queued {
            run_id: run.run_id.clone(),
            step_id: s.id.clone(),
            role: s.role.clone(),
            class: class_of(run.priority),
            since: now,
        });
        tracing::debug!(run = %run.run_id, step = %step_id, role = %s.role, "step queued");
        fx.push_queued(run.event(Some(step_id), "queued", ms(now)));
    }

    /// Stores `run`; keeps it live unless final. A batch run that just ended
    /// hands its verdicts (or its failure) to the runs it reviewed.
    pub(crate) fn finish_or_keep(
        &mut self,
        run: RunRecord,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let mut run = run;
        if run.state.is_final() && run.batch.as_ref().is_some_and(|b| !b.settled) {
            self.settle_batch(&mut run, now, fx)?;
        }
        if run.state.is_final() && self.open_gates.values().any(|g| g.run_id == run.run_id) {
            let why = format!("the run ended {:?}", run.state);
            self.close_run_gates(&run.run_id, &why, now, fx)?;
        }
        run.updated_ms = ms(now);
        // Memory stays right whatever the store says: a run that could not be
        // written stays live (a final one is written again at the next tick).
        let persisted = self.persist(&run);
        if run.state.is_final() {
            self.queue.remove_run(&run.run_id);
            if persisted.is_ok() {
                self.live.remove(&run.run_id);
                return Ok(());
            }
        }
        self.live.insert(run.run_id.clone(), run);
        persisted
    }

    /// Writes again the final runs a store error kept live, and lets them go.
    fn persist_finished(&mut self) -> Result<(), StoreError> {
        let finished: Vec<String> = self
            .live
            .values()
            .filter(|r| r.state.is_final())
            .map(|r| r.run_id.clone())
            .collect();
        for id in finished {
            if let Some(run) = self.live.get(&id) {
                self.persist(run)?;
                self.live.remove(&id);
            }
        }
        Ok(())
    }

    fn task_for(&self, run: &RunRecord, s: &StepRecord) -> v1::Task {
        let mut inputs: Vec<v1::TaskInput> = s
            .inputs
            .iter()
            .map(|name| v1::TaskInput {
                name: name.clone(),
                content: if name == "trigger" {
                    run.trigger_payload.clone()
                } else {
                    run.step(name).map(|p| p.output.clone()).unwrap_or_default()
                },
                content_type: "text/plain".into(),
            })
            .collect();
        if s.aux
            .as_ref()
            .is_some_and(|a| a.kind == AuxKind::BatchReview)
            && let Some(b) = &run.batch
        {
            let reviewer = &s.role;
            inputs.extend(
                b.items
                    .iter()
                    .filter(|i| self.reviewers_for(&b.loop_name, &i.role).contains(reviewer))
                    .map(|i| v1::TaskInput {
                        name: i.name(),
                        content: i.draft.clone(),
                        content_type: "text/markdown".into(),
                    }),
            );
        }
        inputs.extend(self.context_inputs(&s.role));
        let instruction = if run.failing && run.on_failure.as_ref().is_some_and(|f| f.id == s.id) {
            format!("{}\n\nThe run failed: {}", s.task, run.error)
        } else {
            s.task.clone()
        };
        v1::Task {
            task_id: format!("{}/{}/{}", run.run_id, s.id, s.attempt),
            run_id: run.run_id.clone(),
            step_id: s.id.clone(),
            attempt: s.attempt,
            role: s.role.clone(),
            workflow: run.workflow.clone(),
            instruction,
            inputs,
            priority: run.priority,
            deadline: Some(prost_types::Timestamp {
                seconds: s.deadline_ms.div_euclid(1000),
                nanos: i32::try_from(s.deadline_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
            }),
            params: run.params.clone().into_iter().collect(),
            labels: s.labels.clone(),
            context: s.context.iter().map(crate::run::context_request).collect(),
            budget: None,
            result_subject: if self.partition.1 > 1 {
                subjects::result_for(&s.role, self.partition.0, self.partition.1)
            } else {
                String::new()
            },
            review: s.aux.as_ref().map(|a| v1::ReviewContext {
                r#loop: a.loop_name.clone(),
                round: a.round,
                subject_step: a.subject.clone(),
                draft: a.draft.clone(),
                notes: a.notes.clone(),
                action: match a.kind {
                    AuxKind::Review => v1::ReviewAction::Review,
                    AuxKind::Revise | AuxKind::GateRevise => v1::ReviewAction::Revise,
                    AuxKind::BatchReview => v1::ReviewAction::ReviewBatch,
                } as i32,
                pass_mark: a.pass_mark,
            }),
        }
    }

    /// Moves queued steps to workers while the limits allow.
    pub(crate) fn dispatch(
        &mut self,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        while self.in_flight < self.limits.max_in_flight && !self.queue.is_empty() {
            if self.role_limit.len() < self.queue.roles() {
                self.refresh_role_limits();
            }
            let (per_role, limit) = (&self.per_role, &self.role_limit);
            let Some((q, role_id)) = self.queue.pop_by_id(now, |r| {
                per_role.get(r.index()).copied().unwrap_or(0)
                    < limit.get(r.index()).copied().unwrap_or(0)
            }) else {
                break;
            };
            let Some(mut run) = self.live.remove(&q.run_id) else {
                continue;
            };
            if !run
                .step(&q.step_id)
                .is_some_and(|s| s.state == StepState::Queued)
            {
                self.live.insert(run.run_id.clone(), run);
                continue;
            }
            let budget = match self.task_budget(&run, &q.role, now)? {
                Ok(b) => b,
                Err(refusal) => {
                    self.refuse_for_budget(&mut run, &q.step_id, refusal, now, fx);
                    self.finish_or_keep(run, now, fx)?;
                    continue;
                }
            };
            let Some(s) = run.step_mut(&q.step_id) else {
                self.live.insert(run.run_id.clone(), run);
                continue;
            };
            s.state = StepState::Dispatched;
            s.attempt += 1;
            s.deadline_ms = ms(now) + i64::try_from(s.timeout_ms).unwrap_or(i64::MAX / 2);
            if s.started_ms == 0 {
                s.started_ms = ms(now);
            }
            let role = s.role.clone();
            let attempt = s.attempt;
            let task = {
                let s = run.step(&q.step_id).cloned();
                s.map(|s| self.task_for(&run, &s)).map(|mut t| {
                    t.budget = budget;
                    t
                })
            };
            self.count_dispatch(role_id);
            tracing::debug!(run = %run.run_id, step = %q.step_id, %role, attempt, "step dispatched");
            let ev = run.event(Some(&q.step_id), format!("dispatched to {role}"), ms(now));
            if fx.push_dispatched(ev) {
                run.event_seq -= 1;
            }
            if let Some(task) = task {
                fx.tasks.push(task);
                note_trace(&mut fx.traces, &run);
            }
            // A dispatch is not written to the store: it halves the writes of
            // every step. After a restart or a takeover the step is found
            // queued with the attempt before and dispatched again under the
            // same task id (deduplicated on the bus, `duplicate_window`); a
            // result of that attempt meanwhile is taken as the dispatched
            // attempt's (`apply_result`).
            run.updated_ms = ms(now);
            self.live.insert(run.run_id.clone(), run);
        }
        Ok(())
    }

    fn count_dispatch(&mut self, role: RoleId) {
        self.in_flight += 1;
        if self.per_role.len() <= role.index() {
            self.per_role.resize(role.index() + 1, 0);
        }
        self.per_role[role.index()] += 1;
    }

    pub(crate) fn release(&mut self, role: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(id) = self.queue.known_role(role)
            && let Some(n) = self.per_role.get_mut(id.index())
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Rebuilds every known role's limit (see `capacity.rs`).
    pub(crate) fn refresh_role_limits(&mut self) {
        let roles = self.queue.roles();
        let limits: Vec<usize> = (0..roles)
            .map(|i| {
                let name = self
                    .queue
                    .role_name(RoleId(u32::try_from(i).unwrap_or(u32::MAX)));
                self.role_limit_of(name)
            })
            .collect();
        self.role_limit = limits;
        if self.per_role.len() < roles {
            self.per_role.resize(roles, 0);
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .limits
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.limits.backoff_max);
        let jitter: f64 = rand::random_range(0.8..1.2);
        capped.mul_f64(jitter)
    }

    /// A failed attempt: retried with backoff while attempts remain, else the step fails.
    pub(crate) fn fail_attempt(
        &mut self,
        run: &mut RunRecord,
        step_id: &str,
        reason: String,
        retryable: bool,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let Some(s) = run.step(step_id) else {
            return;
        };
        let (attempt, retries, role) = (s.attempt, s.retries, s.role.clone());
        let delay = self.backoff(attempt);
        let Some(s) = run.step_mut(step_id) else {
            return;
        };
        s.error = reason.clone();
        if retryable && attempt <= retries {
            s.state = StepState::Retrying;
            s.retry_at_ms = ms(now) + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
            tracing::warn!(run = %run.run_id, step = %step_id, %role, attempt, ?delay, %reason, "step will be retried");
            fx.events.push(run.event(
                Some(step_id),
                format!("attempt {attempt} failed: {reason}; retry in {delay:?}"),
                ms(now),
            ));
            return;
        }
        s.state = StepState::Failed;
        s.finished_ms = ms(now);
        let subject = s
            .aux
            .as_ref()
            .filter(|a| a.kind != AuxKind::BatchReview)
            .map(|a| a.subject.clone());
        tracing::warn!(run = %run.run_id, step = %step_id, %role, attempt, reason = %reason.chars().take(200).collect::<String>(), "step failed");
        fx.events
            .push(run.event(Some(step_id), format!("failed: {reason}"), ms(now)));
        if let Some(subject) = subject {
            // A review or revision failed for good: so does the step it was about.
            self.cancel_loop_steps(run, &subject, now);
            let why = format!("its review loop step {step_id} failed: {reason}");
            self.fail_attempt(run, &subject, why, false, now, fx);
            return;
        }
        if run.failing {
            // The failure step itself failed: the run ends.
            self.advance(run, now, fx);
            return;
        }
        run.failing = true;
        run.error = format!("step {step_id} failed after {attempt} attempt(s): {reason}");
        for s in run
            .steps
            .iter_mut()
            .filter(|s| s.state == StepState::Waiting)
        {
            s.state = StepState::Cancelled;
        }
        self.advance(run, now, fx);
    }

    /// Applies a result if it matches an open attempt; a duplicate or late result changes nothing.
    pub fn apply_result(
        &mut self,
        r: v1::TaskResult,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        let Some(mut run) = self.live.remove(&r.run_id) else {
            tracing::debug!(run = %r.run_id, step = %r.step_id, "result for a run that is not live ignored");
            return Ok(fx);
        };
        // A dispatch is not written (see `dispatch`): after a restart or a
        // takeover the step waits queued at the attempt before, and the
        // result of the attempt that was dispatched is its own.
        let unwritten = r.attempt >= 1
            && run.step(&r.step_id).is_some_and(|s| {
                s.state == StepState::Queued && s.attempt.checked_add(1) == Some(r.attempt)
            });
        if unwritten {
            let role = run
                .step(&r.step_id)
                .map(|s| s.role.clone())
                .unwrap_or_default();
            let role_id = self.queue.role_id(&role);
            if let Some(s) = run.step_mut(&r.step_id) {
                s.state = StepState::Dispatched;
                s.attempt = r.attempt;
                if s.started_ms == 0 {
                    s.started_ms = ms(now);
                }
            }
            // Its queue entry is skipped when it comes up (no longer queued).
            self.count_dispatch(role_id);
            tracing::info!(run = %r.run_id, step = %r.step_id, attempt = r.attempt, "result of a dispatch made before a restart taken");
        }
        let matches = run
            .step(&r.step_id)
            .is_some_and(|s| s.state == StepState::Dispatched && s.attempt == r.attempt);
        if !matches {
            tracing::debug!(run = %r.run_id, step = %r.step_id, attempt = r.attempt, "stale or duplicate result ignored");
            self.live.insert(run.run_id.clone(), run);
            return Ok(fx);
        }
        let role = run
            .step(&r.step_id)
            .map(|s| s.role.clone())
            .unwrap_or_default();
        self.release(&role);
        if let Some(s) = run.step_mut(&r.step_id) {
            s.worker = r.worker_id.clone();
            if let Some(u) = &r.usage {
                s.executor = u.executor.clone();
                s.model = u.model.clone();
                s.latency_ms = u.latency_ms;
                s.input_tokens = u.input_tokens;
                s.output_tokens = u.output_tokens;
                s.cost_usd = if u.cost_usd.is_finite() {
                    u.cost_usd.max(0.0)
                } else {
                    0.0
                };
            }
            s.tool_calls = r
                .tool_calls
                .iter()
                .take(MAX_TOOL_CALLS_KEPT)
                .map(crate::run::ToolCallRecord::from_proto)
                .collect();
        }
        let cost = r.usage.as_ref().map(|u| u.cost_usd).unwrap_or(0.0);
        self.charge(&mut run, &role, cost, now)?;
        match v1::TaskStatus::try_from(r.status).unwrap_or(v1::TaskStatus::Unspecified) {
            v1::TaskStatus::Succeeded => self.step_succeeded(&mut run, &r, now, &mut fx)?,
            v1::TaskStatus::Retryable => {
                self.fail_attempt(&mut run, &r.step_id, r.error.clone(), true, now, &mut fx);
            }
            _ => {
                let reason = if r.error.is_empty() {
                    "the worker reported a failure".into()
                } else {
                    r.error.clone()
                };
                self.fail_attempt(&mut run, &r.step_id, reason, false, now, &mut fx);
            }
        }
        self.finish_or_keep(run, now, &mut fx)?;
        self.dispatch(now, &mut fx)?;
        Ok(fx)
    }

    /// Times out overdue attempts, queues retries whose backoff passed, dispatches.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        self.persist_finished()?;
        let now_ms = ms(now);
        let mut touched = Vec::new();
        for run in self.live.values() {
            for s in run.all_steps() {
                let overdue = s.state == StepState::Dispatched && s.deadline_ms <= now_ms;
                let retry_due = s.state == StepState::Retrying && s.retry_at_ms <= now_ms;
                if overdue || retry_due {
                    touched.push((
                        run.run_id.clone(),
                        s.id.clone(),
                        overdue,
                        s.timeout_ms,
                        s.role.clone(),
                    ));
                }
            }
        }
        for (run_id, step_id, overdue, timeout_ms, role) in touched {
            let Some(mut run) = self.live.remove(&run_id) else {
                continue;
            };
            // An earlier entry of this tick may have settled this step already
            // (a failed review cancels its sibling reviews).
            let still = run.step(&step_id).is_some_and(|s| {
                if overdue {
                    s.state == StepState::Dispatched && s.deadline_ms <= now_ms
                } else {
                    s.state == StepState::Retrying && s.retry_at_ms <= now_ms
                }
            });
            if !still {
                self.live.insert(run_id, run);
                continue;
            }
            if overdue {
                self.release(&role);
                let reason = format!("timed out after {timeout_ms} ms");
                self.fail_attempt(&mut run, &step_id, reason, true, now, &mut fx);
            } else if let Some(s) = run.step_mut(&step_id) {
                s.state = StepState::Queued;
                self.enqueue(&mut run, &step_id, now, &mut fx);
            }
            self.finish_or_keep(run, now, &mut fx)?;
        }
        self.close_due_batches(now, &mut fx)?;
        self.tick_gates(now, &mut fx)?;
        self.resume_paused(now, &mut fx)?;
        self.expire_workers(now);
        self.dispatch(now, &mut fx)?;
        self.prune(now)?;
        Ok(fx)
    }

    /// Cancels a live run.
    pub fn cancel(
        &mut self,
        run_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(v1::Run, Effects), EngineError> {
        let mut fx = Effects::default();
        let Some(mut run) = self.live.remove(run_id) else {
            return match self.load_run(run_id)? {
                Some(r) => Err(EngineError::Final(run_id.into(), r.state)),
                None => Err(EngineError::NotFound(run_id.into())),
            };
        };
        let mut released = Vec::new();
        for s in run.all_steps_mut() {
            if s.state == StepState::Dispatched {
                released.push(s.role.clone());
            }
            if s.state.is_open() {
                s.state = StepState::Cancelled;
                s.finished_ms = ms(now);
            }
        }
        for role in released {
            self.release(&role);
        }
        run.state = RunState::Cancelled;
        concierto_telemetry::metrics::run_finished(&run.workflow, "cancelled");
        run.error = if reason.is_empty() {
            "cancelled".into()
        } else {
            format!("cancelled: {reason}")
        };
        tracing::info!(run = %run_id, reason, "run cancelled");
        fx.events.push(run.event(None, run.error.clone(), ms(now)));
        let proto = run.to_proto();
        self.finish_or_keep(run, now, &mut fx)?;
        self.dispatch(now, &mut fx)?;
        Ok((proto, fx))
    }

    /// A run, live or stored.
    pub fn get(&self, run_id: &str) -> Result<Option<v1::Run>, StoreError> {
        if let Some(r) = self.live.get(run_id) {
            return Ok(Some(r.to_proto()));
        }
        Ok(self.load_run(run_id)?.map(|r| r.to_proto()))
    }
}
