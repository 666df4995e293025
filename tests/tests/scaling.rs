//! Capacity follows live workers: with no `replicas` in the studio (so no
//! static cap), a second `concierto agent` process for a role doubles the
//! orchestrator's in-flight limit for it (from the workers' heartbeats), and
//! so doubles the role's throughput for sleep-bound work.
//!
//! A ratio of two throughputs measured the same way, not a wall-clock bound.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierto_bus::{Bus, BusExt};
use concierto_core::subjects;
use concierto_e2e::{Sandbox, eventually, list_runs};
use concierto_proto::v1;

/// Runs per phase, and the sleep of each task (seconds).
const RUNS: usize = 40;
const SLEEP: &str = "0.25";

fn write_studio(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(&studio).unwrap();
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Scaling test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
  executors:
    sleeper: {{ kind: command, command: ["/bin/sh", "-c", "cat > /dev/null; sleep {SLEEP}; echo slept"], timeout: "20 seconds" }}
  roles:
    content-creator: {{ executor: sleeper, max_in_flight: 2 }}
workflows:
  nap:
    description: "One sleep-bound step."
    steps:
      - id: nap
        role: content-creator
        task: "Sleep."
        timeout: "30 seconds"
        review: none
"#,
            agents = root.join("examples/studio/agents").display(),
        ),
    )
    .unwrap();
    file
}

/// Waits until `workers` distinct workers of the role have sent a heartbeat
/// (the orchestrator hears the same ones).
async fn wait_workers(sb: &Sandbox, client: &Arc<dyn Bus>, workers: usize) {
    let mut beats = client
        .subscribe_proto::<v1::AgentHeartbeat>(subjects::HEARTBEATS)
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < workers {
        match tokio::time::timeout_at(deadline, beats.next()).await {
            Ok(Some((hb, _))) if hb.state != v1::AgentState::Stopped as i32 => {
                seen.insert(hb.worker_id);
            }
            Ok(Some(_)) => {}
            _ => panic!(
                "only {} of {workers} workers sent a heartbeat:\n{}",
                seen.len(),
                sb.logs()
            ),
        }
    }
}

/// Starts `RUNS` one-step runs at once; the seconds until the last ended.
async fn phase(sb: &Sandbox, client: &Arc<dyn Bus>, name: &str) -> f64 {
    let mut events = client
        .subscribe_proto::<v1::RunEvent>(subjects::RUN_EVENTS)
        .await
        .unwrap();
    client.flush().await.unwrap();
    let started = Instant::now();
    for i in 0..RUNS {
        let start = v1::StartRun {
            run_id: format!("{name}-{i}"),
            workflow: "nap".into(),
            trigger: "manual".into(),
            requested_by: "test".into(),
            ..Default::default()
        };
        client
            .publish_durable_proto(subjects::RUN_START, &start, &start.run_id)
            .await
            .unwrap();
    }
    let mut done = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while done.len() < RUNS {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some((ev, _)))
                if ev.run_id.starts_with(&format!("{name}-")) && ev.step_id.is_empty() =>
            {
                assert_ne!(
                    ev.run_state,
                    v1::RunState::Failed as i32,
                    "{ev:?}\n{}",
                    sb.logs()
                );
                if ev.run_state == v1::RunState::Succeeded as i32 {
                    done.insert(ev.run_id);
                }
            }
            Ok(Some(_)) => {}
            _ => panic!(
                "{name}: {} of {RUNS} runs ended:\n{}",
                done.len(),
                sb.logs()
            ),
        }
    }
    started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_process_doubles_a_roles_throughput() {
    let mut sb = Sandbox::new(&[]);
    let studio = write_studio(sb.dir());
    sb.use_studio(studio);
    sb.spawn("orchestrator", &["serve", "orchestrator"]);
    let client = sb.client().await;
    eventually(
        Duration::from_secs(30),
        "the orchestrator to answer",
        || async { list_runs(&client).await },
    )
    .await;

    sb.spawn("worker-1", &["agent", "--role", "content-creator"]);
    wait_workers(&sb, &client, 1).await;
    let one = phase(&sb, &client, "one").await;

    sb.spawn("worker-2", &["agent", "--role", "content-creator"]);
    wait_workers(&sb, &client, 2).await;
    // The heartbeat that raised the limit is applied before the runs below.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let two = phase(&sb, &client, "two").await;

    let ratio = one / two;
    eprintln!(
        "{RUNS} runs of {SLEEP} s, max_in_flight 2: one worker {one:.2} s, two workers {two:.2} s, ratio {ratio:.2}"
    );
    assert!(
        (1.8..=2.2).contains(&ratio),
        "throughput ratio {ratio:.2} (one worker {one:.2} s, two {two:.2} s)\n{}",
        sb.procs_log("orchestrator")
    );
}
