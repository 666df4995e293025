//! What the scheduler keeps per trigger in its store (tree [`TREE`], key
//! `trigger/<name>`, a small JSON document): the misfire cursor, the last fire and the
//! counters shown by `scheduler.triggers`, and whether it is paused (`scheduler.pause`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use concierto_core::store::KvStore;
use serde::{Deserialize, Serialize};

use crate::SchedulerError;

/// The store tree the scheduler owns.
pub const TREE: &str = "scheduler";

/// One trigger's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerState {
    /// Scheduled triggers: every scheduled fire at or before this instant was fired or
    /// counted missed. Set to the start time on the first start, then moved to each
    /// scheduled fire handled. `None` for event triggers.
    pub cursor: Option<DateTime<Utc>>,
    /// The time of the latest fire of any kind (scheduled, event, by hand).
    pub last_fire: Option<DateTime<Utc>>,
    /// Runs started by this scheduler's fires (a fire another scheduler had already
    /// published is not counted again).
    pub fires: u64,
    /// Scheduled fires that never started (misfire policy).
    pub missed: u64,
    /// The UTC day `day_runs` and `day_dropped` count (`max_runs_per_day`).
    pub day: Option<NaiveDate>,
    /// Runs started on `day` by capped fires (events, batches).
    pub day_runs: u32,
    /// Fires dropped on `day` by `max_runs_per_day`.
    pub day_dropped: u32,
    /// Fires dropped by `max_runs_per_day`, all days.
    pub dropped: u64,
    /// Set while the trigger is paused (`scheduler.pause`): it does not fire on its
    /// schedule or its events until resumed.
    pub paused: Option<Paused>,
}

/// Who paused a trigger, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// The identity that asked (the admin API's caller).
    pub by: String,
    /// When it was paused.
    pub at: DateTime<Utc>,
}

/// The stored form: instants in milliseconds since the epoch.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    cursor_ms: Option<i64>,
    #[serde(default)]
    last_fire_ms: Option<i64>,
    #[serde(default)]
    fires: u64,
    #[serde(default)]
    missed: u64,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    day: Option<String>,
    #[serde(default)]
    day_runs: u32,
    #[serde(default)]
    day_dropped: u32,
    #[serde(default)]
    dropped: u64,
    /// Set while paused (with `paused_at_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_at_ms: Option<i64>,
}

/// The key of `trigger`'s state.
pub fn key(trigger: &str) -> Vec<u8> {
    format!("trigger/{trigger}").into_bytes()
}

/// Reads `trigger`'s state; a trigger never seen has the default (empty) state.
pub fn load_state(store: &dyn KvStore, trigger: &str) -> Result<TriggerState, SchedulerError> {
    let Some(bytes) = store.get(TREE, &key(trigger))? else {
        return Ok(TriggerState::default());
    };
    let corrupt = |detail: String| SchedulerError::CorruptState {
        trigger: trigger.to_string(),
        detail,
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let instant = |ms: Option<i64>| -> Result<Option<DateTime<Utc>>, SchedulerError> {
        ms.map(|ms| {
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| corrupt(format!("{ms} ms is out of range")))
        })
        .transpose()
    };
    Ok(TriggerState {
        cursor: instant(stored.cursor_ms)?,
        last_fire: instant(stored.last_fire_ms)?,
        fires: stored.fires,
        missed: stored.missed,
        day: stored
            .day
            .as_deref()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|e| corrupt(format!("day {d:?}: {e}")))
            })
            .transpose()?,
        day_runs: stored.day_runs,
        day_dropped: stored.day_dropped,
        dropped: stored.dropped,
        paused: match (stored.paused_by, instant(stored.paused_at_ms)?) {
            (Some(by), Some(at)) => Some(Paused { by, at }),
            (None, None) => None,
            _ => return Err(corrupt("paused_by and paused_at_ms go together".into())),
        },
    })
}

/// Writes `trigger`'s state and flushes the store: once this returns, the state survives
/// a crash.
pub fn save_state(
    store: &dyn KvStore,
    trigger: &str,
    state: &TriggerState,
) -> Result<(), SchedulerError> {
    let stored = Stored {
        cursor_ms: state.cursor.map(|t| t.timestamp_millis()),
        last_fire_ms: state.last_fire.map(|t| t.timestamp_millis()),
        fires: state.fires,
        missed: state.missed,
        day: state.day.map(|d| d.format("%Y-%m-%d").to_string()),
        day_runs: state.day_runs,
        day_dropped: state.day_dropped,
        dropped: state.dropped,
        paused_by: state.paused.as_ref().map(|p| p.by.clone()),
        paused_at_ms: state.paused.as_ref().map(|p| p.at.timestamp_millis()),
    };
    let bytes = serde_json::to_vec(&stored).map_err(|e| SchedulerError::CorruptState {
        trigger: trigger.to_string(),
        detail: e.to_string(),
    })?;
    store.put(TREE, &key(trigger), &bytes)?;
    store.flush()?;
    Ok(())
}

/// [`save_state`] on a blocking thread, so a slow disk does not stall the actor's thread.
pub(crate) async fn save_state_async(
    store: Arc<dyn KvStore>,
    trigger: String,
    state: TriggerState,
) -> Result<(), SchedulerError> {
    tokio::task::spawn_blocking(move || save_state(store.as_ref(), &trigger, &state))
        .await
        .map_err(|e| SchedulerError::Blocking(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use concierto_core::store::SledStore;

    use super::*;

    #[test]
    fn state_round_trips_and_missing_is_empty() {
        let store = SledStore::temporary().unwrap();
        assert_eq!(load_state(&store, "t").unwrap(), TriggerState::default());
        let state = TriggerState {
            cursor: Some(Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()),
            last_fire: Some(Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()),
            fires: 3,
            missed: 2,
            day: NaiveDate::from_ymd_opt(2026, 3, 1),
            day_runs: 4,
            day_dropped: 1,
            dropped: 7,
            paused: Some(Paused {
                by: "ana".into(),
                at: Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap(),
            }),
        };
        save_state(&store, "t", &state).unwrap();
        assert_eq!(load_state(&store, "t").unwrap(), state);
    }

    #[test]
    fn unreadable_state_is_an_error_naming_the_trigger() {
        let store = SledStore::temporary().unwrap();
        store.put(TREE, &key("t"), b"not json").unwrap();
        let err = load_state(&store, "t").unwrap_err();
        assert!(err.to_string().contains("\"t\""), "{err}");
    }
}
