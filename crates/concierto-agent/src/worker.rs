//! The worker: one replica of one role. It shares the role's durable consumer
//! with every other replica, runs up to `max_in_flight` tasks at once, stores
//! each result before acknowledging its task, and reports heartbeats.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument as _;

use concierto_bus::{Bus, BusError, BusExt, Consumer, ConsumerSpec, Delivery, encode};
use concierto_core::config::Studio;
use concierto_core::roles::RoleDef;
use concierto_core::service::{ServiceControl, ServiceHandle, StopSignal};
use concierto_core::structured;
use concierto_core::subjects;
use concierto_proto::v1::{
    AgentHeartbeat, AgentState, ReviewAction, Task, TaskResult, TaskStatus, Usage, Verdict,
};

use crate::context::ContextOptions;
use crate::error::AgentError;
use crate::executor::{Executor, Outcome};

/// The stream tasks are stored in.
pub const TASKS_STREAM: &str = "TASKS";

/// How long a stopping worker waits for the bus to flush.
pub const STOP_FLUSH: Duration = Duration::from_secs(2);

/// How a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// This replica's id; results and heartbeats name the worker
    /// `<role>.<worker_id>`.
    pub worker_id: String,
    /// Tasks run at once (at least 1).
    pub max_in_flight: usize,
    /// How often a heartbeat is published.
    pub heartbeat_every: Duration,
    /// The consumer's `ack_wait`: an unacknowledged task goes to another replica
    /// after it. While a task runs, `in_progress` is sent every third of it.
    pub ack_wait: Duration,
    /// The consumer's `max_deliver`: deliveries before a task is dead-lettered.
    pub max_deliver: u64,
    /// How long one fetch waits for a task when the queue is empty (this also
    /// bounds how long a stop waits for the fetch under way).
    pub fetch_wait: Duration,
    /// Where a task's `context` is fetched from ([`crate::context`]): the
    /// brand folder and how long a request waits.
    pub context: ContextOptions,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_id: default_worker_id(),
            max_in_flight: 4,
            heartbeat_every: Duration::from_secs(10),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            fetch_wait: Duration::from_millis(500),
            context: ContextOptions::default(),
        }
    }
}

impl WorkerOptions {
    /// The options a studio gives `role`: `ack_wait` and `max_deliver` from
    /// `server.bus`, `max_in_flight` from `agents.roles.<role>` (default 4).
    pub fn for_role(studio: &Studio, role: &str) -> Self {
        let max_in_flight = studio
            .agents
            .roles
            .get(role)
            .and_then(|s| s.max_in_flight)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(4);
        WorkerOptions {
            max_in_flight,
            ack_wait: studio.server.bus.ack_wait,
            max_deliver: studio.server.bus.max_deliver,
            context: ContextOptions::for_studio(studio),
            ..Default::default()
        }
    }
}

/// `$HOSTNAME-<pid>`, or `worker-<pid>` without a host name.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{}-{}", host.trim(), std::process::id())
}

/// The consumer spec every replica of `role` opens: durable = the role,
/// filter `task.<role>`.
pub fn consumer_spec(role: &str, opts: &WorkerOptions) -> ConsumerSpec {
    ConsumerSpec {
        durable: role.to_string(),
        filter: subjects::task(role),
        ack_wait: opts.ack_wait,
        max_deliver: opts.max_deliver,
        max_ack_pending: 0,
        // Never pull a task this worker cannot start at once.
        prefetch: 0,
        // A new role's queue takes the tasks already waiting for it.
        deliver_new: false,
    }
}

/// Starts a worker for `role`: opens the role's shared consumer on the `TASKS`
/// stream (which must exist: `concierto_bus::ensure_standard_streams`), then
/// fetches and runs tasks until [`ServiceHandle::stop`], which drains it: no
/// new task is taken, the ones running finish (their results are stored and
/// acknowledged), a `STOPPED` heartbeat goes out, and `stop` returns.
///
/// Dropping the handle stops the worker the same way.
pub async fn start_worker(
    role: RoleDef,
    executor: Arc<dyn Executor>,
    bus: Arc<dyn Bus>,
    opts: WorkerOptions,
) -> Result<ServiceHandle, AgentError> {
    let invalid = |why: &str| AgentError::InvalidOptions {
        role: role.name.clone(),
        why: why.to_string(),
    };
    if role.name.trim().is_empty() {
        return Err(invalid("the role has no name"));
    }
    if opts.max_in_flight == 0 {
        return Err(invalid("max_in_flight must be at least 1"));
    }
    if opts.worker_id.trim().is_empty() {
        return Err(invalid("worker_id is empty: give each replica an id"));
    }
    if opts.ack_wait < Duration::from_millis(30) {
        return Err(invalid("ack_wait must be at least 30 ms"));
    }
    if opts.heartbeat_every.is_zero() {
        return Err(invalid("heartbeat_every must be more than zero"));
    }
    let capacity = u32::try_from(opts.max_in_flight)
        .map_err(|_| invalid("max_in_flight is larger than a u32"))?;

    let ctx = Arc::new(WorkerCtx {
        worker: format!("{}.{}", role.name, opts.worker_id),
        heartbeat_subject: subjects::heartbeat(&role.name, &opts.worker_id),
        result_subject: subjects::result(&role.name),
        model: executor.model(&role),
        role: Arc::new(role),
        executor,
        bus,
        capacity,
        opts,
        stats: Mutex::new(Stats::new(Instant::now())),
    });

    ctx.publish_heartbeat(AgentState::Starting).await;
    let spec = consumer_spec(&ctx.role.name, &ctx.opts);
    let consumer = match ctx.bus.consumer(TASKS_STREAM, &spec).await {
        Ok(c) => c,
        Err(e @ BusError::NotFound(_)) => {
            return Err(AgentError::MissingStream {
                stream: TASKS_STREAM.to_string(),
                source: e,
            });
        }
        Err(e) => return Err(e.into()),
    };
    ctx.lock().state = AgentState::Ready;
    tracing::debug!(
        role = %ctx.role.name,
        worker = %ctx.worker,
        executor = %ctx.executor.name(),
        max_in_flight = ctx.capacity,
        "agent worker ready"
    );

    let (handle, control) = ServiceHandle::new(format!("agent {}", ctx.worker));
    let heartbeats = tokio::spawn(heartbeat_loop(ctx.clone()));
    tokio::spawn(run(ctx, consumer, control, heartbeats));
    Ok(handle)
}

/// What every task runner and the heartbeat share.
struct WorkerCtx {
    role: Arc<RoleDef>,
    executor: Arc<dyn Executor>,
    bus: Arc<dyn Bus>,
    opts: WorkerOptions,
    /// `<role>.<worker_id>`.
    worker: String,
    heartbeat_subject: String,
    result_subject: String,
    model: String,
    capacity: u32,
    stats: Mutex<Stats>,
}

/// Counters behind heartbeats.
///
/// Busy time is the time-integral of the number of tasks running, divided by
/// the capacity (summed per-slot busy time / capacity): with 4 slots, one task
/// for 1 s is 250 ms busy. So `busy_ms + idle_ms` is the wall time since the
/// previous heartbeat and `busy / (busy + idle)` is the utilisation of the
/// worker's capacity.
struct Stats {
    state: AgentState,
    in_flight: u32,
    tasks_done: u64,
    tasks_failed: u64,
    /// When `in_flight` last changed (or the window was last folded).
    last_change: Instant,
    /// Start of the current heartbeat window.
    window_start: Instant,
    /// Per-slot busy time in the window.
    slot_busy: Duration,
}

impl Stats {
    fn new(now: Instant) -> Self {
        Stats {
            state: AgentState::Starting,
            in_flight: 0,
            tasks_done: 0,
            tasks_failed: 0,
            last_change: now,
            window_start: now,
            slot_busy: Duration::ZERO,
        }
    }

    fn fold(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_change);
        self.slot_busy += dt * self.in_flight;
        self.last_change = now;
    }

    fn add_in_flight(&mut self, delta: i32, now: Instant) {
        self.fold(now);
        self.in_flight = self.in_flight.saturating_add_signed(delta);
    }

    /// Busy and idle time since the previous call; starts a new window.
    fn take_window(&mut self, capacity: u32, now: Instant) -> (Duration, Duration) {
        self.fold(now);
        let elapsed = now.saturating_duration_since(self.window_start);
        let busy = (self.slot_busy / capacity.max(1)).min(elapsed);
        self.window_start = now;
        self.slot_busy = Duration::ZERO;
        (busy, elapsed - busy)
    }
}

impl WorkerCtx {
    fn lock(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn heartbeat(&self, state: AgentState) -> AgentHeartbeat {
        let mut s = self.lock();
        s.state = state;
        let (busy, idle) = s.take_window(self.capacity, Instant::now());
        AgentHeartbeat {
            role: self.role.name.clone(),
            worker_id: self.worker.clone(),
            at: Some(concierto_proto::time::now()),
            state: state as i32,
            in_flight: s.in_flight,
            capacity: self.capacity,
            busy_ms: millis(busy),
            idle_ms: millis(idle),
            tasks_done: s.tasks_done,
            tasks_failed: s.tasks_failed,
            executor: self.executor.name().to_string(),
            model: self.model.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    async fn publish_heartbeat(&self, state: AgentState) {
        let hb = self.heartbeat(state);
        if let Err(e) = self.bus.publish_proto(&self.heartbeat_subject, &hb).await {
            tracing::warn!(worker = %self.worker, error = %e, "could not publish a heartbeat");
        }
    }

    /// Delay before a task whose result could not be stored comes back.
    fn retry_delay(&self) -> Duration {
        (self.opts.ack_wait / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn heartbeat_loop(ctx: Arc<WorkerCtx>) {
    let mut tick = tokio::time::interval(ctx.opts.heartbeat_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = ctx.lock().state;
        ctx.publish_heartbeat(state).await;
    }
}

/// The fetch loop, then the drain.
async fn run(
    ctx: Arc<WorkerCtx>,
    consumer: Consumer,
    control: ServiceControl,
    heartbeats: JoinHandle<()>,
) {
    let mut signal: StopSignal = control.signal.clone();
    let slots = Arc::new(Semaphore::new(ctx.opts.max_in_flight));
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        while let Some(r) = running.try_join_next() {
            report_join(&ctx, r);
        }
        if signal.is_stopped() {
            break;
        }
        // A free slot first, so that no task is taken that cannot start.
        let first = tokio::select! {
            biased;
            _ = signal.stopped() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let free = slots.available_permits() + 1;
        // Not raced against the stop signal: a fetch cut short could leave a
        // task taken and never handed back until ack_wait. It ends within
        // fetch_wait.
        let batch = match consumer
            .fetch_proto::<Task>(free, ctx.opts.fetch_wait)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                drop(first);
                tracing::warn!(worker = %ctx.worker, error = %e, "fetching tasks failed; trying again");
                tokio::select! {
                    _ = signal.stopped() => break,
                    _ = tokio::time::sleep(ctx.opts.fetch_wait.max(Duration::from_millis(200))) => {}
                }
                continue;
            }
        };
        if signal.is_stopped() {
            // Stopping: hand back what the last fetch brought, at once.
            for (task, delivery) in batch {
                tracing::info!(worker = %ctx.worker, task_id = %task.task_id, "stopping: handing the task back");
                if let Err(e) = delivery.nak(None).await {
                    tracing::warn!(worker = %ctx.worker, task_id = %task.task_id, error = %e, "could not hand a task back; it returns after ack_wait");
                }
            }
            break;
        }
        let mut first = Some(first);
        for (task, delivery) in batch {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        // Cannot happen (only this loop takes slots); be safe.
                        if let Err(e) = delivery.nak(None).await {
                            tracing::warn!(worker = %ctx.worker, error = %e, "could not hand a task back");
                        }
                        continue;
                    }
                },
            };
            ctx.lock().add_in_flight(1, Instant::now());
            running.spawn(run_task(ctx.clone(), task, delivery, permit));
        }
    }

    // Drain: no more fetching; finish what runs.
    ctx.lock().state = AgentState::Draining;
    let left = running.len();
    tracing::info!(worker = %ctx.worker, in_flight = left, "agent worker draining");
    ctx.publish_heartbeat(AgentState::Draining).await;
    while let Some(r) = running.join_next().await {
        report_join(&ctx, r);
    }
    heartbeats.abort();
    let _ = heartbeats.await;
    ctx.publish_heartbeat(AgentState::Stopped).await;
    // Bounded: with NATS gone a flush would wait for a reconnection that may never come.
    match tokio::time::timeout(STOP_FLUSH, ctx.bus.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(worker = %ctx.worker, error = %e, "could not flush the bus on stop (the last results and heartbeats may not have reached it)");
        }
        Err(_) => {
            tracing::warn!(worker = %ctx.worker, within = ?STOP_FLUSH, "could not flush the bus on stop in time (the last results and heartbeats may not have reached it)");
        }
    }
    tracing::info!(worker = %ctx.worker, "agent worker stopped");
    control.finished(Ok(()));
}

fn report_join(ctx: &WorkerCtx, r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        tracing::error!(worker = %ctx.worker, error = %e, "a task runner ended abnormally; its task returns after ack_wait");
    }
}

/// Gives back the in-flight slot however the runner ends.
struct InFlight {
    ctx: Arc<WorkerCtx>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ctx.lock().add_in_flight(-1, Instant::now());
    }
}

/// Runs one task: execute (keeping the delivery alive), store the result, then
/// acknowledge; or hand the task back if the result could not be stored.
async fn run_task(
    ctx: Arc<WorkerCtx>,
    task: Task,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    // The task's span continues the trace of the step that dispatched it.
    let span = tracing::info_span!(
        "agent.task",
        service = "agent",
        role = %ctx.role.name,
        run_id = %task.run_id,
        step_id = %task.step_id,
        task_id = %task.task_id,
        attempt = task.attempt,
        worker = %ctx.worker,
    );
    concierto_telemetry::follow(&span, delivery.message.traceparent());
    run_task_in(ctx, task, delivery, permit, span.clone())
        .instrument(span)
        .await
}

async fn run_task_in(
    ctx: Arc<WorkerCtx>,
    task: Task,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
    span: tracing::Span,
) {
    let _slot = InFlight {
        ctx: ctx.clone(),
        _permit: permit,
    };
    let started_at = concierto_proto::time::now();
    let t0 = Instant::now();
    tracing::debug!(
        worker = %ctx.worker,
        task_id = %task.task_id,
        run_id = %task.run_id,
        step = %task.step_id,
        attempt = task.attempt,
        delivered = delivery.delivered,
        "task started"
    );
    let outcome = execute(&ctx, &task, &delivery).await;
    let latency = t0.elapsed();
    let result = build_result(&ctx, &task, outcome, latency, started_at);
    let status = result.status();

    let mut out = encode(&result).msg_id(format!("{}/result", task.task_id));
    // The result goes back as a child of this task's span (or, when spans are
    // not exported, with the task's own trace context).
    if let Some(tp) = concierto_telemetry::span_traceparent(&span)
        .or_else(|| delivery.message.traceparent().map(str::to_string))
    {
        out = out.traceparent(tp);
    }
    let subject = result_subject(&ctx.result_subject, &task);
    match ctx.bus.publish_durable(subject, out).await {
        Ok(_) => {
            if let Err(e) = delivery.ack().await {
                tracing::warn!(worker = %ctx.worker, task_id = %task.task_id, error = %e, "result stored but the ack failed; the task may be redelivered (its result is deduplicated)");
            }
            concierto_telemetry::metrics::task_handled(
                &ctx.role.name,
                match status {
                    TaskStatus::Succeeded => "succeeded",
                    TaskStatus::Retryable => "retryable",
                    _ => "failed",
                },
                latency,
            );
            {
                let mut s = ctx.lock();
                if status == TaskStatus::Succeeded {
                    s.tasks_done += 1;
                } else {
                    s.tasks_failed += 1;
                }
            }
            // The orchestrator logs the step's change; a failure is also said here.
            if status == TaskStatus::Succeeded {
                tracing::debug!(
                    worker = %ctx.worker,
                    task_id = %task.task_id,
                    status = status.as_str_name(),
                    latency_ms = millis(latency),
                    "task finished"
                );
            } else {
                tracing::info!(
                    worker = %ctx.worker,
                    task_id = %task.task_id,
                    status = status.as_str_name(),
                    latency_ms = millis(latency),
                    error = %result.error.chars().take(200).collect::<String>(),
                    "task finished"
                );
            }
        }
        Err(e) => {
            let delay = ctx.retry_delay();
            tracing::error!(worker = %ctx.worker, task_id = %task.task_id, error = %e, retry_in_ms = millis(delay), "could not store the result; handing the task back");
            if let Err(e) = delivery.nak(Some(delay)).await {
                tracing::warn!(worker = %ctx.worker, task_id = %task.task_id, error = %e, "could not hand the task back; it returns after ack_wait");
            }
        }
    }
}

/// Runs the executor in its own task (a panic becomes a `RETRYABLE` outcome),
/// sending `in_progress` every third of `ack_wait`, and stopping at the task's
/// deadline (`RETRYABLE`).
async fn execute(ctx: &Arc<WorkerCtx>, task: &Task, delivery: &Delivery) -> Outcome {
    let deadline = task.deadline.as_ref().map(|d| {
        concierto_proto::time::system_time(d)
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    });
    if deadline == Some(Duration::ZERO) {
        return Outcome::retryable("the task's deadline had passed before it started");
    }
    let mut job = {
        let executor = ctx.executor.clone();
        let role = ctx.role.clone();
        let mut task = task.clone();
        let (bus, copts) = (ctx.bus.clone(), ctx.opts.context.clone());
        tokio::spawn(async move {
            // The step's `context:` becomes inputs first (bounded by the
            // deadline like the executor).
            crate::context::resolve(bus, &copts, &mut task, chrono::Utc::now()).await;
            executor.execute(&role, &task).await
        })
    };
    let every = (ctx.opts.ack_wait / 3).max(Duration::from_millis(10));
    let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let give_up = tokio::time::sleep(deadline.unwrap_or(Duration::MAX / 4));
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            joined = &mut job => {
                return match joined {
                    Ok(outcome) => outcome,
                    Err(e) if e.is_panic() => Outcome::retryable(format!("the {} executor panicked", ctx.executor.name())),
                    Err(e) => Outcome::retryable(format!("the {} executor was cancelled: {e}", ctx.executor.name())),
                };
            }
            _ = keepalive.tick() => {
                if let Err(e) = delivery.in_progress().await {
                    tracing::warn!(worker = %ctx.worker, task_id = %task.task_id, error = %e, "could not extend the task's ack_wait");
                }
            }
            _ = &mut give_up, if deadline.is_some() => {
                job.abort();
                return Outcome::retryable("the task's deadline passed while it ran");
            }
        }
    }
}

fn build_result(
    ctx: &WorkerCtx,
    task: &Task,
    outcome: Outcome,
    latency: Duration,
    started_at: prost_types::Timestamp,
) -> TaskResult {
    let status = match outcome.status {
        TaskStatus::Unspecified => TaskStatus::Failed,
        s => s,
    };
    let error = if status != TaskStatus::Succeeded && outcome.error.is_empty() {
        format!(
            "the {} executor reported {} without a reason",
            ctx.executor.name(),
            outcome.status.as_str_name()
        )
    } else {
        outcome.error
    };
    // A model answers in text: a review's verdict and any output labels are
    // read from the JSON object in it when the executor did not set them.
    let mut verdict = outcome.verdict;
    let mut found_labels = Vec::new();
    if status == TaskStatus::Succeeded {
        let is_review = task
            .review
            .as_ref()
            .is_some_and(|r| r.action() == ReviewAction::Review);
        if verdict.is_none()
            && is_review
            && let Some(v) = structured::verdict(&outcome.output)
        {
            found_labels.extend(v.labels.iter().cloned());
            verdict = Some(Verdict {
                pass: v.pass,
                score: v.score,
                notes: v.notes,
                reasons: v.reasons,
            });
        }
        found_labels.extend(structured::labels(&outcome.output));
    }
    let mut labels: Vec<String> = Vec::new();
    for l in task
        .labels
        .iter()
        .chain(&outcome.labels)
        .chain(&found_labels)
    {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    let mut usage: Usage = outcome.usage;
    if usage.executor.is_empty() {
        usage.executor = ctx.executor.name().to_string();
    }
    if usage.model.is_empty() {
        usage.model = ctx.model.clone();
    }
    if usage.latency_ms == 0 {
        usage.latency_ms = millis(latency);
    }
    TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: ctx.role.name.clone(),
        worker_id: ctx.worker.clone(),
        status: status as i32,
        output: outcome.output,
        content_type: outcome.content_type,
        error,
        labels,
        verdict,
        usage: Some(usage),
        started_at: Some(started_at),
        finished_at: Some(concierto_proto::time::now()),
        details: outcome.details.into_iter().collect(),
        tool_calls: outcome.tool_calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_slot_time_over_capacity() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.add_in_flight(1, t0);
        s.add_in_flight(1, t0 + Duration::from_millis(100));
        s.add_in_flight(-2, t0 + Duration::from_millis(300));
        // slot time: 1×100 + 2×200 = 500 ms over 2 slots = 250 ms busy in 400 ms.
        let (busy, idle) = s.take_window(2, t0 + Duration::from_millis(400));
        assert_eq!(busy, Duration::from_millis(250));
        assert_eq!(idle, Duration::from_millis(150));
        let (busy, idle) = s.take_window(2, t0 + Duration::from_millis(500));
        assert_eq!((busy, idle), (Duration::ZERO, Duration::from_millis(100)));
    }
}

/// Where `task`'s result goes: the task's `result_subject` (a partitioned
/// studio's `result.<role>.<k>`) when it is one of this role's result subjects,
/// else the role's `result.<role>`.
fn result_subject<'a>(default: &'a str, task: &'a Task) -> &'a str {
    let own = task
        .result_subject
        .strip_prefix(default)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
    if own { &task.result_subject } else { default }
}

#[cfg(test)]
mod result_subject_tests {
    use super::*;

    #[test]
    fn only_the_roles_own_partition_subjects() {
        let mut t = Task::default();
        assert_eq!(result_subject("result.writer", &t), "result.writer");
        t.result_subject = "result.writer.3".into();
        assert_eq!(result_subject("result.writer", &t), "result.writer.3");
        for bad in [
            "result.other.3",
            "result.writer.>",
            "result.writer.",
            "task.writer.3",
            "result.writer.3.x",
        ] {
            t.result_subject = bad.into();
            assert_eq!(
                result_subject("result.writer", &t),
                "result.writer",
                "{bad}"
            );
        }
    }
}
