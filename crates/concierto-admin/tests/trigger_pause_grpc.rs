//! `PauseTrigger` / `ResumeTrigger` over gRPC against a real scheduler on a real
//! nats-server: an admin pauses a trigger, `ListTriggers` shows who paused it and
//! when, an admin resumes it; a caller without the admin role is refused and an
//! unknown trigger is NOT_FOUND.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use concierto_admin::{AdminOptions, token_sha256};
use concierto_bus::{Bus, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::SledStore;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::NatsServer;
use tonic::{Code, Request};

const OPS: &str = "ops-token-pause-1";
const READER: &str = "reader-token-pause-1";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Pause test"
  timezone: "Europe/Madrid"
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
        task: "Announce the day to the team."
        inputs: [trigger]
triggers:
  scheduled:
    - morning:
        time: "09:00"
        agents: [studio-orchestrator]
        workflow: announce
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
async fn an_admin_pauses_and_resumes_a_trigger_and_a_reader_may_not() {
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
    let now = Utc.with_ymd_and_hms(2026, 3, 10, 6, 0, 0).unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(now));
    let scheduler = concierto_scheduler::start(
        st.clone(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()),
        clock,
        concierto_scheduler::SchedulerOptions::default(),
    )
    .await
    .expect("the scheduler starts");
    let (admin, addr) = concierto_admin::start(st, bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let refused = c
        .pause_trigger(with_token(
            READER,
            v1::PauseTriggerRequest {
                name: "morning".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");

    let unknown = c
        .pause_trigger(with_token(
            OPS,
            v1::PauseTriggerRequest {
                name: "evening".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown}");
    assert!(unknown.message().contains("morning"), "{unknown}");

    let paused = c
        .pause_trigger(with_token(
            OPS,
            v1::PauseTriggerRequest {
                name: "morning".into(),
                // The admin service decides these, not the caller.
                paused: false,
                requested_by: "someone-else".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .trigger
        .expect("the trigger");
    assert!(paused.paused);
    assert_eq!(paused.paused_by, "ops");

    let listed = c
        .list_triggers(with_token(READER, v1::ListTriggersRequest {}))
        .await
        .unwrap()
        .into_inner();
    let morning = listed
        .triggers
        .iter()
        .find(|t| t.name == "morning")
        .expect("listed");
    assert!(morning.paused);
    assert_eq!(morning.paused_by, "ops");
    assert_eq!(
        morning.paused_at.as_ref().map(|t| t.seconds),
        Some(now.timestamp())
    );
    assert_eq!(morning.next_fire, None);

    let refused = c
        .resume_trigger(with_token(
            READER,
            v1::ResumeTriggerRequest {
                name: "morning".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");

    let resumed = c
        .resume_trigger(with_token(
            OPS,
            v1::ResumeTriggerRequest {
                name: "morning".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .trigger
        .expect("the trigger");
    assert!(!resumed.paused);
    // 09:00 Madrid is 08:00 UTC in March.
    assert_eq!(
        resumed.next_fire.as_ref().map(|t| t.seconds),
        Some(
            Utc.with_ymd_and_hms(2026, 3, 10, 8, 0, 0)
                .unwrap()
                .timestamp()
        )
    );

    admin.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}
