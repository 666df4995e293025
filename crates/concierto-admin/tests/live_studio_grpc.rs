//! A changed studio reaches a running admin service (`ServiceHandle::
//! studio_changed`): a reviewer added with a `token_sha256` can call at once,
//! a removed one is refused, and a workflow added can be started; the
//! orchestrator answers over a real nats-server.

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_bus::{Bus, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::NatsServer;
use tonic::transport::Channel;
use tonic::{Code, Request};

const OPS: &str = "ops-token-live-0001";
const BRAND: &str = "brand-token-live-0002";
const NEWBIE: &str = "newbie-token-live-0003";

/// A studio with `reviewers` (YAML lines) and the workflows named.
fn studio(dir: &std::path::Path, reviewers: &str, workflows: &[&str]) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let mut yaml = format!(
        "studio: {{ name: live, timezone: UTC }}\nagents:\n  paths: [\"{}\"]\nreviewers:\n{reviewers}workflows:\n",
        agents.display()
    );
    for w in workflows {
        yaml.push_str(&format!(
            "  {w}:\n    steps:\n      - id: copy\n        role: content-creator\n        task: Write.\n"
        ));
    }
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn reviewer(id: &str, token: &str, roles: &str) -> String {
    format!(
        "  {id}: {{ name: \"{id}\", token_sha256: \"{}\", roles: [{roles}] }}\n",
        token_sha256(token)
    )
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

async fn list_runs(c: &mut AdminServiceClient<Channel>, token: &str) -> Result<(), tonic::Status> {
    c.list_runs(with_token(token, v1::ListRunsRequest::default()))
        .await
        .map(|_| ())
}

async fn start_run(
    c: &mut AdminServiceClient<Channel>,
    workflow: &str,
) -> Result<String, tonic::Status> {
    c.start_run(with_token(
        OPS,
        v1::StartRunRequest {
            workflow: workflow.into(),
            ..Default::default()
        },
    ))
    .await
    .map(|r| r.into_inner().run_id)
}

#[actix_rt::test]
async fn reviewers_and_workflows_of_a_changed_studio_apply_to_the_next_call() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    // The studio after the change: the brand manager leaves, a newcomer
    // arrives with a token, a workflow is added. (The orchestrator, which
    // runs the workflows, starts with it.)
    let after = studio(
        dir2.path(),
        &(reviewer("ops", OPS, "admin") + &reviewer("newbie", NEWBIE, "reviewer")),
        &["launch", "announce"],
    );
    let before = studio(
        dir.path(),
        &(reviewer("ops", OPS, "admin") + &reviewer("brand_manager", BRAND, "reviewer")),
        &["launch"],
    );
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let clock: SharedClock = Arc::new(SystemClock);
    let _orch = concierto_orchestrator::start(
        after.clone(),
        bus.clone(),
        store,
        clock,
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (admin, addr) = concierto_admin::start(before, bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    assert!(admin.takes_studio_changes());
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // As started: ops and the brand manager may read; the newcomer may not,
    // and there is no `announce` workflow.
    list_runs(&mut c, OPS).await.expect("ops reads runs");
    list_runs(&mut c, BRAND)
        .await
        .expect("the brand manager reads runs");
    let e = list_runs(&mut c, NEWBIE).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = start_run(&mut c, "announce").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(e.message().contains("the studio has: launch"), "{e}");

    // The studio changes, no restart.
    assert!(admin.studio_changed(&after));

    list_runs(&mut c, NEWBIE)
        .await
        .expect("the newcomer reads runs at once");
    let e = list_runs(&mut c, BRAND).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = c
        .list_gates(with_token(BRAND, v1::ListGatesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    list_runs(&mut c, OPS).await.expect("ops still reads runs");
    let run_id = start_run(&mut c, "announce")
        .await
        .expect("the new workflow starts");
    assert!(run_id.starts_with("manual:announce@"), "{run_id}");

    // The run reaches the orchestrator through the same admin service.
    concierto_testkit::eventually(Duration::from_secs(10), "the started run", || {
        let mut c = c.clone();
        let id = run_id.clone();
        async move {
            c.get_run(with_token(NEWBIE, v1::GetRunRequest { run_id: id }))
                .await
                .ok()
        }
    })
    .await;
    admin.stop().await.unwrap();
}
