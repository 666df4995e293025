//! A small studio and helpers for the history and retry tests.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_orchestrator::Effects;
use concierto_proto::v1;

/// `plain` (a → b → c, no failure path), `guarded` (one step and a failure
/// path), `gated` (an output labelled for a quality gate).
pub fn studio_with(dir: &std::path::Path, plain_steps: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "History test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  creative_director: {{ name: "Creative Director" }}
workflows:
  plain:
    description: "Three steps, nothing on failure."
    steps:
{plain_steps}
  guarded:
    description: "One step and a failure path."
    steps:
      - id: only
        role: trend-researcher
        task: "Research."
        inputs: [trigger]
    on_failure:
      role: studio-orchestrator
      task: "Say what failed."
  gated:
    description: "A launch copy people approve."
    steps:
      - id: copy
        role: content-creator
        task: "Write the launch copy."
        inputs: [trigger]
        labels: [campaign_launch]
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
        agents = agents.display()
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

pub const PLAIN: &str = r#"      - id: a
        role: trend-researcher
        task: "Research."
        inputs: [trigger]
      - id: b
        role: support-responder
        task: "Write from the research."
        inputs: [a]
      - id: c
        role: studio-orchestrator
        task: "Announce it."
        inputs: [b]"#;

pub fn studio(dir: &std::path::Path) -> Arc<Studio> {
    studio_with(dir, PLAIN)
}

pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

pub fn start(run_id: &str, workflow: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: workflow.into(),
        trigger: "nightly".into(),
        requested_by: "scheduler".into(),
        params: [("topic".to_string(), "Autumn launch".to_string())].into(),
        ..Default::default()
    }
}

pub fn ok(task: &v1::Task, output: &str) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: format!("{}.w1", task.role),
        status: v1::TaskStatus::Succeeded as i32,
        output: output.into(),
        ..Default::default()
    }
}

pub fn labelled(task: &v1::Task, output: &str, label: &str) -> v1::TaskResult {
    v1::TaskResult {
        labels: vec![label.to_string()],
        ..ok(task, output)
    }
}

pub fn failed(task: &v1::Task, error: &str) -> v1::TaskResult {
    v1::TaskResult {
        status: v1::TaskStatus::Failed as i32,
        error: error.into(),
        output: String::new(),
        ..ok(task, "")
    }
}

pub fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}
