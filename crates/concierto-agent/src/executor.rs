//! The [`Executor`] trait: what does one task for a role, and the [`Outcome`] it
//! gives back. The worker turns an outcome into a `TaskResult`.

use std::sync::Arc;

use async_trait::async_trait;
use concierto_core::config::{ExecutorDef, ExecutorKind, Studio};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::{Task, TaskStatus, Usage, Verdict};

use crate::anthropic::AnthropicExecutor;
use crate::builtin::BuiltinExecutor;
use crate::command::CommandExecutor;
use crate::error::AgentError;
use crate::openai::OpenAiExecutor;
use crate::tools::Toolbox;

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
    /// The tool calls made, in order (model executors with tools).
    pub tool_calls: Vec<concierto_proto::v1::ToolCall>,
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

/// Model names of Claude Code sub-agent files that name no real model: a role
/// with one of these uses its executor's model.
pub const MODEL_ALIASES: &[&str] = &["inherit", "sonnet", "opus", "haiku"];

/// The model `def` uses for `role`: the role's `model` when it sets one that
/// is not a Claude Code alias (`inherit`, `sonnet`, `opus`, `haiku`), else the
/// executor's `model`, else empty.
pub fn model_for(def: &ExecutorDef, role: &RoleDef) -> String {
    let own = role
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty() && !MODEL_ALIASES.contains(&m.to_ascii_lowercase().as_str()));
    own.or(def.model.as_deref().map(str::trim))
        .unwrap_or_default()
        .to_string()
}

/// The name of the executor `role` uses: its `agents.roles` setting, else its
/// role file's `executor`, else `agents.default_executor`.
pub fn executor_name(studio: &Studio, role: &str) -> String {
    studio
        .agents
        .roles
        .get(role)
        .and_then(|s| s.executor.clone())
        .or_else(|| studio.roles.get(role).and_then(|r| r.executor.clone()))
        .unwrap_or_else(|| studio.agents.default_executor.clone())
}

/// The definition of executor `name`; `builtin` needs none.
pub fn executor_def(studio: &Studio, name: &str) -> Option<ExecutorDef> {
    match studio.agents.executors.get(name) {
        Some(def) => Some(def.clone()),
        None if name == "builtin" => Some(ExecutorDef::new("builtin", ExecutorKind::Builtin)),
        None => None,
    }
}

/// The executor a studio configures for `role`: the per-role setting in
/// `agents.roles`, else the role file's `executor`, else
/// `agents.default_executor`, built from its definition in
/// `agents.executors`.
///
/// Refused: an executor the studio does not define; an `openai` or
/// `anthropic` executor with no model for the role; an API key variable that
/// is not set (named, never its value); a `command` without a program.
pub fn executor_for(studio: &Studio, role: &str) -> Result<Arc<dyn Executor>, AgentError> {
    executor_with_tools(studio, role, Toolbox::new())
}

/// [`executor_for`] with a toolbox: the `openai` and `anthropic` executors
/// run their tool-calling loop over it (an empty toolbox: one call, as
/// without tools); the `builtin` and `command` executors ignore it.
pub fn executor_with_tools(
    studio: &Studio,
    role: &str,
    toolbox: Toolbox,
) -> Result<Arc<dyn Executor>, AgentError> {
    let name = executor_name(studio, role);
    let Some(def) = executor_def(studio, &name) else {
        return Err(AgentError::UnknownExecutor {
            role: role.to_string(),
            executor: name,
        });
    };
    if matches!(def.kind, ExecutorKind::OpenAi | ExecutorKind::Anthropic) {
        let model = match studio.roles.get(role) {
            Some(r) => model_for(&def, r),
            None => def.model.clone().unwrap_or_default(),
        };
        if model.is_empty() {
            return Err(AgentError::NoModel {
                role: role.to_string(),
                executor: name,
            });
        }
    }
    Ok(match def.kind {
        ExecutorKind::Builtin => Arc::new(BuiltinExecutor::for_studio(studio)?),
        ExecutorKind::OpenAi => Arc::new(OpenAiExecutor::new(&def)?.with_tools(toolbox)),
        ExecutorKind::Anthropic => Arc::new(AnthropicExecutor::new(&def)?.with_tools(toolbox)),
        ExecutorKind::Command => Arc::new(CommandExecutor::new(&def, &studio.base_dir)?),
    })
}
