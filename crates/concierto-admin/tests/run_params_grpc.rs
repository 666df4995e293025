//! `StartRun` params over gRPC: bounded where they enter (count, name and
//! value size: `INVALID_ARGUMENT`), handed on in the `run.start` message, with
//! `fire_time` added like a trigger's fire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::config;
use concierto_core::subjects;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::NatsServer;
use tonic::{Code, Request};

const OPS: &str = "ops-token-params-1";

fn with_token<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {OPS}").parse().expect("ascii"),
    );
    r
}

#[tokio::test]
async fn params_are_bounded_and_reach_the_run_start() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        "agents:\n  paths: [\"{}\"]\nreviewers:\n  ops: {{ name: Ops, token_sha256: \"{}\", roles: [admin] }}\nworkflows:\n  launch:\n    steps:\n      - id: copy\n        role: content-creator\n        task: Write.\n",
        agents.display(),
        token_sha256(OPS)
    );
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let st = Arc::new(config::load_with_env(&path, Vec::new()).expect("studio loads"));
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let mut starts = bus
        .subscribe_proto::<v1::StartRun>(subjects::RUN_START)
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let (_admin, addr) = concierto_admin::start(st, bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let start = |params: HashMap<String, String>| v1::StartRunRequest {
        workflow: "launch".into(),
        params,
        ..Default::default()
    };

    let many: HashMap<String, String> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    let e = c.start_run(with_token(start(many))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("65 params; a run takes at most 64"),
        "{e}"
    );

    let big = HashMap::from([("brief".to_string(), "x".repeat(4097))]);
    let e = c.start_run(with_token(start(big))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("param \"brief\" has 4097 bytes"),
        "{e}"
    );

    let long_name = HashMap::from([("n".repeat(129), "v".to_string())]);
    let e = c.start_run(with_token(start(long_name))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    let ok = HashMap::from([("brief".to_string(), "Refill week".to_string())]);
    let run_id = c
        .start_run(with_token(start(ok)))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let (got, _) = tokio::time::timeout(Duration::from_secs(5), starts.next())
        .await
        .expect("a run start in time")
        .expect("the subscription is open");
    assert_eq!(got.run_id, run_id);
    assert_eq!(got.params["brief"], "Refill week");
    let fire = chrono::DateTime::parse_from_rfc3339(&got.params["fire_time"]).expect("rfc 3339");
    assert!(
        (chrono::Utc::now() - fire.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 60
    );
}
