//! Capacity from live workers over a real nats-server: heartbeats on
//! `agent.heartbeat.<role>.<worker>` raise a role's in-flight limit above the
//! studio's static value at once, and a worker that falls silent lapses on
//! the orchestrator's clock, releasing its share.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_orchestrator::{Limits, OrchestratorOptions};
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};

const PATIENCE: Duration = Duration::from_secs(20);
const ROLE: &str = "trend-researcher";

async fn beat(bus: &Arc<dyn Bus>, worker: &str, capacity: u32) {
    let hb = v1::AgentHeartbeat {
        role: ROLE.into(),
        worker_id: worker.into(),
        capacity,
        state: v1::AgentState::Ready as i32,
        ..Default::default()
    };
    bus.publish_proto(&subjects::heartbeat(ROLE, worker), &hb)
        .await
        .unwrap();
    bus.flush().await.unwrap();
}

/// Waits until exactly `n` tasks were published so far.
async fn tasks_reach(seen: &Arc<Mutex<Vec<v1::Task>>>, n: usize) -> Vec<v1::Task> {
    eventually(PATIENCE, &format!("{n} tasks published"), || {
        let seen = seen.clone();
        async move {
            let got = seen.lock().unwrap().clone();
            assert!(got.len() <= n, "more than {n} tasks: {}", got.len());
            (got.len() == n).then_some(got)
        }
    })
    .await
}

#[actix_rt::test]
async fn heartbeats_raise_a_roles_limit_and_a_silent_worker_releases_its_share() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    let manual = Arc::new(ManualClock::new(t(0)));
    let clock: SharedClock = manual.clone();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    // The studio sets nothing for the role: the static limit is the default.
    let limits = Limits {
        default_role_limit: 4,
        ..Limits::for_studio(&st)
    };
    assert_eq!(limits.role_limits.get(ROLE), None);
    let orch = concierto_orchestrator::start(
        st,
        bus.clone(),
        store,
        clock,
        OrchestratorOptions {
            limits,
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = bus
        .subscribe_proto::<v1::Task>(&subjects::task(ROLE))
        .await
        .unwrap();
    bus.flush().await.unwrap();
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some((task, _)) = tasks.next().await {
                seen.lock().unwrap().push(task);
            }
        });
    }

    for i in 0..12 {
        let id = format!("cap-{i:02}");
        bus.publish_durable_proto(subjects::RUN_START, &start(&id, "guarded"), &id)
            .await
            .unwrap();
    }
    // No worker heard: the static limit.
    tasks_reach(&seen, 4).await;

    // Two workers of five slots: ten at once.
    beat(&bus, "w1", 5).await;
    beat(&bus, "w2", 5).await;
    let out = tasks_reach(&seen, 10).await;

    // w1 keeps beating (every 20 s); w2 falls silent and lapses after 30 s.
    manual.set(t(20));
    beat(&bus, "w1", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    manual.set(t(31));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Ten in flight over a limit of five now: six results leave four out,
    // so one more is dispatched, not six.
    for task in &out[..6] {
        bus.publish_durable_proto(&subjects::result(ROLE), &ok(task, "done"), &task.task_id)
            .await
            .unwrap();
    }
    tasks_reach(&seen, 11).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().len(), 11, "w2's share was released");
    // One more result: four out again, the last run goes.
    let task = &out[6];
    bus.publish_durable_proto(&subjects::result(ROLE), &ok(task, "done"), &task.task_id)
        .await
        .unwrap();
    tasks_reach(&seen, 12).await;

    orch.stop().await.unwrap();
}
