//! The orchestrator's disk fills up under it and is freed again, with the real
//! binary as separate processes on a real nats-server: no accepted run is lost,
//! none is dead-lettered, `/readyz` says not ready while the store fails, and
//! every run finishes once the disk has room, without a restart.
//!
//! The data folder is a small tmpfs (`concierto_testkit::SmallDisk`): mounting
//! it needs root, as CI has; elsewhere the test says SKIPPED and returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concierto_bus::BusExt;
use concierto_core::subjects;
use concierto_e2e::{
    Sandbox, eventually, list_runs, readyz, runs_with_prefix, system_improvement_run,
};
use concierto_testkit::SmallDisk;

/// Every role of the system-improvement workflow (its steps and failure
/// path), served by one agent process.
const ROLES: &str = concierto_e2e::SYSTEM_IMPROVEMENT_ROLES;

async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_for_ten_seconds_loses_no_accepted_run() {
    let disk = match SmallDisk::mount(48 * 1024 * 1024) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    // A short ack_wait: the old orchestrator dead-lettered a run start within
    // ten deliveries of a failing store.
    let mut sb = Sandbox::new(&[("CONCIERTO__SERVER__BUS__ACK_WAIT", "3 seconds")]);
    let port = concierto_testkit::free_port().unwrap();
    let metrics_addr = format!("127.0.0.1:{port}");
    sb.spawn_with(
        "orchestrator",
        &["serve", "orchestrator"],
        &[("CONCIERTO__SERVER__METRICS_ADDR", metrics_addr.as_str())],
        Some(disk.path()),
    );
    sb.spawn("agents", &["agent", "--role", ROLES]);
    let client = sb.client().await;
    let dead = Arc::new(AtomicUsize::new(0));
    {
        let mut sub = client.subscribe("dlq.>").await.unwrap();
        let dead = dead.clone();
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                dead.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    client.flush().await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the orchestrator to be ready",
        || async { readyz(port).await.filter(|(s, _)| *s == 200) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the orchestrator to answer",
        || async { list_runs(&client).await },
    )
    .await;

    let n = 300;
    for i in 0..n {
        let id = format!("disk@{i:03}");
        let start = system_improvement_run(&id, 20);
        // Accepted: stored by the bus, as the admin API's StartRun does.
        client
            .publish_durable_proto(subjects::RUN_START, &start, &id)
            .await
            .unwrap();
        if i == 40 {
            disk.fill().unwrap();
        }
    }
    let pid = sb.proc("orchestrator").pid();

    // The store fails: not ready, and it says why.
    let (_, why) = eventually(
        Duration::from_secs(30),
        "/readyz to say not ready",
        || async { readyz(port).await.filter(|(s, _)| *s == 503) },
    )
    .await;
    assert!(why.contains("orchestrator.store"), "{why}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        readyz(port).await.map(|r| r.0),
        Some(503),
        "still not ready while the disk is full"
    );
    let errors = metric(port, "concierto_store_errors_total")
        .await
        .unwrap_or(0.0);
    assert!(errors > 0.0, "store errors counted: {errors}");

    disk.free().unwrap();
    let runs = eventually(Duration::from_secs(120), "every run to succeed", || async {
        let (runs, ok) = runs_with_prefix(&client, "disk@").await?;
        (ok == n).then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), n, "every accepted run is stored once");
    eventually(
        Duration::from_secs(30),
        "/readyz to be ready again",
        || async { readyz(port).await.filter(|(s, _)| *s == 200) },
    )
    .await;
    assert_eq!(dead.load(Ordering::SeqCst), 0, "nothing dead-lettered");
    assert_eq!(
        sb.proc("orchestrator").pid(),
        pid,
        "healed without a restart:\n{}",
        sb.procs_log("orchestrator")
    );
    let log = sb.procs_log("orchestrator");
    assert!(log.contains("store writable again"), "{log}");
}
