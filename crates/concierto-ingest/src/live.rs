//! The ingest service kept in step with the studio: what a changed studio
//! ([`concierto_core::service::ServiceHandle::studio_changed`]) stops and
//! starts. The [`IngestSupervisor`](crate::supervisor::IngestSupervisor)
//! carries the [`plan`] out: it stops the actors of sources gone or changed
//! (path, kind, refresh, extractors, role, hosts...) and starts those of new
//! or changed ones, which read at their next cycle (a new source at once, a
//! changed one on its refresh after its last read); the learners likewise.
//! The library, cursors and outbox stay as they are. `ingest.fetch` takes
//! the new allow list and `agents.tools.web_fetch` at the next request.
//! Vision models stay as started (a change is warned about). A source with
//! `enabled: false` has no actor: it makes no request and reads no folder
//! (turning it on starts one, turning it off stops it).

use concierto_core::config::{ContentSource, Studio};

/// What a changed studio does to the sources that run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Running sources whose definition changed (turned off included):
    /// stopped, and started again with the new one when enabled.
    pub changed: Vec<String>,
    /// Running sources the studio no longer has: stopped.
    pub removed: Vec<String>,
}

/// The plan for `running` (name and definition of each source that has an
/// actor, or waits for its restart) under `next`. Sources of `next` that
/// are enabled and not running are started afterwards.
pub(crate) fn plan(running: &[(String, ContentSource)], next: &Studio) -> Plan {
    let mut out = Plan::default();
    for (name, def) in running {
        match next.content_sources.iter().find(|s| s.name == *name) {
            Some(s) if s == def => {}
            Some(_) => out.changed.push(name.clone()),
            None => out.removed.push(name.clone()),
        }
    }
    out
}
