//! Engine throughput with a deep backlog: each iteration applies one task's
//! result (its run ends, a slot frees, the next queued step is dispatched)
//! and starts one new run (queued behind the backlog, every role being full),
//! so the backlog stays at N. Runs are one-step runs spread over three roles
//! (4 in flight each). The cost per run should be flat in N: the queue pops
//! in O(roles), whatever waits.
//!
//! `cargo bench -p concierto-orchestrator --bench dispatch`; criterion prints
//! the time per run and the runs per second for 500, 4,000 and 20,000 queued.
//! DISPATCH_BENCH_BACKLOGS overrides the backlogs (comma-separated).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Engine, Limits};
use concierto_proto::v1;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Workflows of one step each, on three roles.
const WORKFLOWS: [&str; 3] = ["bench-a", "bench-b", "bench-c"];

fn studio() -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let mut s = config::load_with_env(&path, Vec::new()).expect("example studio");
    let source = s.workflows["market-intelligence"].clone();
    for (i, name) in WORKFLOWS.iter().enumerate() {
        let mut w = source.clone();
        w.steps = vec![w.steps[i].clone()];
        w.steps[0].review = None;
        w.steps[0].context.clear();
        w.steps[0].inputs.clear();
        w.on_failure = None;
        s.workflows.insert((*name).to_string(), w);
    }
    Arc::new(s)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a time")
}

fn start(i: u64) -> v1::StartRun {
    v1::StartRun {
        run_id: format!("bench-{i}"),
        workflow: WORKFLOWS[(i % 3) as usize].to_string(),
        trigger: "bench".into(),
        ..Default::default()
    }
}

fn done(task: &v1::Task) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: "bench".into(),
        status: v1::TaskStatus::Succeeded as i32,
        output: "done".into(),
        ..Default::default()
    }
}

/// An engine with `backlog` steps queued behind full roles, and its tasks in
/// flight.
fn loaded(studio: &Arc<Studio>, backlog: usize) -> (Engine, VecDeque<v1::Task>, u64) {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().expect("store"));
    let mut e = Engine::new(studio.clone(), store, Limits::for_studio(studio));
    e.recover(t0()).expect("recover");
    let mut in_flight = VecDeque::new();
    let mut next = 0u64;
    while e.queued() < backlog {
        let fx = e.start_run(start(next), t0()).expect("start");
        in_flight.extend(fx.tasks);
        next += 1;
    }
    (e, in_flight, next)
}

fn backlogs() -> Vec<usize> {
    std::env::var("DISPATCH_BENCH_BACKLOGS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().replace('_', "").parse().ok())
                .collect()
        })
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![500, 4_000, 20_000])
}

fn dispatch(c: &mut Criterion) {
    let studio = studio();
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    for backlog in backlogs() {
        let (mut e, mut in_flight, mut next) = loaded(&studio, backlog);
        let mut ms = 0i64;
        group.bench_with_input(
            BenchmarkId::new("result_then_start_run", backlog),
            &backlog,
            |b, _| {
                b.iter(|| {
                    ms += 1;
                    let now = t0() + chrono::Duration::milliseconds(ms);
                    let task = in_flight.pop_front().expect("a task in flight");
                    let fx = e.apply_result(done(&task), now).expect("result");
                    in_flight.extend(fx.tasks);
                    let fx = e.start_run(start(next), now).expect("start");
                    in_flight.extend(fx.tasks);
                    next += 1;
                });
            },
        );
        assert!(
            e.queued() + 1 >= backlog,
            "the backlog stayed at {backlog} (now {})",
            e.queued()
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = dispatch
}
criterion_main!(benches);
