//! What the tracker keeps for each metric: how its observations add up over a
//! window ([`Aggregation`]), which window its target is judged on ([`Period`]),
//! and the predicates watched for threshold events ([`Watch`]).

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use concierto_core::config::{
    EventFilter, Goal, MetricDef, Studio, TriggerKind, off_target_predicate,
};
use concierto_core::grammar::{Comparison, Period, Quantity};

/// The seed's content-count metric (`daily_output`, type `content_pieces`).
pub const DAILY_OUTPUT: &str = "daily_output";
/// The seed's review-score metric.
pub const QUALITY_SCORE: &str = "quality_score";
/// The seed's capacity metric.
pub const AGENT_UTILIZATION: &str = "agent_utilization";
/// The seed's feedback SLA metric (seconds).
pub const FEEDBACK_RESPONSE_TIME: &str = "feedback_response_time";
/// The seed's learning metric (sampled by the ingestion learner).
pub const PATTERN_RECOGNITION: &str = "pattern_recognition";
/// The seed's run-outcome metric.
pub const SUCCESS_RATE: &str = "success_rate";
/// The orchestrator's queue depth per priority class (label `priority`).
pub const QUEUE_DEPTH: &str = "queue_depth";
/// The orchestrator's oldest queued step per priority class, in seconds (label `priority`).
pub const QUEUE_OLDEST_SECONDS: &str = "queue_oldest_seconds";
/// Suffix of the derived metric an improvement target is watched on
/// (`success_rate.improvement`: this window against the previous one, 0.03 = +3 %).
pub const IMPROVEMENT_SUFFIX: &str = ".improvement";

/// How the observations of one window add up to the window's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Their total (a count, such as content pieces per day).
    Sum,
    /// Their weighted mean (scores, ratios, durations).
    Mean,
    /// The latest one (a sampled level, such as an engagement rate).
    Last,
}

/// One series the tracker keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// Its name (`daily_output`).
    pub name: String,
    /// Its `progress_metrics` group, or `samples` for a metric only posted.
    pub group: String,
    /// The goal as written (`10`, `< 2 hours`, `5% weekly`), empty without one.
    pub target: String,
    /// The role that tracks it, empty without one.
    pub tracker: String,
    /// The goal, parsed.
    pub goal: Option<Goal>,
    /// How a window's observations add up.
    pub aggregation: Aggregation,
    /// The window its rollups (and its target or improvement) use.
    pub period: Period,
    /// Unit of its values (`s` for durations), empty when it has none.
    pub unit: String,
}

impl MetricSpec {
    /// The spec of a progress metric of the studio.
    pub fn from_def(def: &MetricDef) -> Self {
        let kind = def.kind.as_deref().unwrap_or("");
        let aggregation = if def.name == DAILY_OUTPUT || kind == "content_pieces" {
            Aggregation::Sum
        } else {
            Aggregation::Mean
        };
        let period = match def.goal {
            Goal::Improvement(i) => i.period,
            Goal::Target(_) => Period::Daily,
        };
        let unit = match def.goal {
            Goal::Target(t) if matches!(t.value, Quantity::Duration(_)) => "s",
            _ => "",
        };
        MetricSpec {
            name: def.name.clone(),
            group: def.group.clone(),
            target: def.goal_text.clone(),
            tracker: def.tracker.clone(),
            goal: Some(def.goal),
            aggregation,
            period,
            unit: unit.to_string(),
        }
    }

    /// The spec of a metric that is only posted as samples (e.g. `engagement_rate`):
    /// its latest value counts, rolled up per day.
    pub fn sampled(name: &str, unit: &str) -> Self {
        MetricSpec {
            name: name.to_string(),
            group: "samples".to_string(),
            target: String::new(),
            tracker: String::new(),
            goal: None,
            aggregation: Aggregation::Last,
            period: Period::Daily,
            unit: unit.to_string(),
        }
    }

    /// Whether the goal is met by `current` (for an improvement goal: the
    /// improvement in percent). `None` without a goal or a value.
    pub fn on_target(&self, current: Option<f64>) -> Option<bool> {
        let v = current?;
        match self.goal? {
            Goal::Target(t) => Some(t.is_met(v)),
            Goal::Improvement(i) => Some(v >= i.percent),
        }
    }
}

/// The specs of every progress metric of `studio`, in file order.
pub fn progress_specs(studio: &Studio) -> Vec<MetricSpec> {
    studio
        .progress_metrics
        .iter()
        .map(MetricSpec::from_def)
        .collect()
}

/// Whether `name` may be recorded: `[a-z0-9_]+`, at most 100 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Start of the window of `period` that holds `t` (UTC): the day, the week
/// from Monday, the calendar month, quarter or year.
pub fn window_start(period: Period, t: DateTime<Utc>) -> DateTime<Utc> {
    let d = t.date_naive();
    let day = match period {
        Period::Daily => d,
        Period::Weekly => d - ChronoDuration::days(i64::from(d.weekday().num_days_from_monday())),
        Period::Monthly => first_of(d.year(), d.month()),
        Period::Quarterly => first_of(d.year(), (d.month0() / 3) * 3 + 1),
        Period::Yearly => first_of(d.year(), 1),
    };
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
}

/// Start of the window before the one starting at `start`.
pub fn previous_window(period: Period, start: DateTime<Utc>) -> DateTime<Utc> {
    window_start(period, start - ChronoDuration::seconds(1))
}

fn first_of(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

/// Where a watched predicate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchSource {
    /// An `on_performance_threshold` trigger (its name).
    Trigger(String),
    /// A progress metric's target: entered when the metric falls off target.
    Target(String),
    /// A progress metric's improvement target: entered when this window's
    /// improvement over the previous one falls below it.
    Improvement(String),
}

/// A predicate the tracker evaluates on every new value of its metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// Stable id, the key of its state in the store (`trigger:<name>`,
    /// `target:<metric>`, `improvement:<metric>`).
    pub id: String,
    /// The metric (`engagement_rate`, or `success_rate.improvement`).
    pub metric: String,
    /// The comparison that makes it hold.
    pub op: Comparison,
    /// What the value is compared with.
    pub threshold: f64,
    /// The predicate as text (`engagement_rate < 0.05`).
    pub predicate: String,
    /// Where it comes from.
    pub source: WatchSource,
}

impl Watch {
    /// Whether `value` satisfies the predicate.
    pub fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }

    /// The metric whose series the watch is evaluated on (without the
    /// improvement suffix).
    pub fn base_metric(&self) -> &str {
        self.metric
            .strip_suffix(IMPROVEMENT_SUFFIX)
            .unwrap_or(&self.metric)
    }

    /// True when it watches the improvement of its base metric.
    pub fn is_improvement(&self) -> bool {
        self.metric.ends_with(IMPROVEMENT_SUFFIX)
    }
}

/// The opposite comparison (`>=` becomes `<`): a target's "off target" predicate.
pub use concierto_core::config::targets::negate;

/// Every watch of `studio`: each `on_performance_threshold` predicate, each
/// progress metric's target (off target) and improvement target. The off-target
/// predicates are [`off_target_predicate`]'s,
/// the ones the scheduler matches `on_off_target` against.
pub fn watches(studio: &Studio) -> Vec<Watch> {
    let mut out = Vec::new();
    for t in &studio.triggers {
        if let TriggerKind::Event(EventFilter::Threshold(p)) = &t.kind {
            out.push(Watch {
                id: format!("trigger:{}", t.name),
                metric: p.metric.clone(),
                op: p.op,
                threshold: p.value,
                predicate: p.to_string(),
                source: WatchSource::Trigger(t.name.clone()),
            });
        }
    }
    for m in &studio.progress_metrics {
        let (metric, op, threshold, predicate) = off_target_predicate(m);
        let (id, source) = match m.goal {
            Goal::Target(_) => (
                format!("target:{}", m.name),
                WatchSource::Target(m.name.clone()),
            ),
            Goal::Improvement(_) => (
                format!("improvement:{}", m.name),
                WatchSource::Improvement(m.name.clone()),
            ),
        };
        out.push(Watch {
            id,
            metric,
            op,
            threshold,
            predicate,
            source,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    #[test]
    fn windows_are_calendar_days_weeks_from_monday_and_months() {
        // 2026-03-12 is a Thursday.
        let t = utc(2026, 3, 12, 15);
        assert_eq!(window_start(Period::Daily, t), utc(2026, 3, 12, 0));
        assert_eq!(window_start(Period::Weekly, t), utc(2026, 3, 9, 0));
        assert_eq!(window_start(Period::Monthly, t), utc(2026, 3, 1, 0));
        assert_eq!(window_start(Period::Quarterly, t), utc(2026, 1, 1, 0));
        assert_eq!(
            previous_window(Period::Monthly, utc(2026, 3, 1, 0)),
            utc(2026, 2, 1, 0)
        );
        assert_eq!(
            previous_window(Period::Weekly, utc(2026, 3, 9, 0)),
            utc(2026, 3, 2, 0)
        );
    }

    #[test]
    fn names_are_lowercase_words() {
        assert!(valid_name("engagement_rate"));
        assert!(valid_name("p95_latency2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Engagement"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(101)));
    }

    #[test]
    fn the_example_studio_gives_its_metrics_windows_and_watches() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        let studio = concierto_core::config::load_with_env(&path, Vec::new()).unwrap();
        let specs = progress_specs(&studio);
        let by = |n: &str| specs.iter().find(|s| s.name == n).unwrap().clone();
        assert_eq!(by(DAILY_OUTPUT).aggregation, Aggregation::Sum);
        assert_eq!(by(DAILY_OUTPUT).period, Period::Daily);
        assert_eq!(by(QUALITY_SCORE).aggregation, Aggregation::Mean);
        assert_eq!(by(FEEDBACK_RESPONSE_TIME).unit, "s");
        assert_eq!(by(PATTERN_RECOGNITION).period, Period::Weekly);
        assert_eq!(by(SUCCESS_RATE).period, Period::Monthly);
        assert_eq!(
            by(FEEDBACK_RESPONSE_TIME).on_target(Some(3600.0)),
            Some(true)
        );
        assert_eq!(
            by(FEEDBACK_RESPONSE_TIME).on_target(Some(9000.0)),
            Some(false)
        );
        assert_eq!(by(SUCCESS_RATE).on_target(Some(3.5)), Some(true));
        assert_eq!(by(SUCCESS_RATE).on_target(None), None);

        let w = watches(&studio);
        let find = |id: &str| w.iter().find(|x| x.id == id).unwrap().clone();
        let er = find("trigger:on_performance_threshold");
        assert_eq!(er.metric, "engagement_rate");
        assert!(er.holds(0.04) && !er.holds(0.05));
        let q = find("target:quality_score");
        assert_eq!((q.op, q.threshold), (Comparison::Lt, 0.85));
        let f = find("target:feedback_response_time");
        assert_eq!((f.op, f.threshold), (Comparison::Ge, 7200.0));
        let s = find("improvement:success_rate");
        assert_eq!(s.metric, "success_rate.improvement");
        assert_eq!(s.base_metric(), "success_rate");
        assert!(s.is_improvement());
        assert!((s.threshold - 0.03).abs() < 1e-12);
    }
}
