//! Dead letters through the admin API, on a real nats-server with the
//! orchestrator and builtin workers: a run start the bus gave up on (as the
//! orchestrator did when its disk was full: `max_deliver` exhausted) is listed
//! with its reason, a reviewer may not replay it, an admin does, and the run
//! then starts and finishes; the letter is gone.

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{Bus, NatsBus, NatsOptions, dead_letter_for, ensure_standard_streams};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::{NatsServer, eventually};
use tonic::{Code, Request};

const OPS: &str = "ops-token-0123";
const READER: &str = "reader-token-4567";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Dead letter test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  reader: {{ name: "Reader", token_sha256: "{reader}" }}
workflows:
  announce:
    description: "Announce something."
    steps:
      - id: announce
        role: studio-orchestrator
        task: "Announce the launch to the team."
        inputs: [trigger]
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        reader = token_sha256(READER),
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

#[actix_rt::test]
async fn a_dead_lettered_run_start_is_listed_and_an_admin_replays_it_into_a_run() {
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

    // A run start the bus gave up on, exactly as a consumer dead-letters one.
    let start = v1::StartRun {
        run_id: "announce@lost".into(),
        workflow: "announce".into(),
        trigger: "manual".into(),
        requested_by: "test".into(),
        ..Default::default()
    };
    let original = concierto_bus::Message {
        subject: subjects::RUN_START.into(),
        reply: None,
        headers: {
            let mut h = concierto_bus::Headers::new();
            h.insert(concierto_bus::MSG_ID, "announce@lost");
            h
        },
        payload: prost::Message::encode_to_vec(&start).into(),
    };
    let letter = dead_letter_for(
        &original,
        "max_deliver exhausted: delivered 10 times to consumer orchestrator without success".into(),
        11,
        "orchestrator",
        "concierto.v1.StartRun",
    );
    bus.dead_letters().dead_letter(letter).await.unwrap();
    // Another letter the filter leaves out.
    let other = concierto_bus::Message {
        subject: "task.nobody".into(),
        reply: None,
        headers: Default::default(),
        payload: b"\xff\xff".to_vec().into(),
    };
    bus.dead_letters()
        .dead_letter(dead_letter_for(
            &other,
            "does not decode".into(),
            1,
            "nobody",
            "",
        ))
        .await
        .unwrap();

    let clock: SharedClock = Arc::new(SystemClock);
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let opts = OrchestratorOptions {
        tick: Duration::from_millis(50),
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    };
    let orch = concierto_orchestrator::start(st.clone(), bus.clone(), store, clock, opts)
        .await
        .unwrap();
    let worker = start_worker(
        st.roles["studio-orchestrator"].clone(),
        Arc::new(BuiltinExecutor::default()),
        bus.clone(),
        WorkerOptions {
            worker_id: "t".into(),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (admin, addr) = concierto_admin::start(st.clone(), bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // Listed, with its reason, by anyone with a token; filtered by subject.
    let all = c
        .list_dead_letters(with_token(READER, v1::ListDeadLettersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.dead_letters.len(), 2);
    let listed = c
        .list_dead_letters(with_token(
            READER,
            v1::ListDeadLettersRequest {
                subject_prefix: "run.".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.dead_letters.len(), 1);
    let entry = &listed.dead_letters[0];
    let l = entry.letter.clone().unwrap();
    assert_eq!(l.subject, "run.start");
    assert!(l.reason.contains("max_deliver exhausted"), "{}", l.reason);
    // Paging: one at a time, the token leads to the next.
    let first = c
        .list_dead_letters(with_token(
            READER,
            v1::ListDeadLettersRequest {
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.dead_letters.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let bad = c
        .list_dead_letters(with_token(
            READER,
            v1::ListDeadLettersRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let no_token = c
        .list_dead_letters(Request::new(v1::ListDeadLettersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);

    // Replaying needs the admin role.
    let denied = c
        .replay_dead_letter(with_token(
            READER,
            v1::ReplayDeadLetterRequest {
                sequence: entry.sequence,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let missing = c
        .replay_dead_letter(with_token(
            OPS,
            v1::ReplayDeadLetterRequest { sequence: 999_999 },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let replayed = c
        .replay_dead_letter(with_token(
            OPS,
            v1::ReplayDeadLetterRequest {
                sequence: entry.sequence,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.subject, "run.start");
    assert!(!replayed.stream.is_empty());

    // The run starts and finishes; the letter is gone, the other one stays.
    eventually(
        Duration::from_secs(20),
        "the replayed run to succeed",
        || {
            let mut c = c.clone();
            async move {
                let r = c
                    .get_run(with_token(
                        OPS,
                        v1::GetRunRequest {
                            run_id: "announce@lost".into(),
                        },
                    ))
                    .await
                    .ok()?
                    .into_inner()
                    .run?;
                (r.state() == v1::RunState::Succeeded).then_some(())
            }
        },
    )
    .await;
    let left = c
        .list_dead_letters(with_token(READER, v1::ListDeadLettersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.dead_letters.len(), 1);
    assert_eq!(
        left.dead_letters[0].letter.clone().unwrap().subject,
        "task.nobody"
    );

    admin.stop().await.unwrap();
    worker.stop().await.unwrap();
    orch.stop().await.unwrap();
}
