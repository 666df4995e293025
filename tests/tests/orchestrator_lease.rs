//! Two orchestrators on one studio, as the real binary on a real nats-server
//! sharing one data folder (as a Kubernetes StatefulSet reattaches a volume):
//! one is active and the other a standby that says so on `/readyz`; when the
//! active one is SIGKILLed amid work the standby takes the lease over, opens
//! the store and finishes every run. None is lost or stuck.

use std::time::{Duration, Instant};

use concierto_bus::BusExt;
use concierto_core::subjects;
use concierto_e2e::{
    Sandbox, eventually, list_runs, readyz, runs_with_prefix, system_improvement_run,
};

/// Every role of the system-improvement workflow (its steps and failure
/// path), served by one agent process.
const ROLES: &str = concierto_e2e::SYSTEM_IMPROVEMENT_ROLES;

/// The lease's ttl is 6 s; the standby polls every second, then opens the
/// store (sled waits up to 3 s for a dying holder's lock) and recovers.
const TAKEOVER_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_orchestrator_is_active_and_the_standby_takes_over_when_it_is_killed() {
    let mut sb = Sandbox::new(&[("CONCIERTO__SERVER__BUS__ACK_WAIT", "3 seconds")]);
    let ports = [
        concierto_testkit::free_port().unwrap(),
        concierto_testkit::free_port().unwrap(),
    ];
    let names = ["orch-a", "orch-b"];
    for (name, port) in names.iter().zip(ports) {
        let addr = format!("127.0.0.1:{port}");
        sb.spawn_with(
            name,
            &["serve", "orchestrator"],
            &[("CONCIERTO__SERVER__METRICS_ADDR", addr.as_str())],
            None,
        );
    }
    sb.spawn("agents", &["agent", "--role", ROLES]);
    let client = sb.client().await;

    // One ready, one standby saying why.
    let (active, standby) = eventually(
        Duration::from_secs(30),
        "one active orchestrator and one standby",
        || async {
            let a = readyz(ports[0]).await?;
            let b = readyz(ports[1]).await?;
            match (a.0, b.0) {
                (200, 503) if b.1.contains("standby") => Some((0, 1)),
                (503, 200) if a.1.contains("standby") => Some((1, 0)),
                _ => None,
            }
        },
    )
    .await;
    // Still so a while later: the standby never starts on its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(readyz(ports[standby]).await.map(|r| r.0), Some(503));
    assert_eq!(readyz(ports[active]).await.map(|r| r.0), Some(200));
    eventually(
        Duration::from_secs(30),
        "the orchestrator to answer",
        || async { list_runs(&client).await },
    )
    .await;

    let n = 150;
    for i in 0..n {
        let id = format!("lease@{i:03}");
        let start = system_improvement_run(&id, 30);
        client
            .publish_durable_proto(subjects::RUN_START, &start, &id)
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(60), "some runs to finish", || async {
        let (_, done) = runs_with_prefix(&client, "lease@").await?;
        (done >= 15).then_some(())
    })
    .await;

    // SIGKILL the active one mid-work: the standby takes over.
    sb.proc(names[active]).kill();
    let killed = Instant::now();
    eventually(
        TAKEOVER_BOUND * 2,
        "the standby to become active",
        || async { readyz(ports[standby]).await.filter(|(s, _)| *s == 200) },
    )
    .await;
    let took = killed.elapsed();
    eprintln!("the standby was active {took:?} after the SIGKILL");
    assert!(
        took <= TAKEOVER_BOUND,
        "takeover took {took:?}:\n{}",
        sb.logs()
    );

    let runs = eventually(Duration::from_secs(120), "every run to succeed", || async {
        let (runs, ok) = runs_with_prefix(&client, "lease@").await?;
        (ok == n).then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), n, "every run stored once");
    let log = sb.procs_log(names[standby]);
    assert!(log.contains("standby"), "{log}");
    assert!(log.contains("lease taken"), "{log}");
}
