//! Tools a model may call while it does a task.
//!
//! A role gets exactly the tools its `tools:` line names (Claude Code names map
//! to Concierto tools: `Read`, `Grep`, `Glob`, `WebFetch`, `WebSearch`,
//! `Write`, `Edit`; Concierto's own `library_search`, `metrics_get`,
//! `runs_recent`, `brand_check`; MCP tools as `mcp__<server>__<tool>`). The
//! `openai` and `anthropic` executors run the provider's tool-calling loop
//! over a [`Toolbox`]; every call is recorded as a `ToolCall` on the result.
//!
//! A tool never fails as a Rust error the loop must handle: [`ToolError`] is
//! text handed back to the model as the tool's result (a refused path, a host
//! not allowed, malformed arguments), so the model can correct itself.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use concierto_proto::v1::Task;
use serde_json::Value;

mod args;
pub mod builder;
pub mod deliverable;
pub mod files;
pub mod mcp;
pub mod mcp_server;
pub mod studio;
pub mod tool_loop;
pub mod web;

pub use builder::{CONCIERTO_TOOLS, KNOWN_TOOLS, builtin_toolbox, concierto_toolbox};

/// How a model sees one tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Its name (`Read`, `library_search`, `mcp__files__read_file`).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an `object` schema).
    pub input_schema: Value,
}

/// Why a tool call gave no answer; the text goes back to the model as the
/// tool's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    /// A tool error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        ToolError(msg.into())
    }
}

/// What a tool call may see of the task it serves.
#[derive(Debug, Clone)]
pub struct ToolCx {
    /// The task under way.
    pub task: Arc<Task>,
    /// The step's deliverable, which `Write` and `Edit` change (never a file).
    pub deliverable: Arc<Mutex<Option<String>>>,
}

impl ToolCx {
    /// For `task`, with an empty deliverable.
    pub fn new(task: &Task) -> Self {
        ToolCx {
            task: Arc::new(task.clone()),
            deliverable: Arc::new(Mutex::new(None)),
        }
    }

    /// The deliverable written so far, if any.
    pub fn written(&self) -> Option<String> {
        self.deliverable.lock().ok().and_then(|d| d.clone())
    }
}

/// One tool.
#[async_trait]
pub trait Tool: Send + Sync + std::fmt::Debug {
    /// How the model sees it.
    fn spec(&self) -> ToolSpec;

    /// Calls it with `args` (the model's arguments, already parsed as JSON).
    /// The answer is text for the model.
    async fn call(&self, args: Value, cx: &ToolCx) -> Result<String, ToolError>;
}

/// The tools one role may use, with the limits of a tool loop.
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    /// The tools, in the order the model is told of them.
    pub tools: Vec<Arc<dyn Tool>>,
    /// Tool calls allowed in one task (the loop stops past it).
    pub max_calls: u32,
    /// The most bytes of one tool answer handed back to the model (the rest is
    /// cut, and the cut said).
    pub max_answer_bytes: usize,
}

/// Tool calls allowed per task unless `agents.tools.max_calls` says otherwise.
pub const DEFAULT_MAX_CALLS: u32 = 16;

/// Bytes of one tool answer handed back to the model.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 32 * 1024;

impl Toolbox {
    /// An empty toolbox with the default limits.
    pub fn new() -> Self {
        Toolbox {
            tools: Vec::new(),
            max_calls: DEFAULT_MAX_CALLS,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        }
    }

    /// True when there is no tool.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.spec().name == name)
    }

    /// Adds a tool.
    pub fn push(&mut self, tool: Arc<dyn Tool>) {
        self.tools.push(tool);
    }
}
