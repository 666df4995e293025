//! A changed studio taken live: the new trigger table and what each of its triggers
//! keeps from the old one. Pure: the actor ([`crate::start`]'s) does the I/O.
//!
//! Triggers are matched by name. A trigger whose definition is unchanged keeps
//! everything. A changed one keeps its stored state (last fire, counters, open batch
//! windows), and:
//!
//! - a changed schedule (`time:`, `cron:`, `interval:`, its time zone, or a trigger
//!   that became scheduled) takes effect from the change instant: its cursor is set to
//!   that instant, so the next fire is the new schedule's first one after it and no
//!   past slot of the new schedule fires or counts as missed;
//! - a changed `metric:` predicate is matched against the next threshold event;
//! - a changed `batch` applies from the next window: the windows already open close at
//!   the end they had, the one the change falls in at the next boundary of the new
//!   length ([`batch_changed`]);
//! - a changed `max_runs_per_day` applies from the next UTC day: the rest of the day
//!   keeps the cap it had ([`DayCap`]).
//!
//! An added trigger starts from what the store holds under its name (nothing, for a
//! name never used), a scheduled one from the change instant, never paused. A removed
//! trigger stops firing and drops its paused state; the rest of its stored state (and
//! any batched items) stays in the store and is taken up again if a trigger of that
//! name comes back.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use concierto_core::config::{EventFilter, Studio, Trigger, TriggerKind, When};

use crate::batch;
use crate::state::TriggerState;
use crate::target;

/// Every trigger the scheduler runs for `studio`: its `triggers`, then the implicit
/// `target:<metric>` ones ([`target::target_triggers`]), then the report ones.
pub fn all_triggers(studio: &Studio) -> Vec<Trigger> {
    studio
        .triggers
        .iter()
        .cloned()
        .chain(target::target_triggers(studio))
        .chain(concierto_core::config::reports::report_triggers(studio))
        .collect()
}

/// What a trigger of the new table was in the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Same name and definition, at `old` in the old table.
    Kept {
        /// Its index in the old table.
        old: usize,
    },
    /// Same name, another definition.
    Changed {
        /// Its index in the old table.
        old: usize,
        /// Its schedule changed (or it became scheduled).
        rescheduled: bool,
    },
    /// A name the old table did not have.
    Added,
}

impl Fate {
    /// Its index in the old table, unless it was added.
    pub fn old(self) -> Option<usize> {
        match self {
            Fate::Kept { old } | Fate::Changed { old, .. } => Some(old),
            Fate::Added => None,
        }
    }
}

/// The trigger names a change added, removed and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerChanges {
    /// In the new table only.
    pub added: Vec<String>,
    /// In the old table only.
    pub removed: Vec<String>,
    /// In both, defined differently.
    pub changed: Vec<String>,
}

impl TriggerChanges {
    /// True when the trigger table is the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for TriggerChanges {
    /// `added [a], removed [b], changed [c]` (the empty lists left out), or `unchanged`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("unchanged");
        }
        let mut first = true;
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if names.is_empty() {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{what} [{}]", names.join(", "))?;
        }
        Ok(())
    }
}

/// For each trigger of `new`, what it was in `old`; and the names added, removed and
/// changed.
pub fn diff(old: &[Trigger], new: &[Trigger]) -> (Vec<Fate>, TriggerChanges) {
    let mut changes = TriggerChanges::default();
    let fates = new
        .iter()
        .map(|t| match old.iter().position(|o| o.name == t.name) {
            None => {
                changes.added.push(t.name.clone());
                Fate::Added
            }
            Some(i) if same_trigger(&old[i], t) => Fate::Kept { old: i },
            Some(i) => {
                changes.changed.push(t.name.clone());
                Fate::Changed {
                    old: i,
                    rescheduled: is_scheduled(t) && !same_schedule(&old[i].kind, &t.kind),
                }
            }
        })
        .collect();
    changes.removed = old
        .iter()
        .filter(|o| !new.iter().any(|t| t.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    (fates, changes)
}

fn is_scheduled(t: &Trigger) -> bool {
    matches!(t.kind, TriggerKind::Scheduled { .. })
}

fn same_when(a: &When, b: &When) -> bool {
    match (a, b) {
        (When::Schedule(a), When::Schedule(b)) => a == b,
        (When::Interval(a), When::Interval(b)) => a == b,
        _ => false,
    }
}

/// Both are scheduled, on the same schedule in the same time zone (the misfire policy
/// is not part of the schedule).
pub fn same_schedule(a: &TriggerKind, b: &TriggerKind) -> bool {
    match (a, b) {
        (
            TriggerKind::Scheduled {
                when: wa,
                timezone: za,
                ..
            },
            TriggerKind::Scheduled {
                when: wb,
                timezone: zb,
                ..
            },
        ) => za == zb && same_when(wa, wb),
        _ => false,
    }
}

/// Whether `a` and `b` are defined alike (name, what fires them, roles, workflow,
/// priority, flood control).
pub fn same_trigger(a: &Trigger, b: &Trigger) -> bool {
    let kind = match (&a.kind, &b.kind) {
        (
            TriggerKind::Scheduled { misfire: ma, .. },
            TriggerKind::Scheduled { misfire: mb, .. },
        ) => ma == mb && same_schedule(&a.kind, &b.kind),
        (
            TriggerKind::Event(EventFilter::NewContent { sources: sa }),
            TriggerKind::Event(EventFilter::NewContent { sources: sb }),
        ) => sa == sb,
        (
            TriggerKind::Event(EventFilter::Threshold(pa)),
            TriggerKind::Event(EventFilter::Threshold(pb)),
        ) => pa == pb,
        _ => false,
    };
    kind && a.name == b.name
        && a.agents == b.agents
        && a.workflow == b.workflow
        && a.priority == b.priority
        && a.flood == b.flood
}

/// The state `trigger` goes on with after a change at `now`: `state` as it was (or as
/// the store holds it, when added), its cursor set to `now` when it is a scheduled
/// trigger that was added, rescheduled or had none. An added trigger is never paused:
/// a paused state the store still holds under its name (from a trigger of that name
/// removed earlier) is dropped.
pub fn carried_state(
    mut state: TriggerState,
    fate: Fate,
    trigger: &Trigger,
    now: DateTime<Utc>,
) -> TriggerState {
    let from_now = match fate {
        Fate::Added => true,
        Fate::Changed { rescheduled, .. } => rescheduled,
        Fate::Kept { .. } => false,
    };
    if is_scheduled(trigger) && (from_now || state.cursor.is_none()) {
        state.cursor = Some(now);
    }
    if fate == Fate::Added {
        state.paused = None;
    }
    state
}

/// The `max_runs_per_day` a trigger keeps until the end of a UTC day, after a change
/// of it that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCap {
    /// The day.
    pub day: NaiveDate,
    /// The cap in force that day (`None`: no cap).
    pub cap: Option<u32>,
}

/// The cap `new` keeps for the rest of `today` after a change from `old`: the one
/// already held for today, else `old`'s when the cap changed.
pub fn held_cap(
    held: Option<DayCap>,
    old: &Trigger,
    new: &Trigger,
    today: NaiveDate,
) -> Option<DayCap> {
    match held {
        Some(h) if h.day == today => Some(h),
        _ if old.flood.max_runs_per_day != new.flood.max_runs_per_day => Some(DayCap {
            day: today,
            cap: old.flood.max_runs_per_day,
        }),
        _ => None,
    }
}

/// The `max_runs_per_day` in force on `day`: the one `held` for that day, else the
/// trigger's `current` one.
pub fn cap_on(held: Option<DayCap>, current: Option<u32>, day: NaiveDate) -> Option<u32> {
    match held {
        Some(h) if h.day == day => h.cap,
        _ => current,
    }
}

/// What a batched trigger keeps of its `batch` across changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldBatch {
    /// Open windows (by start) that close at another length than the trigger's
    /// `batch`: the length they opened with.
    pub lengths: BTreeMap<DateTime<Utc>, Duration>,
    /// The window open at the last change of `batch` (start, end): an item handled
    /// before its end joins it.
    pub current: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl HeldBatch {
    /// The start of the window an item handled at `now` joins, for a trigger batching
    /// by `len`.
    pub fn window_for(&self, len: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.current {
            Some((start, end)) if now < end => start,
            _ => batch::window_start(len, now),
        }
    }

    /// The length of the window starting at `start` of a trigger batching by `len`
    /// (`None`: it batches no more and the window is not held).
    pub fn length_of(&self, start: DateTime<Utc>, len: Option<Duration>) -> Option<Duration> {
        self.lengths.get(&start).copied().or(len)
    }

    /// The window starting at `start` has fired.
    pub fn closed(&mut self, start: DateTime<Utc>) {
        self.lengths.remove(&start);
    }
}

/// What `new` keeps of its batch windows after a change at `now` from `old`, `held`
/// being what `old` kept and `open` the starts of its open windows.
///
/// When `batch` changed, every open window closes at the end it had. The window the
/// change falls in (open or not yet holding an item) takes the items until its end,
/// stretched to the next boundary of the new length when it does not fall on one; the
/// windows of the new length start there. So the change applies from the next window,
/// and no new window starts where an earlier one did: a window's run id is the
/// trigger and its start, and two fires with one id would be stored once.
pub fn batch_changed<'a>(
    mut held: HeldBatch,
    open: impl IntoIterator<Item = &'a DateTime<Utc>>,
    old: &Trigger,
    new: &Trigger,
    now: DateTime<Utc>,
) -> HeldBatch {
    let Some(old_len) = old.flood.batch else {
        return held;
    };
    if old.flood.batch == new.flood.batch {
        return held;
    }
    for start in open {
        held.lengths.entry(*start).or_insert(old_len);
    }
    let (start, end) = match held.current {
        Some((start, end)) if now < end => (start, end),
        _ => {
            let start = batch::window_start(old_len, now);
            (
                start,
                start + chrono::Duration::from_std(old_len).unwrap_or_default(),
            )
        }
    };
    held.current = new.flood.batch.map(|new_len| {
        let aligned = batch::window_start(new_len, end);
        let end = if aligned == end {
            end
        } else {
            aligned + chrono::Duration::from_std(new_len).unwrap_or_default()
        };
        (start, end)
    });
    if let Some((start, end)) = held.current {
        held.lengths
            .insert(start, (end - start).to_std().unwrap_or(old_len));
    }
    held
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use concierto_core::config::Misfire;
    use concierto_core::grammar::{Predicate, Schedule};

    use super::*;

    fn scheduled(name: &str, at: &str) -> Trigger {
        Trigger {
            name: name.into(),
            kind: TriggerKind::Scheduled {
                when: When::Schedule(at.parse::<Schedule>().unwrap()),
                timezone: chrono_tz::Europe::Madrid,
                misfire: Misfire::FireOnce,
            },
            agents: vec!["content-creator".into()],
            workflow: "daily-content-pipeline".into(),
            priority: None,
            flood: Default::default(),
        }
    }

    fn threshold(name: &str, pred: &str) -> Trigger {
        Trigger {
            name: name.into(),
            kind: TriggerKind::Event(EventFilter::Threshold(pred.parse::<Predicate>().unwrap())),
            agents: Vec::new(),
            workflow: "content-optimization".into(),
            priority: None,
            flood: Default::default(),
        }
    }

    fn utc(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, h, 0, 0).unwrap()
    }

    #[test]
    fn a_diff_names_what_was_added_removed_and_changed_and_which_schedules_moved() {
        let old = vec![
            scheduled("daily", "09:00"),
            scheduled("weekly", "Monday 10:00"),
            threshold("low", "engagement_rate < 0.05"),
            scheduled("gone", "12:00"),
        ];
        let mut weekly = scheduled("weekly", "Monday 10:00");
        weekly.workflow = "market-intelligence".into();
        let new = vec![
            scheduled("daily", "11:00"),
            threshold("low", "engagement_rate < 0.04"),
            weekly,
            scheduled("fresh", "08:00"),
        ];
        let (fates, changes) = diff(&old, &new);
        assert_eq!(
            fates,
            vec![
                Fate::Changed {
                    old: 0,
                    rescheduled: true
                },
                Fate::Changed {
                    old: 2,
                    rescheduled: false
                },
                Fate::Changed {
                    old: 1,
                    rescheduled: false
                },
                Fate::Added,
            ]
        );
        assert_eq!(
            changes.to_string(),
            "added [fresh], removed [gone], changed [daily, low, weekly]"
        );
        let (fates, changes) = diff(&old, &old);
        assert!(fates.iter().all(|f| matches!(f, Fate::Kept { .. })));
        assert_eq!(changes.to_string(), "unchanged");
    }

    #[test]
    fn a_moved_or_added_schedule_starts_from_the_change_and_keeps_its_counters() {
        let state = TriggerState {
            cursor: Some(utc(7)),
            last_fire: Some(utc(7)),
            fires: 4,
            missed: 1,
            ..Default::default()
        };
        let daily = scheduled("daily", "11:00");
        let moved = carried_state(
            state.clone(),
            Fate::Changed {
                old: 0,
                rescheduled: true,
            },
            &daily,
            utc(8),
        );
        assert_eq!(moved.cursor, Some(utc(8)));
        assert_eq!(
            (moved.last_fire, moved.fires, moved.missed),
            (Some(utc(7)), 4, 1)
        );
        let kept = carried_state(state.clone(), Fate::Kept { old: 0 }, &daily, utc(8));
        assert_eq!(kept, state);
        let added = carried_state(TriggerState::default(), Fate::Added, &daily, utc(8));
        assert_eq!(added.cursor, Some(utc(8)));
        let event = carried_state(
            TriggerState::default(),
            Fate::Added,
            &threshold("low", "engagement_rate < 0.05"),
            utc(8),
        );
        assert_eq!(event.cursor, None);
    }

    #[test]
    fn a_changed_cap_waits_for_the_next_day_and_a_changed_batch_for_the_next_window() {
        let mut old = threshold("low", "engagement_rate < 0.05");
        old.flood.max_runs_per_day = Some(2);
        let mut new = old.clone();
        new.flood.max_runs_per_day = Some(5);
        let today = utc(8).date_naive();
        let tomorrow = today.succ_opt().unwrap();
        let held = held_cap(None, &old, &new, today);
        assert_eq!(cap_on(held, Some(5), today), Some(2));
        assert_eq!(cap_on(held, Some(5), tomorrow), Some(5));
        // A second change the same day keeps the day's cap; the next day none is held.
        assert_eq!(held_cap(held, &new, &old, today), held);
        assert_eq!(held_cap(held, &new, &new, tomorrow), None);

        let hour = Duration::from_secs(3600);
        let mut old = threshold("inspiration", "x < 1");
        old.flood.batch = Some(hour);
        let mut new = old.clone();
        new.flood.batch = Some(2 * hour);
        let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, 10, h, m, 0).unwrap();
        // 1 hour to 2 at 10:15: the window of 10:00 (open) and the one of 09:00 (ended,
        // not fired yet) keep their lengths; 10:00 takes items until 12:00, the first
        // 2-hour boundary after its end; then 2-hour windows.
        let held = batch_changed(
            HeldBatch::default(),
            &[at(9, 0), at(10, 0)],
            &old,
            &new,
            at(10, 15),
        );
        assert_eq!(held.current, Some((at(10, 0), at(12, 0))));
        assert_eq!(held.length_of(at(9, 0), new.flood.batch), Some(hour));
        assert_eq!(held.length_of(at(10, 0), new.flood.batch), Some(2 * hour));
        assert_eq!(held.window_for(2 * hour, at(11, 10)), at(10, 0));
        assert_eq!(held.window_for(2 * hour, at(12, 10)), at(12, 0));
        // 2 hours to 1 at 10:15: the window of 10:00 ends at 12:00 as it would have.
        let held = batch_changed(HeldBatch::default(), &[], &new, &old, at(10, 15));
        assert_eq!(held.current, Some((at(10, 0), at(12, 0))));
        assert_eq!(held.window_for(hour, at(11, 30)), at(10, 0));
        assert_eq!(held.window_for(hour, at(12, 30)), at(12, 0));
        // Batching no more: open windows still close at their end; items fire alone.
        let mut none = old.clone();
        none.flood.batch = None;
        let held = batch_changed(HeldBatch::default(), &[at(10, 0)], &old, &none, at(10, 15));
        assert_eq!(held.current, None);
        assert_eq!(held.length_of(at(10, 0), None), Some(hour));
        // Unchanged: nothing held.
        assert_eq!(
            batch_changed(HeldBatch::default(), &[at(10, 0)], &old, &old, at(10, 15)),
            HeldBatch::default()
        );
    }
}
