//! Pausing and resuming triggers (`scheduler.pause`) against real parts: the example
//! studio, a sled store, the embedded bus, and a [`ManualClock`] so that days of
//! schedules pass in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, EmbeddedBus, StreamLimits, encode, ensure_standard_streams,
};
use concierto_core::clock::{Clock, ManualClock, SharedClock};
use concierto_core::config::{Misfire, Studio, TriggerKind};
use concierto_core::service::ServiceHandle;
use concierto_core::store::SledStore;
use concierto_core::subjects::{
    ERROR_HEADER, SCHEDULER_FIRE, SCHEDULER_PAUSE, SCHEDULER_TRIGGERS, content_ingested,
};
use concierto_proto::v1::{
    self, ContentItem, FireTriggerRequest, FireTriggerResponse, ListTriggersRequest,
    ListTriggersResponse, PauseTriggerRequest, PauseTriggerResponse, StartRun,
};
use concierto_scheduler::{SchedulerOptions, fires_between, load_state, start};

const DAILY: &str = "daily_content_generation";
const INTERVAL: &str = "continuous_optimization";
const INSPIRATION: &str = "on_new_inspiration";

const PATIENCE: Duration = Duration::from_secs(15);

/// The example studio's seed triggers, every scheduled one on `policy`, no flood
/// control and no implicit triggers.
fn studio_with(policy: Misfire) -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut studio =
        concierto_core::config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    studio
        .triggers
        .retain(|t| [DAILY, INTERVAL, INSPIRATION].contains(&t.name.as_str()));
    assert_eq!(studio.triggers.len(), 3);
    for t in &mut studio.triggers {
        t.flood = Default::default();
        if let TriggerKind::Scheduled { misfire, .. } = &mut t.kind {
            *misfire = policy;
        }
    }
    studio.progress_metrics.clear();
    Arc::new(studio)
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

async fn embedded() -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
        .await
        .unwrap();
    bus
}

async fn start_scheduler(
    studio: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
    store: &Arc<SledStore>,
    clock: &ManualClock,
) -> ServiceHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let shared: SharedClock = Arc::new(clock.clone());
    let opts = SchedulerOptions {
        tick: Duration::from_millis(2),
        instance: "pause-test".into(),
        ..SchedulerOptions::default()
    };
    start(studio.clone(), bus.clone(), store.clone(), shared, opts)
        .await
        .expect("the scheduler starts")
}

/// Moves the clock to `to` an hour at a time, waiting after each step until the
/// unpaused trigger `INTERVAL` has handled every fire up to then (so the scheduler has
/// ticked past it; a paused trigger's cursor does not move).
async fn run_until(
    studio: &Studio,
    clock: &ManualClock,
    store: &Arc<SledStore>,
    to: DateTime<Utc>,
) {
    let interval = studio
        .triggers
        .iter()
        .find(|t| t.name == INTERVAL)
        .expect("the interval trigger");
    let TriggerKind::Scheduled { when, timezone, .. } = &interval.kind else {
        panic!("{INTERVAL} is scheduled");
    };
    while clock.now() < to {
        let next = (clock.now() + chrono::Duration::hours(1)).min(to);
        clock.set(next);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let state = load_state(store.as_ref(), INTERVAL).unwrap();
            if state
                .cursor
                .is_some_and(|c| fires_between(when, *timezone, c, next, 1).is_empty())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no catch-up to {next}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Every StartRun stored in RUNS so far (durable consumer `check`), acknowledged.
async fn drain_runs(bus: &Arc<dyn Bus>) -> Vec<StartRun> {
    let consumer = bus
        .consumer("RUNS", &ConsumerSpec::new("check", "run.start"))
        .await
        .unwrap();
    let mut runs = Vec::new();
    loop {
        let got = consumer
            .fetch_proto::<StartRun>(100, Duration::from_millis(150))
            .await
            .unwrap();
        if got.is_empty() {
            return runs;
        }
        for (run, delivery) in got {
            delivery.ack().await.unwrap();
            runs.push(run);
        }
    }
}

fn of(runs: &[StartRun], trigger: &str) -> Vec<String> {
    runs.iter()
        .filter(|r| r.trigger == trigger)
        .map(|r| r.run_id.clone())
        .collect()
}

async fn set_paused(bus: &Arc<dyn Bus>, name: &str, paused: bool) -> v1::Trigger {
    let resp: PauseTriggerResponse = bus
        .request_proto(
            SCHEDULER_PAUSE,
            &PauseTriggerRequest {
                name: name.into(),
                paused,
                requested_by: "ana".into(),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the scheduler answers a pause request");
    resp.trigger.expect("the trigger in the answer")
}

async fn listed(bus: &Arc<dyn Bus>, name: &str) -> v1::Trigger {
    let list: ListTriggersResponse = bus
        .request_proto(
            SCHEDULER_TRIGGERS,
            &ListTriggersRequest {},
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    list.triggers
        .into_iter()
        .find(|t| t.name == name)
        .expect("the trigger is listed")
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(concierto_scheduler::runs::timestamp(t))
}

/// Pauses DAILY (09:00 Madrid = 08:00 UTC in March) at 06:00 on the 10th, lets four of
/// its fires pass, checks nothing fired, then resumes at 12:00 on the 13th; returns the
/// runs the resume started and the store.
async fn paused_four_days(policy: Misfire) -> (Vec<StartRun>, Arc<SledStore>) {
    let studio = studio_with(policy);
    let bus = embedded().await;
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(2026, 3, 10, 6, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock).await;

    let paused = set_paused(&bus, DAILY, true).await;
    assert!(paused.paused);
    assert_eq!(paused.paused_by, "ana");
    assert_eq!(paused.paused_at, ts(utc(2026, 3, 10, 6, 0)));
    assert_eq!(paused.next_fire, None, "a paused trigger has no next fire");
    // Pausing again changes nothing (who and when stay the first pause's).
    clock.set(utc(2026, 3, 10, 6, 30));
    let again = set_paused(&bus, DAILY, true).await;
    assert_eq!(again.paused_at, ts(utc(2026, 3, 10, 6, 0)));

    run_until(&studio, &clock, &store, utc(2026, 3, 13, 12, 0)).await;
    let runs = drain_runs(&bus).await;
    assert!(
        of(&runs, DAILY).is_empty(),
        "a paused trigger fired: {runs:?}"
    );
    assert!(
        !of(&runs, INTERVAL).is_empty(),
        "the other triggers kept firing"
    );
    let listed_paused = listed(&bus, DAILY).await;
    assert!(listed_paused.paused);
    assert_eq!(listed_paused.paused_by, "ana");
    assert_eq!(
        listed_paused.missed, 0,
        "nothing counted missed while paused"
    );

    // A fire by hand of a paused trigger still starts a run (an explicit human act).
    let by_hand: FireTriggerResponse = bus
        .request_proto(
            SCHEDULER_FIRE,
            &FireTriggerRequest {
                name: DAILY.into(),
                priority: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        by_hand.run_id,
        "daily_content_generation@manual@2026-03-13T12:00:00.000Z"
    );
    assert_eq!(of(&drain_runs(&bus).await, DAILY), vec![by_hand.run_id]);

    // The resume skips the fires that fell due while paused.
    let resumed = set_paused(&bus, DAILY, false).await;
    assert!(!resumed.paused);
    assert_eq!(resumed.paused_by, "");
    assert_eq!(resumed.paused_at, None);
    assert_eq!(resumed.next_fire, ts(utc(2026, 3, 14, 8, 0)));
    let after = drain_runs(&bus).await;
    handle.stop().await.unwrap();
    (after, store)
}

#[actix_rt::test]
async fn a_paused_trigger_does_not_fire_and_its_resume_skips_what_fell_due_whatever_the_policy() {
    for policy in [Misfire::FireOnce, Misfire::Skip] {
        let (after, store) = paused_four_days(policy).await;
        assert!(of(&after, DAILY).is_empty(), "{policy:?}: {after:?}");
        let state = load_state(store.as_ref(), DAILY).unwrap();
        assert_eq!(
            state.missed, 0,
            "{policy:?}: skipped on purpose, not missed"
        );
        assert_eq!(state.paused, None);
        assert_eq!(
            state.cursor,
            Some(utc(2026, 3, 13, 12, 0)),
            "{policy:?}: counted from the resume"
        );
    }
}

#[actix_rt::test]
async fn a_pause_survives_a_restart_and_stops_event_fires_too() {
    let studio = studio_with(Misfire::FireOnce);
    let bus = embedded().await;
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(2026, 3, 10, 6, 0));
    let first = start_scheduler(&studio, &bus, &store, &clock).await;
    set_paused(&bus, DAILY, true).await;
    set_paused(&bus, INSPIRATION, true).await;
    first.stop().await.unwrap();

    // Down over a fire time; back after it: still paused, and the missed fire waits.
    clock.set(utc(2026, 3, 10, 9, 0));
    let second = start_scheduler(&studio, &bus, &store, &clock).await;
    let daily = listed(&bus, DAILY).await;
    assert!(daily.paused, "the pause was kept across the restart");
    assert_eq!(daily.paused_by, "ana");
    assert_eq!(daily.paused_at, ts(utc(2026, 3, 10, 6, 0)));
    assert!(listed(&bus, INSPIRATION).await.paused);

    // New content does not fire the paused event trigger (it is not kept for later).
    let item = ContentItem {
        item_id: "sha256:site".into(),
        source: "siteinspire".into(),
        kind: "page".into(),
        ..Default::default()
    };
    bus.publish_proto(&content_ingested("siteinspire"), &item)
        .await
        .unwrap();
    run_until(&studio, &clock, &store, utc(2026, 3, 10, 13, 0)).await;
    let runs = drain_runs(&bus).await;
    assert!(of(&runs, DAILY).is_empty(), "{runs:?}");
    assert!(of(&runs, INSPIRATION).is_empty(), "{runs:?}");

    set_paused(&bus, INSPIRATION, false).await;
    let item = ContentItem {
        item_id: "sha256:next".into(),
        ..item
    };
    bus.publish_proto(&content_ingested("siteinspire"), &item)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut fired = Vec::new();
    while fired.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resumed trigger did not fire"
        );
        fired = of(&drain_runs(&bus).await, INSPIRATION);
    }
    assert_eq!(fired, vec!["on_new_inspiration@sha256:next"]);
    second.stop().await.unwrap();
}

#[actix_rt::test]
async fn an_unknown_trigger_is_not_found_and_a_removed_trigger_drops_its_pause() {
    let studio = studio_with(Misfire::FireOnce);
    let bus = embedded().await;
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(2026, 3, 10, 6, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock).await;

    let unknown = bus
        .request(
            SCHEDULER_PAUSE,
            encode(&PauseTriggerRequest {
                name: "daily_content_generaton".into(),
                paused: true,
                requested_by: "ana".into(),
            }),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let error = unknown.headers.get(ERROR_HEADER).expect("an error header");
    assert!(
        error.starts_with("not_found: no trigger named \"daily_content_generaton\""),
        "{error}"
    );

    set_paused(&bus, DAILY, true).await;
    let mut without = (*studio).clone();
    without.triggers.retain(|t| t.name != DAILY);
    handle.studio_changed(&Arc::new(without));
    // The change is handled in order: once the list lacks DAILY, its pause is dropped.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let list: ListTriggersResponse = bus
            .request_proto(SCHEDULER_TRIGGERS, &ListTriggersRequest {}, PATIENCE)
            .await
            .unwrap();
        if list.triggers.iter().all(|t| t.name != DAILY)
            && load_state(store.as_ref(), DAILY).unwrap().paused.is_none()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "DAILY was not removed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.studio_changed(&studio);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let list: ListTriggersResponse = bus
            .request_proto(SCHEDULER_TRIGGERS, &ListTriggersRequest {}, PATIENCE)
            .await
            .unwrap();
        if let Some(t) = list.triggers.iter().find(|t| t.name == DAILY) {
            assert!(!t.paused, "a trigger added back starts unpaused");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "DAILY did not come back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop().await.unwrap();
}
