//! `progress_metrics.<group>[].<metric>.on_off_target`: what happens when a
//! metric falls off its target.
//!
//! ```yaml
//! progress_metrics:
//!   content_generation:
//!     - daily_output:
//!         target: 10
//!         on_off_target: { workflow: daily-content-pipeline, notify: [creative_director] }
//! ```
//!
//! When the tracker's watch of the metric's *off target* predicate
//! ([`off_target_predicate`]: `daily_output < 10`, `feedback_response_time >= 7200`,
//! `success_rate.improvement < 0.03`) starts to hold, the scheduler starts
//! `workflow` (an implicit event trigger named `target:<metric>`, run id
//! `target:<metric>@<crossed at>`) and publishes an `OffTarget` notice naming
//! the `notify` reviewers on `event.target.<metric>`. At least one of the two
//! keys is required; `workflow` must name a workflow and every `notify` entry a
//! reviewer.

use serde_json::{Map, Value};

use super::model::{Goal, MetricDef, Studio};
use super::spans::{child, item};
use super::walk::Walker;
use crate::grammar::Comparison;

/// The key in a progress metric.
pub const KEY: &str = "on_off_target";
/// Most reviewers one `notify` list may name.
pub const MAX_NOTIFY: usize = 32;
/// Prefix of the implicit trigger a metric's `on_off_target` makes
/// (`target:daily_output`).
pub const TARGET_TRIGGER_PREFIX: &str = "target:";

/// What happens when a metric falls off target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnOffTarget {
    /// The workflow started (a catch-up run), if any.
    pub workflow: Option<String>,
    /// Reviewer ids told (`event.target.<metric>`).
    pub notify: Vec<String>,
}

/// The off-target predicate the tracker watches for `def`: the metric it is
/// evaluated on, the comparison, the threshold and its text. It is the
/// negation of a level target (`target: 10` → `daily_output < 10`) or, for an
/// improvement target, `<metric>.improvement < <share>`.
pub fn off_target_predicate(def: &MetricDef) -> (String, Comparison, f64, String) {
    match def.goal {
        Goal::Target(t) => {
            let op = negate(t.op);
            let threshold = t.value.as_f64();
            (
                def.name.clone(),
                op,
                threshold,
                format!("{} {op} {threshold}", def.name),
            )
        }
        Goal::Improvement(i) => {
            let metric = format!("{}.improvement", def.name);
            let threshold = i.percent / 100.0;
            let text = format!("{metric} < {threshold}");
            (metric, Comparison::Lt, threshold, text)
        }
    }
}

/// The opposite comparison (`>=` becomes `<`).
pub fn negate(op: Comparison) -> Comparison {
    match op {
        Comparison::Lt => Comparison::Ge,
        Comparison::Le => Comparison::Gt,
        Comparison::Gt => Comparison::Le,
        Comparison::Ge => Comparison::Lt,
        Comparison::Eq => Comparison::Ne,
        Comparison::Ne => Comparison::Eq,
    }
}

/// Parses `on_off_target` of the metric map `x` at path `p` (references are
/// checked later by [`check`]).
pub(crate) fn parse(w: &mut Walker<'_>, x: &Map<String, Value>, p: &str) -> Option<OnOffTarget> {
    let op = child(p, KEY);
    let m = w.map(x.get(KEY), &op)?;
    w.known_keys(m, &op, &["workflow", "notify"]);
    let workflow = w.opt_string(m, "workflow", &op);
    let notify = w.strings(m, "notify", &op, false);
    if workflow.is_none() && notify.is_empty() {
        w.error(
            &op,
            "give `workflow` (started when the metric falls off target), `notify: [reviewer ids]`, or both",
        );
        return None;
    }
    if notify.len() > MAX_NOTIFY {
        w.error(
            &child(&op, "notify"),
            format!("at most {MAX_NOTIFY} reviewers, found {}", notify.len()),
        );
    }
    Some(OnOffTarget { workflow, notify })
}

/// Checks that `def`'s `on_off_target` names a workflow and reviewers of `s`.
pub(crate) fn check(w: &mut Walker<'_>, p: &str, def: &MetricDef, s: &Studio) {
    let Some(t) = &def.on_off_target else {
        return;
    };
    let op = child(p, KEY);
    if let Some(wf) = &t.workflow
        && !s.workflows.contains_key(wf)
    {
        w.error(
            &child(&op, "workflow"),
            format!(
                "unknown workflow {wf:?} (the studio has: {})",
                s.workflows.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    for (i, r) in t.notify.iter().enumerate() {
        if !s.reviewers.contains_key(r) {
            w.error(
                &item(&child(&op, "notify"), i),
                format!(
                    "unknown reviewer {r:?}; define it under `reviewers` (known: {})",
                    s.reviewers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}
