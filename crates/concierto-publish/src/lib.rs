//! The publisher service: what succeeded runs made, out of the system.
//!
//! ```text
//!  DELIVERABLES (deliverable.<workflow>) ─fetch─▶ ┌───────────┐ ─store, flush, ack─▶ sled
//!                                                 │ Publisher │ ─library.put──────▶ ingest (content library)
//!  tick (the outbox: attempts due) ─────────────▶ │ actor+Book│ ─then each publisher: folder, webhook, Slack
//!  publish.list (req) ──────────────────────────▶ └───────────┘ ─event.deliverable.<kind> (PublishOutcome)
//! ```
//!
//! A deliverable is acknowledged once stored; from then on its jobs live in the
//! store's outbox and survive restarts. Step 1 stores it in the content library
//! (kind `deliverable`, tagged with its run and workflow, in the collection
//! `deliverables-<workflow>`); step 2 hands it to every publisher that takes its
//! workflow, each retried with exponential backoff up to its `max_attempts`.
//! Every outcome is recorded and announced.

mod book;
mod service;
pub mod sinks;

pub use book::{
    Attempt, Backoff, Book, BookError, DEFAULT_DAYS, DEFAULT_PAGE, Job, LIBRARY, LIBRARY_ATTEMPTS,
    MAX_DAYS, MAX_DELIVERABLE, MAX_PAGE, made_at,
};
pub use service::{PublishError, PublisherOptions, start};
pub use sinks::{Sinks, file_name, json_of, signature, write_file};
