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
/// `requested_by` of a run fired by hand (`scheduler.fire`).
pub const REQUESTED_BY_ADMIN: &str = "admin";

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

/// A `StartRun` of `trigger`'s workflow with no cause.
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
        params: Default::default(),
        requested_by: requested_by.to_string(),
        cause: None,
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
