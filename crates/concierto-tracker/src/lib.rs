//! The tracker service: the studio's progress metrics against their targets,
//! its health, and threshold events (DESIGN.md section 9).
//!
//! # The flow
//!
//! ```text
//!  EVENTS metric.>  ──durable consumer "tracker"──┐
//!  EVENTS run.event.> ─durable "tracker-runs"─────┤        ┌──────────────┐ store tree "tracker":
//!  agent.heartbeat.>──core subscription───────────┼──────▶ │ TrackerActor │ minute points, window
//!  event.gate.>, dlq.> ─core subscriptions────────┤ Input  │    (Core)    │ rollups, watch states
//!  tracker.metrics.get / .record, tracker.health ─┘        │  clock tick  │──▶ event.metric.<name> (ThresholdCrossed)
//!                                                          │    (1 s)     │──▶ TrackerView (Prometheus text)
//!                                                          └──────────────┘
//! ```
//!
//! Every input goes through one actix actor that owns the state ([`core`], a
//! pure state machine) and does the I/O; the service file wires each subject
//! to it as a message, and its handlers are atomic, so series, watch states
//! and the store never race. [`start`] must be called inside an actix
//! `System` ([`TrackerError::NoSystem`] otherwise). Metric samples come from a
//! durable consumer on stream `EVENTS` (subjects `metric.>`): samples published
//! while the tracker is down are taken when it is back; a delivery is
//! acknowledged only after its writes are flushed, and a redelivery of a sample
//! already applied (by stream sequence) is skipped. Run events come the same
//! way through a second durable consumer (`tracker-runs`, subjects
//! `run.event.>`), so runs and steps that finish while the tracker is down are
//! counted when it is back (by the time they happened); each run and step is
//! counted once by a stored key, so a redelivery counts nothing. Heartbeats,
//! gate events and dead letters are core subscriptions: heartbeats describe
//! the present, the open gates are asked of the orchestrator at start, and the
//! dead-letter count is since the tracker started.
//!
//! # The metrics and how each is computed
//!
//! Each metric has a window (its rollups; the target is judged on it) and an
//! aggregation of its observations within the window. Observations are kept
//! as one rollup per minute for [`TrackerOptions::retention`] (30 days) and
//! one rollup per window for [`TrackerOptions::rollup_retention`] (400 days).
//!
//! | metric | observations | window, aggregation | current |
//! |---|---|---|---|
//! | `daily_output` (≥ 10) | *content pieces delivered*: when a run of a workflow that names `deliverables` SUCCEEDS (its `RunEvent`), the pieces of its succeeded deliverable steps' outputs, read from the orchestrator (`orchestrator.runs.get`; [`pieces`] gives the rule: one per `## ` section, else per `### ` section, one per element of a JSON array, else one; each deliverable counts one when the orchestrator does not answer), counted once per run. The stream of `Deliverable`s is a work queue the publisher drains, so the tracker counts from the run events and the workflow's `deliverables` list. A workflow without `deliverables` counts one piece per SUCCEEDED workflow step (no `/` in its id) of a role in [`TrackerOptions::content_roles`], once per run and step | day (UTC), sum | today's total so far; the threshold is judged on the last whole day |
//! | `quality_score` (≥ 0.85) | `metric.quality_score` samples the orchestrator publishes when a review round is decided: the round's lowest score, labels `run`, `step`, `loop` | day, mean | today's mean (yesterday's while today has none) |
//! | `agent_utilization` (≥ 0.7) | every `AgentHeartbeat`: `busy / (busy + idle)` weighted by `busy + idle`, i.e. busy time over all time, over every worker | day, weighted mean | as above; per role in [`SystemHealth`](concierto_proto::v1::SystemHealth) over the last 15 minutes |
//! | `feedback_response_time` (< 2 hours) | `metric.feedback_response_time` samples (seconds) the orchestrator publishes at the first response of a `feedback:` run | day, mean | as above |
//! | `pattern_recognition` (5% weekly) | `metric.pattern_recognition` samples (the ingestion learner publishes them) | week from Monday, mean | improvement in percent: this week's mean against last week's |
//! | `success_rate` (3% monthly) | every run that ends: 1 when SUCCEEDED, 0 when FAILED (a CANCELLED run is left out) | calendar month, mean | improvement in percent: this month's share against last month's |
//! | any other name (`engagement_rate`, ...) | its samples | day, latest | the latest sample |
//!
//! `queue_depth` and `queue_oldest_seconds` samples (label `priority`, from the
//! orchestrator) feed the health answer, not a series.
//!
//! # Thresholds
//!
//! Watched predicates: every `on_performance_threshold` trigger's (`engagement_rate
//! < 0.05`), every target's *off target* predicate (`quality_score < 0.85`,
//! `feedback_response_time >= 7200`, `daily_output < 10`) and every improvement
//! target's `<name>.improvement < <share>` (`success_rate.improvement < 0.03`).
//! A watch is evaluated whenever its metric gets an observation and on every
//! tick, on the metric's *judged* value: for a sampled level, **the latest
//! sample** (no moving average: a single low reading counts, the hysteresis
//! keeps it from flapping); for a mean, the current window's; for a count, the
//! last whole window's. It publishes [`ThresholdCrossed`](concierto_proto::v1::ThresholdCrossed)
//! on `event.metric.<metric>` with `entered: true` when the predicate starts to
//! hold, and `entered: false` only once the value is beyond the threshold by the
//! hysteresis band ([`TrackerOptions::hysteresis`], 10 % of the threshold) —
//! [`threshold`] says how. `at` is the time of the observation, so the
//! scheduler's run id (`trigger@metric@at`) is the same if a crossing is
//! published twice. Watch states are stored, so a restart does not fire again.
//!
//! # A studio change
//!
//! The handle [`start`] returns takes a changed studio live
//! ([`ServiceHandle::studio_changed`](concierto_core::service::ServiceHandle::studio_changed)):
//! the actor takes it in turn with the inputs ([`core::Core::studio_changed`]). Every
//! progress metric gets its new target, type, tracker role and off-target predicate,
//! the watches become the new studio's (threshold triggers, targets — SLAs such as
//! `feedback_response_time < 2 hours` included — and improvement targets), health
//! reports on the new roles and run events count the new `deliverables`; then every
//! watch is evaluated at once, so `tracker.metrics.get` shows the new on-target status
//! and `event.metric.*` carries the new predicate from then on. Series and watch
//! states are kept (a watch by its id: an episode under way is not fired again, and
//! one the new predicate no longer holds for leaves with `entered: false`). A metric
//! dropped from `progress_metrics` goes on as a sampled metric; a goal on another
//! period rolls its windows up again from its points. One `studio changed: progress
//! metrics ...` line is logged per change.
//!
//! # Requests
//!
//! `tracker.metrics.get` (`GetMetricsRequest` → `GetMetricsResponse`: name,
//! group, target as written, current, on target, tracker role, series over
//! `window_hours` — 7 days by default — down-sampled to at most 200 points),
//! `tracker.metrics.record` (`RecordMetricRequest` → `RecordMetricResponse`;
//! the name must be `[a-z0-9_]+` and the value finite, else
//! `Concierto-Error: invalid_argument: ...`), `tracker.health` (`GetHealthRequest`
//! → `SystemHealth`). [`router`] serves `POST /api/metrics` for people and
//! scripts; [`TrackerView::prometheus_text`] renders every metric and the
//! health numbers as Prometheus gauges.

mod actor;
pub mod core;
pub mod health;
mod http;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod pieces;
pub mod series;
mod service;
pub mod spec;
pub mod threshold;

use std::time::Duration;

use concierto_bus::{BusError, StreamLimits};
use concierto_core::store::StoreError;

pub use crate::http::{RecordBody, router};
pub use crate::service::{Tracker, TrackerView, start};

/// How the tracker runs.
#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// How long minute points are kept (30 days).
    pub retention: Duration,
    /// How long window rollups are kept (400 days, so that month-over-month
    /// improvements still compare once the points are gone).
    pub rollup_retention: Duration,
    /// Hysteresis band as a share of the threshold (0.10): a watch leaves only
    /// once the value is that far beyond the threshold.
    pub hysteresis: f64,
    /// Roles whose succeeded workflow steps are content pieces (`daily_output`).
    pub content_roles: Vec<String>,
    /// Length of the series a `GetMetrics` without `window_hours` gets (7 days).
    pub default_window: Duration,
    /// The agents' heartbeat interval (10 s): a worker is a replica while its
    /// last heartbeat is fresher than three of them.
    pub heartbeat_interval: Duration,
    /// The heartbeats per-role utilization covers (15 minutes).
    pub utilization_window: Duration,
    /// How often watches are evaluated and the store flushed (1 s).
    pub tick: Duration,
    /// How often (on the clock) old points are pruned (1 hour).
    pub prune_every: Duration,
    /// Longest wait of one fetch of samples.
    pub fetch_wait: Duration,
    /// Samples taken per fetch.
    pub batch: usize,
    /// `ack_wait` of the samples consumer.
    pub ack_wait: Duration,
    /// Limits of the standard streams it declares.
    pub streams: StreamLimits,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            retention: Duration::from_secs(30 * 86_400),
            rollup_retention: Duration::from_secs(400 * 86_400),
            hysteresis: 0.10,
            content_roles: ["content-creator", "visual-storyteller", "ui-designer"]
                .map(String::from)
                .to_vec(),
            default_window: Duration::from_secs(7 * 86_400),
            heartbeat_interval: Duration::from_secs(10),
            utilization_window: Duration::from_secs(15 * 60),
            tick: Duration::from_secs(1),
            prune_every: Duration::from_secs(3600),
            fetch_wait: Duration::from_millis(500),
            batch: 128,
            ack_wait: Duration::from_secs(30),
            streams: StreamLimits::default(),
        }
    }
}

impl TrackerOptions {
    /// Checks the options; the error names the one to fix.
    pub fn validate(&self) -> Result<(), TrackerError> {
        let bad = |m: &str| Err(TrackerError::Invalid(format!("tracker options: {m}")));
        if !self.hysteresis.is_finite() || !(0.0..1.0).contains(&self.hysteresis) {
            return bad("hysteresis must be a share of the threshold in [0, 1)");
        }
        if self.retention < Duration::from_secs(86_400) {
            return bad("retention must be at least one day");
        }
        if self.rollup_retention < self.retention {
            return bad("rollup_retention must be at least the retention");
        }
        if self.tick.is_zero() || self.heartbeat_interval.is_zero() || self.batch == 0 {
            return bad("tick, heartbeat_interval and batch must be more than zero");
        }
        Ok(())
    }
}

/// What can go wrong in the tracker.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// `start` was called outside an actix System.
    #[error(
        "the tracker runs an actix actor and must be started inside an actix System \
         (actix::System::with_tokio_rt, or #[actix_rt::test] in tests)"
    )]
    NoSystem,
    /// The bus refused something.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request or sample that cannot be taken as given.
    #[error("{0}")]
    Invalid(String),
    /// A metric that does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl TrackerError {
    /// The `Concierto-Error` header value of a reply carrying this error.
    pub fn reply_header(&self) -> String {
        let code = match self {
            TrackerError::Invalid(_) => "invalid_argument",
            TrackerError::NotFound(_) => "not_found",
            TrackerError::Bus(_) => "unavailable",
            TrackerError::Store(_) | TrackerError::NoSystem => "internal",
        };
        format!("{code}: {self}")
    }
}
