//! Worker benchmark: tasks per second through one worker — fetch, execute
//! (`builtin.noop`), store the result, ack — on the embedded bus and on NATS,
//! for a few in-flight limits; and the builtin executor's own work per role.
//!
//! `cargo bench -p concierto-agent --bench worker` (BENCH_TASKS scales it).
//! Starts its own nats-server on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{
    Bus, BusExt, ConsumerSpec, EmbeddedBus, NatsBus, NatsOptions, StreamLimits,
    ensure_standard_streams,
};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{Task, TaskInput, TaskResult};

const ROLE: &str = "content-creator";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn role(name: &str) -> RoleDef {
    RoleDef {
        name: name.into(),
        description: "bench".into(),
        tools: Vec::new(),
        model: None,
        executor: Some("builtin".into()),
        color: None,
        prompt: "You write.".into(),
        file: "bench.md".into(),
        line: 2,
    }
}

fn task(i: usize, noop: bool) -> Task {
    let mut t = Task {
        task_id: format!("bench/{i}/1"),
        run_id: "bench".into(),
        step_id: format!("s{i}"),
        attempt: 1,
        role: ROLE.into(),
        instruction: "Write a social post about sustainable packaging.".into(),
        inputs: vec![TaskInput {
            name: "trigger".into(),
            content: "Sustainable packaging design is rising. Handmade typography is back. \
                      Warm colour palettes lead the season's packaging work."
                .into(),
            content_type: "text/plain".into(),
        }],
        ..Default::default()
    };
    if noop {
        t.params.insert("builtin.noop".into(), "true".into());
    }
    t
}

/// Tasks per second through one worker, from the first publish to the last
/// result read back.
async fn through_worker(bus: Arc<dyn Bus>, n: usize, in_flight: usize, noop: bool) -> f64 {
    ensure_standard_streams(&*bus, &StreamLimits::default())
        .await
        .expect("streams");
    let results = bus
        .consumer("RESULTS", &ConsumerSpec::new("bench-results", "result.>"))
        .await
        .expect("results consumer");
    let opts = WorkerOptions {
        worker_id: "bench".into(),
        max_in_flight: in_flight,
        fetch_wait: Duration::from_millis(100),
        ..Default::default()
    };
    let start = Instant::now();
    for i in 0..n {
        let t = task(i, noop);
        bus.publish_durable_proto(&format!("task.{ROLE}"), &t, &t.task_id)
            .await
            .expect("publish");
    }
    let worker = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        bus.clone(),
        opts,
    )
    .await
    .expect("start worker");
    let mut got = 0;
    while got < n {
        let batch = results
            .fetch_proto::<TaskResult>(256, Duration::from_secs(10))
            .await
            .expect("fetch results");
        assert!(!batch.is_empty(), "results stopped at {got} of {n}");
        got += batch.len();
        for (_, d) in batch {
            d.ack().await.expect("ack");
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    worker.stop().await.expect("stop");
    rate
}

fn main() {
    let n = env("BENCH_TASKS", 2000);
    // Workers are actix actors: an actix System on a multi-threaded runtime,
    // as the `concierto` binary runs them.
    let rt = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    });
    let server = concierto_testkit::NatsServer::start().expect("start nats-server");

    println!("worker throughput, {n} tasks (publish → execute → store result → ack), tasks/s:");
    println!(
        "{:<10} {:>9} {:>14} {:>14}",
        "bus", "in_flight", "noop", "builtin work"
    );
    for in_flight in [1, 8, 64] {
        let (e_noop, e_work) = rt.block_on(async {
            (
                through_worker(Arc::new(EmbeddedBus::default()), n, in_flight, true).await,
                through_worker(Arc::new(EmbeddedBus::default()), n, in_flight, false).await,
            )
        });
        println!(
            "{:<10} {:>9} {:>14.0} {:>14.0}",
            "embedded", in_flight, e_noop, e_work
        );
        let (n_noop, n_work) = rt.block_on(async {
            let mut out = Vec::new();
            for noop in [true, false] {
                let url = server.url();
                let bus = NatsBus::connect(
                    &url,
                    NatsOptions {
                        prefix: format!("bench{in_flight}{noop}."),
                        ..Default::default()
                    },
                )
                .await
                .expect("connect");
                out.push(through_worker(Arc::new(bus), n, in_flight, noop).await);
            }
            (out[0], out[1])
        });
        println!(
            "{:<10} {:>9} {:>14.0} {:>14.0}",
            "nats", in_flight, n_noop, n_work
        );
    }

    println!("\nbuiltin executor work per task (no bus), µs:");
    let ex = BuiltinExecutor::default();
    for name in [
        "content-creator",
        "brand-guardian",
        "analytics-reporter",
        "feedback-synthesizer",
        "trend-researcher",
    ] {
        let r = role(name);
        let t = task(0, false);
        let rounds = 2000;
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(ex.work(&r, &t));
        }
        println!(
            "{name:<22} {:>8.1}",
            start.elapsed().as_secs_f64() * 1e6 / rounds as f64
        );
    }
}
