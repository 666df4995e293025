//! Helpers shared by the worker tests: roles, tasks, a results reader, and
//! executors that record what they run.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use concierto_agent::{BuiltinExecutor, Executor, Outcome, WorkerOptions, consumer_spec};
use concierto_bus::{
    Bus, BusExt, Consumer, ConsumerSpec, EmbeddedBus, StreamLimits, ensure_standard_streams,
};
use concierto_core::roles::RoleDef;
use concierto_core::subjects;
use concierto_proto::v1::{Task, TaskResult};

pub const ROLE: &str = "content-creator";

/// An actix System on a multi-threaded tokio runtime (two threads), as the
/// `concierto` binary runs: `#[actix_rt::test(system = "common::MultiThreaded")]`.
pub struct MultiThreaded;

impl MultiThreaded {
    // `#[actix_rt::test(system = ..)]` calls `<system>::new().block_on(..)`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> actix::SystemRunner {
        actix::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
    }
}

pub fn role(name: &str) -> RoleDef {
    RoleDef {
        name: name.to_string(),
        description: "A role for tests.".into(),
        tools: Vec::new(),
        model: None,
        executor: Some("builtin".into()),
        color: None,
        prompt: "You write short, warm posts for the studio.".into(),
        file: PathBuf::from("agents/test.md"),
        line: 2,
    }
}

pub fn task(id: &str, params: &[(&str, &str)]) -> Task {
    Task {
        task_id: id.to_string(),
        run_id: "run-1".into(),
        step_id: "draft".into(),
        attempt: 1,
        role: ROLE.into(),
        workflow: "daily-content-pipeline".into(),
        instruction: "Write a social post about sustainable packaging design.".into(),
        inputs: vec![concierto_proto::v1::TaskInput {
            name: "trigger".into(),
            content: "Sustainable packaging design is rising. Handmade typography is back.".into(),
            content_type: "text/plain".into(),
        }],
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        labels: vec!["campaign_launch".into()],
        ..Default::default()
    }
}

pub async fn publish(bus: &Arc<dyn Bus>, t: &Task) {
    bus.publish_durable_proto(&subjects::task(&t.role), t, &t.task_id)
        .await
        .expect("publish a task");
}

pub fn opts(id: &str) -> WorkerOptions {
    WorkerOptions {
        worker_id: id.to_string(),
        max_in_flight: 2,
        heartbeat_every: Duration::from_millis(200),
        ack_wait: Duration::from_secs(1),
        max_deliver: 5,
        fetch_wait: Duration::from_millis(200),
        context: Default::default(),
    }
}

pub async fn embedded() -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::default());
    ensure_standard_streams(&*bus, &StreamLimits::default())
        .await
        .expect("standard streams");
    bus
}

/// Reads (and acknowledges) what the workers stored in RESULTS, as the
/// orchestrator would.
pub struct Results {
    consumer: Consumer,
}

impl Results {
    pub async fn open(bus: &Arc<dyn Bus>) -> Results {
        let mut spec = ConsumerSpec::new("test-results", subjects::RESULTS);
        spec.ack_wait = Duration::from_secs(30);
        Results {
            consumer: bus
                .consumer("RESULTS", &spec)
                .await
                .expect("results consumer"),
        }
    }

    /// Exactly `n` results within `within`, or the test fails.
    pub async fn take(
        &self,
        n: usize,
        within: Duration,
    ) -> Vec<(TaskResult, concierto_bus::Message)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} results within {within:?}",
                out.len()
            );
            for (r, d) in self
                .consumer
                .fetch_proto::<TaskResult>(n - out.len(), left.min(Duration::from_millis(500)))
                .await
                .expect("fetch results")
            {
                let msg = d.message.clone();
                d.ack().await.expect("ack a result");
                out.push((r, msg));
            }
        }
        out
    }

    /// Asserts no (further) result arrives within `d`.
    pub async fn none_within(&self, d: Duration) {
        let extra = self
            .consumer
            .fetch_proto::<TaskResult>(10, d)
            .await
            .expect("fetch results");
        let ids: Vec<_> = extra.iter().map(|(r, _)| r.task_id.clone()).collect();
        assert!(ids.is_empty(), "unexpected results: {ids:?}");
    }
}

/// Asserts the role's queue holds nothing, not even unacknowledged tasks: a
/// fresh handle on the durable gets nothing within `ack_wait` and a half.
pub async fn assert_queue_empty(bus: &Arc<dyn Bus>, o: &WorkerOptions) {
    let c = bus
        .consumer("TASKS", &consumer_spec(ROLE, o))
        .await
        .expect("task consumer");
    let left = c
        .fetch_proto::<Task>(10, o.ack_wait + o.ack_wait / 2)
        .await
        .expect("fetch tasks");
    let ids: Vec<_> = left.iter().map(|(t, _)| t.task_id.clone()).collect();
    assert!(ids.is_empty(), "tasks left in the queue: {ids:?}");
}

/// Delegates to the builtin executor, recording what runs: how many at once
/// (now and at most), every task id started and finished.
#[derive(Default)]
pub struct Probe {
    inner: BuiltinExecutor,
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    pub started: Mutex<Vec<String>>,
    pub finished: Mutex<Vec<String>>,
}

impl Probe {
    pub fn started(&self) -> Vec<String> {
        self.started.lock().expect("lock").clone()
    }
    pub fn finished(&self) -> Vec<String> {
        self.finished.lock().expect("lock").clone()
    }
    pub fn max(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }
    /// Waits until `id` has started.
    pub async fn wait_started(&self, id: &str) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !self.started().iter().any(|s| s == id) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} never started"));
    }
}

#[async_trait]
impl Executor for Probe {
    fn name(&self) -> &str {
        "builtin"
    }

    fn model(&self, role: &RoleDef) -> String {
        self.inner.model(role)
    }

    async fn execute(&self, role: &RoleDef, task: &Task) -> Outcome {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.started
            .lock()
            .expect("lock")
            .push(task.task_id.clone());
        let out = self.inner.execute(role, task).await;
        self.finished
            .lock()
            .expect("lock")
            .push(task.task_id.clone());
        self.running.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

/// Starts a task and never finishes it: a worker stuck or about to die.
#[derive(Default)]
pub struct Hang {
    pub started: tokio::sync::Notify,
}

#[async_trait]
impl Executor for Hang {
    fn name(&self) -> &str {
        "hang"
    }

    async fn execute(&self, _role: &RoleDef, _task: &Task) -> Outcome {
        self.started.notify_one();
        std::future::pending::<Outcome>().await
    }
}
