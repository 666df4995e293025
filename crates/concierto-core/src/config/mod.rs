//! The studio configuration: one YAML file plus `CONCIERTO__SECTION__KEY`
//! environment overrides, loaded with the `config` crate. The seed's four blocks
//! (`triggers`, `feedback_loops`, `content_sources`, `progress_metrics`) are
//! accepted exactly as written — lists of one-key maps — alongside `studio`,
//! `server`, `agents`, `reviewers` and `workflows`.
//!
//! Loading reports *every* problem with its file, line and key path.

mod load;
pub mod model;
pub mod problem;
pub mod spans;
mod walk;

pub use load::{Checked, check, check_with_env, load, load_with_env};
pub use model::*;
pub use problem::{Problem, Problems, Severity};
