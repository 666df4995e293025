//! The studio configuration: one YAML file plus `CONCIERTO__SECTION__KEY`
//! environment overrides, loaded with the `config` crate. The seed's four blocks
//! (`triggers`, `feedback_loops`, `content_sources`, `progress_metrics`) are
//! accepted exactly as written — lists of one-key maps — alongside `studio`,
//! `server`, `agents`, `reviewers` and `workflows`.
//!
//! Loading reports *every* problem with its file, line and key path.

pub mod budget;
pub mod changes;
pub mod context;
pub mod deliverables;
pub mod explain;
pub mod feedback_router;
pub mod flood;
pub mod gate_batch;
pub mod keys;
mod load;
pub mod mcp;
pub mod model;
pub mod partitions;
pub mod problem;
pub mod reports;
pub mod retention;
pub mod review;
pub mod spans;
pub mod targets;
pub mod tools;
pub mod trends;
pub mod trigger_agents;
mod walk;

pub use budget::Budget;
pub use context::{ContextItem, ContextKind, ContextWindow, SINCE_LAST_RUN, parse_window};
pub use deliverables::{PublisherDef, PublisherKind, Publishing};
pub use flood::Flood;
pub use load::{
    Checked, EXECUTOR_SWITCH, check, check_text_with_env, check_with_env, load, load_with_env,
};
pub use mcp::{McpServerDef, McpTransport};
pub use model::*;
pub use problem::{Problem, Problems, Severity};
pub use targets::{OnOffTarget, off_target_predicate};
pub use tools::{KNOWN_TOOLS, ToolsSettings, WebFetchSettings, WebSearchSettings};
