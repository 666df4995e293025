use std::time::Duration;

/// What can go wrong on the bus. Every variant says what to check.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A subject that is empty, has an empty token, whitespace, or a wildcard where
    /// none is allowed.
    #[error("invalid subject {subject:?}: {why}")]
    InvalidSubject {
        /// The subject as given.
        subject: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A request found nobody subscribed to its subject.
    #[error("no responders on {0}")]
    NoResponders(String),
    /// A request got no reply in time.
    #[error("request on {subject} timed out after {after:?}")]
    Timeout {
        /// The request subject.
        subject: String,
        /// The timeout.
        after: Duration,
    },
    /// A durable publish to a subject no stream stores.
    #[error("no stream stores subject {0}; declare one with ensure_stream")]
    NoStream(String),
    /// A consumer or stream that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A payload that is not the expected protobuf message.
    #[error("cannot decode {expected} from {subject}: {source}")]
    Decode {
        /// The subject it came on.
        subject: String,
        /// The expected type, e.g. `concierto.v1.Task`.
        expected: String,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },
    /// The server refused this process's credentials (or their absence).
    #[error("{0}")]
    Refused(String),
    /// The connection or the server failed.
    #[error("bus transport: {0}")]
    Transport(String),
    /// The bus was shut down.
    #[error("bus closed")]
    Closed,
    /// An argument or stored data this bus cannot take (a replica key, a
    /// replica value another version wrote).
    #[error("{0}")]
    Invalid(String),
    /// A conditional write found the data changed under it: another writer
    /// (a replica written by a process that no longer owns it, say).
    #[error("conflict: {0}")]
    Conflict(String),
}

impl BusError {
    pub(crate) fn transport(e: impl std::fmt::Display) -> Self {
        BusError::Transport(e.to_string())
    }
}

/// Results of bus calls.
pub type Result<T, E = BusError> = std::result::Result<T, E>;
