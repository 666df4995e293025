//! An approved optimizer proposal changes a threshold in the running studio
//! without a restart, end to end: a real nats-server, the services as two
//! `concierto serve` processes (orchestrator and admin in one, scheduler and
//! tracker in the other, so the change crosses processes), agents as
//! `concierto agent` processes, and a `command` executor as the
//! workflow-optimizer: a program whose report ends with a change block.
//!
//! The proposal opens the `studio_change` gate; a person who is not its
//! reviewer is refused and the file stays as it was; its reviewer approves,
//! the studio file gets the new value on the same line, the change is recorded
//! with who approved it, and the running scheduler and tracker fire on the new
//! threshold. A file broken by hand is refused by every process, which keep
//! the studio they run, and `ReloadStudio` says where the errors are.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierto_bus::Bus;
use concierto_core::config::changes;
use concierto_core::subjects;
use concierto_e2e::{Sandbox, concierto_bin};
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use prost::Message as _;
use tonic::transport::Channel;

/// Tokens of the studio's people (the studio holds only their SHA-256).
const OPS: &str = "ops-token-studio-change-0123456789";
/// The `studio_change` gate's reviewer.
const CREATIVE: &str = "creative-token-studio-change-0123456789";
/// A reviewer, but not of the `studio_change` gate.
const BRAND: &str = "brand-token-studio-change-0123456789";

const OPTIMIZE: &str = "optimize";
const RUN: &str = "optimize@1";
const CHECK: &str = "engagement-check";
const THRESHOLD: &str = "on_performance_threshold";
const SCHEDULED: &str = "weekly_review";
const KEY: &str = "triggers.on_performance_threshold.metric";
const OLD_METRIC: &str = "        metric: \"engagement_rate < 0.05\"";
const NEW_METRIC: &str = "        metric: \"engagement_rate < 0.04\"";
const OLD_TIME: &str = "        time: \"Monday 10:00\"";
const BROKEN_TIME: &str = "        time: \"25:99\"";

/// The workflow-optimizer: a short report, then the change block.
const OPTIMIZER: &str = r#"#!/bin/sh
cat > /dev/null
cat <<'EOF'
## Optimization proposals

1. Lower the engagement threshold: at 0.05 it fired nine times last week on noise.

```json
{"changes": [{"key": "triggers.on_performance_threshold.metric", "value": "engagement_rate < 0.04", "why": "0.05 fired nine times last week on noise"}]}
```
EOF
"#;

fn write_studio(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(&studio).unwrap();
    let optimizer = studio.join("optimizer.sh");
    std::fs::write(&optimizer, OPTIMIZER).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&optimizer, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sha = concierto_admin::token_sha256;
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"studio:
  name: "Studio change test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
  default_executor: builtin
  executors:
    optimizer: {{ kind: command, command: ["{optimizer}"], timeout: "20 seconds" }}
  roles:
    workflow-optimizer: {{ executor: optimizer }}
reviewers:
  ops:
    name: "Operations"
    roles: [admin]
    token_sha256: "{ops}"
  creative_director:
    name: "Creative Director"
    roles: [reviewer]
    token_sha256: "{creative}"
  brand_manager:
    name: "Brand Manager"
    roles: [reviewer]
    token_sha256: "{brand}"
workflows:
  {OPTIMIZE}:
    description: "The optimizer proposes changes to the studio."
    steps:
      - id: propose
        role: workflow-optimizer
        task: "Propose at most five configuration changes."
        inputs: [trigger]
        timeout: "30 seconds"
  {CHECK}:
    description: "A report on engagement."
    steps:
      - id: report
        role: analytics-reporter
        task: "Report on this week's engagement."
        inputs: [trigger]
        timeout: "30 seconds"
triggers:
  scheduled:
    - {SCHEDULED}:
{OLD_TIME}
        agents: [analytics-reporter]
        workflow: "{CHECK}"
  event_based:
    - {THRESHOLD}:
{OLD_METRIC}
        agents: [analytics-reporter]
        workflow: "{CHECK}"
feedback_loops:
  agent_to_human:
    - quality_gates:
        - studio_change:
            threshold: "studio_change"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
            agents = root.join("examples/studio/agents").display(),
            optimizer = optimizer.display(),
            ops = sha(OPS),
            creative = sha(CREATIVE),
            brand = sha(BRAND),
        ),
    )
    .unwrap();
    file
}

type Admin = AdminServiceClient<Channel>;

/// Calls `f` every 100 ms until it gives `Some`; `None` after `within`.
async fn poll<T, Fut>(within: Duration, mut f: impl FnMut() -> Fut) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn as_who<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    req
}

/// `concierto validate FILE`.
fn validate(file: &Path) -> std::process::Output {
    std::process::Command::new(concierto_bin())
        .arg("validate")
        .arg(file)
        .env("RUST_LOG", "warn")
        .output()
        .expect("concierto validate runs")
}

/// A process's exit status and output, for failure messages.
fn show(out: &std::process::Output) -> String {
    format!(
        "{:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each trigger's name and spec (ListTriggers), sorted by name.
async fn specs(mut admin: Admin) -> Option<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = admin
        .list_triggers(as_who(OPS, v1::ListTriggersRequest {}))
        .await
        .ok()?
        .into_inner()
        .triggers
        .into_iter()
        .map(|t| (t.name, t.spec))
        .collect();
    out.sort();
    Some(out)
}

async fn get_run(mut admin: Admin, run_id: &str) -> Option<v1::Run> {
    admin
        .get_run(as_who(
            OPS,
            v1::GetRunRequest {
                run_id: run_id.to_string(),
            },
        ))
        .await
        .ok()?
        .into_inner()
        .run
}

/// The runs the threshold trigger started.
async fn threshold_runs(mut admin: Admin) -> Option<Vec<v1::Run>> {
    let r = admin
        .list_runs(as_who(
            OPS,
            v1::ListRunsRequest {
                trigger: THRESHOLD.into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .ok()?
        .into_inner();
    Some(
        r.runs
            .into_iter()
            .filter(|r| r.trigger == THRESHOLD)
            .collect(),
    )
}

/// The open gate of the optimizer's run.
async fn open_gate(mut admin: Admin) -> Option<v1::Gate> {
    admin
        .list_gates(as_who(
            OPS,
            v1::ListGatesRequest {
                run_id: RUN.into(),
                ..Default::default()
            },
        ))
        .await
        .ok()?
        .into_inner()
        .gates
        .into_iter()
        .find(|g| g.state() == v1::GateState::Open)
}

/// Approves `gate_id` as the holder of `token`.
async fn decide(
    mut admin: Admin,
    token: &str,
    gate_id: &str,
) -> Result<v1::DecideGateResponse, tonic::Status> {
    admin
        .decide_gate(as_who(
            token,
            v1::DecideGateRequest {
                gate_id: gate_id.to_string(),
                decision: v1::GateDecisionKind::Approve as i32,
                notes: "approved in the test".into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// RecordMetric `engagement_rate` = `value`, as ops.
async fn record(mut admin: Admin, value: f64) {
    admin
        .record_metric(as_who(
            OPS,
            v1::RecordMetricRequest {
                metric: "engagement_rate".into(),
                value,
                labels: Default::default(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("recording engagement_rate = {value}: {e}"));
}

/// Every message on `subject` in stream EVENTS, decoded.
async fn in_events<M: prost::Message + Default>(bus: &dyn Bus, subject: &str) -> Vec<M> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let page = bus
            .stream_messages("EVENTS", from, 500)
            .await
            .expect("stream EVENTS reads");
        let Some((last, _)) = page.last() else {
            return out;
        };
        from = last + 1;
        for (_, m) in &page {
            if m.subject == subject {
                out.push(M::decode(m.payload.as_ref()).expect("a message of the subject's type"));
            }
        }
    }
}

/// The threshold crossings the tracker published so far, for failure messages.
fn crossings(seen: &Mutex<Vec<v1::ThresholdCrossed>>) -> String {
    seen.lock()
        .unwrap()
        .iter()
        .map(|c| format!("{} (value {}, entered {})", c.predicate, c.value, c.entered))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_optimizer_proposal_changes_a_threshold_in_the_running_studio() {
    let grpc = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let mut sb = Sandbox::new(&[("CONCIERTO__SERVER__GRPC_ADDR", grpc.as_str())]);
    let file = write_studio(sb.dir());
    sb.use_studio(file.clone());
    let original = std::fs::read_to_string(&file).unwrap();
    let out = validate(&file);
    assert!(
        out.status.success(),
        "the test's studio is valid: {}",
        show(&out)
    );

    // The orchestrator (which writes approved changes) and the admin API in
    // one process, the scheduler and the tracker in another.
    sb.spawn("front", &["serve", "orchestrator", "admin"]);
    let back_data = sb.dir().join("data-back");
    sb.spawn_with(
        "back",
        &["serve", "scheduler", "tracker"],
        &[],
        Some(&back_data),
    );
    sb.spawn("optimizer", &["agent", "--role", "workflow-optimizer"]);
    sb.spawn("reporter", &["agent", "--role", "analytics-reporter"]);
    let bus = sb.client().await;
    let admin = poll(Duration::from_secs(30), || async {
        AdminServiceClient::connect(format!("http://{grpc}"))
            .await
            .ok()
    })
    .await
    .unwrap_or_else(|| panic!("the admin API does not answer\n{}", sb.logs()));
    let before = poll(Duration::from_secs(60), || specs(admin.clone()))
        .await
        .unwrap_or_else(|| panic!("the scheduler does not answer\n{}", sb.logs()));
    assert_eq!(
        before,
        vec![
            (
                THRESHOLD.to_string(),
                "metric: engagement_rate < 0.05".into()
            ),
            (SCHEDULED.to_string(), "Monday 10:00".into()),
        ],
        "{}",
        sb.logs()
    );
    poll(Duration::from_secs(60), || threshold_runs(admin.clone()))
        .await
        .unwrap_or_else(|| panic!("the orchestrator does not answer\n{}", sb.logs()));
    poll(Duration::from_secs(60), || async {
        admin
            .clone()
            .get_metrics(as_who(OPS, v1::GetMetricsRequest::default()))
            .await
            .ok()
    })
    .await
    .unwrap_or_else(|| panic!("the tracker does not answer\n{}", sb.logs()));

    // The threshold crossings the tracker publishes, to check and to show.
    let seen: Arc<Mutex<Vec<v1::ThresholdCrossed>>> = Arc::default();
    {
        let mut sub = bus.subscribe(subjects::METRIC_EVENTS).await.unwrap();
        bus.flush().await.unwrap();
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(c) = v1::ThresholdCrossed::decode(m.payload.as_ref()) {
                    seen.lock().unwrap().push(c);
                }
            }
        });
    }

    // 1. The optimizer's run stops at the change gate, which names the change.
    let run_id = admin
        .clone()
        .start_run(as_who(
            OPS,
            v1::StartRunRequest {
                workflow: OPTIMIZE.into(),
                run_id: RUN.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("start run: {e}\n{}", sb.logs()))
        .into_inner()
        .run_id;
    assert_eq!(run_id, RUN);
    let gate = poll(Duration::from_secs(60), || open_gate(admin.clone()))
        .await
        .unwrap_or_else(|| panic!("no studio_change gate opened\n{}", sb.logs()));
    let request = gate.request.clone().expect("the gate's request");
    assert_eq!(request.gate, "studio_change", "{gate:?}");
    assert_eq!(request.label, "studio_change", "{gate:?}");
    assert_eq!(request.reviewers, vec!["creative_director".to_string()]);
    assert!(
        request.summary.contains(KEY) && request.summary.contains("engagement_rate < 0.04"),
        "the summary names the change: {}",
        request.summary
    );
    let run = get_run(admin.clone(), RUN).await.expect("the run");
    assert_eq!(run.state(), v1::RunState::WaitingGate, "{run:?}");
    assert!(
        run.steps[0].labels.iter().any(|l| l == "studio_change"),
        "{run:?}"
    );
    let gate_id = request.gate_id.clone();

    // 2. Not the gate's reviewer: refused, the file untouched, the gate open.
    let refused = decide(admin.clone(), BRAND, &gate_id)
        .await
        .expect_err("brand_manager is not the gate's reviewer");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let still = admin
        .clone()
        .get_gate(as_who(
            OPS,
            v1::GetGateRequest {
                gate_id: gate_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .gate
        .expect("the gate");
    assert_eq!(still.state(), v1::GateState::Open, "{still:?}");
    assert!(still.decisions.is_empty(), "{still:?}");

    // 3. Its reviewer approves: the file changes on that one line and stays
    //    valid, the run succeeds, the change is recorded with who approved it.
    let decided = decide(admin.clone(), CREATIVE, &gate_id)
        .await
        .unwrap_or_else(|e| panic!("approve: {e}\n{}", sb.logs()))
        .gate
        .expect("the decided gate");
    assert_eq!(decided.state(), v1::GateState::Approved, "{decided:?}");

    let changed = std::fs::read_to_string(&file).unwrap();
    let (old_lines, new_lines): (Vec<&str>, Vec<&str>) =
        (original.lines().collect(), changed.lines().collect());
    assert_eq!(old_lines.len(), new_lines.len(), "{changed}");
    let at = old_lines
        .iter()
        .position(|l| *l == OLD_METRIC)
        .expect("the metric line");
    let differ: Vec<usize> = (0..old_lines.len())
        .filter(|&i| old_lines[i] != new_lines[i])
        .collect();
    assert_eq!(differ, vec![at], "only the metric line changed:\n{changed}");
    assert_eq!(new_lines[at], NEW_METRIC);
    assert_eq!(changed.ends_with('\n'), original.ends_with('\n'));
    let out = validate(&file);
    assert!(
        out.status.success(),
        "the changed file is valid: {}",
        show(&out)
    );

    let run = poll(Duration::from_secs(60), || async {
        get_run(admin.clone(), RUN).await.filter(|r| {
            !matches!(
                r.state(),
                v1::RunState::Running | v1::RunState::WaitingGate | v1::RunState::Pending
            )
        })
    })
    .await
    .unwrap_or_else(|| panic!("the optimizer run does not finish\n{}", sb.logs()));
    assert_eq!(
        run.state(),
        v1::RunState::Succeeded,
        "{run:?}\n{}",
        sb.logs()
    );

    let records = poll(Duration::from_secs(20), || async {
        let r: Vec<v1::StudioChangeApplied> =
            in_events(bus.as_ref(), subjects::STUDIO_CHANGE_APPLIED).await;
        (!r.is_empty()).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("no event.studio.changed in stream EVENTS\n{}", sb.logs()));
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = &records[0];
    assert_eq!(rec.approved_by, "creative_director");
    assert_eq!(rec.gate_id, gate_id);
    assert_eq!(rec.run_id, RUN);
    assert_eq!(rec.file, file.display().to_string());
    assert_eq!(rec.version, changes::version(&changed));
    assert_eq!(rec.changes.len(), 1, "{rec:?}");
    let c = &rec.changes[0];
    assert_eq!(c.key, KEY);
    assert_eq!(
        c.path,
        "triggers.event_based[0].on_performance_threshold.metric"
    );
    assert_eq!(c.old_value, "\"engagement_rate < 0.05\"");
    assert_eq!(c.new_value, "\"engagement_rate < 0.04\"");
    assert_eq!(c.why, "0.05 fired nine times last week on noise");
    assert_eq!(c.line as usize, at + 1);
    // The run says what was written and who approved it.
    let events: Vec<v1::RunEvent> = in_events(bus.as_ref(), &subjects::run_event(RUN)).await;
    let said: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        said.iter().any(|m| m.starts_with("studio changed")
            && m.contains("approved by creative_director")
            && m.contains(&format!(
                "{KEY} \"engagement_rate < 0.05\" → \"engagement_rate < 0.04\" (line {})",
                at + 1
            ))),
        "the run's events: {said:#?}"
    );

    // 4. Without a restart: the scheduler, in the other process, lists the
    //    new predicate; the tracker and the scheduler fire on it.
    let after = poll(Duration::from_secs(20), || async {
        specs(admin.clone())
            .await
            .filter(|s| s.iter().any(|(_, spec)| spec.contains("0.04")))
    })
    .await
    .unwrap_or_else(|| panic!("the scheduler still lists {:?}\n{}", before, sb.logs()));
    assert_eq!(
        after,
        vec![
            (
                THRESHOLD.to_string(),
                "metric: engagement_rate < 0.04".into()
            ),
            (SCHEDULED.to_string(), "Monday 10:00".into()),
        ]
    );
    // Both processes handed the orchestrator's announcement to their
    // services (the reloader logs it once every service has it).
    let announced = "approved by creative_director (from orchestrator-";
    poll(Duration::from_secs(20), || async {
        ["front", "back"]
            .iter()
            .all(|p| sb.procs_log(p).contains(announced))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("a process did not take the change\n{}", sb.logs()));

    // Between the new threshold and the old one: no run.
    record(admin.clone(), 0.045).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = threshold_runs(admin.clone()).await.expect("runs");
    assert!(
        runs.is_empty(),
        "0.045 is not under the new threshold 0.04, yet it started {runs:?}\n\
         crossings: {}\n{}",
        crossings(&seen),
        sb.logs()
    );
    // Under it: one run of the threshold's workflow.
    record(admin.clone(), 0.03).await;
    let runs = poll(Duration::from_secs(30), || async {
        threshold_runs(admin.clone())
            .await
            .filter(|r| !r.is_empty())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "0.03 is under the new threshold 0.04, yet no run started; \
             the tracker's crossings: [{}]\n{}",
            crossings(&seen),
            sb.logs()
        )
    });
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].workflow, CHECK);
    let fired: Vec<v1::ThresholdCrossed> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.entered)
        .cloned()
        .collect();
    assert_eq!(fired.len(), 1, "one crossing: {}", crossings(&seen));
    assert_eq!(fired[0].predicate, "engagement_rate < 0.04");
    assert!((fired[0].value - 0.03).abs() < 1e-9, "{:?}", fired[0]);

    // 5. A file broken by hand: both processes log where, keep the studio
    //    they run; ReloadStudio says where too.
    let broken = changed.replace(OLD_TIME, BROKEN_TIME);
    assert_ne!(broken, changed);
    let time_line = broken
        .lines()
        .position(|l| l == BROKEN_TIME)
        .expect("the time line")
        + 1;
    std::fs::write(&file, &broken).unwrap();
    let place = format!("{}:{time_line}:", file.display());
    poll(Duration::from_secs(20), || async {
        (sb.procs_log("front").contains(&place) && sb.procs_log("back").contains(&place))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the processes did not log the broken file at {place}\n{}",
            sb.logs()
        )
    });
    for p in ["front", "back"] {
        let log = sb.procs_log(p);
        assert!(
            log.contains("the changed studio file is not valid; the running studio is kept"),
            "{p}: {log}"
        );
    }
    assert_eq!(
        specs(admin.clone()).await.expect("the scheduler answers"),
        after,
        "the running studio is kept"
    );
    let reload = admin
        .clone()
        .reload_studio(as_who(OPS, v1::ReloadStudioRequest::default()))
        .await
        .unwrap_or_else(|e| panic!("ReloadStudio: {e}\n{}", sb.logs()))
        .into_inner();
    assert!(!reload.changed, "{reload:?}");
    assert_eq!(
        reload.version,
        changes::version(&changed),
        "the approved version still runs"
    );
    assert!(
        reload.problems.iter().any(|p| p.starts_with(&place)),
        "a problem at {place}: {:?}",
        reload.problems
    );
    let out = validate(&file);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // Only an admin may reload.
    let denied = admin
        .clone()
        .reload_studio(as_who(CREATIVE, v1::ReloadStudioRequest::default()))
        .await
        .expect_err("creative_director is not an admin");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    // The tracker still takes values, the scheduler still answers.
    record(admin.clone(), 0.06).await;
    assert_eq!(specs(admin.clone()).await.expect("the scheduler"), after);
}
