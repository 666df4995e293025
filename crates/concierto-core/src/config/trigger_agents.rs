//! What a trigger's `agents` does: the roles its runs may dispatch to.
//!
//! ```yaml
//! triggers:
//!   scheduled:
//!     - daily_content_generation:
//!         time: "09:00"
//!         agents: [content-creator, visual-storyteller, brand-guardian]
//!         workflow: "daily-content-pipeline"
//! ```
//!
//! In a run the trigger starts on its own (a schedule, an event, a batch
//! window), a workflow step whose role is not listed is skipped: state
//! `SKIPPED`, its reason (`role R is not among trigger T's agents`) as the
//! step's error and a run event, and the steps after it get its empty output,
//! as inputs of a step that produced nothing. Steps review loops add (reviews,
//! revisions), revisions asked for at quality gates and the workflow's
//! `on_failure` step are never skipped. Fires by hand (`trigger fire`) and
//! runs started without the trigger (`run start`) are not restricted. A
//! trigger without `agents` restricts nothing. Every fire also carries the
//! list as the run's `agents` param.
//!
//! `validate`: a listed role no role file defines is an error (with the
//! other unknown roles), so is a listed role the workflow never uses (no step,
//! no `on_failure`, no review loop on its steps); each step whose role is not
//! listed is a warning, since its runs skip it.

use std::collections::BTreeSet;

use super::model::{Studio, Trigger, TriggerKind, Workflow};
use super::spans::{child, item};
use super::walk::Walker;

/// `requested_by` of a fire by hand (the scheduler's `scheduler.fire`): such
/// runs are not restricted.
pub const FIRED_BY_HAND: &str = "admin";

/// Why a step of a run of `trigger` is skipped.
pub fn skip_reason(trigger: &str, role: &str) -> String {
    format!("role {role} is not among trigger {trigger}'s agents")
}

/// The roles a run may dispatch its workflow steps to: the `agents` of the
/// trigger named `trigger` when it lists some and the run is not a fire by
/// hand (`requested_by` [`FIRED_BY_HAND`]); `None`: no restriction.
pub fn allowed_roles<'s>(
    studio: &'s Studio,
    trigger: &str,
    requested_by: &str,
) -> Option<&'s [String]> {
    if trigger.is_empty() || requested_by == FIRED_BY_HAND {
        return None;
    }
    studio
        .triggers
        .iter()
        .find(|t| t.name == trigger)
        .map(|t| t.agents.as_slice())
        .filter(|a| !a.is_empty())
}

/// The roles `wf` uses: its steps', its `on_failure`'s and the reviewers of
/// the review loops on its steps.
fn used_roles<'s>(studio: &'s Studio, wf: &'s Workflow) -> BTreeSet<&'s str> {
    let mut out: BTreeSet<&str> = wf.steps.iter().map(|s| s.role.as_str()).collect();
    if let Some(f) = &wf.on_failure {
        out.insert(f.role.as_str());
    }
    for s in &wf.steps {
        if let Some(l) = s.review.as_ref().and_then(|r| {
            studio
                .feedback_loops
                .agent_to_agent
                .iter()
                .find(|l| &l.name == r)
        }) {
            out.extend(l.reviewers.iter().map(String::as_str));
        }
    }
    out
}

/// The steps of `t`'s workflow its runs skip: `(step id, role)`.
pub fn skipped_steps<'s>(studio: &'s Studio, t: &Trigger) -> Vec<(&'s str, &'s str)> {
    let Some(wf) = studio.workflows.get(&t.workflow) else {
        return Vec::new();
    };
    if t.agents.is_empty() {
        return Vec::new();
    }
    wf.steps
        .iter()
        .filter(|s| !t.agents.contains(&s.role))
        .map(|s| (s.id.as_str(), s.role.as_str()))
        .collect()
}

/// The cross-checks: listed roles the workflow never uses (errors) and steps
/// its runs skip (warnings). `paths` are the triggers' key paths, in order.
pub(crate) fn check(w: &mut Walker<'_>, s: &Studio, paths: &[String]) {
    for (ti, t) in s.triggers.iter().enumerate() {
        let Some(wf) = s.workflows.get(&t.workflow) else {
            continue;
        };
        if t.agents.is_empty() {
            continue;
        }
        let p = paths.get(ti).cloned().unwrap_or_else(|| {
            let list = match t.kind {
                TriggerKind::Scheduled { .. } => "triggers.scheduled",
                TriggerKind::Event(_) => "triggers.event_based",
            };
            child(list, &t.name)
        });
        let ap = child(&p, "agents");
        let used = used_roles(s, wf);
        for (i, a) in t.agents.iter().enumerate() {
            // An unknown role is reported as such by the reference checks.
            if s.roles.contains_key(a) && !used.contains(a.as_str()) {
                w.error(
                    &item(&ap, i),
                    format!(
                        "trigger {} lists agent {a} but workflow {} has no step for it",
                        t.name, t.workflow
                    ),
                );
            }
        }
        // A list naming an unknown role is an error already (a misspelt role
        // would skip its steps): its skipped steps are not reported too.
        if t.agents.iter().any(|a| !s.roles.contains_key(a)) {
            continue;
        }
        for (step, role) in skipped_steps(s, t) {
            w.warning(
                &ap,
                format!(
                    "in runs of {}, step {step} (role {role}) is skipped: {role} is not among its agents",
                    t.name
                ),
            );
        }
    }
}

/// What a trigger's `agents` does, for `validate --explain`.
pub fn explain(studio: &Studio, t: &Trigger) -> String {
    let skipped = skipped_steps(studio, t);
    let tail = if t.agents.is_empty() {
        "the list is empty: no step is skipped".to_string()
    } else if skipped.is_empty() {
        format!(
            "every step of {} has a listed role: none is skipped",
            t.workflow
        )
    } else {
        format!(
            "its runs skip {}",
            skipped
                .iter()
                .map(|(s, r)| format!("step {s} ({r})"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "the roles this trigger's runs may dispatch to: in a run it starts on its own, a step of {} whose role is not listed is skipped (state SKIPPED, the reason in the run's events; steps after it get its empty output); review-loop reviews and revisions, gate revisions and the on_failure step always run; fires by hand (`trigger fire`) and `run start` are not restricted; each fire also carries the list as the run's `agents` param; a listed role the workflow never uses fails validate; {tail}",
        t.workflow
    )
}
