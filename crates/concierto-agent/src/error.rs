//! What can go wrong when starting a worker or loading an executor.

use std::path::PathBuf;

use concierto_bus::BusError;

/// Errors of the agent runtime. Every variant says what to check.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The bus refused something the worker needs (its consumer, a publish).
    #[error("bus: {0}")]
    Bus(#[from] BusError),

    /// A worker was started outside an actix System.
    #[error(
        "agent workers run as actix actors and must be started inside an actix System \
         (actix::System::with_tokio_rt, or #[actix_rt::test] in tests)"
    )]
    NoSystem,

    /// The task stream does not exist on the bus.
    #[error(
        "the bus has no {stream} stream: declare the standard streams first \
         (concierto_bus::ensure_standard_streams) — {source}"
    )]
    MissingStream {
        /// The logical stream name (`TASKS`).
        stream: String,
        /// What the bus said.
        #[source]
        source: BusError,
    },

    /// Worker options that cannot work.
    #[error("invalid worker options for role {role:?}: {why}")]
    InvalidOptions {
        /// The role the worker was for.
        role: String,
        /// What is wrong and what to set instead.
        why: String,
    },

    /// The brand folder or its rules file could not be read.
    #[error("cannot read brand rules at {path}: {source}")]
    BrandIo {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The brand rules file is not valid.
    #[error("invalid brand rules in {path}: {why}")]
    BrandRules {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key when known.
        why: String,
    },

    /// A role asks for an executor this runtime cannot provide.
    #[error(
        "role {role:?} uses executor {executor:?}, which this build cannot run yet: \
         set `executor: builtin` for it in the studio file"
    )]
    UnsupportedExecutor {
        /// The role.
        role: String,
        /// The executor's name.
        executor: String,
    },

    /// A role names an executor the studio does not define.
    #[error(
        "role {role:?} uses executor {executor:?}, which the studio does not define: \
         add it under agents.executors or pick another for the role"
    )]
    UnknownExecutor {
        /// The role.
        role: String,
        /// The executor's name.
        executor: String,
    },

    /// A model executor has no model for a role.
    #[error(
        "role {role:?} uses executor {executor:?}, which has no model for it: set `model` on \
         the executor in the studio file, or a model name (not a Claude Code alias such as \
         `sonnet` or `inherit`) in the role file"
    )]
    NoModel {
        /// The role.
        role: String,
        /// The executor's name.
        executor: String,
    },

    /// The environment variable an executor reads its API key from is unset.
    #[error(
        "executor {executor:?} reads its API key from the environment variable {var}, which is \
         not set (or empty): export {var} before starting the worker"
    )]
    MissingApiKey {
        /// The executor's name.
        executor: String,
        /// The variable's name.
        var: String,
    },

    /// An executor definition that cannot be built.
    #[error("executor {executor:?} cannot be built: {why}")]
    InvalidExecutor {
        /// The executor's name.
        executor: String,
        /// What is wrong and what to set instead.
        why: String,
    },

    /// An MCP server (`agents.mcp_servers`) could not give its tools.
    #[error("MCP server {server:?}: {why}")]
    Mcp {
        /// The server's name.
        server: String,
        /// Why.
        why: String,
    },
}
