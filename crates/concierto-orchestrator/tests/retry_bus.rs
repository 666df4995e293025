//! Retry, short ids and the run-failure alert over a real nats-server: the
//! orchestrator service answers `orchestrator.runs.retry` (requester in the
//! `Concierto-Identity` header), `orchestrator.runs.get`/`cancel` with short
//! ids, and publishes `RunFailed` durably on `event.run.failed`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, Outgoing, decode, encode};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};

const PATIENCE: Duration = Duration::from_secs(20);

/// A request whose answer is either `R` or the error header's text.
async fn ask<Q: concierto_bus::ProtoMessage, R: concierto_bus::ProtoMessage>(
    bus: &Arc<dyn Bus>,
    subject: &str,
    q: &Q,
    who: Option<&str>,
) -> Result<R, String> {
    let mut out: Outgoing = encode(q);
    if let Some(who) = who {
        out = out.header(subjects::IDENTITY_HEADER, who);
    }
    let m = bus
        .request(subject, out, Duration::from_secs(5))
        .await
        .expect("an answer");
    if let Some(e) = m.headers.get(subjects::ERROR_HEADER) {
        return Err(e.to_string());
    }
    Ok(decode::<R>(&m).expect("decodes"))
}

#[actix_rt::test]
async fn runs_are_retried_cancelled_and_read_by_short_id_and_failures_are_announced() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    let clock: SharedClock = Arc::new(ManualClock::new(t(0)));
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let orch = concierto_orchestrator::start(
        st,
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
    let mut alerts = bus.subscribe(subjects::RUN_FAILED).await.unwrap();

    // A run of a workflow nobody knows fails with nothing to handle it: alerted.
    bus.publish_durable_proto(
        subjects::RUN_START,
        &start("unknown-1", "nope"),
        "unknown-1",
    )
    .await
    .unwrap();
    let alert = tokio::time::timeout(PATIENCE, alerts.next())
        .await
        .expect("an alert")
        .expect("a message");
    assert_eq!(alert.msg_id(), Some("unknown-1"), "message id = run id");
    let failed: v1::RunFailed = decode(&alert).unwrap();
    assert_eq!(failed.run_id, "unknown-1");
    assert!(
        failed.error.contains("unknown workflow"),
        "{}",
        failed.error
    );

    // A plain run (no workers: it waits at its first step), found by a prefix.
    bus.publish_durable_proto(
        subjects::RUN_START,
        &start("plain@2026-11-24T09:00:00Z", "plain"),
        "plain@2026-11-24T09:00:00Z",
    )
    .await
    .unwrap();
    let got: v1::GetRunResponse = eventually(PATIENCE, "the run is stored", || {
        let bus = bus.clone();
        async move {
            ask::<_, v1::GetRunResponse>(
                &bus,
                subjects::ORCHESTRATOR_GET_RUN,
                &v1::GetRunRequest {
                    run_id: "plain@".into(),
                },
                None,
            )
            .await
            .ok()
        }
    })
    .await;
    let run = got.run.unwrap();
    assert_eq!(run.run_id, "plain@2026-11-24T09:00:00Z");

    // Still going: a retry is refused with a precondition error.
    let err = ask::<_, v1::RetryRunResponse>(
        &bus,
        subjects::ORCHESTRATOR_RETRY_RUN,
        &v1::RetryRunRequest {
            run_id: "plain@".into(),
            from_start: false,
        },
        Some("ops"),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("failed_precondition:"), "{err}");

    // Cancelled by its short id, then retried by it.
    let cancelled: v1::CancelRunResponse = ask(
        &bus,
        subjects::ORCHESTRATOR_CANCEL_RUN,
        &v1::CancelRunRequest {
            run_id: "plain".into(),
            reason: "wrong brief".into(),
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(cancelled.run.unwrap().state, v1::RunState::Cancelled as i32);
    let retried: v1::RetryRunResponse = ask(
        &bus,
        subjects::ORCHESTRATOR_RETRY_RUN,
        &v1::RetryRunRequest {
            run_id: "plain".into(),
            from_start: false,
        },
        Some("ops"),
    )
    .await
    .unwrap();
    assert_eq!(retried.run_id, "plain@2026-11-24T09:00:00Z~retry1");
    let got: v1::GetRunResponse = ask(
        &bus,
        subjects::ORCHESTRATOR_GET_RUN,
        &v1::GetRunRequest {
            run_id: "plain@2026-11-24T09:00:00Z~r".into(),
        },
        None,
    )
    .await
    .unwrap();
    let run = got.run.unwrap();
    assert_eq!(run.retry_of, "plain@2026-11-24T09:00:00Z");
    assert_eq!(run.requested_by, "ops");
    assert_eq!(run.state, v1::RunState::Running as i32);

    // Two runs share the prefix now: ambiguous, with the candidates named.
    let err = ask::<_, v1::GetRunResponse>(
        &bus,
        subjects::ORCHESTRATOR_GET_RUN,
        &v1::GetRunRequest {
            run_id: "plain".into(),
        },
        None,
    )
    .await;
    // "plain" is not a run id itself, and two ids start with it.
    let err = err.unwrap_err();
    assert!(
        err.starts_with("invalid_argument:") && err.contains("~retry1"),
        "{err}"
    );
    // A run without steps (unknown workflow) cannot be retried.
    let err = ask::<_, v1::RetryRunResponse>(
        &bus,
        subjects::ORCHESTRATOR_RETRY_RUN,
        &v1::RetryRunRequest {
            run_id: "unknown-1".into(),
            from_start: true,
        },
        Some("ops"),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("failed_precondition:"), "{err}");

    orch.stop().await.unwrap();
}
