//! The worker as a supervised actor: a job or a fetch that panics restarts the
//! worker (it announces itself again and goes on with the next task) instead
//! of stopping the role; the actor never runs more than its capacity; a stop
//! drains what runs. Over a real nats-server, and over the embedded bus where
//! a fault is injected.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use concierto_agent::{AgentError, BuiltinExecutor, start_worker};
use concierto_bus::{
    Acker, Bus, BusExt, Consumer, ConsumerSpec, DeadLetters, Delivery, NatsBus, NatsOptions,
    Outgoing, PublishAck, RawConsumer, RawDelivery, Settle, StreamLimits, StreamSpec, Subscription,
    ensure_standard_streams,
};
use concierto_core::subjects;
use concierto_proto::v1::{AgentHeartbeat, AgentState, TaskStatus};
use concierto_testkit::NatsServer;
use tokio::sync::Mutex;

use common::{Probe, ROLE, Results, assert_queue_empty, embedded, opts, publish, role, task};

const WAIT: Duration = Duration::from_secs(15);

/// Heartbeats of one worker until its STOPPED one (or `within` of silence).
async fn heartbeats_until_stopped(
    sub: &mut concierto_bus::TypedSubscription<AgentHeartbeat>,
    within: Duration,
) -> Vec<AgentHeartbeat> {
    let mut all = Vec::new();
    while let Ok(Some((hb, _))) = tokio::time::timeout(within, sub.next()).await {
        let stopped = hb.state() == AgentState::Stopped;
        all.push(hb);
        if stopped {
            break;
        }
    }
    all
}

fn count(all: &[AgentHeartbeat], state: AgentState) -> usize {
    all.iter().filter(|h| h.state() == state).count()
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn a_job_that_panics_restarts_the_worker_and_the_next_task_is_done() {
    let inner = embedded().await;
    let faulty: Arc<dyn Bus> = Arc::new(Faulty::new(inner.clone(), 1, 0));
    let results = Results::open(&inner).await;
    let mut hbs = inner
        .subscribe_proto::<AgentHeartbeat>(&subjects::heartbeat(ROLE, "p"))
        .await
        .expect("subscribe");
    let probe = Arc::new(Probe::default());
    let mut o = opts("p");
    // Heartbeats only at a (re)start and a stop.
    o.heartbeat_every = Duration::from_secs(3600);
    let worker = start_worker(role(ROLE), probe.clone(), faulty, o.clone())
        .await
        .expect("start");
    publish(&inner, &task("t1", &[])).await;
    // t1's job panics storing its result; t1 comes back after ack_wait.
    probe.wait_started("t1").await;
    publish(&inner, &task("t2", &[])).await;
    let mut got = results.take(2, WAIT).await;
    got.sort_by(|a, b| a.0.task_id.cmp(&b.0.task_id));
    assert_eq!(got[0].0.task_id, "t1");
    assert_eq!(got[1].0.task_id, "t2");
    assert!(got.iter().all(|(r, _)| r.status() == TaskStatus::Succeeded));
    results.none_within(Duration::from_millis(300)).await;
    worker
        .stop()
        .await
        .expect("the restarted worker stops cleanly");

    let started = probe.started();
    assert_eq!(
        started.iter().filter(|t| *t == "t1").count(),
        2,
        "t1 ran again after the panic: {started:?}"
    );
    let all = heartbeats_until_stopped(&mut hbs, Duration::from_secs(2)).await;
    assert_eq!(
        count(&all, AgentState::Ready),
        2,
        "a READY heartbeat at the start and one after the restart: {all:?}"
    );
    let last = all.last().expect("heartbeats");
    assert_eq!(last.state(), AgentState::Stopped);
    assert_eq!((last.tasks_done, last.in_flight), (2, 0));
    assert_queue_empty(&inner, &o).await;
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn a_fetch_that_panics_restarts_the_worker_with_a_backoff_and_it_goes_on() {
    let inner = embedded().await;
    let faulty: Arc<dyn Bus> = Arc::new(Faulty::new(inner.clone(), 0, 3));
    let results = Results::open(&inner).await;
    let mut hbs = inner
        .subscribe_proto::<AgentHeartbeat>(&subjects::heartbeat(ROLE, "f"))
        .await
        .expect("subscribe");
    publish(&inner, &task("t1", &[])).await;
    let mut o = opts("f");
    o.heartbeat_every = Duration::from_secs(3600);
    let worker = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        faulty,
        o.clone(),
    )
    .await
    .expect("start");
    let got = results.take(1, WAIT).await;
    assert_eq!(got[0].0.task_id, "t1");
    worker.stop().await.expect("stop");
    let all = heartbeats_until_stopped(&mut hbs, Duration::from_secs(2)).await;
    assert_eq!(
        count(&all, AgentState::Ready),
        4,
        "three fetches panicked: three restarts after the start: {all:?}"
    );
    assert_eq!(all.last().map(|h| h.tasks_done), Some(1));
    assert_queue_empty(&inner, &o).await;
}

#[tokio::test]
async fn starting_a_worker_outside_an_actix_system_says_what_to_do() {
    let bus = embedded().await;
    let e = start_worker(
        role(ROLE),
        Arc::new(BuiltinExecutor::default()),
        bus,
        opts("w"),
    )
    .await
    .expect_err("no actix System");
    assert!(matches!(e, AgentError::NoSystem), "{e:?}");
    assert!(
        e.to_string().contains("actix::System::with_tokio_rt"),
        "{e}"
    );
}

async fn nats(server: &NatsServer, name: &str) -> Arc<dyn Bus> {
    let o = NatsOptions {
        client_name: name.to_string(),
        ..Default::default()
    };
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&server.url(), o).await.expect("connect"));
    ensure_standard_streams(&*bus, &StreamLimits::default())
        .await
        .expect("standard streams");
    bus
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn the_actor_never_runs_more_than_its_capacity_over_nats() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server, "test").await;
    let results = Results::open(&bus).await;
    let mut hbs = bus
        .subscribe_proto::<AgentHeartbeat>(&subjects::heartbeat(ROLE, "cap"))
        .await
        .expect("subscribe");
    for i in 0..24 {
        let ms = 20 + (i * 37) % 90;
        publish(
            &bus,
            &task(&format!("t{i}"), &[("builtin.sleep_ms", &ms.to_string())]),
        )
        .await;
    }
    let probe = Arc::new(Probe::default());
    let mut o = opts("cap");
    o.max_in_flight = 3;
    o.heartbeat_every = Duration::from_millis(15);
    let worker = start_worker(
        role(ROLE),
        probe.clone(),
        nats(&server, "cap").await,
        o.clone(),
    )
    .await
    .expect("start");
    results.take(24, WAIT).await;
    worker.stop().await.expect("stop");
    assert_eq!(probe.max(), 3, "ran up to its capacity and never more");
    assert_eq!(probe.started().len(), 24, "each task once");
    let all = heartbeats_until_stopped(&mut hbs, Duration::from_secs(2)).await;
    assert!(all.len() > 3, "{all:?}");
    for hb in &all {
        assert!(
            hb.in_flight <= 3,
            "a heartbeat says {} in flight",
            hb.in_flight
        );
    }
    assert_queue_empty(&bus, &o).await;
}

#[actix_rt::test(system = "common::MultiThreaded")]
async fn stop_drains_the_running_jobs_over_nats_then_says_stopped_with_no_capacity() {
    let server = NatsServer::start().expect("start nats-server");
    let bus = nats(&server, "test").await;
    let results = Results::open(&bus).await;
    let mut hbs = bus
        .subscribe_proto::<AgentHeartbeat>(&subjects::heartbeat(ROLE, "d"))
        .await
        .expect("subscribe");
    let probe = Arc::new(Probe::default());
    let mut o = opts("d");
    o.heartbeat_every = Duration::from_secs(3600);
    let worker = start_worker(
        role(ROLE),
        probe.clone(),
        nats(&server, "d").await,
        o.clone(),
    )
    .await
    .expect("start");
    publish(&bus, &task("a", &[("builtin.sleep_ms", "600")])).await;
    publish(&bus, &task("b", &[("builtin.sleep_ms", "600")])).await;
    probe.wait_started("a").await;
    probe.wait_started("b").await;
    worker.stop().await.expect("stop");
    // Both finished, stored and acknowledged before stop returned.
    let mut finished = probe.finished();
    finished.sort();
    assert_eq!(finished, ["a", "b"]);
    let got = results.take(2, Duration::from_secs(2)).await;
    assert!(got.iter().all(|(r, _)| r.status() == TaskStatus::Succeeded));
    let all = heartbeats_until_stopped(&mut hbs, Duration::from_secs(2)).await;
    let states: Vec<AgentState> = all.iter().map(|h| h.state()).collect();
    assert_eq!(
        states,
        [
            AgentState::Starting,
            AgentState::Ready,
            AgentState::Draining,
            AgentState::Stopped
        ]
    );
    assert_eq!(all[2].in_flight, 2, "draining with both jobs running");
    let last = &all[3];
    assert_eq!(
        (last.in_flight, last.capacity, last.tasks_done),
        (0, 0, 2),
        "stopped: nothing running, no capacity, both done"
    );
    assert_queue_empty(&bus, &o).await;
}

/// A bus whose first `panic_results` stores of a result panic, and whose task
/// consumer's first `panic_fetches` fetches panic: bugs in a job and in a fetch.
struct Faulty {
    inner: Arc<dyn Bus>,
    panic_results: AtomicUsize,
    panic_fetches: Arc<AtomicUsize>,
}

impl Faulty {
    fn new(inner: Arc<dyn Bus>, results: usize, fetches: usize) -> Self {
        Faulty {
            inner,
            panic_results: AtomicUsize::new(results),
            panic_fetches: Arc::new(AtomicUsize::new(fetches)),
        }
    }
}

fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Bus for Faulty {
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
        if subject.starts_with("result.") && take_one(&self.panic_results) {
            panic!("injected: a bug while storing a result");
        }
        self.inner.publish_durable(subject, msg).await
    }
    async fn consumer(&self, stream: &str, spec: &ConsumerSpec) -> concierto_bus::Result<Consumer> {
        let inner = self.inner.consumer(stream, spec).await?;
        Ok(Consumer::new(
            Box::new(PanickyFetch {
                inner,
                panics_left: self.panic_fetches.clone(),
            }),
            stream,
            spec.clone(),
            self.inner.dead_letters(),
        ))
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

/// A consumer whose first fetches panic; then it hands out the inner
/// consumer's deliveries.
struct PanickyFetch {
    inner: Consumer,
    panics_left: Arc<AtomicUsize>,
}

#[async_trait]
impl RawConsumer for PanickyFetch {
    async fn fetch(&self, max: usize, wait: Duration) -> concierto_bus::Result<Vec<RawDelivery>> {
        if take_one(&self.panics_left) {
            panic!("injected: a bug while fetching tasks");
        }
        Ok(self
            .inner
            .fetch(max, wait)
            .await?
            .into_iter()
            .map(|d| RawDelivery {
                message: d.message.clone(),
                delivered: d.delivered,
                stream_seq: d.stream_seq,
                acker: Box::new(Settles(Mutex::new(Some(d)))),
            })
            .collect())
    }
}

/// Settles a delivery of the inner consumer.
struct Settles(Mutex<Option<Delivery>>);

#[async_trait]
impl Acker for Settles {
    async fn settle(&self, how: Settle) -> concierto_bus::Result<()> {
        let mut slot = self.0.lock().await;
        match how {
            Settle::InProgress => match slot.as_ref() {
                Some(d) => d.in_progress().await,
                None => Ok(()),
            },
            Settle::Ack => match slot.take() {
                Some(d) => d.ack().await,
                None => Ok(()),
            },
            Settle::Nak(delay) => match slot.take() {
                Some(d) => d.nak(delay).await,
                None => Ok(()),
            },
            Settle::Term => match slot.take() {
                Some(d) => d.term("terminated").await,
                None => Ok(()),
            },
        }
    }
}
