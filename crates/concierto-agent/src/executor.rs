//! The [`Executor`] trait: what does one task for a role, and the [`Outcome`] it
//! gives back. The worker turns an outcome into a `TaskResult`.

use std::sync::Arc;

use async_trait::async_trait;
use concierto_core::config::{ExecutorKind, Studio};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{Task, TaskStatus, Usage, Verdict};

use crate::builtin::BuiltinExecutor;
use crate::error::AgentError;

/// Does tasks for roles: calls a model, runs a program, or (the builtin one)
/// computes the answer offline.
///
/// `execute` never fails as a Rust error: a failure is an [`Outcome`] whose
/// status is `RETRYABLE` (a retry may fix it) or `FAILED` (it will not), with its
/// reason in `error`. The orchestrator decides about retries.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Its name as results and heartbeats report it (`builtin`, `openai`, ...).
    fn name(&self) -> &str;

    /// The model it uses for `role`, as heartbeats report it. By default the
    /// role's `model`.
    fn model(&self, role: &RoleDef) -> String {
        role.model.clone().unwrap_or_default()
    }

    /// Does `task` as `role`.
    async fn execute(&self, role: &RoleDef, task: &Task) -> Outcome;
}

/// What an executor made of a task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `SUCCEEDED`, `RETRYABLE` or `FAILED` (`UNSPECIFIED` is reported as
    /// `FAILED`).
    pub status: TaskStatus,
    /// The output (Markdown, JSON, ...).
    pub output: String,
    /// Its media type (`text/markdown`, `application/json`).
    pub content_type: String,
    /// The reason, when it did not succeed.
    pub error: String,
    /// Labels the executor puts on the output (`major_brand_changes`, ...).
    pub labels: Vec<String>,
    /// Set when the task was a review.
    pub verdict: Option<Verdict>,
    /// Executor, model, tokens. The worker fills `executor`, `model` and
    /// `latency_ms` when they are left empty or zero.
    pub usage: Usage,
    /// Executor-specific facts for `TaskResult.details` (`exit_status`,
    /// `finish_reason`, `request_id`, `http_attempts`). Never a secret.
    pub details: std::collections::BTreeMap<String, String>,
}

impl Outcome {
    /// A success with this output.
    pub fn succeeded(output: impl Into<String>, content_type: impl Into<String>) -> Self {
        Outcome {
            status: TaskStatus::Succeeded,
            output: output.into(),
            content_type: content_type.into(),
            ..Default::default()
        }
    }

    /// A failure a retry may fix.
    pub fn retryable(error: impl Into<String>) -> Self {
        Outcome {
            status: TaskStatus::Retryable,
            error: error.into(),
            ..Default::default()
        }
    }

    /// A failure no retry will fix.
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome {
            status: TaskStatus::Failed,
            error: error.into(),
            ..Default::default()
        }
    }

    /// True when it succeeded.
    pub fn is_success(&self) -> bool {
        self.status == TaskStatus::Succeeded
    }
}

/// The executor a studio configures for `role`: the per-role setting in
/// `agents.roles`, else the role file's `executor`, else
/// `agents.default_executor`. Only `builtin` executors can be built today; any
/// other kind is refused with what to change.
pub fn executor_for(studio: &Studio, role: &str) -> Result<Arc<dyn Executor>, AgentError> {
    let from_settings = studio
        .agents
        .roles
        .get(role)
        .and_then(|s| s.executor.clone());
    let from_file = studio.roles.get(role).and_then(|r| r.executor.clone());
    let name = from_settings
        .or(from_file)
        .unwrap_or_else(|| studio.agents.default_executor.clone());
    let kind = match studio.agents.executors.get(&name) {
        Some(def) => def.kind,
        None if name == "builtin" => ExecutorKind::Builtin,
        None => {
            return Err(AgentError::UnsupportedExecutor {
                role: role.to_string(),
                executor: name,
            });
        }
    };
    match kind {
        ExecutorKind::Builtin => Ok(Arc::new(BuiltinExecutor::for_studio(studio)?)),
        ExecutorKind::OpenAi | ExecutorKind::Anthropic | ExecutorKind::Command => {
            Err(AgentError::UnsupportedExecutor {
                role: role.to_string(),
                executor: name,
            })
        }
    }
}
