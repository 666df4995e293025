//! A batched quality gate (`batch:`) through the orchestrator service on a
//! real nats-server, builtin agent workers and the admin API: five runs
//! whose step opens the same gate make one `opened` and four `joined` events;
//! the gate list shows the batch; a member decided alone leaves it; approving
//! the first gate completes every other run.

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::{NatsServer, eventually};
use tonic::Request;
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(20);
const OPS: &str = "ops-token-0123";
const DIRECTOR: &str = "director-token-4567";
const RUNS: [&str; 5] = ["launch-1", "launch-2", "launch-3", "launch-4", "launch-5"];

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Gate batch API test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  creative_director: {{ name: "Creative Director", token_sha256: "{director}" }}
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
            batch: "1 hour"
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        director = token_sha256(DIRECTOR),
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

async fn get_gate(c: &mut AdminServiceClient<Channel>, id: &str) -> v1::Gate {
    c.get_gate(with_token(
        DIRECTOR,
        v1::GetGateRequest { gate_id: id.into() },
    ))
    .await
    .unwrap()
    .into_inner()
    .gate
    .unwrap()
}

async fn approve(c: &mut AdminServiceClient<Channel>, id: &str, notes: &str) -> v1::Gate {
    c.decide_gate(with_token(
        DIRECTOR,
        v1::DecideGateRequest {
            gate_id: id.into(),
            decision: v1::GateDecisionKind::Approve as i32,
            notes: notes.into(),
        },
    ))
    .await
    .unwrap()
    .into_inner()
    .gate
    .unwrap()
}

fn gate_id(g: &v1::Gate) -> String {
    g.request
        .as_ref()
        .map(|r| r.gate_id.clone())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn five_runs_at_one_batched_gate_are_decided_by_one_approval() {
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
    let mut gate_events = bus
        .subscribe_proto::<v1::Gate>(subjects::GATE_EVENTS)
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

    for id in RUNS {
        c.start_run(with_token(
            OPS,
            v1::StartRunRequest {
                workflow: "launch".into(),
                run_id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    }

    // One gate opens (its reviewer is told), four join it.
    let mut opened = Vec::new();
    let mut joined = Vec::new();
    while opened.len() + joined.len() < RUNS.len() {
        let (g, m) = tokio::time::timeout(PATIENCE, gate_events.next())
            .await
            .expect("a gate event in time")
            .expect("the subscription is open");
        match m.subject.rsplit('.').next() {
            Some("opened") => opened.push(g),
            Some("joined") => joined.push(g),
            other => panic!("unexpected gate event {other:?}: {g:?}"),
        }
    }
    assert_eq!((opened.len(), joined.len()), (1, 4));
    let leader = gate_id(&opened[0]);
    assert!(joined.iter().all(|g| g.batch_of == leader), "{joined:#?}");
    let mut sizes: Vec<u32> = joined.iter().map(|g| g.batch_size).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 3, 4, 5]);

    // The admin API's list and show say who leads and how big the batch is.
    let listed = c
        .list_gates(with_token(
            DIRECTOR,
            v1::ListGatesRequest {
                state: v1::GateState::Open as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .gates;
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed
            .iter()
            .filter(|g| g.batch_of == leader && g.batch_size == 5)
            .count(),
        4
    );
    let l = get_gate(&mut c, &leader).await;
    assert_eq!((l.batch_of.as_str(), l.batch_size), ("", 5));
    assert!(
        l.request.as_ref().unwrap().summary.contains("batch of 5"),
        "{l:?}"
    );

    // A member decided alone goes on by itself and leaves the batch.
    let alone = gate_id(&joined[0]);
    let run_alone = joined[0].request.as_ref().unwrap().run_id.clone();
    let g = approve(&mut c, &alone, "This one now.").await;
    assert_eq!(
        (g.state(), g.batch_of.as_str()),
        (v1::GateState::Approved, "")
    );
    eventually(PATIENCE, "the member's run to succeed", || {
        let mut c = c.clone();
        let id = run_alone.clone();
        async move {
            run_state(&mut c, &id)
                .await
                .filter(|r| r.state() == v1::RunState::Succeeded)
        }
    })
    .await;
    assert_eq!(get_gate(&mut c, &leader).await.batch_size, 4);
    for id in RUNS.iter().filter(|r| **r != run_alone) {
        let r = run_state(&mut c, id).await.expect("the run");
        assert_eq!(r.state(), v1::RunState::WaitingGate, "{id}");
    }

    // One approval of the first gate completes every other run.
    approve(&mut c, &leader, "All on brief.").await;
    for id in RUNS {
        eventually(PATIENCE, "every run to succeed", || {
            let mut c = c.clone();
            async move {
                run_state(&mut c, id)
                    .await
                    .filter(|r| r.state() == v1::RunState::Succeeded)
            }
        })
        .await;
    }
    for g in joined.iter().skip(1) {
        let g = get_gate(&mut c, &gate_id(g)).await;
        assert_eq!(g.state(), v1::GateState::Approved);
        let d = &g.decisions[0];
        assert_eq!(
            (d.reviewer.as_str(), d.notes.as_str(), d.automatic),
            ("creative_director", "All on brief.", false)
        );
    }
    // Nobody was asked again meanwhile.
    while let Ok(Some((g, m))) =
        tokio::time::timeout(Duration::from_millis(300), gate_events.next()).await
    {
        assert!(
            m.subject.ends_with(".decided"),
            "only decisions after the batch formed: {} {g:?}",
            m.subject
        );
    }

    admin.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    orch.stop().await.unwrap();
}
