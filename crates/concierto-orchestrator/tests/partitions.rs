//! Partitioned orchestrators over a real nats-server: the state written
//! through to the bus lets an orchestrator with its own, empty data folder
//! finish the runs another started; with four partitions two orchestrators
//! share the partitions, every run finishes exactly once, the legacy
//! `run.start` is routed, and the plain query subjects list and find runs
//! across partitions.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use concierto_bus::lease::LeaseOptions;
use concierto_bus::{Bus, BusExt, ConsumerSpec, NatsBus, NatsOptions, Outgoing, decode, encode};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::service::ServiceHandle;
use concierto_core::subjects;
use concierto_orchestrator::{OrchestratorOptions, PartitionOptions, start_partitions};
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};

const PATIENCE: Duration = Duration::from_secs(60);

async fn connect(nats: &NatsServer) -> Arc<dyn Bus> {
    Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connects"),
    )
}

fn opts() -> OrchestratorOptions {
    OrchestratorOptions {
        tick: Duration::from_millis(50),
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    }
}

/// An orchestrator process (leases of 1 s with one partition, so that the
/// test does not wait; the default 3 s with several: one test thread runs
/// both processes and the workers, and a lease must not lapse under load).
async fn orchestrator(
    studio: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
    partitions: u32,
    holder: &str,
    dir: &std::path::Path,
) -> ServiceHandle {
    let mut popts = PartitionOptions::new(partitions, holder, dir);
    if partitions == 1 {
        popts.lease = LeaseOptions {
            ttl: Duration::from_secs(1),
        };
    }
    let clock: SharedClock = Arc::new(concierto_core::clock::SystemClock);
    start_partitions(studio.clone(), bus.clone(), clock, opts(), popts)
        .await
        .expect("the orchestrator starts")
}

/// A worker for every role: answers each task where the task says (its
/// `result_subject`, else `result.<role>`).
fn worker(bus: Arc<dyn Bus>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut spec = ConsumerSpec::new("test-worker", "task.>");
        spec.max_ack_pending = 1000;
        let consumer = bus.consumer("TASKS", &spec).await.expect("consumer");
        loop {
            let got = match consumer
                .fetch_proto::<v1::Task>(64, Duration::from_millis(200))
                .await
            {
                Ok(g) => g,
                Err(_) => continue,
            };
            for (task, d) in got {
                let to = if task.result_subject.is_empty() {
                    subjects::result(&task.role)
                } else {
                    task.result_subject.clone()
                };
                let r = ok(&task, &format!("done {}", task.step_id));
                if bus
                    .publish_durable(&to, encode(&r).msg_id(task.task_id.clone()))
                    .await
                    .is_ok()
                {
                    let _ = d.ack().await;
                }
            }
        }
    })
}

/// Counts run-level `Succeeded` events per run.
fn succeeded_counter(
    mut sub: concierto_bus::Subscription,
) -> (
    Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Ok(ev) = decode::<v1::RunEvent>(&m)
                && ev.step_id.is_empty()
                && ev.run_state == v1::RunState::Succeeded as i32
            {
                *s.lock().unwrap().entry(ev.run_id).or_default() += 1;
            }
        }
    });
    (seen, task)
}

async fn ask<Q: concierto_bus::ProtoMessage, R: concierto_bus::ProtoMessage>(
    bus: &Arc<dyn Bus>,
    subject: &str,
    q: &Q,
) -> Result<R, String> {
    let out: Outgoing = encode(q);
    let m = bus
        .request(subject, out, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(e) = m.headers.get(subjects::ERROR_HEADER) {
        return Err(e.to_string());
    }
    decode::<R>(&m).map_err(|e| e.to_string())
}

async fn get_run(bus: &Arc<dyn Bus>, id: &str) -> Result<v1::Run, String> {
    ask::<_, v1::GetRunResponse>(
        bus,
        subjects::ORCHESTRATOR_GET_RUN,
        &v1::GetRunRequest { run_id: id.into() },
    )
    .await
    .map(|r| r.run.unwrap_or_default())
}

#[actix_rt::test]
async fn an_orchestrator_with_an_empty_folder_finishes_the_runs_another_started() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus = connect(&nats).await;
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = orchestrator(&st, &bus, 1, "a", &a_dir).await;

    let ids: Vec<String> = (0..5)
        .map(|i| format!("plain@2026-11-24T09:00:0{i}Z"))
        .collect();
    for id in &ids {
        bus.publish_durable_proto(subjects::RUN_START, &start(id, "plain"), id)
            .await
            .unwrap();
    }
    for id in &ids {
        let run = eventually(PATIENCE, "the run is started", || {
            let bus = bus.clone();
            let id = id.clone();
            async move { get_run(&bus, &id).await.ok() }
        })
        .await;
        assert_eq!(run.state, v1::RunState::Running as i32);
    }
    // A stops (no worker ever ran): B, with its own empty folder, takes over.
    a.stop().await.unwrap();
    assert!(!b_dir.exists(), "B starts with nothing of its own");
    let (seen, counter) = succeeded_counter(bus.subscribe("run.event.>").await.unwrap());
    let b = orchestrator(&st, &bus, 1, "b", &b_dir).await;
    let w = worker(bus.clone());
    for id in &ids {
        let run = eventually(PATIENCE, "the run finishes under B", || {
            let bus = bus.clone();
            let id = id.clone();
            async move {
                get_run(&bus, &id)
                    .await
                    .ok()
                    .filter(|r| r.state == v1::RunState::Succeeded as i32)
            }
        })
        .await;
        assert_eq!(run.steps.len(), 3);
        assert!(run.steps.iter().all(|s| s.output.starts_with("done ")));
    }
    eventually(PATIENCE, "every run succeeded once", || {
        let seen = seen.clone();
        let ids = ids.clone();
        async move {
            ids.iter()
                .all(|i| seen.lock().unwrap().get(i) == Some(&1))
                .then_some(())
        }
    })
    .await;
    w.abort();
    counter.abort();
    b.stop().await.unwrap();
}

#[actix_rt::test]
async fn two_orchestrators_share_four_partitions_and_every_run_finishes_once() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus = connect(&nats).await;
    let a_bus = connect(&nats).await;
    let b_bus = connect(&nats).await;
    let a = orchestrator(&st, &a_bus, 4, "a", &dir.path().join("a")).await;
    let b = orchestrator(&st, &b_bus, 4, "b", &dir.path().join("b")).await;
    let leases = bus.leases().await.unwrap();
    // Both hold partitions: two each once the share is settled.
    eventually(PATIENCE, "the partitions are shared", || {
        let leases = leases.clone();
        async move {
            let mut holders = BTreeMap::new();
            for k in 0..4 {
                let (v, _) = leases.get(&format!("orchestrator-p{k}")).await.ok()??;
                *holders.entry(String::from_utf8(v).ok()?).or_insert(0) += 1;
            }
            (holders.get("a") == Some(&2) && holders.get("b") == Some(&2)).then_some(())
        }
    })
    .await;

    let (seen, counter) = succeeded_counter(bus.subscribe("run.event.>").await.unwrap());
    let w = worker(bus.clone());
    let ids: Vec<String> = (0..100).map(|i| format!("nightly@run-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Half on their partition's subject, half on the legacy one (routed).
        let subject = if i % 2 == 0 {
            subjects::run_start_for(id, 4)
        } else {
            subjects::RUN_START.to_string()
        };
        bus.publish_durable_proto(&subject, &start(id, "plain"), id)
            .await
            .unwrap();
    }
    eventually(PATIENCE, "all 100 runs succeeded", || {
        let seen = seen.clone();
        async move { (seen.lock().unwrap().len() == 100).then_some(()) }
    })
    .await;
    // Nothing more comes: each succeeded exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let seen = seen.lock().unwrap();
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ids);
    }

    // Listed through the plain subject, 7 a page: all 100, newest first, once.
    let mut listed = Vec::new();
    let mut token = String::new();
    for _ in 0..40 {
        let q = v1::ListRunsRequest {
            page_size: 7,
            page_token: token.clone(),
            ..Default::default()
        };
        let page: v1::ListRunsResponse = ask(&bus, subjects::ORCHESTRATOR_LIST_RUNS, &q)
            .await
            .unwrap();
        assert!(page.runs.len() <= 7);
        listed.extend(page.runs);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "the listing ends");
    let unique: HashSet<&str> = listed.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(listed.len(), 100, "no run twice");
    assert_eq!(unique.len(), 100);
    let keys: Vec<(i64, String)> = listed
        .iter()
        .map(|r| {
            let t = r.created_at.unwrap_or_default();
            (
                t.seconds * 1000 + i64::from(t.nanos) / 1_000_000,
                r.run_id.clone(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // By id and by a unique prefix, whichever partition holds it.
    let run = get_run(&bus, "nightly@run-042").await.unwrap();
    assert_eq!(run.state, v1::RunState::Succeeded as i32);
    let run = get_run(&bus, "nightly@run-07").await;
    assert!(
        run.unwrap_err().starts_with("invalid_argument:"),
        "ten runs start so"
    );
    let run = get_run(&bus, "nightly@run-099").await.unwrap();
    assert_eq!(run.run_id, "nightly@run-099");
    let run = get_run(&bus, "nightly@run-09").await;
    assert!(run.is_err());
    let e = get_run(&bus, "nope").await.unwrap_err();
    assert!(e.starts_with("not_found:"), "{e}");

    // Spend sums the partitions; a cancel of an ended run goes to its partition.
    let spend: v1::GetSpendResponse = ask(
        &bus,
        subjects::ORCHESTRATOR_SPEND,
        &v1::GetSpendRequest { days: 1 },
    )
    .await
    .unwrap();
    assert!(spend.days.len() <= 1);
    let e = ask::<_, v1::CancelRunResponse>(
        &bus,
        subjects::ORCHESTRATOR_CANCEL_RUN,
        &v1::CancelRunRequest {
            run_id: "nightly@run-042".into(),
            reason: "late".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(e.starts_with("failed_precondition:"), "{e}");

    w.abort();
    counter.abort();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
