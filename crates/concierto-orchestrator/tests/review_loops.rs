//! Agent-to-agent review loops in the orchestrator's state machine: rounds,
//! revisions with the reviewer's notes, running out of rounds (fail or
//! escalate), and batched loops on a controlled clock, across a restart.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Effects, Engine, Limits, REVIEW_ESCALATED};
use concierto_proto::v1;

fn studio_yaml() -> String {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    format!(
        r#"
studio:
  name: "Loop test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  experiment:
    description: "Run one experiment and report it."
    steps:
      - id: run-experiment
        role: growth-hacker
        task: "Design and run a growth experiment."
        inputs: [trigger]
        retries: 1
        review: experimenter_to_optimizer
  draft:
    description: "Draft a post, then brief its visual."
    steps:
      - id: draft
        role: content-creator
        task: "Draft a post."
        inputs: [trigger]
        review: strict
      - id: visual
        role: visual-storyteller
        task: "Brief the visual."
        inputs: [draft]
  panel:
    description: "A draft two reviewers check at once."
    steps:
      - id: draft
        role: content-creator
        task: "Draft a post."
        inputs: [trigger]
        timeout: "1 minute"
        retries: 0
        review: panel
    on_failure:
      role: studio-orchestrator
      task: "Say what went wrong."
  strict-fail:
    description: "Draft a post reviewed by a loop that fails when exhausted."
    steps:
      - id: draft
        role: content-creator
        task: "Draft a post."
        inputs: [trigger]
        review: creator_to_reviewer
feedback_loops:
  agent_to_agent:
    - experimenter_to_optimizer:
        producer: [growth-hacker, experiment-tracker]
        reviewer: [analytics-reporter, workflow-optimizer]
        cycle_time: "24 hours"
    - panel:
        producer: [content-creator]
        reviewer: [brand-guardian, test-writer-fixer]
        cycle_time: "immediate"
    - strict:
        producer: [content-creator]
        reviewer: [brand-guardian]
        cycle_time: "immediate"
        max_rounds: 2
        pass_mark: 0.9
        on_exhausted: escalate
    - creator_to_reviewer:
        producer: [content-creator, ui-designer]
        reviewer: [brand-guardian, test-writer-fixer]
        cycle_time: "immediate"
        max_rounds: 2
progress_metrics:
  content_generation:
    - quality_score:
        target: 0.8
        type: "brand_alignment"
        tracker: brand-guardian
"#,
        agents = agents.display()
    )
}

fn studio(dir: &tempfile::TempDir) -> Arc<Studio> {
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, studio_yaml()).unwrap();
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

fn verdict(task: &v1::Task, pass: bool, score: f64, notes: &str) -> v1::TaskResult {
    v1::TaskResult {
        verdict: Some(v1::Verdict {
            pass,
            score,
            notes: notes.into(),
            reasons: vec!["tone".into()],
        }),
        ..ok(task, &format!("{{\"pass\": {pass}, \"score\": {score}}}"))
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
    r.steps.iter().find(|s| s.step_id == id).unwrap_or_else(|| {
        panic!(
            "step {id} in {:?}",
            r.steps.iter().map(|s| &s.step_id).collect::<Vec<_>>()
        )
    })
}

fn engine(studio: Arc<Studio>, store: Arc<dyn KvStore>) -> Engine {
    let mut e = Engine::new(studio, store, Limits::default());
    e.recover(t(0)).unwrap();
    e
}

#[test]
fn a_rejected_draft_is_revised_with_the_notes_and_passes_the_next_round() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    let draft = one(&e.start_run(start("r1", "draft"), t(0)).unwrap());
    assert_eq!(draft.step_id, "draft");

    // Round 1: the draft goes to brand-guardian, not on to the next step.
    let fx = e
        .apply_result(ok(&draft, "UNLOCK synergy NOW!!!"), t(1))
        .unwrap();
    let review = one(&fx);
    assert_eq!(
        (review.role.as_str(), review.step_id.as_str()),
        ("brand-guardian", "draft/review-1/brand-guardian")
    );
    let ctx = review.review.clone().unwrap();
    assert_eq!(ctx.action(), v1::ReviewAction::Review);
    assert_eq!(
        (ctx.r#loop.as_str(), ctx.round, ctx.subject_step.as_str()),
        ("strict", 1, "draft")
    );
    assert_eq!(ctx.draft, "UNLOCK synergy NOW!!!");
    assert_eq!(ctx.pass_mark, 0.9, "the loop's own pass mark");
    assert_eq!(
        step(&run(&e, "r1"), "draft").state(),
        v1::StepState::InReview
    );

    // The reviewer rejects it: the producer revises with the notes.
    let fx = e
        .apply_result(
            verdict(
                &review,
                false,
                0.55,
                "Drop the hype words and the shouting.",
            ),
            t(2),
        )
        .unwrap();
    let revise = one(&fx);
    assert_eq!(
        (revise.role.as_str(), revise.step_id.as_str()),
        ("content-creator", "draft/revise-2")
    );
    let ctx = revise.review.clone().unwrap();
    assert_eq!(ctx.action(), v1::ReviewAction::Revise);
    assert_eq!(ctx.round, 2);
    assert_eq!(ctx.draft, "UNLOCK synergy NOW!!!");
    assert!(
        ctx.notes.contains("brand-guardian: Drop the hype words"),
        "{}",
        ctx.notes
    );
    assert_eq!(revise.instruction, "Draft a post.");
    assert!(revise.inputs.iter().any(|i| i.name == "trigger"));
    assert!(fx.events.iter().any(|ev| ev.message.contains("score 0.55")
        && ev.message.contains("sent back to content-creator")));

    // The revision is reviewed again, passes, and the run moves on with it.
    let fx = e
        .apply_result(ok(&revise, "A calm, warm post."), t(3))
        .unwrap();
    let review2 = one(&fx);
    assert_eq!(review2.step_id, "draft/review-2/brand-guardian");
    assert_eq!(review2.review.as_ref().unwrap().draft, "A calm, warm post.");
    let fx = e
        .apply_result(verdict(&review2, true, 0.94, "Good."), t(4))
        .unwrap();
    let visual = one(&fx);
    assert_eq!(visual.step_id, "visual");
    assert_eq!(
        visual.inputs[0].content, "A calm, warm post.",
        "the passed revision is the step's output"
    );

    let r = run(&e, "r1");
    let d = step(&r, "draft");
    assert_eq!(d.state(), v1::StepState::Succeeded);
    assert_eq!(d.review_rounds, 2);
    assert_eq!(d.output, "A calm, warm post.");
    let v = d.verdict.as_ref().unwrap();
    assert!(v.pass);
    assert!((v.score - 0.94).abs() < 1e-9);
    // Both rounds are visible with their scores and notes.
    let r1 = step(&r, "draft/review-1/brand-guardian");
    let v1r = r1.verdict.as_ref().unwrap();
    assert!(!v1r.pass && (v1r.score - 0.55).abs() < 1e-9 && v1r.notes.contains("hype"));
    assert_eq!(
        step(&r, "draft/review-2/brand-guardian")
            .verdict
            .as_ref()
            .unwrap()
            .score,
        0.94
    );
    assert_eq!(step(&r, "draft/revise-2").output, "A calm, warm post.");

    e.apply_result(ok(&visual, "visual brief"), t(5)).unwrap();
    assert_eq!(run(&e, "r1").state(), v1::RunState::Succeeded);
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn a_score_below_the_pass_mark_fails_the_round_even_when_the_reviewer_says_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    let draft = one(&e.start_run(start("r1", "strict-fail"), t(0)).unwrap());
    let review = one(&e.apply_result(ok(&draft, "draft"), t(1)).unwrap());
    // creator_to_reviewer pairs content-creator with brand-guardian; its pass
    // mark is quality_score's target, 0.8.
    assert_eq!(review.role, "brand-guardian");
    assert_eq!(review.review.as_ref().unwrap().pass_mark, 0.8);
    let revise = one(&e
        .apply_result(verdict(&review, true, 0.7, "flat"), t(2))
        .unwrap());
    assert_eq!(revise.step_id, "draft/revise-2");
    let review2 = one(&e.apply_result(ok(&revise, "draft 2"), t(3)).unwrap());
    // Last round fails: the loop's on_exhausted is `fail` (the default).
    let fx = e
        .apply_result(verdict(&review2, false, 0.6, "still flat"), t(4))
        .unwrap();
    assert!(
        fx.tasks.is_empty(),
        "the workflow has no failure step: {:?}",
        fx.tasks
    );
    let r = run(&e, "r1");
    assert_eq!(r.state(), v1::RunState::Failed);
    assert_eq!(step(&r, "draft").state(), v1::StepState::Failed);
    assert!(
        r.error.contains("not passed after 2 round(s)"),
        "{}",
        r.error
    );
    assert!(r.error.contains("still flat"), "{}", r.error);
}

#[test]
fn an_exhausted_escalating_loop_passes_the_output_on_labelled_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    let draft = one(&e.start_run(start("r1", "draft"), t(0)).unwrap());
    let review = one(&e.apply_result(ok(&draft, "d1"), t(1)).unwrap());
    let revise = one(&e
        .apply_result(verdict(&review, false, 0.5, "no"), t(2))
        .unwrap());
    let review2 = one(&e.apply_result(ok(&revise, "d2"), t(3)).unwrap());
    let fx = e
        .apply_result(verdict(&review2, false, 0.85, "closer"), t(4))
        .unwrap();
    let visual = one(&fx);
    assert_eq!(visual.step_id, "visual");
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("escalated to people"))
    );
    let r = run(&e, "r1");
    let d = step(&r, "draft");
    assert_eq!(d.state(), v1::StepState::Succeeded);
    assert!(d.labels.contains(&REVIEW_ESCALATED.to_string()));
    assert_eq!(d.review_rounds, 2);
}

#[test]
fn a_review_without_a_verdict_is_retried_and_a_verdict_in_the_output_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    let draft = one(&e.start_run(start("r1", "draft"), t(0)).unwrap());
    let review = one(&e.apply_result(ok(&draft, "d1"), t(1)).unwrap());
    let fx = e
        .apply_result(ok(&review, "Looks fine to me."), t(2))
        .unwrap();
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("without a verdict"))
    );
    // After the backoff the review is dispatched again.
    let again = one(&e.tick(t(120)).unwrap());
    assert_eq!(
        (again.step_id.as_str(), again.attempt),
        ("draft/review-1/brand-guardian", 2)
    );
    // A model's answer with the verdict as JSON in prose is enough.
    let out = "Verdict:\n```json\n{\"pass\": true, \"score\": 0.95, \"notes\": \"ok\", \"labels\": [\"campaign_launch\"]}\n```";
    let fx = e.apply_result(ok(&again, out), t(121)).unwrap();
    assert_eq!(one(&fx).step_id, "visual");
    let d = step(&run(&e, "r1"), "draft").clone();
    assert!(
        d.labels.contains(&"campaign_launch".to_string()),
        "verdict labels reach the output: {:?}",
        d.labels
    );
}

#[test]
fn a_batched_loop_reviews_every_output_of_the_cycle_in_one_batch_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let st = studio(&dir);
    let mut e = engine(st.clone(), store.clone());

    // Three experiments finish within the first hour: none is reviewed yet.
    for (i, id) in ["e1", "e2", "e3"].iter().enumerate() {
        let at = i as i64 * 600;
        let task = one(&e.start_run(start(id, "experiment"), t(at)).unwrap());
        let fx = e
            .apply_result(
                ok(&task, &format!("experiment {id}: +{i}% signups")),
                t(at + 1),
            )
            .unwrap();
        assert!(
            fx.tasks.is_empty(),
            "no review before the cycle ends: {:?}",
            fx.tasks
        );
        assert!(
            fx.events
                .iter()
                .any(|ev| ev.message.contains("waits for the batch review"))
        );
        assert_eq!(
            step(&run(&e, id), "run-experiment").state(),
            v1::StepState::InReview
        );
    }
    assert!(e.tick(t(23 * HOUR)).unwrap().tasks.is_empty());

    // The orchestrator restarts: the pending batch is rebuilt from the store.
    drop(e);
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(t(23 * HOUR + 1)).unwrap();

    // 24 hours after the first output joined, one batch run reviews all three.
    let fx = e.tick(t(24 * HOUR + 1)).unwrap();
    let batch = one(&fx);
    assert!(
        batch
            .run_id
            .starts_with("review-batch:experimenter_to_optimizer@"),
        "{}",
        batch.run_id
    );
    // growth-hacker pairs with analytics-reporter.
    assert_eq!(batch.role, "analytics-reporter");
    assert_eq!(
        batch.review.as_ref().unwrap().action(),
        v1::ReviewAction::ReviewBatch
    );
    let names: Vec<&str> = batch.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "e1/run-experiment",
            "e2/run-experiment",
            "e3/run-experiment"
        ]
    );
    assert!(batch.inputs[1].content.contains("+1% signups"));

    let answer = r#"{"items": [
        {"subject": "e1/run-experiment", "pass": true, "score": 0.9, "notes": "solid"},
        {"subject": "e2/run-experiment", "pass": false, "score": 0.4, "notes": "sample too small"},
        {"subject": "e3/run-experiment", "pass": true, "score": 0.88}
    ]}"#;
    let fx = e
        .apply_result(ok(&batch, answer), t(24 * HOUR + 60))
        .unwrap();
    assert_eq!(run(&e, "e1").state(), v1::RunState::Succeeded);
    assert_eq!(run(&e, "e3").state(), v1::RunState::Succeeded);
    assert_eq!(run(&e, &batch.run_id).state(), v1::RunState::Succeeded);
    let revise = one(&fx);
    assert_eq!(
        (revise.run_id.as_str(), revise.step_id.as_str()),
        ("e2", "run-experiment/revise-2")
    );
    assert!(
        revise
            .review
            .as_ref()
            .unwrap()
            .notes
            .contains("sample too small")
    );
    let e1 = run(&e, "e1");
    let s1 = step(&e1, "run-experiment");
    assert_eq!(s1.review_rounds, 1);
    assert!((s1.verdict.as_ref().unwrap().score - 0.9).abs() < 1e-9);

    // The revision joins the next cycle's batch, reviewed alone 24 hours later.
    let fx = e
        .apply_result(
            ok(&revise, "experiment e2 rerun: +3% signups, n=4000"),
            t(25 * HOUR),
        )
        .unwrap();
    assert!(fx.tasks.is_empty());
    assert!(e.tick(t(48 * HOUR)).unwrap().tasks.is_empty());
    let batch2 = one(&e.tick(t(49 * HOUR)).unwrap());
    assert_ne!(batch2.run_id, batch.run_id);
    assert_eq!(batch2.inputs.len(), 1);
    assert!(batch2.inputs[0].content.contains("n=4000"));
    let answer = r#"{"items": [{"subject": "e2/run-experiment", "pass": true, "score": 0.91}]}"#;
    e.apply_result(ok(&batch2, answer), t(49 * HOUR + 5))
        .unwrap();
    let e2 = run(&e, "e2");
    assert_eq!(e2.state(), v1::RunState::Succeeded);
    assert_eq!(step(&e2, "run-experiment").review_rounds, 2);
    assert_eq!(e.in_flight(), 0);
    assert_eq!(e.live_runs(), 0);
}

#[test]
fn a_batch_answer_missing_a_draft_is_retried_and_a_failed_batch_fails_its_drafts() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    for id in ["e1", "e2"] {
        let task = one(&e.start_run(start(id, "experiment"), t(0)).unwrap());
        e.apply_result(ok(&task, "result"), t(1)).unwrap();
    }
    let batch = one(&e.tick(t(24 * HOUR + 1)).unwrap());
    let partial = r#"{"items": [{"subject": "e1/run-experiment", "pass": true, "score": 0.9}]}"#;
    let fx = e
        .apply_result(ok(&batch, partial), t(24 * HOUR + 2))
        .unwrap();
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("no verdict for 1 of 2"))
    );
    let again = one(&e.tick(t(24 * HOUR + 600)).unwrap());
    assert_eq!(again.attempt, 2);
    let failed = v1::TaskResult {
        status: v1::TaskStatus::Failed as i32,
        error: "reviewer refused".into(),
        ..ok(&again, "")
    };
    e.apply_result(failed, t(24 * HOUR + 601)).unwrap();
    assert_eq!(run(&e, &batch.run_id).state(), v1::RunState::Failed);
    for id in ["e1", "e2"] {
        let r = run(&e, id);
        assert_eq!(r.state(), v1::RunState::Failed, "{id}");
        assert!(r.error.contains("batch review"), "{}", r.error);
    }
}

#[test]
fn cancelling_a_run_in_review_releases_its_reviewer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    let draft = one(&e.start_run(start("r1", "draft"), t(0)).unwrap());
    let review = one(&e.apply_result(ok(&draft, "d1"), t(1)).unwrap());
    assert_eq!(e.in_flight(), 1);
    e.cancel("r1", "not needed", t(2)).unwrap();
    assert_eq!(e.in_flight(), 0);
    // A late verdict changes nothing.
    let fx = e
        .apply_result(verdict(&review, true, 0.99, ""), t(3))
        .unwrap();
    assert!(fx.tasks.is_empty());
    assert_eq!(run(&e, "r1").state(), v1::RunState::Cancelled);
}

#[test]
fn two_reviews_timing_out_in_one_tick_release_their_slots_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(studio(&dir), store);
    let draft = one(&e.start_run(start("r1", "panel"), t(0)).unwrap());
    let fx = e.apply_result(ok(&draft, "d1"), t(1)).unwrap();
    // Two producers' worth of reviewers on one producer: both review at once.
    let mut roles: Vec<String> = fx.tasks.iter().map(|t| t.role.clone()).collect();
    roles.sort();
    assert_eq!(roles, ["brand-guardian", "test-writer-fixer"]);
    assert_eq!(e.in_flight(), 2);
    // Both pass their deadline in the same tick with no retries left.
    let fx = e.tick(t(120)).unwrap();
    let failure = one(&fx);
    assert_eq!(
        failure.role, "studio-orchestrator",
        "the failure step, and nothing else"
    );
    assert_eq!(
        e.in_flight(),
        1,
        "each review's slot released once; the failure step holds one"
    );
    let r = run(&e, "r1");
    for s in r.steps.iter().filter(|s| s.step_id.contains("/review-")) {
        assert!(
            matches!(s.state(), v1::StepState::Failed | v1::StepState::Cancelled),
            "{} is {:?}",
            s.step_id,
            s.state()
        );
    }
    e.apply_result(ok(&failure, "noted"), t(121)).unwrap();
    assert_eq!(e.in_flight(), 0);
    assert_eq!(run(&e, "r1").state(), v1::RunState::Failed);
}

#[test]
fn a_non_finite_score_is_no_verdict_and_the_run_still_decodes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let st = studio(&dir);
    let mut e = engine(st.clone(), store.clone());
    let draft = one(&e.start_run(start("r1", "draft"), t(0)).unwrap());
    let review = one(&e.apply_result(ok(&draft, "d1"), t(1)).unwrap());
    let mut nan = verdict(&review, true, f64::NAN, "?");
    nan.output = "no JSON here".into();
    if let Some(u) = nan.usage.as_mut() {
        u.cost_usd = f64::INFINITY;
    } else {
        nan.usage = Some(v1::Usage {
            cost_usd: f64::INFINITY,
            ..Default::default()
        });
    }
    let fx = e.apply_result(nan, t(2)).unwrap();
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.contains("without a verdict"))
    );
    drop(e);
    let mut e = Engine::new(st, store, Limits::default());
    e.recover(t(3)).unwrap();
    assert_eq!(e.live_runs(), 1, "the stored run decodes");
    assert_eq!(run(&e, "r1").state(), v1::RunState::Running);
}
