//! The autonomous loop end to end: a real nats-server and the `concierto` binary
//! as separate OS processes — scheduler, orchestrator and agent workers — with
//! the commands a deployment runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierto_bus::{Bus, BusExt};
use concierto_core::subjects;
use concierto_e2e::{Sandbox, eventually, get_run, list_runs};
use concierto_proto::v1;

/// Short redelivery so a killed worker's task comes back quickly.
const ENV: &[(&str, &str)] = &[("CONCIERTO__SERVER__BUS__ACK_WAIT", "2 seconds")];

const PIPELINE_ROLES: &[&str] = &[
    "trend-researcher",
    "visual-storyteller",
    "brand-guardian",
    "studio-orchestrator",
];

/// Counts `done by` events per (run, step) and final run events per run.
#[derive(Default)]
struct Events {
    done: HashMap<(String, String), Vec<String>>,
    finished: HashMap<String, usize>,
}

async fn record_events(bus: &Arc<dyn Bus>) -> Arc<Mutex<Events>> {
    let events = Arc::new(Mutex::new(Events::default()));
    let mut sub = bus
        .subscribe_proto::<v1::RunEvent>(subjects::RUN_EVENTS)
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some((ev, _)) = sub.next().await {
            let mut e = sink.lock().unwrap();
            if let Some(worker) = ev.message.strip_prefix("done by ") {
                e.done
                    .entry((ev.run_id.clone(), ev.step_id.clone()))
                    .or_default()
                    .push(worker.to_string());
            }
            if ev.step_id.is_empty()
                && (ev.message == "run succeeded" || ev.run_state == v1::RunState::Failed as i32)
            {
                *e.finished.entry(ev.run_id.clone()).or_insert(0) += 1;
            }
        }
    });
    events
}

async fn wait_ready(sb: &Sandbox, client: &Arc<dyn Bus>, workers: usize) {
    let mut beats = client
        .subscribe_proto::<v1::AgentHeartbeat>(subjects::HEARTBEATS)
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the orchestrator to answer",
        || async { list_runs(client).await },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the scheduler to answer",
        || async {
            client
                .request_proto::<_, v1::ListTriggersResponse>(
                    subjects::SCHEDULER_TRIGGERS,
                    &v1::ListTriggersRequest {},
                    Duration::from_secs(2),
                )
                .await
                .ok()
        },
    )
    .await;
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < workers {
        match tokio::time::timeout_at(deadline, beats.next()).await {
            Ok(Some((hb, _))) => {
                seen.insert(hb.worker_id);
            }
            _ => panic!(
                "only {} of {workers} workers sent a heartbeat:\n{}",
                seen.len(),
                sb.logs()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_pipeline_runs_from_its_trigger_and_survives_a_replica_killed_holding_a_task() {
    let mut sb = Sandbox::new(ENV);
    sb.spawn("orchestrator", &["serve", "orchestrator"]);
    sb.spawn("scheduler", &["serve", "scheduler"]);
    // Which replica holds the draft is read from its `task started` line (debug).
    let worker_debug = [("RUST_LOG", "info,concierto_agent::worker=debug")];
    sb.spawn_with(
        "content-creator-a",
        &["agent", "--role", "content-creator", "--id", "a"],
        &worker_debug,
        None,
    );
    sb.spawn_with(
        "content-creator-b",
        &["agent", "--role", "content-creator", "--id", "b"],
        &worker_debug,
        None,
    );
    for role in PIPELINE_ROLES {
        sb.spawn(role, &["agent", "--role", role]);
    }
    let client = sb.client().await;
    let events = record_events(&client).await;
    wait_ready(&sb, &client, 2 + PIPELINE_ROLES.len()).await;

    // 1. From the trigger to completion.
    let fired: v1::FireTriggerResponse = client
        .request_proto(
            subjects::SCHEDULER_FIRE,
            &v1::FireTriggerRequest {
                name: "daily_content_generation".into(),
                priority: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(
        fired.run_id.starts_with("daily_content_generation@"),
        "{}",
        fired.run_id
    );
    let run = eventually(
        Duration::from_secs(60),
        "the fired run to succeed",
        || async {
            get_run(&client, &fired.run_id)
                .await
                .filter(|r| r.state() == v1::RunState::Succeeded)
        },
    )
    .await;
    assert_eq!(run.workflow, "daily-content-pipeline");
    assert_eq!(run.trigger, "daily_content_generation");
    // The workflow's steps, then the steps its review loop added: the draft
    // went to brand-guardian (creator_to_reviewer) before the visual brief.
    let roles: Vec<_> = run
        .steps
        .iter()
        .filter(|s| !s.step_id.contains('/'))
        .map(|s| s.role.as_str())
        .collect();
    assert_eq!(
        roles,
        [
            "trend-researcher",
            "content-creator",
            "visual-storyteller",
            "brand-guardian"
        ]
    );
    let review = run
        .steps
        .iter()
        .find(|s| s.step_id == "draft-content/review-1/brand-guardian")
        .expect("the draft was reviewed");
    let verdict = review.verdict.as_ref().expect("a verdict");
    assert!(verdict.score >= 0.85 && verdict.pass, "{verdict:?}");
    let draft = run
        .steps
        .iter()
        .find(|s| s.step_id == "draft-content")
        .unwrap();
    assert!(draft.review_rounds >= 1);
    for s in &run.steps {
        assert_eq!(s.state(), v1::StepState::Succeeded, "{s:?}");
        assert!(!s.output.is_empty(), "step {} has no output", s.step_id);
        assert_eq!(
            s.usage.as_ref().map(|u| u.executor.as_str()),
            Some("builtin")
        );
    }

    // 2. A content-creator replica dies holding the draft: the other one finishes it.
    let run_id = "e2e-kill@1";
    let start = v1::StartRun {
        run_id: run_id.into(),
        workflow: "daily-content-pipeline".into(),
        trigger: "daily_content_generation".into(),
        priority: v1::Priority::Normal as i32,
        params: [("builtin.sleep_ms".to_string(), "2500".to_string())].into(),
        requested_by: "e2e".into(),
        ..Default::default()
    };
    client
        .publish_durable_proto(subjects::RUN_START, &start, run_id)
        .await
        .unwrap();
    let draft_task = format!("{run_id}/draft-content/1");
    let holder = eventually(
        Duration::from_secs(30),
        "a replica to take the draft",
        || {
            let a = sb.procs_log("content-creator-a");
            let b = sb.procs_log("content-creator-b");
            let task = draft_task.clone();
            async move {
                if a.contains(&task) {
                    Some("content-creator-a")
                } else if b.contains(&task) {
                    Some("content-creator-b")
                } else {
                    None
                }
            }
        },
    )
    .await;
    let survivor = if holder == "content-creator-a" {
        "content-creator.b0"
    } else {
        "content-creator.a0"
    };
    sb.proc(holder).kill();
    let run = eventually(
        Duration::from_secs(60),
        "the run to succeed after the kill",
        || async {
            get_run(&client, run_id)
                .await
                .filter(|r| r.state() == v1::RunState::Succeeded)
        },
    )
    .await;
    let draft = run
        .steps
        .iter()
        .find(|s| s.step_id == "draft-content")
        .unwrap();
    assert_eq!(draft.attempt, 1, "redelivered, not retried");
    assert!(draft.output.contains("builtin"), "{}", draft.output);
    // Give late duplicates a moment, then: one completed run, each step applied once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = events.lock().unwrap();
    // The workflow's own steps (a review step reports "review by ...").
    for s in run.steps.iter().filter(|s| !s.step_id.contains('/')) {
        let done = &e.done[&(run_id.to_string(), s.step_id.clone())];
        assert_eq!(
            done.len(),
            1,
            "step {} applied {} times",
            s.step_id,
            done.len()
        );
    }
    assert_eq!(
        e.done[&(run_id.to_string(), "draft-content".to_string())],
        [survivor]
    );
    assert_eq!(e.finished.get(run_id), Some(&1));
    assert_eq!(e.finished.get(&fired.run_id), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_killed_amid_200_concurrent_runs_loses_none_and_repeats_none() {
    let mut sb = Sandbox::new(ENV);
    sb.spawn("orchestrator", &["serve", "orchestrator"]);
    sb.spawn("scheduler", &["serve", "scheduler"]);
    // system-improvement's step roles (studio-orchestrator also runs its
    // failure step).
    let roles = [
        "performance-benchmarker",
        "test-results-analyzer",
        "backend-architect",
        "studio-orchestrator",
        "workflow-optimizer",
    ];
    for role in roles {
        sb.spawn(role, &["agent", "--role", role]);
    }
    let client = sb.client().await;
    let events = record_events(&client).await;
    wait_ready(&sb, &client, roles.len()).await;

    let n = 200;
    for i in 0..n {
        let id = format!("bulk@{i:03}");
        let start = v1::StartRun {
            run_id: id.clone(),
            workflow: "system-improvement".into(),
            trigger: "continuous_optimization".into(),
            priority: v1::Priority::Normal as i32,
            params: [("builtin.sleep_ms".to_string(), "40".to_string())].into(),
            requested_by: "e2e".into(),
            ..Default::default()
        };
        client
            .publish_durable_proto(subjects::RUN_START, &start, &id)
            .await
            .unwrap();
    }
    // Kill the orchestrator once some runs are done and many are in flight.
    eventually(Duration::from_secs(60), "some runs to finish", || {
        let e = events.clone();
        async move { (e.lock().unwrap().finished.len() >= 20).then_some(()) }
    })
    .await;
    let done_before = events.lock().unwrap().finished.len();
    assert!(done_before < n, "the kill must land mid-way");
    sb.proc("orchestrator").kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sb.spawn("orchestrator", &["serve", "orchestrator"]);

    // The scheduler's demo trigger may start runs of its own meanwhile: count ours.
    let runs = eventually(
        Duration::from_secs(120),
        "all 200 runs to succeed",
        || async {
            let runs: Vec<v1::Run> = list_runs(&client)
                .await?
                .into_iter()
                .filter(|r| r.run_id.starts_with("bulk@"))
                .collect();
            let ok = runs
                .iter()
                .filter(|r| r.state() == v1::RunState::Succeeded)
                .count();
            (ok == n).then_some(runs)
        },
    )
    .await;
    assert_eq!(runs.len(), n, "exactly 200 runs stored");
    // Every step of every run succeeded at its first attempt: redelivered or
    // republished work was never counted as a second attempt.
    for r in &runs {
        for s in &r.steps {
            assert_eq!(
                s.state(),
                v1::StepState::Succeeded,
                "{}/{}",
                r.run_id,
                s.step_id
            );
            assert_eq!(
                s.attempt, 1,
                "{}/{} took {} attempts",
                r.run_id, s.step_id, s.attempt
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // None twice: no step's result was applied twice and no run finished twice.
    // (An event published after the flush can be lost when the process dies in
    // between — at most once, never twice — so the stored state above is the
    // proof of completion and the events the proof of no repetition.)
    let e = events.lock().unwrap();
    let mut events_lost = 0;
    for r in &runs {
        let finished = e.finished.get(&r.run_id).copied().unwrap_or(0);
        assert!(finished <= 1, "run {} finished {finished} times", r.run_id);
        events_lost += 1 - finished;
        for s in &r.steps {
            let done = e
                .done
                .get(&(r.run_id.clone(), s.step_id.clone()))
                .map_or(0, Vec::len);
            assert!(
                done <= 1,
                "step {}/{} applied {done} times",
                r.run_id,
                s.step_id
            );
        }
    }
    eprintln!("{events_lost} run-finished events lost in the crash window");
    eprintln!("{done_before} of {n} runs had finished when the orchestrator was killed");
}
