//! Event triggers read through durable consumers on stream `EVENTS`, against a real
//! nats-server: an event published while the scheduler is down fires when it is back,
//! exactly once, and never again after another restart; a brand-new consumer does not
//! replay what the stream held before it; an event whose fire fails comes back and fires
//! once the failure is gone.
//!
//! Every publish on `run.start` is counted on a core subscription: a JetStream publish is
//! also a core message, so a second publish of the same run id shows there even though the
//! stream stores it once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, NatsBus, NatsOptions, Retention, StreamLimits, StreamSpec,
    TypedSubscription, ensure_standard_streams,
};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::Studio;
use concierto_core::service::ServiceHandle;
use concierto_core::store::SledStore;
use concierto_core::subjects::{RUN_START, content_ingested, metric_event};
use concierto_proto::v1::{self, ContentItem, StartRun, ThresholdCrossed};
use concierto_scheduler::{
    SchedulerOptions, content_run_id, load_state, runs::timestamp, start, threshold_run_id,
};
use concierto_testkit::NatsServer;

const INSPIRATION: &str = "on_new_inspiration";
const THRESHOLD: &str = "on_performance_threshold";

/// How long a test waits for something the scheduler does before failing.
const PATIENCE: Duration = Duration::from_secs(20);
/// The event consumers' ack_wait in these tests: an event left unacknowledged would be
/// delivered again within it.
const ACK_WAIT: Duration = Duration::from_secs(1);
/// How long nothing more may be published once the expected fires are there: three
/// ack_waits, so that an event not acknowledged would have come back and fired again.
const SETTLE: Duration = Duration::from_secs(3);

/// The example studio's seed triggers (its demo triggers left out).
fn studio() -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut studio =
        concierto_core::config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    studio.triggers.retain(|t| {
        [
            "daily_content_generation",
            "weekly_trend_analysis",
            "continuous_optimization",
            INSPIRATION,
            THRESHOLD,
        ]
        .contains(&t.name.as_str())
    });
    assert_eq!(studio.triggers.len(), 5, "the seed's five triggers");
    // One run per item: the example batches inspiration (tests/flood_and_targets.rs).
    for t in &mut studio.triggers {
        t.flood = Default::default();
    }
    Arc::new(studio)
}

fn utc(h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, h, mi, 0).unwrap()
}

fn opts() -> SchedulerOptions {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SchedulerOptions {
        tick: Duration::from_millis(20),
        instance: "durable-events".into(),
        ack_wait: ACK_WAIT,
        fetch_wait: Duration::from_millis(200),
        ..SchedulerOptions::default()
    }
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
    let clock: SharedClock = Arc::new(clock.clone());
    start(studio.clone(), bus.clone(), store.clone(), clock, opts())
        .await
        .expect("the scheduler starts")
}

fn item(id: &str, source: &str) -> ContentItem {
    ContentItem {
        item_id: id.into(),
        source: source.into(),
        kind: "page".into(),
        title: format!("{source} item"),
        ..Default::default()
    }
}

fn crossed(value: f64, at: DateTime<Utc>) -> ThresholdCrossed {
    ThresholdCrossed {
        metric: "engagement_rate".into(),
        predicate: "engagement_rate < 0.05".into(),
        comparison: v1::Comparison::Lt as i32,
        threshold: 0.05,
        value,
        entered: true,
        at: Some(timestamp(at)),
    }
}

/// Publishes `item` as the ingester does (stored in EVENTS, its id as message id).
async fn publish_item(bus: &Arc<dyn Bus>, item: &ContentItem) {
    bus.publish_durable_proto(&content_ingested(&item.source), item, &item.item_id)
        .await
        .expect("stored in EVENTS");
}

/// Publishes a threshold crossing as the tracker does (stored in EVENTS).
async fn publish_crossing(bus: &Arc<dyn Bus>, c: &ThresholdCrossed) {
    let id = format!("{}@{}", c.predicate, c.at.as_ref().map_or(0, |t| t.seconds));
    bus.publish_durable_proto(&metric_event(&c.metric), c, &id)
        .await
        .expect("stored in EVENTS");
}

/// Counts every `run.start` publish per run id: until each of `want` has been seen (or
/// [`PATIENCE`] has passed), then for `settle` more.
async fn count_publishes(
    starts: &mut TypedSubscription<StartRun>,
    want: &[&str],
    settle: Duration,
    counts: &mut BTreeMap<String, usize>,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !want.iter().all(|w| counts.contains_key(*w)) {
        match tokio::time::timeout_at(deadline, starts.next()).await {
            Ok(Some((run, _))) => *counts.entry(run.run_id).or_insert(0) += 1,
            Ok(None) => panic!("the run.start subscription ended"),
            Err(_) => panic!("no publish of every one of {want:?} in time; got {counts:?}"),
        }
    }
    let quiet_until = tokio::time::Instant::now() + settle;
    while let Ok(next) = tokio::time::timeout_at(quiet_until, starts.next()).await {
        let (run, _) = next.expect("the run.start subscription is open");
        *counts.entry(run.run_id).or_insert(0) += 1;
    }
}

/// Every StartRun stream RUNS holds (durable consumer `check`), acknowledged.
async fn runs_in_stream(bus: &Arc<dyn Bus>) -> Vec<String> {
    let consumer = bus
        .consumer("RUNS", &ConsumerSpec::new("check", RUN_START))
        .await
        .unwrap();
    let mut ids = Vec::new();
    loop {
        let got = consumer
            .fetch_proto::<StartRun>(100, Duration::from_millis(300))
            .await
            .unwrap();
        if got.is_empty() {
            return ids;
        }
        for (run, delivery) in got {
            delivery.ack().await.unwrap();
            ids.push(run.run_id);
        }
    }
}

#[actix_rt::test]
async fn events_published_while_the_scheduler_is_down_fire_exactly_once_when_it_is_back() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let studio = studio();
    // The scheduler's own store, kept across its restarts as a volume would be.
    let store = Arc::new(SledStore::temporary().expect("a temporary store"));
    let clock = ManualClock::new(utc(12, 0));
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    bus.flush().await.unwrap();
    let mut counts = BTreeMap::new();

    // Stored before any scheduler ever ran: the new durable consumers start after it.
    publish_item(&bus, &item("sha256:history", "siteinspire")).await;
    publish_crossing(&bus, &crossed(0.02, utc(10, 0))).await;
    let first = start_scheduler(&studio, &bus, &store, &clock).await;
    count_publishes(&mut starts, &[], SETTLE, &mut counts).await;
    assert!(
        counts.is_empty(),
        "a new consumer replayed the stream's history: {counts:?}"
    );
    first.stop().await.unwrap();

    // While it is down.
    publish_item(&bus, &item("sha256:while-down", "siteinspire")).await;
    publish_crossing(&bus, &crossed(0.03, utc(11, 4))).await;
    let content_run = content_run_id(INSPIRATION, "sha256:while-down");
    let threshold_run = threshold_run_id(THRESHOLD, "engagement_rate", utc(11, 4));
    let want = [content_run.as_str(), threshold_run.as_str()];

    // Back: each fires once, and nothing comes back within three ack_waits.
    let second = start_scheduler(&studio, &bus, &store, &clock).await;
    count_publishes(&mut starts, &want, SETTLE, &mut counts).await;
    second.stop().await.unwrap();

    // Once more with the same store: the events were acknowledged, nothing fires again.
    let third = start_scheduler(&studio, &bus, &store, &clock).await;
    count_publishes(&mut starts, &[], SETTLE, &mut counts).await;
    third.stop().await.unwrap();

    let expected: BTreeMap<String, usize> = want.iter().map(|w| (w.to_string(), 1)).collect();
    assert_eq!(counts, expected, "run.start publishes per run id");
    let mut stored = runs_in_stream(&bus).await;
    stored.sort();
    let mut wanted: Vec<String> = want.iter().map(|w| w.to_string()).collect();
    wanted.sort();
    assert_eq!(stored, wanted, "what stream RUNS holds");
    for trigger in [INSPIRATION, THRESHOLD] {
        let state = load_state(store.as_ref(), trigger).unwrap();
        assert_eq!(state.fires, 1, "{trigger}'s recorded fires");
    }
    let state = load_state(store.as_ref(), THRESHOLD).unwrap();
    assert_eq!(state.last_fire, Some(utc(11, 4)));
}

#[actix_rt::test]
async fn an_event_whose_fire_cannot_be_published_comes_back_and_fires_once_it_can() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let studio = studio();
    let store = Arc::new(SledStore::temporary().expect("a temporary store"));
    let clock = ManualClock::new(utc(12, 0));
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    bus.flush().await.unwrap();
    let scheduler = start_scheduler(&studio, &bus, &store, &clock).await;

    // Stream RUNS stops storing run.start: the fire's durable publish fails.
    let mut runs = StreamSpec::new("RUNS", &["run.start-disabled"], Retention::WorkQueue);
    bus.ensure_stream(&runs).await.unwrap();
    publish_item(&bus, &item("sha256:retried", "siteinspire")).await;
    let run_id = content_run_id(INSPIRATION, "sha256:retried");
    // Each try is a core message on run.start too: wait for two tries (the event was
    // handed back once), none of them stored.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut tries = 0;
    while tries < 2 {
        let (run, _) = tokio::time::timeout_at(deadline, starts.next())
            .await
            .expect("the scheduler tries the fire again")
            .expect("the run.start subscription is open");
        assert_eq!(run.run_id, run_id);
        tries += 1;
    }
    assert_eq!(load_state(store.as_ref(), INSPIRATION).unwrap().fires, 0);

    // RUNS stores run.start again: the next delivery fires, and that is the last one.
    runs.subjects = vec![RUN_START.to_string()];
    bus.ensure_stream(&runs).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut stored = Vec::new();
    while stored.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event did not fire once RUNS was back"
        );
        stored = runs_in_stream(&bus).await;
    }
    assert_eq!(stored, vec![run_id.clone()]);
    assert_eq!(load_state(store.as_ref(), INSPIRATION).unwrap().fires, 1);

    // The tries so far, the stored one included, are on the subscription by now: take
    // them until it is quiet. After that the event is acknowledged: nothing more is
    // published, not even after three ack_waits.
    while let Ok(next) = tokio::time::timeout(Duration::from_millis(300), starts.next()).await {
        let (run, _) = next.expect("the run.start subscription is open");
        assert_eq!(run.run_id, run_id);
    }
    let mut counts = BTreeMap::new();
    count_publishes(&mut starts, &[], SETTLE, &mut counts).await;
    scheduler.stop().await.unwrap();
    assert!(
        counts.is_empty(),
        "published again after it was stored: {counts:?}"
    );
    assert!(runs_in_stream(&bus).await.is_empty(), "stored once");
    assert_eq!(load_state(store.as_ref(), INSPIRATION).unwrap().fires, 1);
}
