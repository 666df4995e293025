//! Tool-call benchmark: the orchestration overhead of one tool call —
//! `metrics_get` taken from the toolbox, its arguments read, a
//! `GetMetricsRequest` over a real nats-server to a responder, the answer
//! decoded and turned into the model's JSON — against the floor, a raw bus
//! request/reply carrying the same bytes. Prints p50/p99 of each.
//!
//! `cargo bench -p concierto-agent --bench tool_call` (BENCH_CALLS sets N,
//! 2,000 by default). Starts its own nats-server on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concierto_agent::tools::{ToolCx, concierto_toolbox};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, Outgoing, encode};
use concierto_core::config::load_with_env;
use concierto_core::subjects;
use concierto_proto::v1;
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tracker-like answer: three metrics with a day of hourly points.
fn answer() -> v1::GetMetricsResponse {
    v1::GetMetricsResponse {
        metrics: (0..3)
            .map(|m| v1::Metric {
                name: format!("metric_{m}"),
                group: "content_generation".into(),
                target: "10".into(),
                current: 9.0,
                on_target: false,
                tracker: "analytics-reporter".into(),
                series: (0..24)
                    .map(|i| v1::MetricPoint {
                        at: Some(prost_types::Timestamp {
                            seconds: 1_780_000_000 + i * 3600,
                            nanos: 0,
                        }),
                        value: i as f64,
                    })
                    .collect(),
                unit: String::new(),
            })
            .collect(),
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn show(what: &str, v: &[Duration]) {
    println!(
        "{what:<44} p50 {:>8.3} ms   p99 {:>8.3} ms",
        pct(v.to_vec(), 0.50).as_secs_f64() * 1e3,
        pct(v.to_vec(), 0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let n = env("BENCH_CALLS", 2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = concierto_testkit::NatsServer::start().expect("start nats-server");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("agents")).expect("agents dir");
    std::fs::write(
        dir.path().join("concierto.yaml"),
        "studio: { name: Bench }\n",
    )
    .expect("studio file");
    let studio = load_with_env(
        &dir.path().join("concierto.yaml"),
        Vec::<(String, String)>::new(),
    )
    .expect("studio");

    rt.block_on(async {
        let bus: Arc<dyn Bus> = Arc::new(
            NatsBus::connect(&server.url(), NatsOptions::default())
                .await
                .expect("connect"),
        );
        let reply = encode(&answer()).payload;
        let bytes = reply.len();
        // The responder: one tracker-like answer, the same for both measures.
        for subject in [subjects::TRACKER_GET_METRICS, "bench.raw"] {
            let mut sub = bus
                .queue_subscribe(subject, "tracker")
                .await
                .expect("subscribe");
            let (b, payload) = (bus.clone(), reply.clone());
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    if let Some(r) = m.reply.as_deref() {
                        let _ = b.respond(r, Outgoing::new(payload.clone())).await;
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let req = encode(&v1::GetMetricsRequest {
            names: vec!["metric_0".into(), "metric_1".into(), "metric_2".into()],
            window_hours: 24,
        })
        .payload;

        let tb = concierto_toolbox(&studio, bus.clone());
        let cx = ToolCx::new(&v1::Task::default());
        let args = json!({"names": ["metric_0", "metric_1", "metric_2"], "window_hours": 24});
        let tool = tb.get("metrics_get").expect("metrics_get").clone();
        // Warm up both paths.
        for _ in 0..100 {
            tool.call(args.clone(), &cx).await.expect("tool call");
            bus.request("bench.raw", Outgoing::new(req.clone()), Duration::from_secs(5))
                .await
                .expect("raw request");
        }
        let mut raw = Vec::with_capacity(n);
        let mut via_tool = Vec::with_capacity(n);
        let mut answer_bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let r = bus
                .request("bench.raw", Outgoing::new(req.clone()), Duration::from_secs(5))
                .await
                .expect("raw request");
            raw.push(t.elapsed());
            assert_eq!(r.payload.len(), bytes);

            let t = Instant::now();
            let tool = tb.get("metrics_get").expect("metrics_get");
            let out = tool.call(args.clone(), &cx).await.expect("tool call");
            via_tool.push(t.elapsed());
            answer_bytes = out.len();
        }
        println!(
            "tool call overhead, {n} calls over a real nats-server (request {} B, reply {bytes} B, tool answer {answer_bytes} B):",
            req.len()
        );
        show("raw bus request/reply (floor)", &raw);
        show("metrics_get through the Toolbox", &via_tool);
        let _ = bus.publish_proto("bench.done", &v1::GetMetricsRequest::default()).await;
    });
}
