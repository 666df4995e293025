//! The content library: what Concierto has seen (images, pages, posts,
//! components, analytics, feedback), each item stored once by content hash,
//! with the features extracted from it, searchable, editable and gathered into
//! collections that export as mood boards.
//!
//! ```text
//!  ingest sources, uploads              HTTP API, dashboard, agents
//!        │ NewItem (bytes or text)            │ Query / Edit / collections
//!        ▼                                    ▼
//!  ┌─────────────────────────── ContentLibrary ───────────────────────────┐
//!  │ extract::{palette, page, typography, concepts}  (outside the lock)    │
//!  │        │ Item (id = SHA-256 of the content)                           │
//!  │        ▼                                                              │
//!  │ KvStore (sled): items, source key → id, collections, image blobs ──┐  │
//!  │        │ the truth; flushed before every commit                    │  │
//!  │        ▼                                                           │  │
//!  │ tantivy index: BM25 over title^3 tags^2 text concepts notes,       │  │
//!  │ filters on kind/source/collection/tag/time, palette colours    ◄───┘  │
//!  │ (derived: rebuilt from the store whenever its commit is behind)       │
//!  └───────────────────────────────────────────────────────────────────────┘
//!        │ Put { outcome: New | Changed }  → the caller announces
//!        ▼                                   content.ingested.<source>
//! ```
//!
//! [`extract`] holds the pure extractors (also [`extract::trends`] for the
//! learners); [`colour`] the colour maths behind palettes and colour search;
//! [`http`] the JSON API over the library (browse, search, upload, edit,
//! collections, exports) for the dashboard and scripts.

pub mod colour;
mod error;
mod export;
pub mod extract;
mod gate;
pub mod http;
mod index;
pub mod learn;
mod library;
mod model;

pub use error::{ContentError, ErrorKind};
pub use export::escape_html;
pub use http::{ApiControl, ApiOptions, TokenAuth, router, router_with_control};
pub use index::{MAX_QUERY_CHARS, MAX_QUERY_DEPTH, MAX_QUERY_TAGS, MAX_QUERY_TERMS};
pub use library::{ContentLibrary, MAX_CONCURRENT_SEARCHES, PALETTE_SIZE};
pub use model::{
    Blob, Collection, ColourFilter, Edit, FontUse, Hit, Item, Kind, NewItem, Outcome, Page, Put,
    Query, Swatch,
};
