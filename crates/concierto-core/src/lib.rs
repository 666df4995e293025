//! Concierto's shared model: the studio configuration (the seed's YAML blocks as
//! written plus `workflows`, `agents`, `reviewers`, `server`), the grammars its
//! strings use, and role definitions.

pub mod clock;
pub mod config;
pub mod feedback;
pub mod grammar;
pub mod health;
pub mod live;
pub mod partition;
pub mod roles;
pub mod service;
pub mod store;
pub mod structured;
pub mod subjects;
