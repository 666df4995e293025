//! The orchestrator service: one run per `StartRun`, its workflow's steps in
//! order, the work queue, limits, timeouts, retries, the failure path,
//! cancellation, and a `RunEvent` for every state change.
//!
//! ```text
//!  RUNS (run.start) ──fetch──▶ ┌──────────────┐ ──store, flush──▶ sled (runs)
//!  RESULTS (result.>) ─fetch─▶ │ Orchestrator │ ──then publish──▶ task.<role> (TASKS)
//!  tick (timeouts, retries) ─▶ │ actor+Engine │ ──────────────▶ run.event.<run>
//!  orchestrator.runs.* (req) ▶ └──────────────┘ ──then ack the deliveries
//! ```
//!
//! Durability (DESIGN.md section 3): every change is written to the store and
//! flushed before its effects (tasks, events) are published and before the
//! deliveries that caused it are acknowledged; a result is applied only if it
//! matches `(run, step, attempt)` of an open step; on start every open step is
//! queued or published again.

mod budget;
pub mod changes;
mod context;
pub mod deliverables;
mod engine;
mod feedback;
mod gate_batch;
mod gates;
mod queue;
mod review;
mod review_later;
mod run;
mod service;
mod trigger_agents;

pub use engine::{Effects, Engine, EngineError, Limits, ON_FAILURE};
pub use gates::{DecisionKind, DecisionRecord, GateRecord, GateStatus, SLA_POLICY};
pub use queue::{Class, Queued, WorkQueue};
pub use review::{BATCH_RUN_PREFIX, DEFAULT_PASS_MARK, REVIEW_ESCALATED};
pub use run::{
    Aux, AuxKind, BatchInfo, BatchItem, ReviewRound, ReviewerVerdict, RunRecord, RunState,
    StepRecord, StepState,
};
pub use service::{OrchestratorError, OrchestratorOptions, start};
