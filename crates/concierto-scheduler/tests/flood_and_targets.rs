//! Flood control of event triggers and targets that drive work, against a real
//! nats-server and a controlled clock, with the example studio:
//!
//! - 200 inspiration items in one hour make exactly one run holding all 200;
//!   past `max_runs_per_day` a window's run is dropped and counted;
//! - a scheduler restart inside a window loses no item;
//! - `daily_output` falling off target starts `daily-content-pipeline`
//!   (`target:daily_output@<at>`), a breached `feedback_response_time` tells the
//!   escalation contacts on `event.target.feedback_response_time`, and a
//!   crossing of another predicate on the same metric does neither.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{
    Bus, BusExt, NatsBus, NatsOptions, StreamLimits, TypedSubscription, ensure_standard_streams,
};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::Studio;
use concierto_core::service::ServiceHandle;
use concierto_core::store::SledStore;
use concierto_core::subjects::{
    RUN_START, SCHEDULER_TRIGGERS, TARGET_EVENTS, content_ingested, metric_event,
};
use concierto_proto::v1::{
    self, ContentItem, ListTriggersRequest, ListTriggersResponse, OffTarget, StartRun,
    ThresholdCrossed,
};
use concierto_scheduler::{SchedulerOptions, load_state, runs::timestamp, start};
use concierto_testkit::NatsServer;

const INSPIRATION: &str = "on_new_inspiration";
const PATIENCE: Duration = Duration::from_secs(30);

fn utc(d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, mi, s).unwrap()
}

/// The example studio, its inspiration trigger capped at `max_per_day` runs.
fn studio(max_per_day: u32) -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut studio =
        concierto_core::config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    studio
        .triggers
        .retain(|t| !t.name.starts_with("studio_demo"));
    let t = studio
        .triggers
        .iter_mut()
        .find(|t| t.name == INSPIRATION)
        .unwrap();
    assert_eq!(
        t.flood.batch,
        Some(Duration::from_secs(3600)),
        "the example batches inspiration by the hour"
    );
    t.flood.max_runs_per_day = Some(max_per_day);
    Arc::new(studio)
}

fn opts() -> SchedulerOptions {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SchedulerOptions {
        tick: Duration::from_millis(20),
        instance: "flood".into(),
        ack_wait: Duration::from_secs(2),
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

async fn publish_items(bus: &Arc<dyn Bus>, prefix: &str, n: usize) {
    for i in 0..n {
        let item = ContentItem {
            item_id: format!("sha256:{prefix}-{i:03}"),
            source: "siteinspire".into(),
            kind: "page".into(),
            title: format!("Inspiration {prefix} {i}"),
            url: format!("https://example.com/{prefix}/{i}"),
            text: "a long text that the batch does not keep".repeat(20),
            ..Default::default()
        };
        bus.publish_durable_proto(&content_ingested(&item.source), &item, &item.item_id)
            .await
            .expect("stored in EVENTS");
    }
}

/// The inspiration trigger as `scheduler.triggers` answers.
async fn inspiration(bus: &Arc<dyn Bus>) -> v1::Trigger {
    let resp: ListTriggersResponse = bus
        .request_proto(
            SCHEDULER_TRIGGERS,
            &ListTriggersRequest {},
            Duration::from_secs(5),
        )
        .await
        .expect("scheduler.triggers answers");
    resp.triggers
        .into_iter()
        .find(|t| t.name == INSPIRATION)
        .expect("listed")
}

/// Waits until the open window holds `n` items.
async fn wait_batched(bus: &Arc<dyn Bus>, n: u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let t = inspiration(bus).await;
        if t.batched == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the window holds {} items, not {n}",
            t.batched
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every run.start of an event trigger (the scheduled seed triggers left out)
/// published until three quiet seconds (at least one expected when `want`).
async fn runs(starts: &mut TypedSubscription<StartRun>, want: bool) -> Vec<StartRun> {
    let event = |r: &StartRun| r.trigger == INSPIRATION || r.trigger.starts_with("target:");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while want && out.is_empty() {
        let (run, _) = tokio::time::timeout_at(deadline, starts.next())
            .await
            .expect("a run starts in time")
            .expect("subscription open");
        if event(&run) {
            out.push(run);
        }
    }
    while let Ok(Some((run, _))) = tokio::time::timeout(Duration::from_secs(3), starts.next()).await
    {
        if event(&run) {
            out.push(run);
        }
    }
    out
}

#[actix_rt::test]
async fn two_hundred_items_in_one_hour_make_one_run_and_none_past_max_runs_per_day() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let studio = studio(2);
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 10, 0, 5));
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    bus.flush().await.unwrap();
    let scheduler = start_scheduler(&studio, &bus, &store, &clock).await;

    // 200 items within the 10:00 window: no run yet, all kept.
    publish_items(&bus, "a", 200).await;
    wait_batched(&bus, 200).await;
    assert!(
        runs(&mut starts, false).await.is_empty(),
        "no run before the window ends"
    );

    // The window ends: exactly one run, with every item.
    clock.set(utc(10, 11, 0, 1));
    let got = runs(&mut starts, true).await;
    assert_eq!(got.len(), 1, "one run per window: {got:?}");
    let run = &got[0];
    assert_eq!(run.run_id, "on_new_inspiration@2026-03-10T10:00:00Z");
    assert_eq!(run.workflow, "inspiration-to-concept");
    assert_eq!(run.params["batch_items"], "200");
    assert_eq!(run.params["batch_start"], "2026-03-10T10:00:00Z");
    assert_eq!(run.params["batch_end"], "2026-03-10T11:00:00Z");
    assert_eq!(run.params["items_omitted"], "0");
    let items: Vec<serde_json::Value> = serde_json::from_str(&run.params["items"]).unwrap();
    assert_eq!(items.len(), 200);
    assert!(items.iter().any(|i| i["id"] == "sha256:a-199"));
    match &run.cause {
        Some(v1::start_run::Cause::Content(c)) => {
            assert_eq!(c.kind, "batch");
            assert!(c.text.contains("Inspiration a 0"), "{}", c.text);
        }
        other => panic!("cause {other:?}"),
    }
    assert_eq!(inspiration(&bus).await.batched, 0, "the window is emptied");

    // A second window fires (2 of 2 today); a third is dropped and counted.
    publish_items(&bus, "b", 3).await;
    wait_batched(&bus, 3).await;
    clock.set(utc(10, 12, 0, 1));
    let got = runs(&mut starts, true).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].run_id, "on_new_inspiration@2026-03-10T11:00:00Z");
    assert_eq!(got[0].params["batch_items"], "3");

    publish_items(&bus, "c", 5).await;
    wait_batched(&bus, 5).await;
    clock.set(utc(10, 13, 0, 1));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while inspiration(&bus).await.dropped == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dropped in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        runs(&mut starts, false).await.is_empty(),
        "past max_runs_per_day: no run"
    );
    let listed = inspiration(&bus).await;
    assert_eq!((listed.dropped, listed.batched, listed.fires), (1, 0, 2));

    // The next day counts afresh.
    publish_items(&bus, "d", 1).await;
    wait_batched(&bus, 1).await;
    clock.set(utc(11, 0, 0, 1));
    let got = runs(&mut starts, true).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].run_id, "on_new_inspiration@2026-03-10T13:00:00Z");
    scheduler.stop().await.unwrap();
    let state = load_state(store.as_ref(), INSPIRATION).unwrap();
    assert_eq!((state.fires, state.dropped, state.day_runs), (3, 1, 1));
}

#[actix_rt::test]
async fn a_restart_inside_a_window_loses_no_item() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let studio = studio(8);
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 9, 15, 0));
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    bus.flush().await.unwrap();

    let first = start_scheduler(&studio, &bus, &store, &clock).await;
    publish_items(&bus, "before", 50).await;
    wait_batched(&bus, 50).await;
    first.stop().await.unwrap();

    // While it is down: more items of the same hour.
    publish_items(&bus, "down", 30).await;
    clock.set(utc(10, 9, 40, 0));
    let second = start_scheduler(&studio, &bus, &store, &clock).await;
    wait_batched(&bus, 80).await;
    assert!(runs(&mut starts, false).await.is_empty());

    clock.set(utc(10, 10, 0, 1));
    let got = runs(&mut starts, true).await;
    second.stop().await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].run_id, "on_new_inspiration@2026-03-10T09:00:00Z");
    assert_eq!(got[0].params["batch_items"], "80");
    let items: Vec<serde_json::Value> = serde_json::from_str(&got[0].params["items"]).unwrap();
    for prefix in ["before-000", "before-049", "down-000", "down-029"] {
        let id = format!("sha256:{prefix}");
        assert!(items.iter().any(|i| i["id"] == id.as_str()), "{id} kept");
    }
}

fn crossing(metric: &str, predicate: &str, value: f64, at: DateTime<Utc>) -> ThresholdCrossed {
    ThresholdCrossed {
        metric: metric.into(),
        predicate: predicate.into(),
        comparison: v1::Comparison::Lt as i32,
        threshold: 10.0,
        value,
        entered: true,
        at: Some(timestamp(at)),
    }
}

#[actix_rt::test]
async fn off_target_metrics_start_their_workflow_and_tell_their_people() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let studio = studio(8);
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 0, 0, 5));
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    let mut notices = bus
        .subscribe_proto::<OffTarget>(TARGET_EVENTS)
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let scheduler = start_scheduler(&studio, &bus, &store, &clock).await;

    // Listed as an implicit trigger.
    let resp: ListTriggersResponse = bus
        .request_proto(
            SCHEDULER_TRIGGERS,
            &ListTriggersRequest {},
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let t = resp
        .triggers
        .iter()
        .find(|t| t.name == "target:daily_output")
        .expect("the implicit trigger is listed");
    assert_eq!(t.workflow, "daily-content-pipeline");
    assert_eq!(t.spec, "off target: daily_output < 10");

    // Another predicate on daily_output (not the target's) starts nothing.
    let other = crossing("daily_output", "daily_output < 3", 2.0, utc(10, 0, 0, 0));
    bus.publish_durable_proto(&metric_event("daily_output"), &other, "other")
        .await
        .unwrap();
    // daily_output fell below 10: the catch-up run, and a notice naming it.
    let at = utc(10, 0, 0, 1);
    let low = crossing("daily_output", "daily_output < 10", 2.0, at);
    for _ in 0..2 {
        // Published twice (a redelivery): one run.
        bus.publish_durable_proto(&metric_event("daily_output"), &low, "low")
            .await
            .unwrap();
    }
    let got = runs(&mut starts, true).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let run = &got[0];
    assert_eq!(run.run_id, "target:daily_output@2026-03-10T00:00:01Z");
    assert_eq!(run.workflow, "daily-content-pipeline");
    assert_eq!(run.trigger, "target:daily_output");
    assert_eq!(run.params["metric"], "daily_output");
    assert_eq!(run.params["value"], "2");
    assert_eq!(run.params["target"], "10");
    let (notice, _) = tokio::time::timeout(PATIENCE, notices.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice.workflow, "daily-content-pipeline");
    assert_eq!(notice.run_id, run.run_id);

    // feedback_response_time breached: the escalation contacts are told, no run.
    let slow = ThresholdCrossed {
        comparison: v1::Comparison::Ge as i32,
        threshold: 7200.0,
        ..crossing(
            "feedback_response_time",
            "feedback_response_time >= 7200",
            9000.0,
            utc(10, 1, 0, 0),
        )
    };
    bus.publish_durable_proto(&metric_event("feedback_response_time"), &slow, "slow")
        .await
        .unwrap();
    let (notice, raw) = tokio::time::timeout(PATIENCE, notices.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.subject, "event.target.feedback_response_time");
    assert_eq!(notice.notify, vec!["creative_director", "brand_manager"]);
    assert_eq!(notice.target, "< 2 hours");
    assert!(notice.workflow.is_empty() && notice.run_id.is_empty());
    assert_eq!(notice.crossed.unwrap().value, 9000.0);
    assert!(runs(&mut starts, false).await.is_empty());
    scheduler.stop().await.unwrap();
}

/// Every metric's tracker role gets a periodic report: `report:<metric>` starts
/// `metric-report:<metric>` once per the metric's period (daily at 00:05 UTC for
/// a level target), with the window since the previous report.
#[actix_rt::test]
async fn each_metric_starts_its_trackers_report_once_per_period() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server).await;
    let studio = studio(8);
    let store = Arc::new(SledStore::temporary().unwrap());
    let clock = ManualClock::new(utc(10, 23, 59, 0));
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    bus.flush().await.unwrap();
    let scheduler = start_scheduler(&studio, &bus, &store, &clock).await;

    clock.set(utc(11, 0, 5, 1));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut reports = Vec::new();
    while reports.len() < 4 {
        let (run, _) = tokio::time::timeout_at(deadline, starts.next())
            .await
            .expect("the daily reports start")
            .unwrap();
        if run.trigger.starts_with("report:") {
            reports.push(run);
        }
    }
    scheduler.stop().await.unwrap();
    reports.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let ids: Vec<&str> = reports.iter().map(|r| r.run_id.as_str()).collect();
    // The four level targets report daily; the two improvement targets weekly
    // and monthly (not due on Wednesday the 11th).
    assert_eq!(
        ids,
        [
            "report:agent_utilization@2026-03-11T00:05:00Z",
            "report:daily_output@2026-03-11T00:05:00Z",
            "report:feedback_response_time@2026-03-11T00:05:00Z",
            "report:quality_score@2026-03-11T00:05:00Z",
        ]
    );
    let daily = &reports[1];
    assert_eq!(daily.workflow, "metric-report:daily_output");
    assert_eq!(daily.params["previous_fire_time"], "2026-03-10T00:05:00Z");
    let wf = concierto_core::config::reports::workflow_named(&studio, &daily.workflow)
        .expect("the orchestrator's built-in report workflow");
    assert_eq!(
        wf.steps[0].role, "analytics-reporter",
        "the metric's tracker"
    );
    assert!(
        wf.steps[0].task.contains("content pieces"),
        "{}",
        wf.steps[0].task
    );
}
