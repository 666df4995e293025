//! Observability across services in one process, each on its own NATS
//! connection: one workflow run is one trace (scheduler → orchestrator →
//! agents → orchestrator), another run is another trace, and `/metrics`,
//! `/readyz` tell what happened. Spans go to an in-memory exporter.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{Bus, BusExt};
use concierto_core::clock::{ManualClock, SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::KvStore;
use concierto_core::subjects;
use concierto_e2e::{eventually, get_run};
use concierto_proto::v1;
use concierto_telemetry::testing::{attribute, finished_spans, install_in_memory};
use concierto_testkit::NatsServer;
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::SpanData;

const TRIGGER: &str = "continuous_optimization";
const WORKFLOW: &str = "system-improvement";
/// The roles of the workflow's steps, one step each.
const ROLES: &[&str] = &[
    "performance-benchmarker",
    "test-results-analyzer",
    "backend-architect",
    "studio-orchestrator",
    "workflow-optimizer",
];
/// Steps of one run.
const STEPS: usize = ROLES.len();
const INTERVAL_SECS: i64 = 6 * 3600;

fn studio() -> Arc<Studio> {
    let path = concierto_e2e::example_studio();
    let mut studio = config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    studio.triggers.retain(|t| t.name == TRIGGER);
    assert_eq!(studio.triggers.len(), 1);
    Arc::new(studio)
}

async fn connect(server: &NatsServer, name: &str) -> Arc<dyn Bus> {
    concierto_e2e::nats_client(server, name).await
}

fn store(dir: &tempfile::TempDir, name: &str) -> Arc<dyn KvStore> {
    concierto_e2e::sled_store(dir, name)
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The value of the sample whose name and labels are `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// The trace of the `scheduler.fire` span of `run_id` and every span in it.
fn trace_of(spans: &[SpanData], run_id: &str) -> Option<(TraceId, Vec<SpanData>)> {
    let fire = spans.iter().find(|s| {
        s.name == "scheduler.fire" && attribute(s, "run_id").as_deref() == Some(run_id)
    })?;
    let id = fire.span_context.trace_id();
    Some((
        id,
        spans
            .iter()
            .filter(|s| s.span_context.trace_id() == id)
            .cloned()
            .collect(),
    ))
}

fn names(spans: &[SpanData]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for s in spans {
        *out.entry(s.name.to_string()).or_insert(0) += 1;
    }
    out
}

/// Waits until `run_id`'s trace holds a result span for each of its steps.
async fn whole_trace(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    run_id: &str,
) -> (TraceId, Vec<SpanData>) {
    eventually(
        Duration::from_secs(20),
        &format!("the spans of {run_id}"),
        || async {
            let spans = finished_spans(exporter);
            let (id, trace) = trace_of(&spans, run_id)?;
            let n = names(&trace);
            (n.get("orchestrator.result").copied().unwrap_or(0) >= STEPS
                && n.get("agent.task").copied().unwrap_or(0) >= STEPS)
                .then_some((id, trace))
        },
    )
    .await
}

async fn succeeded(client: &Arc<dyn Bus>, run_id: &str) {
    eventually(
        Duration::from_secs(60),
        &format!("run {run_id} to succeed"),
        || async {
            get_run(client, run_id)
                .await
                .filter(|r| r.state == v1::RunState::Succeeded as i32)
        },
    )
    .await;
}

#[actix_rt::test]
async fn one_run_is_one_trace_across_scheduler_orchestrator_and_agents() {
    let exporter = install_in_memory("concierto-test");
    let server = NatsServer::start().expect("nats-server starts");
    let dir = tempfile::tempdir().unwrap();
    let studio = studio();

    // The process's metrics server: not ready while services start.
    let readiness = concierto_telemetry::Readiness::new();
    let metrics = concierto_telemetry::serve("127.0.0.1:0", readiness.clone())
        .await
        .unwrap();
    let base = format!("http://{}", metrics.local_addr);
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((status, body.trim()), (503, "starting"));

    // Each service on its own connection.
    let orchestrator = concierto_orchestrator::start(
        studio.clone(),
        connect(&server, "orchestrator").await,
        store(&dir, "orchestrator"),
        Arc::new(SystemClock) as SharedClock,
        concierto_orchestrator::OrchestratorOptions::default(),
    )
    .await
    .unwrap();
    let mut workers: Vec<ServiceHandle> = Vec::new();
    for role in ROLES {
        let bus = connect(&server, role).await;
        let exec = concierto_agent::executor_for(&studio, role).unwrap();
        let opts = concierto_agent::WorkerOptions {
            worker_id: "t0".into(),
            ..Default::default()
        };
        workers.push(
            concierto_agent::start_worker(studio.roles[*role].clone(), exec, bus, opts)
                .await
                .unwrap(),
        );
    }
    // The scheduler's clock a minute before the trigger's next 6-hour boundary.
    let now = Utc::now().timestamp();
    let boundary = (now / INTERVAL_SECS + 1) * INTERVAL_SECS;
    let boundary: DateTime<Utc> = Utc.timestamp_opt(boundary, 0).unwrap();
    let clock = ManualClock::new(boundary - chrono::Duration::seconds(60));
    let scheduler = concierto_scheduler::start(
        studio.clone(),
        connect(&server, "scheduler").await,
        store(&dir, "scheduler"),
        Arc::new(clock.clone()) as SharedClock,
        concierto_scheduler::SchedulerOptions {
            tick: Duration::from_millis(5),
            instance: "trace-test".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    readiness.set_ready();
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((status, body.trim()), (200, "ready"));

    // Run 1: the scheduled fire at the boundary.
    let client = connect(&server, "test-client").await;
    clock.advance(Duration::from_secs(61));
    let first = format!(
        "{TRIGGER}@{}",
        boundary.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    succeeded(&client, &first).await;
    // Run 2: fired by hand.
    clock.advance(Duration::from_secs(1));
    let fired: v1::FireTriggerResponse = client
        .request_proto(
            subjects::SCHEDULER_FIRE,
            &v1::FireTriggerRequest {
                name: TRIGGER.into(),
                priority: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let second = fired.run_id;
    assert_ne!(second, first);
    succeeded(&client, &second).await;

    let (trace1, spans1) = whole_trace(&exporter, &first).await;
    let (trace2, spans2) = whole_trace(&exporter, &second).await;
    assert_ne!(trace1, trace2, "two runs, two traces");

    for (run_id, spans) in [(&first, &spans1), (&second, &spans2)] {
        let services: BTreeSet<String> = spans
            .iter()
            .filter_map(|s| attribute(s, "service"))
            .collect();
        assert!(
            ["scheduler", "orchestrator", "agent"]
                .iter()
                .all(|s| services.contains(*s)),
            "{run_id}: services in its trace: {services:?}"
        );
        let n = names(spans);
        assert_eq!(n.get("scheduler.fire"), Some(&1), "{run_id}: {n:?}");
        assert_eq!(n.get("orchestrator.start_run"), Some(&1), "{run_id}: {n:?}");
        assert_eq!(
            n.get("orchestrator.dispatch"),
            Some(&STEPS),
            "{run_id}: {n:?}"
        );
        assert_eq!(n.get("agent.task"), Some(&STEPS), "{run_id}: {n:?}");
        assert_eq!(
            n.get("orchestrator.result"),
            Some(&STEPS),
            "{run_id}: {n:?}"
        );
        // Every span of the trace is about this run, and each has its parent in it
        // but the root (the fire).
        let ids: std::collections::HashSet<_> =
            spans.iter().map(|s| s.span_context.span_id()).collect();
        for s in spans {
            assert_eq!(
                attribute(s, "run_id").as_deref(),
                Some(run_id.as_str()),
                "{}",
                s.name
            );
            if s.name == "scheduler.fire" {
                continue;
            }
            assert!(
                ids.contains(&s.parent_span_id),
                "{} has its parent in the trace",
                s.name
            );
        }
        // The agent's span for a step is a child of that step's dispatch, and the
        // orchestrator's result span a child of the agent's.
        for task in spans.iter().filter(|s| s.name == "agent.task") {
            let step = attribute(task, "step_id");
            let parent = spans
                .iter()
                .find(|s| s.span_context.span_id() == task.parent_span_id)
                .unwrap();
            assert_eq!(parent.name, "orchestrator.dispatch");
            assert_eq!(attribute(parent, "step_id"), step);
            assert_eq!(attribute(task, "role"), attribute(parent, "role"));
            assert!(spans.iter().any(|r| r.name == "orchestrator.result"
                && r.parent_span_id == task.span_context.span_id()
                && attribute(r, "step_id") == step));
        }
    }

    // What /metrics shows after the two runs.
    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &text,
            &format!("concierto_trigger_fires_total{{trigger=\"{TRIGGER}\"}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("concierto_runs_started_total{{workflow=\"{WORKFLOW}\"}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "concierto_runs_finished_total{{workflow=\"{WORKFLOW}\",state=\"succeeded\"}}"
            )
        ),
        2.0
    );
    for role in ROLES {
        assert_eq!(
            sample(
                &text,
                &format!("concierto_agent_tasks_total{{role=\"{role}\",outcome=\"succeeded\"}}")
            ),
            2.0
        );
        assert_eq!(
            sample(
                &text,
                &format!("concierto_agent_task_duration_seconds_count{{role=\"{role}\"}}")
            ),
            2.0
        );
    }
    // Two run starts and four tasks and results, at least, went over the bus.
    assert!(
        sample(
            &text,
            "concierto_bus_messages_published_total{kind=\"run.start\"}"
        ) >= 2.0
    );
    assert!(
        sample(
            &text,
            "concierto_bus_messages_published_total{kind=\"task\"}"
        ) >= 4.0
    );
    assert!(
        sample(
            &text,
            "concierto_bus_messages_received_total{kind=\"task\"}"
        ) >= 4.0
    );
    assert!(
        sample(
            &text,
            "concierto_bus_messages_received_total{kind=\"result\"}"
        ) >= 4.0
    );

    readiness.set_stopping();
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((status, body.trim()), (503, "stopping"));
    scheduler.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    orchestrator.stop().await.unwrap();
    metrics.stop().await;
}
