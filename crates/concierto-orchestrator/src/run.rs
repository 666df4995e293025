//! A run as the orchestrator stores it: the truth about runs (DESIGN.md
//! section 3). Kept as JSON in the `runs` tree, keyed by run id.

use std::collections::BTreeMap;

use concierto_proto::v1;
use serde::{Deserialize, Serialize};

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
    /// Failed an attempt; waiting for its backoff to pass.
    Retrying,
    /// Done.
    Succeeded,
    /// Failed for good.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl StepState {
    fn proto(self) -> v1::StepState {
        match self {
            StepState::Waiting => v1::StepState::Waiting,
            StepState::Queued => v1::StepState::Queued,
            StepState::Dispatched => v1::StepState::Dispatched,
            StepState::Retrying => v1::StepState::Retrying,
            StepState::Succeeded => v1::StepState::Succeeded,
            StepState::Failed => v1::StepState::Failed,
            StepState::Cancelled => v1::StepState::Cancelled,
        }
    }

    /// True while the step may still change on its own.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            StepState::Waiting | StepState::Queued | StepState::Dispatched | StepState::Retrying
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
    /// First dispatch (unix ms), 0 before.
    pub started_ms: i64,
    /// Final state reached (unix ms), 0 before.
    pub finished_ms: i64,
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
    #[serde(default)]
    pub failing: bool,
}

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

impl RunRecord {
    /// The step with this id (the failure step included).
    pub fn step_mut(&mut self, id: &str) -> Option<&mut StepRecord> {
        if let Some(f) = self.on_failure.as_mut()
            && f.id == id
        {
            return Some(f);
        }
        self.steps.iter_mut().find(|s| s.id == id)
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps
            .iter()
            .chain(self.on_failure.iter())
            .find(|s| s.id == id)
    }

    /// The admin API's view.
    pub fn to_proto(&self) -> v1::Run {
        v1::Run {
            run_id: self.run_id.clone(),
            workflow: self.workflow.clone(),
            trigger: self.trigger.clone(),
            state: self.state.proto() as i32,
            priority: self.priority,
            steps: self
                .steps
                .iter()
                .chain(self.on_failure.iter().filter(|f| f.attempt > 0))
                .map(|s| v1::RunStep {
                    step_id: s.id.clone(),
                    role: s.role.clone(),
                    state: s.state.proto() as i32,
                    attempt: s.attempt,
                    output: s.output.clone(),
                    error: s.error.clone(),
                    labels: s.result_labels.clone(),
                    verdict: None,
                    review_rounds: 0,
                    usage: Some(v1::Usage {
                        executor: s.executor.clone(),
                        model: s.model.clone(),
                        latency_ms: s.latency_ms,
                        ..Default::default()
                    }),
                    started_at: ts(s.started_ms),
                    finished_at: ts(s.finished_ms),
                })
                .collect(),
            error: self.error.clone(),
            created_at: ts(self.created_ms),
            updated_at: ts(self.updated_ms),
            requested_by: self.requested_by.clone(),
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
            run_state: self.state.proto() as i32,
            step_id,
            step_state,
            attempt,
            role,
            message: message.into(),
            priority: self.priority,
        }
    }
}
