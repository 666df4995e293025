//! The scheduler actor: owns every trigger's state and is the only thing that fires.
//!
//! Every message that may fire (a tick, an event, a fire by hand) is handled atomically
//! ([`AtomicResponse`]): while its publishes and store writes are in flight the actor takes
//! no other message and skips its ticks, so fires are handled one batch at a time, in
//! order, and the in-memory state never races the store.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use concierto_bus::{Bus, BusExt};
use concierto_core::clock::SharedClock;
use concierto_core::config::targets::TARGET_TRIGGER_PREFIX;
use concierto_core::config::{EventFilter, Misfire, Studio, Trigger, TriggerKind, When};
use concierto_core::grammar::format_duration;
use concierto_core::store::KvStore;
use concierto_core::subjects::{run_start_for, target_event};
use concierto_proto::v1::{self, ContentItem, ListTriggersResponse, StartRun, ThresholdCrossed};
use tracing::Instrument as _;

use crate::SchedulerError;
use crate::batch::{self, Added, Windows};
use crate::reload::{DayCap, HeldBatch, cap_on};
use crate::runs::{self, timestamp};
use crate::state::{TriggerState, save_state_async};
use crate::target;
use crate::timing::{fires_between, next_fire, plan_due};

mod change;
mod pause;
pub(crate) use change::StudioChanged;
pub(crate) use pause::SetPaused;

/// Due fires looked at per trigger and tick. A larger backlog (a per-second cron after a
/// long outage) is worked through a page per tick; every full page but the last is
/// counted missed whatever the policy.
const MAX_DUE: usize = 10_000;

/// What the actor shares with the futures it runs.
pub(crate) struct Core {
    pub studio: Arc<Studio>,
    /// The studio's triggers, then the implicit `target:<metric>` ones
    /// ([`crate::target::target_triggers`]); states and indexes follow this order.
    pub triggers: Vec<Trigger>,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn KvStore>,
    pub clock: SharedClock,
    pub instance: String,
    pub tick: Duration,
    pub misfire_grace: Duration,
}

/// One decision about one fire of a trigger.
enum Decision {
    /// A scheduled fire that will never start.
    Missed {
        fire_time: DateTime<Utc>,
        policy: Misfire,
    },
    /// Publish this run.
    Fire {
        start: Box<StartRun>,
        fire_time: DateTime<Utc>,
        /// Moves the misfire cursor (scheduled fires do; events and fires by hand do not).
        scheduled: bool,
        /// Counts against the trigger's `max_runs_per_day` (events and batches do).
        capped: bool,
        /// The batch window (its start) this fire empties once published or dropped.
        close: Option<DateTime<Utc>>,
    },
}

/// The decisions about one trigger, oldest first, with its state before them.
struct Work {
    index: usize,
    state: TriggerState,
    decisions: Vec<Decision>,
    /// The `max_runs_per_day` held for a day by a studio change ([`DayCap`]).
    cap: Option<DayCap>,
}

/// One trigger's state after its work, and each fire's run id or failure.
struct Outcome {
    index: usize,
    state: TriggerState,
    results: Vec<Result<String, SchedulerError>>,
    /// Batch windows emptied.
    closed: Vec<DateTime<Utc>>,
}

/// The actor.
pub(crate) struct SchedulerActor {
    core: Arc<Core>,
    /// Per trigger, in `core.triggers` order.
    states: Vec<TriggerState>,
    /// Per trigger: its open batch windows (start → items held).
    windows: Vec<Windows>,
    /// Per trigger: the next scheduled fire after its cursor (`None` for events, or a
    /// schedule that never fires again).
    next: Vec<Option<DateTime<Utc>>>,
    /// Per trigger: the cap kept until the end of the day its `max_runs_per_day`
    /// changed ([`crate::reload::held_cap`]).
    caps: Vec<Option<DayCap>>,
    /// Per trigger: what it keeps of its batch windows across a change of its `batch`
    /// ([`crate::reload::batch_changed`]).
    batches: Vec<HeldBatch>,
}

impl SchedulerActor {
    pub(crate) fn new(core: Arc<Core>, states: Vec<TriggerState>, windows: Vec<Windows>) -> Self {
        let mut actor = SchedulerActor {
            next: vec![None; states.len()],
            caps: vec![None; states.len()],
            batches: vec![HeldBatch::default(); states.len()],
            core,
            states,
            windows,
        };
        for index in 0..actor.states.len() {
            actor.refresh_next(index);
        }
        actor
    }

    fn refresh_next(&mut self, index: usize) {
        let next = match (&self.core.triggers[index].kind, self.states[index].cursor) {
            (TriggerKind::Scheduled { when, timezone, .. }, Some(cursor)) => {
                next_fire(when, *timezone, cursor)
            }
            _ => None,
        };
        self.next[index] = next;
    }

    /// Work for every scheduled trigger with fires due at `now`.
    fn due_work(&self, now: DateTime<Utc>) -> Vec<Work> {
        let studio = &self.core.studio;
        let mut work = Vec::new();
        for (index, trigger) in self.core.triggers.iter().enumerate() {
            let TriggerKind::Scheduled {
                when,
                timezone,
                misfire,
            } = &trigger.kind
            else {
                continue;
            };
            // A paused trigger's cursor stays where the pause found it: on resume the
            // fires missed meanwhile follow its misfire policy, as after a restart.
            if self.states[index].paused.is_some() || self.next[index].is_none_or(|next| next > now)
            {
                continue;
            }
            let state = &self.states[index];
            let from = state.cursor.unwrap_or(now);
            let due = fires_between(when, *timezone, from, now, MAX_DUE);
            let plan = if due.len() == MAX_DUE {
                crate::timing::DuePlan {
                    fire: Vec::new(),
                    missed: due,
                }
            } else {
                plan_due(&due, now, self.core.misfire_grace, *misfire)
            };
            let mut decisions: Vec<(DateTime<Utc>, Decision)> = plan
                .missed
                .into_iter()
                .map(|t| {
                    (
                        t,
                        Decision::Missed {
                            fire_time: t,
                            policy: *misfire,
                        },
                    )
                })
                .chain(plan.fire.into_iter().map(|t| {
                    (
                        t,
                        Decision::Fire {
                            start: Box::new(runs::scheduled_start(studio, trigger, t)),
                            fire_time: t,
                            scheduled: true,
                            capped: false,
                            close: None,
                        },
                    )
                }))
                .collect();
            decisions.sort_by_key(|(t, _)| *t);
            work.push(Work {
                index,
                state: state.clone(),
                decisions: decisions.into_iter().map(|(_, d)| d).collect(),
                cap: self.caps[index],
            });
        }
        work
    }

    /// Work for every batch window that has ended at `now`: one capped fire per
    /// window with its items (a window whose items cannot be read is logged and
    /// tried again at the next tick).
    fn batch_work(&self, now: DateTime<Utc>) -> Vec<Work> {
        let mut work = Vec::new();
        for (index, trigger) in self.core.triggers.iter().enumerate() {
            let held = &self.batches[index];
            if trigger.flood.batch.is_none() && held.lengths.is_empty() {
                continue;
            }
            // A paused trigger's open windows wait for the resume.
            if self.states[index].paused.is_some() {
                continue;
            }
            let mut decisions = Vec::new();
            for start in self.windows[index].keys() {
                // A window opened before its trigger's `batch` changed keeps its length.
                let Some(len) = held.length_of(*start, trigger.flood.batch) else {
                    continue;
                };
                let span = chrono::Duration::from_std(len).unwrap_or_default();
                if *start + span > now {
                    continue;
                }
                match batch::read_items(self.core.store.as_ref(), &trigger.name, *start) {
                    Ok(items) => decisions.push(Decision::Fire {
                        start: Box::new(batch::batch_start(
                            &self.core.studio,
                            trigger,
                            *start,
                            len,
                            &items,
                        )),
                        fire_time: *start + span,
                        scheduled: false,
                        capped: true,
                        close: Some(*start),
                    }),
                    Err(e) => {
                        tracing::error!(trigger = %trigger.name, window = %start.to_rfc3339(), error = %e, "could not read a batch window; trying again at the next tick")
                    }
                }
            }
            if !decisions.is_empty() {
                work.push(Work {
                    index,
                    state: self.states[index].clone(),
                    decisions,
                    cap: self.caps[index],
                });
            }
        }
        work
    }

    /// Work for unscheduled fires (events, by hand): one fire per start, grouped by
    /// trigger; `capped` fires count against `max_runs_per_day`.
    fn fire_work(&self, starts: Vec<StartRun>, capped: bool) -> Vec<Work> {
        let mut work: Vec<Work> = Vec::new();
        for start in starts {
            let Some(index) = self.index_of(&start.trigger) else {
                continue;
            };
            let fire_time = start
                .fire_time
                .as_ref()
                .map_or_else(|| self.core.clock.now(), runs::date_time);
            let decision = Decision::Fire {
                start: Box::new(start),
                fire_time,
                scheduled: false,
                capped,
                close: None,
            };
            match work.iter_mut().find(|w| w.index == index) {
                Some(w) => w.decisions.push(decision),
                None => work.push(Work {
                    index,
                    state: self.states[index].clone(),
                    decisions: vec![decision],
                    cap: self.caps[index],
                }),
            }
        }
        work
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.core.triggers.iter().position(|t| t.name == name)
    }

    /// `starts` without the fires of paused triggers (an event does not fire a paused
    /// trigger; it is not kept for the resume).
    fn unpaused(&self, starts: Vec<StartRun>) -> Vec<StartRun> {
        starts
            .into_iter()
            .filter(|start| {
                let paused = self
                    .index_of(&start.trigger)
                    .is_some_and(|index| self.states[index].paused.is_some());
                if paused {
                    tracing::info!(trigger = %start.trigger, run_id = %start.run_id, "trigger paused: the event does not fire it");
                }
                !paused
            })
            .collect()
    }

    /// Runs `work` and folds its outcome into the actor's state; resolves to every fire's
    /// result, in order.
    fn run(
        &mut self,
        work: Vec<Work>,
    ) -> ResponseActFuture<Self, Vec<Result<String, SchedulerError>>> {
        if work.is_empty() {
            return Box::pin(fut::ready(Vec::new()));
        }
        let core = self.core.clone();
        Box::pin(
            execute(core, work)
                .into_actor(self)
                .map(|outcomes, act, _| {
                    let mut results = Vec::new();
                    for outcome in outcomes {
                        act.states[outcome.index] = outcome.state;
                        act.refresh_next(outcome.index);
                        for start in outcome.closed {
                            act.windows[outcome.index].remove(&start);
                            act.batches[outcome.index].closed(start);
                        }
                        results.extend(outcome.results);
                    }
                    results
                }),
        )
    }

    /// The fires due now and the batch windows ended, if any.
    fn tick(&mut self) -> Option<ResponseActFuture<Self, ()>> {
        let now = self.core.clock.now();
        let mut work = self.due_work(now);
        work.extend(self.batch_work(now));
        if work.is_empty() {
            return None;
        }
        Some(Box::pin(self.run(work).map(|_, _, _| ())))
    }

    fn list(&self) -> ListTriggersResponse {
        let triggers = (0..self.core.triggers.len())
            .map(|index| self.view(index))
            .collect();
        ListTriggersResponse { triggers }
    }

    /// The trigger at `index` as `scheduler.triggers` lists it.
    fn view(&self, index: usize) -> v1::Trigger {
        let t = &self.core.triggers[index];
        let state = &self.states[index];
        let (kind, spec, timezone) = match &t.kind {
            TriggerKind::Scheduled { when, timezone, .. } => {
                let spec = match when {
                    When::Schedule(s) => s.to_string(),
                    When::Interval(d) => format_duration(*d),
                };
                ("scheduled", spec, timezone.name().to_string())
            }
            TriggerKind::Event(EventFilter::NewContent { sources }) => (
                "event",
                format!("source: [{}]", sources.join(", ")),
                String::new(),
            ),
            TriggerKind::Event(EventFilter::Threshold(pred))
                if t.name.starts_with(TARGET_TRIGGER_PREFIX) =>
            {
                ("event", format!("off target: {pred}"), String::new())
            }
            TriggerKind::Event(EventFilter::Threshold(pred)) => {
                ("event", format!("metric: {pred}"), String::new())
            }
        };
        v1::Trigger {
            name: t.name.clone(),
            kind: kind.to_string(),
            spec,
            workflow: t.workflow.clone(),
            agents: t.agents.clone(),
            timezone,
            // A paused trigger has no next fire until it is resumed.
            next_fire: if state.paused.is_some() {
                None
            } else {
                self.next[index].map(timestamp)
            },
            last_fire: state.last_fire.map(timestamp),
            fires: state.fires,
            missed: state.missed,
            dropped: state.dropped,
            batched: self.windows[index].values().sum(),
            paused: state.paused.is_some(),
            paused_by: state
                .paused
                .as_ref()
                .map(|p| p.by.clone())
                .unwrap_or_default(),
            paused_at: state.paused.as_ref().map(|p| timestamp(p.at)),
        }
    }
}

/// Publishes and records `work`, trigger by trigger, decision by decision, oldest first.
///
/// A missed fire is logged at warn and counted; a fire is published with its run id as
/// message id and recorded (state written and flushed) before the next decision. When a
/// publish fails the rest of that trigger's decisions wait: a scheduled fire stays due and
/// is tried again at the next tick.
async fn execute(core: Arc<Core>, work: Vec<Work>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(work.len());
    for Work {
        index,
        mut state,
        decisions,
        cap,
    } in work
    {
        let trigger = &core.triggers[index];
        let name = trigger.name.clone();
        let max_per_day = trigger.flood.max_runs_per_day;
        let mut results = Vec::new();
        let mut closed = Vec::new();
        let mut unsaved = false;
        let mut blocked: Option<String> = None;
        for decision in decisions {
            if let Some(reason) = &blocked {
                if let Decision::Fire { .. } = decision {
                    results.push(Err(SchedulerError::NotFired {
                        trigger: name.clone(),
                        reason: reason.clone(),
                    }));
                }
                continue;
            }
            match decision {
                Decision::Missed { fire_time, policy } => {
                    tracing::warn!(
                        trigger = %name,
                        fire_time = %fire_time.to_rfc3339(),
                        policy = ?policy,
                        instance = %core.instance,
                        "missed fire: not started"
                    );
                    state.missed += 1;
                    state.cursor = state.cursor.max(Some(fire_time));
                    unsaved = true;
                }
                Decision::Fire {
                    start,
                    fire_time,
                    scheduled,
                    capped,
                    close,
                } => {
                    if capped {
                        let today = core.clock.now().date_naive();
                        if state.day != Some(today) {
                            state.day = Some(today);
                            state.day_runs = 0;
                            state.day_dropped = 0;
                        }
                        if let Some(max) = cap_on(cap, max_per_day, today)
                            && state.day_runs >= max
                        {
                            state.dropped += 1;
                            state.day_dropped += 1;
                            if state.day_dropped == 1 {
                                tracing::warn!(trigger = %name, run_id = %start.run_id, max_runs_per_day = max, day = %today, "max_runs_per_day reached: this and later fires today are dropped and counted");
                            } else {
                                tracing::debug!(trigger = %name, run_id = %start.run_id, "fire dropped (max_runs_per_day)");
                            }
                            match save_state_async(core.store.clone(), name.clone(), state.clone())
                                .await
                            {
                                Ok(()) => {
                                    unsaved = false;
                                    if let Some(at) = close {
                                        match batch::clear(core.store.clone(), name.clone(), at)
                                            .await
                                        {
                                            Ok(()) => closed.push(at),
                                            Err(e) => {
                                                tracing::error!(trigger = %name, error = %e, "could not empty a dropped batch window")
                                            }
                                        }
                                    }
                                    results.push(Ok(format!("dropped:{}", start.run_id)));
                                }
                                Err(e) => {
                                    blocked = Some(e.to_string());
                                    results.push(Err(SchedulerError::NotFired {
                                        trigger: name.clone(),
                                        reason: e.to_string(),
                                    }));
                                }
                            }
                            continue;
                        }
                    }
                    if unsaved {
                        if let Err(e) =
                            save_state_async(core.store.clone(), name.clone(), state.clone()).await
                        {
                            tracing::error!(trigger = %name, error = %e, "could not record missed fires; not firing until it can");
                            results.push(Err(SchedulerError::NotFired {
                                trigger: name.clone(),
                                reason: e.to_string(),
                            }));
                            blocked = Some(e.to_string());
                            continue;
                        }
                        unsaved = false;
                    }
                    // The root span of the run's trace: `run.start` carries its context.
                    let span = tracing::info_span!(
                        "scheduler.fire",
                        service = "scheduler",
                        trigger = %name,
                        run_id = %start.run_id,
                        workflow = %start.workflow,
                        fire_time = %fire_time.to_rfc3339(),
                    );
                    match core
                        .bus
                        .publish_durable_proto(
                            &run_start_for(&start.run_id, core.studio.server.partitions),
                            start.as_ref(),
                            &start.run_id,
                        )
                        .instrument(span)
                        .await
                    {
                        Ok(ack) => {
                            if !ack.duplicate {
                                state.fires += 1;
                                if capped {
                                    state.day_runs += 1;
                                }
                                concierto_telemetry::metrics::trigger_fired(&name);
                            }
                            state.last_fire = state.last_fire.max(Some(fire_time));
                            if scheduled {
                                state.cursor = state.cursor.max(Some(fire_time));
                            }
                            tracing::debug!(
                                trigger = %name,
                                run_id = %start.run_id,
                                fire_time = %fire_time.to_rfc3339(),
                                workflow = %start.workflow,
                                duplicate = ack.duplicate,
                                instance = %core.instance,
                                "trigger fired"
                            );
                            match save_state_async(core.store.clone(), name.clone(), state.clone())
                                .await
                            {
                                Ok(()) => {
                                    if let Some(at) = close {
                                        match batch::clear(core.store.clone(), name.clone(), at)
                                            .await
                                        {
                                            Ok(()) => closed.push(at),
                                            Err(e) => {
                                                tracing::error!(trigger = %name, run_id = %start.run_id, error = %e, "could not empty a fired batch window; it fires again (a duplicate)")
                                            }
                                        }
                                    }
                                    results.push(Ok(start.run_id.clone()))
                                }
                                Err(e) => {
                                    // The run is started; the worst a crash now does is
                                    // publish the same id again, which the bus drops as a
                                    // duplicate.
                                    tracing::error!(trigger = %name, run_id = %start.run_id, error = %e, "could not record a fire");
                                    blocked = Some(e.to_string());
                                    results.push(Err(SchedulerError::NotRecorded {
                                        trigger: name.clone(),
                                        run_id: start.run_id.clone(),
                                        reason: e.to_string(),
                                    }));
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(
                                trigger = %name,
                                run_id = %start.run_id,
                                fire_time = %fire_time.to_rfc3339(),
                                error = %e,
                                "could not publish a fire; it stays due"
                            );
                            blocked = Some(e.to_string());
                            results.push(Err(e.into()));
                        }
                    }
                }
            }
        }
        if unsaved
            && let Err(e) = save_state_async(core.store.clone(), name.clone(), state.clone()).await
        {
            tracing::error!(trigger = %name, error = %e, "could not record missed fires");
        }
        outcomes.push(Outcome {
            index,
            state,
            results,
            closed,
        });
    }
    outcomes
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.core.tick, |act, ctx| {
            // actix calls this again at once for every tick missed while a batch was in
            // flight; planning then would use the state from before that batch.
            if ctx.waiting() {
                return;
            }
            if let Some(fut) = act.tick() {
                ctx.wait(fut);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::info!(instance = %self.core.instance, "scheduler stopped");
    }
}

/// Fire every scheduled fire due now (and apply misfire policies).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Tick;

impl Handler<Tick> for SchedulerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Tick, _: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.tick().unwrap_or_else(|| Box::pin(fut::ready(()))))
    }
}

/// New content arrived.
#[derive(Message)]
#[rtype(result = "Vec<Result<String, SchedulerError>>")]
pub(crate) struct Content(pub ContentItem);

impl Handler<Content> for SchedulerActor {
    type Result = AtomicResponse<Self, Vec<Result<String, SchedulerError>>>;

    fn handle(&mut self, msg: Content, _: &mut Self::Context) -> Self::Result {
        let starts = self.unpaused(runs::content_starts(
            &self.core.studio,
            &msg.0,
            self.core.clock.now(),
        ));
        if starts.is_empty() {
            tracing::debug!(source = %msg.0.source, item = %msg.0.item_id, "new content fires no trigger");
        } else if msg.0.item_id.trim().is_empty() {
            // Its run id would be `<trigger>@`, the same for every such item.
            return AtomicResponse::new(Box::pin(fut::ready(vec![Err(
                SchedulerError::InvalidEvent(format!(
                    "a content item from source {:?} has no item_id: its run would have no id of its own",
                    msg.0.source
                )),
            )])));
        }
        // Batched triggers keep the item in their open window; the others fire now.
        let now = self.core.clock.now();
        let mut adds = Vec::new();
        let mut fires = Vec::new();
        for start in starts {
            let batched = self.index_of(&start.trigger).and_then(|index| {
                let len = self.core.triggers[index].flood.batch?;
                Some((index, len))
            });
            match batched {
                Some((index, len)) => adds.push((
                    index,
                    self.core.triggers[index].name.clone(),
                    self.windows[index].clone(),
                    self.batches[index].window_for(len, now),
                )),
                None => fires.push(start),
            }
        }
        let work = self.fire_work(fires, true);
        if adds.is_empty() {
            return AtomicResponse::new(self.run(work));
        }
        let store = self.core.store.clone();
        let item = msg.0;
        let stored = async move {
            let mut out = Vec::with_capacity(adds.len());
            for (index, name, open, start) in adds {
                let r =
                    batch::add_item(store.clone(), name.clone(), open, start, item.clone()).await;
                out.push((index, name, start, r));
            }
            (item.item_id, out)
        };
        AtomicResponse::new(Box::pin(self.run(work).then(move |mut results, _, _| {
            fut::wrap_future::<_, Self>(stored).map(move |(item_id, added), act, _| {
                for (index, name, start, r) in added {
                    match r {
                        Ok(Added::Stored) => {
                            *act.windows[index].entry(start).or_default() += 1;
                            tracing::debug!(trigger = %name, item = %item_id, window = %start.to_rfc3339(), "item batched");
                            results.push(Ok(format!("batched:{name}@{}", start.to_rfc3339())));
                        }
                        Ok(Added::Duplicate) => results.push(Ok(format!("batched:{name}"))),
                        Ok(Added::Full) => {
                            act.states[index].dropped += 1;
                            tracing::warn!(trigger = %name, item = %item_id, window = %start.to_rfc3339(), max = batch::MAX_WINDOW_ITEMS, "batch window full: item dropped and counted");
                            results.push(Ok(format!("dropped:{name}")));
                        }
                        Err(e) => results.push(Err(e)),
                    }
                }
                results
            })
        })))
    }
}

/// A metric crossed a threshold.
#[derive(Message)]
#[rtype(result = "Vec<Result<String, SchedulerError>>")]
pub(crate) struct Threshold(pub ThresholdCrossed);

impl Handler<Threshold> for SchedulerActor {
    type Result = AtomicResponse<Self, Vec<Result<String, SchedulerError>>>;

    fn handle(&mut self, msg: Threshold, _: &mut Self::Context) -> Self::Result {
        let now = self.core.clock.now();
        let mut starts = runs::threshold_starts(&self.core.studio, &msg.0, now);
        starts.extend(target::target_starts(
            &self.core.studio,
            &self.core.triggers,
            &msg.0,
            now,
        ));
        let starts = self.unpaused(starts);
        let notices = target::target_notices(&self.core.studio, &msg.0, now);
        if starts.is_empty() && notices.is_empty() {
            tracing::debug!(metric = %msg.0.metric, value = msg.0.value, entered = msg.0.entered, "threshold event fires no trigger");
        } else if msg.0.at.is_none() {
            // Its run id would carry the time it was handled, another on each delivery.
            return AtomicResponse::new(Box::pin(fut::ready(vec![Err(
                SchedulerError::InvalidEvent(format!(
                    "a threshold crossing of {} has no `at`: its run id would differ on each delivery",
                    msg.0.metric
                )),
            )])));
        }
        let work = self.fire_work(starts, true);
        if notices.is_empty() {
            return AtomicResponse::new(self.run(work));
        }
        // The notices go out after the runs, naming them; a notice not published
        // hands the crossing back (its runs then come back as duplicates).
        let bus = self.core.bus.clone();
        let told = async move {
            let mut out = Vec::new();
            for (metric, notice) in notices {
                let id = match notice.crossed.as_ref().and_then(|c| c.at.as_ref()) {
                    Some(at) => format!(
                        "notice:{}",
                        target::target_run_id(&metric, runs::date_time(at))
                    ),
                    None => format!("notice:{metric}"),
                };
                let r = bus
                    .publish_durable_proto(&target_event(&metric), &notice, &id)
                    .await;
                match r {
                    Ok(_) => {
                        tracing::info!(%metric, notify = ?notice.notify, workflow = %notice.workflow, run_id = %notice.run_id, "off target: notice published");
                        out.push(Ok(id));
                    }
                    Err(e) => out.push(Err(SchedulerError::from(e))),
                }
            }
            out
        };
        AtomicResponse::new(Box::pin(self.run(work).then(move |mut results, _, _| {
            fut::wrap_future::<_, Self>(told).map(move |sent, _, _| {
                results.extend(sent);
                results
            })
        })))
    }
}

/// Fire a trigger by hand now.
#[derive(Message)]
#[rtype(result = "Result<String, SchedulerError>")]
pub(crate) struct FireNow {
    pub name: String,
    pub priority: v1::Priority,
}

impl Handler<FireNow> for SchedulerActor {
    type Result = AtomicResponse<Self, Result<String, SchedulerError>>;

    fn handle(&mut self, msg: FireNow, _: &mut Self::Context) -> Self::Result {
        let studio = self.core.studio.clone();
        let Some(trigger) = self.core.triggers.iter().find(|t| t.name == msg.name) else {
            let known = self
                .core
                .triggers
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return AtomicResponse::new(Box::pin(fut::ready(Err(
                SchedulerError::UnknownTrigger {
                    name: msg.name,
                    known,
                },
            ))));
        };
        let start = runs::manual_start(&studio, trigger, self.core.clock.now(), msg.priority);
        let name = trigger.name.clone();
        let work = self.fire_work(vec![start], false);
        AtomicResponse::new(Box::pin(self.run(work).map(move |results, _, _| {
            match results.into_iter().next() {
                // The run is started: that is the answer (the failure to record it is
                // logged).
                Some(Err(SchedulerError::NotRecorded { run_id, .. })) => Ok(run_id),
                Some(result) => result,
                None => Err(SchedulerError::NotFired {
                    trigger: name,
                    reason: "nothing was published".to_string(),
                }),
            }
        })))
    }
}

/// Every trigger with its state.
#[derive(Message)]
#[rtype(result = "ListTriggersResponse")]
pub(crate) struct List;

impl Handler<List> for SchedulerActor {
    type Result = MessageResult<List>;

    fn handle(&mut self, _: List, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.list())
    }
}

/// Stop after the work in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

impl Handler<Shutdown> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
