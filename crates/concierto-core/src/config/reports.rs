//! What a progress metric's `type` and `tracker` do: the tracker role gets a
//! periodic report task.
//!
//! For every metric the scheduler keeps an implicit scheduled trigger
//! `report:<metric>` ([`report_triggers`]) that starts, once per the metric's
//! period (UTC: daily at 00:05, weekly on Monday at 00:05, monthly on the 1st at
//! 00:05, ...), a run of the built-in workflow `metric-report:<metric>`
//! ([`report_workflow`], known to the orchestrator like `human-feedback`): one
//! step `report` done by the metric's `tracker` role, whose context is the
//! metric's series since the previous report (`context: metrics`, window
//! `since last run`) and whose task says what the metric is — its `type`
//! ([`type_meaning`]) and its goal — and asks whether it is on target, its
//! trend and what to do.

use std::time::Duration;

use chrono_tz::Tz;

use super::context::{ContextItem, ContextKind, SINCE_LAST_RUN};
use super::model::{Goal, MetricDef, Misfire, Step, Studio, Trigger, TriggerKind, When};
use crate::grammar::{Period, Schedule};

/// Prefix of the built-in report workflows (`metric-report:daily_output`).
pub const METRIC_REPORT_PREFIX: &str = "metric-report:";
/// Prefix of the implicit report triggers (`report:daily_output`).
pub const REPORT_TRIGGER_PREFIX: &str = "report:";
/// The report step's id.
pub const REPORT_STEP: &str = "report";

/// What a metric `type` means, as the report task says it.
pub fn type_meaning(kind: Option<&str>) -> &'static str {
    match kind.map(str::to_ascii_lowercase).as_deref() {
        Some("content_pieces") => {
            "a count of content pieces delivered per day (sections of the runs' deliverables)"
        }
        Some("sla") => "a response time held to a service level (seconds)",
        Some("brand_alignment") => "review scores of outputs against the brand (0 to 1)",
        Some("capacity") => "the share of time the agents were busy (0 to 1)",
        Some("percentage") | Some("ratio") | Some("rate") => "a share (0 to 1)",
        Some("count") => "a count per period",
        Some("duration") => "a duration (seconds)",
        Some("score") => "a score",
        _ => "a measured value",
    }
}

/// The period a metric is reported on: its improvement period, else daily.
pub fn report_period(def: &MetricDef) -> Period {
    match def.goal {
        Goal::Improvement(i) => i.period,
        Goal::Target(_) => Period::Daily,
    }
}

/// The schedule of `def`'s reports (UTC).
pub fn report_schedule(def: &MetricDef) -> Option<Schedule> {
    let text = match report_period(def) {
        Period::Daily => "00:05",
        Period::Weekly => "Monday 00:05",
        Period::Monthly => "5 0 1 * *",
        Period::Quarterly => "5 0 1 1,4,7,10 *",
        Period::Yearly => "5 0 1 1 *",
    };
    Schedule::parse(text).ok()
}

/// The implicit report triggers of `studio`: one per progress metric.
pub fn report_triggers(studio: &Studio) -> Vec<Trigger> {
    studio
        .progress_metrics
        .iter()
        .filter_map(|m| {
            Some(Trigger {
                name: format!("{REPORT_TRIGGER_PREFIX}{}", m.name),
                kind: TriggerKind::Scheduled {
                    when: When::Schedule(report_schedule(m)?),
                    timezone: Tz::UTC,
                    misfire: Misfire::FireOnce,
                },
                agents: vec![m.tracker.clone()],
                workflow: format!("{METRIC_REPORT_PREFIX}{}", m.name),
                priority: None,
                flood: Default::default(),
            })
        })
        .collect()
}

/// The built-in report workflow of `def`.
pub fn report_workflow(def: &MetricDef) -> super::model::Workflow {
    let kind = def.kind.as_deref();
    let mut context = ContextItem::new(ContextKind::Metrics);
    context.names = vec![def.name.clone()];
    context.window = SINCE_LAST_RUN.to_string();
    let goal = match def.goal {
        Goal::Target(_) => format!("target {}", def.goal_text),
        Goal::Improvement(_) => format!("improvement target {}", def.goal_text),
    };
    super::model::Workflow {
        name: format!("{METRIC_REPORT_PREFIX}{}", def.name),
        description: format!("Periodic report on {} for its tracker.", def.name),
        priority: super::model::Priority::Normal,
        steps: vec![Step {
            id: REPORT_STEP.to_string(),
            role: def.tracker.clone(),
            task: format!(
                "Report on the progress metric `{name}` (group {group}; type {ty}: {meaning}; \
                 {goal}). Its series since the last report is in your context. Say whether it is \
                 on target, how it moved, what explains it, and the one or two actions that \
                 would bring or keep it on target.",
                name = def.name,
                group = def.group,
                ty = kind.unwrap_or("unspecified"),
                meaning = type_meaning(kind),
            ),
            inputs: vec!["trigger".to_string()],
            timeout: Duration::from_secs(600),
            retries: 1,
            review: None,
            labels: vec!["metric_report".to_string()],
            context: vec![context],
        }],
        on_failure: None,
    }
}

/// The built-in report workflow named `name` (`metric-report:<metric>`), when
/// `studio` has that metric.
pub fn workflow_named(studio: &Studio, name: &str) -> Option<super::model::Workflow> {
    let metric = name.strip_prefix(METRIC_REPORT_PREFIX)?;
    studio
        .progress_metrics
        .iter()
        .find(|m| m.name == metric)
        .map(report_workflow)
}
