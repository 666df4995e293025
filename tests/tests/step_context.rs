//! A step's `context:` end to end, in one process on a real nats-server: the
//! scheduler fires the example studio's `continuous_optimization` trigger
//! (every 6 hours), the orchestrator hands the benchmark step's context to the
//! worker, the worker fetches the metrics from the real tracker and its
//! `openai` executor sends them to a local OpenAI-compatible server that
//! records every request. Also: params of a run started by hand reach the
//! model's prompt, and a tracker that does not answer is said in the input.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use concierto_agent::{ContextOptions, Executor, OpenAiExecutor, WorkerOptions};
use concierto_bus::{Bus, BusExt};
use concierto_core::clock::{ManualClock, SharedClock, SystemClock};
use concierto_core::config::{self, ExecutorDef, ExecutorKind, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::KvStore;
use concierto_core::subjects;
use concierto_e2e::{eventually, get_run};
use concierto_proto::v1;
use concierto_testkit::NatsServer;
use serde_json::{Value, json};

const TRIGGER: &str = "continuous_optimization";
const WORKFLOW: &str = "system-improvement";
/// The roles of the workflow's steps.
const ROLES: &[&str] = &[
    "performance-benchmarker",
    "test-results-analyzer",
    "backend-architect",
    "studio-orchestrator",
    "workflow-optimizer",
];
/// Steps a run of the workflow has, one model request each.
const STEPS: usize = 5;
const SIX_HOURS: i64 = 6 * 3600;
const BENCHMARK: &str = "Benchmark every role and workflow over the last six hours";
const OPTIMIZE: &str = "Propose at most five configuration or workflow changes";

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

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A local server speaking the Chat Completions wire format: records each
/// request's JSON body and answers with a fixed completion.
async fn model_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    async fn complete(
        State(seen): State<Arc<Mutex<Vec<Value>>>>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        seen.lock().unwrap().push(body);
        Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1,
            "model": "local-test",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Report: no regression found."},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}
        }))
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(complete))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/"), seen)
}

/// The user message of a recorded request, as text.
fn user_text(body: &Value) -> String {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    msgs.iter()
        .filter(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
                .join("\n\n"),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

async fn start_workers(server: &NatsServer, studio: &Arc<Studio>, url: &str) -> Vec<ServiceHandle> {
    let mut def = ExecutorDef::new("local-llm", ExecutorKind::OpenAi);
    def.base_url = Some(url.to_string());
    def.model = Some("local-test".into());
    let exec: Arc<dyn Executor> = Arc::new(OpenAiExecutor::new(&def).unwrap());
    let mut workers = Vec::new();
    for role in ROLES {
        let opts = WorkerOptions {
            worker_id: "t0".into(),
            context: ContextOptions::for_studio(studio),
            ..Default::default()
        };
        workers.push(
            concierto_agent::start_worker(
                studio.roles[*role].clone(),
                exec.clone(),
                connect(server, role).await,
                opts,
            )
            .await
            .unwrap(),
        );
    }
    workers
}

async fn record(bus: &Arc<dyn Bus>, clock: &ManualClock, at: DateTime<Utc>, value: f64) {
    clock.set(at);
    // The tracker may not have its interest registered yet: wait for it.
    for _ in 0..50 {
        let r: Result<v1::RecordMetricResponse, _> = bus
            .request_proto(
                subjects::TRACKER_RECORD_METRIC,
                &v1::RecordMetricRequest {
                    metric: "quality_score".into(),
                    value,
                    labels: Default::default(),
                },
                Duration::from_secs(5),
            )
            .await;
        match r {
            Ok(_) => return,
            Err(concierto_bus::BusError::NoResponders(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the tracker never answered");
}

async fn succeeded(client: &Arc<dyn Bus>, run_id: &str) -> v1::Run {
    eventually(Duration::from_secs(60), "the run to succeed", || async {
        get_run(client, run_id)
            .await
            .filter(|r| r.state == v1::RunState::Succeeded as i32)
    })
    .await
}

#[actix_rt::test]
async fn a_scheduled_benchmarker_run_gets_the_metrics_of_the_last_six_hours_and_manual_params() {
    let server = NatsServer::start().expect("nats-server starts");
    let dir = tempfile::tempdir().unwrap();
    let studio = studio();
    let client = connect(&server, "test-client").await;

    // The last 6-hour boundary: the scheduled fire. Its window is the six
    // hours before it.
    let now = Utc::now();
    let fire = Utc
        .timestamp_opt(now.timestamp().div_euclid(SIX_HOURS) * SIX_HOURS, 0)
        .unwrap();
    let previous = fire - chrono::Duration::hours(6);

    // The real tracker, its clock set for each sample: one before the
    // window, two in it.
    let tracker_clock = ManualClock::new(fire - chrono::Duration::hours(7));
    let tracker = concierto_tracker::start(
        studio.clone(),
        connect(&server, "tracker").await,
        store(&dir, "tracker"),
        Arc::new(tracker_clock.clone()) as SharedClock,
        concierto_tracker::TrackerOptions::default(),
    )
    .await
    .unwrap();
    record(
        &client,
        &tracker_clock,
        fire - chrono::Duration::hours(7),
        0.1113,
    )
    .await;
    record(
        &client,
        &tracker_clock,
        fire - chrono::Duration::hours(2),
        0.7771,
    )
    .await;
    record(
        &client,
        &tracker_clock,
        fire - chrono::Duration::hours(1),
        0.8882,
    )
    .await;
    tracker_clock.set(now);

    let orchestrator = concierto_orchestrator::start(
        studio.clone(),
        connect(&server, "orchestrator").await,
        store(&dir, "orchestrator"),
        Arc::new(SystemClock) as SharedClock,
        concierto_orchestrator::OrchestratorOptions::default(),
    )
    .await
    .unwrap();
    let (url, seen) = model_server().await;
    let workers = start_workers(&server, &studio, &url).await;

    let clock = ManualClock::new(fire - chrono::Duration::seconds(60));
    let scheduler = concierto_scheduler::start(
        studio.clone(),
        connect(&server, "scheduler").await,
        store(&dir, "scheduler"),
        Arc::new(clock.clone()) as SharedClock,
        concierto_scheduler::SchedulerOptions {
            tick: Duration::from_millis(5),
            instance: "context-test".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // (a) The scheduled fire.
    clock.advance(Duration::from_secs(61));
    let run_id = format!("{TRIGGER}@{}", rfc(fire));
    let run = succeeded(&client, &run_id).await;
    assert_eq!(run.workflow, WORKFLOW);
    let prompts: Vec<String> = seen.lock().unwrap().iter().map(user_text).collect();
    let bench: Vec<&String> = prompts.iter().filter(|p| p.contains(BENCHMARK)).collect();
    assert_eq!(bench.len(), 1, "one benchmark request: {prompts:#?}");
    let p = bench[0];
    assert!(p.contains("## Input: metrics"), "{p}");
    assert!(
        p.contains(&format!(
            "Metrics since the last run: {} → {}.",
            rfc(previous),
            rfc(fire)
        )),
        "{p}"
    );
    assert!(p.contains("### quality_score"), "{p}");
    assert!(
        p.contains("0.7771") && p.contains("0.8882"),
        "the last six hours: {p}"
    );
    assert!(!p.contains("0.1113"), "a value older than the window: {p}");
    assert!(p.contains("trend in the window: 0.7771 → 0.8882"), "{p}");
    assert!(p.contains("## Input: runs"), "{p}");
    assert!(
        p.contains("Recent runs of workflow daily-content-pipeline"),
        "{p}"
    );
    assert!(p.contains("## Input: params"), "{p}");
    // What the fire carries, one a line.
    assert!(
        p.contains(&format!(
            "The run's params.\n\n- agents: performance-benchmarker, workflow-optimizer, test-results-analyzer, backend-architect, studio-orchestrator\n- fire_time: {}\n- previous_fire_time: {}\n- trigger: {TRIGGER}",
            rfc(fire),
            rfc(previous)
        )),
        "{p}"
    );
    // The optimizer's 7-day window does reach the older value.
    assert_eq!(prompts.len(), STEPS, "one request per step: {prompts:#?}");
    let opt: Vec<&String> = prompts.iter().filter(|p| p.contains(OPTIMIZE)).collect();
    assert_eq!(opt.len(), 1, "{prompts:#?}");
    assert!(opt[0].contains("0.1113"), "{}", opt[0]);
    assert!(opt[0].contains("Recent runs of workflow system-improvement"));

    // (b) Started by hand with a brief: it reaches both steps' prompts, as
    // the benchmark's `params` input and as the optimizer's `## Params`.
    let brief = "Focus on the spring launch of refillable jars";
    let manual = "manual:system-improvement@brief-test";
    let start = v1::StartRun {
        run_id: manual.into(),
        workflow: WORKFLOW.into(),
        priority: v1::Priority::Normal as i32,
        params: [("brief".to_string(), brief.to_string())].into(),
        requested_by: "admin:test".into(),
        ..Default::default()
    };
    client
        .publish_durable_proto(subjects::RUN_START, &start, manual)
        .await
        .unwrap();
    succeeded(&client, manual).await;
    let prompts: Vec<String> = seen.lock().unwrap().iter().map(user_text).collect();
    assert_eq!(prompts.len(), 2 * STEPS, "{prompts:#?}");
    let bench = prompts[STEPS..]
        .iter()
        .find(|p| p.contains(BENCHMARK))
        .expect("the manual benchmark request");
    assert!(
        bench.contains(&format!(
            "## Input: params\n\nThe run's params.\n\n- brief: {brief}"
        )),
        "{bench}"
    );
    assert!(!bench.contains("## Params"), "params once: {bench}");
    let opt = prompts[STEPS..]
        .iter()
        .find(|p| p.contains(OPTIMIZE))
        .expect("the manual optimizer request");
    assert!(
        opt.contains(&format!("## Params\n- brief: {brief}")),
        "{opt}"
    );
    // The benchmark's last run (the scheduled one) is among the optimizer's
    // runs now.
    assert!(opt.contains(&run_id), "{opt}");

    scheduler.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    orchestrator.stop().await.unwrap();
    tracker.stop().await.unwrap();
}

/// A tracker that takes the request but never answers: the input says so and
/// the task goes on; a subject nobody serves says that instead.
#[tokio::test]
async fn a_silent_tracker_is_said_in_the_input() {
    let server = NatsServer::start().expect("nats-server starts");
    let bus = connect(&server, "worker").await;
    let opts = ContextOptions {
        brand_dir: None,
        timeout: Duration::from_millis(300),
    };
    let mut task = v1::Task {
        context: vec![
            v1::ContextRequest {
                kind: "runs".into(),
                ..Default::default()
            },
            v1::ContextRequest {
                kind: "brand".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    // Nobody serves the orchestrator's subject.
    concierto_agent::context::resolve(bus.clone(), &opts, &mut task, Utc::now()).await;
    assert_eq!(task.inputs.len(), 2);
    assert_eq!(task.inputs[0].name, "runs");
    assert_eq!(
        task.inputs[0].content,
        "runs unavailable: no orchestrator is running"
    );
    assert!(
        task.inputs[1]
            .content
            .starts_with("brand unavailable: this worker was started without"),
        "{}",
        task.inputs[1].content
    );

    // A tracker that takes requests and never answers.
    let _silent = bus.subscribe(subjects::TRACKER_GET_METRICS).await.unwrap();
    bus.flush().await.unwrap();
    let mut task = v1::Task {
        context: vec![v1::ContextRequest {
            kind: "metrics".into(),
            window: "6 hours".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    concierto_agent::context::resolve(bus, &opts, &mut task, Utc::now()).await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(
        task.inputs[0].content,
        "metrics unavailable: tracker did not answer in 0.3 s"
    );
}
