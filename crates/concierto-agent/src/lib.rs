//! The agent worker runtime: what `concierto agent --role <role>` runs, and what
//! `concierto up` starts once per role replica.
//!
//! A worker is one replica of one role. The orchestrator publishes each step
//! attempt as a `Task` on `task.<role>` (stream `TASKS`); every replica of the
//! role opens the same durable consumer (durable = the role), so adding replicas
//! spreads the work. A worker runs up to `max_in_flight` tasks at once, hands
//! each to its [`Executor`], stores the `TaskResult` on `result.<role>` (stream
//! `RESULTS`, message id `<task_id>/result`) and only then acknowledges the
//! task. A worker that dies holding a task never acknowledges it, so JetStream
//! gives it to another replica after `ack_wait`.
//!
//! ```text
//!   orchestrator ── task.<role> ──▶ TASKS ──▶ durable consumer "<role>" (shared by replicas)
//!                                               │ fetch up to max_in_flight − in_flight
//!                                               ▼
//!              ┌──────────── worker <role>.<id> ────────────────────────────┐
//!              │ run each task concurrently:                                 │
//!              │   executor.execute(role, task)   ── in_progress every      │
//!              │                                     ack_wait/3 while long   │
//!              │   publish_durable result.<role>  (id <task_id>/result)     │
//!              │     ok  ─▶ ack       failed ─▶ nak(delay): the task returns │
//!              │ every heartbeat_every: agent.heartbeat.<role>.<id>          │
//!              │   state, in_flight, capacity, busy_ms/idle_ms, done/failed  │
//!              │ stop(): stop fetching ─▶ DRAINING ─▶ finish in-flight tasks │
//!              │         (results stored, acked) ─▶ STOPPED ─▶ finished      │
//!              └─────────────────────────────────────────────────────────────┘
//!   RESULTS ◀── result.<role> ── orchestrator applies it if (run, step, attempt) is open
//! ```
//!
//! **Actors.** A worker is an actix actor under a supervisor (so
//! [`start_worker`] must run inside an actix `System`); a fetch and each task
//! run in tokio tasks whose end is a message to it. A job or a fetch that
//! panics restarts the worker (backoff 100 ms doubling to 10 s) instead of
//! stopping the role.
//!
//! **Heartbeats** (`agent.heartbeat.<role>.<worker_id>`, `AgentHeartbeat`):
//! `worker_id` is `<role>.<worker_id>` as in results; `state` is `STARTING`
//! (before the consumer is open), `READY`, `DRAINING` (stop asked, finishing
//! what it holds) and a last `STOPPED` (with `capacity` 0). `busy_ms` and
//! `idle_ms` cover the time since the previous heartbeat and add up to it
//! (a heartbeat goes out at start, every `heartbeat_every`, on a restart
//! and on stop): `busy_ms` is the summed
//! per-slot busy time divided by the capacity (one task for 1 s on a worker
//! with 4 slots is 250 ms busy), so `busy / (busy + idle)` is the utilisation
//! of the worker's capacity. `tasks_done` (succeeded) and `tasks_failed`
//! (`RETRYABLE` or `FAILED`) count results stored since the worker started.
//!
//! **Results** carry the task's identity (`task_id`, `run_id`, `step_id`,
//! `attempt`), the worker, the outcome, the step's `labels` followed by the
//! executor's, and `usage` with the executor, model, tokens and `latency_ms`
//! (the time the executor took); the task's `traceparent` header is passed on.
//! A task with a `deadline` is stopped when it passes (result `RETRYABLE`); an
//! executor that panics gives a `RETRYABLE` result too.
//!
//! The worker does not decide about retries: a failed executor gives a result
//! with status `RETRYABLE` or `FAILED`, stored and acknowledged like any other;
//! the orchestrator retries or fails the step. The bus redelivers a task only
//! when its result could not be stored (or the worker died).
//!
//! **Executors**, picked per role by [`executor_for`] from the studio's
//! `agents.executors`:
//!
//! | kind | executor | what it does |
//! |---|---|---|
//! | `builtin` | [`BuiltinExecutor`] | deterministic, offline work (see [`builtin`]) |
//! | `openai` | [`OpenAiExecutor`] | Chat Completions of OpenAI or a compatible server (Ollama, llama.cpp, vLLM) |
//! | `anthropic` | [`AnthropicExecutor`] | the Anthropic Messages API |
//! | `command` | [`CommandExecutor`] | a local program: prompt on stdin, answer on stdout |
//!
//! The model executors share the prompt ([`prompt`]: the role's prompt as
//! system prompt; the instruction, inputs — images as image parts — and what a
//! review asks as user message) and one HTTP call with retries ([`RetryPolicy`]:
//! 429 and 5xx answers, timeouts and refused connections are retried with
//! exponential backoff or the provider's `Retry-After`; other 4xx fail at
//! once). Their API key is read from the environment when the executor is
//! built and never appears in a log, a reason, an output or the details.
//! Every outcome reports `Usage.executor` (the kind), the model, tokens and the
//! cost from the executor's `prices`, and `details` (`executor_name`,
//! `http_attempts`, `request_id`, `finish_reason`/`stop_reason`,
//! `exit_status`).

mod anthropic;
pub mod builtin;
mod command;
pub mod context;
mod error;
mod executor;
mod http;
mod openai;
pub mod prompt;
pub mod tools;
mod worker;

pub use anthropic::{ANTHROPIC, ANTHROPIC_VERSION, AnthropicExecutor, DETAIL_STOP_REASON};
pub use builtin::{BrandRules, BuiltinExecutor};
pub use command::{
    BASE_ENV, COMMAND, CommandExecutor, DETAIL_EXIT_STATUS, EX_TEMPFAIL, TASK_JSON_ENV, task_json,
};
pub use context::{ContextOptions, DEFAULT_CONTEXT_TIMEOUT};
pub use error::AgentError;
pub use executor::{
    Executor, MODEL_ALIASES, Outcome, executor_def, executor_for, executor_name,
    executor_with_tools, model_for,
};
pub use http::{
    ApiKey, DETAIL_HTTP_ATTEMPTS, DETAIL_REQUEST_ID, MAX_RESPONSE_BYTES, RETRY_AFTER_CEILING,
    RetryPolicy, parse_retry_after,
};
pub use openai::{DETAIL_FINISH_REASON, OPENAI, OpenAiExecutor};
pub use prompt::DETAIL_EXECUTOR_NAME;
pub use worker::{TASKS_STREAM, WorkerOptions, consumer_spec, default_worker_id, start_worker};
