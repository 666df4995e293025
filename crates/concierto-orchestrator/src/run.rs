//! A run as the orchestrator stores it: the truth about runs (DESIGN.md
//! section 3). Kept as JSON in the `runs` tree, keyed by run id.

use std::collections::BTreeMap;

use concierto_core::config::ContextItem;
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

/// Whether a field holds its default: such fields (all `#[serde(default)]`)
/// are left out of the stored JSON, which is read back the same.
fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Steps are being worked on.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed for good (after the failure step, if any, ran).
    Failed,
    /// Cancelled by someone.
    Cancelled,
}

impl RunState {
    /// True when nothing more will happen to the run.
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Running)
    }

    fn proto(self) -> v1::RunState {
        match self {
            RunState::Running => v1::RunState::Running,
            RunState::Succeeded => v1::RunState::Succeeded,
            RunState::Failed => v1::RunState::Failed,
            RunState::Cancelled => v1::RunState::Cancelled,
        }
    }
}

/// State of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    /// An earlier step is not done.
    Waiting,
    /// Ready, in the work queue.
    Queued,
    /// Its task is published; waiting for the result.
    Dispatched,
    /// Its output is with reviewers (or being revised after their notes).
    InReview,
    /// Its output waits for people at a quality gate.
    WaitingGate,
    /// Failed an attempt; waiting for its backoff to pass.
    Retrying,
    /// Done.
    Succeeded,
    /// Failed for good.
    Failed,
    /// The run was cancelled.
    Cancelled,
    /// Not run: its role is not among the `agents` of the trigger that started
    /// the run (see `trigger_agents.rs`).
    Skipped,
}

impl StepState {
    fn proto(self) -> v1::StepState {
        match self {
            StepState::Waiting => v1::StepState::Waiting,
            StepState::Queued => v1::StepState::Queued,
            StepState::Dispatched => v1::StepState::Dispatched,
            StepState::InReview => v1::StepState::InReview,
            StepState::WaitingGate => v1::StepState::WaitingGate,
            StepState::Retrying => v1::StepState::Retrying,
            StepState::Succeeded => v1::StepState::Succeeded,
            StepState::Failed => v1::StepState::Failed,
            StepState::Cancelled => v1::StepState::Cancelled,
            StepState::Skipped => v1::StepState::Skipped,
        }
    }

    /// True when the run may go past the step: it succeeded or was skipped.
    pub fn is_done(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Skipped)
    }

    /// True while the step may still change on its own.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            StepState::Waiting
                | StepState::Queued
                | StepState::Dispatched
                | StepState::InReview
                | StepState::WaitingGate
                | StepState::Retrying
        )
    }
}

/// One step of a stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step id from the workflow.
    pub id: String,
    /// The role that does it.
    pub role: String,
    /// The instruction.
    pub task: String,
    /// Inputs: `trigger` or earlier step ids.
    pub inputs: Vec<String>,
    /// Labels the workflow puts on its output.
    pub labels: Vec<String>,
    /// Timeout of one attempt, ms.
    pub timeout_ms: u64,
    /// Attempts allowed after the first.
    pub retries: u32,
    /// Its state.
    pub state: StepState,
    /// The current (or last) attempt, 1-based; 0 before the first.
    pub attempt: u32,
    /// When the current attempt must be done (unix ms).
    pub deadline_ms: i64,
    /// When a retrying step is queued again (unix ms).
    pub retry_at_ms: i64,
    /// The output, once succeeded.
    pub output: String,
    /// Why it failed (every failure keeps its reason).
    pub error: String,
    /// Labels the worker put on the output.
    pub result_labels: Vec<String>,
    /// Who did the last attempt.
    pub worker: String,
    /// Executor and model of the last attempt.
    pub executor: String,
    /// Model of the last attempt.
    pub model: String,
    /// Latency of the last attempt, ms.
    pub latency_ms: u64,
    /// Input (prompt) tokens of the last attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_tokens: u64,
    /// Output tokens of the last attempt.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_tokens: u64,
    /// Cost of the last attempt in US dollars (0 without configured prices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_usd: f64,
    /// Tool calls of the last attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
    /// First dispatch (unix ms), 0 before.
    pub started_ms: i64,
    /// Final state reached (unix ms), 0 before.
    pub finished_ms: i64,
    /// The agent_to_agent loop that reviews its output, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// Review rounds so far, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<ReviewRound>,
    /// When it waits for a batched loop: when that batch is reviewed (unix ms).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub batch_due_ms: i64,
    /// The batch run reviewing it, once the batch is under way.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub batch_run: String,
    /// The quality-gate round of its output: 1 when first gated, +1 per change request.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gate_round: u32,
    /// Set on the steps a review loop adds (reviews, revisions, batch reviews).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<Aux>,
    /// The data its tasks ask the worker to fetch (the step's `context:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<ContextItem>,
    /// Set on a step a retry kept as it was: the run whose output it carries
    /// (shown as the label `kept-from:<run>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kept_from: String,
}

/// A step's context item as its tasks carry it.
pub fn context_request(c: &ContextItem) -> v1::ContextRequest {
    v1::ContextRequest {
        kind: c.kind.as_str().to_string(),
        names: c.names.clone(),
        window: c.window.clone(),
        workflow: c.workflow.clone(),
        query: c.query.clone(),
        limit: c.limit,
        max_bytes: c.max_bytes,
    }
}

/// One tool call of a step's last attempt (`v1::ToolCall`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The tool's name.
    pub name: String,
    /// Its arguments (JSON, cut).
    pub arguments: String,
    /// Size of the answer.
    pub answer_bytes: u64,
    /// How long it took.
    pub latency_ms: u64,
    /// Empty when it succeeded.
    pub error: String,
}

impl ToolCallRecord {
    /// From the result's call.
    pub fn from_proto(c: &v1::ToolCall) -> Self {
        ToolCallRecord {
            name: c.name.clone(),
            arguments: c.arguments.clone(),
            answer_bytes: c.answer_bytes,
            latency_ms: c.latency_ms,
            error: c.error.clone(),
        }
    }

    /// As the API shows it.
    pub fn to_proto(&self) -> v1::ToolCall {
        v1::ToolCall {
            name: self.name.clone(),
            arguments: self.arguments.clone(),
            answer_bytes: self.answer_bytes,
            latency_ms: self.latency_ms,
            error: self.error.clone(),
        }
    }
}

/// One review round of a step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRound {
    /// 1-based.
    pub round: u32,
    /// Every reviewer's verdict.
    pub verdicts: Vec<ReviewerVerdict>,
    /// The score the round counts: the lowest of the reviewers'.
    pub score: f64,
    /// Whether the output passed.
    pub passed: bool,
    /// The pass mark applied.
    pub pass_mark: f64,
    /// When the round was decided (unix ms).
    pub at_ms: i64,
    /// The batch run that reviewed it, for batched loops.
    #[serde(default)]
    pub batch_run: String,
}

/// One reviewer's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewerVerdict {
    /// The reviewing role.
    pub role: String,
    /// Its worker.
    pub worker: String,
    /// Its own pass.
    pub pass: bool,
    /// In 0..1.
    pub score: f64,
    /// What to change.
    pub notes: String,
    /// Why.
    pub reasons: Vec<String>,
    /// Labels it put on the output.
    pub labels: Vec<String>,
}

impl ReviewerVerdict {
    /// As the bus and the admin API carry it.
    pub fn to_proto(&self) -> v1::Verdict {
        v1::Verdict {
            pass: self.pass,
            score: self.score,
            notes: self.notes.clone(),
            reasons: self.reasons.clone(),
        }
    }
}

/// What a step added by a review loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuxKind {
    /// A reviewer reviews one output.
    Review,
    /// The producer revises its output after the notes.
    Revise,
    /// A reviewer reviews a batch of outputs (a step of a batch run).
    BatchReview,
    /// The producer revises its output after people asked for changes at a gate.
    GateRevise,
}

/// The loop bookkeeping of a step a review loop added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aux {
    /// Review, revision or batch review.
    pub kind: AuxKind,
    /// The loop.
    pub loop_name: String,
    /// The round it belongs to (for a revision: the round it prepares).
    pub round: u32,
    /// The step whose output it is about (empty for a batch review).
    pub subject: String,
    /// The output under review or to revise.
    pub draft: String,
    /// The notes a revision follows.
    pub notes: String,
    /// The pass mark handed to the reviewer.
    pub pass_mark: f64,
    /// A review's verdict, once given.
    pub verdict: Option<ReviewerVerdict>,
    /// A batch review's verdicts, by item (`<run_id>/<step_id>`).
    #[serde(default)]
    pub batch_verdicts: BTreeMap<String, ReviewerVerdict>,
}

/// What a batch run reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInfo {
    /// The loop.
    pub loop_name: String,
    /// The outputs, in the order they were collected.
    pub items: Vec<BatchItem>,
    /// True once its verdicts went back to the items' runs.
    pub settled: bool,
}

/// One output in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The run it belongs to.
    pub run_id: String,
    /// Its step.
    pub step_id: String,
    /// The producing role.
    pub role: String,
    /// The round it is reviewed in.
    pub round: u32,
    /// The output.
    pub draft: String,
    /// True for the output of a run that went on without waiting (an urgent
    /// run): its verdict is recorded, not acted on (see `review_later.rs`).
    #[serde(default)]
    pub not_held: bool,
}

impl BatchItem {
    /// Its name as a task input: `<run_id>/<step_id>`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.run_id, self.step_id)
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Its id (`trigger@fire_time` for scheduled fires).
    pub run_id: String,
    /// The workflow.
    pub workflow: String,
    /// The trigger, if any.
    pub trigger: String,
    /// Who asked for it.
    pub requested_by: String,
    /// `v1::Priority` as a number.
    pub priority: i32,
    /// Parameters handed to every step.
    pub params: BTreeMap<String, String>,
    /// What the trigger fired on, as text for the steps that take `trigger`.
    pub trigger_payload: String,
    /// Its state.
    pub state: RunState,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// The workflow's failure step, if any; run when the run fails.
    pub on_failure: Option<StepRecord>,
    /// Why it failed or was cancelled.
    pub error: String,
    /// Created (unix ms).
    pub created_ms: i64,
    /// Last change (unix ms).
    pub updated_ms: i64,
    /// Sequence of the last event published.
    pub event_seq: u64,
    /// True once a step failed for good and the failure step runs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failing: bool,
    /// Steps review loops added (reviews and revisions), in the order added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux: Vec<StepRecord>,
    /// Set on a batch run: the outputs it reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchInfo>,
    /// W3C `traceparent` of the run's trace (the orchestrator's span for its
    /// start): every task of the run, published now or after a restart,
    /// continues it. Empty when spans are not exported.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
    /// What its steps cost so far, every attempt (US dollars).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spent_usd: f64,
    /// The same per role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spent_by_role: BTreeMap<String, f64>,
    /// Why it waits for a day budget (empty: it does not).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub paused: String,
    /// The roles its workflow steps may be dispatched to (its trigger's
    /// `agents`), when it was started by a trigger that lists some; steps of
    /// other roles are skipped. `None`: every step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// The run this one retries (`RetryRun`), empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_of: String,
}

impl StepRecord {
    /// The verdict to show: a review's own, or the last round's of a reviewed step.
    pub fn verdict(&self) -> Option<v1::Verdict> {
        if let Some(v) = self.aux.as_ref().and_then(|a| a.verdict.as_ref()) {
            return Some(v.to_proto());
        }
        self.rounds.last().map(|r| v1::Verdict {
            pass: r.passed,
            score: r.score,
            notes: r
                .verdicts
                .iter()
                .filter(|v| !v.notes.is_empty())
                .map(|v| format!("{}: {}", v.role, v.notes))
                .collect::<Vec<_>>()
                .join("\n"),
            reasons: r.verdicts.iter().flat_map(|v| v.reasons.clone()).collect(),
        })
    }
}

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

impl RunRecord {
    /// The step with this id (the failure step and loop steps included).
    pub fn step_mut(&mut self, id: &str) -> Option<&mut StepRecord> {
        self.all_steps_mut().find(|s| s.id == id)
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.all_steps().find(|s| s.id == id)
    }

    /// The workflow's steps, its failure step, and the steps loops added.
    pub fn all_steps(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps
            .iter()
            .chain(self.on_failure.iter())
            .chain(self.aux.iter())
    }

    /// The same, mutable.
    pub fn all_steps_mut(&mut self) -> impl Iterator<Item = &mut StepRecord> {
        self.steps
            .iter_mut()
            .chain(self.on_failure.iter_mut())
            .chain(self.aux.iter_mut())
    }

    /// Its state as the API shows it: `WAITING_GATE` while a step waits for people.
    pub fn proto_state(&self) -> v1::RunState {
        if self.state == RunState::Running
            && self.all_steps().any(|s| s.state == StepState::WaitingGate)
        {
            v1::RunState::WaitingGate
        } else if self.state == RunState::Running && !self.paused.is_empty() {
            v1::RunState::Pending
        } else {
            self.state.proto()
        }
    }

    /// The admin API's view.
    pub fn to_proto(&self) -> v1::Run {
        v1::Run {
            run_id: self.run_id.clone(),
            workflow: self.workflow.clone(),
            trigger: self.trigger.clone(),
            state: self.proto_state() as i32,
            priority: self.priority,
            steps: self
                .steps
                .iter()
                .chain(self.on_failure.iter().filter(|f| f.attempt > 0))
                .chain(self.aux.iter())
                .map(|s| v1::RunStep {
                    step_id: s.id.clone(),
                    role: s.role.clone(),
                    state: s.state.proto() as i32,
                    attempt: s.attempt,
                    output: s.output.clone(),
                    error: s.error.clone(),
                    labels: if s.kept_from.is_empty() {
                        s.result_labels.clone()
                    } else {
                        let mut l = s.result_labels.clone();
                        l.push(format!("kept-from:{}", s.kept_from));
                        l
                    },
                    verdict: s.verdict(),
                    review_rounds: u32::try_from(s.rounds.len()).unwrap_or(u32::MAX),
                    usage: Some(v1::Usage {
                        executor: s.executor.clone(),
                        model: s.model.clone(),
                        latency_ms: s.latency_ms,
                        input_tokens: s.input_tokens,
                        output_tokens: s.output_tokens,
                        cost_usd: s.cost_usd,
                    }),
                    started_at: ts(s.started_ms),
                    finished_at: ts(s.finished_ms),
                    tool_calls: s.tool_calls.iter().map(ToolCallRecord::to_proto).collect(),
                })
                .collect(),
            error: self.error.clone(),
            created_at: ts(self.created_ms),
            updated_at: ts(self.updated_ms),
            requested_by: self.requested_by.clone(),
            cost_usd: self.spent_usd,
            paused: self.paused.clone(),
            retry_of: self.retry_of.clone(),
            params: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The next event of the run (increments its sequence).
    pub fn event(
        &mut self,
        step: Option<&str>,
        message: impl Into<String>,
        now_ms: i64,
    ) -> v1::RunEvent {
        self.event_seq += 1;
        let (step_id, step_state, attempt, role) = match step.and_then(|id| self.step(id)) {
            Some(s) => (
                s.id.clone(),
                s.state.proto() as i32,
                s.attempt,
                s.role.clone(),
            ),
            None => (String::new(), 0, 0, String::new()),
        };
        v1::RunEvent {
            run_id: self.run_id.clone(),
            workflow: self.workflow.clone(),
            seq: self.event_seq,
            at: ts(now_ms),
            run_state: self.proto_state() as i32,
            step_id,
            step_state,
            attempt,
            role,
            message: message.into(),
            priority: self.priority,
        }
    }
}
