//! `ListRuns` latency over a large history: page 1 (50 runs) with 100,000
//! stored runs in a temporary sled store, plus a filtered page and a search
//! that matches few runs (the worst case: it reads up to
//! `MAX_ROWS_PER_PAGE` index rows), and the time `recover` takes to check
//! the index (and to build it, for a store written without one).
//!
//! `cargo bench -p concierto-orchestrator --bench list_runs`. Scale it with
//! LIST_BENCH_RUNS (default 100,000) and LIST_BENCH_QUERIES (default 200).
//! The goal for page 1 is under 50 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use concierto_core::config;
use concierto_core::store::{KvStore, Op, SledStore};
use concierto_orchestrator::{Engine, Limits};
use concierto_proto::v1;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn measure(what: &str, queries: usize, mut f: impl FnMut() -> usize) {
    let mut times = Vec::with_capacity(queries);
    let mut rows = 0;
    for _ in 0..queries {
        let started = Instant::now();
        rows = f();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{what:<52} {rows:>3} runs   median {:>8.2?}   p99 {:>8.2?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}

fn main() {
    let runs = env("LIST_BENCH_RUNS", 100_000);
    let queries = env("LIST_BENCH_QUERIES", 200).max(1);
    let studio_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let studio = Arc::new(config::load_with_env(&studio_file, Vec::new()).expect("example studio"));
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a time");

    // A realistic record: the daily pipeline's first step done (1 KB of
    // output), then cancelled; its JSON is the template of every stored run.
    let template = {
        let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().expect("store"));
        let mut e = Engine::new(studio.clone(), store.clone(), Limits::default());
        e.recover(t0).expect("recover");
        let fx = e
            .start_run(
                v1::StartRun {
                    run_id: "template".into(),
                    workflow: "daily-content-pipeline".into(),
                    trigger: "daily_content_generation".into(),
                    requested_by: "scheduler".into(),
                    ..Default::default()
                },
                t0,
            )
            .expect("start");
        let task = fx.tasks.first().expect("a task").clone();
        e.apply_result(
            v1::TaskResult {
                task_id: task.task_id.clone(),
                run_id: task.run_id.clone(),
                step_id: task.step_id.clone(),
                attempt: task.attempt,
                role: task.role.clone(),
                status: v1::TaskStatus::Succeeded as i32,
                output: "Three angles for today. ".repeat(45),
                ..Default::default()
            },
            t0,
        )
        .expect("result");
        e.cancel("template", "bench", t0).expect("cancel");
        let bytes = store
            .get("runs", b"template")
            .expect("read")
            .expect("stored");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir.path()).expect("store"));
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    let states = ["Succeeded", "Failed", "Cancelled"];
    for i in 0..runs {
        let at = t0 + chrono::Duration::minutes(i as i64);
        let id = format!(
            "daily_content_generation@{}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let mut r = template.clone();
        r["run_id"] = id.clone().into();
        r["created_ms"] = at.timestamp_millis().into();
        r["updated_ms"] = (at.timestamp_millis() + 60_000).into();
        r["state"] = states[i % 3].into();
        r["error"] = if i % 3 == 1 {
            format!("step draft-content failed after 3 attempt(s): quota {i}").into()
        } else {
            "".into()
        };
        batch.push(Op::Put(
            id.into_bytes(),
            serde_json::to_vec(&r).expect("encode"),
        ));
        if batch.len() == 1000 {
            store
                .apply("runs", std::mem::take(&mut batch))
                .expect("write");
        }
    }
    store.apply("runs", batch).expect("write");
    store.flush().expect("flush");
    println!(
        "{runs} runs written in {:.2?} (without index)",
        started.elapsed()
    );

    let now = t0 + chrono::Duration::minutes(runs as i64 + 1);
    let mut e = Engine::new(studio.clone(), store.clone(), Limits::default());
    let started = Instant::now();
    e.recover(now).expect("recover");
    println!("recover, building the index: {:.2?}", started.elapsed());
    store.flush().expect("flush");
    let mut e2 = Engine::new(studio, store.clone(), Limits::default());
    let started = Instant::now();
    e2.recover(now).expect("recover");
    println!("recover, checking the index: {:.2?}", started.elapsed());
    drop(e2);

    let list = |req: v1::ListRunsRequest| e.list(&req).expect("list").runs.len();
    measure("ListRuns page 1 (page_size 50)", queries, || {
        list(v1::ListRunsRequest {
            page_size: 50,
            ..Default::default()
        })
    });
    let page_2 = e
        .list(&v1::ListRunsRequest {
            page_size: 50,
            ..Default::default()
        })
        .expect("list")
        .next_page_token;
    measure("ListRuns page 2 (cursor)", queries, || {
        list(v1::ListRunsRequest {
            page_size: 50,
            page_token: page_2.clone(),
            ..Default::default()
        })
    });
    measure("ListRuns state=FAILED page 1", queries, || {
        list(v1::ListRunsRequest {
            page_size: 50,
            state: v1::RunState::Failed as i32,
            ..Default::default()
        })
    });
    measure(
        "ListRuns query \"quota 9999\" (reads many rows)",
        queries.min(20),
        || {
            list(v1::ListRunsRequest {
                page_size: 50,
                query: "quota 99999".into(),
                ..Default::default()
            })
        },
    );
    let mid = t0 + chrono::Duration::minutes(runs as i64 / 2);
    measure(
        "ListRuns until=<middle of the history> page 1",
        queries,
        || {
            list(v1::ListRunsRequest {
                page_size: 50,
                until: Some(prost_types::Timestamp {
                    seconds: mid.timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            })
        },
    );
}
