//! Review loops attach by role (DESIGN.md section 7): a producer's step is
//! reviewed by its loop without `review:`, `review: none` opts out, a batched
//! loop does not hold an urgent run (its output joins the batch and the
//! verdict is recorded on the step, across a restart), and outputs of several
//! runs share one batch. Then the example studio: every role gets a task in a
//! workflow a seed trigger starts, and both loops run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Severity, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{BATCH_RUN_PREFIX, DecisionKind, Effects, Engine, Limits};
use concierto_proto::v1;

fn agents_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents")
}

fn studio_yaml() -> String {
    format!(
        r#"
studio:
  name: "Loops by role"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  post:
    description: "A draft and its visual; no `review:` key."
    steps:
      - id: draft
        role: content-creator
        task: "Draft a post."
        inputs: [trigger]
      - id: layout
        role: ui-designer
        task: "Lay it out."
        inputs: [draft]
  quick-post:
    description: "A draft that opts out of review."
    steps:
      - id: draft
        role: content-creator
        task: "Draft a post."
        inputs: [trigger]
        review: none
      - id: visual
        role: visual-storyteller
        task: "Brief the visual."
        inputs: [draft]
  fix:
    description: "Urgent: diagnose and fix."
    priority: urgent
    steps:
      - id: diagnose
        role: growth-hacker
        task: "Diagnose the drop."
        inputs: [trigger]
      - id: visual
        role: visual-storyteller
        task: "Brief the visual."
        inputs: [diagnose]
  experiment:
    description: "A normal-priority experiment; no `review:` key."
    steps:
      - id: run-experiment
        role: growth-hacker
        task: "Run an experiment."
        inputs: [trigger]
feedback_loops:
  agent_to_agent:
    - creator_to_reviewer:
        producer: [content-creator, ui-designer]
        reviewer: [brand-guardian, test-writer-fixer]
        cycle_time: "immediate"
    - experimenter_to_optimizer:
        producer: [growth-hacker, experiment-tracker]
        reviewer: [analytics-reporter, workflow-optimizer]
        cycle_time: "24 hours"
"#,
        agents = agents_dir().display()
    )
}

fn studio(dir: &tempfile::TempDir, yaml: &str) -> Arc<Studio> {
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

const HOUR: i64 = 3600;

fn start(run_id: &str, workflow: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: workflow.into(),
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

fn pass(task: &v1::Task) -> v1::TaskResult {
    v1::TaskResult {
        verdict: Some(v1::Verdict {
            pass: true,
            score: 0.95,
            notes: "fine".into(),
            reasons: Vec::new(),
        }),
        ..ok(task, "{\"pass\": true, \"score\": 0.95}")
    }
}

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

fn run(e: &Engine, id: &str) -> v1::Run {
    e.get(id).unwrap().expect("run exists")
}

fn step<'a>(r: &'a v1::Run, id: &str) -> &'a v1::RunStep {
    r.steps
        .iter()
        .find(|s| s.step_id == id)
        .unwrap_or_else(|| panic!("step {id}"))
}

fn engine(studio: Arc<Studio>, store: Arc<dyn KvStore>) -> Engine {
    let mut e = Engine::new(studio, store, Limits::default());
    e.recover(t(0)).unwrap();
    e
}

#[test]
fn a_producer_role_is_reviewed_by_its_loop_without_a_review_key() {
    let dir = tempfile::tempdir().unwrap();
    let st = studio(&dir, &studio_yaml());
    assert_eq!(
        st.workflows["post"].steps[0].review.as_deref(),
        Some("creator_to_reviewer")
    );
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(st, store);
    let draft = one(&e.start_run(start("p1", "post"), t(0)).unwrap());
    // The draft goes to content-creator's paired reviewer, not on to layout.
    let review = one(&e.apply_result(ok(&draft, "A calm post."), t(1)).unwrap());
    assert_eq!(review.role, "brand-guardian");
    assert_eq!(review.step_id, "draft/review-1/brand-guardian");
    assert_eq!(
        step(&run(&e, "p1"), "draft").state(),
        v1::StepState::InReview
    );
    let layout = one(&e.apply_result(pass(&review), t(2)).unwrap());
    assert_eq!(layout.step_id, "layout");
    // ui-designer is the loop's second producer: test-writer-fixer reviews it.
    let review = one(&e.apply_result(ok(&layout, "Two columns."), t(3)).unwrap());
    assert_eq!(review.role, "test-writer-fixer");
    e.apply_result(pass(&review), t(4)).unwrap();
    let r = run(&e, "p1");
    assert_eq!(r.state(), v1::RunState::Succeeded);
    assert_eq!(step(&r, "draft").review_rounds, 1);
    assert_eq!(step(&r, "layout").review_rounds, 1);
}

#[test]
fn review_none_opts_a_producer_step_out() {
    let dir = tempfile::tempdir().unwrap();
    let st = studio(&dir, &studio_yaml());
    assert_eq!(st.workflows["quick-post"].steps[0].review, None);
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(st, store);
    let draft = one(&e.start_run(start("q1", "quick-post"), t(0)).unwrap());
    let next = one(&e.apply_result(ok(&draft, "A quick post."), t(1)).unwrap());
    assert_eq!(
        (next.step_id.as_str(), next.role.as_str()),
        ("visual", "visual-storyteller")
    );
    e.apply_result(ok(&next, "Blue."), t(2)).unwrap();
    let r = run(&e, "q1");
    assert_eq!(r.state(), v1::RunState::Succeeded);
    assert_eq!(step(&r, "draft").review_rounds, 0);
    assert!(!r.steps.iter().any(|s| s.step_id.contains("/review-")));
}

#[test]
fn a_loop_named_none_is_refused_and_a_role_in_two_loops_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = studio_yaml()
        .replace("    - creator_to_reviewer:", "    - none:")
        .replace(
            "producer: [growth-hacker, experiment-tracker]",
            "producer: [growth-hacker, experiment-tracker, ui-designer]",
        );
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let checked = config::check_with_env(&path, Vec::new());
    assert!(checked.studio.is_none());
    let refused = checked
        .problems
        .iter()
        .find(|p| p.severity == Severity::Error && p.message.contains("may not be named \"none\""))
        .unwrap_or_else(|| panic!("{:?}", checked.problems));
    assert!(refused.key.starts_with("feedback_loops.agent_to_agent[0]"));
    let warned = checked
        .problems
        .iter()
        .find(|p| p.severity == Severity::Warning && p.message.contains("producer of 2 loops"))
        .unwrap_or_else(|| panic!("{:?}", checked.problems));
    assert_eq!(warned.key, "workflows.post.steps[1].role");
}

#[test]
fn an_urgent_run_is_not_held_by_a_batched_loop_and_gets_the_verdict_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let st = studio(&dir, &studio_yaml());
    let mut e = engine(st.clone(), store.clone());

    // The urgent run goes on at once and finishes.
    let diagnose = one(&e.start_run(start("u1", "fix"), t(0)).unwrap());
    let fx = e
        .apply_result(ok(&diagnose, "engagement fell on Mondays"), t(1))
        .unwrap();
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("this urgent run does not wait")),
        "{:?}",
        fx.events
    );
    let visual = one(&fx);
    assert_eq!(visual.step_id, "visual");
    e.apply_result(ok(&visual, "Red."), t(2)).unwrap();
    assert_eq!(run(&e, "u1").state(), v1::RunState::Succeeded);

    // A normal run's output of the same loop, an hour later, is held.
    let held = one(&e.start_run(start("n1", "experiment"), t(HOUR)).unwrap());
    assert!(
        e.apply_result(ok(&held, "A/B on titles: +2%"), t(HOUR + 1))
            .unwrap()
            .tasks
            .is_empty()
    );
    assert_eq!(
        step(&run(&e, "n1"), "run-experiment").state(),
        v1::StepState::InReview
    );

    // A restart before the batch closes loses neither output.
    drop(e);
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(t(2 * HOUR)).unwrap();
    assert!(e.tick(t(24 * HOUR - 1)).unwrap().tasks.is_empty());

    // One batch, one cycle after the first output (the urgent one) joined.
    let batch = one(&e.tick(t(24 * HOUR + 1)).unwrap());
    assert!(
        batch
            .run_id
            .starts_with(&format!("{BATCH_RUN_PREFIX}experimenter_to_optimizer@")),
        "{}",
        batch.run_id
    );
    assert_eq!(batch.role, "analytics-reporter");
    let names: Vec<&str> = batch.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["u1/diagnose", "n1/run-experiment"]);
    assert!(batch.inputs[0].content.contains("Mondays"));

    let answer = r#"{"items": [
        {"subject": "u1/diagnose", "pass": false, "score": 0.5, "notes": "no control group"},
        {"subject": "n1/run-experiment", "pass": true, "score": 0.9}
    ]}"#;
    let fx = e
        .apply_result(ok(&batch, answer), t(24 * HOUR + 60))
        .unwrap();
    // The held run succeeds; the urgent one is not revised (it ended long ago)
    // but its step keeps the verdict.
    assert!(fx.tasks.is_empty(), "no revision: {:?}", fx.tasks);
    assert_eq!(run(&e, "n1").state(), v1::RunState::Succeeded);
    let u1 = run(&e, "u1");
    assert_eq!(u1.state(), v1::RunState::Succeeded);
    let d = step(&u1, "diagnose");
    assert_eq!(d.review_rounds, 1);
    let v = d.verdict.as_ref().expect("the late verdict is recorded");
    assert!(!v.pass);
    assert!((v.score - 0.5).abs() < 1e-9);
    assert!(fx.events.iter().any(|ev| ev.run_id == "u1"
        && ev.message.contains("did not wait")
        && ev.message.contains("no control group")));
    let scores: Vec<f64> = fx
        .metrics
        .iter()
        .filter(|m| m.metric == "quality_score")
        .map(|m| m.value)
        .collect();
    assert_eq!(scores.len(), 2, "{:?}", fx.metrics);
    assert_eq!(e.live_runs(), 0);
}

#[test]
fn outputs_of_runs_without_a_review_key_share_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir, &studio_yaml()), store);
    for (i, id) in ["x1", "x2"].iter().enumerate() {
        let at = i as i64 * 5 * HOUR;
        let task = one(&e.start_run(start(id, "experiment"), t(at)).unwrap());
        assert!(
            e.apply_result(ok(&task, &format!("experiment {id}")), t(at + 1))
                .unwrap()
                .tasks
                .is_empty()
        );
    }
    let batch = one(&e.tick(t(24 * HOUR + 1)).unwrap());
    assert_eq!(batch.inputs.len(), 2);
    let answer = r#"{"items": [
        {"subject": "x1/run-experiment", "pass": true, "score": 0.9},
        {"subject": "x2/run-experiment", "pass": true, "score": 0.95}
    ]}"#;
    e.apply_result(ok(&batch, answer), t(24 * HOUR + 2))
        .unwrap();
    for id in ["x1", "x2"] {
        let r = run(&e, id);
        assert_eq!(r.state(), v1::RunState::Succeeded, "{id}");
        assert_eq!(step(&r, "run-experiment").review_rounds, 1);
    }
}

fn example() -> Arc<Studio> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/concierto.yaml");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("the example studio loads"))
}

/// The roles a task goes to when every step of `workflow` runs: its steps and
/// the reviewers of the loops they are reviewed by.
fn roles_at_work(s: &Studio, workflow: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for st in &s.workflows[workflow].steps {
        out.insert(st.role.clone());
        let Some(l) = st.review.as_ref().and_then(|n| {
            s.feedback_loops
                .agent_to_agent
                .iter()
                .find(|l| &l.name == n)
        }) else {
            continue;
        };
        match l.producers.iter().position(|p| p == &st.role) {
            Some(i) if l.reviewers.len() == l.producers.len() => {
                out.insert(l.reviewers[i].clone());
            }
            _ => out.extend(l.reviewers.iter().cloned()),
        }
    }
    out
}

#[test]
fn the_example_studio_gives_every_role_a_step_and_every_loop_a_producer_step() {
    let s = example();
    let triggered: BTreeSet<&str> = s.triggers.iter().map(|t| t.workflow.as_str()).collect();
    let mut by_step = BTreeSet::new();
    for wf in &triggered {
        by_step.extend(s.workflows[*wf].steps.iter().map(|st| st.role.clone()));
    }
    let mut at_work = BTreeSet::new();
    for wf in &triggered {
        at_work.extend(roles_at_work(&s, wf));
    }
    let all: BTreeSet<String> = s.roles.keys().cloned().collect();
    assert_eq!(all.len(), 20);
    // Every role but the loops' pure reviewer does a step of a triggered workflow…
    let no_step: Vec<&String> = all.difference(&by_step).collect();
    assert_eq!(no_step, ["test-writer-fixer"], "roles without a step");
    // …and every role gets a task: test-writer-fixer reviews ui-designer's step.
    assert_eq!(at_work, all);
    for l in &s.feedback_loops.agent_to_agent {
        let producer_steps: Vec<String> = triggered
            .iter()
            .flat_map(|wf| {
                s.workflows[*wf]
                    .steps
                    .iter()
                    .filter(|st| st.review.as_deref() == Some(l.name.as_str()))
                    .map(move |st| format!("{wf}/{}", st.id))
            })
            .collect();
        assert!(!producer_steps.is_empty(), "loop {} has no step", l.name);
    }
}

/// Drives one run of every triggered workflow of the example studio through
/// the engine on a controlled clock: each task answered (reviews pass), gates
/// approved, the daily batch reviewed at its time.
#[test]
fn every_role_of_the_example_studio_gets_a_task_and_both_loops_run() {
    let s = example();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(s.clone(), store);
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending: Vec<v1::Task> = Vec::new();
    let mut batch_runs = BTreeSet::new();
    let mut now = 0i64;
    let mut seen_workflows = BTreeSet::new();
    for trig in &s.triggers {
        if !seen_workflows.insert(trig.workflow.clone()) {
            continue;
        }
        let id = format!("{}@test", trig.name);
        pending.extend(
            e.start_run(start(&id, &trig.workflow), t(now))
                .unwrap()
                .tasks,
        );
    }
    // At most 3 simulated days of ticks, an hour apart; 400 tasks at most.
    let mut answered = 0;
    while now < 72 * HOUR && answered < 400 {
        while let Some(task) = pending.pop() {
            answered += 1;
            *roles.entry(task.role.clone()).or_default() += 1;
            now += 1;
            let result = match task.review.as_ref().map(|r| r.action()) {
                Some(v1::ReviewAction::ReviewBatch) => {
                    batch_runs.insert(task.run_id.clone());
                    let items: Vec<String> = task
                        .inputs
                        .iter()
                        .map(|i| {
                            format!(
                                "{{\"subject\": \"{}\", \"pass\": true, \"score\": 0.9}}",
                                i.name
                            )
                        })
                        .collect();
                    ok(&task, &format!("{{\"items\": [{}]}}", items.join(",")))
                }
                Some(v1::ReviewAction::Review) => pass(&task),
                _ => ok(&task, &format!("work of {}", task.role)),
            };
            pending.extend(e.apply_result(result, t(now)).unwrap().tasks);
            // People approve every gate that opened.
            let gates = e
                .list_gates(&v1::ListGatesRequest {
                    state: v1::GateState::Open as i32,
                    ..Default::default()
                })
                .unwrap();
            for g in gates.gates.iter().filter_map(|g| g.request.as_ref()) {
                let who = g.reviewers.first().cloned().unwrap_or_default();
                now += 1;
                let (_, fx) = e
                    .decide_gate(&g.gate_id, &who, DecisionKind::Approve, "ok", t(now))
                    .unwrap();
                pending.extend(fx.tasks);
            }
        }
        now += HOUR;
        pending.extend(e.tick(t(now)).unwrap().tasks);
        // Past the first day: the daily batch has closed and been reviewed.
        if pending.is_empty() && e.live_runs() == 0 && now > 25 * HOUR {
            break;
        }
    }
    assert_eq!(e.live_runs(), 0, "every run ended");
    let all: BTreeSet<String> = s.roles.keys().cloned().collect();
    let got: BTreeSet<String> = roles.keys().cloned().collect();
    let missing: Vec<&String> = all.difference(&got).collect();
    // studio-orchestrator also runs on_failure, which no run needed here.
    assert!(missing.is_empty(), "roles without a task: {missing:?}");
    assert!(
        batch_runs
            .iter()
            .any(|r| r.starts_with(&format!("{BATCH_RUN_PREFIX}experimenter_to_optimizer@"))),
        "the batched loop ran: {batch_runs:?}"
    );
    for (wf, step_id) in [
        ("daily-content-pipeline", "draft-content"),
        ("inspiration-to-concept", "ui-concept"),
        ("content-optimization", "diagnose"),
        ("content-optimization", "track-experiment"),
    ] {
        let trig = s
            .triggers
            .iter()
            .find(|t| t.workflow == wf)
            .expect("a trigger starts it");
        let r = run(&e, &format!("{}@test", trig.name));
        assert_eq!(r.state(), v1::RunState::Succeeded, "{wf}");
        assert_eq!(
            step(&r, step_id).review_rounds,
            1,
            "{wf}/{step_id} reviewed"
        );
    }
}
