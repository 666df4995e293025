//! Quality gates with `batch:` in the orchestrator's state machine, on a
//! controlled clock: gates of one kind opened within the window join the
//! first one; its decision covers them all; a member decided alone leaves the
//! batch; the batch follows the first gate's SLA; a first gate closed with its
//! run hands the batch to the next; a restart keeps the batch.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{DecisionKind, Effects, Engine, Limits, SLA_POLICY};
use concierto_proto::v1;

const HOUR: i64 = 3600;

fn studio(dir: &tempfile::TempDir, on_breach: &str, batch: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Gate batch test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  brand_manager: {{ name: "Brand Manager", escalation: [creative_director] }}
  creative_director: {{ name: "Creative Director" }}
workflows:
  concept:
    description: "A concept that may change the brand, then its build."
    steps:
      - id: concept
        role: visual-storyteller
        task: "Propose a concept."
        inputs: [trigger]
        labels: [major_brand_changes]
      - id: build
        role: ui-designer
        task: "Build it."
        inputs: [concept]
        review: none
    on_failure:
      role: studio-orchestrator
      task: "Say it was stopped."
feedback_loops:
  agent_to_human:
    - quality_gates:
        - brand_approval:
            threshold: "major_brand_changes"
            reviewers: ["brand_manager"]
            sla: "4 hours"
            on_breach: {on_breach}
            batch: "{batch}"
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

fn start(run_id: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: "concept".into(),
        trigger: "test".into(),
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

fn gate_id(run: &str) -> String {
    format!("{run}/concept/brand_approval/1")
}

fn engine(st: Arc<Studio>, store: Arc<dyn KvStore>, now: DateTime<Utc>) -> Engine {
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(now).unwrap();
    e
}

/// Starts `runs` and finishes each one's concept step `step` seconds apart
/// from `at`: the effects of each result, in order.
fn open(e: &mut Engine, runs: &[&str], at: i64, step: i64) -> Vec<Effects> {
    let mut tasks = Vec::new();
    for r in runs {
        tasks.push(one(&e.start_run(start(r), t(at)).unwrap()));
    }
    tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let when = at + step * (i as i64 + 1);
            e.apply_result(ok(task, &format!("concept of {}", task.run_id)), t(when))
                .unwrap()
        })
        .collect()
}

fn gate(e: &Engine, id: &str) -> v1::Gate {
    e.get_gate(id).unwrap().expect("the gate exists")
}

fn state(e: &Engine, run: &str) -> v1::RunState {
    e.get(run).unwrap().expect("the run exists").state()
}

#[test]
fn gates_of_one_kind_join_the_first_and_its_approval_covers_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold", "2 hours"), store, t(0));
    let runs = ["r1", "r2", "r3", "r4", "r5"];
    let fxs = open(&mut e, &runs, 0, 60);
    let leader = gate_id("r1");
    // The first opens (its reviewers are told); the others join it.
    assert_eq!(kinds(&fxs[0]), ["opened"]);
    for (i, fx) in fxs.iter().enumerate().skip(1) {
        assert_eq!(kinds(fx), ["joined"], "run {}", runs[i]);
        assert!(fx.tasks.is_empty(), "the run waits");
        let g = &fx.gates[0].1;
        assert_eq!(g.batch_of, leader);
        assert_eq!(g.batch_size, i as u32 + 1, "the batch grows");
        // The member's SLA is its first gate's.
        assert_eq!(
            g.request.as_ref().unwrap().due_at.unwrap().seconds,
            t(60 + 4 * HOUR).timestamp()
        );
        assert!(
            fx.events.iter().any(|ev| ev
                .message
                .contains(&format!("joined the batch of gate {leader}"))),
            "{:?}",
            fx.events
        );
    }
    let l = gate(&e, &leader);
    assert_eq!((l.batch_of.as_str(), l.batch_size), ("", 5));
    let summary = &l.request.as_ref().unwrap().summary;
    assert!(summary.contains("batch of 5"), "{summary}");
    assert!(summary.contains(&gate_id("r2")), "{summary}");
    let listed = e
        .list_gates(&v1::ListGatesRequest {
            state: v1::GateState::Open as i32,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.gates.len(), 5);
    assert_eq!(
        listed
            .gates
            .iter()
            .filter(|g| g.batch_of == leader && g.batch_size == 5)
            .count(),
        4
    );

    // r5 decided alone: it goes on, and leaves the batch.
    let (g5, fx) = e
        .decide_gate(
            &gate_id("r5"),
            "brand_manager",
            DecisionKind::Approve,
            "This one is fine.",
            t(400),
        )
        .unwrap();
    assert_eq!(g5.state(), v1::GateState::Approved);
    assert_eq!((g5.batch_of.as_str(), g5.batch_size), ("", 0));
    assert_eq!(kinds(&fx), ["decided"]);
    let build5 = one(&fx);
    assert_eq!(build5.run_id, "r5");
    assert_eq!(gate(&e, &leader).batch_size, 4);

    // The first gate approved: the other three are too, as if decided themselves.
    let (g1, fx) = e
        .decide_gate(
            &leader,
            "brand_manager",
            DecisionKind::Approve,
            "On brand.",
            t(500),
        )
        .unwrap();
    assert_eq!(g1.state(), v1::GateState::Approved);
    assert_eq!(kinds(&fx), ["decided"; 4]);
    let mut built: Vec<String> = fx.tasks.iter().map(|t| t.run_id.clone()).collect();
    built.sort();
    assert_eq!(built, ["r1", "r2", "r3", "r4"]);
    assert!(fx.tasks.iter().all(|t| t.step_id == "build"));
    for r in ["r2", "r3", "r4"] {
        let g = gate(&e, &gate_id(r));
        assert_eq!(g.state(), v1::GateState::Approved);
        assert_eq!(g.batch_of, leader, "decided with its batch");
        let d = &g.decisions[0];
        assert_eq!(
            (d.reviewer.as_str(), d.notes.as_str(), d.automatic),
            ("brand_manager", "On brand.", false)
        );
    }
    assert_eq!(e.open_gates(), 0);
    for task in fx.tasks.iter().chain([&build5]) {
        e.apply_result(ok(task, "built"), t(600)).unwrap();
    }
    for r in runs {
        assert_eq!(state(&e, r), v1::RunState::Succeeded, "{r}");
    }
}

#[test]
fn a_rejection_or_a_request_for_changes_on_the_first_gate_reaches_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold", "2 hours"), store, t(0));
    open(&mut e, &["a1", "a2", "a3"], 0, 10);
    let (_, fx) = e
        .decide_gate(
            &gate_id("a1"),
            "brand_manager",
            DecisionKind::RequestChanges,
            "Keep the old logo.",
            t(100),
        )
        .unwrap();
    let revisions: Vec<&v1::Task> = fx.tasks.iter().collect();
    assert_eq!(revisions.len(), 3, "{revisions:?}");
    for r in &revisions {
        assert_eq!(r.step_id, "concept/changes-2");
        let notes = &r.review.as_ref().unwrap().notes;
        assert!(notes.contains("Keep the old logo."), "{notes}");
    }
    // The revisions open round 2: a batch again, under the first to come back.
    let mut kinds_seen = Vec::new();
    for (i, r) in revisions.iter().enumerate() {
        let fx = e
            .apply_result(ok(r, "old logo kept"), t(200 + i as i64))
            .unwrap();
        kinds_seen.extend(kinds(&fx));
    }
    assert_eq!(kinds_seen, ["opened", "joined", "joined"]);
    let leader2 = "a1/concept/brand_approval/2";
    let (_, fx) = e
        .decide_gate(
            leader2,
            "brand_manager",
            DecisionKind::Reject,
            "No.",
            t(300),
        )
        .unwrap();
    // Every run takes its failure path.
    let failures: Vec<&v1::Task> = fx.tasks.iter().collect();
    assert_eq!(failures.len(), 3);
    assert!(failures.iter().all(|f| f.role == "studio-orchestrator"));
    for f in failures {
        assert!(
            f.instruction.contains("by brand_manager: No."),
            "{}",
            f.instruction
        );
        e.apply_result(ok(f, "told"), t(400)).unwrap();
    }
    for r in ["a1", "a2", "a3"] {
        assert_eq!(state(&e, r), v1::RunState::Failed, "{r}");
    }
}

#[test]
fn only_gates_within_the_window_and_the_first_gates_sla_join() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold", "2 hours"), store, t(0));
    let fx = open(&mut e, &["w1"], 0, 1);
    assert_eq!(kinds(&fx[0]), ["opened"]);
    // 2 hours after w1's gate opened: the window is over, w2 opens alone.
    let fx = open(&mut e, &["w2"], 2 * HOUR, 1);
    assert_eq!(kinds(&fx[0]), ["opened"]);
    let w2 = gate(&e, &gate_id("w2"));
    assert_eq!((w2.batch_of.as_str(), w2.batch_size), ("", 0));
    // w3 within w2's window (w1's is over) joins w2.
    let fx = open(&mut e, &["w3"], 2 * HOUR + 60, 1);
    assert_eq!(kinds(&fx[0]), ["joined"]);
    assert_eq!(fx[0].gates[0].1.batch_of, gate_id("w2"));

    // A window longer than the SLA: once the first gate is past its SLA,
    // a new gate opens alone rather than join an overdue batch.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold", "1 day"), store, t(0));
    open(&mut e, &["d1"], 0, 1);
    let fx = open(&mut e, &["d2"], 3 * HOUR, 1);
    assert_eq!(kinds(&fx[0]), ["joined"], "within the SLA");
    e.tick(t(4 * HOUR + 1)).unwrap();
    let fx = open(&mut e, &["d3"], 5 * HOUR, 1);
    assert_eq!(kinds(&fx[0]), ["opened"], "past the first gate's SLA");
}

#[test]
fn the_batch_follows_its_first_gates_sla_and_breach_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "approve", "2 hours"), store, t(0));
    let half = HOUR / 2;
    open(&mut e, &["s1", "s2", "s3"], 0, half);
    // The first gate opened at 0.5 h: reminders at 2.5 h and 4.1 h, due at
    // 4.5 h. The members' own times (due at 5 h and 5.5 h) are not used.
    let fx = e.tick(t(half + 2 * HOUR)).unwrap();
    assert_eq!(kinds(&fx), ["reminder"]);
    assert_eq!(
        fx.gates[0].1.request.as_ref().unwrap().gate_id,
        gate_id("s1")
    );
    assert!(kinds(&e.tick(t(3 * HOUR)).unwrap()).is_empty());
    let fx = e.tick(t(half + 4 * HOUR)).unwrap();
    assert_eq!(kinds(&fx), ["escalated", "decided", "decided", "decided"]);
    for r in ["s1", "s2", "s3"] {
        let g = gate(&e, &gate_id(r));
        assert_eq!(g.state(), v1::GateState::Approved, "{r}");
        assert_eq!(g.decisions[0].reviewer, SLA_POLICY);
        assert!(g.decisions[0].automatic);
    }
    assert_eq!(fx.tasks.len(), 3, "every run goes on to its build");
    assert!(
        kinds(&e.tick(t(7 * HOUR)).unwrap()).is_empty(),
        "no member's own timer fires later"
    );
}

#[test]
fn an_escalation_contact_may_decide_a_member_once_the_batch_is_escalated() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, "hold", "2 hours"), store, t(0));
    open(&mut e, &["x1", "x2"], 0, 60);
    assert!(
        e.decide_gate(
            &gate_id("x2"),
            "creative_director",
            DecisionKind::Approve,
            "",
            t(120)
        )
        .is_err(),
        "not before the SLA passed"
    );
    e.tick(t(60 + 4 * HOUR)).unwrap();
    let (g, _) = e
        .decide_gate(
            &gate_id("x2"),
            "creative_director",
            DecisionKind::Approve,
            "Escalated to me.",
            t(5 * HOUR),
        )
        .unwrap();
    assert_eq!(g.state(), v1::GateState::Approved);
    assert_eq!(gate(&e, &gate_id("x1")).batch_size, 0, "x1 is alone again");
}

#[test]
fn a_first_gate_closed_with_its_run_hands_the_batch_to_the_next_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let st = studio(&dir, "hold", "2 hours");
    let mut e = engine(st.clone(), store.clone(), t(0));
    open(&mut e, &["c1", "c2", "c3", "c4"], 0, 60);
    let (_, fx) = e.cancel("c1", "dropped", t(300)).unwrap();
    // c1's gate is closed; c2 leads c3 and c4 on c1's clock, and is announced.
    assert_eq!(kinds(&fx), ["decided", "opened"]);
    let new = &fx.gates[1].1;
    let req = new.request.as_ref().unwrap();
    assert_eq!(req.gate_id, gate_id("c2"));
    assert_eq!(new.batch_size, 3);
    assert_eq!(req.due_at.unwrap().seconds, t(60 + 4 * HOUR).timestamp());
    assert_eq!(gate(&e, &gate_id("c3")).batch_of, gate_id("c2"));

    // A restart keeps the batch: approving c2 still covers c3 and c4.
    drop(e);
    let mut e = engine(st, store, t(400));
    assert_eq!(e.open_gates(), 3);
    assert_eq!(gate(&e, &gate_id("c4")).batch_of, gate_id("c2"));
    let (_, fx) = e
        .decide_gate(
            &gate_id("c2"),
            "brand_manager",
            DecisionKind::Approve,
            "",
            t(500),
        )
        .unwrap();
    assert_eq!(kinds(&fx), ["decided"; 3]);
    assert_eq!(fx.tasks.len(), 3);
    assert_eq!(e.open_gates(), 0);
}
