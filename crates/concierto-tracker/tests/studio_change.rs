//! A studio changed while the tracker runs (`ServiceHandle::studio_changed`), over a
//! real nats-server with a [`ManualClock`]: `daily_output`'s target lowered from 10 to
//! 2 is met at once by the pieces already counted (no restart, the series kept), and
//! the off-target watch then leaves on the new predicate on `event.metric.daily_output`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{
    Bus, BusExt, NatsBus, NatsOptions, TypedSubscription, ensure_standard_streams,
};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Goal, Studio};
use concierto_core::grammar::Target;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};
use concierto_tracker::TrackerOptions;

const PATIENCE: Duration = Duration::from_secs(20);
const DAILY_OUTPUT: &str = "daily_output";

fn utc(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, m, s).unwrap()
}

/// The example studio; with `target`, `daily_output`'s target (and its tracker role
/// `content-creator`).
fn studio(target: Option<&str>) -> Arc<Studio> {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut st = config::load_with_env(&example, Vec::new()).expect("the example studio loads");
    if let Some(target) = target {
        let m = st
            .progress_metrics
            .iter_mut()
            .find(|m| m.name == DAILY_OUTPUT)
            .expect("the seed's daily_output");
        m.goal = Goal::Target(target.parse::<Target>().expect("a target"));
        m.goal_text = target.to_string();
        m.tracker = "content-creator".into();
    }
    Arc::new(st)
}

async fn nats(server: &NatsServer) -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&server.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    bus
}

async fn record(bus: &Arc<dyn Bus>, metric: &str, value: f64) {
    let _: v1::RecordMetricResponse = bus
        .request_proto(
            subjects::TRACKER_RECORD_METRIC,
            &v1::RecordMetricRequest {
                metric: metric.into(),
                value,
                labels: Default::default(),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("the tracker records it");
}

async fn daily_output(bus: &Arc<dyn Bus>) -> v1::Metric {
    let r: v1::GetMetricsResponse = bus
        .request_proto(
            subjects::TRACKER_GET_METRICS,
            &v1::GetMetricsRequest {
                names: vec![DAILY_OUTPUT.into()],
                window_hours: 48,
            },
            Duration::from_secs(5),
        )
        .await
        .expect("tracker.metrics.get answers");
    r.metrics.into_iter().next().expect("daily_output")
}

async fn next_crossing(sub: &mut TypedSubscription<v1::ThresholdCrossed>) -> v1::ThresholdCrossed {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("a threshold event")
        .expect("the subscription is open")
        .0
}

#[actix_rt::test]
async fn a_target_lowered_from_10_to_2_is_met_at_once_and_the_watch_leaves_on_the_new_predicate() {
    let server = NatsServer::start().expect("nats-server");
    let bus = nats(&server).await;
    let clock = ManualClock::new(utc(10, 12, 0, 0));
    let shared: SharedClock = Arc::new(clock.clone());
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let opts = TrackerOptions {
        tick: Duration::from_millis(20),
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    };
    let handle = concierto_tracker::start(studio(None), bus.clone(), store, shared, opts)
        .await
        .expect("the tracker starts")
        .into_handle();
    let mut events = bus
        .subscribe_proto::<v1::ThresholdCrossed>(&subjects::metric_event(DAILY_OUTPUT))
        .await
        .unwrap();

    // Tuesday: 3 pieces, 10 wanted.
    record(&bus, DAILY_OUTPUT, 3.0).await;
    let m = daily_output(&bus).await;
    assert_eq!(
        (
            m.target.as_str(),
            m.current,
            m.on_target,
            m.tracker.as_str()
        ),
        ("10", 3.0, false, "analytics-reporter")
    );
    // Once Tuesday is over it is judged off target.
    clock.set(utc(11, 0, 0, 30));
    let x = next_crossing(&mut events).await;
    assert_eq!(
        (x.predicate.as_str(), x.entered, x.value),
        ("daily_output < 10", true, 3.0)
    );
    // Wednesday: 3 pieces so far, still off a target of 10.
    record(&bus, DAILY_OUTPUT, 3.0).await;
    assert!(!daily_output(&bus).await.on_target);

    // The target becomes 2 (and the tracker role content-creator), without a restart.
    assert!(
        handle.studio_changed(&studio(Some("2"))),
        "the tracker takes a changed studio live"
    );
    let m = eventually(PATIENCE, "the new target", || async {
        let m = daily_output(&bus).await;
        (m.target == "2").then_some(m)
    })
    .await;
    assert_eq!(
        (m.current, m.on_target, m.tracker.as_str()),
        (3.0, true, "content-creator"),
        "the pieces already counted meet the new target"
    );
    assert!(!m.series.is_empty(), "the series is kept");
    // Tuesday's 3 are not below 2: the episode ends, on the new predicate.
    let x = next_crossing(&mut events).await;
    assert_eq!(
        (x.predicate.as_str(), x.entered, x.value),
        ("daily_output < 2", false, 3.0)
    );
    handle.stop().await.unwrap();
}
