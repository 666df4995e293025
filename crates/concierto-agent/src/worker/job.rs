//! One job: a task taken from the queue, run to its stored result.
//!
//! A job runs in its own tokio task, away from the worker's actor, so a slow
//! executor never holds up the actor and a panic is caught where the job is
//! joined ([`super::actor`]). It executes the task (keeping its delivery alive
//! with `in_progress`), stores the result, and only then acknowledges the
//! task; a result that cannot be stored hands the task back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::Instrument as _;

use concierto_bus::{Bus, Delivery, encode};
use concierto_core::roles::RoleDef;
use concierto_core::structured;
use concierto_proto::v1::{ReviewAction, Task, TaskResult, TaskStatus, Usage, Verdict};

use super::{WorkerOptions, millis, result_subject};
use crate::executor::{Executor, Outcome};

/// What every job of one worker shares; fixed for the worker's life.
pub(super) struct JobCtx {
    pub role: Arc<RoleDef>,
    pub executor: Arc<dyn Executor>,
    pub bus: Arc<dyn Bus>,
    pub opts: WorkerOptions,
    /// `<role>.<worker_id>`.
    pub worker: String,
    /// `result.<role>`.
    pub result_subject: String,
    pub model: String,
}

impl JobCtx {
    /// Delay before a task whose result could not be stored comes back.
    fn retry_delay(&self) -> Duration {
        (self.opts.ack_wait / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Runs one task: execute (keeping the delivery alive), store the result, then
/// acknowledge; or hand the task back if the result could not be stored.
/// Returns the status of the result stored, or `None` when the task was
/// handed back.
pub(super) async fn run(ctx: Arc<JobCtx>, task: Task, delivery: Delivery) -> Option<TaskStatus> {
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
    run_in(ctx, task, delivery, span.clone())
        .instrument(span)
        .await
}

async fn run_in(
    ctx: Arc<JobCtx>,
    task: Task,
    delivery: Delivery,
    span: tracing::Span,
) -> Option<TaskStatus> {
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
            Some(status)
        }
        Err(e) => {
            let delay = ctx.retry_delay();
            tracing::error!(worker = %ctx.worker, task_id = %task.task_id, error = %e, retry_in_ms = millis(delay), "could not store the result; handing the task back");
            if let Err(e) = delivery.nak(Some(delay)).await {
                tracing::warn!(worker = %ctx.worker, task_id = %task.task_id, error = %e, "could not hand the task back; it returns after ack_wait");
            }
            None
        }
    }
}

/// Runs the executor in its own task (a panic becomes a `RETRYABLE` outcome),
/// sending `in_progress` every third of `ack_wait`, and stopping at the task's
/// deadline (`RETRYABLE`).
async fn execute(ctx: &Arc<JobCtx>, task: &Task, delivery: &Delivery) -> Outcome {
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
    ctx: &JobCtx,
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
