//! Throughput of the autonomous loop, in one process: the orchestrator (durable
//! state in sled, flushed before every publish) and agent workers doing builtin
//! no-op work, on the embedded bus and on a real nats-server (started here).
//!
//! Reports workflow steps completed per second (all runs' `StartRun`s published
//! at once, 256 in flight, as many triggers firing together would), trigger-to-
//! first-dispatch latency p50/p99 (one run at a time: a `StartRun` published →
//! the `RunEvent` of its first dispatch), and the raw NATS request/reply round
//! trip on the same server as the floor. On stderr, where a step's time goes
//! under load: dispatched → done (bus and worker) and done → next dispatch
//! (orchestrator).
//!
//! `cargo bench -p concierto-e2e --bench autonomous_loop` (BENCH_RUNS, BENCH_SAMPLES).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concierto_bus::{
    Bus, BusExt, EmbeddedBus, NatsBus, NatsOptions, StreamLimits, ensure_standard_streams,
};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_proto::v1;
use tokio::sync::Notify;

const WORKFLOW: &str = "system-improvement";
const ROLES: &[&str] = &["performance-benchmarker", "workflow-optimizer"];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Watch {
    first_dispatch: HashMap<String, Instant>,
    succeeded: usize,
    /// Per run: when each event arrived, in order (for the hop breakdown).
    timeline: HashMap<String, Vec<(String, Instant)>>,
}

struct Figures {
    steps_per_sec: f64,
    runs: usize,
    p50: Duration,
    p99: Duration,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn start(id: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: id.to_string(),
        workflow: WORKFLOW.into(),
        trigger: "bench".into(),
        priority: v1::Priority::Normal as i32,
        params: [("builtin.noop".to_string(), "true".to_string())].into(),
        requested_by: "bench".into(),
        ..Default::default()
    }
}

async fn measure(bus: Arc<dyn Bus>, runs: usize, samples: usize) -> Figures {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/studio/concierto.yaml");
    let studio = Arc::new(config::load_with_env(&path, Vec::new()).expect("example studio"));
    ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
        .await
        .expect("streams");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir.path()).expect("store"));
    let clock: SharedClock = Arc::new(SystemClock);
    let mut opts = concierto_orchestrator::OrchestratorOptions::default();
    opts.limits.max_in_flight = 512;
    opts.limits.default_role_limit = 256;
    let orch = concierto_orchestrator::start(studio.clone(), bus.clone(), store, clock, opts)
        .await
        .expect("orchestrator");
    let mut workers = Vec::new();
    for role in ROLES {
        let def = studio.roles[*role].clone();
        let exec = concierto_agent::executor_for(&studio, role).expect("executor");
        for i in 0..2 {
            let o = concierto_agent::WorkerOptions {
                worker_id: format!("bench{i}"),
                max_in_flight: 64,
                ..Default::default()
            };
            workers.push(
                concierto_agent::start_worker(def.clone(), exec.clone(), bus.clone(), o)
                    .await
                    .expect("worker"),
            );
        }
    }

    let watch = Arc::new(Mutex::new(Watch::default()));
    let changed = Arc::new(Notify::new());
    let mut events = bus
        .subscribe_proto::<v1::RunEvent>(subjects::RUN_EVENTS)
        .await
        .expect("subscribe");
    bus.flush().await.expect("flush");
    {
        let (watch, changed) = (watch.clone(), changed.clone());
        tokio::spawn(async move {
            while let Some((ev, _)) = events.next().await {
                let mut w = watch.lock().unwrap_or_else(|p| p.into_inner());
                let kind = if ev.message.starts_with("dispatched") {
                    "dispatched"
                } else if ev.message.starts_with("done by") {
                    "done"
                } else {
                    ""
                };
                if !kind.is_empty() && ev.run_id.starts_with("tp-") {
                    w.timeline
                        .entry(ev.run_id.clone())
                        .or_default()
                        .push((kind.to_string(), Instant::now()));
                }
                if ev.message.starts_with("dispatched") {
                    w.first_dispatch
                        .entry(ev.run_id.clone())
                        .or_insert_with(Instant::now);
                } else if ev.step_id.is_empty() && ev.message == "run succeeded" {
                    w.succeeded += 1;
                }
                drop(w);
                changed.notify_waiters();
            }
        });
    }

    // Latency: one run at a time, trigger to first dispatch.
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = format!("lat-{i}");
        let t0 = Instant::now();
        bus.publish_durable_proto(subjects::RUN_START, &start(&id), &id)
            .await
            .expect("start");
        loop {
            let notified = changed.notified();
            if let Some(t) = watch
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first_dispatch
                .get(&id)
            {
                lat.push(t.duration_since(t0));
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
    // Wait for the latency runs to finish before timing throughput.
    loop {
        let notified = changed.notified();
        if watch.lock().unwrap_or_else(|p| p.into_inner()).succeeded >= samples {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
    lat.sort();

    // Throughput: all runs at once.
    let t0 = Instant::now();
    // Triggers fire concurrently (as many schedulers and event sources would),
    // 256 starts in flight at a time.
    let mut published = HashMap::new();
    let ids: Vec<String> = (0..runs).map(|i| format!("tp-{i}")).collect();
    for chunk in ids.chunks(256) {
        let sends = chunk.iter().map(|id| {
            let bus = bus.clone();
            async move {
                bus.publish_durable_proto(subjects::RUN_START, &start(id), id)
                    .await
                    .expect("start");
                (id.clone(), Instant::now())
            }
        });
        published.extend(futures::future::join_all(sends).await);
    }
    let publish_time = t0.elapsed();
    loop {
        let notified = changed.notified();
        if watch.lock().unwrap_or_else(|p| p.into_inner()).succeeded >= samples + runs {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
    let elapsed = t0.elapsed();
    let steps = runs * 2;
    {
        // Where a step's time goes: dispatched → done (bus + worker) and done → next dispatch (orchestrator).
        let w = watch.lock().unwrap_or_else(|p| p.into_inner());
        let (mut work, mut orch) = (Vec::new(), Vec::new());
        for tl in w.timeline.values() {
            for pair in tl.windows(2) {
                let gap = pair[1].1.duration_since(pair[0].1);
                match (pair[0].0.as_str(), pair[1].0.as_str()) {
                    ("dispatched", "done") => work.push(gap),
                    ("done", "dispatched") => orch.push(gap),
                    _ => {}
                }
            }
        }
        work.sort();
        orch.sort();
        let mut started: Vec<Duration> = published
            .iter()
            .filter_map(|(id, t)| w.first_dispatch.get(id).map(|d| d.duration_since(*t)))
            .collect();
        started.sort();
        eprintln!(
            "  publishing {runs} starts took {publish_time:?}; start→first dispatch under load p50 {:?} p99 {:?}",
            pct(&started, 0.5),
            pct(&started, 0.99)
        );
        eprintln!(
            "  hops: dispatched→done p50 {:?} p99 {:?}; done→next dispatch p50 {:?} p99 {:?}",
            pct(&work, 0.5),
            pct(&work, 0.99),
            pct(&orch, 0.5),
            pct(&orch, 0.99)
        );
    }
    for w in workers {
        let _ = w.stop().await;
    }
    let _ = orch.stop().await;
    Figures {
        steps_per_sec: steps as f64 / elapsed.as_secs_f64(),
        runs,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
    }
}

async fn raw_rtt(url: &str, n: usize) -> (Duration, Duration) {
    let client = async_nats::connect(url).await.expect("connect");
    let mut sub = client.subscribe("raw.rtt").await.expect("subscribe");
    let server = client.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = server.publish(r, m.payload).await;
            }
        }
    });
    client.flush().await.expect("flush");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .request("raw.rtt", "x".into())
            .await
            .expect("request");
        lat.push(t.elapsed());
    }
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

fn main() {
    let runs = env("BENCH_RUNS", 2000);
    let samples = env("BENCH_SAMPLES", 300);
    let server = concierto_testkit::NatsServer::start().expect("nats-server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let system = actix::System::with_tokio_rt(move || rt);
    let url = server.url();
    let (embedded, nats, raw) = system.block_on(async move {
        let embedded = measure(Arc::new(EmbeddedBus::default()), runs, samples).await;
        let bus: Arc<dyn Bus> = Arc::new(
            NatsBus::connect(&url, NatsOptions::default())
                .await
                .expect("connect"),
        );
        let nats = measure(bus, runs, samples).await;
        let raw = raw_rtt(&url, 2000).await;
        (embedded, nats, raw)
    });
    println!(
        "autonomous loop: {runs} runs of {WORKFLOW} (2 steps, builtin no-op), durable state in sled; {samples} trigger-to-dispatch samples"
    );
    println!(
        "{:<26} {:>12} {:>16} {:>16}",
        "path", "steps/s", "trigger→dispatch p50", "p99"
    );
    for (name, f) in [("embedded bus", &embedded), ("NATS (JetStream)", &nats)] {
        println!(
            "{:<26} {:>12.0} {:>16.2?} {:>16.2?}   ({} runs)",
            name, f.steps_per_sec, f.p50, f.p99, f.runs
        );
    }
    println!(
        "{:<26} {:>12} {:>16.2?} {:>16.2?}",
        "raw NATS request/reply", "-", raw.0, raw.1
    );
}
