//! A studio changed while the scheduler runs (`ServiceHandle::studio_changed`), against
//! a real nats-server and a [`ManualClock`], with the example studio's seed triggers:
//!
//! - a daily trigger moved from 09:00 to 11:00 at 08:00 fires at 11:00 and not at 09:00,
//!   and a weekly one moved to a slot already past today does not fire for it;
//! - a threshold trigger changed from `engagement_rate < 0.05` to `< 0.04` fires on a
//!   0.045 crossing before the change and not after it (0.03 still fires);
//! - a removed trigger stops firing (and is no longer fired by hand), added scheduled
//!   and threshold triggers fire;
//! - a changed `batch` applies from the next window (the open one keeps its items until
//!   the next boundary of the new length) and a changed `max_runs_per_day` from the
//!   next UTC day.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, NatsBus, NatsOptions, StreamLimits, encode, ensure_standard_streams,
};
use concierto_core::clock::{Clock, ManualClock, SharedClock};
use concierto_core::config::{EventFilter, Studio, Trigger, TriggerKind, When};
use concierto_core::grammar::{Predicate, Schedule};
use concierto_core::service::ServiceHandle;
use concierto_core::store::SledStore;
use concierto_core::subjects::{ERROR_HEADER, SCHEDULER_FIRE, SCHEDULER_TRIGGERS, metric_event};
use concierto_proto::v1::{
    self, FireTriggerRequest, ListTriggersRequest, ListTriggersResponse, StartRun, ThresholdCrossed,
};
use concierto_scheduler::{SchedulerOptions, fires_between, load_state, start};
use concierto_testkit::NatsServer;

const DAILY: &str = "daily_content_generation";
const WEEKLY: &str = "weekly_trend_analysis";
const INTERVAL: &str = "continuous_optimization";
const INSPIRATION: &str = "on_new_inspiration";
const THRESHOLD: &str = "on_performance_threshold";
const PATIENCE: Duration = Duration::from_secs(20);

/// The example studio's five seed triggers, no flood control, no implicit triggers.
fn studio() -> Studio {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut studio =
        concierto_core::config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    studio
        .triggers
        .retain(|t| [DAILY, WEEKLY, INTERVAL, INSPIRATION, THRESHOLD].contains(&t.name.as_str()));
    assert_eq!(studio.triggers.len(), 5, "the seed's five triggers");
    for t in &mut studio.triggers {
        t.flood = Default::default();
    }
    studio.progress_metrics.clear();
    studio
}

fn trigger<'a>(studio: &'a mut Studio, name: &str) -> &'a mut Trigger {
    studio
        .triggers
        .iter_mut()
        .find(|t| t.name == name)
        .expect("a seed trigger")
}

/// Moves scheduled trigger `name` to `at` (in its zone).
fn reschedule(studio: &mut Studio, name: &str, at: &str) {
    match &mut trigger(studio, name).kind {
        TriggerKind::Scheduled { when, .. } => {
            *when = When::Schedule(at.parse::<Schedule>().expect("a schedule"))
        }
        other => panic!("{name} is not scheduled: {other:?}"),
    }
}

fn predicate(text: &str) -> TriggerKind {
    TriggerKind::Event(EventFilter::Threshold(
        text.parse::<Predicate>().expect("a predicate"),
    ))
}

fn utc(d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, mi, 0).unwrap()
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(concierto_scheduler::runs::timestamp(t))
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
) -> ServiceHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let clock: SharedClock = Arc::new(clock.clone());
    let opts = SchedulerOptions {
        tick: Duration::from_millis(5),
        instance: "live".into(),
        ack_wait: Duration::from_secs(2),
        fetch_wait: Duration::from_millis(200),
        ..SchedulerOptions::default()
    };
    start(studio.clone(), bus.clone(), store.clone(), clock, opts)
        .await
        .expect("the scheduler starts")
}

/// Waits until the store shows every scheduled fire of `studio` up to `now` handled.
async fn caught_up(studio: &Studio, store: &Arc<SledStore>, now: DateTime<Utc>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let done = studio.triggers.iter().all(|t| {
            let TriggerKind::Scheduled { when, timezone, .. } = &t.kind else {
                return true;
            };
            let state = load_state(store.as_ref(), &t.name).unwrap();
            state
                .cursor
                .is_some_and(|cursor| fires_between(when, *timezone, cursor, now, 1).is_empty())
        });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scheduler did not catch up with {now}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Moves the clock to `to` an hour at a time, letting the scheduler catch up.
async fn run_until(
    studio: &Studio,
    clock: &ManualClock,
    store: &Arc<SledStore>,
    to: DateTime<Utc>,
) {
    while clock.now() < to {
        let next = (clock.now() + chrono::Duration::hours(1)).min(to);
        clock.set(next);
        caught_up(studio, store, next).await;
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
            .fetch_proto::<StartRun>(100, Duration::from_millis(200))
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

/// Takes StartRuns until one has `run_id`, then everything else already there.
async fn drain_runs_until(bus: &Arc<dyn Bus>, run_id: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut runs: Vec<String> = Vec::new();
    while !runs.iter().any(|r| r == run_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run {run_id} in RUNS; got {runs:?}"
        );
        runs.extend(drain_runs(bus).await.into_iter().map(|r| r.run_id));
    }
    runs.extend(drain_runs(bus).await.into_iter().map(|r| r.run_id));
    runs
}

async fn list(bus: &Arc<dyn Bus>) -> ListTriggersResponse {
    bus.request_proto(
        SCHEDULER_TRIGGERS,
        &ListTriggersRequest {},
        Duration::from_secs(5),
    )
    .await
    .expect("scheduler.triggers answers")
}

/// Hands `studio` to the scheduler and waits until `scheduler.triggers` shows it taken.
async fn change(
    handle: &ServiceHandle,
    bus: &Arc<dyn Bus>,
    studio: &Arc<Studio>,
    taken: impl Fn(&ListTriggersResponse) -> bool,
) -> ListTriggersResponse {
    assert!(
        handle.studio_changed(studio),
        "the scheduler takes a changed studio live"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let listed = list(bus).await;
        if taken(&listed) {
            return listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change did not show in scheduler.triggers: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn row<'a>(listed: &'a ListTriggersResponse, name: &str) -> Option<&'a v1::Trigger> {
    listed.triggers.iter().find(|t| t.name == name)
}

fn names(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

#[actix_rt::test]
async fn a_daily_trigger_moved_from_09_to_11_at_08_fires_at_11_and_not_at_09() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let store = Arc::new(SledStore::temporary().unwrap());
    // Tuesday 10 March, 07:00 Madrid (06:00 UTC).
    let clock = ManualClock::new(utc(10, 6, 0));
    let before = Arc::new(studio());
    let handle = start_scheduler(&before, &bus, &store, &clock).await;
    // 08:00 Madrid: nothing has fired yet.
    run_until(&before, &clock, &store, utc(10, 7, 0)).await;
    assert_eq!(drain_runs(&bus).await.len(), 0);
    let listed = list(&bus).await;
    assert_eq!(
        row(&listed, DAILY).unwrap().next_fire,
        ts(utc(10, 8, 0)),
        "09:00 Madrid"
    );

    // At 08:00 Madrid the daily trigger moves to 11:00, and the weekly one (Monday
    // 10:00) to Tuesday 07:30, a slot already past today.
    let mut after = studio();
    reschedule(&mut after, DAILY, "11:00");
    reschedule(&mut after, WEEKLY, "Tuesday 07:30");
    let after = Arc::new(after);
    let listed = change(&handle, &bus, &after, |l| {
        row(l, DAILY).is_some_and(|t| t.spec == "11:00")
    })
    .await;
    let daily = row(&listed, DAILY).unwrap();
    assert_eq!(daily.next_fire, ts(utc(10, 10, 0)), "11:00 Madrid today");
    let weekly = row(&listed, WEEKLY).unwrap();
    assert_eq!(weekly.spec, "Tuesday 07:30");
    assert_eq!(
        weekly.next_fire,
        ts(utc(17, 6, 30)),
        "next Tuesday, not the slot already past"
    );
    assert_eq!(
        row(&listed, INTERVAL).unwrap().next_fire,
        ts(utc(10, 12, 0)),
        "an unchanged trigger keeps its schedule"
    );

    // Through 13:00 Madrid: the daily trigger fires at 11:00 only.
    run_until(&after, &clock, &store, utc(10, 12, 0)).await;
    let ids: Vec<String> = drain_runs(&bus)
        .await
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        names(&ids),
        names(&[
            "daily_content_generation@2026-03-10T10:00:00Z".to_string(),
            "continuous_optimization@2026-03-10T12:00:00Z".to_string(),
        ]),
        "no fire at 09:00 Madrid (08:00 UTC), none for the weekly slot already past"
    );
    assert_eq!(ids.len(), 2, "each once: {ids:?}");
    let daily = load_state(store.as_ref(), DAILY).unwrap();
    assert_eq!((daily.fires, daily.missed), (1, 0));
    assert_eq!(daily.last_fire, Some(utc(10, 10, 0)));
    let weekly = load_state(store.as_ref(), WEEKLY).unwrap();
    assert_eq!(
        (weekly.fires, weekly.missed),
        (0, 0),
        "the past slot is not counted missed either"
    );
    handle.stop().await.unwrap();

    // A restart with the new studio goes on from the recorded cursors: nothing is due.
    clock.set(utc(10, 12, 30));
    let handle = start_scheduler(&after, &bus, &store, &clock).await;
    assert_eq!(drain_runs(&bus).await.len(), 0);
    handle.stop().await.unwrap();
}

fn crossed(value: f64, predicate: &str, minute: u32) -> ThresholdCrossed {
    ThresholdCrossed {
        metric: "engagement_rate".into(),
        predicate: predicate.into(),
        comparison: v1::Comparison::Lt as i32,
        threshold: 0.05,
        value,
        entered: true,
        at: ts(utc(10, 11, minute)),
    }
}

#[actix_rt::test]
async fn a_threshold_lowered_from_005_to_004_no_longer_fires_on_0045_but_still_on_003() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 12, 0));
    let handle = start_scheduler(&Arc::new(studio()), &bus, &store, &clock).await;

    // Before the change 0.045 is below 0.05: it fires.
    let c = crossed(0.045, "engagement_rate < 0.05", 1);
    bus.publish_proto(&metric_event(&c.metric), &c)
        .await
        .unwrap();
    let first = "on_performance_threshold@engagement_rate@2026-03-10T11:01:00Z";
    assert_eq!(drain_runs_until(&bus, first).await, vec![first.to_string()]);

    let mut after = studio();
    trigger(&mut after, THRESHOLD).kind = predicate("engagement_rate < 0.04");
    change(&handle, &bus, &Arc::new(after), |l| {
        row(l, THRESHOLD).is_some_and(|t| t.spec == "metric: engagement_rate < 0.04")
    })
    .await;

    // After it, 0.045 is not below 0.04: no run; 0.03 is, and fires.
    for c in [
        crossed(0.045, "engagement_rate < 0.04", 2),
        crossed(0.03, "engagement_rate < 0.04", 3),
    ] {
        bus.publish_proto(&metric_event(&c.metric), &c)
            .await
            .unwrap();
    }
    let last = "on_performance_threshold@engagement_rate@2026-03-10T11:03:00Z";
    assert_eq!(drain_runs_until(&bus, last).await, vec![last.to_string()]);
    let state = load_state(store.as_ref(), THRESHOLD).unwrap();
    assert_eq!(state.fires, 2, "its counters were kept across the change");
    handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn a_removed_trigger_stops_firing_and_added_ones_fire() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 6, 0));
    let before = Arc::new(studio());
    let handle = start_scheduler(&before, &bus, &store, &clock).await;
    run_until(&before, &clock, &store, utc(10, 9, 0)).await;
    assert_eq!(
        drain_runs(&bus)
            .await
            .into_iter()
            .map(|r| r.run_id)
            .collect::<Vec<_>>(),
        vec!["daily_content_generation@2026-03-10T08:00:00Z"]
    );

    // The daily trigger goes; a midday one and a quality threshold come.
    let mut after = studio();
    after.triggers.retain(|t| t.name != DAILY);
    let mut midday = after.triggers[0].clone();
    assert!(matches!(midday.kind, TriggerKind::Scheduled { .. }));
    midday.name = "midday_digest".into();
    after.triggers.push(midday);
    reschedule(&mut after, "midday_digest", "13:00");
    let mut quality = trigger(&mut after, THRESHOLD).clone();
    quality.name = "on_quality_drop".into();
    quality.kind = predicate("quality_score < 0.8");
    after.triggers.push(quality);
    let after = Arc::new(after);
    let listed = change(&handle, &bus, &after, |l| row(l, DAILY).is_none()).await;
    let midday = row(&listed, "midday_digest").expect("listed");
    assert_eq!(
        (midday.spec.as_str(), midday.next_fire, midday.fires),
        ("13:00", ts(utc(10, 12, 0)), 0)
    );
    assert_eq!(
        row(&listed, "on_quality_drop").map(|t| t.spec.as_str()),
        Some("metric: quality_score < 0.8")
    );

    // Through the next morning: the midday trigger fires, the daily one does not.
    run_until(&after, &clock, &store, utc(11, 9, 0)).await;
    let ids: Vec<String> = drain_runs(&bus)
        .await
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        names(&ids),
        names(
            &[
                "midday_digest@2026-03-10T12:00:00Z",
                "continuous_optimization@2026-03-10T12:00:00Z",
                "continuous_optimization@2026-03-10T18:00:00Z",
                "continuous_optimization@2026-03-11T00:00:00Z",
                "continuous_optimization@2026-03-11T06:00:00Z",
            ]
            .map(String::from)
        ),
        "no daily_content_generation@2026-03-11T08:00:00Z"
    );
    assert_eq!(ids.len(), 5, "each once: {ids:?}");

    // The added threshold trigger fires on its metric.
    let c = ThresholdCrossed {
        metric: "quality_score".into(),
        predicate: "quality_score < 0.8".into(),
        comparison: v1::Comparison::Lt as i32,
        threshold: 0.8,
        value: 0.7,
        entered: true,
        at: ts(utc(11, 8, 30)),
    };
    bus.publish_proto(&metric_event(&c.metric), &c)
        .await
        .unwrap();
    let id = "on_quality_drop@quality_score@2026-03-11T08:30:00Z";
    assert_eq!(drain_runs_until(&bus, id).await, vec![id.to_string()]);

    // The removed trigger is no longer fired by hand; its stored state stays.
    let reply = bus
        .request(
            SCHEDULER_FIRE,
            encode(&FireTriggerRequest {
                name: DAILY.into(),
                priority: 0,
            }),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let error = reply.headers.get(ERROR_HEADER).expect("an error header");
    assert!(error.starts_with("not_found: "), "{error}");
    assert_eq!(load_state(store.as_ref(), DAILY).unwrap().fires, 1);
    handle.stop().await.unwrap();
}

/// The inspiration trigger alone, batched by `hours` and capped at `cap` runs a day,
/// staffed by `agents`.
fn batched(hours: u64, cap: u32, agents: &[&str]) -> Arc<Studio> {
    let mut st = studio();
    st.triggers.retain(|t| t.name == INSPIRATION);
    let t = trigger(&mut st, INSPIRATION);
    t.flood.batch = Some(Duration::from_secs(3600 * hours));
    t.flood.max_runs_per_day = Some(cap);
    t.agents = agents.iter().map(|a| a.to_string()).collect();
    Arc::new(st)
}

async fn publish_item(bus: &Arc<dyn Bus>, id: &str) {
    let item = v1::ContentItem {
        item_id: format!("sha256:{id}"),
        source: "siteinspire".into(),
        kind: "page".into(),
        title: format!("Inspiration {id}"),
        ..Default::default()
    };
    bus.publish_durable_proto(
        &concierto_core::subjects::content_ingested(&item.source),
        &item,
        &item.item_id,
    )
    .await
    .expect("stored in EVENTS");
}

/// Waits until the inspiration trigger shows `batched` items held and `dropped` fires.
async fn inspiration_shows(bus: &Arc<dyn Bus>, batched: u32, dropped: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let listed = list(bus).await;
        let t = row(&listed, INSPIRATION).expect("listed");
        if (t.batched, t.dropped) == (batched, dropped) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "inspiration shows {} batched and {} dropped, not {batched} and {dropped}",
            t.batched,
            t.dropped
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the run `run_id` and returns it, checking that it is the only one.
async fn only_run(bus: &Arc<dyn Bus>, run_id: &str) -> StartRun {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut runs = Vec::new();
    while runs.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no run {run_id}");
        runs = drain_runs(bus).await;
    }
    runs.extend(drain_runs(bus).await);
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec![run_id]);
    runs.remove(0)
}

#[actix_rt::test]
async fn a_changed_batch_applies_from_the_next_window_and_a_changed_cap_from_the_next_day() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 10, 10));
    let handle = start_scheduler(&batched(1, 1, &[]), &bus, &store, &clock).await;
    publish_item(&bus, "a").await;
    publish_item(&bus, "b").await;
    inspiration_shows(&bus, 2, 0).await;

    // At 10:15 the hour's windows become two hours long and the cap goes from 1 to 5.
    clock.set(utc(10, 10, 15));
    change(&handle, &bus, &batched(2, 5, &["content-creator"]), |l| {
        row(l, INSPIRATION).is_some_and(|t| t.agents == ["content-creator"])
    })
    .await;

    // The 10:00 window takes items until 12:00 (the first two-hour boundary after its
    // old end), so nothing fires at 11:00.
    clock.set(utc(10, 11, 10));
    publish_item(&bus, "c").await;
    inspiration_shows(&bus, 3, 0).await;
    assert_eq!(drain_runs(&bus).await.len(), 0, "no run at 11:00");
    clock.set(utc(10, 12, 0));
    let run = only_run(&bus, "on_new_inspiration@2026-03-10T10:00:00Z").await;
    assert_eq!(run.params["batch_items"], "3");
    assert_eq!(run.params["batch_end"], "2026-03-10T12:00:00Z");

    // Then two-hour windows; today's cap is still 1: the 12:00 window is dropped.
    clock.set(utc(10, 12, 10));
    publish_item(&bus, "d").await;
    inspiration_shows(&bus, 1, 0).await;
    clock.set(utc(10, 14, 0));
    inspiration_shows(&bus, 0, 1).await;
    assert_eq!(drain_runs(&bus).await.len(), 0, "dropped past today's cap");

    // The next day the cap is 5: two windows, two runs.
    for (id, from, to, run_id) in [
        (
            "e",
            utc(11, 0, 10),
            utc(11, 2, 0),
            "on_new_inspiration@2026-03-11T00:00:00Z",
        ),
        (
            "f",
            utc(11, 2, 10),
            utc(11, 4, 0),
            "on_new_inspiration@2026-03-11T02:00:00Z",
        ),
    ] {
        clock.set(from);
        publish_item(&bus, id).await;
        inspiration_shows(&bus, 1, 1).await;
        clock.set(to);
        only_run(&bus, run_id).await;
    }
    assert_eq!(load_state(store.as_ref(), INSPIRATION).unwrap().fires, 3);
    handle.stop().await.unwrap();
}
