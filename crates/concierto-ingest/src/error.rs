//! The ingester's errors.

use concierto_bus::BusError;
use concierto_content::ContentError;
use concierto_core::store::StoreError;

/// Why a source, or the ingester, could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A folder source's folder is missing or unreadable; a missing one is
    /// read as soon as it appears, an unreadable one tried again later.
    #[error(
        "folder {path}: {message} (create it or fix the source's path; it is read as soon as it appears)"
    )]
    Folder {
        /// The configured folder.
        path: String,
        /// What failed.
        message: String,
    },
    /// An HTTP request failed or was refused by a rule (allow list, robots.txt, size).
    #[error("fetch {url}: {message}")]
    Fetch {
        /// The address.
        url: String,
        /// What failed.
        message: String,
    },
    /// A fetch was refused before connecting: the address is loopback,
    /// private, link-local or otherwise not public, and the source does not
    /// allow private networks (`allow_private_networks`).
    #[error("fetch {url}: refused: {message}")]
    PrivateAddress {
        /// The address asked for.
        url: String,
        /// Which address and how to allow it.
        message: String,
    },
    /// A response was not what the source expects (not a feed, bad JSON).
    #[error("{url}: {message}")]
    BadContent {
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// An API answered with an error.
    #[error("API {url} answered {status}: {message}")]
    Api {
        /// The request's address.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's message (shortened).
        message: String,
    },
    /// An API's rate limit is exhausted until the given time.
    #[error("rate limited until {until} (the source is read again after it)")]
    RateLimited {
        /// When the window resets.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The source is misconfigured (missing token, bad handle).
    #[error("configuration: {0}")]
    Config(String),
    /// The content library failed (storage or index).
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus refused something.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// `start` was called outside an actix System.
    #[error(
        "the ingester runs actix actors and must be started inside an actix System \
         (actix::System::with_tokio_rt, or #[actix_rt::test] in tests)"
    )]
    NoSystem,
    /// A blocking task did not finish.
    #[error("a blocking task failed: {0}")]
    Blocking(String),
}
