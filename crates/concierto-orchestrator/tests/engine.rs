//! The orchestrator's state machine on the example studio, with a controlled
//! clock and a real (temporary) sled store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Effects, Engine, EngineError, Limits, ON_FAILURE, RunState};
use concierto_proto::v1;

fn studio() -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("example studio loads"))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn limits() -> Limits {
    Limits {
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn start(run_id: &str, workflow: &str, priority: v1::Priority) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: workflow.into(),
        trigger: "test".into(),
        priority: priority as i32,
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
            reasons: Vec::new(),
        }),
        ..ok(task, &format!("{{\"pass\": {pass}, \"score\": {score}}}"))
    }
}

fn failed(task: &v1::Task, status: v1::TaskStatus, error: &str) -> v1::TaskResult {
    v1::TaskResult {
        status: status as i32,
        error: error.into(),
        output: String::new(),
        ..ok(task, "")
    }
}

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

fn engine(store: Arc<dyn KvStore>, limits: Limits) -> Engine {
    let mut e = Engine::new(studio(), store, limits);
    e.recover(t(0)).unwrap();
    e
}

fn state(e: &Engine, run: &str) -> v1::RunState {
    e.get(run)
        .unwrap()
        .map(|r| r.state())
        .unwrap_or(v1::RunState::Unspecified)
}

#[test]
fn daily_pipeline_runs_its_steps_in_order_with_earlier_outputs_as_inputs() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let wf = &studio().workflows["daily-content-pipeline"];
    let fx = e
        .start_run(
            start("r1", "daily-content-pipeline", v1::Priority::Normal),
            t(0),
        )
        .unwrap();
    let mut task = one(&fx);
    assert!(fx.events.iter().any(|ev| ev.message == "run started"));
    for (i, step) in wf.steps.iter().enumerate() {
        assert_eq!(task.step_id, step.id);
        assert_eq!(task.role, step.role);
        assert_eq!(task.attempt, 1);
        assert_eq!(task.task_id, format!("r1/{}/1", step.id));
        for input in &step.inputs {
            let got = task
                .inputs
                .iter()
                .find(|x| &x.name == input)
                .expect("input present");
            if input == "trigger" {
                assert!(got.content.contains("Trigger test fired"));
            } else {
                assert_eq!(got.content, format!("output of {input}"));
            }
        }
        let mut fx = e
            .apply_result(
                ok(&task, &format!("output of {}", step.id)),
                t(i as i64 + 1),
            )
            .unwrap();
        if step.review.is_some() {
            // The loop's reviewer sees the output first and passes it.
            let review = one(&fx);
            assert_eq!(review.role, "brand-guardian");
            assert_eq!(
                review.step_id,
                format!("{}/review-1/brand-guardian", step.id)
            );
            let ctx = review.review.clone().expect("a review context");
            assert_eq!(ctx.draft, format!("output of {}", step.id));
            fx = e
                .apply_result(verdict(&review, true, 0.93, ""), t(i as i64 + 1))
                .unwrap();
        }
        if i + 1 < wf.steps.len() {
            task = one(&fx);
        } else {
            assert!(fx.tasks.is_empty());
            assert!(fx.events.iter().any(|ev| ev.message == "run succeeded"));
        }
    }
    let run = e.get("r1").unwrap().unwrap();
    assert_eq!(run.state(), v1::RunState::Succeeded);
    assert!(
        run.steps
            .iter()
            .all(|s| s.state() == v1::StepState::Succeeded)
    );
    assert_eq!(e.live_runs(), 0);
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn a_run_id_starts_once() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let s = start(
        "daily@2026-11-24T08:00:00Z",
        "daily-content-pipeline",
        v1::Priority::Normal,
    );
    assert_eq!(e.start_run(s.clone(), t(0)).unwrap().tasks.len(), 1);
    assert!(e.start_run(s.clone(), t(1)).unwrap().tasks.is_empty());
    assert_eq!(e.live_runs(), 1);
}

#[test]
fn duplicate_and_stale_results_change_nothing() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let task = one(&e
        .start_run(
            start("r1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    let next = one(&e.apply_result(ok(&task, "first"), t(1)).unwrap());
    // The same result again, and a result for an attempt that does not exist.
    assert!(
        e.apply_result(ok(&task, "second"), t(2))
            .unwrap()
            .tasks
            .is_empty()
    );
    let mut stale = ok(&next, "x");
    stale.attempt = 7;
    let fx = e.apply_result(stale, t(3)).unwrap();
    assert!(fx.tasks.is_empty() && fx.events.is_empty());
    let run = e.get("r1").unwrap().unwrap();
    assert_eq!(run.steps[0].output, "first");
    assert_eq!(run.steps[1].state(), v1::StepState::Dispatched);
}

#[test]
fn retryable_failure_is_retried_after_backoff_then_succeeds() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let task = one(&e
        .start_run(
            start("r1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    let fx = e
        .apply_result(
            failed(&task, v1::TaskStatus::Retryable, "429 slow down"),
            t(1),
        )
        .unwrap();
    assert!(fx.tasks.is_empty());
    // Backoff is 10 s ± 20 %: nothing at +7 s, the retry by +13 s.
    assert!(e.tick(t(8)).unwrap().tasks.is_empty());
    let retry = one(&e.tick(t(14)).unwrap());
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.task_id, format!("r1/{}/2", task.step_id));
    // The failed attempt's late success is ignored; the retry's counts.
    assert!(
        e.apply_result(ok(&task, "late"), t(15))
            .unwrap()
            .tasks
            .is_empty()
    );
    one(&e.apply_result(ok(&retry, "good"), t(16)).unwrap());
    assert_eq!(e.get("r1").unwrap().unwrap().steps[0].output, "good");
}

#[test]
fn fatal_failure_runs_the_failure_step_then_fails_the_run_keeping_the_reason() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let task = one(&e
        .start_run(
            start("r1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    let fx = e
        .apply_result(failed(&task, v1::TaskStatus::Failed, "400 bad model"), t(1))
        .unwrap();
    let recovery = one(&fx);
    assert_eq!(recovery.step_id, ON_FAILURE);
    assert_eq!(recovery.role, "studio-orchestrator");
    assert!(recovery.instruction.contains("400 bad model"));
    assert_eq!(state(&e, "r1"), v1::RunState::Running);
    e.apply_result(ok(&recovery, "incident written"), t(2))
        .unwrap();
    let run = e.get("r1").unwrap().unwrap();
    assert_eq!(run.state(), v1::RunState::Failed);
    assert!(run.error.contains("400 bad model"), "{}", run.error);
    assert_eq!(run.steps[0].state(), v1::StepState::Failed);
    assert_eq!(run.steps[1].state(), v1::StepState::Cancelled);
}

#[test]
fn a_step_past_its_timeout_is_retried_and_fails_when_retries_run_out() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let first = one(&e
        .start_run(
            start("r1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    let timeout = studio().workflows["system-improvement"].steps[0]
        .timeout
        .as_secs() as i64;
    let retries = studio().workflows["system-improvement"].steps[0].retries;
    assert_eq!(first.attempt, 1);
    let mut now = timeout + 1;
    for attempt in 2..=retries + 1 {
        assert!(
            e.tick(t(now)).unwrap().tasks.is_empty(),
            "timed out, waiting for backoff"
        );
        now += 61;
        assert_eq!(one(&e.tick(t(now)).unwrap()).attempt, attempt);
        now += timeout + 1;
    }
    // The last attempt times out too: the failure step runs.
    let fx = e.tick(t(now)).unwrap();
    assert_eq!(one(&fx).step_id, ON_FAILURE);
    let run = e.get("r1").unwrap().unwrap();
    assert!(
        run.steps[0].error.contains("timed out"),
        "{}",
        run.steps[0].error
    );
}

#[test]
fn cancel_stops_a_live_run_and_refuses_a_finished_one() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let task = one(&e
        .start_run(
            start("r1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    let (run, _) = e.cancel("r1", "not needed", t(1)).unwrap();
    assert_eq!(run.state(), v1::RunState::Cancelled);
    assert_eq!(e.in_flight(), 0);
    assert!(
        e.apply_result(ok(&task, "late"), t(2))
            .unwrap()
            .tasks
            .is_empty()
    );
    assert!(matches!(
        e.cancel("r1", "", t(3)),
        Err(EngineError::Final(_, RunState::Cancelled))
    ));
    assert!(matches!(
        e.cancel("nope", "", t(3)),
        Err(EngineError::NotFound(_))
    ));
}

#[test]
fn unknown_workflow_fails_the_run_visibly() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let fx = e
        .start_run(start("r1", "no-such-workflow", v1::Priority::Normal), t(0))
        .unwrap();
    assert!(fx.tasks.is_empty());
    let run = e.get("r1").unwrap().unwrap();
    assert_eq!(run.state(), v1::RunState::Failed);
    assert!(run.error.contains("no-such-workflow"));
}

#[test]
fn limits_hold_back_work_and_urgent_work_goes_first() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut limits = limits();
    limits
        .role_limits
        .insert("performance-benchmarker".into(), 1);
    let mut e = engine(store, limits);
    let first = one(&e
        .start_run(
            start("n1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    assert!(
        e.start_run(
            start("n2", "system-improvement", v1::Priority::Normal),
            t(1)
        )
        .unwrap()
        .tasks
        .is_empty()
    );
    assert!(
        e.start_run(
            start("u1", "system-improvement", v1::Priority::Urgent),
            t(2)
        )
        .unwrap()
        .tasks
        .is_empty()
    );
    assert_eq!(e.queued(), 2);
    // When the role has room again, the urgent run's step goes before the older normal one.
    let fx = e.apply_result(ok(&first, "done"), t(3)).unwrap();
    let roles: Vec<_> = fx
        .tasks
        .iter()
        .map(|t| (t.run_id.clone(), t.role.clone()))
        .collect();
    assert!(
        roles.contains(&("u1".into(), "performance-benchmarker".into())),
        "{roles:?}"
    );
    assert!(!roles.iter().any(|(r, _)| r == "n2"), "{roles:?}");
}

#[test]
fn global_limit_bounds_tasks_in_flight() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut limits = limits();
    limits.max_in_flight = 3;
    let mut e = engine(store, limits);
    let mut dispatched = 0;
    for i in 0..10 {
        dispatched += e
            .start_run(
                start(&format!("r{i}"), "system-improvement", v1::Priority::Normal),
                t(i),
            )
            .unwrap()
            .tasks
            .len();
    }
    assert_eq!(dispatched, 3);
    assert_eq!(e.in_flight(), 3);
    assert_eq!(e.queued(), 7);
}

/// Starts run `r1` on a store in `dir`, flushed, and gives its first task;
/// the engine is dropped (a restart follows).
fn started_in(dir: &std::path::Path) -> v1::Task {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir).unwrap());
    let mut e = engine(store.clone(), limits());
    let task = one(&e
        .start_run(
            start("r1", "system-improvement", v1::Priority::Normal),
            t(0),
        )
        .unwrap());
    store.flush().unwrap();
    task
}

#[test]
fn after_a_restart_open_steps_are_published_again_and_results_still_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let task = started_in(dir.path());
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    let mut e = Engine::new(studio(), store, limits());
    let fx = e.recover(t(5)).unwrap();
    assert_eq!(
        one(&fx).task_id,
        task.task_id,
        "same task id: deduplicated on the bus"
    );
    assert_eq!(e.in_flight(), 1);
    let next = one(&e.apply_result(ok(&task, "once"), t(6)).unwrap());
    assert!(
        e.apply_result(ok(&task, "twice"), t(7))
            .unwrap()
            .tasks
            .is_empty()
    );
    assert_eq!(next.attempt, 1);
    assert_eq!(e.get("r1").unwrap().unwrap().steps[0].output, "once");
}

#[test]
fn a_result_of_a_dispatch_made_before_a_restart_applies_once_while_the_step_waits_queued() {
    // A dispatch is not written: after the restart the step is queued again
    // at the attempt before, and here no room lets it out. The result of the
    // attempt dispatched before still finishes it, once.
    let dir = tempfile::tempdir().unwrap();
    let task = started_in(dir.path());
    assert_eq!(task.attempt, 1);
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir.path()).unwrap());
    let full = Limits {
        max_in_flight: 0,
        ..limits()
    };
    let mut e = Engine::new(studio(), store, full);
    assert!(
        e.recover(t(5)).unwrap().tasks.is_empty(),
        "no room: nothing out"
    );
    assert_eq!(e.queued(), 1);
    assert_eq!(
        e.get("r1").unwrap().unwrap().steps[0].state(),
        v1::StepState::Queued
    );
    e.apply_result(ok(&task, "once"), t(6)).unwrap();
    let run = e.get("r1").unwrap().unwrap();
    assert_eq!(run.steps[0].state(), v1::StepState::Succeeded);
    assert_eq!(run.steps[0].output, "once");
    assert_eq!(run.steps[0].attempt, 1);
    assert_eq!(e.in_flight(), 0, "taken and released");
    // The same result again, and a result of an attempt never made: ignored.
    e.apply_result(ok(&task, "twice"), t(7)).unwrap();
    let mut later = ok(&task, "later");
    later.attempt = 3;
    later.step_id = run.steps[1].step_id.clone();
    e.apply_result(later, t(8)).unwrap();
    let run = e.get("r1").unwrap().unwrap();
    assert_eq!(run.steps[0].output, "once");
    assert_eq!(
        run.steps[1].state(),
        v1::StepState::Queued,
        "still waits for room"
    );
}

#[test]
fn list_pages_newest_first_with_filters() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    for i in 0..5 {
        e.start_run(
            start(&format!("r{i}"), "system-improvement", v1::Priority::Normal),
            t(i),
        )
        .unwrap();
    }
    e.start_run(
        start("m1", "market-intelligence", v1::Priority::Normal),
        t(10),
    )
    .unwrap();
    let page = e
        .list(&v1::ListRunsRequest {
            workflow: "system-improvement".into(),
            page_size: 3,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<_> = page.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r4", "r3", "r2"]);
    let rest = e
        .list(&v1::ListRunsRequest {
            workflow: "system-improvement".into(),
            page_size: 3,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<_> = rest.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r0"]);
    assert!(rest.next_page_token.is_empty());
}

#[test]
fn feedback_is_categorised_then_routed_to_its_specialists_and_the_first_response_is_timed() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let fb = v1::Feedback {
        feedback_id: "slack-Ev1".into(),
        channel: v1::FeedbackChannel::Slack as i32,
        author: "U123".into(),
        text: "The new banner uses a neon colour that is off-brand.".into(),
        received_at: Some(prost_types::Timestamp {
            seconds: t(0).timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    let fx = e.start_feedback(fb.clone(), t(1)).unwrap();
    let cat = one(&fx);
    assert_eq!(cat.run_id, "feedback:slack-Ev1");
    assert_eq!(
        (cat.step_id.as_str(), cat.role.as_str()),
        ("categorise", "feedback-synthesizer")
    );
    assert_eq!(
        cat.priority,
        v1::Priority::Feedback as i32,
        "feedback jumps the queue"
    );
    assert!(
        cat.inputs[0].content.contains("Feedback from U123"),
        "{}",
        cat.inputs[0].content
    );
    assert!(cat.inputs[0].content.contains("neon colour"));
    // The same feedback again starts nothing.
    assert!(e.start_feedback(fb, t(2)).unwrap().tasks.is_empty());

    // A model's answer with a category and no roles: the seed's table routes it.
    let fx = e
        .apply_result(
            ok(&cat, "{\"category\": \"brand\", \"confidence\": 0.8}"),
            t(60),
        )
        .unwrap();
    assert!(fx.events.iter().any(
        |ev| ev.message == "categorised as brand: routed to brand-guardian, creative-director"
    ));
    let first = one(&fx);
    assert_eq!(
        (first.step_id.as_str(), first.role.as_str()),
        ("respond-brand-guardian", "brand-guardian")
    );
    assert_eq!(
        first
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["trigger", "categorise"]
    );
    let fx = e
        .apply_result(ok(&first, "Will fix the banner."), t(30 * 60))
        .unwrap();
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message == "first response after 30m00s (within the 2h00m SLA)"),
        "{:?}",
        fx.events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    let second = one(&fx);
    assert_eq!(second.role, "creative-director");
    let fx = e.apply_result(ok(&second, "Agreed."), t(3 * 3600)).unwrap();
    assert!(
        !fx.events
            .iter()
            .any(|ev| ev.message.contains("first response")),
        "only the first one is timed"
    );
    let run = e.get("feedback:slack-Ev1").unwrap().unwrap();
    assert_eq!(run.state(), v1::RunState::Succeeded);
    let steps: Vec<(&str, &str)> = run
        .steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.role.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("categorise", "feedback-synthesizer"),
            ("respond-brand-guardian", "brand-guardian"),
            ("respond-creative-director", "creative-director"),
        ]
    );
    assert_eq!(
        run.steps[1].finished_at.unwrap().seconds,
        t(30 * 60).timestamp()
    );
}

#[test]
fn duplicate_roles_in_a_categorisation_are_routed_once_and_the_run_ends() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = engine(store, limits());
    let fb = v1::Feedback {
        feedback_id: "web-1".into(),
        channel: v1::FeedbackChannel::WebForm as i32,
        author: "ana@example.com".into(),
        text: "Signups broke after the redesign.".into(),
        ..Default::default()
    };
    let cat = one(&e.start_feedback(fb, t(0)).unwrap());
    let answer = r#"{"category": "technical", "roles": ["backend-architect", "backend-architect", "no-such-role"]}"#;
    let first = one(&e.apply_result(ok(&cat, answer), t(1)).unwrap());
    assert_eq!(first.step_id, "respond-backend-architect");
    let fx = e.apply_result(ok(&first, "fixing"), t(2)).unwrap();
    assert!(fx.tasks.is_empty(), "{:?}", fx.tasks);
    assert_eq!(state(&e, "feedback:web-1"), v1::RunState::Succeeded);
}
