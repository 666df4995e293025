//! The observations the orchestrator hands the tracker (`Effects::metrics`,
//! published on `metric.<name>`): review scores, feedback response times and
//! the queue per priority class, on a controlled clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Effects, Engine, Limits};
use concierto_proto::v1;

fn studio() -> Arc<Studio> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("example studio loads"))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn engine(limits: Limits) -> Engine {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(), store, limits);
    e.recover(t(0)).unwrap();
    e
}

fn start(run_id: &str, priority: v1::Priority) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: "daily-content-pipeline".into(),
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

fn one(fx: &Effects) -> v1::Task {
    assert_eq!(fx.tasks.len(), 1, "one task dispatched: {:?}", fx.tasks);
    fx.tasks[0].clone()
}

fn label<'a>(m: &'a v1::MetricSample, k: &str) -> &'a str {
    m.labels.get(k).map(String::as_str).unwrap_or("")
}

#[test]
fn a_decided_review_round_reports_its_lowest_score_as_quality_score() {
    let mut e = engine(Limits::default());
    let research = one(&e
        .start_run(start("r1", v1::Priority::Normal), t(0))
        .unwrap());
    let fx = e
        .apply_result(ok(&research, "three angles"), t(10))
        .unwrap();
    assert!(fx.metrics.is_empty(), "{:?}", fx.metrics);
    let draft = one(&fx);
    assert_eq!(draft.role, "content-creator");
    let fx = e.apply_result(ok(&draft, "the pieces"), t(20)).unwrap();
    let reviews = fx.tasks.clone();
    assert!(!reviews.is_empty(), "the draft goes to review");
    let mut all = Effects::default();
    for (i, r) in reviews.iter().enumerate() {
        let score = if i == 0 { 0.92 } else { 0.88 };
        let res = v1::TaskResult {
            verdict: Some(v1::Verdict {
                pass: true,
                score,
                notes: String::new(),
                reasons: Vec::new(),
            }),
            ..ok(r, "{\"pass\": true}")
        };
        all.extend(e.apply_result(res, t(30)).unwrap());
    }
    let q: Vec<&v1::MetricSample> = all
        .metrics
        .iter()
        .filter(|m| m.metric == "quality_score")
        .collect();
    assert_eq!(
        q.len(),
        1,
        "one sample per decided round: {:?}",
        all.metrics
    );
    assert!(
        all.events.iter().any(|e| e.step_id == "draft-content"
            && e.step_state == v1::StepState::Succeeded as i32
            && e.role == "content-creator"),
        "the reviewed step's success is an event of its own (the tracker counts it)"
    );
    let want = if reviews.len() == 1 { 0.92 } else { 0.88 };
    assert_eq!(q[0].value, want, "the round's lowest score");
    assert_eq!(label(q[0], "run"), "r1");
    assert_eq!(label(q[0], "step"), "draft-content");
    assert_eq!(label(q[0], "loop"), "creator_to_reviewer");
    assert_eq!(q[0].at.unwrap().seconds, t(30).timestamp());
}

#[test]
fn the_first_response_to_feedback_is_not_a_metric_here() {
    // feedback_response_time is measured by the feedback router to the reply
    // sent (concierto-router), not to the first specialist's answer.
    let mut e = engine(Limits::default());
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
    let cat = one(&e.start_feedback(fb, t(1)).unwrap());
    let fx = e
        .apply_result(ok(&cat, "{\"category\": \"brand\"}"), t(60))
        .unwrap();
    let first = one(&fx);
    let fx = e.apply_result(ok(&first, "On it."), t(1800)).unwrap();
    assert!(
        !fx.metrics
            .iter()
            .any(|m| m.metric == "feedback_response_time"),
        "the router publishes it"
    );
    assert!(
        fx.events
            .iter()
            .any(|ev| ev.message.starts_with("first response after 30m00s")),
        "the run's story still tells the delay: {:?}",
        fx.events
    );
}

fn depth(samples: &[v1::MetricSample], metric: &str, class: &str) -> f64 {
    samples
        .iter()
        .find(|m| m.metric == metric && label(m, "priority") == class)
        .map(|m| m.value)
        .unwrap_or(-1.0)
}

#[test]
fn the_queue_is_reported_per_class_every_ten_seconds_and_soon_after_a_change() {
    let mut e = engine(Limits {
        default_role_limit: 1,
        ..Limits::default()
    });
    let every = Duration::from_secs(10);
    for i in 0..3 {
        e.start_run(start(&format!("n{i}"), v1::Priority::Normal), t(0))
            .unwrap();
    }
    let s = e.queue_samples(t(0), every);
    assert_eq!(s.len(), 6, "depth and oldest for three classes");
    assert_eq!(
        depth(&s, "queue_depth", "normal"),
        2.0,
        "one dispatched, two wait"
    );
    assert_eq!(depth(&s, "queue_depth", "urgent"), 0.0);
    assert_eq!(depth(&s, "queue_depth", "feedback"), 0.0);
    assert!(e.queue_samples(t(0), every).is_empty());
    assert!(
        e.queue_samples(t(5), every).is_empty(),
        "no change, not due"
    );
    let s = e.queue_samples(t(10), every);
    assert_eq!(depth(&s, "queue_oldest_seconds", "normal"), 10.0);
    assert_eq!(s[1].unit, "s");

    e.start_run(start("u1", v1::Priority::Urgent), t(10))
        .unwrap();
    assert!(
        e.queue_samples(t(10), every).is_empty(),
        "at most one report a second"
    );
    let s = e.queue_samples(t(11), every);
    assert_eq!(
        depth(&s, "queue_depth", "urgent"),
        1.0,
        "a change is reported"
    );
    assert_eq!(depth(&s, "queue_oldest_seconds", "urgent"), 1.0);
}
