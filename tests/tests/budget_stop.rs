//! A run with `agents.budget.per_run_usd` stops at its budget, in one process
//! on a real nats-server: the real orchestrator hands the step its budget, the
//! worker's `openai` executor runs its tool loop against a local server speaking
//! the Chat Completions wire format that keeps asking for a tool, each round
//! costs money by the executor's prices, and the step fails with the budget's
//! reason, which the run record shows. The day's spend is then reported by
//! `orchestrator.spend.get`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use concierto_agent::{Executor, OpenAiExecutor, WorkerOptions};
use concierto_bus::{Bus, BusExt};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Budget, ExecutorDef, ExecutorKind, Prices, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_e2e::{eventually, get_run};
use concierto_proto::v1;
use concierto_testkit::NatsServer;
use serde_json::{Value, json};

const ROLE: &str = "performance-benchmarker";

fn studio() -> Arc<Studio> {
    let path = concierto_e2e::example_studio();
    let mut s = config::load_with_env(&path, Vec::new()).expect("the example studio loads");
    s.triggers.clear();
    s.agents.budget = Budget {
        per_run_usd: Some(0.05),
        ..Budget::default()
    };
    Arc::new(s)
}

async fn connect(server: &NatsServer, name: &str) -> Arc<dyn Bus> {
    concierto_e2e::nats_client(server, name).await
}

/// A model that asks for `brand_check` every round; each round reports
/// 10,000 input tokens ($0.02 at $2 per million).
async fn looping_model() -> (String, Arc<Mutex<usize>>) {
    let rounds: Arc<Mutex<usize>> = Arc::default();
    async fn complete(
        State(rounds): State<Arc<Mutex<usize>>>,
        Json(_body): Json<Value>,
    ) -> Json<Value> {
        let n = {
            let mut r = rounds.lock().unwrap();
            *r += 1;
            *r
        };
        Json(json!({
            "id": format!("chatcmpl-{n}"),
            "object": "chat.completion",
            "created": 1,
            "model": "local-test",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": format!("call_{n}"),
                        "type": "function",
                        "function": {"name": "brand_check", "arguments": "{\"text\": \"Glass jars come back.\"}"}
                    }]
                },
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 10000, "completion_tokens": 0, "total_tokens": 10000}
        }))
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(complete))
        .with_state(rounds.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), rounds)
}

#[actix_rt::test]
async fn a_run_stops_at_its_budget_with_the_reason_on_the_step() {
    let server = NatsServer::start().expect("nats-server starts");
    let dir = tempfile::tempdir().unwrap();
    let studio = studio();
    let client = connect(&server, "test-client").await;
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(&dir.path().join("orch")).unwrap());
    let orchestrator = concierto_orchestrator::start(
        studio.clone(),
        connect(&server, "orchestrator").await,
        store,
        Arc::new(SystemClock) as SharedClock,
        concierto_orchestrator::OrchestratorOptions::default(),
    )
    .await
    .unwrap();

    let (url, rounds) = looping_model().await;
    let mut def = ExecutorDef::new("local", ExecutorKind::OpenAi);
    def.base_url = Some(url);
    def.model = Some("local-test".into());
    def.prices = Some(Prices {
        input_per_mtok: 2.0,
        output_per_mtok: 0.0,
    });
    let worker_bus = connect(&server, ROLE).await;
    let role = studio.roles[ROLE].clone();
    let toolbox = concierto_agent::tools::builtin_toolbox(&studio, &role, worker_bus.clone());
    assert!(
        toolbox.get("brand_check").is_none(),
        "the benchmarker's tools line does not name brand_check"
    );
    let mut toolbox = toolbox;
    toolbox.push(Arc::new(
        concierto_agent::tools::studio::BrandCheckTool::new(
            concierto_agent::tools::builder::brand_rules(&studio),
        ),
    ));
    let exec: Arc<dyn Executor> = Arc::new(OpenAiExecutor::new(&def).unwrap().with_tools(toolbox));
    let worker = concierto_agent::start_worker(
        role,
        exec,
        worker_bus,
        WorkerOptions {
            worker_id: "t0".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let start = v1::StartRun {
        run_id: "budget-e2e-1".into(),
        workflow: "system-improvement".into(),
        trigger: "test".into(),
        priority: v1::Priority::Normal as i32,
        ..Default::default()
    };
    client
        .publish_durable(
            subjects::RUN_START,
            concierto_bus::encode(&start).msg_id(start.run_id.clone()),
        )
        .await
        .unwrap();
    let run = eventually(Duration::from_secs(60), "the run to fail", || async {
        get_run(&client, "budget-e2e-1")
            .await
            .filter(|r| r.state == v1::RunState::Failed as i32)
    })
    .await;
    let step = run
        .steps
        .iter()
        .find(|s| s.step_id == "benchmark")
        .expect("the benchmark step");
    assert_eq!(step.state, v1::StepState::Failed as i32, "{step:?}");
    assert!(
        step.error.contains("budget reached") && step.error.contains("agents.budget.per_run_usd"),
        "{}",
        step.error
    );
    // $0.02 a round against $0.05: the third round crosses it; no fourth.
    assert_eq!(*rounds.lock().unwrap(), 3);
    assert!(
        !step.tool_calls.is_empty() && step.tool_calls.iter().all(|c| c.name == "brand_check"),
        "{:?}",
        step.tool_calls
    );
    assert!((run.cost_usd - 0.06).abs() < 1e-9, "{}", run.cost_usd);

    // The day's spend, as the dashboard asks for it.
    let spend: v1::GetSpendResponse = client
        .request_proto(
            subjects::ORCHESTRATOR_SPEND,
            &v1::GetSpendRequest { days: 1 },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let today = &spend.days[0];
    assert!((today.total_usd - 0.06).abs() < 1e-9, "{today:?}");
    assert!((today.by_role[ROLE] - 0.06).abs() < 1e-9, "{today:?}");
    assert!(
        (today.by_workflow["system-improvement"] - 0.06).abs() < 1e-9,
        "{today:?}"
    );

    worker.stop().await.unwrap();
    orchestrator.stop().await.unwrap();
}
