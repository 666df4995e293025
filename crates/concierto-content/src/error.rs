//! The content library's errors.

use concierto_core::store::StoreError;

/// What went wrong in the content library or an extractor.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The bytes are not an image we can decode (truncated, corrupt, or an
    /// unsupported format).
    #[error("image: {0} (supported formats: PNG, JPEG, WebP, GIF)")]
    Image(String),
    /// The input is over a size limit (an image's pixels or decode memory);
    /// the message names the limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// No item has this id.
    #[error("no content item {0}: check the id (a content hash) with a search")]
    ItemNotFound(String),
    /// No collection has this name.
    #[error("no collection named {0:?}: create it first")]
    CollectionNotFound(String),
    /// A collection with this name exists already.
    #[error("a collection named {0:?} exists already: pick another name")]
    CollectionExists(String),
    /// The item was replaced by a newer version of the same source key.
    #[error("content item {id} was replaced by {by}: edit the newer version")]
    Superseded {
        /// The old version.
        id: String,
        /// The version that replaced it.
        by: String,
    },
    /// The caller passed something unusable (the message says what and how to fix it).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The key/value store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The search index failed.
    #[error("search index: {0}")]
    Index(String),
    /// A stored record could not be read back.
    #[error("corrupt record {key}: {message}")]
    Corrupt {
        /// The store key of the record.
        key: String,
        /// What failed.
        message: String,
    },
}

/// The broad class of a [`ContentError`], for mapping to HTTP or gRPC statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input is unusable (400).
    Invalid,
    /// The thing asked for does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The input is over a size limit (413).
    TooLarge,
    /// Storage or index failure (500).
    Internal,
}

impl ContentError {
    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContentError::Image(_) | ContentError::Invalid(_) => ErrorKind::Invalid,
            ContentError::ItemNotFound(_) | ContentError::CollectionNotFound(_) => {
                ErrorKind::NotFound
            }
            ContentError::CollectionExists(_) | ContentError::Superseded { .. } => {
                ErrorKind::Conflict
            }
            ContentError::TooLarge(_) => ErrorKind::TooLarge,
            ContentError::Store(_) | ContentError::Index(_) | ContentError::Corrupt { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

impl From<tantivy::TantivyError> for ContentError {
    fn from(e: tantivy::TantivyError) -> Self {
        ContentError::Index(e.to_string())
    }
}

impl From<tantivy::directory::error::OpenDirectoryError> for ContentError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        ContentError::Index(e.to_string())
    }
}
