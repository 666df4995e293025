//! The cases. Each takes a harness and asserts what its name says.

use std::collections::HashSet;
use std::time::Duration;

use concierto_bus::{
    BusError, BusExt, CONTENT_TYPE, ConsumerSpec, Outgoing, Retention, StreamSpec, TRACEPARENT,
    protobuf_content_type,
};
use concierto_proto::v1::{DeadLetter, Task};

use super::Harness;

const WAIT: Duration = Duration::from_secs(5);

fn tasks_stream() -> StreamSpec {
    StreamSpec::new("TASKS", &["task.>"], Retention::WorkQueue)
}

fn dlq_stream() -> StreamSpec {
    StreamSpec::new("DEADLETTER", &["dlq.>"], Retention::Limits)
}

fn consumer(role: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(role, format!("task.{role}"));
    spec.ack_wait = Duration::from_secs(1);
    spec.max_deliver = 3;
    spec
}

fn task(id: &str) -> Task {
    Task {
        task_id: id.to_string(),
        run_id: "run-1".to_string(),
        step_id: "draft".to_string(),
        attempt: 1,
        role: "content-creator".to_string(),
        ..Default::default()
    }
}

/// Receives within `WAIT` or fails the test.
async fn recv(sub: &mut concierto_bus::Subscription) -> concierto_bus::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within the wait")
        .expect("subscription open")
}

/// Asserts nothing more arrives within a short while.
async fn quiet(sub: &mut concierto_bus::Subscription) {
    let extra = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(extra.is_err(), "unexpected message: {extra:?}");
}

pub async fn wildcards_route_as_nats_does(h: &impl Harness) {
    let bus = h.bus().await;
    let mut one = bus.subscribe("run.event.*").await.unwrap();
    let mut many = bus.subscribe("run.>").await.unwrap();
    let mut exact = bus.subscribe("run.event.r1").await.unwrap();
    let mut mid = bus.subscribe("run.*.r2").await.unwrap();
    bus.flush().await.unwrap();
    for s in [
        "run.event.r1",
        "run.event.r2",
        "run.start",
        "run.event.r1.step",
        "other.event.r1",
    ] {
        bus.publish(s, Outgoing::new(s.to_string())).await.unwrap();
    }
    bus.flush().await.unwrap();
    assert_eq!(recv(&mut one).await.subject, "run.event.r1");
    assert_eq!(recv(&mut one).await.subject, "run.event.r2");
    quiet(&mut one).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(recv(&mut many).await.subject);
    }
    assert_eq!(
        got,
        [
            "run.event.r1",
            "run.event.r2",
            "run.start",
            "run.event.r1.step"
        ]
    );
    quiet(&mut many).await;
    let m = recv(&mut exact).await;
    assert_eq!(m.subject, "run.event.r1");
    assert_eq!(&m.payload[..], b"run.event.r1");
    quiet(&mut exact).await;
    assert_eq!(recv(&mut mid).await.subject, "run.event.r2");
    quiet(&mut mid).await;
    assert!(matches!(
        bus.publish("run.*", Outgoing::new("x")).await,
        Err(BusError::InvalidSubject { .. })
    ));
}

pub async fn queue_group_members_share_messages(h: &impl Harness) {
    let bus = h.bus().await;
    let mut a = bus.queue_subscribe("work.>", "workers").await.unwrap();
    let mut b = bus.queue_subscribe("work.>", "workers").await.unwrap();
    let mut watcher = bus.subscribe("work.>").await.unwrap();
    bus.flush().await.unwrap();
    let n = 200;
    for i in 0..n {
        bus.publish(&format!("work.{i}"), Outgoing::new(vec![1u8]))
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    for _ in 0..n {
        recv(&mut watcher).await;
    }
    let (mut got_a, mut got_b) = (0, 0);
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), a.next()).await {
        got_a += 1;
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), b.next()).await {
        got_b += 1;
    }
    assert_eq!(got_a + got_b, n, "each message to exactly one member");
    assert!(
        got_a > 0 && got_b > 0,
        "both members get work: {got_a}/{got_b}"
    );
}

pub async fn request_gets_the_reply_with_headers(h: &impl Harness) {
    let bus = h.bus().await;
    let mut responder = bus.subscribe("admin.echo").await.unwrap();
    bus.flush().await.unwrap();
    let server = bus.clone();
    tokio::spawn(async move {
        while let Some(req) = responder.next().await {
            let reply = req.reply.clone().expect("request has a reply subject");
            let trace = req.traceparent().unwrap_or("none").to_string();
            let mut body = b"echo:".to_vec();
            body.extend_from_slice(&req.payload);
            server
                .respond(&reply, Outgoing::new(body).traceparent(trace))
                .await
                .unwrap();
        }
    });
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply = bus
        .request("admin.echo", Outgoing::new("hi").traceparent(tp), WAIT)
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"echo:hi");
    assert_eq!(reply.traceparent(), Some(tp));

    // Typed request/reply.
    let mut typed = bus.subscribe_proto::<Task>("admin.task").await.unwrap();
    bus.flush().await.unwrap();
    let server = bus.clone();
    tokio::spawn(async move {
        while let Some((mut t, msg)) = typed.next().await {
            t.attempt += 1;
            server
                .respond_proto(msg.reply.as_deref().unwrap(), &t)
                .await
                .unwrap();
        }
    });
    let back: Task = bus
        .request_proto("admin.task", &task("t1"), WAIT)
        .await
        .unwrap();
    assert_eq!(back.attempt, 2);
}

pub async fn request_without_reply_times_out(h: &impl Harness) {
    let bus = h.bus().await;
    let _silent = bus.subscribe("admin.silent").await.unwrap();
    bus.flush().await.unwrap();
    let err = bus
        .request(
            "admin.silent",
            Outgoing::new("?"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err}");
}

pub async fn request_without_subscriber_fails_fast_with_no_responders(h: &impl Harness) {
    let bus = h.bus().await;
    let started = std::time::Instant::now();
    let err = bus
        .request("admin.nobody", Outgoing::new("?"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoResponders(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "must not wait for the timeout"
    );
}

pub async fn ensure_stream_is_idempotent(h: &impl Harness) {
    let bus = h.bus().await;
    let mut spec = tasks_stream();
    bus.ensure_stream(&spec).await.unwrap();
    bus.ensure_stream(&spec).await.unwrap();
    spec.max_msgs = 1000;
    bus.ensure_stream(&spec).await.unwrap();
    let ack = bus
        .publish_durable("task.content-creator", Outgoing::new("x"))
        .await
        .unwrap();
    assert_eq!(ack.stream, "TASKS");
    assert!(!ack.duplicate);
    let err = bus
        .publish_durable("unstored.subject", Outgoing::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoStream(_)), "{err}");
}

pub async fn durable_publish_reaches_core_subscribers_too(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let mut watcher = bus.subscribe("task.*").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish_durable_proto("task.brand-guardian", &task("t1"), "t1")
        .await
        .unwrap();
    let m = recv(&mut watcher).await;
    assert_eq!(m.subject, "task.brand-guardian");
    assert_eq!(
        m.headers.get(CONTENT_TYPE),
        Some(protobuf_content_type("concierto.v1.Task").as_str())
    );
    assert_eq!(m.msg_id(), Some("t1"));
}

pub async fn core_publish_on_a_stream_subject_is_kept_by_the_stream(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let c = bus
        .consumer("TASKS", &consumer("content-creator"))
        .await
        .unwrap();
    // Published while nobody listens, without waiting for a stream ack.
    bus.publish_proto("task.content-creator", &task("core"))
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let got = c
        .fetch_proto::<Task>(5, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let (t, d) = got.into_iter().next().unwrap();
    assert_eq!(t.task_id, "core");
    d.ack().await.unwrap();
}

pub async fn handles_on_one_durable_share_its_work(h: &impl Harness) {
    let bus = h.bus().await;
    let other = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let spec = consumer("content-creator");
    let c1 = bus.consumer("TASKS", &spec).await.unwrap();
    let c2 = other.consumer("TASKS", &spec).await.unwrap();
    let n = 40;
    for i in 0..n {
        let id = format!("t{i}");
        bus.publish_durable_proto("task.content-creator", &task(&id), &id)
            .await
            .unwrap();
    }
    // Another role's work is not ours.
    bus.publish_durable_proto("task.brand-guardian", &task("other"), "other")
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut from = [0usize; 2];
    while seen.len() < n {
        let (a, b) = tokio::join!(
            c1.fetch_proto::<Task>(3, Duration::from_millis(300)),
            c2.fetch_proto::<Task>(3, Duration::from_millis(300))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            !a.is_empty() || !b.is_empty(),
            "work left: {}",
            n - seen.len()
        );
        for (i, batch) in [a, b].into_iter().enumerate() {
            for (t, d) in batch {
                assert_eq!(d.delivered, 1);
                assert!(
                    seen.insert(t.task_id.clone()),
                    "{} delivered twice",
                    t.task_id
                );
                from[i] += 1;
                d.ack().await.unwrap();
            }
        }
    }
    assert!(
        from[0] > 0 && from[1] > 0,
        "both handles got work: {from:?}"
    );
    assert!(
        c1.fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn unacked_message_is_redelivered_after_ack_wait_when_its_consumer_dies(
    h: &impl Harness,
) {
    let survivor = h.bus().await;
    survivor.ensure_stream(&tasks_stream()).await.unwrap();
    let spec = consumer("content-creator");
    let keeper = survivor.consumer("TASKS", &spec).await.unwrap();
    survivor
        .publish_durable_proto("task.content-creator", &task("t1"), "t1")
        .await
        .unwrap();
    {
        // A worker takes the task and dies holding it: its connection goes away.
        let doomed = h.bus().await;
        let c = doomed.consumer("TASKS", &spec).await.unwrap();
        let held = c.fetch_proto::<Task>(1, WAIT).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].1.delivered, 1);
        drop(held);
        drop(c);
        drop(doomed);
    }
    // Not redelivered before ack_wait...
    let early = keeper.fetch(1, Duration::from_millis(300)).await.unwrap();
    assert!(early.is_empty(), "redelivered before ack_wait");
    // ...and redelivered to the surviving replica after it.
    let again = keeper.fetch_proto::<Task>(1, WAIT).await.unwrap();
    assert_eq!(again.len(), 1);
    let (t, d) = again.into_iter().next().unwrap();
    assert_eq!(t.task_id, "t1");
    assert_eq!(d.delivered, 2);
    d.ack().await.unwrap();
    assert!(
        keeper
            .fetch(1, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn nak_with_delay_redelivers_after_the_delay(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let mut spec = consumer("growth-hacker");
    spec.ack_wait = Duration::from_secs(30);
    let c = bus.consumer("TASKS", &spec).await.unwrap();
    bus.publish_durable("task.growth-hacker", Outgoing::new("x"))
        .await
        .unwrap();
    let d = c.fetch(1, WAIT).await.unwrap().pop().unwrap();
    d.nak(Some(Duration::from_millis(800))).await.unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let d = c.fetch(1, WAIT).await.unwrap().pop().expect("redelivered");
    assert_eq!(d.delivered, 2);
    d.nak(None).await.unwrap();
    let d = c
        .fetch(1, WAIT)
        .await
        .unwrap()
        .pop()
        .expect("redelivered at once");
    assert_eq!(d.delivered, 3);
    d.ack().await.unwrap();
}

pub async fn exhausting_max_deliver_dead_letters_the_message(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    bus.ensure_stream(&dlq_stream()).await.unwrap();
    let mut dlq = bus.subscribe_proto::<DeadLetter>("dlq.>").await.unwrap();
    bus.flush().await.unwrap();
    let spec = consumer("ui-designer"); // max_deliver 3
    let c = bus.consumer("TASKS", &spec).await.unwrap();
    bus.publish_durable_proto("task.ui-designer", &task("poison"), "poison")
        .await
        .unwrap();
    for n in 1..=3 {
        let d = c.fetch(1, WAIT).await.unwrap().pop().expect("delivered");
        assert_eq!(d.delivered, n);
        d.nak(None).await.unwrap();
    }
    assert!(
        c.fetch(1, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    let (letter, msg) = tokio::time::timeout(WAIT, dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.subject, "dlq.task.ui-designer");
    assert_eq!(letter.subject, "task.ui-designer");
    assert!(letter.reason.contains("max_deliver"), "{}", letter.reason);
    assert_eq!(letter.deliveries, 4);
    assert_eq!(letter.consumer, "ui-designer");
    let original: Task = prost::Message::decode(letter.payload.as_slice()).unwrap();
    assert_eq!(original.task_id, "poison");
    assert!(
        c.fetch(1, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn duplicate_message_id_is_stored_and_delivered_once(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let c = bus
        .consumer("TASKS", &consumer("content-creator"))
        .await
        .unwrap();
    let first = bus
        .publish_durable_proto("task.content-creator", &task("t1"), "run-1/draft/1")
        .await
        .unwrap();
    let second = bus
        .publish_durable_proto("task.content-creator", &task("t1"), "run-1/draft/1")
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    let got = c.fetch(10, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    for d in got {
        d.ack().await.unwrap();
    }
    assert!(
        c.fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn malformed_payload_on_a_subscription_is_dead_lettered(h: &impl Harness) {
    let bus = h.bus().await;
    let mut dlq = bus.subscribe_proto::<DeadLetter>("dlq.>").await.unwrap();
    let mut tasks = bus.subscribe_proto::<Task>("events.task").await.unwrap();
    bus.flush().await.unwrap();
    let garbage = vec![0xffu8, 0xff, 0xff, 0xff, 0x0f];
    bus.publish("events.task", Outgoing::new(garbage.clone()))
        .await
        .unwrap();
    bus.publish_proto("events.task", &task("good"))
        .await
        .unwrap();
    let (t, _) = tokio::time::timeout(WAIT, tasks.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.task_id, "good",
        "the subscriber skips the bad message and goes on"
    );
    let (letter, _) = tokio::time::timeout(WAIT, dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.subject, "events.task");
    assert_eq!(letter.payload, garbage);
    assert_eq!(letter.expected_type, "concierto.v1.Task");
    assert!(letter.reason.contains("cannot decode"), "{}", letter.reason);
}

pub async fn malformed_payload_on_a_work_queue_is_dead_lettered_and_terminated(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    bus.ensure_stream(&dlq_stream()).await.unwrap();
    let mut dlq = bus.subscribe_proto::<DeadLetter>("dlq.>").await.unwrap();
    bus.flush().await.unwrap();
    let c = bus
        .consumer("TASKS", &consumer("brand-guardian"))
        .await
        .unwrap();
    let garbage = vec![0x0bu8, 0x0c];
    bus.publish_durable(
        "task.brand-guardian",
        Outgoing::new(garbage.clone()).traceparent("00-1-2-01"),
    )
    .await
    .unwrap();
    bus.publish_durable_proto("task.brand-guardian", &task("good"), "good")
        .await
        .unwrap();
    let got = c.fetch_proto::<Task>(10, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.task_id, "good");
    let (letter, _) = tokio::time::timeout(WAIT, dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.payload, garbage);
    assert_eq!(letter.consumer, "brand-guardian");
    assert_eq!(
        letter.headers.get(TRACEPARENT).map(String::as_str),
        Some("00-1-2-01")
    );
    for (_, d) in got {
        d.ack().await.unwrap();
    }
    // Terminated: never delivered again, even after ack_wait.
    assert!(
        c.fetch(10, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn term_dead_letters_with_the_reason(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    bus.ensure_stream(&dlq_stream()).await.unwrap();
    let mut dlq = bus.subscribe_proto::<DeadLetter>("dlq.>").await.unwrap();
    bus.flush().await.unwrap();
    let c = bus
        .consumer("TASKS", &consumer("analytics-reporter"))
        .await
        .unwrap();
    bus.publish_durable_proto("task.analytics-reporter", &task("t9"), "t9")
        .await
        .unwrap();
    let d = c.fetch(1, WAIT).await.unwrap().pop().unwrap();
    d.term("provider refused the request: 400 bad model")
        .await
        .unwrap();
    let (letter, _) = tokio::time::timeout(WAIT, dlq.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.reason, "provider refused the request: 400 bad model");
    assert_eq!(letter.deliveries, 1);
    assert!(
        c.fetch(1, Duration::from_millis(1500))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn standard_streams_are_declared_idempotently_with_limits(h: &impl Harness) {
    let a = h.bus().await;
    let b = h.bus().await;
    let limits = concierto_bus::StreamLimits {
        max_msgs: 2,
        ..Default::default()
    };
    // Two processes starting at once both succeed.
    let (ra, rb) = tokio::join!(
        concierto_bus::ensure_standard_streams(a.as_ref(), &limits),
        concierto_bus::ensure_standard_streams(b.as_ref(), &limits)
    );
    ra.unwrap();
    rb.unwrap();
    concierto_bus::ensure_standard_streams(a.as_ref(), &limits)
        .await
        .unwrap();
    for (subject, stream) in [
        ("run.start", "RUNS"),
        ("task.content-creator", "TASKS"),
        ("result.content-creator", "RESULTS"),
        ("run.event.r1", "EVENTS"),
        ("event.metric.engagement_rate", "EVENTS"),
        ("content.ingested.siteinspire", "EVENTS"),
        ("feedback.in.slack", "FEEDBACK"),
        ("dlq.task.x", "DEADLETTER"),
    ] {
        let ack = a
            .publish_durable(subject, Outgoing::new("x"))
            .await
            .unwrap();
        assert_eq!(ack.stream, stream, "{subject}");
    }
    // The limit applies: a limits stream keeps the newest two.
    for i in 0..5 {
        a.publish_durable(&format!("run.event.r{i}"), Outgoing::new("x"))
            .await
            .unwrap();
    }
    let mut c = ConsumerSpec::new("reader", "run.event.>");
    c.ack_wait = Duration::from_secs(30);
    let reader = a.consumer("EVENTS", &c).await.unwrap();
    let got = reader.fetch(10, WAIT).await.unwrap();
    let subjects: Vec<_> = got.iter().map(|d| d.message.subject.clone()).collect();
    assert_eq!(subjects, ["run.event.r3", "run.event.r4"]);
}

pub async fn a_prefetching_handle_delivers_each_message_once_and_redelivers_the_unacked(
    h: &impl Harness,
) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let mut spec = consumer("orchestrator");
    spec.prefetch = 16;
    let c = bus.consumer("TASKS", &spec).await.unwrap();
    let n = 50;
    for i in 0..n {
        let id = format!("t{i}");
        bus.publish_durable_proto("task.orchestrator", &task(&id), &id)
            .await
            .unwrap();
    }
    let mut seen = HashSet::new();
    let mut held = None;
    while seen.len() < n {
        let got = c.fetch_proto::<Task>(8, WAIT).await.unwrap();
        assert!(!got.is_empty(), "work left: {}", n - seen.len());
        for (t, d) in got {
            assert_eq!(d.delivered, 1);
            assert!(seen.insert(t.task_id.clone()), "{} twice", t.task_id);
            if held.is_none() {
                held = Some(t.task_id);
                drop(d); // not acknowledged
            } else {
                d.ack().await.unwrap();
            }
        }
    }
    let again = c.fetch_proto::<Task>(8, WAIT).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(Some(&again[0].0.task_id), held.as_ref());
    assert_eq!(again[0].1.delivered, 2);
}

/// A prefetching handle that is let go (a partition moving to another
/// process) hands back what it pulled but never handed out: the next handle
/// on the durable gets it at once, not after `ack_wait` (30 s here).
pub async fn a_prefetching_handle_let_go_hands_back_what_it_pulled(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    let mut spec = consumer("orchestrator");
    spec.ack_wait = Duration::from_secs(30);
    spec.max_deliver = 0;
    spec.prefetch = 16;
    let n = 20;
    for i in 0..n {
        let id = format!("t{i}");
        bus.publish_durable_proto("task.orchestrator", &task(&id), &id)
            .await
            .unwrap();
    }
    let first = bus.consumer("TASKS", &spec).await.unwrap();
    let got = first.fetch_proto::<Task>(1, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    let mut seen: HashSet<String> = HashSet::new();
    for (t, d) in got {
        seen.insert(t.task_id);
        d.ack().await.unwrap();
    }
    drop(first);
    let next = bus.consumer("TASKS", &spec).await.unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < n && tokio::time::Instant::now() < until {
        for (t, d) in next
            .fetch_proto::<Task>(8, Duration::from_millis(500))
            .await
            .unwrap()
        {
            seen.insert(t.task_id);
            d.ack().await.unwrap();
        }
    }
    assert_eq!(
        seen.len(),
        n,
        "what the first handle pulled came back before its ack_wait"
    );
}

pub async fn a_deliver_new_consumer_skips_what_was_stored_before_it_and_keeps_its_place(
    h: &impl Harness,
) {
    let bus = h.bus().await;
    let events = StreamSpec::new("EVENTS", &["event.>"], Retention::Limits);
    bus.ensure_stream(&events).await.unwrap();
    for i in 0..3 {
        bus.publish_durable(&format!("event.old.{i}"), Outgoing::new("old"))
            .await
            .unwrap();
    }
    let mut spec = ConsumerSpec::new("listener", "event.>");
    spec.ack_wait = Duration::from_secs(30);
    spec.deliver_new = true;
    let listener = bus.consumer("EVENTS", &spec).await.unwrap();
    assert!(
        listener
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "a new deliver_new consumer replayed what was stored before it"
    );
    bus.publish_durable("event.new.1", Outgoing::new("new"))
        .await
        .unwrap();
    let got = listener.fetch(10, WAIT).await.unwrap();
    let subjects: Vec<_> = got.iter().map(|d| d.message.subject.clone()).collect();
    assert_eq!(subjects, ["event.new.1"]);
    for d in got {
        d.ack().await.unwrap();
    }

    // The durable exists: opened again (as after a restart) it goes on from
    // where it was, and what was stored meanwhile is delivered.
    drop(listener);
    bus.publish_durable("event.new.2", Outgoing::new("while away"))
        .await
        .unwrap();
    let again = bus.consumer("EVENTS", &spec).await.unwrap();
    let got = again.fetch(10, WAIT).await.unwrap();
    let subjects: Vec<_> = got.iter().map(|d| d.message.subject.clone()).collect();
    assert_eq!(subjects, ["event.new.2"]);
    for d in got {
        d.ack().await.unwrap();
    }

    // Without deliver_new, a new consumer starts at the oldest message kept.
    let mut all = ConsumerSpec::new("historian", "event.>");
    all.ack_wait = Duration::from_secs(30);
    let historian = bus.consumer("EVENTS", &all).await.unwrap();
    let mut subjects = Vec::new();
    while subjects.len() < 5 {
        let got = historian.fetch(10, WAIT).await.unwrap();
        assert!(!got.is_empty(), "only {subjects:?}");
        for d in got {
            subjects.push(d.message.subject.clone());
            d.ack().await.unwrap();
        }
    }
    assert_eq!(
        subjects,
        [
            "event.old.0",
            "event.old.1",
            "event.old.2",
            "event.new.1",
            "event.new.2"
        ]
    );
}

pub async fn stored_dead_letters_are_listed_in_order_and_deleted_one_by_one(h: &impl Harness) {
    let bus = h.bus().await;
    bus.ensure_stream(&tasks_stream()).await.unwrap();
    bus.ensure_stream(&dlq_stream()).await.unwrap();
    let c = bus
        .consumer("TASKS", &consumer("trend-researcher"))
        .await
        .unwrap();
    for id in ["d1", "d2", "d3"] {
        bus.publish_durable_proto("task.trend-researcher", &task(id), id)
            .await
            .unwrap();
        let d = c.fetch(1, WAIT).await.unwrap().pop().unwrap();
        d.term(format!("gave up on {id}")).await.unwrap();
    }
    let listed = concierto_testkit::eventually(WAIT, "three dead letters stored", || {
        let bus = bus.clone();
        async move {
            let l = bus.stream_messages("DEADLETTER", 0, 10).await.ok()?;
            (l.len() == 3).then_some(l)
        }
    })
    .await;
    let seqs: Vec<u64> = listed.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let letter: DeadLetter = concierto_bus::decode(&listed[1].1).unwrap();
    assert_eq!(listed[1].1.subject, "dlq.task.trend-researcher");
    assert_eq!(letter.reason, "gave up on d2");
    let original: Task = prost::Message::decode(letter.payload.as_slice()).unwrap();
    assert_eq!(original.task_id, "d2");
    // Paging: from the second sequence on, at most one.
    let page = bus.stream_messages("DEADLETTER", seqs[1], 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].0, seqs[1]);
    // Deleting one leaves the others; deleting it again finds nothing.
    assert!(
        bus.delete_stream_message("DEADLETTER", seqs[1])
            .await
            .unwrap()
    );
    assert!(
        !bus.delete_stream_message("DEADLETTER", seqs[1])
            .await
            .unwrap()
    );
    let left: Vec<u64> = bus
        .stream_messages("DEADLETTER", 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(left, [seqs[0], seqs[2]]);
    assert!(bus.stream_messages("NO_SUCH_STREAM", 0, 10).await.is_err());
}

pub async fn a_lease_has_one_holder_and_passes_on_when_released(h: &impl Harness) {
    use concierto_bus::lease::{self, Holder, LeaseOptions};
    let a = h.bus().await;
    let b = h.bus().await;
    let opts = LeaseOptions {
        ttl: Duration::from_millis(1500),
    };
    let first = lease::acquire(a.leases().await.unwrap(), "orchestrator", "a", opts, |_| {})
        .await
        .unwrap();
    let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let store_b = b.leases().await.unwrap();
    let second = tokio::spawn(async move {
        lease::acquire(store_b, "orchestrator", "b", opts, move |who| {
            let _ = told_tx.send(who.clone());
        })
        .await
        .unwrap()
    });
    // b learns who holds it and waits, well past the ttl, while a renews.
    let who = tokio::time::timeout(WAIT, told.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, Holder::Held("a".into()));
    tokio::time::sleep(opts.ttl * 3).await;
    assert!(!second.is_finished(), "b took a lease a still renews");
    assert!(!first.is_lost());
    // a lets go: b has it at once.
    first.release().await;
    let second = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert!(!second.is_lost());
    assert_eq!(
        a.leases()
            .await
            .unwrap()
            .get("orchestrator")
            .await
            .unwrap()
            .unwrap()
            .0,
        b"b".to_vec()
    );
}
