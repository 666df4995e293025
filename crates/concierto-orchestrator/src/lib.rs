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
//! History (`history.rs`, `gate_index.rs`): runs and gates are listed from
//! time indexes written with them, ended runs are removed after
//! `server.retention`, and runs and gates are named by unique prefixes.
//! `retry.rs` retries an ended run and raises `RunFailed` for a failure
//! nothing in the studio handles. `capacity.rs` sets each role's in-flight
//! limit from its workers' heartbeats (`agent.heartbeat.>`).
//!
//! Durability (DESIGN.md section 3): every change is written to the store and
//! flushed before its effects (tasks, events) are published and before the
//! deliveries that caused it are acknowledged; a result is applied only if it
//! matches `(run, step, attempt)` of an open step; on start every open step is
//! queued or published again.

mod budget;
mod capacity;
pub mod changes;
mod context;
pub mod deliverables;
mod engine;
mod feedback;
mod gate_batch;
mod gate_index;
mod gates;
mod history;
pub mod partitions;
mod query_router;
mod queue;
pub mod replica;
mod retry;
mod review;
mod review_later;
mod routing;
mod run;
mod service;
mod trigger_agents;

pub use capacity::{Capacity, DEFAULT_LAPSE, MAX_WORKERS};
pub use engine::{Effects, Engine, EngineError, Limits, ON_FAILURE};
pub use gates::{DecisionKind, DecisionRecord, GateRecord, GateStatus, SLA_POLICY};
pub use history::{MAX_ROWS_PER_PAGE, PRUNE_PER_TICK};
pub use partitions::{PartitionOptions, start_partitions};
pub use queue::{Class, Queued, RoleId, WorkQueue};
pub use retry::RETRY_SUFFIX;
pub use review::{BATCH_RUN_PREFIX, DEFAULT_PASS_MARK, REVIEW_ESCALATED};
pub use run::{
    Aux, AuxKind, BatchInfo, BatchItem, ReviewRound, ReviewerVerdict, RunRecord, RunState,
    StepRecord, StepState,
};
pub use service::{OrchestratorError, OrchestratorOptions, PartitionSetup, start, start_partition};
