//! The worker on the embedded bus: one result per task, stored before the ack;
//! replicas share the queue; the in-flight limit; drain on stop; failures;
//! keep-alive; heartbeats.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use concierto_agent::{AgentError, BuiltinExecutor, Executor, Outcome, start_worker};
use concierto_bus::{
    Bus, BusError, BusExt, Consumer, ConsumerSpec, DeadLetters, EmbeddedBus, Outgoing, PublishAck,
    StreamSpec, Subscription, encode,
};
use concierto_core::roles::RoleDef;
use concierto_core::subjects;
use concierto_proto::v1::{AgentHeartbeat, AgentState, Task, TaskStatus};

use common::{Hang, Probe, ROLE, Results, assert_queue_empty, embedded, opts, publish, role, task};

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test(system = "common::MultiThreaded")]
async fn worker_takes_a_task_publishes_exactly_one_result_then_acks() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let t = task("run-1/draft/1", &[]);
    bus.publish_durable(
        &subjects::task(ROLE),
        encode(&t)
            .msg_id(&t.task_id)
            .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    )
    .await
    .expect("publish");
    let o = opts("w1");
    let worker = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        bus.clone(),
        o.clone(),
    )
    .await
    .expect("start");

    let got = results.take(1, WAIT).await;
    let (r, msg) = &got[0];
    assert_eq!(r.task_id, "run-1/draft/1");
    assert_eq!(
        (r.run_id.as_str(), r.step_id.as_str(), r.attempt),
        ("run-1", "draft", 1)
    );
    assert_eq!(r.role, ROLE);
    assert_eq!(r.worker_id, "content-creator.w1");
    assert_eq!(r.status(), TaskStatus::Succeeded);
    assert!(r.output.contains("## Piece 1:"), "{}", r.output);
    assert_eq!(r.content_type, "text/markdown");
    assert!(
        r.labels.contains(&"campaign_launch".to_string()),
        "{:?}",
        r.labels
    );
    let usage = r.usage.clone().expect("usage");
    assert_eq!(
        (usage.executor.as_str(), usage.model.as_str()),
        ("builtin", "builtin-v1")
    );
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    let (started, finished) = (
        r.started_at.expect("started_at"),
        r.finished_at.expect("finished_at"),
    );
    assert!((started.seconds, started.nanos) <= (finished.seconds, finished.nanos));
    assert_eq!(msg.msg_id(), Some("run-1/draft/1/result"));
    assert_eq!(
        msg.traceparent(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );

    results.none_within(Duration::from_millis(300)).await;
    worker.stop().await.expect("stop");
    // Acknowledged: not delivered again, even after ack_wait.
    assert_queue_empty(&bus, &o).await;
    results.none_within(Duration::from_millis(100)).await;
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn two_replicas_of_one_role_share_twenty_tasks_with_none_done_twice() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let (p1, p2) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let w1 = start_worker(role(ROLE), p1.clone(), bus.clone(), opts("a"))
        .await
        .expect("start a");
    let w2 = start_worker(role(ROLE), p2.clone(), bus.clone(), opts("b"))
        .await
        .expect("start b");
    for i in 0..20 {
        publish(&bus, &task(&format!("t{i}"), &[("builtin.sleep_ms", "40")])).await;
    }
    let got = results.take(20, WAIT).await;
    let ids: HashSet<_> = got.iter().map(|(r, _)| r.task_id.clone()).collect();
    assert_eq!(ids.len(), 20, "every task has one result");
    results.none_within(Duration::from_millis(300)).await;
    w1.stop().await.expect("stop a");
    w2.stop().await.expect("stop b");
    let (s1, s2) = (p1.started(), p2.started());
    let all: HashSet<_> = s1.iter().chain(&s2).cloned().collect();
    assert_eq!(s1.len() + s2.len(), 20, "none done twice: {s1:?} {s2:?}");
    assert_eq!(all.len(), 20);
    assert!(
        !s1.is_empty() && !s2.is_empty(),
        "both replicas worked: {} / {}",
        s1.len(),
        s2.len()
    );
    let by_worker: HashSet<_> = got.iter().map(|(r, _)| r.worker_id.clone()).collect();
    assert_eq!(
        by_worker,
        HashSet::from([
            "content-creator.a".to_string(),
            "content-creator.b".to_string()
        ])
    );
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn in_flight_limit_is_respected() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let mut heartbeats = bus
        .subscribe_proto::<AgentHeartbeat>("agent.heartbeat.>")
        .await
        .expect("subscribe");
    for i in 0..12 {
        publish(
            &bus,
            &task(&format!("t{i}"), &[("builtin.sleep_ms", "150")]),
        )
        .await;
    }
    let probe = Arc::new(Probe::default());
    let mut o = opts("w1");
    o.max_in_flight = 3;
    o.heartbeat_every = Duration::from_millis(50);
    let worker = start_worker(role(ROLE), probe.clone(), bus.clone(), o)
        .await
        .expect("start");
    results.take(12, WAIT).await;
    worker.stop().await.expect("stop");
    assert_eq!(probe.max(), 3, "ran up to the limit and never more");
    let mut seen_full = false;
    while let Ok(Some((hb, _))) =
        tokio::time::timeout(Duration::from_millis(200), heartbeats.next()).await
    {
        // The last heartbeat (STOPPED) says the worker takes nothing more.
        let stopped = hb.state() == AgentState::Stopped;
        assert_eq!(hb.capacity, if stopped { 0 } else { 3 });
        assert!(
            hb.in_flight <= 3,
            "heartbeat says {} in flight",
            hb.in_flight
        );
        seen_full |= hb.in_flight == 3;
        if stopped {
            break;
        }
    }
    assert!(seen_full, "a heartbeat saw the worker full");
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn drain_on_stop_finishes_the_in_flight_task_and_takes_no_new_one() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let probe = Arc::new(Probe::default());
    let o = opts("w1");
    let worker = start_worker(role(ROLE), probe.clone(), bus.clone(), o.clone())
        .await
        .expect("start");
    publish(&bus, &task("slow", &[("builtin.sleep_ms", "700")])).await;
    probe.wait_started("slow").await;

    let stopping = tokio::spawn(worker.stop());
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&bus, &task("late", &[])).await;
    stopping.await.expect("join").expect("stopped cleanly");

    // The in-flight task finished and its result was stored before stop returned.
    let got = results.take(1, Duration::from_millis(200)).await;
    assert_eq!(got[0].0.task_id, "slow");
    assert_eq!(got[0].0.status(), TaskStatus::Succeeded);
    results.none_within(Duration::from_millis(300)).await;
    assert_eq!(
        probe.started(),
        ["slow"],
        "no new task taken while draining"
    );
    // The late task waits in the queue for another replica.
    let c = bus
        .consumer("TASKS", &concierto_agent::consumer_spec(ROLE, &o))
        .await
        .expect("consumer");
    let left = c.fetch_proto::<Task>(10, WAIT).await.expect("fetch");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0.task_id, "late");
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn an_executor_failing_retryable_gives_a_retryable_result_and_the_task_is_acked() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let mut o = opts("w1");
    o.ack_wait = Duration::from_millis(400);
    let probe = Arc::new(Probe::default());
    let worker = start_worker(role(ROLE), probe.clone(), bus.clone(), o.clone())
        .await
        .expect("start");
    publish(&bus, &task("flaky", &[("builtin.fail", "retryable")])).await;
    publish(&bus, &task("broken", &[("builtin.fail", "fatal")])).await;
    let mut got = results.take(2, WAIT).await;
    got.sort_by(|a, b| a.0.task_id.cmp(&b.0.task_id));
    assert_eq!(got[0].0.task_id, "broken");
    assert_eq!(got[0].0.status(), TaskStatus::Failed);
    assert_eq!(got[1].0.task_id, "flaky");
    assert_eq!(got[1].0.status(), TaskStatus::Retryable);
    assert!(
        got[1].0.error.contains("builtin.fail=retryable"),
        "{}",
        got[1].0.error
    );
    // The orchestrator decides about retries: the bus does not redeliver.
    results.none_within(o.ack_wait * 2).await;
    worker.stop().await.expect("stop");
    assert_eq!(probe.started().len(), 2);
    assert_queue_empty(&bus, &o).await;
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn a_result_that_cannot_be_stored_hands_the_task_back_and_it_comes_back() {
    let inner = embedded().await;
    let flaky: Arc<dyn Bus> = Arc::new(FailResults {
        inner: inner.clone(),
        failures_left: AtomicUsize::new(1),
    });
    let results = Results::open(&inner).await;
    let probe = Arc::new(Probe::default());
    let o = opts("w1");
    let worker = start_worker(role(ROLE), probe.clone(), flaky, o.clone())
        .await
        .expect("start");
    publish(&inner, &task("t1", &[])).await;
    let got = results.take(1, WAIT).await;
    assert_eq!(got[0].0.task_id, "t1");
    results.none_within(Duration::from_millis(300)).await;
    worker.stop().await.expect("stop");
    assert_eq!(
        probe.started(),
        ["t1", "t1"],
        "done again after the failed store"
    );
    assert_queue_empty(&inner, &o).await;
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn a_long_task_is_kept_alive_with_in_progress_and_not_given_to_another_replica() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let probe = Arc::new(Probe::default());
    let mut o = opts("a");
    o.ack_wait = Duration::from_millis(300);
    let w1 = start_worker(role(ROLE), probe.clone(), bus.clone(), o.clone())
        .await
        .expect("a");
    publish(&bus, &task("long", &[("builtin.sleep_ms", "1200")])).await;
    probe.wait_started("long").await;
    let mut o2 = o.clone();
    o2.worker_id = "b".into();
    let w2 = start_worker(role(ROLE), probe.clone(), bus.clone(), o2)
        .await
        .expect("b");
    let got = results.take(1, WAIT).await;
    assert_eq!(got[0].0.worker_id, "content-creator.a");
    results.none_within(Duration::from_millis(500)).await;
    w1.stop().await.expect("stop a");
    w2.stop().await.expect("stop b");
    assert_eq!(
        probe.started(),
        ["long"],
        "ran once though it took four times ack_wait"
    );
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn heartbeats_carry_state_capacity_and_busy_and_idle_time() {
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let mut hbs = bus
        .subscribe_proto::<AgentHeartbeat>(&subjects::heartbeat(ROLE, "hb"))
        .await
        .expect("subscribe");
    let mut o = opts("hb");
    o.max_in_flight = 1;
    o.heartbeat_every = Duration::from_millis(100);
    let worker = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        bus.clone(),
        o,
    )
    .await
    .expect("start");
    tokio::time::sleep(Duration::from_millis(250)).await;
    publish(&bus, &task("t1", &[("builtin.sleep_ms", "500")])).await;
    results.take(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    worker.stop().await.expect("stop");

    let mut all = Vec::new();
    while let Ok(Some((hb, _))) = tokio::time::timeout(Duration::from_secs(2), hbs.next()).await {
        let stopped = hb.state() == AgentState::Stopped;
        all.push(hb);
        if stopped {
            break;
        }
    }
    let states: Vec<AgentState> = all.iter().map(|h| h.state()).collect();
    assert_eq!(states.first(), Some(&AgentState::Starting), "{states:?}");
    assert!(states.contains(&AgentState::Ready), "{states:?}");
    assert_eq!(
        &states[states.len() - 2..],
        [AgentState::Draining, AgentState::Stopped]
    );
    let busy: u64 = all.iter().map(|h| h.busy_ms).sum();
    let idle: u64 = all.iter().map(|h| h.idle_ms).sum();
    assert!(busy >= 450, "the 500 ms task shows as busy time: {busy} ms");
    assert!(
        idle >= 300,
        "the wait before and after shows as idle time: {idle} ms"
    );
    assert!(
        all.iter().any(|h| h.in_flight == 1 && h.busy_ms > 0),
        "{all:?}"
    );
    let last = all.last().expect("a heartbeat");
    assert_eq!(
        (last.tasks_done, last.tasks_failed, last.in_flight),
        (1, 0, 0)
    );
    assert_eq!(last.worker_id, "content-creator.hb");
    assert_eq!(last.role, ROLE);
    // A stopped worker takes nothing: its last heartbeat says capacity 0.
    assert_eq!(last.capacity, 0);
    assert!(
        all[..all.len() - 1].iter().all(|h| h.capacity == 1),
        "{all:?}"
    );
    assert_eq!(
        (last.executor.as_str(), last.model.as_str()),
        ("builtin", "builtin-v1")
    );
    assert!(!last.version.is_empty());
    assert!(last.at.is_some());
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn a_panicking_executor_or_a_passed_deadline_gives_a_retryable_result() {
    struct Panics;
    #[async_trait]
    impl Executor for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        async fn execute(&self, _role: &RoleDef, task: &Task) -> Outcome {
            assert!(task.task_id.is_empty(), "executor bug on {}", task.task_id);
            Outcome::succeeded("", "")
        }
    }
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let worker = start_worker(role(ROLE), Arc::new(Panics), bus.clone(), opts("p"))
        .await
        .expect("start");
    publish(&bus, &task("t1", &[])).await;
    let got = results.take(1, WAIT).await;
    assert_eq!(got[0].0.status(), TaskStatus::Retryable);
    assert!(got[0].0.error.contains("panicked"), "{}", got[0].0.error);
    assert_eq!(
        got[0].0.usage.as_ref().map(|u| u.executor.as_str()),
        Some("panics")
    );
    worker.stop().await.expect("stop");

    let hang = Arc::new(Hang::default());
    let worker = start_worker(role(ROLE), hang, bus.clone(), opts("h"))
        .await
        .expect("start");
    let mut t = task("t2", &[]);
    t.deadline = Some(concierto_proto::time::timestamp(
        std::time::SystemTime::now() + Duration::from_millis(300),
    ));
    publish(&bus, &t).await;
    let got = results.take(1, WAIT).await;
    assert_eq!(got[0].0.task_id, "t2");
    assert_eq!(got[0].0.status(), TaskStatus::Retryable);
    assert!(got[0].0.error.contains("deadline"), "{}", got[0].0.error);
    worker.stop().await.expect("stop");
}

#[actix_rt::test]
async fn start_says_what_to_do_when_the_stream_is_missing_or_options_are_wrong() {
    let bare: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    let e = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        bare,
        opts("w"),
    )
    .await
    .expect_err("no TASKS stream");
    assert!(matches!(e, AgentError::MissingStream { .. }), "{e:?}");
    assert!(e.to_string().contains("ensure_standard_streams"), "{e}");

    let bus = embedded().await;
    let mut o = opts("w");
    o.max_in_flight = 0;
    let e = start_worker(role(ROLE), Arc::new(BuiltinExecutor::default()), bus, o)
        .await
        .expect_err("zero capacity");
    assert!(
        e.to_string().contains("max_in_flight must be at least 1"),
        "{e}"
    );
}

/// A bus whose first stores of a result fail, as when the server is briefly
/// unreachable.
struct FailResults {
    inner: Arc<dyn Bus>,
    failures_left: AtomicUsize,
}

#[async_trait]
impl Bus for FailResults {
    async fn publish(&self, subject: &str, msg: Outgoing) -> concierto_bus::Result<()> {
        self.inner.publish(subject, msg).await
    }
    async fn subscribe(&self, subject: &str) -> concierto_bus::Result<Subscription> {
        self.inner.subscribe(subject).await
    }
    async fn queue_subscribe(
        &self,
        subject: &str,
        group: &str,
    ) -> concierto_bus::Result<Subscription> {
        self.inner.queue_subscribe(subject, group).await
    }
    async fn request(
        &self,
        subject: &str,
        msg: Outgoing,
        timeout: Duration,
    ) -> concierto_bus::Result<concierto_bus::Message> {
        self.inner.request(subject, msg, timeout).await
    }
    async fn respond(&self, reply: &str, msg: Outgoing) -> concierto_bus::Result<()> {
        self.inner.respond(reply, msg).await
    }
    async fn ensure_stream(&self, spec: &StreamSpec) -> concierto_bus::Result<()> {
        self.inner.ensure_stream(spec).await
    }
    async fn publish_durable(
        &self,
        subject: &str,
        msg: Outgoing,
    ) -> concierto_bus::Result<PublishAck> {
        if subject.starts_with("result.")
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(BusError::Transport(
                "injected: the server is unreachable".into(),
            ));
        }
        self.inner.publish_durable(subject, msg).await
    }
    async fn consumer(&self, stream: &str, spec: &ConsumerSpec) -> concierto_bus::Result<Consumer> {
        self.inner.consumer(stream, spec).await
    }
    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        self.inner.dead_letters()
    }
    async fn flush(&self) -> concierto_bus::Result<()> {
        self.inner.flush().await
    }
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn a_models_text_answer_gives_the_review_verdict_labels_and_details() {
    /// Answers as a chat model would: prose around a JSON object.
    struct Chatty;
    #[async_trait]
    impl Executor for Chatty {
        fn name(&self) -> &str {
            "openai"
        }
        async fn execute(&self, _role: &RoleDef, task: &Task) -> Outcome {
            let mut o = if task.review.is_some() {
                Outcome::succeeded(
                    "Here is my review.\n```json\n{\"pass\": false, \"score\": 0.6, \"notes\": \"Cut the hype.\", \"labels\": [\"major_brand_changes\"]}\n```",
                    "text/markdown",
                )
            } else {
                Outcome::succeeded(
                    "{\"post\": \"hello\", \"labels\": [\"campaign_launch\"]}",
                    "application/json",
                )
            };
            o.details.insert("finish_reason".into(), "stop".into());
            o
        }
    }
    let bus = embedded().await;
    let results = Results::open(&bus).await;
    let worker = start_worker(role(ROLE), Arc::new(Chatty), bus.clone(), opts("c"))
        .await
        .expect("start");
    let mut review = task("review-1", &[]);
    review.labels.clear();
    review.review = Some(concierto_proto::v1::ReviewContext {
        r#loop: "creator_to_reviewer".into(),
        round: 1,
        subject_step: "draft".into(),
        draft: "UNLOCK it now!!!".into(),
        action: concierto_proto::v1::ReviewAction::Review as i32,
        pass_mark: 0.85,
        ..Default::default()
    });
    publish(&bus, &review).await;
    let got = results.take(1, WAIT).await;
    let r = &got[0].0;
    let v = r
        .verdict
        .clone()
        .expect("the verdict is read from the text");
    assert!(!v.pass);
    assert!((v.score - 0.6).abs() < 1e-9);
    assert_eq!(v.notes, "Cut the hype.");
    assert_eq!(r.labels, vec!["major_brand_changes".to_string()]);
    assert_eq!(
        r.details.get("finish_reason").map(String::as_str),
        Some("stop")
    );

    let mut plain = task("draft-1", &[]);
    plain.labels = vec!["from_step".into()];
    publish(&bus, &plain).await;
    let got = results.take(1, WAIT).await;
    let r = &got[0].0;
    assert!(r.verdict.is_none(), "only reviews get a verdict");
    assert_eq!(
        r.labels,
        vec!["from_step".to_string(), "campaign_launch".to_string()],
        "step labels, then the output's"
    );
    worker.stop().await.expect("stop");
}
