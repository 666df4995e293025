//! Targets that drive work: a progress metric's `on_off_target`.
//!
//! Every metric whose `on_off_target` names a `workflow` is an implicit event
//! trigger named `target:<metric>` (listed by `scheduler.triggers` like the
//! others). It fires when the tracker publishes, on `event.metric.<metric>`, a
//! crossing of the metric's off-target predicate
//! ([`off_target_predicate`]) that *entered* (`daily_output < 10` started to
//! hold): run id `target:<metric>@<crossed at, RFC 3339 UTC>`, params `metric`,
//! `value`, `target` (as written), `predicate`, `crossed_at`. The
//! trigger-watch crossings of the same metric (an `on_performance_threshold`
//! predicate) carry another predicate and do not fire it.
//!
//! Every such crossing of a metric with `notify` reviewers (or a workflow)
//! also publishes an [`OffTarget`] notice on `event.target.<metric>`
//! (durable, message id = the run id form above, so a redelivered crossing is
//! stored once) naming the reviewers, the workflow and the run started.

use chrono::{DateTime, SecondsFormat, Utc};
use concierto_core::config::targets::TARGET_TRIGGER_PREFIX;
use concierto_core::config::{
    EventFilter, MetricDef, Studio, Trigger, TriggerKind, off_target_predicate,
};
use concierto_core::grammar::Predicate;
use concierto_proto::v1::{OffTarget, StartRun, ThresholdCrossed, start_run};

use crate::runs::{REQUESTED_BY_SCHEDULER, date_time, start_run};

/// The implicit trigger's name for `metric`: `target:daily_output`.
pub fn target_trigger_name(metric: &str) -> String {
    format!("{TARGET_TRIGGER_PREFIX}{metric}")
}

/// `target:daily_output@2026-03-10T00:00:00Z` (fractions of a second only when
/// `at` has them).
pub fn target_run_id(metric: &str, at: DateTime<Utc>) -> String {
    format!(
        "{}@{}",
        target_trigger_name(metric),
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// The implicit triggers of `studio`: one per metric whose `on_off_target`
/// names a workflow, firing on its off-target predicate.
pub fn target_triggers(studio: &Studio) -> Vec<Trigger> {
    studio
        .progress_metrics
        .iter()
        .filter_map(|m| {
            let workflow = m.on_off_target.as_ref()?.workflow.clone()?;
            let (metric, op, value, _) = off_target_predicate(m);
            Some(Trigger {
                name: target_trigger_name(&m.name),
                kind: TriggerKind::Event(EventFilter::Threshold(Predicate { metric, op, value })),
                agents: Vec::new(),
                workflow,
                priority: None,
                flood: Default::default(),
            })
        })
        .collect()
}

/// The metric definitions whose off-target predicate `crossed` entered.
fn entered<'a>(studio: &'a Studio, crossed: &ThresholdCrossed) -> Vec<&'a MetricDef> {
    if !crossed.entered {
        return Vec::new();
    }
    studio
        .progress_metrics
        .iter()
        .filter(|m| m.on_off_target.is_some())
        .filter(|m| {
            let (metric, _, _, text) = off_target_predicate(m);
            metric == crossed.metric && text == crossed.predicate
        })
        .collect()
}

/// The runs `crossed` starts through `on_off_target` workflows (`triggers`
/// holds the implicit triggers, [`target_triggers`]); at `now` when it has
/// no `at`.
pub fn target_starts(
    studio: &Studio,
    triggers: &[Trigger],
    crossed: &ThresholdCrossed,
    now: DateTime<Utc>,
) -> Vec<StartRun> {
    let at = crossed.at.as_ref().map_or(now, date_time);
    entered(studio, crossed)
        .into_iter()
        .filter_map(|m| {
            let name = target_trigger_name(&m.name);
            let trigger = triggers.iter().find(|t| t.name == name)?;
            let mut start = start_run(
                studio,
                trigger,
                target_run_id(&m.name, at),
                at,
                REQUESTED_BY_SCHEDULER,
            );
            for (k, v) in [
                ("metric", m.name.clone()),
                ("value", crossed.value.to_string()),
                ("target", m.goal_text.clone()),
                ("predicate", crossed.predicate.clone()),
                (
                    "crossed_at",
                    at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ),
            ] {
                start.params.insert(k.to_string(), v);
            }
            start.cause = Some(start_run::Cause::Threshold(crossed.clone()));
            Some(start)
        })
        .collect()
}

/// The notices `crossed` causes: `(metric, notice)` for each metric whose
/// off-target predicate it entered.
pub fn target_notices(
    studio: &Studio,
    crossed: &ThresholdCrossed,
    now: DateTime<Utc>,
) -> Vec<(String, OffTarget)> {
    let at = crossed.at.as_ref().map_or(now, date_time);
    entered(studio, crossed)
        .into_iter()
        .filter_map(|m| {
            let t = m.on_off_target.as_ref()?;
            let workflow = t.workflow.clone().unwrap_or_default();
            let run_id = if workflow.is_empty() {
                String::new()
            } else {
                target_run_id(&m.name, at)
            };
            Some((
                m.name.clone(),
                OffTarget {
                    crossed: Some(crossed.clone()),
                    notify: t.notify.clone(),
                    workflow,
                    run_id,
                    target: m.goal_text.clone(),
                },
            ))
        })
        .collect()
}
