//! The scheduler against real parts: the example studio, a sled store, the embedded bus
//! (fast cases) and a real nats-server (racing schedulers, events and requests), with a
//! [`ManualClock`] so that a month of schedules runs in a second or two.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, EmbeddedBus, NatsBus, NatsOptions, StreamLimits, encode,
    ensure_standard_streams,
};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{Misfire, Studio, TriggerKind};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects::{
    ERROR_HEADER, SCHEDULER_FIRE, SCHEDULER_TRIGGERS, content_ingested, metric_event,
};
use concierto_proto::v1::{
    self, ContentItem, FireTriggerRequest, FireTriggerResponse, ListTriggersRequest,
    ListTriggersResponse, StartRun, ThresholdCrossed, start_run,
};
use concierto_scheduler::{SchedulerError, SchedulerOptions, fires_between, load_state, start};
use concierto_testkit::NatsServer;

const DAILY: &str = "daily_content_generation";
const WEEKLY: &str = "weekly_trend_analysis";
const INTERVAL: &str = "continuous_optimization";
const INSPIRATION: &str = "on_new_inspiration";
const THRESHOLD: &str = "on_performance_threshold";

/// How long a test waits for something the scheduler does before failing.
const PATIENCE: Duration = Duration::from_secs(15);

/// The example studio's seed triggers (any `demo_triggers` the file adds are left out, so
/// that the counts below are the seed's).
fn studio() -> Studio {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut studio =
        concierto_core::config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    studio
        .triggers
        .retain(|t| [DAILY, WEEKLY, INTERVAL, INSPIRATION, THRESHOLD].contains(&t.name.as_str()));
    assert_eq!(studio.triggers.len(), 5, "the seed's five triggers");
    // One run per item: flood control is tested in tests/flood_and_targets.rs.
    for t in &mut studio.triggers {
        t.flood = Default::default();
    }
    // No implicit target or report triggers either (tests/flood_and_targets.rs).
    studio.progress_metrics.clear();
    studio
}

/// The example studio with every scheduled trigger on `policy`.
fn studio_with(policy: Misfire) -> Arc<Studio> {
    let mut studio = studio();
    for t in &mut studio.triggers {
        if let TriggerKind::Scheduled { misfire, .. } = &mut t.kind {
            *misfire = policy;
        }
    }
    Arc::new(studio)
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn madrid() -> Tz {
    "Europe/Madrid".parse().unwrap()
}

fn opts(instance: &str) -> SchedulerOptions {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SchedulerOptions {
        tick: Duration::from_millis(2),
        instance: instance.to_string(),
        ..SchedulerOptions::default()
    }
}

fn store() -> Arc<SledStore> {
    Arc::new(SledStore::temporary().expect("a temporary store"))
}

async fn embedded() -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
        .await
        .unwrap();
    bus
}

async fn nats(server: &NatsServer) -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&server.url(), NatsOptions::default())
            .await
            .expect("connect to the test nats-server"),
    );
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
    instance: &str,
) -> ServiceHandle {
    let clock: SharedClock = Arc::new(clock.clone());
    start(
        studio.clone(),
        bus.clone(),
        store.clone(),
        clock,
        opts(instance),
    )
    .await
    .expect("the scheduler starts")
}

/// Waits until every store shows every scheduled fire up to `now` handled (fired or
/// counted missed).
async fn caught_up(studio: &Studio, stores: &[&Arc<SledStore>], now: DateTime<Utc>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let done = stores.iter().all(|store| {
            studio.triggers.iter().all(|t| {
                let TriggerKind::Scheduled { when, timezone, .. } = &t.kind else {
                    return true;
                };
                let state = load_state(store.as_ref(), &t.name).unwrap();
                state
                    .cursor
                    .is_some_and(|cursor| fires_between(when, *timezone, cursor, now, 1).is_empty())
            })
        });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler did not catch up with {now}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Moves the clock from its time to `to` an hour at a time, letting the schedulers catch up
/// after each step.
async fn run_until(
    studio: &Studio,
    clock: &ManualClock,
    stores: &[&Arc<SledStore>],
    to: DateTime<Utc>,
) {
    use concierto_core::clock::Clock;
    while clock.now() < to {
        let next = (clock.now() + chrono::Duration::hours(1)).min(to);
        clock.set(next);
        caught_up(studio, stores, next).await;
    }
}

/// Takes every StartRun stored in stream RUNS so far, in stream order (durable consumer
/// `check`), acknowledging them.
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

/// Takes StartRuns from RUNS until one has `run_id`, then everything else already there.
async fn drain_runs_until(bus: &Arc<dyn Bus>, run_id: &str) -> Vec<StartRun> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut runs = Vec::new();
    while !runs.iter().any(|r: &StartRun| r.run_id == run_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run {run_id} in RUNS; got {:?}",
            ids(&runs)
        );
        runs.extend(drain_runs(bus).await);
    }
    runs.extend(drain_runs(bus).await);
    runs
}

fn ids(runs: &[StartRun]) -> Vec<String> {
    runs.iter().map(|r| r.run_id.clone()).collect()
}

fn fire_time(run: &StartRun) -> DateTime<Utc> {
    concierto_scheduler::runs::date_time(run.fire_time.as_ref().unwrap())
}

/// Fire times per trigger, in stream order.
fn by_trigger(runs: &[StartRun]) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let mut out: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for r in runs {
        out.entry(r.trigger.clone()).or_default().push(fire_time(r));
    }
    out
}

async fn list(bus: &Arc<dyn Bus>) -> ListTriggersResponse {
    bus.request_proto::<_, ListTriggersResponse>(
        SCHEDULER_TRIGGERS,
        &ListTriggersRequest {},
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(concierto_scheduler::runs::timestamp(t))
}

// ---------------------------------------------------------------------------------------
// A simulated month
// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_simulated_march_fires_every_seed_schedule_at_its_local_time_across_the_dst_change() {
    let studio = studio_with(Misfire::FireOnce);
    let bus = embedded().await;
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 1, 0, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock, "month").await;

    let end = utc(2026, 4, 1, 0, 0);
    run_until(&studio, &clock, &[&store], end).await;
    let runs = drain_runs(&bus).await;
    let fires = by_trigger(&runs);

    // Daily 09:00 Madrid: 08:00 UTC until the clocks go forward on Sunday 29 March, 07:00
    // UTC from then on; 09:00 local every day.
    let daily: Vec<_> = (1..=31)
        .map(|d| utc(2026, 3, d, if d < 29 { 8 } else { 7 }, 0))
        .collect();
    assert_eq!(fires[DAILY], daily);
    assert!(
        fires[DAILY]
            .iter()
            .all(|t| t.with_timezone(&madrid()).hour() == 9)
    );

    // Weekly Monday 10:00 Madrid: 2, 9, 16, 23 March at 09:00 UTC, 30 March at 08:00 UTC.
    let weekly = vec![
        utc(2026, 3, 2, 9, 0),
        utc(2026, 3, 9, 9, 0),
        utc(2026, 3, 16, 9, 0),
        utc(2026, 3, 23, 9, 0),
        utc(2026, 3, 30, 8, 0),
    ];
    assert_eq!(fires[WEEKLY], weekly);

    // Every 6 hours on the epoch: 06:00, 12:00, 18:00, 00:00 UTC, DST or not. The start
    // instant itself (1 March 00:00) is not a fire: a first start fires from then on.
    let interval: Vec<_> = (1..=124)
        .map(|k| utc(2026, 3, 1, 0, 0) + chrono::Duration::hours(6 * k))
        .collect();
    assert_eq!(fires[INTERVAL], interval);
    assert_eq!(fires.len(), 3, "only scheduled triggers fired: {fires:?}");
    assert_eq!(runs.len(), 31 + 5 + 124);

    // Every StartRun says what fired and why.
    let first = &runs[0];
    assert_eq!(first.run_id, "continuous_optimization@2026-03-01T06:00:00Z");
    for r in &runs {
        assert_eq!(
            r.run_id,
            format!(
                "{}@{}",
                r.trigger,
                fire_time(r).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        );
        assert_eq!(r.requested_by, "scheduler");
        assert_eq!(r.priority, v1::Priority::Normal as i32);
        assert!(r.cause.is_none());
    }
    let daily_run = runs
        .iter()
        .find(|r| r.run_id == "daily_content_generation@2026-03-29T07:00:00Z")
        .expect("the first daily fire after the DST change");
    assert_eq!(daily_run.workflow, "daily-content-pipeline");

    // The store shows the last fires and counters.
    for (name, last, count) in [
        (DAILY, utc(2026, 3, 31, 7, 0), 31),
        (WEEKLY, utc(2026, 3, 30, 8, 0), 5),
        (INTERVAL, end, 124),
    ] {
        let state = load_state(store.as_ref(), name).unwrap();
        assert_eq!(state.last_fire, Some(last), "{name}");
        assert_eq!(state.cursor, Some(last), "{name}");
        assert_eq!(state.fires, count, "{name}");
        assert_eq!(state.missed, 0, "{name}");
    }

    // And so does the list, with the next fires in April (DST already in force).
    let listed = list(&bus).await;
    let get = |name: &str| {
        listed
            .triggers
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .clone()
    };
    assert_eq!(get(DAILY).next_fire, ts(utc(2026, 4, 1, 7, 0)));
    assert_eq!(get(WEEKLY).next_fire, ts(utc(2026, 4, 6, 8, 0)));
    assert_eq!(get(INTERVAL).next_fire, ts(utc(2026, 4, 1, 6, 0)));
    assert_eq!(get(DAILY).fires, 31);

    handle.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Two schedulers racing
// ---------------------------------------------------------------------------------------

/// Two schedulers (own stores, own connections) on one bus and one clock through two days
/// and one new content item: every fire is stored in RUNS exactly once.
async fn race(bus_a: Arc<dyn Bus>, bus_b: Arc<dyn Bus>) {
    let studio = studio_with(Misfire::FireOnce);
    let (store_a, store_b) = (store(), store());
    let clock = ManualClock::new(utc(2026, 3, 1, 0, 0));
    let a = start_scheduler(&studio, &bus_a, &store_a, &clock, "a").await;
    let b = start_scheduler(&studio, &bus_b, &store_b, &clock, "b").await;

    run_until(
        &studio,
        &clock,
        &[&store_a, &store_b],
        utc(2026, 3, 3, 0, 0),
    )
    .await;
    bus_a
        .publish_proto(
            &content_ingested("siteinspire"),
            &ContentItem {
                item_id: "sha256:race".into(),
                source: "siteinspire".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let runs = drain_runs_until(&bus_a, "on_new_inspiration@sha256:race").await;

    let expected: HashSet<String> = [
        "daily_content_generation@2026-03-01T08:00:00Z",
        "daily_content_generation@2026-03-02T08:00:00Z",
        "weekly_trend_analysis@2026-03-02T09:00:00Z",
        "continuous_optimization@2026-03-01T06:00:00Z",
        "continuous_optimization@2026-03-01T12:00:00Z",
        "continuous_optimization@2026-03-01T18:00:00Z",
        "continuous_optimization@2026-03-02T00:00:00Z",
        "continuous_optimization@2026-03-02T06:00:00Z",
        "continuous_optimization@2026-03-02T12:00:00Z",
        "continuous_optimization@2026-03-02T18:00:00Z",
        "continuous_optimization@2026-03-03T00:00:00Z",
        "on_new_inspiration@sha256:race",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let got = ids(&runs);
    assert_eq!(got.len(), expected.len(), "each fire stored once: {got:?}");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected);

    // Both schedulers handled every scheduled fire; between them each run started once.
    for name in [DAILY, WEEKLY, INTERVAL] {
        let sa = load_state(store_a.as_ref(), name).unwrap();
        let sb = load_state(store_b.as_ref(), name).unwrap();
        assert_eq!(sa.last_fire, sb.last_fire, "{name}");
        assert_eq!(sa.missed + sb.missed, 0, "{name}");
        let expected = match name {
            DAILY => 2,
            WEEKLY => 1,
            _ => 8,
        };
        assert_eq!(sa.fires + sb.fires, expected, "{name}");
    }

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[actix_rt::test]
async fn two_schedulers_racing_on_the_embedded_bus_store_each_fire_once_in_runs() {
    let bus = embedded().await;
    race(bus.clone(), bus).await;
}

#[actix_rt::test]
async fn two_schedulers_racing_over_nats_store_each_fire_once_in_runs() {
    let server = NatsServer::start().expect("start nats-server");
    race(nats(&server).await, nats(&server).await).await;
}

// ---------------------------------------------------------------------------------------
// Restart and misfires
// ---------------------------------------------------------------------------------------

/// Runs Monday 2 March 00:00–12:00 UTC, stops, jumps to Thursday 5 March 13:00 (missing
/// 3 daily and 12 interval fires) and starts again with the same store. Returns the runs
/// started by the second start.
async fn restart_after_three_days(policy: Misfire) -> (Vec<StartRun>, Arc<SledStore>) {
    let studio = studio_with(policy);
    let bus = embedded().await;
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 2, 0, 0));

    let first = start_scheduler(&studio, &bus, &store, &clock, "before").await;
    run_until(&studio, &clock, &[&store], utc(2026, 3, 2, 12, 0)).await;
    first.stop().await.unwrap();
    let before = ids(&drain_runs(&bus).await);
    assert_eq!(
        before.into_iter().collect::<HashSet<_>>(),
        [
            "continuous_optimization@2026-03-02T06:00:00Z",
            "daily_content_generation@2026-03-02T08:00:00Z",
            "weekly_trend_analysis@2026-03-02T09:00:00Z",
            "continuous_optimization@2026-03-02T12:00:00Z",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );

    clock.set(utc(2026, 3, 5, 13, 0));
    let second = start_scheduler(&studio, &bus, &store, &clock, "after").await;
    // `start` returns once the missed fires are handled.
    let after = drain_runs(&bus).await;

    // Then it carries on as usual.
    run_until(&studio, &clock, &[&store], utc(2026, 3, 5, 18, 0)).await;
    let later = ids(&drain_runs(&bus).await);
    assert_eq!(later, vec!["continuous_optimization@2026-03-05T18:00:00Z"]);
    second.stop().await.unwrap();
    (after, store)
}

fn counters(store: &Arc<SledStore>, name: &str) -> (u64, u64) {
    let s = load_state(store.as_ref(), name).unwrap();
    (s.fires, s.missed)
}

#[actix_rt::test]
async fn restart_with_skip_fires_no_missed_fire_and_counts_every_one() {
    let (after, store) = restart_after_three_days(Misfire::Skip).await;
    assert_eq!(ids(&after), Vec::<String>::new());
    // (fires, missed); the interval's 18:00 fire after the restart is counted too.
    assert_eq!(counters(&store, DAILY), (1, 3));
    assert_eq!(counters(&store, INTERVAL), (3, 12));
    assert_eq!(counters(&store, WEEKLY), (1, 0));
    assert_eq!(
        load_state(store.as_ref(), DAILY).unwrap().cursor,
        Some(utc(2026, 3, 5, 8, 0)),
        "skipped fires move the cursor: a later restart does not count them again"
    );
}

#[actix_rt::test]
async fn restart_with_fire_once_fires_only_the_latest_missed_fire() {
    let (after, store) = restart_after_three_days(Misfire::FireOnce).await;
    assert_eq!(
        ids(&after).into_iter().collect::<HashSet<_>>(),
        [
            "daily_content_generation@2026-03-05T08:00:00Z",
            "continuous_optimization@2026-03-05T12:00:00Z",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert_eq!(counters(&store, DAILY), (2, 2));
    assert_eq!(counters(&store, INTERVAL), (4, 11));
    assert_eq!(counters(&store, WEEKLY), (1, 0));
}

#[actix_rt::test]
async fn restart_with_fire_all_2_fires_the_latest_two_missed_fires_in_order() {
    let (after, store) = restart_after_three_days(Misfire::FireAll(2)).await;
    let fires = by_trigger(&after);
    assert_eq!(
        fires[DAILY],
        vec![utc(2026, 3, 4, 8, 0), utc(2026, 3, 5, 8, 0)]
    );
    assert_eq!(
        fires[INTERVAL],
        vec![utc(2026, 3, 5, 6, 0), utc(2026, 3, 5, 12, 0)]
    );
    assert_eq!(fires.len(), 2);
    assert_eq!(counters(&store, DAILY), (3, 1));
    assert_eq!(counters(&store, INTERVAL), (5, 10));
    assert_eq!(counters(&store, WEEKLY), (1, 0));
}

#[actix_rt::test]
async fn restart_within_the_misfire_grace_fires_the_due_fire_even_with_skip() {
    let studio = studio_with(Misfire::Skip);
    let bus = embedded().await;
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 2, 7, 0));
    start_scheduler(&studio, &bus, &store, &clock, "before")
        .await
        .stop()
        .await
        .unwrap();
    // Back 30 s after the 08:00 UTC daily fire: late, but within the 60 s grace.
    clock.set(utc(2026, 3, 2, 8, 0) + chrono::Duration::seconds(30));
    let handle = start_scheduler(&studio, &bus, &store, &clock, "after").await;
    assert_eq!(
        ids(&drain_runs(&bus).await),
        vec!["daily_content_generation@2026-03-02T08:00:00Z"]
    );
    assert_eq!(counters(&store, DAILY), (1, 0));
    handle.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Event triggers
// ---------------------------------------------------------------------------------------

fn item(id: &str, source: &str) -> ContentItem {
    ContentItem {
        item_id: id.into(),
        source: source.into(),
        kind: "page".into(),
        title: format!("{source} item"),
        ..Default::default()
    }
}

async fn new_content_fires_inspiration(bus: Arc<dyn Bus>) {
    let studio = studio_with(Misfire::FireOnce);
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 10, 12, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock, "events").await;

    // Unlisted source, then the same siteinspire item twice, then an X/Twitter account
    // (the trigger lists "twitter"): handled in this order, so once the last one has
    // started a run, the others have been handled.
    for (id, source) in [
        ("sha256:dribbble", "dribbble"),
        ("sha256:site", "siteinspire"),
        ("sha256:site", "siteinspire"),
        ("sha256:figs", "FigsFromPlums"),
    ] {
        bus.publish_proto(&content_ingested(source), &item(id, source))
            .await
            .unwrap();
    }
    let runs = drain_runs_until(&bus, "on_new_inspiration@sha256:figs").await;
    assert_eq!(
        ids(&runs),
        vec![
            "on_new_inspiration@sha256:site",
            "on_new_inspiration@sha256:figs"
        ]
    );
    let run = &runs[0];
    assert_eq!(run.trigger, INSPIRATION);
    assert_eq!(run.workflow, "inspiration-to-concept");
    assert_eq!(run.requested_by, "scheduler");
    match &run.cause {
        Some(start_run::Cause::Content(c)) => assert_eq!(c.source, "siteinspire"),
        other => panic!("expected a content cause, got {other:?}"),
    }
    let state = load_state(store.as_ref(), INSPIRATION).unwrap();
    assert_eq!(state.fires, 2, "the duplicate item started no second run");
    assert_eq!(state.last_fire, Some(utc(2026, 3, 10, 12, 0)));
    handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn new_content_from_siteinspire_fires_on_new_inspiration_once_and_an_unlisted_source_does_not()
 {
    new_content_fires_inspiration(embedded().await).await;
}

fn crossed(metric: &str, value: f64, entered: bool, minute: u32) -> ThresholdCrossed {
    ThresholdCrossed {
        metric: metric.into(),
        predicate: format!("{metric} < 0.05"),
        comparison: v1::Comparison::Lt as i32,
        threshold: 0.05,
        value,
        entered,
        at: ts(utc(2026, 3, 10, 11, minute)),
    }
}

async fn threshold_fires_content_optimization(bus: Arc<dyn Bus>) {
    let studio = studio_with(Misfire::FireOnce);
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 10, 12, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock, "thresholds").await;

    for c in [
        crossed("engagement_rate", 0.03, false, 1), // stopped holding: no
        crossed("engagement_rate", 0.07, true, 2),  // does not hold: no
        crossed("quality_score", 0.03, true, 3),    // another metric: no
        crossed("engagement_rate", 0.03, true, 4),  // yes
    ] {
        bus.publish_proto(&metric_event(&c.metric), &c)
            .await
            .unwrap();
    }
    let id = "on_performance_threshold@engagement_rate@2026-03-10T11:04:00Z";
    let runs = drain_runs_until(&bus, id).await;
    assert_eq!(ids(&runs), vec![id]);
    let run = &runs[0];
    assert_eq!(run.workflow, "content-optimization");
    assert_eq!(run.trigger, THRESHOLD);
    assert_eq!(
        run.priority,
        v1::Priority::Urgent as i32,
        "the workflow's priority"
    );
    assert_eq!(run.fire_time, ts(utc(2026, 3, 10, 11, 4)));
    match &run.cause {
        Some(start_run::Cause::Threshold(t)) => assert_eq!(t.value, 0.03),
        other => panic!("expected a threshold cause, got {other:?}"),
    }
    assert_eq!(load_state(store.as_ref(), THRESHOLD).unwrap().fires, 1);
    handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn engagement_rate_entering_below_005_fires_content_optimization_and_exits_or_highs_do_not() {
    threshold_fires_content_optimization(embedded().await).await;
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

async fn fire_now(bus: Arc<dyn Bus>) {
    let studio = studio_with(Misfire::FireOnce);
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 10, 12, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock, "admin").await;

    let reply: FireTriggerResponse = bus
        .request_proto(
            SCHEDULER_FIRE,
            &FireTriggerRequest {
                name: DAILY.into(),
                priority: v1::Priority::Urgent as i32,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.run_id,
        "daily_content_generation@manual@2026-03-10T12:00:00.000Z"
    );
    let runs = drain_runs_until(&bus, &reply.run_id).await;
    assert_eq!(ids(&runs), vec![reply.run_id.clone()]);
    assert_eq!(runs[0].requested_by, "admin");
    assert_eq!(runs[0].workflow, "daily-content-pipeline");
    assert_eq!(runs[0].priority, v1::Priority::Urgent as i32);
    assert_eq!(runs[0].fire_time, ts(utc(2026, 3, 10, 12, 0)));

    // A fire by hand does not move the schedule: 09:00 Madrid tomorrow still comes.
    let state = load_state(store.as_ref(), DAILY).unwrap();
    assert_eq!(state.fires, 1);
    assert_eq!(state.cursor, Some(utc(2026, 3, 10, 12, 0)));

    let unknown = bus
        .request(
            SCHEDULER_FIRE,
            encode(&FireTriggerRequest {
                name: "daily_content_generaton".into(),
                priority: 0,
            }),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(unknown.payload.is_empty());
    let error = unknown.headers.get(ERROR_HEADER).expect("an error header");
    assert!(
        error.starts_with("not_found: no trigger named \"daily_content_generaton\""),
        "{error}"
    );
    handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn fire_now_starts_a_run_and_an_unknown_trigger_gets_a_not_found_error_header() {
    fire_now(embedded().await).await;
}

#[actix_rt::test]
async fn list_triggers_reports_every_trigger_with_its_spec_next_fire_and_counters() {
    let studio = studio_with(Misfire::FireOnce);
    let bus = embedded().await;
    let store = store();
    let clock = ManualClock::new(utc(2026, 3, 1, 0, 0));
    let handle = start_scheduler(&studio, &bus, &store, &clock, "list").await;
    run_until(&studio, &clock, &[&store], utc(2026, 3, 1, 10, 0)).await;

    let listed = list(&bus).await;
    let rows: Vec<_> = listed
        .triggers
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.kind.as_str(),
                t.spec.as_str(),
                t.workflow.as_str(),
                t.timezone.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                DAILY,
                "scheduled",
                "09:00",
                "daily-content-pipeline",
                "Europe/Madrid"
            ),
            (
                WEEKLY,
                "scheduled",
                "Monday 10:00",
                "market-intelligence",
                "Europe/Madrid"
            ),
            (
                INTERVAL,
                "scheduled",
                "6 hours",
                "system-improvement",
                "Europe/Madrid"
            ),
            (
                INSPIRATION,
                "event",
                "source: [siteinspire, twitter, instagram]",
                "inspiration-to-concept",
                ""
            ),
            (
                THRESHOLD,
                "event",
                "metric: engagement_rate < 0.05",
                "content-optimization",
                ""
            ),
        ]
    );
    let daily = &listed.triggers[0];
    assert_eq!(
        daily.agents,
        vec![
            "content-creator",
            "visual-storyteller",
            "brand-guardian",
            "trend-researcher"
        ]
    );
    assert_eq!(daily.last_fire, ts(utc(2026, 3, 1, 8, 0)));
    assert_eq!(daily.next_fire, ts(utc(2026, 3, 2, 8, 0)));
    assert_eq!((daily.fires, daily.missed), (1, 0));
    let interval = &listed.triggers[2];
    assert_eq!(interval.last_fire, ts(utc(2026, 3, 1, 6, 0)));
    assert_eq!(interval.next_fire, ts(utc(2026, 3, 1, 12, 0)));
    let weekly = &listed.triggers[1];
    assert_eq!(weekly.last_fire, None);
    assert_eq!(weekly.next_fire, ts(utc(2026, 3, 2, 9, 0)));
    let inspiration = &listed.triggers[3];
    assert_eq!((inspiration.next_fire, inspiration.fires), (None, 0));
    handle.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Over NATS: events and requests
// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn over_nats_event_triggers_fire_and_fire_now_replies() {
    let server = NatsServer::start().expect("start nats-server");
    new_content_fires_inspiration(nats(&server).await).await;
    threshold_fires_content_optimization(nats(&server).await).await;
    fire_now(nats(&server).await).await;
}

// ---------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn starting_outside_an_actix_system_is_an_error_not_a_panic() {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    let store: Arc<dyn KvStore> = store();
    let clock: SharedClock = Arc::new(ManualClock::new(utc(2026, 3, 1, 0, 0)));
    let result = start(
        Arc::new(studio()),
        bus,
        store,
        clock,
        SchedulerOptions::default(),
    )
    .await;
    assert!(matches!(result, Err(SchedulerError::NoSystem)));
}
