//! A trigger's `agents`: the roles its runs may dispatch to
//! (`concierto_core::config::trigger_agents`).
//!
//! ```text
//!  StartRun of trigger T (not a fire by hand), T lists agents
//!     ─▶ the run keeps the list (`RunRecord::agents`), fixed for its life
//!  the next workflow step comes up, its role not listed
//!     ─▶ step SKIPPED, error and run event "skipped: role R is not among
//!        trigger T's agents"; the run goes on (its output is empty)
//! ```
//!
//! Only the workflow's own steps are skipped: steps review loops add, gate
//! revisions, batch reviews and the `on_failure` step always run.

use chrono::{DateTime, Utc};
use concierto_core::config::Studio;
use concierto_core::config::trigger_agents::{allowed_roles, skip_reason};
use concierto_proto::v1;

use crate::engine::{Effects, ms};
use crate::run::{RunRecord, StepState};

/// The roles a run `s` starts may dispatch its workflow steps to (`None`:
/// any role).
pub(crate) fn allowed(studio: &Studio, s: &v1::StartRun) -> Option<Vec<String>> {
    allowed_roles(studio, &s.trigger, &s.requested_by).map(<[String]>::to_vec)
}

/// Skips the run's next workflow step when it waits and its role is not among
/// the run's agents. True when it skipped one (the caller looks again).
pub(crate) fn skip_unstaffed(run: &mut RunRecord, now: DateTime<Utc>, fx: &mut Effects) -> bool {
    let Some(allowed) = &run.agents else {
        return false;
    };
    let Some(i) = run.steps.iter().position(|s| !s.state.is_done()) else {
        return false;
    };
    let s = &run.steps[i];
    if s.state != StepState::Waiting || s.aux.is_some() || allowed.contains(&s.role) {
        return false;
    }
    let reason = skip_reason(&run.trigger, &s.role);
    let (step_id, role) = (s.id.clone(), s.role.clone());
    let s = &mut run.steps[i];
    s.state = StepState::Skipped;
    s.error = reason.clone();
    s.finished_ms = ms(now);
    tracing::info!(run = %run.run_id, step = %step_id, %role, "step skipped: its role is not among the trigger's agents");
    fx.events
        .push(run.event(Some(&step_id), format!("skipped: {reason}"), ms(now)));
    true
}
