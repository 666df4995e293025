//! A trigger's `agents` in the orchestrator's state machine: in a run the
//! trigger started, a workflow step whose role is not listed is skipped with
//! its reason and the run goes on; fires by hand, runs without the trigger,
//! review loops and the failure step are not restricted.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Effects, Engine, Limits};
use concierto_proto::v1;

fn studio(dir: &tempfile::TempDir) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Trigger agents test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  two:
    description: "Research, then write."
    steps:
      - id: a
        role: trend-researcher
        task: "Research."
        inputs: [trigger]
      - id: b
        role: support-responder
        task: "Write from the research."
        inputs: [a]
    on_failure:
      role: studio-orchestrator
      task: "Say what failed."
  reviewed:
    description: "A reviewed draft, then a note by a role the trigger does not list."
    steps:
      - id: draft
        role: content-creator
        task: "Draft."
        inputs: [trigger]
      - id: note
        role: support-responder
        task: "Note."
        inputs: [draft]
feedback_loops:
  agent_to_agent:
    - creator_to_reviewer:
        producer: [content-creator]
        reviewer: [brand-guardian]
        cycle_time: "immediate"
triggers:
  scheduled:
    - first_only:
        time: "09:00"
        agents: [trend-researcher]
        workflow: "two"
    - second_only:
        time: "10:00"
        agents: [support-responder]
        workflow: "two"
    - drafts:
        time: "11:00"
        agents: [content-creator]
        workflow: "reviewed"
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

fn start(run_id: &str, workflow: &str, trigger: &str, requested_by: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: workflow.into(),
        trigger: trigger.into(),
        requested_by: requested_by.into(),
        ..Default::default()
    }
}

fn ok(task: &v1::Task, output: &str) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: format!("{}.w1", task.role),
        status: v1::TaskStatus::Succeeded as i32,
        output: output.into(),
        verdict: Some(v1::Verdict {
            pass: true,
            score: 0.95,
            notes: String::new(),
            reasons: Vec::new(),
        }),
        ..Default::default()
    }
}

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

fn engine(dir: &tempfile::TempDir) -> Engine {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(dir), store, Limits::default());
    e.recover(t(0)).unwrap();
    e
}

fn run(e: &Engine, id: &str) -> v1::Run {
    e.get(id).unwrap().expect("the run exists")
}

fn step<'a>(r: &'a v1::Run, id: &str) -> &'a v1::RunStep {
    r.steps
        .iter()
        .find(|s| s.step_id == id)
        .unwrap_or_else(|| panic!("no step {id}: {r:?}"))
}

#[test]
fn a_step_whose_role_the_trigger_does_not_list_is_skipped_and_the_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(&dir);
    let a = one(&e
        .start_run(start("r1", "two", "first_only", "scheduler"), t(0))
        .unwrap());
    assert_eq!(a.step_id, "a");
    let fx = e.apply_result(ok(&a, "research"), t(10)).unwrap();
    assert!(fx.tasks.is_empty(), "b is not dispatched: {:?}", fx.tasks);
    let reason = "role support-responder is not among trigger first_only's agents";
    let skipped = fx
        .events
        .iter()
        .find(|ev| ev.step_id == "b")
        .expect("an event for b");
    assert_eq!(skipped.message, format!("skipped: {reason}"));
    assert_eq!(skipped.step_state, v1::StepState::Skipped as i32);
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.step_id.is_empty() && ev.message == "run succeeded"),
        "{:?}",
        fx.events
    );
    let r = run(&e, "r1");
    assert_eq!(r.state(), v1::RunState::Succeeded);
    assert_eq!(step(&r, "a").state(), v1::StepState::Succeeded);
    let b = step(&r, "b");
    assert_eq!(b.state(), v1::StepState::Skipped);
    assert_eq!(b.error, reason);
    assert_eq!(b.attempt, 0, "never dispatched");
}

#[test]
fn a_skipped_first_step_hands_the_next_its_empty_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(&dir);
    let fx = e
        .start_run(start("r2", "two", "second_only", "scheduler"), t(0))
        .unwrap();
    let b = one(&fx);
    assert_eq!(b.step_id, "b");
    assert_eq!(b.inputs[0].name, "a");
    assert_eq!(b.inputs[0].content, "", "a skipped step made nothing");
    e.apply_result(ok(&b, "written"), t(10)).unwrap();
    let r = run(&e, "r2");
    assert_eq!(r.state(), v1::RunState::Succeeded);
    assert_eq!(step(&r, "a").state(), v1::StepState::Skipped);
}

#[test]
fn fires_by_hand_and_runs_without_the_trigger_run_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(&dir);
    for (id, trigger, by) in [
        ("by-hand", "first_only", "admin"),
        ("started", "", "admin:ops"),
        ("unknown-trigger", "report:daily_output", "scheduler"),
    ] {
        let a = one(&e.start_run(start(id, "two", trigger, by), t(0)).unwrap());
        let b = one(&e.apply_result(ok(&a, "research"), t(10)).unwrap());
        assert_eq!(
            (b.step_id.as_str(), b.inputs[0].content.as_str()),
            ("b", "research"),
            "{id}"
        );
        e.apply_result(ok(&b, "written"), t(20)).unwrap();
        assert_eq!(run(&e, id).state(), v1::RunState::Succeeded, "{id}");
    }
}

#[test]
fn review_loops_and_the_failure_step_are_not_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = engine(&dir);
    // content-creator's draft is reviewed by brand-guardian, whom the trigger
    // does not list: the review runs; the note (support-responder) is skipped.
    let draft = one(&e
        .start_run(start("r3", "reviewed", "drafts", "scheduler"), t(0))
        .unwrap());
    let review = one(&e.apply_result(ok(&draft, "the draft"), t(10)).unwrap());
    assert_eq!(review.role, "brand-guardian");
    let fx = e
        .apply_result(ok(&review, "{\"pass\": true}"), t(20))
        .unwrap();
    assert!(fx.tasks.is_empty(), "{:?}", fx.tasks);
    let r = run(&e, "r3");
    assert_eq!(r.state(), v1::RunState::Succeeded);
    assert_eq!(step(&r, "note").state(), v1::StepState::Skipped);

    // The failure step (studio-orchestrator, not listed) runs when a step fails.
    let a = one(&e
        .start_run(start("r4", "two", "first_only", "scheduler"), t(0))
        .unwrap());
    let failed = v1::TaskResult {
        status: v1::TaskStatus::Failed as i32,
        error: "no sources".into(),
        ..ok(&a, "")
    };
    let f = one(&e.apply_result(failed, t(10)).unwrap());
    assert_eq!(f.role, "studio-orchestrator");
    e.apply_result(ok(&f, "told"), t(20)).unwrap();
    let r = run(&e, "r4");
    assert_eq!(r.state(), v1::RunState::Failed);
    assert_eq!(step(&r, "b").state(), v1::StepState::Cancelled);
}
