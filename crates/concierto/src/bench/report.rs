//! What `concierto bench` prints: a table for people, or JSON (`--json`)
//! with every figure under a stable name.

use std::fmt::Write as _;
use std::time::Duration;

use super::floors::{Floors, rate};
use super::{BenchArgs, Latency, STEPS, Throughput};

/// Where the bench ran.
pub(super) struct Setup {
    pub(super) url: String,
    pub(super) started_here: bool,
    pub(super) clk_tck: u64,
    pub(super) clk_source: &'static str,
}

/// The value at quantile `q` (nearest rank) of `v`; 0 when empty.
pub(super) fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

pub(super) fn to_json(
    args: &BenchArgs,
    setup: &Setup,
    floors: &Floors,
    sizes: &[Throughput],
    lat: &Latency,
) -> serde_json::Value {
    let cpu = |t: &Throughput, kind: &str| {
        round(t.cpu_ms_per_workflow.get(kind).copied().unwrap_or(0.0), 4)
    };
    serde_json::json!({
        "nats": { "url": setup.url, "started_here": setup.started_here },
        "setup": {
            "workflow_steps": STEPS.len(),
            "executor": "builtin (builtin.noop)",
            "agent_processes": args.agent_processes.max(1),
            "agent_replicas": args.agent_replicas.max(1),
            "agent_in_flight": args.agent_in_flight.max(1),
            "start_in_flight": args.in_flight.max(1),
            "rounds": args.rounds.max(1),
            "warm_up_workflows": args.warm_up,
            "store": "a fresh data folder and fresh service processes per size; one nats-server throughout",
            "clk_tck": setup.clk_tck,
            "clk_tck_source": setup.clk_source,
        },
        "floors": {
            "request_reply_sequential_per_s": round(floors.request_reply_sequential_per_s, 1),
            "request_reply_parallel_per_s": round(floors.request_reply_parallel_per_s, 1),
            "request_reply_parallel_in_flight": 64,
            "jetstream_messages": args.floor_messages.max(1),
            "jetstream_publish_per_s": round(floors.jetstream_publish_per_s, 1),
            "jetstream_consume_per_s": round(floors.jetstream_consume_per_s, 1),
            "jetstream_publish_consume_per_s": round(floors.jetstream_publish_consume_per_s, 1),
        },
        "throughput": sizes.iter().map(|t| serde_json::json!({
            "workflows": t.workflows,
            "succeeded": t.succeeded,
            "failed": t.failed,
            "seconds": round(t.seconds, 3),
            "workflows_per_s": round(rate(t.succeeded, Duration::from_secs_f64(t.seconds)), 1),
            "steps_per_s": round(rate(t.succeeded * STEPS.len(), Duration::from_secs_f64(t.seconds)), 1),
            "start_calls_per_s": round(t.start_calls_per_s, 1),
            "first_workflow_end_ms": round(t.first_end_ms, 2),
            "workflows_per_s_rounds": t.round_rates.iter().map(|r| round(*r, 1)).collect::<Vec<_>>(),
            "orchestrator_cpu_ms_per_workflow": cpu(t, "orchestrator"),
            "admin_cpu_ms_per_workflow": cpu(t, "admin"),
            "agents_cpu_ms_per_workflow": cpu(t, "agents"),
            "nats_server_cpu_ms_per_workflow": t.cpu_ms_per_workflow.get("nats").map(|v| round(*v, 4)),
            "bench_client_cpu_ms_per_workflow": cpu(t, "bench"),
        })).collect::<Vec<_>>(),
        "latency": {
            "runs": lat.runs,
            "failed": lat.failed,
            "workflow_p50_ms": round(quantile(&lat.workflow_ms, 0.5), 3),
            "workflow_p99_ms": round(quantile(&lat.workflow_ms, 0.99), 3),
            "start_run_p50_ms": round(quantile(&lat.start_run_ms, 0.5), 3),
            "start_run_p99_ms": round(quantile(&lat.start_run_ms, 0.99), 3),
        },
    })
}

pub(super) fn table(
    args: &BenchArgs,
    setup: &Setup,
    floors: &Floors,
    sizes: &[Throughput],
    lat: &Latency,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "NATS {} ({}); {} agent process(es) × {} workers × {} tasks; {} StartRun calls in flight; \
         a fresh data folder per size; CPU from /proc at {} ticks/s ({})",
        setup.url,
        if setup.started_here {
            "started by the bench"
        } else {
            "given"
        },
        args.agent_processes.max(1),
        args.agent_replicas.max(1),
        args.agent_in_flight.max(1),
        args.in_flight.max(1),
        setup.clk_tck,
        setup.clk_source,
    );
    let _ = writeln!(w, "\nFloors (async-nats alone)");
    let _ = writeln!(
        w,
        "  request/reply, one at a time   {:>12.0} round trips/s",
        floors.request_reply_sequential_per_s
    );
    let _ = writeln!(
        w,
        "  request/reply, 64 in flight    {:>12.0} round trips/s",
        floors.request_reply_parallel_per_s
    );
    let _ = writeln!(
        w,
        "  JetStream publish (acked)      {:>12.0} msgs/s",
        floors.jetstream_publish_per_s
    );
    let _ = writeln!(
        w,
        "  JetStream pull + ack           {:>12.0} msgs/s",
        floors.jetstream_consume_per_s
    );
    let _ = writeln!(
        w,
        "  JetStream publish then consume {:>12.0} msgs/s",
        floors.jetstream_publish_consume_per_s
    );
    let _ = writeln!(
        w,
        "\nThroughput ({}-step workflows started at once, after {} not measured; \
         the median of {} rounds)",
        STEPS.len(),
        args.warm_up,
        args.rounds.max(1)
    );
    let _ = writeln!(
        w,
        "  {:>9} {:>9} {:>8} {:>12} {:>10} {:>12} {:>9} {:>14} {:>9} {:>9} {:>9} {:>9}  every round (workflows/s)",
        "workflows",
        "succeeded",
        "seconds",
        "workflows/s",
        "steps/s",
        "StartRun/s",
        "1st end",
        "orch CPU ms/wf",
        "admin ms",
        "agents ms",
        "nats ms",
        "bench ms",
    );
    for t in sizes {
        let took = Duration::from_secs_f64(t.seconds);
        let cpu = |k| t.cpu_ms_per_workflow.get(k).copied().unwrap_or(0.0);
        let _ = writeln!(
            w,
            "  {:>9} {:>9} {:>8.2} {:>12.1} {:>10.1} {:>12.1} {:>9.1} {:>14.3} {:>9.3} {:>9.3} {:>9} {:>9.3}  {}",
            t.workflows,
            t.succeeded,
            t.seconds,
            rate(t.succeeded, took),
            rate(t.succeeded * STEPS.len(), took),
            t.start_calls_per_s,
            t.first_end_ms,
            cpu("orchestrator"),
            cpu("admin"),
            cpu("agents"),
            t.cpu_ms_per_workflow
                .get("nats")
                .map_or_else(|| "-".to_string(), |v| format!("{v:.3}")),
            cpu("bench"),
            t.round_rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let _ = writeln!(
        w,
        "  (CPU ms per workflow of each process kind; nats: the nats-server, when the bench \
         started it; bench: this process, its StartRun calls and event tally; 1st end: ms from the \
         first StartRun call to the first workflow's end)"
    );
    let _ = writeln!(
        w,
        "\nLatency ({} workflows one after the other{})",
        lat.runs,
        if lat.failed > 0 {
            format!(", {} failed", lat.failed)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        w,
        "  StartRun → run succeeded   p50 {:>8.2} ms   p99 {:>8.2} ms",
        quantile(&lat.workflow_ms, 0.5),
        quantile(&lat.workflow_ms, 0.99)
    );
    let _ = writeln!(
        w,
        "  StartRun call alone        p50 {:>8.2} ms   p99 {:>8.2} ms",
        quantile(&lat.start_run_ms, 0.5),
        quantile(&lat.start_run_ms, 0.99)
    );
    s
}
