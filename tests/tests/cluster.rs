//! Issue 17's done-when: a studio on a three-node NATS cluster (every stream
//! and bucket with three copies), eight run partitions shared by three
//! orchestrator processes, two agent processes; 1,000 two-step runs started;
//! one orchestrator SIGKILLed after about 200 runs finished and one NATS node
//! after about 500. Every run succeeds exactly once, every task runs once per
//! attempt, and the dead orchestrator's partitions are held again within
//! [`TAKEOVER_BOUND`] (the figure is printed; the goal is 5 s).
//!
//! Runs are counted from the `EVENTS` stream through a durable consumer (not
//! a core subscription, which would miss what was published while its node
//! was down); a run event is published without waiting for the stream's
//! ack, so one published as the node dies can be dropped: the runs whose end
//! was not seen are then asked for through the orchestrators' GetRun. Task
//! executions are counted from the workers' `task started` debug lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concierto_bus::lease::LeaseStore;
use concierto_bus::{Bus, BusExt, ConsumerSpec, NatsBus, NatsOptions};
use concierto_core::subjects;
use concierto_e2e::{Sandbox, eventually};
use concierto_proto::v1;

const RUNS: usize = 1_000;
const PARTITIONS: u32 = 8;
const ORCHESTRATORS: usize = 3;
/// From an orchestrator's SIGKILL to every partition it held being held by
/// another process: issue 17's goal. The partition lease's ttl is 4 s; the
/// dead process renewed last at most ttl/4 before it died, every survivor
/// has watched each lease's revision all along (polling every ttl/20), so
/// its leases are taken 3-4.4 s after the kill (measured: 3.6-4.6 s).
const TAKEOVER_BOUND: Duration = Duration::from_secs(5);
const ROLES: [&str; 2] = ["performance-benchmarker", "test-results-analyzer"];

fn write_studio(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(&studio).expect("studio folder");
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Cluster test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
  default_executor: builtin
  roles:
    {a}: {{ max_in_flight: 32 }}
    {b}: {{ max_in_flight: 32 }}
workflows:
  two-steps:
    description: "Two quick steps."
    steps:
      - id: first
        role: {a}
        task: "Benchmark the studio."
        timeout: "60 seconds"
        review: none
      - id: second
        role: {b}
        task: "Analyse the benchmark."
        inputs: [first]
        timeout: "60 seconds"
        review: none
server:
  partitions: {PARTITIONS}
  bus:
    replicas: 3
"#,
            agents = root.join("examples/studio/agents").display(),
            a = ROLES[0],
            b = ROLES[1],
        ),
    )
    .expect("studio written");
    file
}

/// The holder of each partition lease (empty: free), by partition.
async fn holders(leases: &Arc<dyn LeaseStore>) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(PARTITIONS as usize);
    for k in 0..PARTITIONS {
        let held = leases.get(&format!("orchestrator-p{k}")).await.ok()?;
        out.push(
            held.map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
        );
    }
    Some(out)
}

fn holder_pid(holder: &str) -> Option<u32> {
    holder.rsplit('-').next()?.parse().ok()
}

/// What the events consumer has seen: terminal events by run, each stream
/// message once.
#[derive(Default)]
struct Seen {
    seqs: HashSet<u64>,
    succeeded: HashMap<String, u32>,
    failed: Vec<String>,
}

/// Drains `run.event.>` from the EVENTS stream into `seen` until aborted.
async fn record_events(
    client: &Arc<dyn Bus>,
    seen: Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    let mut spec = ConsumerSpec::new("cluster-test", subjects::RUN_EVENTS);
    spec.prefetch = 256;
    spec.max_deliver = 0;
    let consumer = client
        .consumer("EVENTS", &spec)
        .await
        .expect("an events consumer");
    tokio::spawn(async move {
        loop {
            match consumer
                .fetch_proto::<v1::RunEvent>(256, Duration::from_millis(500))
                .await
            {
                Ok(got) => {
                    for (ev, d) in got {
                        let fresh = seen.lock().unwrap().seqs.insert(d.stream_seq);
                        if fresh && ev.step_id.is_empty() {
                            let mut s = seen.lock().unwrap();
                            if ev.run_state == v1::RunState::Succeeded as i32 {
                                *s.succeeded.entry(ev.run_id.clone()).or_default() += 1;
                            } else if ev.run_state == v1::RunState::Failed as i32 {
                                s.failed.push(ev.run_id.clone());
                            }
                        }
                        let _ = d.ack().await;
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

/// The warnings and errors every process logged (the last 30 each), for a
/// failure message; every log whole in `$CONCIERTO_E2E_LOGS/cluster.log`
/// when that is set.
fn trouble(sb: &Sandbox) -> String {
    save_logs(sb);
    sb.logs()
        .split("----- ")
        .map(|part| {
            let mut lines = part.lines();
            let head = lines.next().unwrap_or_default().to_string();
            let bad: Vec<&str> = lines
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let tail = bad[bad.len().saturating_sub(30)..].join("\n");
            format!("----- {head}\n{tail}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every log whole in `$CONCIERTO_E2E_LOGS/cluster.log`, when that is set.
fn save_logs(sb: &Sandbox) {
    if let Some(dir) = std::env::var_os("CONCIERTO_E2E_LOGS") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(Path::new(&dir).join("cluster.log"), sb.logs());
    }
}

/// `task started` lines per (task id, attempt) in a worker's log.
fn task_starts(log: &str, into: &mut BTreeMap<(String, String), u32>) {
    for line in log.lines().filter(|l| l.contains("task started")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.trim_matches('"').to_string())
        };
        if let (Some(task), Some(attempt)) = (field("task_id="), field("attempt=")) {
            *into.entry((task, attempt)).or_default() += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_studio_loses_and_repeats_nothing_when_an_orchestrator_and_a_node_die() {
    let test_started = Instant::now();
    let mut sb = Sandbox::on_cluster(&[]);
    let studio = write_studio(sb.dir());
    sb.use_studio(studio);
    let names: Vec<String> = (0..ORCHESTRATORS).map(|i| format!("orch-{i}")).collect();
    for name in &names {
        let data = sb.dir().join(name);
        sb.spawn_with(name, &["serve", "orchestrator"], &[], Some(&data));
    }
    let worker_debug = [("RUST_LOG", "info,concierto_agent::worker=debug")];
    let roles = ROLES.join(",");
    for id in ["a", "b"] {
        sb.spawn_with(
            &format!("agent-{id}"),
            &["agent", "--role", &roles, "--id", id],
            &worker_debug,
            None,
        );
    }
    let client = sb.client().await;
    let lease_bus = NatsBus::connect(
        &sb.nats_url(),
        NatsOptions {
            replicas: 3,
            client_name: "cluster-test-leases".into(),
            ..Default::default()
        },
    )
    .await
    .expect("connects");
    let leases = lease_bus.leases().await.expect("the lease bucket");
    let pids: Vec<u32> = names
        .iter()
        .map(|n| sb.proc(n).pid().expect("running"))
        .collect();

    // Every partition held; spread over the three processes if they get to
    // it within a while (the one holding most is killed below either way).
    eventually(Duration::from_secs(60), "every partition held", || async {
        let h = holders(&leases).await?;
        h.iter().all(|h| !h.is_empty()).then_some(())
    })
    .await;
    let spread = Instant::now() + Duration::from_secs(15);
    let mut owners = 0;
    while Instant::now() < spread {
        let h = holders(&leases).await.unwrap_or_default();
        owners = h
            .iter()
            .filter_map(|h| holder_pid(h))
            .collect::<HashSet<u32>>()
            .len();
        if owners == ORCHESTRATORS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "partitions held by {owners} orchestrator processes before the runs: {:?}",
        holders(&leases).await.unwrap_or_default()
    );

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let recorder = record_events(&client, seen.clone()).await;
    let done = || seen.lock().unwrap().succeeded.len();

    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..RUNS {
                let id = format!("cl-{i:04}");
                let start = v1::StartRun {
                    run_id: id.clone(),
                    workflow: "two-steps".into(),
                    trigger: "manual".into(),
                    requested_by: "e2e".into(),
                    ..Default::default()
                };
                client
                    .publish_durable_proto(&subjects::run_start_for(&id, PARTITIONS), &start, &id)
                    .await
                    .unwrap_or_else(|e| panic!("starting {id}: {e}"));
            }
        })
    };
    let started = Instant::now();

    // ~200 finished: SIGKILL the orchestrator holding the most partitions.
    eventually(Duration::from_secs(60), "200 runs to finish", || async {
        (done() >= 200).then_some(())
    })
    .await;
    let before = holders(&leases).await.expect("the leases");
    let victim = (0..ORCHESTRATORS)
        .max_by_key(|i| {
            before
                .iter()
                .filter(|h| holder_pid(h) == Some(pids[*i]))
                .count()
        })
        .unwrap_or(0);
    let orphaned: Vec<u32> = (0..PARTITIONS)
        .filter(|k| holder_pid(&before[*k as usize]) == Some(pids[victim]))
        .collect();
    sb.proc(&names[victim]).kill();
    let killed = Instant::now();
    let runs_at_kill = done();
    eventually(
        TAKEOVER_BOUND * 3,
        "the dead orchestrator's partitions to be held again",
        || async {
            let h = holders(&leases).await?;
            orphaned
                .iter()
                .all(|k| {
                    let holder = &h[*k as usize];
                    !holder.is_empty() && holder_pid(holder) != Some(pids[victim])
                })
                .then_some(())
        },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "orchestrator {victim} SIGKILLed holding partitions {orphaned:?} ({runs_at_kill} runs done): \
         held again {takeover:?} later"
    );

    // ~500 finished: SIGKILL a NATS node.
    eventually(Duration::from_secs(60), "500 runs to finish", || async {
        (done() >= 500).then_some(())
    })
    .await;
    let node = 2;
    sb.cluster.as_mut().expect("a cluster").kill(node);
    let node_killed = Instant::now();
    let runs_at_node_kill = done();

    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("every run start published in time")
        .expect("every run start published");
    // Run events are published without waiting for the stream's ack (a
    // node's death can drop some): a run whose terminal event is not seen
    // is asked for (GetRun, through any orchestrator) once the events stall.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut confirmed: HashSet<String> = HashSet::new();
    let mut last = (done(), Instant::now());
    loop {
        let seen_now = done();
        if seen_now + confirmed.len() >= RUNS {
            let s = seen.lock().unwrap();
            if (0..RUNS).all(|i| {
                let id = format!("cl-{i:04}");
                s.succeeded.contains_key(&id) || confirmed.contains(&id)
            }) {
                break;
            }
        }
        if seen_now != last.0 {
            last = (seen_now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            let missing: Vec<String> = {
                let s = seen.lock().unwrap();
                (0..RUNS)
                    .map(|i| format!("cl-{i:04}"))
                    .filter(|id| !s.succeeded.contains_key(id) && !confirmed.contains(id))
                    .collect()
            };
            for id in missing {
                if let Some(run) = concierto_e2e::get_run(&client, &id).await
                    && run.state == v1::RunState::Succeeded as i32
                {
                    confirmed.insert(id);
                }
            }
            last.1 = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {RUNS} runs succeeded after 120 s ({} by their events, {} asked for); warnings and errors:\n{}",
            done() + confirmed.len(),
            done(),
            confirmed.len(),
            trouble(&sb)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_done = started.elapsed();
    let after_node = node_killed.elapsed();
    // Give a repeated task or run time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    recorder.abort();

    save_logs(&sb);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut starts = BTreeMap::new();
    for id in ["a", "b"] {
        task_starts(&sb.procs_log(&format!("agent-{id}")), &mut starts);
    }
    let repeated: Vec<_> = starts.iter().filter(|(_, n)| **n > 1).collect();
    let twice: Vec<_> = seen.succeeded.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{RUNS} runs over {PARTITIONS} partitions, {ORCHESTRATORS} orchestrators, 3 NATS nodes: \
         all succeeded {all_done:?} after the first start; node {node} killed at {runs_at_node_kill} \
         runs done, the rest done {after_node:?} later ({} runs' ends not seen on the events \
         stream in time, asked for instead); {} task executions, {} repeated; takeover {takeover:?}; whole test {:?}",
        confirmed.len(),
        starts.len(),
        repeated.len(),
        test_started.elapsed()
    );
    assert!(seen.failed.is_empty(), "failed runs: {:?}", seen.failed);
    let want: HashSet<String> = (0..RUNS).map(|i| format!("cl-{i:04}")).collect();
    let mut have: HashSet<String> = seen.succeeded.keys().cloned().collect();
    have.extend(confirmed.iter().cloned());
    assert_eq!(have, want, "every run succeeded, none foreign");
    assert!(twice.is_empty(), "runs that succeeded twice: {twice:?}");
    assert_eq!(
        starts.len(),
        2 * RUNS,
        "one task per step, each started (debug lines of both workers)"
    );
    assert!(
        repeated.is_empty(),
        "tasks executed twice in one attempt: {repeated:?}"
    );
    assert!(
        takeover <= TAKEOVER_BOUND,
        "the partitions of the dead orchestrator were held again after {takeover:?}"
    );
}
