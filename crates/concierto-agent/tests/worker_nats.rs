//! The worker over a real nats-server (JetStream), each replica on its own
//! connection as in separate processes: one result per task; replicas share the
//! queue; a replica that dies holding a task hands it on after `ack_wait`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierto_agent::{BuiltinExecutor, start_worker};
use concierto_bus::{Bus, NatsBus, NatsOptions, StreamLimits, ensure_standard_streams};
use concierto_proto::v1::TaskStatus;
use concierto_testkit::NatsServer;

use common::{Hang, Probe, ROLE, Results, assert_queue_empty, opts, publish, role, task};

const WAIT: Duration = Duration::from_secs(15);

async fn connect(server_url: &str, name: &str) -> Arc<dyn Bus> {
    let o = NatsOptions {
        client_name: name.to_string(),
        ..Default::default()
    };
    Arc::new(
        NatsBus::connect(server_url, o)
            .await
            .expect("connect to the test nats-server"),
    )
}

async fn setup(server: &NatsServer) -> (Arc<dyn Bus>, Results) {
    let bus = connect(&server.url(), "test").await;
    ensure_standard_streams(&*bus, &StreamLimits::default())
        .await
        .expect("standard streams");
    let results = Results::open(&bus).await;
    (bus, results)
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn worker_takes_a_task_publishes_exactly_one_result_then_acks_over_nats() {
    let server = NatsServer::start().expect("start nats-server");
    let (bus, results) = setup(&server).await;
    publish(&bus, &task("run-1/draft/1", &[])).await;
    let o = opts("w1");
    let worker_bus = connect(&server.url(), "worker").await;
    let worker = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        worker_bus,
        o.clone(),
    )
    .await
    .expect("start");
    let got = results.take(1, WAIT).await;
    assert_eq!(got[0].0.task_id, "run-1/draft/1");
    assert_eq!(got[0].0.status(), TaskStatus::Succeeded);
    assert_eq!(got[0].1.msg_id(), Some("run-1/draft/1/result"));
    results.none_within(Duration::from_millis(500)).await;
    worker.stop().await.expect("stop");
    assert_queue_empty(&bus, &o).await;
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn two_replicas_share_twenty_tasks_with_none_done_twice_over_nats() {
    let server = NatsServer::start().expect("start nats-server");
    let (bus, results) = setup(&server).await;
    let (p1, p2) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let w1 = start_worker(
        role(ROLE),
        p1.clone(),
        connect(&server.url(), "a").await,
        opts("a"),
    )
    .await
    .expect("start a");
    let w2 = start_worker(
        role(ROLE),
        p2.clone(),
        connect(&server.url(), "b").await,
        opts("b"),
    )
    .await
    .expect("start b");
    for i in 0..20 {
        publish(&bus, &task(&format!("t{i}"), &[("builtin.sleep_ms", "50")])).await;
    }
    let got = results.take(20, WAIT).await;
    let ids: HashSet<_> = got.iter().map(|(r, _)| r.task_id.clone()).collect();
    assert_eq!(ids.len(), 20, "one result per task");
    results.none_within(Duration::from_millis(500)).await;
    w1.stop().await.expect("stop a");
    w2.stop().await.expect("stop b");
    let (s1, s2) = (p1.started(), p2.started());
    assert_eq!(s1.len() + s2.len(), 20, "none done twice: {s1:?} {s2:?}");
    let all: HashSet<_> = s1.iter().chain(&s2).collect();
    assert_eq!(all.len(), 20);
    assert!(
        !s1.is_empty() && !s2.is_empty(),
        "both replicas worked: {} / {}",
        s1.len(),
        s2.len()
    );
}

/// The doomed replica runs in its own actix System on its own thread with its
/// own connection; stopping that System is the process dying: its runtime
/// goes, its tasks stop, its connection closes, nothing it holds is
/// acknowledged or handed back.
#[test]
fn a_worker_that_dies_holding_a_task_hands_it_to_the_other_replica_after_ack_wait() {
    let server = NatsServer::start().expect("start nats-server");
    let url = server.url();
    let main = common::MultiThreaded::new();
    let o = opts("x");
    assert_eq!(o.ack_wait, Duration::from_secs(1));

    let (bus, results) = main.block_on(setup(&server));
    main.block_on(publish(&bus, &task("t1", &[])));

    let hang = Arc::new(Hang::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let doomed = {
        let (hang, url, mut o) = (hang.clone(), url.clone(), o.clone());
        o.worker_id = "doomed".into();
        std::thread::spawn(move || {
            let system = actix::System::new();
            let handle = system.block_on(async move {
                let own = connect(&url, "doomed").await;
                start_worker(role(ROLE), hang, own, o)
                    .await
                    .expect("start doomed")
            });
            tx.send(actix::System::current())
                .expect("hand over the doomed System");
            system.run().expect("the doomed System runs");
            // The System is gone with its runtime: this stop reaches nothing.
            drop(handle);
        })
    };
    let doomed_system = rx.recv().expect("the doomed System");
    let probe = Arc::new(Probe::default());
    let survivor = main.block_on(async {
        tokio::time::timeout(WAIT, hang.started.notified())
            .await
            .expect("the doomed replica took the task");
        // The survivor is up and fetching while the task is held elsewhere.
        let mut o = o.clone();
        o.worker_id = "survivor".into();
        start_worker(
            role(ROLE),
            probe.clone(),
            connect(&url, "survivor").await,
            o,
        )
        .await
        .expect("start survivor")
    });

    let died = Instant::now();
    doomed_system.stop();
    doomed.join().expect("the doomed thread ends");

    main.block_on(async {
        let got = results.take(1, WAIT).await;
        let (r, _) = &got[0];
        assert_eq!(r.task_id, "t1");
        assert_eq!(r.worker_id, "content-creator.survivor");
        assert_eq!(r.status(), TaskStatus::Succeeded);
        assert!(
            died.elapsed() >= Duration::from_millis(500),
            "redelivered only once ack_wait ran out ({:?} after the death)",
            died.elapsed()
        );
        results.none_within(Duration::from_millis(500)).await;
        survivor.stop().await.expect("stop");
        assert_eq!(probe.started(), ["t1"]);
        assert_queue_empty(&bus, &o).await;
    });
}
