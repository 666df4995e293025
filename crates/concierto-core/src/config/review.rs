//! Which review loop a workflow step's output goes to (`feedback_loops.agent_to_agent`,
//! DESIGN.md section 7), decided once at load:
//!
//! - no `review:` key: the loop that lists the step's role as a `producer`
//!   (the first such loop, with a warning when there are several), else none;
//! - `review: none`: not reviewed, even when its role is a producer;
//! - `review: <loop>`: that loop.
//!
//! After loading, [`Step::review`](super::Step::review) holds the result.
//! Workflows' `on_failure` steps are never attached by role (they salvage a
//! failed run; a review loop would hold the failure path).

use indexmap::IndexMap;

use super::model::{ReviewLoop, Workflow};
use super::spans::{child, item};
use super::walk::Walker;

/// The `review:` value that opts a step out of its role's loop.
pub const NO_REVIEW: &str = "none";

/// How a step's review was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewChoice {
    /// `review: <loop>`.
    Named(String),
    /// No `review:` key; the role is a producer of this loop.
    ByRole(String),
    /// `review: none`.
    OptedOut,
    /// No `review:` key and no loop lists the role as a producer.
    NotReviewed,
}

impl ReviewChoice {
    /// The loop that reviews the step, if any.
    pub fn loop_name(&self) -> Option<&str> {
        match self {
            ReviewChoice::Named(l) | ReviewChoice::ByRole(l) => Some(l),
            ReviewChoice::OptedOut | ReviewChoice::NotReviewed => None,
        }
    }
}

/// The loops that list `role` as a producer, in file order.
pub fn loops_producing<'a>(loops: &'a [ReviewLoop], role: &str) -> Vec<&'a ReviewLoop> {
    loops
        .iter()
        .filter(|l| l.producers.iter().any(|p| p == role))
        .collect()
}

/// Decides the review of a step of `role` whose `review:` key is `key`.
pub fn choose(loops: &[ReviewLoop], role: &str, key: Option<&str>) -> ReviewChoice {
    match key.map(str::trim) {
        Some(k) if k.eq_ignore_ascii_case(NO_REVIEW) => ReviewChoice::OptedOut,
        Some(k) => ReviewChoice::Named(k.to_string()),
        None => match loops_producing(loops, role).first() {
            Some(l) => ReviewChoice::ByRole(l.name.clone()),
            None => ReviewChoice::NotReviewed,
        },
    }
}

/// Resolves every step's `review` in place (see the module docs). `step_paths`
/// are the key paths of each workflow's steps, for problems.
pub(crate) fn attach(
    w: &mut Walker<'_>,
    workflows: &mut IndexMap<String, Workflow>,
    loops: &[ReviewLoop],
    step_paths: &IndexMap<String, Vec<String>>,
) {
    for (i, l) in loops.iter().enumerate() {
        if l.name.eq_ignore_ascii_case(NO_REVIEW) {
            w.error(
                &child(&item("feedback_loops.agent_to_agent", i), &l.name),
                format!("a loop may not be named {NO_REVIEW:?}: `review: {NO_REVIEW}` opts a step out of review"),
            );
        }
    }
    for (name, wf) in workflows.iter_mut() {
        for (i, st) in wf.steps.iter_mut().enumerate() {
            let choice = choose(loops, &st.role, st.review.as_deref());
            if matches!(choice, ReviewChoice::ByRole(_)) {
                let all = loops_producing(loops, &st.role);
                if all.len() > 1 {
                    let sp = step_paths
                        .get(name)
                        .and_then(|ps| ps.get(i))
                        .cloned()
                        .unwrap_or_else(|| item(&child(&child("workflows", name), "steps"), i));
                    w.warning(
                        &child(&sp, "role"),
                        format!(
                            "role {:?} is a producer of {} loops ({}); its output goes to the first, {:?}: name one with `review:` (or `review: none`)",
                            st.role,
                            all.len(),
                            all.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "),
                            all[0].name
                        ),
                    );
                }
            }
            st.review = choice.loop_name().map(str::to_string);
        }
        if let Some(f) = wf.on_failure.as_mut()
            && f.review
                .as_deref()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(NO_REVIEW))
        {
            f.review = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Exhausted;
    use crate::grammar::CycleTime;

    fn lp(name: &str, producers: &[&str]) -> ReviewLoop {
        ReviewLoop {
            name: name.into(),
            producers: producers.iter().map(|s| s.to_string()).collect(),
            reviewers: vec!["brand-guardian".into()],
            cycle_time: CycleTime::Immediate,
            max_rounds: 3,
            pass_mark: None,
            on_exhausted: Exhausted::Fail,
        }
    }

    #[test]
    fn a_producer_role_is_attached_unless_it_opts_out() {
        let loops = [lp("a", &["writer"]), lp("b", &["writer", "designer"])];
        assert_eq!(
            choose(&loops, "writer", None),
            ReviewChoice::ByRole("a".into())
        );
        assert_eq!(
            choose(&loops, "designer", None),
            ReviewChoice::ByRole("b".into())
        );
        assert_eq!(
            choose(&loops, "writer", Some("None")),
            ReviewChoice::OptedOut
        );
        assert_eq!(
            choose(&loops, "writer", Some("b")),
            ReviewChoice::Named("b".into())
        );
        assert_eq!(choose(&loops, "critic", None), ReviewChoice::NotReviewed);
        assert_eq!(choose(&loops, "critic", None).loop_name(), None);
    }
}
