//! The scheduler service: turns the studio's triggers into `run.start` messages, exactly
//! once per fire.
//!
//! # What it is for
//!
//! Every run of a workflow starts with a [`StartRun`](concierto_proto::v1::StartRun) on
//! `run.start` (stream `RUNS`), which the orchestrator takes from there. The scheduler is
//! what publishes them for the studio's `triggers`:
//!
//! - **scheduled** triggers (`time: "09:00"`, `time: "Monday 10:00"`, `cron:`, `interval:
//!   "6 hours"`) fire on their schedule, in their time zone (daylight saving included);
//!   intervals fire at multiples of their length since the Unix epoch, so every scheduler
//!   process computes the same fire times;
//! - **event** triggers fire on new content (`content.ingested.>`, `source: [...]`) and on
//!   thresholds crossed (`event.metric.>`, `metric: "engagement_rate < 0.05"`), read from
//!   stream `EVENTS` through durable consumers, so an event published while the scheduler
//!   is down fires when it is back;
//! - any trigger fires **by hand** on a `scheduler.fire` request, and `scheduler.triggers`
//!   lists them all with their next and last fire and their counters;
//! - any trigger is **paused** and resumed on a `scheduler.pause` request: a paused
//!   trigger does not fire on its schedule or its events (a fire by hand still does),
//!   the pause (who, when) is stored with its state and survives a restart, and on
//!   resume the fires missed meanwhile follow its misfire policy, as after a restart
//!   (`actor/pause.rs`);
//! - **targets drive work**: a progress metric's `on_off_target` is an implicit event
//!   trigger `target:<metric>` on its off-target predicate, and tells its `notify`
//!   reviewers on `event.target.<metric>` ([`target`]);
//! - **flood control**: a new-content trigger with `batch: "1 hour"` starts one run per
//!   window with every item of the window, kept in the store until then ([`batch`]); an
//!   event trigger with `max_runs_per_day: N` drops (and counts, in `dropped`) the fires
//!   past N in a UTC day, logged once that day. Fires by hand are never capped.
//!
//! # The flow
//!
//! ```text
//!  clock ──tick───────────────────────▶ SchedulerActor ── due fires (misfire policy),
//!  EVENTS content.ingested.> ─────────────────┤         event fires, fires by hand
//!    (durable scheduler-content)              │                  │
//!  EVENTS event.metric.> ─────────────────────┤                  ▼
//!    (durable scheduler-metrics)              │   publish_durable(run.start, id = run id)
//!  scheduler.fire, .triggers, .pause ─────────┘                  │ then
//!    (request/reply, queue group scheduler)                      ▼
//!                              store "scheduler": cursor, last fire, fires, missed
//!                              (flushed); then the event is acknowledged
//! ```
//!
//! 1. [`start`] declares the `RUNS` and `EVENTS` streams, reads each trigger's state from
//!    the store (tree [`state::TREE`]), opens the durable consumers [`CONTENT_DURABLE`] and
//!    [`METRICS_DURABLE`] on `EVENTS` (shared by every scheduler replica; created to
//!    deliver only what is stored from then on, so a first start does not replay the
//!    stream's history), subscribes to the requests (queue group `scheduler`), starts the
//!    actor and waits for its first tick, which handles the fires missed while the
//!    scheduler was down.
//! 2. Every [`SchedulerOptions::tick`] the actor asks the [`Clock`](concierto_core::clock::Clock)
//!    for the time (never the system directly, so tests run a month in milliseconds) and
//!    takes every scheduled fire in `(cursor, now]`. A fire at most
//!    [`SchedulerOptions::misfire_grace`] old fires; older ones were missed and follow the
//!    trigger's `misfire` policy ([`timing::plan_due`]): `skip` fires none, `fire_once` the
//!    latest, `fire_all: N` the latest N; the rest are logged at warn and counted. On the
//!    very first start there is no cursor: it is set to the start time and nothing is
//!    missed.
//! 3. A fire is `StartRun { run_id, workflow, trigger, fire_time, priority, requested_by,
//!    cause }` published with its run id as the message id ([`runs`] says how ids are
//!    formed). The run id names the fire, not the process, so two schedulers, or one that
//!    restarts, publish the same id and the stream stores it once (within its duplicate
//!    window; the orchestrator also keys runs by id). After a successful publish the
//!    trigger's state is written and flushed before anything else happens: a crash in
//!    between only publishes the same id again.
//! 4. An event is acknowledged only once every fire it caused is published and recorded;
//!    if one is not, the event is handed back (nak) with a growing delay and fires again
//!    later with the same run ids: what did go out the first time is dropped as a
//!    duplicate by the stream (within its duplicate window) and by the orchestrator,
//!    which starts a run id once. An event that could not fire exactly once (a content
//!    item without an id, a threshold crossing without its time) is dead-lettered with
//!    the reason, and so is one still failing after [`EVENT_MAX_DELIVER`] deliveries.
//! 5. Every fire logs one `trigger fired` line at info (trigger, run_id, fire_time); every
//!    missed fire one `missed fire` line at warn. Nothing is dropped silently.
//!
//! All fires go through one actix actor whose firing handlers are atomic, so fires are
//! handled one batch at a time and the in-memory state never races the store.
//! [`ServiceHandle::stop`] lets the work in flight finish (an event being handled is
//! settled; events pulled but not yet handled are handed back), then stops the listeners
//! and the actor and flushes the store.
//!
//! # A studio change
//!
//! [`ServiceHandle::studio_changed`] hands the scheduler a new validated studio (the
//! process does it on a reload). The actor first handles the fires due under the
//! triggers it has, then rebuilds its trigger table (the studio's triggers and the
//! implicit `target:` and report ones) and logs one `studio changed: triggers ...`
//! line naming what was added, removed and changed. Triggers keep their state by name:
//! a moved schedule fires from the change instant on (its next fire is the new
//! schedule's first after the change; no past slot of it fires or counts as missed), a
//! changed `metric:` predicate applies to the next threshold event, a changed `batch`
//! to the next window and a changed `max_runs_per_day` to the next UTC day; an added
//! trigger starts afresh (a scheduled one from the change instant) and a removed one
//! stops firing, its stored state kept. `scheduler.triggers` lists the new table at
//! once. [`reload`] has the rules. The bus limits of the streams are read at start
//! only.
//!
//! The scheduler must be started inside an actix `System` (`#[actix_rt::test]`,
//! `actix::System::with_tokio_rt`); outside one, [`start`] returns
//! [`SchedulerError::NoSystem`].

mod actor;
pub mod batch;
mod listen;
pub mod reload;
pub mod runs;
pub mod state;
pub mod target;
pub mod timing;

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use concierto_bus::{Bus, BusError, BusExt, ConsumerSpec, StreamLimits, standard_streams};
use concierto_core::clock::SharedClock;
use concierto_core::config::{Studio, TriggerKind};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, StoreError};
use concierto_core::subjects::{
    CONTENT_INGESTED, METRIC_EVENTS, RUN_START, SCHEDULER_FIRE, SCHEDULER_PAUSE, SCHEDULER_TRIGGERS,
};
use concierto_proto::v1::{FireTriggerRequest, ListTriggersRequest, PauseTriggerRequest};

use crate::actor::{Core, SchedulerActor, StudioChanged, Tick};

pub use crate::runs::{
    content_matches, content_run_id, manual_run_id, scheduled_run_id, threshold_run_id,
};
pub use crate::state::{TriggerState, load_state};
pub use crate::timing::{DuePlan, fires_between, next_fire, plan_due};

/// Queue group of the scheduler's request subscriptions: replicas share requests.
pub const QUEUE_GROUP: &str = "scheduler";

/// The stream event triggers are read from.
pub const EVENTS_STREAM: &str = "EVENTS";
/// Durable consumer of `content.ingested.>` on [`EVENTS_STREAM`], shared by replicas.
pub const CONTENT_DURABLE: &str = "scheduler-content";
/// Durable consumer of `event.metric.>` on [`EVENTS_STREAM`], shared by replicas.
pub const METRICS_DURABLE: &str = "scheduler-metrics";
/// Deliveries of one event before it is dead-lettered (its fires kept failing; with the
/// growing retry delay, about four minutes of tries).
pub const EVENT_MAX_DELIVER: u64 = 10;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often it looks at the clock (1 s by default; tests use milliseconds).
    pub tick: Duration,
    /// This process's name in the logs.
    pub instance: String,
    /// How late a scheduled fire may be found and still fire as on time (60 s by
    /// default). An older one was missed and follows its trigger's misfire policy.
    pub misfire_grace: Duration,
    /// The event consumers' `ack_wait` (30 s by default): an event being handled is kept
    /// alive meanwhile; one not settled within it (its scheduler died) is delivered again,
    /// to another replica or to this one once it is back.
    pub ack_wait: Duration,
    /// How long one pull for events waits when there are none (1 s by default). A stop
    /// lets the pull under way end, waiting at most this and a second.
    pub fetch_wait: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            tick: Duration::from_secs(1),
            instance: format!("scheduler-{}", std::process::id()),
            misfire_grace: Duration::from_secs(60),
            ack_wait: Duration::from_secs(30),
            fetch_wait: Duration::from_secs(1),
        }
    }
}

/// What can go wrong in the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// `start` was called outside an actix System.
    #[error(
        "the scheduler runs actix actors and must be started inside an actix System \
         (actix::System::with_tokio_rt, or #[actix_rt::test] in tests)"
    )]
    NoSystem,
    /// The bus refused something.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A trigger's stored state does not read back.
    #[error(
        "the stored state of trigger {trigger:?} is unreadable ({detail}); delete key \
         \"trigger/{trigger}\" of store tree \"scheduler\" to start it afresh"
    )]
    CorruptState {
        /// The trigger.
        trigger: String,
        /// What is wrong.
        detail: String,
    },
    /// A fire by hand named a trigger the studio does not have.
    #[error("no trigger named {name:?} (the studio has: {known})")]
    UnknownTrigger {
        /// The name asked for.
        name: String,
        /// The triggers there are.
        known: String,
    },
    /// A fire was not published because an earlier step for its trigger failed.
    #[error("trigger {trigger:?} did not fire: {reason}")]
    NotFired {
        /// The trigger.
        trigger: String,
        /// Why.
        reason: String,
    },
    /// A run was started but its fire could not be recorded; the event that caused it is
    /// handed back, so that the fire is recorded on its next delivery (the same run id is
    /// then dropped as a duplicate).
    #[error(
        "run {run_id} of trigger {trigger:?} was started, but its fire could not be recorded: {reason}"
    )]
    NotRecorded {
        /// The trigger.
        trigger: String,
        /// The run started.
        run_id: String,
        /// Why it was not recorded.
        reason: String,
    },
    /// An event that cannot fire exactly once (its run id would not be stable across
    /// deliveries); it is dead-lettered with this reason.
    #[error("{0}")]
    InvalidEvent(String),
    /// A store write on a blocking thread did not finish.
    #[error("a store write did not finish: {0}")]
    Blocking(String),
    /// The scheduler stopped before answering.
    #[error("the scheduler has stopped")]
    Stopped,
}

impl SchedulerError {
    /// The `Concierto-Error` header value of a reply carrying this error
    /// (`not_found: ...`, `unavailable: ...`, `internal: ...`).
    pub fn reply_header(&self) -> String {
        let code = match self {
            SchedulerError::UnknownTrigger { .. } => "not_found",
            SchedulerError::Bus(_) | SchedulerError::NotFired { .. } | SchedulerError::Stopped => {
                "unavailable"
            }
            _ => "internal",
        };
        format!("{code}: {self}")
    }
}

/// Starts the scheduler for `studio`: publishes runs on `bus`, keeps its state in `store`
/// (tree `scheduler`), reads the time from `clock`. Returns once the fires missed while
/// it was down have been handled; stop it with [`ServiceHandle::stop`]. The handle takes
/// a changed studio live ([`ServiceHandle::studio_changed`]; see [`reload`]).
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: SchedulerOptions,
) -> Result<ServiceHandle, SchedulerError> {
    if actix::System::try_current().is_none() {
        return Err(SchedulerError::NoSystem);
    }
    let limits = StreamLimits {
        max_age: studio.server.bus.max_age,
        max_bytes: studio.server.bus.max_bytes,
        max_msgs: studio.server.bus.max_msgs,
        duplicate_window: studio.server.bus.duplicate_window,
        replicas: studio.server.bus.replicas,
    };
    for spec in standard_streams(&limits).iter().filter(|s| {
        s.subjects
            .iter()
            .any(|s| s == RUN_START || s == CONTENT_INGESTED)
    }) {
        bus.ensure_stream(spec).await?;
    }

    let now = clock.now();
    let triggers = reload::all_triggers(&studio);
    let mut states = Vec::with_capacity(triggers.len());
    let mut windows = Vec::with_capacity(triggers.len());
    for trigger in &triggers {
        windows.push(if trigger.flood.batch.is_some() {
            let w = batch::load_windows(store.as_ref(), &trigger.name)?;
            if !w.is_empty() {
                tracing::info!(trigger = %trigger.name, windows = w.len(), items = w.values().sum::<u32>(), "batch windows kept across the restart");
            }
            w
        } else {
            Default::default()
        });
        let mut state = load_state(store.as_ref(), &trigger.name)?;
        if matches!(trigger.kind, TriggerKind::Scheduled { .. }) && state.cursor.is_none() {
            tracing::debug!(trigger = %trigger.name, from = %now.to_rfc3339(), "first start of this trigger: it fires from now on");
            state.cursor = Some(now);
            state::save_state(store.as_ref(), &trigger.name, &state)?;
        }
        states.push(state);
    }

    // Events wait in the stream for their consumer: what was published while this
    // scheduler was down is delivered now. A consumer created now starts at the next
    // event stored.
    let event_spec = |durable: &str, filter: &str| {
        let mut spec = ConsumerSpec::new(durable, filter);
        spec.ack_wait = opts.ack_wait;
        spec.max_deliver = EVENT_MAX_DELIVER;
        spec.deliver_new = true;
        spec
    };
    let content = bus
        .consumer(
            EVENTS_STREAM,
            &event_spec(CONTENT_DURABLE, CONTENT_INGESTED),
        )
        .await?;
    let metrics = bus
        .consumer(EVENTS_STREAM, &event_spec(METRICS_DURABLE, METRIC_EVENTS))
        .await?;
    let pull = listen::Pull {
        ack_wait: opts.ack_wait,
        fetch_wait: opts.fetch_wait,
    };
    let fire = bus
        .queue_subscribe_proto::<FireTriggerRequest>(SCHEDULER_FIRE, QUEUE_GROUP)
        .await?;
    let list = bus
        .queue_subscribe_proto::<ListTriggersRequest>(SCHEDULER_TRIGGERS, QUEUE_GROUP)
        .await?;
    let pause = bus
        .queue_subscribe_proto::<PauseTriggerRequest>(SCHEDULER_PAUSE, QUEUE_GROUP)
        .await?;

    let instance = opts.instance.clone();
    let trigger_count = triggers.len();
    let core = Arc::new(Core {
        studio: studio.clone(),
        triggers,
        bus: bus.clone(),
        store: store.clone(),
        clock,
        instance: opts.instance,
        tick: opts.tick,
        misfire_grace: opts.misfire_grace,
    });
    let addr = SchedulerActor::new(core, states, windows).start();
    addr.send(Tick).await.map_err(|_| SchedulerError::Stopped)?;
    tracing::info!(
        instance = %instance,
        triggers = trigger_count,
        tick = ?opts.tick,
        "scheduler started"
    );

    let (handle, control) = ServiceHandle::new("scheduler");
    let hook = addr.clone();
    let handle = handle.on_studio_change(move |studio| hook.do_send(StudioChanged(studio)));
    let listeners = vec![
        actix::spawn(listen::content(
            content,
            addr.clone(),
            control.signal.clone(),
            pull,
        )),
        actix::spawn(listen::metrics(
            metrics,
            addr.clone(),
            control.signal.clone(),
            pull,
        )),
        actix::spawn(listen::fire(
            fire,
            addr.clone(),
            bus.clone(),
            control.signal.clone(),
        )),
        actix::spawn(listen::list(
            list,
            addr.clone(),
            bus.clone(),
            control.signal.clone(),
        )),
        actix::spawn(listen::pause(
            pause,
            addr.clone(),
            bus,
            control.signal.clone(),
        )),
    ];
    actix::spawn(listen::supervise(control, listeners, addr, store, instance));
    Ok(handle)
}
