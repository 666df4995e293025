//! What a fire starts: run ids, priorities, the `StartRun` messages, and which event
//! triggers an event matches.
//!
//! A run id names the fire, never the process that saw it, so every scheduler that sees
//! the same fire publishes the same id and the bus stores it once:
//!
//! | fire | run id |
//! |---|---|
//! | scheduled | `<trigger>@<fire time, RFC 3339 UTC, seconds>` |
//! | new content | `<trigger>@<item id>` |
//! | threshold crossed | `<trigger>@<metric>@<at, RFC 3339 UTC>` |
//! | by hand | `<trigger>@manual@<now, RFC 3339 UTC, milliseconds>` |

use chrono::{DateTime, SecondsFormat, Utc};
use concierto_core::config::{EventFilter, Priority, SourceKind, Studio, Trigger, TriggerKind};
use concierto_proto::v1::{self, ContentItem, StartRun, ThresholdCrossed, start_run};

/// `requested_by` of every run the scheduler starts on its own.
pub const REQUESTED_BY_SCHEDULER: &str = "scheduler";
/// `requested_by` of a run fired by hand (`scheduler.fire`); the orchestrator
/// does not restrict such runs to the trigger's `agents`.
pub const REQUESTED_BY_ADMIN: &str = concierto_core::config::trigger_agents::FIRED_BY_HAND;

/// `daily_content_generation@2026-03-01T08:00:00Z`.
pub fn scheduled_run_id(trigger: &str, fire_time: DateTime<Utc>) -> String {
    format!(
        "{trigger}@{}",
        fire_time.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// `on_new_inspiration@sha256:...`.
pub fn content_run_id(trigger: &str, item_id: &str) -> String {
    format!("{trigger}@{item_id}")
}

/// `on_performance_threshold@engagement_rate@2026-03-10T12:00:00Z` (fractions of a second
/// only when `at` has them).
pub fn threshold_run_id(trigger: &str, metric: &str, at: DateTime<Utc>) -> String {
    format!(
        "{trigger}@{metric}@{}",
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// `daily_content_generation@manual@2026-03-10T12:00:00.000Z`.
pub fn manual_run_id(trigger: &str, now: DateTime<Utc>) -> String {
    format!(
        "{trigger}@manual@{}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// The priority of the runs `trigger` starts: its own, else its workflow's.
pub fn run_priority(studio: &Studio, trigger: &Trigger) -> v1::Priority {
    let priority = trigger.priority.unwrap_or_else(|| {
        studio
            .workflows
            .get(&trigger.workflow)
            .map_or(Priority::Normal, |w| w.priority)
    });
    match priority {
        Priority::Normal => v1::Priority::Normal,
        Priority::Urgent => v1::Priority::Urgent,
    }
}

/// `StartRun.params` every fire of a trigger carries: `trigger` and
/// `fire_time` (RFC 3339 UTC). A scheduled fire (and a fire by hand of a
/// scheduled trigger) adds `previous_fire_time`: the trigger's scheduled fire
/// before this one, computed from its schedule, so a step's `since last run`
/// window is previous → this fire. A content event adds `item_id`,
/// `item_source`, `item_title`, `item_url`; a threshold crossing adds `metric`,
/// `value`, `predicate`, `crossed_at`.
pub const PARAM_TRIGGER: &str = "trigger";
/// See [`PARAM_TRIGGER`].
pub const PARAM_FIRE_TIME: &str = "fire_time";
/// The param naming the roles the trigger staffs (its `agents`, comma-separated).
pub const PARAM_AGENTS: &str = "agents";
/// See [`PARAM_TRIGGER`].
pub const PARAM_PREVIOUS_FIRE_TIME: &str = "previous_fire_time";
/// Longest text of a param a trigger adds (an item title, a URL); longer is
/// cut at a character boundary.
pub const MAX_FIRE_PARAM_BYTES: usize = 2048;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIRE_PARAM_BYTES {
        return s.to_string();
    }
    let mut end = MAX_FIRE_PARAM_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The scheduled fire of `trigger` strictly before `at`, when it is a
/// scheduled trigger that fired before (searched back at most 400 days).
pub fn previous_fire(trigger: &Trigger, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let TriggerKind::Scheduled { when, timezone, .. } = &trigger.kind else {
        return None;
    };
    // Widen the look back until it holds a fire: the first span that does
    // holds at most about as many fires as the span before it held none, so
    // the limit is never what stops the search.
    let mut span = chrono::Duration::minutes(1);
    let horizon = chrono::Duration::days(400);
    let before = at - chrono::Duration::milliseconds(1);
    while span <= horizon * 2 {
        let mut fires = crate::timing::fires_between(when, *timezone, at - span, before, 100_000);
        if let Some(mut last) = fires.last().copied() {
            // A span dense with fires may have stopped at the limit: go on
            // from its last fire.
            while fires.len() == 100_000 {
                fires = crate::timing::fires_between(when, *timezone, last, before, 100_000);
                match fires.last() {
                    Some(l) => last = *l,
                    None => break,
                }
            }
            return Some(last);
        }
        span = span * 2;
    }
    None
}

/// A `StartRun` of `trigger`'s workflow with no cause, with the params every
/// fire carries ([`PARAM_TRIGGER`]).
pub fn start_run(
    studio: &Studio,
    trigger: &Trigger,
    run_id: String,
    fire_time: DateTime<Utc>,
    requested_by: &str,
) -> StartRun {
    StartRun {
        run_id,
        workflow: trigger.workflow.clone(),
        trigger: trigger.name.clone(),
        fire_time: Some(timestamp(fire_time)),
        priority: run_priority(studio, trigger) as i32,
        params: [
            (PARAM_TRIGGER.to_string(), trigger.name.clone()),
            (PARAM_FIRE_TIME.to_string(), rfc3339(fire_time)),
        ]
        .into_iter()
        .chain(
            previous_fire(trigger, fire_time)
                .map(|p| (PARAM_PREVIOUS_FIRE_TIME.to_string(), rfc3339(p))),
        )
        .chain(
            (!trigger.agents.is_empty())
                .then(|| (PARAM_AGENTS.to_string(), trigger.agents.join(", "))),
        )
        .collect(),
        requested_by: requested_by.to_string(),
        cause: None,
        ..Default::default()
    }
}

/// The `StartRun` of a scheduled fire at `fire_time`.
pub fn scheduled_start(studio: &Studio, trigger: &Trigger, fire_time: DateTime<Utc>) -> StartRun {
    start_run(
        studio,
        trigger,
        scheduled_run_id(&trigger.name, fire_time),
        fire_time,
        REQUESTED_BY_SCHEDULER,
    )
}

/// The `StartRun` of a fire by hand at `now`, with `priority` unless it is unspecified.
pub fn manual_start(
    studio: &Studio,
    trigger: &Trigger,
    now: DateTime<Utc>,
    priority: v1::Priority,
) -> StartRun {
    let mut start = start_run(
        studio,
        trigger,
        manual_run_id(&trigger.name, now),
        now,
        REQUESTED_BY_ADMIN,
    );
    if priority != v1::Priority::Unspecified {
        start.priority = priority as i32;
    }
    start
}

/// Whether a new-content trigger listening to `sources` fires on an item from the content
/// source named `item_source`: the name is listed, or the source is an X/Twitter stream and
/// `twitter` or `x` is listed (names compared ignoring ASCII case).
pub fn content_matches(studio: &Studio, sources: &[String], item_source: &str) -> bool {
    let listed = |name: &str| sources.iter().any(|s| s.eq_ignore_ascii_case(name));
    if listed(item_source) {
        return true;
    }
    let is_twitter = studio
        .content_sources
        .iter()
        .any(|s| s.name.eq_ignore_ascii_case(item_source) && s.kind == SourceKind::TwitterStream);
    is_twitter && (listed("twitter") || listed("x"))
}

/// The `StartRun` of every new-content trigger `item` fires, at `now` when the item has no
/// `ingested_at`.
pub fn content_starts(studio: &Studio, item: &ContentItem, now: DateTime<Utc>) -> Vec<StartRun> {
    let fire_time = item.ingested_at.as_ref().map_or(now, date_time);
    studio
        .triggers
        .iter()
        .filter(|t| match &t.kind {
            TriggerKind::Event(EventFilter::NewContent { sources }) => {
                content_matches(studio, sources, &item.source)
            }
            _ => false,
        })
        .map(|t| {
            let mut start = start_run(
                studio,
                t,
                content_run_id(&t.name, &item.item_id),
                fire_time,
                REQUESTED_BY_SCHEDULER,
            );
            for (k, v) in [
                ("item_id", &item.item_id),
                ("item_source", &item.source),
                ("item_title", &item.title),
                ("item_url", &item.url),
            ] {
                start.params.insert(k.to_string(), bounded(v));
            }
            start.cause = Some(start_run::Cause::Content(item.clone()));
            start
        })
        .collect()
}

/// The `StartRun` of every threshold trigger `crossed` fires: same metric, the predicate
/// started to hold (`entered`), and it holds for the value. At `now` when it has no `at`.
pub fn threshold_starts(
    studio: &Studio,
    crossed: &ThresholdCrossed,
    now: DateTime<Utc>,
) -> Vec<StartRun> {
    if !crossed.entered {
        return Vec::new();
    }
    let at = crossed.at.as_ref().map_or(now, date_time);
    studio
        .triggers
        .iter()
        .filter(|t| match &t.kind {
            TriggerKind::Event(EventFilter::Threshold(pred)) => {
                pred.metric == crossed.metric && pred.holds(crossed.value)
            }
            _ => false,
        })
        .map(|t| {
            let mut start = start_run(
                studio,
                t,
                threshold_run_id(&t.name, &crossed.metric, at),
                at,
                REQUESTED_BY_SCHEDULER,
            );
            for (k, v) in [
                ("metric", crossed.metric.clone()),
                ("value", crossed.value.to_string()),
                ("predicate", crossed.predicate.clone()),
                ("crossed_at", rfc3339(at)),
            ] {
                start.params.insert(k.to_string(), bounded(&v));
            }
            start.cause = Some(start_run::Cause::Threshold(crossed.clone()));
            start
        })
        .collect()
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `ts` as a UTC instant; an out-of-range timestamp gives the epoch.
pub fn date_time(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    let nanos = u32::try_from(ts.nanos).unwrap_or(0).min(999_999_999);
    DateTime::from_timestamp(ts.seconds, nanos).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn run_ids_name_the_fire() {
        let t = Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap();
        assert_eq!(
            scheduled_run_id("daily_content_generation", t),
            "daily_content_generation@2026-03-29T07:00:00Z"
        );
        assert_eq!(
            manual_run_id("daily_content_generation", t),
            "daily_content_generation@manual@2026-03-29T07:00:00.000Z"
        );
        assert_eq!(
            threshold_run_id("on_performance_threshold", "engagement_rate", t),
            "on_performance_threshold@engagement_rate@2026-03-29T07:00:00Z"
        );
        assert_eq!(
            content_run_id("on_new_inspiration", "sha256:ab"),
            "on_new_inspiration@sha256:ab"
        );
    }

    #[test]
    fn timestamps_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap()
            + chrono::Duration::milliseconds(250);
        assert_eq!(date_time(&timestamp(t)), t);
    }
}
