//! The tracker over a real nats-server: threshold events the scheduler starts
//! runs from (with hysteresis, across a restart), metrics through the admin
//! API (a tonic client over a socket), health, and `POST /api/metrics` (an
//! HTTP client over a socket). Clocks are [`ManualClock`]s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_admin::{AdminOptions, Identities, token_sha256};
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, NatsBus, NatsOptions, Outgoing, ensure_standard_streams,
};
use concierto_core::clock::{Clock, ManualClock, SharedClock};
use concierto_core::config::{self, Reviewer, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::{NatsServer, eventually};
use concierto_tracker::{Tracker, TrackerOptions};
use tonic::{Code, Request};

const PATIENCE: Duration = Duration::from_secs(20);
const OPS: &str = "ops-token-0123";
const BRAND: &str = "brand-token-89ab";
const VIEWER: &str = "viewer-token-cdef";
const FEEDER: &str = "feeder-token-4567";

fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
}

/// The example studio with the seed's threshold trigger only, and reviewers
/// with tokens (one admin, one reviewer, one with no role, one machine with
/// the `metrics` role).
fn studio() -> Arc<Studio> {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut st = config::load_with_env(&example, Vec::new()).expect("the example studio loads");
    st.triggers.retain(|t| t.name == "on_performance_threshold");
    assert_eq!(st.triggers.len(), 1);
    st.reviewers.clear();
    for (id, token, roles) in [
        ("ops", OPS, vec!["admin"]),
        ("brand_manager", BRAND, vec!["reviewer"]),
        ("viewer", VIEWER, vec![]),
        ("campaign_feed", FEEDER, vec!["metrics"]),
    ] {
        st.reviewers.insert(
            id.to_string(),
            Reviewer {
                id: id.to_string(),
                name: id.to_string(),
                email: None,
                slack: None,
                token_sha256: Some(token_sha256(token)),
                roles: roles.into_iter().map(String::from).collect(),
                escalation: Vec::new(),
            },
        );
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

fn opts() -> TrackerOptions {
    TrackerOptions {
        tick: Duration::from_millis(20),
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn start_tracker(
    st: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
    store: &Arc<SledStore>,
    clock: &ManualClock,
) -> Tracker {
    let shared: SharedClock = Arc::new(clock.clone());
    let store: Arc<dyn KvStore> = store.clone();
    concierto_tracker::start(st.clone(), bus.clone(), store, shared, opts())
        .await
        .expect("the tracker starts")
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

async fn metrics(bus: &Arc<dyn Bus>, names: &[&str]) -> Vec<v1::Metric> {
    let r: v1::GetMetricsResponse = bus
        .request_proto(
            subjects::TRACKER_GET_METRICS,
            &v1::GetMetricsRequest {
                names: names.iter().map(|n| n.to_string()).collect(),
                window_hours: 1,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    r.metrics
}

/// Every StartRun stored in RUNS so far (durable consumer `check`), acknowledged.
async fn drain_runs(bus: &Arc<dyn Bus>) -> Vec<v1::StartRun> {
    let consumer = bus
        .consumer("RUNS", &ConsumerSpec::new("check", subjects::RUN_START))
        .await
        .unwrap();
    let mut runs = Vec::new();
    loop {
        let got = consumer
            .fetch_proto::<v1::StartRun>(100, Duration::from_millis(300))
            .await
            .unwrap();
        if got.is_empty() {
            return runs;
        }
        for (run, d) in got {
            d.ack().await.unwrap();
            runs.push(run);
        }
    }
}

/// Waits until `n` distinct runs are in RUNS, then checks that no more come.
async fn runs_exactly(bus: &Arc<dyn Bus>, seen: &mut Vec<v1::StartRun>, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} runs, got {:?}",
            seen.iter().map(|r| &r.run_id).collect::<Vec<_>>()
        );
        seen.extend(drain_runs(bus).await);
    }
    seen.extend(drain_runs(bus).await);
    let ids: BTreeSet<_> = seen.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids.len(), n, "{ids:?}");
    assert_eq!(seen.len(), n, "each run once: {ids:?}");
}

#[actix_rt::test]
async fn engagement_below_005_starts_one_optimization_per_episode_even_across_a_restart() {
    let server = NatsServer::start().expect("nats-server");
    let bus = nats(&server).await;
    let st = studio();
    let clock = ManualClock::new(utc(10, 12, 0));
    let shared: SharedClock = Arc::new(clock.clone());
    let sched_store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let scheduler = concierto_scheduler::start(
        st.clone(),
        bus.clone(),
        sched_store,
        shared,
        concierto_scheduler::SchedulerOptions {
            tick: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let store = Arc::new(SledStore::temporary().unwrap());
    let tracker = start_tracker(&st, &bus, &store, &clock).await;

    // The first sample through the stream (as a service publishes it), the
    // rest through requests.
    clock.advance(Duration::from_secs(60));
    let first = v1::MetricSample {
        metric: "engagement_rate".into(),
        value: 0.07,
        at: Some(prost_types::Timestamp {
            seconds: clock.now().timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    bus.publish_durable_proto(&subjects::metric_sample("engagement_rate"), &first, "s1")
        .await
        .unwrap();
    eventually(PATIENCE, "the streamed sample", || async {
        let m = metrics(&bus, &["engagement_rate"]).await;
        (m.first().map(|m| m.current) == Some(0.07)).then_some(())
    })
    .await;
    for v in [0.06, 0.045, 0.04, 0.048, 0.052, 0.03] {
        clock.advance(Duration::from_secs(60));
        record(&bus, "engagement_rate", v).await;
    }
    let mut seen = Vec::new();
    runs_exactly(&bus, &mut seen, 1).await;
    assert_eq!(seen[0].workflow, "content-optimization");
    assert_eq!(seen[0].trigger, "on_performance_threshold");
    match &seen[0].cause {
        Some(v1::start_run::Cause::Threshold(t)) => {
            assert_eq!((t.value, t.entered), (0.045, true));
            assert_eq!(t.metric, "engagement_rate");
        }
        other => panic!("expected a threshold cause, got {other:?}"),
    }

    // Restart: the series and the episode are kept; a sample published while
    // the tracker is down is taken when it is back, and fires nothing.
    tracker.stop().await.unwrap();
    clock.advance(Duration::from_secs(60));
    let down = v1::MetricSample {
        metric: "engagement_rate".into(),
        value: 0.035,
        ..Default::default()
    };
    bus.publish_durable_proto(&subjects::metric_sample("engagement_rate"), &down, "s-down")
        .await
        .unwrap();
    let tracker = start_tracker(&st, &bus, &store, &clock).await;
    let m = eventually(PATIENCE, "the sample published while down", || async {
        let m = metrics(&bus, &["engagement_rate"]).await;
        m.into_iter().find(|m| m.current == 0.035)
    })
    .await;
    let values: Vec<f64> = m.series.iter().map(|p| p.value).collect();
    assert_eq!(
        values.len(),
        8,
        "seven points before the restart and one after: {values:?}"
    );
    assert_eq!(values[0], 0.07);
    clock.advance(Duration::from_secs(60));
    record(&bus, "engagement_rate", 0.04).await;
    runs_exactly(&bus, &mut seen, 1).await;

    // Leaving beyond the band, then entering again: a second run.
    clock.advance(Duration::from_secs(60));
    record(&bus, "engagement_rate", 0.07).await;
    clock.advance(Duration::from_secs(60));
    record(&bus, "engagement_rate", 0.04).await;
    runs_exactly(&bus, &mut seen, 2).await;
    assert!(seen.iter().all(|r| r.workflow == "content-optimization"));

    tracker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

#[actix_rt::test]
async fn metrics_health_and_records_through_the_admin_api_http_and_prometheus() {
    let server = NatsServer::start().expect("nats-server");
    let bus = nats(&server).await;
    let st = studio();
    let clock = ManualClock::new(utc(10, 12, 0));
    let store = Arc::new(SledStore::temporary().unwrap());
    let tracker = start_tracker(&st, &bus, &store, &clock).await;
    let now = clock.now();

    // What the services publish: run events, heartbeats, review scores, gates.
    for i in 0..3 {
        let e = v1::RunEvent {
            run_id: format!("daily@{i}"),
            step_id: "draft-content".into(),
            role: "content-creator".into(),
            step_state: v1::StepState::Succeeded as i32,
            run_state: v1::RunState::Running as i32,
            at: ts(now),
            ..Default::default()
        };
        bus.publish_proto(&subjects::run_event(&e.run_id), &e)
            .await
            .unwrap();
    }
    for (run, state) in [
        ("daily@0", v1::RunState::Succeeded),
        ("daily@1", v1::RunState::Failed),
    ] {
        let e = v1::RunEvent {
            run_id: run.into(),
            run_state: state as i32,
            at: ts(now),
            ..Default::default()
        };
        bus.publish_proto(&subjects::run_event(run), &e)
            .await
            .unwrap();
    }
    let hb = v1::AgentHeartbeat {
        role: "content-creator".into(),
        worker_id: "content-creator.w1".into(),
        state: v1::AgentState::Ready as i32,
        in_flight: 1,
        capacity: 2,
        busy_ms: 6_000,
        idle_ms: 4_000,
        tasks_done: 3,
        ..Default::default()
    };
    bus.publish_proto(&subjects::heartbeat("content-creator", "w1"), &hb)
        .await
        .unwrap();
    for (i, score) in [0.9, 0.8].into_iter().enumerate() {
        let s = v1::MetricSample {
            metric: "quality_score".into(),
            value: score,
            at: ts(now),
            labels: [("loop".to_string(), "creator_to_reviewer".to_string())].into(),
            ..Default::default()
        };
        bus.publish_durable_proto(
            &subjects::metric_sample("quality_score"),
            &s,
            &format!("q{i}"),
        )
        .await
        .unwrap();
    }
    for (p, depth) in [("urgent", 2.0), ("normal", 5.0)] {
        let s = v1::MetricSample {
            metric: "queue_depth".into(),
            value: depth,
            labels: [("priority".to_string(), p.to_string())].into(),
            ..Default::default()
        };
        bus.publish_durable(
            &subjects::metric_sample("queue_depth"),
            concierto_bus::encode(&s),
        )
        .await
        .unwrap();
    }
    let gate = v1::Gate {
        request: Some(v1::GateRequest {
            gate_id: "g1".into(),
            due_at: ts(now - chrono::Duration::hours(1)),
            ..Default::default()
        }),
        state: v1::GateState::Open as i32,
        ..Default::default()
    };
    bus.publish_proto(&subjects::gate_event("opened"), &gate)
        .await
        .unwrap();
    // A sample that does not decode is dead-lettered (and counted).
    bus.publish_durable("metric.broken", Outgoing::new(vec![0xff, 0xff, 0xff]))
        .await
        .unwrap();

    let health: v1::SystemHealth = eventually(PATIENCE, "the health to show it all", || async {
        let h: v1::SystemHealth = bus
            .request_proto(
                subjects::TRACKER_HEALTH,
                &v1::GetHealthRequest {},
                Duration::from_secs(5),
            )
            .await
            .ok()?;
        let cc = h.roles.iter().find(|r| r.role == "content-creator")?;
        (cc.replicas == 1
            && h.dead_letters >= 1
            && h.gates_open == 1
            && h.queues.iter().any(|q| q.depth == 5))
        .then_some(h)
    })
    .await;
    assert_eq!(health.gates_overdue, 1);
    let cc = health
        .roles
        .iter()
        .find(|r| r.role == "content-creator")
        .unwrap();
    assert_eq!((cc.in_flight, cc.tasks_done), (1, 3));
    assert!((cc.utilization - 0.6).abs() < 1e-9);

    // The admin API, with a real client.
    let (admin, addr) = concierto_admin::start(st.clone(), bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    let mut client = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let all = eventually(PATIENCE, "the quality scores", || {
        let mut client = client.clone();
        async move {
            let r = client
                .get_metrics(with_token(VIEWER, v1::GetMetricsRequest::default()))
                .await
                .ok()?
                .into_inner();
            let q = r.metrics.iter().find(|m| m.name == "quality_score")?;
            let d = r.metrics.iter().find(|m| m.name == "daily_output")?;
            ((q.current - 0.85).abs() < 1e-9 && d.current == 3.0).then_some(r.metrics)
        }
    })
    .await;
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        &names[..6],
        [
            "daily_output",
            "quality_score",
            "agent_utilization",
            "feedback_response_time",
            "pattern_recognition",
            "success_rate"
        ]
    );
    let by = |n: &str| all.iter().find(|m| m.name == n).unwrap();
    let daily = by("daily_output");
    assert_eq!(
        (daily.target.as_str(), daily.group.as_str()),
        ("10", "content_generation")
    );
    assert_eq!(daily.tracker, "analytics-reporter");
    assert!(!daily.on_target);
    assert_eq!(daily.series.len(), 1, "one point for the minute");
    assert_eq!(daily.series[0].value, 3.0);
    assert!(by("quality_score").on_target, "mean 0.85 meets 0.85");
    assert!((by("agent_utilization").current - 0.6).abs() < 1e-9);
    assert_eq!(by("success_rate").target, "3% monthly");
    assert_eq!(by("success_rate").series[0].value, 0.5);
    assert_eq!(by("feedback_response_time").target, "< 2 hours");

    let e = client
        .get_metrics(v1::GetMetricsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = client
        .get_metrics(with_token(
            VIEWER,
            v1::GetMetricsRequest {
                names: vec!["nope".into()],
                window_hours: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let rec = |metric: &str, value: f64| v1::RecordMetricRequest {
        metric: metric.into(),
        value,
        labels: Default::default(),
    };
    client
        .record_metric(with_token(FEEDER, rec("engagement_rate", 0.04)))
        .await
        .expect("a metrics reviewer records");
    // A plain reviewer may not: a value can cross a threshold and start runs.
    for token in [BRAND, VIEWER] {
        let e = client
            .record_metric(with_token(token, rec("engagement_rate", 0.04)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("admin or metrics role"),
            "{}",
            e.message()
        );
    }
    let e = client
        .record_metric(with_token(OPS, rec("Engagement Rate", 0.04)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("[a-z0-9_]+"), "{}", e.message());
    let e = client
        .record_metric(with_token(OPS, rec("engagement_rate", f64::INFINITY)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // POST /api/metrics over HTTP.
    let app = concierto_tracker::router(bus.clone(), Identities::from_studio(&st));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let url = format!("http://{http_addr}/api/metrics");
    let post = |token: Option<&str>, body: serde_json::Value| {
        let mut r = http.post(&url).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let ok = post(Some(FEEDER), serde_json::json!({"metric": "engagement_rate", "value": 0.03, "labels": {"campaign": "spring"}}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let reviewer = post(
        Some(BRAND),
        serde_json::json!({"metric": "engagement_rate", "value": 0.01}),
    )
    .await
    .unwrap();
    assert_eq!(reviewer.status(), 403);
    let answer: serde_json::Value = reviewer.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("admin or metrics role"),
        "{answer}"
    );
    let no = post(
        None,
        serde_json::json!({"metric": "engagement_rate", "value": 0.03}),
    )
    .await
    .unwrap();
    assert_eq!(no.status(), 401);
    let viewer = post(
        Some(VIEWER),
        serde_json::json!({"metric": "engagement_rate", "value": 0.03}),
    )
    .await
    .unwrap();
    assert_eq!(viewer.status(), 403);
    let bad = post(
        Some(OPS),
        serde_json::json!({"metric": "a.b", "value": 0.03}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = post(
        Some(OPS),
        serde_json::json!({"metric": "x", "value": "high"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);

    // Prometheus text from the tracker's view.
    let text = eventually(PATIENCE, "the recorded value in the text", || async {
        let t = tracker.prometheus_text();
        t.contains("concierto_metric{name=\"engagement_rate\",group=\"samples\"} 0.03")
            .then_some(t)
    })
    .await;
    assert!(
        text.contains("concierto_metric{name=\"daily_output\",group=\"content_generation\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "concierto_metric_target{name=\"daily_output\",group=\"content_generation\"} 10"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "concierto_metric_on_target{name=\"quality_score\",group=\"content_generation\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("concierto_queue_depth{priority=\"normal\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("concierto_role_replicas{role=\"content-creator\"} 1"),
        "{text}"
    );
    assert!(text.contains("concierto_gates_overdue 1"), "{text}");
    assert!(!text.contains("# EOF"));

    served.abort();
    admin.stop().await.unwrap();
    tracker.stop().await.unwrap();
}

/// Runs and steps that finish while the tracker is down are counted when it
/// is back, each once: run events come through a durable consumer.
#[actix_rt::test]
async fn run_events_published_while_the_tracker_is_down_are_counted_once_after_it_restarts() {
    let server = NatsServer::start().unwrap();
    let bus = nats(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let st = studio();
    let clock = ManualClock::new(utc(10, 12, 0));
    let step = |run: &str, at: DateTime<Utc>| v1::RunEvent {
        run_id: run.into(),
        step_id: "draft".into(),
        role: "content-creator".into(),
        step_state: v1::StepState::Succeeded as i32,
        run_state: v1::RunState::Running as i32,
        at: ts(at),
        ..Default::default()
    };
    let publish = |e: v1::RunEvent| {
        let bus = bus.clone();
        async move {
            bus.publish_proto(&subjects::run_event(&e.run_id), &e)
                .await
                .unwrap()
        }
    };
    let daily_output = |want: f64| {
        let bus = bus.clone();
        async move {
            eventually(PATIENCE, &format!("daily_output {want}"), || {
                let bus = bus.clone();
                async move {
                    let m = metrics(&bus, &["daily_output"]).await;
                    (m.first().map(|m| m.current) == Some(want)).then_some(())
                }
            })
            .await
        }
    };

    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let tracker = start_tracker(&st, &bus, &store, &clock).await;
    publish(step("run-1", utc(10, 11, 0))).await;
    daily_output(1.0).await;
    tracker.stop().await.unwrap();
    drop(store);

    // While it is down: two more pieces, the first one again, and a run's end.
    publish(step("run-2", utc(10, 11, 30))).await;
    publish(step("run-3", utc(10, 11, 45))).await;
    publish(step("run-1", utc(10, 11, 0))).await;
    publish(v1::RunEvent {
        run_id: "run-2".into(),
        run_state: v1::RunState::Succeeded as i32,
        at: ts(utc(10, 11, 50)),
        ..Default::default()
    })
    .await;
    bus.flush().await.unwrap();

    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let tracker = start_tracker(&st, &bus, &store, &clock).await;
    daily_output(3.0).await;
    let success = eventually(PATIENCE, "success_rate's observation", || {
        let bus = bus.clone();
        async move {
            let r: v1::GetMetricsResponse = bus
                .request_proto(
                    subjects::TRACKER_GET_METRICS,
                    &v1::GetMetricsRequest {
                        names: vec!["success_rate".into()],
                        window_hours: 24,
                    },
                    Duration::from_secs(5),
                )
                .await
                .ok()?;
            let m = r.metrics.into_iter().next()?;
            (!m.series.is_empty()).then_some(m)
        }
    })
    .await;
    assert_eq!(success.series.len(), 1, "{:?}", success.series);
    assert_eq!(success.series[0].value, 1.0);
    // Nothing more comes in later: the duplicate was not counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metrics(&bus, &["daily_output"]).await[0].current, 3.0);
    tracker.stop().await.unwrap();
}

/// The tracker is an actix actor: started outside a System, it says so
/// instead of panicking.
#[tokio::test]
async fn outside_an_actix_system_start_says_so() {
    let server = NatsServer::start().expect("nats-server");
    let bus = nats(&server).await;
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let clock: SharedClock = Arc::new(ManualClock::new(utc(1, 9, 0)));
    let err = concierto_tracker::start(studio(), bus, store, clock, opts())
        .await
        .expect_err("no actix System");
    assert!(
        matches!(err, concierto_tracker::TrackerError::NoSystem),
        "{err}"
    );
    assert!(err.reply_header().starts_with("internal: "), "{err}");
}
