//! The tracker's state machine: series, watches and health, fed one input at
//! a time by the service loop. Nothing here touches the bus: every input
//! returns the store writes to make and the threshold crossings to publish.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_core::config::{Goal, Studio};
use concierto_core::grammar::Comparison;
use concierto_core::store::{KvStore, Op, StoreError};
use concierto_proto::v1::{self, MetricSample, RunEvent, RunState, StepState, ThresholdCrossed};

use crate::health::{Health, from_ts, to_ts};
use crate::series::{Series, TREE};
use crate::spec::{
    self, AGENT_UTILIZATION, DAILY_OUTPUT, MetricSpec, QUEUE_DEPTH, QUEUE_OLDEST_SECONDS,
    SUCCESS_RATE, Watch,
};
use crate::threshold::{self, Crossing, WatchState};
use crate::{TrackerError, TrackerOptions};

mod change;
pub use change::MetricChanges;

/// Most points of one series in a `GetMetrics` answer.
pub const MAX_POINTS: usize = 200;

/// One metric as shown: its current value against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricView {
    /// What it is.
    pub spec: MetricSpec,
    /// Its current value (for an improvement goal: the improvement in percent).
    pub current: Option<f64>,
    /// Whether the goal is met.
    pub on_target: Option<bool>,
}

/// The state.
pub struct Core {
    store: Arc<dyn KvStore>,
    opts: TrackerOptions,
    /// Progress metrics first (file order), then the others by name.
    order: Vec<String>,
    series: HashMap<String, Series>,
    watches: Vec<Watch>,
    states: HashMap<String, WatchState>,
    health: Health,
    applied_seq: u64,
    /// Deliverable step ids by workflow (the workflows that name `deliverables`).
    deliverables: HashMap<String, Vec<String>>,
}

/// Key of the last applied sample's stream sequence.
const APPLIED_SEQ: &[u8] = b"c/samples_seq";

fn chrono_d(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The dedupe "step" of a run's deliverable pieces (`#` is not in step ids).
const PIECES: &str = "#pieces";

fn dedupe_key(run: &str, step: &str) -> Vec<u8> {
    format!("d/{run}/{step}").into_bytes()
}

fn comparison(op: Comparison) -> v1::Comparison {
    match op {
        Comparison::Lt => v1::Comparison::Lt,
        Comparison::Le => v1::Comparison::Le,
        Comparison::Gt => v1::Comparison::Gt,
        Comparison::Ge => v1::Comparison::Ge,
        Comparison::Eq => v1::Comparison::Eq,
        Comparison::Ne => v1::Comparison::Ne,
    }
}

/// What one input changed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Store writes, to apply in order.
    pub ops: Vec<Op>,
    /// Crossings to publish on `event.metric.<metric>`.
    pub crossings: Vec<ThresholdCrossed>,
}

impl Outcome {
    fn extend(&mut self, other: Outcome) {
        self.ops.extend(other.ops);
        self.crossings.extend(other.crossings);
    }
}

impl Core {
    /// Loads every series and watch state from `store`.
    pub fn load(
        studio: &Studio,
        store: Arc<dyn KvStore>,
        opts: TrackerOptions,
    ) -> Result<Self, StoreError> {
        let mut order = Vec::new();
        let mut series = HashMap::new();
        for spec in spec::progress_specs(studio) {
            order.push(spec.name.clone());
            series.insert(spec.name.clone(), Series::load(store.as_ref(), spec)?);
        }
        let mut others: Vec<String> = Series::stored_names(store.as_ref())?
            .into_iter()
            .filter(|n| !series.contains_key(n))
            .collect();
        others.sort();
        for name in others {
            let s = Series::load(store.as_ref(), MetricSpec::sampled(&name, ""))?;
            order.push(name.clone());
            series.insert(name, s);
        }
        let watches = spec::watches(studio);
        let mut states = HashMap::new();
        for w in &watches {
            states.insert(w.id.clone(), threshold::load(store.as_ref(), &w.id)?);
        }
        let applied_seq = store
            .get(TREE, APPLIED_SEQ)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let health = Health::new(
            studio.roles.keys().cloned().collect(),
            opts.heartbeat_interval,
            opts.utilization_window,
        );
        Ok(Core {
            store,
            opts,
            order,
            series,
            watches,
            states,
            health,
            applied_seq,
            deliverables: studio
                .publishing
                .deliverables
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// The sequence of the last sample applied from the stream.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    /// Notes that the sample at stream sequence `seq` was applied.
    /// Puts the applied stream sequence back (after a batch whose writes
    /// failed, so its redelivery is applied again rather than skipped).
    pub fn restore_applied(&mut self, seq: u64) {
        self.applied_seq = seq;
    }

    pub fn mark_applied(&mut self, seq: u64, out: &mut Outcome) {
        if seq > self.applied_seq {
            self.applied_seq = seq;
            out.ops
                .push(Op::Put(APPLIED_SEQ.to_vec(), seq.to_be_bytes().to_vec()));
        }
    }

    /// The watches evaluated (for tests and the docs).
    pub fn watches(&self) -> &[Watch] {
        &self.watches
    }

    /// The stored state of a watch.
    pub fn watch_state(&self, id: &str) -> Option<WatchState> {
        self.states.get(id).copied()
    }

    fn series_mut(&mut self, name: &str, unit: &str) -> &mut Series {
        if !self.series.contains_key(name) {
            self.series.insert(
                name.to_string(),
                Series::new(MetricSpec::sampled(name, unit)),
            );
            // Progress metrics stay first; the others are kept sorted by name.
            let goals = self
                .order
                .iter()
                .take_while(|n| self.series.get(*n).is_some_and(|s| s.spec.goal.is_some()))
                .count();
            let pos = goals + self.order[goals..].partition_point(|n| n.as_str() < name);
            self.order.insert(pos, name.to_string());
        }
        self.series
            .entry(name.to_string())
            .or_insert_with(|| Series::new(MetricSpec::sampled(name, unit)))
    }

    /// Adds an observation of `metric` at `at` (dropped when older than the
    /// retention; a time ahead of `now` counts as `now`) and evaluates its watches.
    fn observe(
        &mut self,
        metric: &str,
        unit: &str,
        value: f64,
        weight: f64,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Outcome {
        let mut out = Outcome::default();
        if at < now - chrono_d(self.opts.retention) {
            tracing::debug!(%metric, at = %at, "an observation older than the retention is dropped");
            return out;
        }
        let at = at.min(now);
        let ops = self.series_mut(metric, unit).record(value, weight, at);
        out.ops.extend(ops);
        out.extend(self.evaluate(Some(metric), at, now));
        out
    }

    /// Evaluates the watches of `metric` (every watch when `None`).
    fn evaluate(&mut self, metric: Option<&str>, at: DateTime<Utc>, now: DateTime<Utc>) -> Outcome {
        let mut out = Outcome::default();
        for w in &self.watches {
            if metric.is_some_and(|m| m != w.base_metric()) {
                continue;
            }
            let Some(series) = self.series.get(w.base_metric()) else {
                continue;
            };
            let value = if w.is_improvement() {
                series.improvement(now)
            } else {
                series.judged(now)
            };
            let Some(value) = value else {
                continue;
            };
            let state = self.states.entry(w.id.clone()).or_default();
            let Some(c) = threshold::step(w, state, value, self.opts.hysteresis, at) else {
                continue;
            };
            let entered = c == Crossing::Entered;
            tracing::info!(watch = %w.id, predicate = %w.predicate, value, entered, "threshold crossed");
            out.ops.push(threshold::save(&w.id, state));
            out.crossings.push(ThresholdCrossed {
                metric: w.metric.clone(),
                predicate: w.predicate.clone(),
                comparison: comparison(w.op) as i32,
                threshold: w.threshold,
                value,
                entered,
                at: Some(to_ts(at)),
            });
        }
        out
    }

    /// A `MetricSample` from the bus or a `RecordMetric` request.
    pub fn sample(
        &mut self,
        s: &MetricSample,
        now: DateTime<Utc>,
    ) -> Result<Outcome, TrackerError> {
        let name = s.metric.as_str();
        let valid =
            spec::valid_name(name) || self.series.get(name).is_some_and(|x| x.spec.goal.is_some());
        if !valid {
            return Err(TrackerError::Invalid(format!(
                "metric name {name:?} must be lowercase letters, digits and _ ([a-z0-9_]+, at most 100)"
            )));
        }
        if !s.value.is_finite() {
            return Err(TrackerError::Invalid(format!(
                "the value of {name} must be a finite number"
            )));
        }
        if name == QUEUE_DEPTH || name == QUEUE_OLDEST_SECONDS {
            let priority = s.labels.get("priority").map(String::as_str).unwrap_or("");
            if priority.is_empty() {
                return Err(TrackerError::Invalid(format!(
                    "{name} needs the label `priority`"
                )));
            }
            self.health.queue_sample(name, priority, s.value);
            return Ok(Outcome::default());
        }
        let at = s.at.as_ref().and_then(from_ts).unwrap_or(now);
        Ok(self.observe(name, &s.unit, s.value, 1.0, at, now))
    }

    /// The deliverable steps of `workflow`, when it names some.
    pub fn deliverable_steps(&self, workflow: &str) -> Option<&[String]> {
        self.deliverables.get(workflow).map(Vec::as_slice)
    }

    /// Whether `e` is a run of a workflow with deliverables that succeeded and
    /// whose pieces are not counted yet (the service then reads its outputs and
    /// calls [`Core::deliverables_made`]).
    pub fn wants_pieces(&self, e: &RunEvent) -> Result<bool, StoreError> {
        Ok(e.step_id.is_empty()
            && e.run_state == RunState::Succeeded as i32
            && self.deliverables.contains_key(&e.workflow)
            && self
                .store
                .get(TREE, &dedupe_key(&e.run_id, PIECES))?
                .is_none())
    }

    /// The succeeded run of `e` delivered `pieces` content pieces
    /// (`daily_output`, at the run's end); counted once per run.
    pub fn deliverables_made(
        &mut self,
        e: &RunEvent,
        pieces: u32,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let mut out = Outcome::default();
        if self
            .store
            .get(TREE, &dedupe_key(&e.run_id, PIECES))?
            .is_some()
        {
            return Ok(out);
        }
        let at = e.at.as_ref().and_then(from_ts).unwrap_or(now);
        out.ops.push(Op::Put(
            dedupe_key(&e.run_id, PIECES),
            at.timestamp_millis().to_be_bytes().to_vec(),
        ));
        if pieces > 0 {
            out.extend(self.observe(DAILY_OUTPUT, "", f64::from(pieces), 1.0, at, now));
        }
        Ok(out)
    }

    /// A `RunEvent`: content pieces (`daily_output`) of workflows without
    /// `deliverables` (their succeeded content-role steps; a workflow with
    /// deliverables counts its deliverables' pieces instead, see
    /// [`Core::deliverables_made`]) and run outcomes (`success_rate`).
    pub fn run_event(&mut self, e: &RunEvent, now: DateTime<Utc>) -> Result<Outcome, StoreError> {
        let at = e.at.as_ref().and_then(from_ts).unwrap_or(now);
        let mut out = Outcome::default();
        if !e.step_id.is_empty() {
            let piece = e.step_state == StepState::Succeeded as i32
                && !self.deliverables.contains_key(&e.workflow)
                && !e.step_id.contains('/')
                && self.opts.content_roles.contains(&e.role);
            if !piece
                || self
                    .store
                    .get(TREE, &dedupe_key(&e.run_id, &e.step_id))?
                    .is_some()
            {
                return Ok(out);
            }
            out.ops.push(Op::Put(
                dedupe_key(&e.run_id, &e.step_id),
                at.timestamp_millis().to_be_bytes().to_vec(),
            ));
            out.extend(self.observe(DAILY_OUTPUT, "", 1.0, 1.0, at, now));
            return Ok(out);
        }
        let outcome = match RunState::try_from(e.run_state) {
            Ok(RunState::Succeeded) => 1.0,
            Ok(RunState::Failed) => 0.0,
            _ => return Ok(out),
        };
        if self.store.get(TREE, &dedupe_key(&e.run_id, ""))?.is_some() {
            return Ok(out);
        }
        out.ops.push(Op::Put(
            dedupe_key(&e.run_id, ""),
            at.timestamp_millis().to_be_bytes().to_vec(),
        ));
        out.extend(self.observe(SUCCESS_RATE, "", outcome, 1.0, at, now));
        Ok(out)
    }

    /// An `AgentHeartbeat`: health per role and the overall `agent_utilization`.
    pub fn heartbeat(&mut self, hb: &v1::AgentHeartbeat, now: DateTime<Utc>) -> Outcome {
        match self.health.heartbeat(hb, now) {
            Some((share, weight)) => self.observe(AGENT_UTILIZATION, "", share, weight, now, now),
            None => Outcome::default(),
        }
    }

    /// A gate change.
    pub fn gate(&mut self, g: &v1::Gate) {
        self.health.gate(g);
    }

    /// A dead letter.
    pub fn dead_letter(&mut self) {
        self.health.dead_letter();
    }

    /// Periodic work: evaluates every watch (a day's count is judged once the
    /// day is over); with `prune`, drops what is past the retention.
    pub fn tick(&mut self, now: DateTime<Utc>, prune: bool) -> Result<Outcome, StoreError> {
        let mut out = self.evaluate(None, now, now);
        if prune {
            self.health.prune(now);
            let points_from = now - chrono_d(self.opts.retention);
            let windows_from = now - chrono_d(self.opts.rollup_retention);
            for s in self.series.values_mut() {
                out.ops.extend(s.prune(points_from, windows_from));
            }
            let cutoff = points_from.timestamp_millis();
            for (k, v) in self.store.scan_prefix(TREE, b"d/")? {
                let t = <[u8; 8]>::try_from(v.as_slice())
                    .map(i64::from_be_bytes)
                    .unwrap_or(0);
                if t < cutoff {
                    out.ops.push(Op::Delete(k));
                }
            }
        }
        Ok(out)
    }

    /// Every metric's current value against its target.
    pub fn views(&self, now: DateTime<Utc>) -> Vec<MetricView> {
        self.order
            .iter()
            .filter_map(|n| self.series.get(n))
            .map(|s| {
                let current = match s.spec.goal {
                    Some(Goal::Improvement(_)) => s.improvement(now).map(|i| i * 100.0),
                    _ => s.current(now),
                };
                MetricView {
                    spec: s.spec.clone(),
                    current,
                    on_target: s.spec.on_target(current),
                }
            })
            .collect()
    }

    /// `GetMetrics`: every metric asked for (all when none), with its series
    /// over `window_hours` (default 7 days), at most [`MAX_POINTS`] points.
    pub fn get_metrics(
        &self,
        req: &v1::GetMetricsRequest,
        now: DateTime<Utc>,
    ) -> Result<v1::GetMetricsResponse, TrackerError> {
        for n in &req.names {
            if !self.series.contains_key(n) {
                return Err(TrackerError::NotFound(format!(
                    "no metric {n:?}; the tracker has: {}",
                    self.order.join(", ")
                )));
            }
        }
        let window = if req.window_hours == 0 {
            chrono_d(self.opts.default_window)
        } else {
            chrono::Duration::hours(i64::from(req.window_hours))
        };
        // A huge `window_hours` reaches back to the start of time, never past it.
        let from = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let metrics = self
            .views(now)
            .into_iter()
            .filter(|v| req.names.is_empty() || req.names.contains(&v.spec.name))
            .map(|v| {
                let series = self
                    .series
                    .get(&v.spec.name)
                    .map(|s| s.points_since(from, now, MAX_POINTS))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, value)| v1::MetricPoint {
                        at: Some(to_ts(t)),
                        value,
                    })
                    .collect();
                v1::Metric {
                    name: v.spec.name.clone(),
                    group: v.spec.group.clone(),
                    target: v.spec.target.clone(),
                    current: v.current.unwrap_or(0.0),
                    on_target: v.on_target.unwrap_or(false),
                    tracker: v.spec.tracker.clone(),
                    series,
                    unit: v.spec.unit.clone(),
                }
            })
            .collect();
        Ok(v1::GetMetricsResponse { metrics })
    }

    /// The health now.
    pub fn health(&self, now: DateTime<Utc>) -> v1::SystemHealth {
        self.health.snapshot(now)
    }

    /// Every series' points count, by name (for tests and logs).
    pub fn point_counts(&self) -> BTreeMap<String, usize> {
        self.series
            .iter()
            .map(|(n, s)| (n.clone(), s.points.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use concierto_core::clock::{Clock, ManualClock};
    use concierto_core::store::SledStore;

    fn studio() -> Studio {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        concierto_core::config::load_with_env(&path, Vec::new()).unwrap()
    }

    fn opts() -> TrackerOptions {
        TrackerOptions {
            content_roles: vec!["content-creator".into(), "visual-storyteller".into()],
            ..TrackerOptions::default()
        }
    }

    fn core(store: &Arc<SledStore>) -> Core {
        let s: Arc<dyn KvStore> = store.clone();
        Core::load(&studio(), s, opts()).unwrap()
    }

    fn apply(store: &Arc<SledStore>, out: &Outcome) {
        store.apply(TREE, out.ops.clone()).unwrap();
    }

    fn step_event(
        run: &str,
        step: &str,
        role: &str,
        state: StepState,
        at: DateTime<Utc>,
    ) -> RunEvent {
        RunEvent {
            run_id: run.into(),
            step_id: step.into(),
            role: role.into(),
            step_state: state as i32,
            run_state: RunState::Running as i32,
            at: Some(to_ts(at)),
            ..Default::default()
        }
    }

    fn run_end(run: &str, state: RunState, at: DateTime<Utc>) -> RunEvent {
        RunEvent {
            run_id: run.into(),
            run_state: state as i32,
            at: Some(to_ts(at)),
            ..Default::default()
        }
    }

    fn current(c: &Core, name: &str, now: DateTime<Utc>) -> Option<f64> {
        c.views(now)
            .into_iter()
            .find(|v| v.spec.name == name)
            .and_then(|v| v.current)
    }

    fn sample(metric: &str, value: f64, labels: &[(&str, &str)]) -> MetricSample {
        MetricSample {
            metric: metric.into(),
            value,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn daily_output_counts_succeeded_main_steps_of_content_roles_once_each() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap());
        let mut c = core(&store);
        let now = clock.now();
        for e in [
            step_event(
                "r1",
                "draft-content",
                "content-creator",
                StepState::Succeeded,
                now,
            ),
            step_event(
                "r1",
                "draft-content",
                "content-creator",
                StepState::Succeeded,
                now,
            ),
            step_event(
                "r1",
                "visual-brief",
                "visual-storyteller",
                StepState::Succeeded,
                now,
            ),
            step_event(
                "r1",
                "draft-content/review-1/brand-guardian",
                "content-creator",
                StepState::Succeeded,
                now,
            ),
            step_event(
                "r1",
                "research",
                "trend-researcher",
                StepState::Succeeded,
                now,
            ),
            step_event(
                "r2",
                "draft-content",
                "content-creator",
                StepState::Failed,
                now,
            ),
            step_event(
                "r2",
                "draft-content",
                "content-creator",
                StepState::Dispatched,
                now,
            ),
        ] {
            let out = c.run_event(&e, now).unwrap();
            apply(&store, &out);
        }
        assert_eq!(current(&c, DAILY_OUTPUT, now), Some(2.0));
        let tomorrow = now + chrono::Duration::days(1);
        assert_eq!(current(&c, DAILY_OUTPUT, tomorrow), Some(0.0));
        let views = c.views(now);
        let d = views.iter().find(|v| v.spec.name == DAILY_OUTPUT).unwrap();
        assert_eq!(d.on_target, Some(false), "2 of 10");
    }

    #[test]
    fn success_rate_is_the_share_of_finished_runs_that_succeeded_and_improves_month_over_month() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let feb = Utc.with_ymd_and_hms(2026, 2, 10, 9, 0, 0).unwrap();
        let mar = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
        let mut c = core(&store);
        // February: 3 of 4 succeeded; a cancelled run does not count.
        for (i, st) in [
            RunState::Succeeded,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Succeeded,
            RunState::Cancelled,
        ]
        .into_iter()
        .enumerate()
        {
            apply(
                &store,
                &c.run_event(&run_end(&format!("f{i}"), st, feb), mar)
                    .unwrap(),
            );
        }
        // March: 4 of 5 succeeded (80 % against 75 %: +6.7 %); a repeated end counts once.
        for (i, st) in [
            RunState::Succeeded,
            RunState::Succeeded,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Succeeded,
            RunState::Succeeded,
        ]
        .into_iter()
        .enumerate()
        {
            let id = if i == 5 {
                "m4".to_string()
            } else {
                format!("m{i}")
            };
            apply(&store, &c.run_event(&run_end(&id, st, mar), mar).unwrap());
        }
        let v = c.views(mar);
        let s = v.iter().find(|v| v.spec.name == SUCCESS_RATE).unwrap();
        let pct = s.current.unwrap();
        assert!((pct - (0.8 - 0.75) / 0.75 * 100.0).abs() < 1e-9, "{pct}");
        assert_eq!(s.on_target, Some(true), "3% monthly is met");
    }

    #[test]
    fn quality_feedback_time_and_utilization_average_over_the_day() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
        let mut c = core(&store);
        for v in [0.9, 0.8, 0.7] {
            c.sample(
                &sample(
                    "quality_score",
                    v,
                    &[("run", "r"), ("step", "s"), ("loop", "l")],
                ),
                now,
            )
            .unwrap();
        }
        assert!((current(&c, "quality_score", now).unwrap() - 0.8).abs() < 1e-9);
        for v in [1800.0, 9000.0] {
            c.sample(&sample("feedback_response_time", v, &[]), now)
                .unwrap();
        }
        let v = c.views(now);
        let f = v
            .iter()
            .find(|v| v.spec.name == "feedback_response_time")
            .unwrap();
        assert_eq!(
            (f.current, f.on_target),
            (Some(5400.0), Some(true)),
            "mean 1.5 h < 2 h"
        );
        let hb = |busy, idle| v1::AgentHeartbeat {
            role: "content-creator".into(),
            worker_id: "content-creator.a".into(),
            busy_ms: busy,
            idle_ms: idle,
            state: v1::AgentState::Ready as i32,
            ..Default::default()
        };
        c.heartbeat(&hb(9_000, 1_000), now);
        c.heartbeat(&hb(1_000, 29_000), now);
        c.heartbeat(&hb(0, 0), now);
        assert!((current(&c, AGENT_UTILIZATION, now).unwrap() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn bad_samples_are_refused_and_queue_samples_go_to_health() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
        let mut c = core(&store);
        assert!(matches!(
            c.sample(&sample("Bad Name", 1.0, &[]), now),
            Err(TrackerError::Invalid(_))
        ));
        assert!(matches!(
            c.sample(&sample("x", f64::NAN, &[]), now),
            Err(TrackerError::Invalid(_))
        ));
        assert!(matches!(
            c.sample(&sample("queue_depth", 3.0, &[]), now),
            Err(TrackerError::Invalid(_))
        ));
        c.sample(&sample("queue_depth", 3.0, &[("priority", "urgent")]), now)
            .unwrap();
        assert_eq!(c.health(now).queues[1].depth, 3);
        assert!(!c.point_counts().contains_key("queue_depth"));
        c.sample(&sample("engagement_rate", 0.07, &[]), now)
            .unwrap();
        assert_eq!(current(&c, "engagement_rate", now), Some(0.07));
        let r = c.get_metrics(
            &v1::GetMetricsRequest {
                names: vec!["nope".into()],
                window_hours: 0,
            },
            now,
        );
        assert!(matches!(r, Err(TrackerError::NotFound(_))));
        // The largest window a request can ask for reaches back to the start of time.
        let r = c.get_metrics(
            &v1::GetMetricsRequest {
                names: vec!["engagement_rate".into()],
                window_hours: u32::MAX,
            },
            now,
        );
        assert_eq!(r.unwrap().metrics[0].series.len(), 1);
        // Each metric says its unit: a duration target's values are seconds.
        let all = c
            .get_metrics(&v1::GetMetricsRequest::default(), now)
            .unwrap();
        let unit = |n: &str| {
            all.metrics
                .iter()
                .find(|m| m.name == n)
                .map(|m| m.unit.clone())
        };
        assert_eq!(unit("feedback_response_time").as_deref(), Some("s"));
        assert_eq!(unit("daily_output").as_deref(), Some(""));
    }

    #[test]
    fn engagement_samples_fire_once_per_episode_and_a_reload_keeps_the_state_and_series() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap());
        let mut c = core(&store);
        let mut fired = Vec::new();
        let mut post = |c: &mut Core, v: f64| {
            clock.advance(Duration::from_secs(60));
            let out = c
                .sample(&sample("engagement_rate", v, &[]), clock.now())
                .unwrap();
            apply(&store, &out);
            fired.extend(out.crossings.into_iter().map(|x| (x.value, x.entered)));
        };
        for v in [0.07, 0.06, 0.045, 0.04, 0.048, 0.052, 0.03] {
            post(&mut c, v);
        }
        drop(c);
        let mut c = core(&store);
        assert!(
            c.watch_state("trigger:on_performance_threshold")
                .unwrap()
                .inside
        );
        assert_eq!(c.point_counts().get("engagement_rate"), Some(&7));
        post(&mut c, 0.035);
        post(&mut c, 0.07);
        post(&mut c, 0.04);
        assert_eq!(fired, vec![(0.045, true), (0.07, false), (0.04, true)]);
        // A tick re-evaluates without firing again.
        assert!(c.tick(clock.now(), true).unwrap().crossings.is_empty());
    }

    #[test]
    fn a_days_output_below_target_fires_when_the_day_is_over() {
        let store = Arc::new(SledStore::temporary().unwrap());
        let day = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
        let mut c = core(&store);
        for i in 0..3 {
            let e = step_event(
                &format!("r{i}"),
                "draft-content",
                "content-creator",
                StepState::Succeeded,
                day,
            );
            assert!(
                c.run_event(&e, day).unwrap().crossings.is_empty(),
                "judged at the end of the day"
            );
        }
        let next = day + chrono::Duration::days(1);
        let out = c.tick(next, false).unwrap();
        assert_eq!(out.crossings.len(), 1);
        let x = &out.crossings[0];
        assert_eq!(
            (x.metric.as_str(), x.value, x.entered),
            ("daily_output", 3.0, true)
        );
        assert_eq!(x.predicate, "daily_output < 10");
    }
}
