//! Change gates (`studio_change`) against batching: a change is approved only
//! as the reviewer saw it, so a change gate's approval never carries the
//! changes of other gates batched with it.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{DecisionKind, Effects, Engine, EngineError, Limits};
use concierto_proto::v1;

fn studio(dir: &tempfile::TempDir) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Change gate test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  creative_director: {{ name: "Creative Director" }}
workflows:
  optimize:
    description: "Propose changes."
    steps:
      - id: optimize
        role: workflow-optimizer
        task: "Propose changes."
        inputs: [trigger]
        review: none
    on_failure:
      role: studio-orchestrator
      task: "Say it was stopped."
feedback_loops:
  agent_to_human:
    - quality_gates:
        - studio_change:
            threshold: "studio_change"
            reviewers: ["creative_director"]
            sla: "24 hours"
            batch: "2 hours"
"#,
        agents = agents.display()
    );
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn proposal(target: u32) -> String {
    format!(
        "Raise the target.\n\n```json\n{{\"changes\": [{{\"key\": \"progress_metrics.daily_output.target\", \"value\": {target}}}]}}\n```\n"
    )
}

fn run(e: &mut Engine, run_id: &str, output: &str, at: i64) -> Effects {
    let fx = e
        .start_run(
            v1::StartRun {
                run_id: run_id.into(),
                workflow: "optimize".into(),
                trigger: "test".into(),
                ..Default::default()
            },
            t(at),
        )
        .unwrap();
    let task = fx.tasks[0].clone();
    e.apply_result(
        v1::TaskResult {
            task_id: task.task_id.clone(),
            run_id: task.run_id.clone(),
            step_id: task.step_id.clone(),
            attempt: task.attempt,
            role: task.role.clone(),
            worker_id: "w1".into(),
            status: v1::TaskStatus::Succeeded as i32,
            output: output.into(),
            ..Default::default()
        },
        t(at + 10),
    )
    .unwrap()
}

fn gate_id(run: &str) -> String {
    format!("{run}/optimize/studio_change/1")
}

#[test]
fn a_batched_change_gate_is_not_approved_with_changes_its_reviewer_did_not_see() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(&dir), store, Limits::default());
    e.recover(t(0)).unwrap();
    run(&mut e, "r1", &proposal(8), 0);
    let fx = run(&mut e, "r2", &proposal(12), 60);
    // The second change gate joined the first (the studio batches the gate).
    assert_eq!(fx.gates[0].0, "joined", "{:?}", fx.gates);
    let (leader, member) = (gate_id("r1"), gate_id("r2"));

    // Approving the leader would approve r2's change too, without writing it
    // (only r1's proposals are applied): refused, the gates stay open.
    let e1 = e
        .change_to_apply(&leader, "creative_director", DecisionKind::Approve)
        .unwrap_err();
    match &e1 {
        EngineError::Invalid(m) => assert!(m.contains(&member), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.get_gate(&member).unwrap().unwrap().state(),
        v1::GateState::Open
    );

    // Each is approved on its own, with its own change.
    let (_, list) = e
        .change_to_apply(&member, "creative_director", DecisionKind::Approve)
        .unwrap()
        .unwrap();
    assert_eq!(list[0].value, serde_json::json!(12));
    e.decide_gate(
        &member,
        "creative_director",
        DecisionKind::Approve,
        "",
        t(200),
    )
    .unwrap();
    let (_, list) = e
        .change_to_apply(&leader, "creative_director", DecisionKind::Approve)
        .unwrap()
        .unwrap();
    assert_eq!(list[0].value, serde_json::json!(8));
    // Rejecting a batch of changes writes nothing: allowed as one decision.
    assert!(
        e.change_to_apply(&leader, "creative_director", DecisionKind::Reject)
            .unwrap()
            .is_none()
    );
}
