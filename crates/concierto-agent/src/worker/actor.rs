//! The worker actor: one per worker replica, under an actix [`Supervisor`].
//!
//! ```text
//!            fetch task (tokio) ──Fetched──▶ ┌──────────── WorkerActor ─────────────┐
//!   TASKS ──▶  up to `free` tasks            │ Stats: in_flight ≤ capacity, counters│
//!                                            │ each task ─▶ job task (tokio)        │
//!            job task (tokio)  ──JobDone───▶ │ its end (result stored, handed back, │
//!              execute, store, ack           │ or panicked) frees its slot          │
//!                                            │ run_interval: heartbeat              │
//!   StopSignal ─────────────────(ctx)──────▶ │ drain: no fetch, jobs finish, STOPPED│
//!                                            └──────────────────────────────────────┘
//!                                               heartbeats ─▶ publisher task ─▶ bus
//! ```
//!
//! The actor is the only owner of the worker's state: its in-flight count,
//! capacity and counters. It never waits on the bus itself: a fetch and every
//! job run in tokio tasks whose end comes back as a message ([`Fetched`],
//! [`JobDone`]), so the mailbox is the worker's in-flight work and the actor
//! admits a task only into a free slot. A fetch asks for exactly the slots free
//! when it starts, and only one fetch is under way at a time, so a task is
//! never taken that cannot start at once.
//!
//! A job or a fetch that panics is a bug (an executor's panic is already a
//! `RETRYABLE` result, [`super::job`]): the actor stops and its supervisor
//! restarts it ([`Supervised::restarting`]), keeping its state, its mailbox and
//! the jobs still running; the restarted worker sends a heartbeat and fetches
//! again after a backoff (100 ms doubling to 10 s, [`Backoff`]). So a crash
//! never stops the role. The panicked job's task was neither acknowledged nor
//! handed back: it returns after `ack_wait`.
//!
//! The actor holds its own address while it works so that the supervisor,
//! which restarts an actor only while its mailbox has senders, always restarts
//! it; it lets go of it once drained, and then ends.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use concierto_bus::{Bus, BusExt, Consumer, Delivery};
use concierto_core::service::{ServiceControl, StopSignal};
use concierto_proto::v1::{AgentHeartbeat, AgentState, Task, TaskStatus};

use super::job::{self, JobCtx};
use super::state::{Backoff, Stats};
use super::{STOP_FLUSH, millis};

/// Heartbeats waiting to be published at most; more are dropped (and said)
/// while the bus is not taking them.
const HEARTBEAT_QUEUE: usize = 16;

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Fetching and running tasks.
    Running,
    /// A stop was asked for: no fetch; the jobs running finish.
    Draining,
    /// Drained: the last heartbeat and the flush are under way or done.
    Finished,
}

/// What a fetch brought.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) enum Fetched {
    /// Tasks (at most the slots that were free).
    Batch(Vec<(Task, Delivery)>),
    /// The bus refused the fetch; the worker tries again shortly.
    Failed(String),
    /// The fetch panicked: the worker restarts.
    Crashed(String),
}

/// A job ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct JobDone {
    task_id: String,
    /// The status of the result stored, or `None` when the task was handed back.
    stored: Option<TaskStatus>,
    /// Set when the job panicked.
    panic: Option<String>,
}

/// What [`start`] needs.
pub(super) struct Parts {
    pub job: Arc<JobCtx>,
    pub consumer: Consumer,
    pub stats: Stats,
    pub control: ServiceControl,
    /// `agent.heartbeat.<role>.<worker_id>`.
    pub heartbeat_subject: String,
}

/// Starts the worker's actor under a supervisor on `arbiter`, and its
/// heartbeat publisher.
pub(super) fn start(arbiter: &ArbiterHandle, parts: Parts) {
    let (tx, rx) = mpsc::channel(HEARTBEAT_QUEUE);
    let publisher = tokio::spawn(publish_heartbeats(
        parts.job.bus.clone(),
        parts.heartbeat_subject,
        parts.job.worker.clone(),
        rx,
    ));
    let Parts {
        job,
        consumer,
        stats,
        control,
        ..
    } = parts;
    let _addr = Supervisor::start_in_arbiter(arbiter, move |ctx| WorkerActor {
        job,
        consumer: Arc::new(consumer),
        stats,
        phase: Phase::Running,
        fetching: false,
        paused_until: None,
        backoff: Backoff::default(),
        signal: control.signal.clone(),
        control: Some(control),
        heartbeats: Some(tx),
        publisher: Some(publisher),
        me: Some(ctx.address()),
    });
}

/// The actor of one worker replica.
pub(super) struct WorkerActor {
    job: Arc<JobCtx>,
    consumer: Arc<Consumer>,
    stats: Stats,
    phase: Phase,
    /// A fetch is under way; it reports with [`Fetched`].
    fetching: bool,
    /// No fetch before then (a restart's backoff, a refused fetch's pause).
    paused_until: Option<Instant>,
    backoff: Backoff,
    signal: StopSignal,
    /// Told once the worker has drained.
    control: Option<ServiceControl>,
    heartbeats: Option<mpsc::Sender<AgentHeartbeat>>,
    publisher: Option<JoinHandle<()>>,
    /// Keeps the mailbox connected (so the supervisor restarts the actor)
    /// until the worker has finished.
    me: Option<Addr<WorkerActor>>,
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    /// Runs at the start and after every restart: the heartbeat timer, the
    /// stop watcher, a heartbeat at once, then fetching (after the backoff).
    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.phase == Phase::Finished {
            ctx.stop();
            return;
        }
        ctx.run_interval(self.job.opts.heartbeat_every, |act, _| {
            let state = act.stats.state;
            act.heartbeat(state);
        });
        let mut signal = self.signal.clone();
        ctx.spawn(
            async move { signal.stopped().await }
                .into_actor(self)
                .map(|(), act, ctx| act.drain(ctx)),
        );
        if self.phase == Phase::Running {
            self.stats.state = AgentState::Ready;
        }
        let state = self.stats.state;
        self.heartbeat(state);
        if let Some(at) = self.paused_until {
            ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
                act.pump(ctx)
            });
        }
        self.pump(ctx);
        self.maybe_finish(ctx);
    }
}

impl Supervised for WorkerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.phase == Phase::Finished {
            return;
        }
        let now = Instant::now();
        let delay = self.backoff.crashed(now);
        self.paused_until = Some(now + delay);
        tracing::warn!(
            worker = %self.job.worker,
            restarts = self.backoff.restarts,
            in_flight = self.stats.in_flight(),
            fetch_in_ms = millis(delay),
            "agent worker restarted after a crash"
        );
    }
}

impl Handler<Fetched> for WorkerActor {
    type Result = ();

    fn handle(&mut self, msg: Fetched, ctx: &mut Context<Self>) {
        self.fetching = false;
        match msg {
            Fetched::Batch(batch) if self.phase != Phase::Running => {
                // Stopping: hand back what the last fetch brought, at once;
                // the hand-back finishes the drain once done.
                self.hand_back(batch, ctx);
                return;
            }
            Fetched::Batch(batch) => {
                let mut extra = Vec::new();
                for (task, delivery) in batch {
                    if self.stats.start_one(Instant::now()) {
                        self.start_job(task, delivery, ctx);
                    } else {
                        // Cannot happen (a fetch asks for the free slots only); be safe.
                        extra.push((task, delivery));
                    }
                }
                if !extra.is_empty() {
                    self.hand_back(extra, ctx);
                }
            }
            Fetched::Failed(error) => {
                let pause = self.job.opts.fetch_wait.max(Duration::from_millis(200));
                tracing::warn!(worker = %self.job.worker, %error, "fetching tasks failed; trying again");
                self.paused_until = Some(Instant::now() + pause);
                ctx.run_later(pause, |act, ctx| act.pump(ctx));
            }
            Fetched::Crashed(panic) => {
                tracing::error!(worker = %self.job.worker, %panic, "fetching tasks panicked; restarting the worker");
                ctx.stop();
                return;
            }
        }
        self.pump(ctx);
        self.maybe_finish(ctx);
    }
}

impl Handler<JobDone> for WorkerActor {
    type Result = ();

    fn handle(&mut self, msg: JobDone, ctx: &mut Context<Self>) {
        self.stats.end_one(Instant::now());
        if let Some(panic) = msg.panic {
            tracing::error!(worker = %self.job.worker, task_id = %msg.task_id, %panic, "a job panicked; its task returns after ack_wait; restarting the worker");
            ctx.stop();
            return;
        }
        match msg.stored {
            Some(TaskStatus::Succeeded) => self.stats.tasks_done += 1,
            Some(_) => self.stats.tasks_failed += 1,
            None => {}
        }
        self.pump(ctx);
        self.maybe_finish(ctx);
    }
}

impl WorkerActor {
    /// Starts a fetch of the free slots, unless one is under way, the worker
    /// is full, paused or stopping.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Running || self.fetching {
            return;
        }
        if let Some(at) = self.paused_until {
            if at > Instant::now() {
                return;
            }
            self.paused_until = None;
        }
        let free = self.stats.free();
        if free == 0 {
            return;
        }
        self.fetching = true;
        let consumer = self.consumer.clone();
        let wait = self.job.opts.fetch_wait;
        // Not raced against the stop signal: a fetch cut short could leave a
        // task taken and never handed back until ack_wait. It ends within
        // fetch_wait, and a stop waits for it.
        let fetch =
            tokio::spawn(async move { consumer.fetch_proto::<Task>(free as usize, wait).await });
        let addr = ctx.address();
        tokio::spawn(async move {
            addr.do_send(match fetch.await {
                Ok(Ok(batch)) => Fetched::Batch(batch),
                Ok(Err(e)) => Fetched::Failed(e.to_string()),
                Err(e) => Fetched::Crashed(join_error(e)),
            });
        });
    }

    /// Runs one admitted task in its own tokio task; its end comes back as
    /// [`JobDone`].
    fn start_job(&mut self, task: Task, delivery: Delivery, ctx: &mut Context<Self>) {
        let task_id = task.task_id.clone();
        let run = tokio::spawn(job::run(self.job.clone(), task, delivery));
        let addr = ctx.address();
        tokio::spawn(async move {
            addr.do_send(match run.await {
                Ok(stored) => JobDone {
                    task_id,
                    stored,
                    panic: None,
                },
                Err(e) => JobDone {
                    task_id,
                    stored: None,
                    panic: Some(join_error(e)),
                },
            });
        });
    }

    /// Hands tasks back to the queue at once; the actor waits for it.
    fn hand_back(&mut self, batch: Vec<(Task, Delivery)>, ctx: &mut Context<Self>) {
        let worker = self.job.worker.clone();
        ctx.wait(
            async move {
                for (task, delivery) in batch {
                    tracing::info!(worker = %worker, task_id = %task.task_id, "stopping: handing the task back");
                    if let Err(e) = delivery.nak(None).await {
                        tracing::warn!(worker = %worker, task_id = %task.task_id, error = %e, "could not hand a task back; it returns after ack_wait");
                    }
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| act.maybe_finish(ctx)),
        );
    }

    /// A stop was asked for (or the handle dropped): no new task; the running
    /// ones finish.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Draining;
        tracing::info!(worker = %self.job.worker, in_flight = self.stats.in_flight(), "agent worker draining");
        self.heartbeat(AgentState::Draining);
        self.maybe_finish(ctx);
    }

    /// Once drained (nothing running, no fetch under way): the last heartbeat
    /// (`STOPPED`, capacity 0), a bounded flush, then the handle is told and
    /// the actor ends.
    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Draining || self.fetching || self.stats.in_flight() > 0 {
            return;
        }
        self.phase = Phase::Finished;
        let mut last = heartbeat_of(&self.job, &mut self.stats, AgentState::Stopped);
        // A stopped worker takes nothing: routers counting capacity drop it.
        last.capacity = 0;
        let (tx, publisher) = (self.heartbeats.take(), self.publisher.take());
        let (bus, worker) = (self.job.bus.clone(), self.job.worker.clone());
        ctx.wait(
            async move {
                if let Some(tx) = tx {
                    let _ = tokio::time::timeout(STOP_FLUSH, tx.send(last)).await;
                }
                if let Some(publisher) = publisher {
                    let _ = tokio::time::timeout(STOP_FLUSH, publisher).await;
                }
                // Bounded: with NATS gone a flush would wait for a reconnection that may never come.
                match tokio::time::timeout(STOP_FLUSH, bus.flush()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(worker = %worker, error = %e, "could not flush the bus on stop (the last results and heartbeats may not have reached it)");
                    }
                    Err(_) => {
                        tracing::warn!(worker = %worker, within = ?STOP_FLUSH, "could not flush the bus on stop in time (the last results and heartbeats may not have reached it)");
                    }
                }
                tracing::info!(worker = %worker, "agent worker stopped");
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                if let Some(control) = act.control.take() {
                    control.finished(Ok(()));
                }
                act.me = None;
                ctx.stop();
            }),
        );
    }

    /// Queues a heartbeat for the publisher; dropped (and said) when the
    /// queue is full.
    fn heartbeat(&mut self, state: AgentState) {
        let hb = heartbeat_of(&self.job, &mut self.stats, state);
        if let Some(tx) = &self.heartbeats
            && tx.try_send(hb).is_err()
        {
            tracing::warn!(worker = %self.job.worker, "a heartbeat was dropped: the bus is not taking them");
        }
    }
}

/// The heartbeat of a worker in `state` now; starts a new busy/idle window.
pub(super) fn heartbeat_of(job: &JobCtx, stats: &mut Stats, state: AgentState) -> AgentHeartbeat {
    stats.state = state;
    let (busy, idle) = stats.take_window(Instant::now());
    AgentHeartbeat {
        role: job.role.name.clone(),
        worker_id: job.worker.clone(),
        at: Some(concierto_proto::time::now()),
        state: state as i32,
        in_flight: stats.in_flight(),
        capacity: stats.capacity,
        busy_ms: millis(busy),
        idle_ms: millis(idle),
        tasks_done: stats.tasks_done,
        tasks_failed: stats.tasks_failed,
        executor: job.executor.name().to_string(),
        model: job.model.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Publishes the worker's heartbeats in order until the actor lets go of the queue.
async fn publish_heartbeats(
    bus: Arc<dyn Bus>,
    subject: String,
    worker: String,
    mut rx: mpsc::Receiver<AgentHeartbeat>,
) {
    while let Some(hb) = rx.recv().await {
        if let Err(e) = bus.publish_proto(&subject, &hb).await {
            tracing::warn!(worker = %worker, error = %e, "could not publish a heartbeat");
        }
    }
}

/// What a panicked (or cancelled) tokio task said.
fn join_error(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string()),
        Err(e) => format!("cancelled: {e}"),
    }
}
