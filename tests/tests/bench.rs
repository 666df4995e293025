//! `concierto bench`, end to end and small: the built binary starts its own
//! nats-server and the studio's services as processes, runs 50 workflows at
//! once (two rounds, each after 20 not counted) and 10 one after the other,
//! and prints every figure as JSON. Checks that every figure is there and
//! positive and that all 50 workflows succeeded; never how fast (the figures
//! are measurements, not assertions).

use std::process::Command;

use concierto_e2e::concierto_bin;
use serde_json::Value;

/// A figure of `v` at `path`, which must be a number above 0.
fn positive(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = match key.parse::<usize>() {
            Ok(i) => &at[i],
            Err(_) => &at[key],
        };
    }
    let n = at
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in\n{v:#}"));
    assert!(n > 0.0, "{path} is {n}, not above 0, in\n{v:#}");
    n
}

#[test]
fn bench_reports_every_figure_and_all_50_workflows_succeed() {
    let mut cmd = Command::new(concierto_bin());
    cmd.args([
        "bench",
        "--sizes",
        "50",
        "--latency-runs",
        "10",
        "--rounds",
        "2",
        "--warm-up",
        "20",
        "--floor-requests",
        "2000",
        "--floor-messages",
        "2000",
        "--json",
    ])
    .env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("CONCIERTO") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("running concierto bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}\n{stderr}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    for floor in [
        "request_reply_sequential_per_s",
        "request_reply_parallel_per_s",
        "jetstream_publish_per_s",
        "jetstream_consume_per_s",
        "jetstream_publish_consume_per_s",
    ] {
        positive(&v, &format!("floors.{floor}"));
    }

    let sizes = v["throughput"].as_array().expect("a throughput list");
    assert_eq!(sizes.len(), 1, "{v:#}");
    assert_eq!(v["throughput"][0]["workflows"], 50, "{v:#}");
    assert_eq!(v["throughput"][0]["succeeded"], 50, "{v:#}");
    assert_eq!(v["throughput"][0]["failed"], 0, "{v:#}");
    for figure in [
        "seconds",
        "workflows_per_s",
        "steps_per_s",
        "start_calls_per_s",
        "first_workflow_end_ms",
        "orchestrator_cpu_ms_per_workflow",
        "agents_cpu_ms_per_workflow",
    ] {
        positive(&v, &format!("throughput.0.{figure}"));
    }
    // Two rounds, each one's rate kept; the median is one of them.
    let rounds = v["throughput"][0]["workflows_per_s_rounds"]
        .as_array()
        .expect("the rates of every round");
    assert_eq!(rounds.len(), 2, "{v:#}");
    assert!(
        rounds.iter().all(|r| r.as_f64().is_some_and(|r| r > 0.0)),
        "{v:#}"
    );
    assert_eq!(v["setup"]["rounds"], 2, "{v:#}");
    assert_eq!(v["setup"]["warm_up_workflows"], 20, "{v:#}");
    // The admin API's share can round to zero clock ticks over 50 calls.
    let admin = &v["throughput"][0]["admin_cpu_ms_per_workflow"];
    assert!(admin.as_f64().is_some_and(|ms| ms >= 0.0), "{v:#}");
    // Three steps per workflow: steps/s is three times workflows/s.
    let wf = positive(&v, "throughput.0.workflows_per_s");
    let steps = positive(&v, "throughput.0.steps_per_s");
    assert!((steps - 3.0 * wf).abs() <= 0.25, "{v:#}");

    assert_eq!(v["latency"]["runs"], 10, "{v:#}");
    assert_eq!(v["latency"]["failed"], 0, "{v:#}");
    for figure in [
        "workflow_p50_ms",
        "workflow_p99_ms",
        "start_run_p50_ms",
        "start_run_p99_ms",
    ] {
        positive(&v, &format!("latency.{figure}"));
    }
    assert!(
        positive(&v, "latency.workflow_p99_ms") >= positive(&v, "latency.workflow_p50_ms"),
        "{v:#}"
    );
    assert!(positive(&v, "setup.clk_tck") >= 1.0, "{v:#}");
    assert_eq!(v["setup"]["workflow_steps"], 3, "{v:#}");
    assert_eq!(v["nats"]["started_here"], true, "{v:#}");
}

#[test]
fn bench_refuses_an_empty_size_with_a_clear_sentence() {
    let out = Command::new(concierto_bin())
        .args(["bench", "--sizes", "0", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("running concierto bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sizes needs one or more whole numbers above 0"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
