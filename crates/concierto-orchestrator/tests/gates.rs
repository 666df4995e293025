//! Quality gates in the orchestrator's state machine on a controlled clock:
//! opening on a label, who may decide, approve / reject / request changes,
//! reminders before the SLA, escalation and the breach policy, restarts.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{DecisionKind, Effects, Engine, EngineError, Limits, SLA_POLICY};
use concierto_proto::v1;

const HOUR: i64 = 3600;

fn studio_yaml(on_breach: &str) -> String {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    format!(
        r#"
studio:
  name: "Gate test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  brand_manager: {{ name: "Brand Manager", escalation: [creative_director] }}
  creative_director: {{ name: "Creative Director", escalation: [brand_manager] }}
workflows:
  launch:
    description: "Write the launch copy, then announce it."
    steps:
      - id: copy
        role: content-creator
        task: "Write the campaign launch copy."
        inputs: [trigger]
        labels: [campaign_launch]
      - id: announce
        role: studio-orchestrator
        task: "Announce the launch."
        inputs: [copy]
    on_failure:
      role: studio-orchestrator
      task: "Tell the team the launch was stopped."
  concept:
    description: "A concept that may change the brand."
    steps:
      - id: concept
        role: visual-storyteller
        task: "Propose a concept."
        inputs: [trigger]
feedback_loops:
  agent_to_human:
    - quality_gates:
        - brand_approval:
            threshold: "major_brand_changes"
            reviewers: ["brand_manager"]
            sla: "4 hours"
            on_breach: {on_breach}
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
        agents = agents.display()
    )
}

fn studio(dir: &tempfile::TempDir, on_breach: &str) -> Arc<Studio> {
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, studio_yaml(on_breach)).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn start(run_id: &str, workflow: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: workflow.into(),
        trigger: "test".into(),
        ..Default::default()
    }
}

fn ok(task: &v1::Task, output: &str, labels: &[&str]) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: format!("{}.w1", task.role),
        status: v1::TaskStatus::Succeeded as i32,
        output: output.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..Default::default()
    }
}

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

fn kinds(fx: &Effects) -> Vec<&'static str> {
    fx.gates.iter().map(|(k, _)| *k).collect()
}

fn engine(st: Arc<Studio>, store: Arc<dyn KvStore>) -> Engine {
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(t(0)).unwrap();
    e
}

fn run(e: &Engine, id: &str) -> v1::Run {
    e.get(id).unwrap().expect("run exists")
}

#[test]
fn a_labelled_output_waits_for_its_reviewer_who_requests_changes_then_approves() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold"), store);
    let copy = one(&e.start_run(start("r1", "launch"), t(0)).unwrap());
    let fx = e
        .apply_result(ok(&copy, "Launch copy v1", &[]), t(10))
        .unwrap();
    assert!(fx.tasks.is_empty(), "the run waits: {:?}", fx.tasks);
    assert_eq!(kinds(&fx), ["opened"]);
    let gate = fx.gates[0].1.clone();
    let req = gate.request.clone().unwrap();
    let gate_id = req.gate_id.clone();
    assert_eq!(gate_id, "r1/copy/creative_review/1");
    assert_eq!(
        req.label, "campaign_launch",
        "the step's configured label opens it"
    );
    assert_eq!(req.reviewers, ["creative_director"]);
    assert_eq!(req.content, "Launch copy v1");
    assert_eq!(req.due_at.unwrap().seconds, t(10 + 24 * HOUR).timestamp());
    let r = run(&e, "r1");
    assert_eq!(r.state(), v1::RunState::WaitingGate);
    assert_eq!(r.steps[0].state(), v1::StepState::WaitingGate);

    // Someone who is not its reviewer may not decide it.
    let err = e
        .decide_gate(&gate_id, "brand_manager", DecisionKind::Approve, "", t(20))
        .unwrap_err();
    assert!(matches!(err, EngineError::NotReviewer { .. }), "{err}");
    assert!(matches!(
        e.decide_gate(
            "nope",
            "creative_director",
            DecisionKind::Approve,
            "",
            t(20)
        )
        .unwrap_err(),
        EngineError::NotFound(_)
    ));
    assert!(matches!(
        e.decide_gate(
            &gate_id,
            "creative_director",
            DecisionKind::RequestChanges,
            " ",
            t(20)
        )
        .unwrap_err(),
        EngineError::Invalid(_)
    ));

    // Changes requested: the producer revises with the notes.
    let (g, fx) = e
        .decide_gate(
            &gate_id,
            "creative_director",
            DecisionKind::RequestChanges,
            "Lead with the offer.",
            t(30),
        )
        .unwrap();
    assert_eq!(g.state(), v1::GateState::ChangesRequested);
    assert_eq!(g.decisions[0].reviewer, "creative_director");
    assert_eq!(g.decisions[0].notes, "Lead with the offer.");
    assert!(!g.decisions[0].automatic);
    let revise = one(&fx);
    assert_eq!(
        (revise.step_id.as_str(), revise.role.as_str()),
        ("copy/changes-2", "content-creator")
    );
    let ctx = revise.review.clone().unwrap();
    assert_eq!(ctx.action(), v1::ReviewAction::Revise);
    assert_eq!(ctx.draft, "Launch copy v1");
    assert!(ctx.notes.contains("Lead with the offer."), "{}", ctx.notes);
    // A decided gate cannot be decided again.
    assert!(matches!(
        e.decide_gate(
            &gate_id,
            "creative_director",
            DecisionKind::Approve,
            "",
            t(31)
        )
        .unwrap_err(),
        EngineError::GateClosed(..)
    ));

    // The revision opens the gate again, round 2, on the new output.
    let fx = e
        .apply_result(ok(&revise, "Launch copy v2: the offer first", &[]), t(40))
        .unwrap();
    assert_eq!(kinds(&fx), ["opened"]);
    let g2 = fx.gates[0].1.request.clone().unwrap();
    assert_eq!(g2.gate_id, "r1/copy/creative_review/2");
    assert_eq!(g2.round, 2);
    assert_eq!(g2.content, "Launch copy v2: the offer first");

    let (g, fx) = e
        .decide_gate(
            &g2.gate_id,
            "creative_director",
            DecisionKind::Approve,
            "Ship it.",
            t(50),
        )
        .unwrap();
    assert_eq!(g.state(), v1::GateState::Approved);
    let announce = one(&fx);
    assert_eq!(announce.step_id, "announce");
    assert_eq!(
        announce.inputs[0].content,
        "Launch copy v2: the offer first"
    );
    e.apply_result(ok(&announce, "announced", &[]), t(60))
        .unwrap();
    assert_eq!(run(&e, "r1").state(), v1::RunState::Succeeded);

    // Every decision is kept: list shows both gates with who, when and why.
    let all = e
        .list_gates(&v1::ListGatesRequest {
            run_id: "r1".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.gates.len(), 2);
    assert!(all.gates.iter().all(|g| g.decisions.len() == 1));
    assert_eq!(e.open_gates(), 0);
}

#[test]
fn a_rejection_sends_the_run_down_its_failure_path() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold"), store);
    let copy = one(&e.start_run(start("r1", "launch"), t(0)).unwrap());
    let fx = e.apply_result(ok(&copy, "v1", &[]), t(1)).unwrap();
    let id = fx.gates[0].1.request.clone().unwrap().gate_id;
    let (_, fx) = e
        .decide_gate(
            &id,
            "creative_director",
            DecisionKind::Reject,
            "Off strategy.",
            t(2),
        )
        .unwrap();
    let failure = one(&fx);
    assert_eq!(failure.role, "studio-orchestrator");
    assert!(
        failure.instruction.contains(
            "rejected at quality gate creative_review by creative_director: Off strategy."
        ),
        "{}",
        failure.instruction
    );
    e.apply_result(ok(&failure, "told the team", &[]), t(3))
        .unwrap();
    let r = run(&e, "r1");
    assert_eq!(r.state(), v1::RunState::Failed);
    assert!(r.error.contains("Off strategy."));
}

#[test]
fn an_unanswered_gate_reminds_then_escalates_at_its_sla_and_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let st = studio(&dir, "hold");
    let mut e = engine(st.clone(), store.clone());
    let copy = one(&e.start_run(start("r1", "launch"), t(0)).unwrap());
    let fx = e.apply_result(ok(&copy, "v1", &[]), t(0)).unwrap();
    let id = fx.gates[0].1.request.clone().unwrap().gate_id;

    // Default reminders: with half and a tenth of the SLA left (12 h, 21.6 h in).
    assert!(kinds(&e.tick(t(12 * HOUR - 1)).unwrap()).is_empty());
    let fx = e.tick(t(12 * HOUR)).unwrap();
    assert_eq!(kinds(&fx), ["reminder"]);
    assert_eq!(fx.gates[0].1.reminders, 1);
    assert!(
        kinds(&e.tick(t(12 * HOUR + 60)).unwrap()).is_empty(),
        "each reminder once"
    );

    // A restart keeps the gate and what it already sent.
    drop(e);
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(t(13 * HOUR)).unwrap();
    assert_eq!(e.open_gates(), 1);
    assert!(kinds(&e.tick(t(13 * HOUR)).unwrap()).is_empty());
    let fx = e.tick(t(21 * HOUR + 36 * 60)).unwrap();
    assert_eq!(kinds(&fx), ["reminder"]);
    assert_eq!(fx.gates[0].1.reminders, 2);

    // At the SLA: escalated once; `hold` keeps it open; the escalation contact may now decide.
    let fx = e.tick(t(24 * HOUR)).unwrap();
    assert_eq!(kinds(&fx), ["escalated"]);
    assert!(fx.gates[0].1.escalated);
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("escalated to brand_manager"))
    );
    assert!(kinds(&e.tick(t(25 * HOUR)).unwrap()).is_empty());
    let g = e.get_gate(&id).unwrap().unwrap();
    assert_eq!(g.state(), v1::GateState::Open);
    let (g, fx) = e
        .decide_gate(
            &id,
            "brand_manager",
            DecisionKind::Approve,
            "Approved while the director is away.",
            t(26 * HOUR),
        )
        .unwrap();
    assert_eq!(g.state(), v1::GateState::Approved);
    assert_eq!(one(&fx).step_id, "announce");
}

#[test]
fn a_breach_policy_of_reject_decides_automatically_at_the_sla() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "reject"), store);
    let concept = one(&e.start_run(start("c1", "concept"), t(0)).unwrap());
    // The executor labels the output: a change to the brand itself.
    let fx = e
        .apply_result(
            ok(&concept, "A new logo in teal", &["major_brand_changes"]),
            t(0),
        )
        .unwrap();
    let req = fx.gates[0].1.request.clone().unwrap();
    assert_eq!(req.gate, "brand_approval");
    assert_eq!(req.reviewers, ["brand_manager"]);
    let fx = e.tick(t(4 * HOUR)).unwrap();
    assert_eq!(kinds(&fx), ["escalated", "decided"]);
    let g = &fx.gates[1].1;
    assert_eq!(g.state(), v1::GateState::Rejected);
    assert!(g.decisions[0].automatic);
    assert_eq!(g.decisions[0].reviewer, SLA_POLICY);
    assert_eq!(run(&e, "c1").state(), v1::RunState::Failed);
}

#[test]
fn cancelling_a_waiting_run_closes_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold"), store);
    let copy = one(&e.start_run(start("r1", "launch"), t(0)).unwrap());
    let fx = e.apply_result(ok(&copy, "v1", &[]), t(1)).unwrap();
    let id = fx.gates[0].1.request.clone().unwrap().gate_id;
    let (_, fx) = e.cancel("r1", "campaign dropped", t(2)).unwrap();
    assert_eq!(kinds(&fx), ["decided"]);
    assert_eq!(e.open_gates(), 0);
    let g = e.get_gate(&id).unwrap().unwrap();
    assert_eq!(g.state(), v1::GateState::Rejected);
    assert!(g.decisions[0].automatic);
}
