//! Quality gates through the admin API: a real nats-server, the orchestrator
//! and builtin agent workers on it, the admin service on a real socket, and a
//! tonic client carrying each person's token. The orchestrator's clock is
//! controlled, so the 24-hour SLA passes in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{Bus, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::{NatsServer, eventually};
use tonic::transport::Channel;
use tonic::{Code, Request};

const PATIENCE: Duration = Duration::from_secs(20);
const OPS: &str = "ops-token-0123";
const DIRECTOR: &str = "director-token-4567";
const BRAND: &str = "brand-token-89ab";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Gate API test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  creative_director: {{ name: "Creative Director", token_sha256: "{director}", escalation: [brand_manager] }}
  brand_manager: {{ name: "Brand Manager", token_sha256: "{brand}", escalation: [creative_director] }}
workflows:
  launch:
    description: "Write the launch copy, then announce it."
    steps:
      - id: copy
        role: content-creator
        task: "Write the campaign launch copy for the handmade packaging line."
        inputs: [trigger]
        labels: [campaign_launch]
      - id: announce
        role: studio-orchestrator
        task: "Announce the launch to the team."
        inputs: [copy]
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        director = token_sha256(DIRECTOR),
        brand = token_sha256(BRAND),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

async fn run_state(c: &mut AdminServiceClient<Channel>, id: &str) -> Option<v1::Run> {
    c.get_run(with_token(OPS, v1::GetRunRequest { run_id: id.into() }))
        .await
        .ok()
        .and_then(|r| r.into_inner().run)
}

async fn open_gate(c: &mut AdminServiceClient<Channel>, run: &str) -> Option<v1::Gate> {
    let r = c
        .list_gates(with_token(
            DIRECTOR,
            v1::ListGatesRequest {
                state: v1::GateState::Open as i32,
                run_id: run.into(),
                ..Default::default()
            },
        ))
        .await
        .ok()?;
    r.into_inner().gates.into_iter().next()
}

async fn next_gate_event(stream: &mut tonic::Streaming<v1::WatchGatesResponse>) -> v1::Gate {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a gate event in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
        .gate
        .expect("a gate")
}

#[actix_rt::test]
async fn people_decide_gates_over_grpc_and_an_unanswered_gate_reminds_and_escalates() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let shared: SharedClock = clock.clone();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let orch = concierto_orchestrator::start(
        st.clone(),
        bus.clone(),
        store,
        shared,
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut workers = Vec::new();
    for role in ["content-creator", "studio-orchestrator"] {
        workers.push(
            start_worker(
                st.roles[role].clone(),
                Arc::new(BuiltinExecutor::default()),
                bus.clone(),
                WorkerOptions {
                    worker_id: "t".into(),
                    fetch_wait: Duration::from_millis(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
    }
    let (admin, addr) = concierto_admin::start(st.clone(), bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // The director watches the gates that are theirs.
    let mut watch = c
        .watch_gates(with_token(DIRECTOR, v1::WatchGatesRequest { mine: true }))
        .await
        .unwrap()
        .into_inner();

    // 1. A campaign-launch output opens creative_review and the run waits.
    let run_id = c
        .start_run(with_token(
            OPS,
            v1::StartRunRequest {
                workflow: "launch".into(),
                run_id: "launch-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    assert_eq!(run_id, "launch-1");
    let opened = next_gate_event(&mut watch).await;
    let req = opened.request.clone().unwrap();
    assert_eq!(
        (req.gate.as_str(), req.label.as_str()),
        ("creative_review", "campaign_launch")
    );
    assert_eq!(opened.state(), v1::GateState::Open);
    assert!(!req.content.is_empty(), "the draft is in the gate");
    let run = eventually(PATIENCE, "the run to wait at the gate", || {
        let mut c = c.clone();
        async move {
            run_state(&mut c, "launch-1")
                .await
                .filter(|r| r.state() == v1::RunState::WaitingGate)
        }
    })
    .await;
    assert_eq!(run.steps[0].state(), v1::StepState::WaitingGate);
    let gate_id = req.gate_id.clone();

    // 2. Who may do what.
    let decide = |token: &'static str, id: &str, kind: v1::GateDecisionKind, notes: &str| {
        with_token(
            token,
            v1::DecideGateRequest {
                gate_id: id.into(),
                decision: kind as i32,
                notes: notes.into(),
            },
        )
    };
    let err = c
        .decide_gate(decide(BRAND, &gate_id, v1::GateDecisionKind::Approve, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = c
        .decide_gate(Request::new(v1::DecideGateRequest {
            gate_id: gate_id.clone(),
            decision: v1::GateDecisionKind::Approve as i32,
            notes: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .decide_gate(decide(
            "not-a-token",
            &gate_id,
            v1::GateDecisionKind::Approve,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .decide_gate(decide(
            DIRECTOR,
            "no/such/gate/1",
            v1::GateDecisionKind::Approve,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .start_run(with_token(
            DIRECTOR,
            v1::StartRunRequest {
                workflow: "launch".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "reviewers may not start runs"
    );

    // 3. The director asks for changes: the producer revises, the gate opens again.
    let g = c
        .decide_gate(decide(
            DIRECTOR,
            &gate_id,
            v1::GateDecisionKind::RequestChanges,
            "Lead with the handmade story.",
        ))
        .await
        .unwrap()
        .into_inner()
        .gate
        .unwrap();
    assert_eq!(g.state(), v1::GateState::ChangesRequested);
    assert_eq!(g.decisions[0].reviewer, "creative_director");
    assert_eq!(g.decisions[0].notes, "Lead with the handmade story.");
    let err = c
        .decide_gate(decide(
            DIRECTOR,
            &gate_id,
            v1::GateDecisionKind::Approve,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "a closed gate cannot be decided"
    );
    let decided = next_gate_event(&mut watch).await;
    assert_eq!(decided.state(), v1::GateState::ChangesRequested);
    let reopened = next_gate_event(&mut watch).await;
    let r2 = reopened.request.clone().unwrap();
    assert_eq!((r2.round, reopened.state()), (2, v1::GateState::Open));
    assert!(
        r2.content.contains("Revision"),
        "the revised draft: {}",
        r2.content
    );

    // 4. The second version is approved and the run completes.
    c.decide_gate(decide(
        DIRECTOR,
        &r2.gate_id,
        v1::GateDecisionKind::Approve,
        "Good to go.",
    ))
    .await
    .unwrap();
    let done = eventually(PATIENCE, "the run to succeed", || {
        let mut c = c.clone();
        async move {
            run_state(&mut c, "launch-1")
                .await
                .filter(|r| r.state() == v1::RunState::Succeeded)
        }
    })
    .await;
    assert!(done.steps.iter().any(|s| s.step_id == "copy/changes-2"));
    let _approved = next_gate_event(&mut watch).await;

    // 5. An unanswered gate: a reminder half way, escalation at the SLA (hold).
    c.start_run(with_token(
        OPS,
        v1::StartRunRequest {
            workflow: "launch".into(),
            run_id: "launch-2".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let opened = next_gate_event(&mut watch).await;
    assert_eq!(opened.request.as_ref().unwrap().run_id, "launch-2");
    clock.advance(Duration::from_secs(12 * 3600));
    let reminded = next_gate_event(&mut watch).await;
    assert_eq!((reminded.reminders, reminded.escalated), (1, false));
    clock.advance(Duration::from_secs(12 * 3600));
    let escalated = loop {
        let g = next_gate_event(&mut watch).await;
        if g.escalated {
            break g;
        }
    };
    assert_eq!(
        escalated.state(),
        v1::GateState::Open,
        "on_breach: hold keeps it open"
    );
    let still = open_gate(&mut c, "launch-2").await.expect("still open");
    assert!(still.escalated);

    // Reflection and health answer without a token.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "concierto.v1.AdminService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    admin.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    orch.stop().await.unwrap();
}
