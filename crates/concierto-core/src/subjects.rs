//! The bus subjects between services (DESIGN.md section 1), without the studio
//! prefix. One place, so producers and consumers cannot drift apart.

/// `StartRun`: start a run (durable, stream RUNS; message id = run id).
pub const RUN_START: &str = "run.start";
/// Every run's events (`RunEvent`).
pub const RUN_EVENTS: &str = "run.event.>";
/// Every task result (`TaskResult`).
pub const RESULTS: &str = "result.>";
/// Request: fire a trigger now (`FireTriggerRequest` → `FireTriggerResponse`).
pub const SCHEDULER_FIRE: &str = "scheduler.fire";
/// Request: list the triggers (`ListTriggersRequest` → `ListTriggersResponse`).
pub const SCHEDULER_TRIGGERS: &str = "scheduler.triggers";
/// Request: one run (`GetRunRequest` → `GetRunResponse`).
pub const ORCHESTRATOR_GET_RUN: &str = "orchestrator.runs.get";
/// Request: runs, newest first (`ListRunsRequest` → `ListRunsResponse`).
pub const ORCHESTRATOR_LIST_RUNS: &str = "orchestrator.runs.list";
/// Request: retry an ended run (`RetryRunRequest` → `RetryRunResponse`); the
/// caller's identity travels in [`IDENTITY_HEADER`].
pub const ORCHESTRATOR_RETRY_RUN: &str = "orchestrator.runs.retry";
/// A run failed with no `on_failure` path (`RunFailed`; durable, stream EVENTS,
/// message id = run id).
pub const RUN_FAILED: &str = "event.run.failed";
/// Request: pause or resume a trigger (`PauseTriggerRequest` →
/// `PauseTriggerResponse`), answered by the scheduler.
pub const SCHEDULER_PAUSE: &str = "scheduler.pause";
/// Request: cancel a run (`CancelRunRequest` → `CancelRunResponse`).
pub const ORCHESTRATOR_CANCEL_RUN: &str = "orchestrator.runs.cancel";
/// Request: quality gates (`ListGatesRequest` → `ListGatesResponse`).
pub const ORCHESTRATOR_LIST_GATES: &str = "orchestrator.gates.list";
/// Request: one gate (`GetGateRequest` → `GetGateResponse`).
pub const ORCHESTRATOR_GET_GATE: &str = "orchestrator.gates.get";
/// Request/reply: spend per UTC day (`GetSpendRequest` → `GetSpendResponse`).
pub const ORCHESTRATOR_SPEND: &str = "orchestrator.spend.get";
/// Request: decide a gate (`DecideGateRequest` → `DecideGateResponse`); the
/// reviewer's id travels in [`IDENTITY_HEADER`].
pub const ORCHESTRATOR_DECIDE_GATE: &str = "orchestrator.gates.decide";
/// Every gate change (`Gate`): `event.gate.opened`, `.reminder`, `.escalated`, `.decided`.
pub const GATE_EVENTS: &str = "event.gate.>";
/// A dashboard sign-out, for every replica to refuse that session
/// (JSON `{"id": "<session id>", "expires": <unix seconds>}`; core publish).
pub const DASHBOARD_SIGNOUT: &str = "dashboard.signout";
/// Header carrying the authenticated identity (a reviewer id) on admin requests over the bus.
pub const IDENTITY_HEADER: &str = "Concierto-Identity";
/// Every new content item (`ContentItem`).
pub const CONTENT_INGESTED: &str = "content.ingested.>";
/// Request: search the content library (`SearchContentRequest` →
/// `SearchContentResponse`), answered by the ingest service.
pub const LIBRARY_SEARCH: &str = "library.search";
/// Request: fetch a web page for an agent's `WebFetch` tool under the
/// ingester's rules (`WebFetchRequest` → `WebFetchResponse`), answered by the
/// ingest service (queue group `ingest`).
pub const INGEST_FETCH: &str = "ingest.fetch";
/// Every threshold crossing (`ThresholdCrossed`).
pub const METRIC_EVENTS: &str = "event.metric.>";
/// Every piece of human feedback taken in (`Feedback`; durable, stream
/// FEEDBACK, message id = feedback id).
pub const FEEDBACK_IN: &str = "feedback.in.>";
/// Request: feedback received (`ListFeedbackRequest` → `ListFeedbackResponse`).
pub const FEEDBACK_LIST: &str = "feedback.list";
/// Request: take in feedback from the admin API (`Feedback` →
/// `SubmitFeedbackResponse`), answered by the feedback service, which stores
/// it like any channel's.
pub const FEEDBACK_SUBMIT: &str = "feedback.submit";
/// Request: one stored piece of feedback (`GetFeedbackRequest` →
/// `GetFeedbackResponse`, `feedback` only), answered by the feedback service.
pub const FEEDBACK_GET: &str = "feedback.get";
/// Request: the reply to one piece of feedback (`GetFeedbackRequest` →
/// `FeedbackReply`), answered by the feedback router.
pub const FEEDBACK_REPLY_GET: &str = "feedback.reply.get";
/// Every routed piece of feedback (`RoutedFeedback`), `feedback.routed.<category>`.
pub const FEEDBACK_ROUTED: &str = "feedback.routed.>";

/// `RoutedFeedback` of one category (`brand`, `technical`, `growth`, `other`).
pub fn feedback_routed(category: &str) -> String {
    format!("feedback.routed.{}", token(category))
}
/// Every metric observation (`MetricSample`), e.g. `metric.engagement_rate`.
pub const METRIC_SAMPLES: &str = "metric.>";
/// Request: metrics with their series (`GetMetricsRequest` → `GetMetricsResponse`).
pub const TRACKER_GET_METRICS: &str = "tracker.metrics.get";
/// Request: record one observation (`RecordMetricRequest` → `RecordMetricResponse`).
pub const TRACKER_RECORD_METRIC: &str = "tracker.metrics.record";
/// Request: the studio's health now (`GetHealthRequest` → `SystemHealth`).
pub const TRACKER_HEALTH: &str = "tracker.health";
/// Standing context for agent roles (`AgentContext`; durable, stream EVENTS).
pub const CONTEXT: &str = "context.>";
/// Every heartbeat (`AgentHeartbeat`).
pub const HEARTBEATS: &str = "agent.heartbeat.>";

/// Every deliverable (`Deliverable`; durable, stream DELIVERABLES, message id =
/// deliverable id), taken by the publisher service.
pub const DELIVERABLES: &str = "deliverable.>";
/// Every publish outcome (`PublishOutcome`), for the dashboard.
pub const DELIVERABLE_EVENTS: &str = "event.deliverable.>";
/// Request: store a deliverable in the content library (`Deliverable` →
/// `ContentItem`), answered by the ingest service.
pub const LIBRARY_PUT: &str = "library.put";
/// Request: deliverables with their outcomes, newest first
/// (`ListDeliverablesRequest` → `ListDeliverablesResponse`), answered by the
/// publisher service.
pub const PUBLISH_LIST: &str = "publish.list";

/// A `Deliverable` of one workflow.
pub fn deliverable(workflow: &str) -> String {
    format!("deliverable.{}", token(workflow))
}

/// A `PublishOutcome` of one publisher kind (`folder`, `webhook`, `slack`, `library`).
pub fn deliverable_event(kind: &str) -> String {
    format!("event.deliverable.{}", token(kind))
}

/// `Task`s for a role (durable, stream TASKS; consumer = the role).
pub fn task(role: &str) -> String {
    format!("task.{role}")
}

/// `TaskResult`s from a role (durable, stream RESULTS).
pub fn result(role: &str) -> String {
    format!("result.{role}")
}

/// Every partitioned run start (`run.start.<k>`, stream RUNS), beside the
/// unpartitioned [`RUN_START`].
pub const RUN_START_PARTITIONED: &str = "run.start.>";

/// Where `StartRun` of `run_id` is published in a studio of `partitions`
/// partitions: [`RUN_START`] with one partition (as before partitions), else
/// `run.start.<k>`. A start published on [`RUN_START`] in a partitioned
/// studio is routed by the owner of partition 0.
pub fn run_start_for(run_id: &str, partitions: u32) -> String {
    if partitions <= 1 {
        RUN_START.to_string()
    } else {
        format!("run.start.{}", crate::partition::of(run_id, partitions))
    }
}

/// The run starts partition `k` of `partitions` consumes (its consumer's filter).
pub fn run_start_partition(k: u32, partitions: u32) -> String {
    if partitions <= 1 {
        RUN_START.to_string()
    } else {
        format!("run.start.{k}")
    }
}

/// Where a role's `TaskResult` for a task of partition `k` goes: `result.<role>`
/// with one partition, else `result.<role>.<k>`. The orchestrator puts it in
/// `Task.result_subject`; workers publish there.
pub fn result_for(role: &str, k: u32, partitions: u32) -> String {
    if partitions <= 1 {
        result(role)
    } else {
        format!("result.{role}.{k}")
    }
}

/// The results partition `k` of `partitions` consumes (its consumer's filter):
/// [`RESULTS`] with one partition, else `result.*.<k>`. In a partitioned
/// studio the owner of partition 0 also consumes `result.*` (results of
/// workers that do not read `Task.result_subject`) and routes them.
pub fn results_partition(k: u32, partitions: u32) -> String {
    if partitions <= 1 {
        RESULTS.to_string()
    } else {
        format!("result.*.{k}")
    }
}

/// An orchestrator query subject (`orchestrator.runs.get`, ...) answered by
/// the owner of partition `k` alone: `orchestrator.p<k>.runs.get`. The plain
/// subjects are answered by any orchestrator process (queue group), which asks
/// the partitions' owners and merges their answers.
pub fn orchestrator_partition(k: u32, subject: &str) -> String {
    match subject.strip_prefix("orchestrator.") {
        Some(rest) => format!("orchestrator.p{k}.{rest}"),
        None => format!("orchestrator.p{k}.{subject}"),
    }
}

/// `RunEvent`s of one run.
pub fn run_event(run_id: &str) -> String {
    format!("run.event.{}", token(run_id))
}

/// An `AgentHeartbeat` of one worker.
pub fn heartbeat(role: &str, worker: &str) -> String {
    format!("agent.heartbeat.{role}.{}", token(worker))
}

/// New content from one source.
pub fn content_ingested(source: &str) -> String {
    format!("content.ingested.{}", token(source))
}

/// A gate change of one kind (`opened`, `reminder`, `escalated`, `decided`;
/// `joined` for a gate that joined a batch and asks nobody again).
pub fn gate_event(kind: &str) -> String {
    format!("event.gate.{}", token(kind))
}

/// `event.budget.<scope>` (`day`, `run`, `step`): a budget was reached
/// (`concierto.v1.BudgetReached`).
pub fn budget_event(scope: &str) -> String {
    format!("event.budget.{}", token(scope))
}

/// Every budget event.
pub const BUDGET_EVENTS: &str = "event.budget.>";

/// A new validated studio (`StudioChanged`, core publish): every process
/// applies it to its running services.
pub const STUDIO_CHANGED: &str = "studio.changed";

/// Reread the studio file and announce it when valid and new
/// (`ReloadStudioRequest` → `ReloadStudioResponse`, queue group `studio-reload`).
pub const STUDIO_RELOAD: &str = "studio.reload";

/// An approved change written to the studio file (`StudioChangeApplied`;
/// durable, stream EVENTS).
pub const STUDIO_CHANGE_APPLIED: &str = "event.studio.changed";

/// Every off-target notice (`OffTarget`).
pub const TARGET_EVENTS: &str = "event.target.>";

/// A progress metric fell off target and its `on_off_target` acts (`OffTarget`;
/// durable, stream EVENTS).
pub fn target_event(metric: &str) -> String {
    format!("event.target.{}", token(metric))
}

/// A threshold crossing of one metric.
pub fn metric_event(metric: &str) -> String {
    format!("event.metric.{}", token(metric))
}

/// Standing context for one role's tasks (`AgentContext`).
pub fn context(role: &str) -> String {
    format!("context.{}", token(role))
}

/// One observation of a metric (`MetricSample`).
pub fn metric_sample(metric: &str) -> String {
    format!("metric.{}", token(metric))
}

/// `Feedback` taken in from one channel (`slack`, `email`, `web_form`, `api`).
pub fn feedback_in(channel: &str) -> String {
    format!("feedback.in.{}", token(channel))
}

/// Makes any id usable as one subject token: `.`, `*`, `>` and whitespace become `_`.
pub fn token(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

/// Header on a reply that is an error instead of the expected message:
/// `<code>: <message>`, code one of `not_found`, `invalid_argument`,
/// `failed_precondition`, `permission_denied`, `unavailable`, `internal` (they
/// map to gRPC codes).
pub const ERROR_HEADER: &str = "Concierto-Error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_single_tokens() {
        assert_eq!(
            run_event("daily_content_generation@2026-11-24T09:00:00Z"),
            "run.event.daily_content_generation@2026-11-24T09:00:00Z"
        );
        assert_eq!(run_event("a.b *>c"), "run.event.a_b___c");
        assert_eq!(task("content-creator"), "task.content-creator");
        assert_eq!(
            heartbeat("ui-designer", "w.1"),
            "agent.heartbeat.ui-designer.w_1"
        );
    }
}
