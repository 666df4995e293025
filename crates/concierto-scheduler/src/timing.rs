//! When scheduled triggers fire, and what to do with fires that came due late.
//!
//! Pure functions of the schedule and the instants they are asked about: no clock, no
//! store, no bus. Every instant is UTC; a schedule is evaluated in its trigger's zone
//! (daylight saving included), an interval on the Unix epoch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use concierto_core::config::{Misfire, When};

/// The first fire of `when` strictly after `after`.
///
/// A schedule (`time:`, `cron:`) is evaluated in `tz`, so `"09:00"` is 09:00 local time on
/// both sides of a daylight saving change. An interval fires at every multiple of its
/// length since the Unix epoch (`6 hours` fires at 00:00, 06:00, 12:00 and 18:00 UTC),
/// whatever the zone, so every scheduler process computes the same fire times. `None`
/// when it never fires again.
pub fn next_fire(when: &When, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match when {
        When::Schedule(schedule) => schedule
            .next_after(&after.with_timezone(&tz))
            .map(|t| t.with_timezone(&Utc)),
        When::Interval(every) => interval_next_after(*every, after),
    }
}

/// Every fire of `when` in `(from, to]`, in order, at most `limit` of them.
pub fn fires_between(
    when: &When,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Vec<DateTime<Utc>> {
    match when {
        When::Schedule(schedule) => schedule
            .fires_between(&from.with_timezone(&tz), &to.with_timezone(&tz), limit)
            .into_iter()
            .map(|t| t.with_timezone(&Utc))
            .collect(),
        When::Interval(every) => {
            let mut fires = Vec::new();
            let mut cursor = from;
            while fires.len() < limit {
                match interval_next_after(*every, cursor) {
                    Some(next) if next <= to => {
                        fires.push(next);
                        cursor = next;
                    }
                    _ => break,
                }
            }
            fires
        }
    }
}

/// The first multiple of `every` (in whole milliseconds, at least one) since the Unix
/// epoch strictly after `after`.
fn interval_next_after(every: Duration, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let step = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    let periods = after.timestamp_millis().div_euclid(step);
    let next = periods.checked_add(1)?.checked_mul(step)?;
    DateTime::from_timestamp_millis(next)
}

/// What to do with the fires that are due at one look at the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuePlan {
    /// Fires to start now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Fires that will never start: counted and logged as missed.
    pub missed: Vec<DateTime<Utc>>,
}

/// Splits the due fires `due` (oldest first) at instant `now`.
///
/// A fire at most `grace` old is on time and fires. An older one was missed (the scheduler
/// was down, the host was suspended, the bus refused it for a while) and follows the
/// trigger's policy: [`Misfire::Skip`] fires none of them, [`Misfire::FireOnce`] only the
/// latest, [`Misfire::FireAll`]`(n)` the latest `n`, in order; the others are missed.
pub fn plan_due(
    due: &[DateTime<Utc>],
    now: DateTime<Utc>,
    grace: Duration,
    policy: Misfire,
) -> DuePlan {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let on_time_from = due
        .iter()
        .position(|t| now.signed_duration_since(*t) <= grace)
        .unwrap_or(due.len());
    let (late, on_time) = due.split_at(on_time_from);
    let keep = match policy {
        Misfire::Skip => 0,
        Misfire::FireOnce => 1,
        Misfire::FireAll(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let (missed, caught_up) = late.split_at(late.len().saturating_sub(keep));
    DuePlan {
        fire: caught_up.iter().chain(on_time).copied().collect(),
        missed: missed.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use concierto_core::grammar::Schedule;

    use super::*;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
    }

    fn madrid() -> Tz {
        "Europe/Madrid".parse().unwrap()
    }

    #[test]
    fn daily_nine_is_nine_local_on_both_sides_of_the_spring_change() {
        let when = When::Schedule(Schedule::parse("09:00").unwrap());
        assert_eq!(
            next_fire(&when, madrid(), utc(28, 0, 0)),
            Some(utc(28, 8, 0))
        );
        assert_eq!(
            next_fire(&when, madrid(), utc(28, 8, 0)),
            Some(utc(29, 7, 0))
        );
        assert_eq!(
            fires_between(&when, madrid(), utc(27, 12, 0), utc(30, 12, 0), 10),
            vec![utc(28, 8, 0), utc(29, 7, 0), utc(30, 7, 0)]
        );
    }

    #[test]
    fn intervals_are_aligned_on_the_epoch_whatever_the_zone() {
        let when = When::Interval(Duration::from_secs(6 * 3600));
        assert_eq!(
            next_fire(&when, madrid(), utc(1, 1, 30)),
            Some(utc(1, 6, 0))
        );
        assert_eq!(
            next_fire(&when, chrono_tz::UTC, utc(1, 6, 0)),
            Some(utc(1, 12, 0))
        );
        assert_eq!(
            fires_between(&when, madrid(), utc(1, 0, 0), utc(2, 0, 0), 10),
            vec![utc(1, 6, 0), utc(1, 12, 0), utc(1, 18, 0), utc(2, 0, 0)]
        );
        assert_eq!(
            fires_between(&when, madrid(), utc(1, 0, 0), utc(2, 0, 0), 2).len(),
            2
        );
    }

    #[test]
    fn on_time_fires_fire_and_late_ones_follow_the_policy() {
        let due = [utc(1, 6, 0), utc(1, 12, 0), utc(1, 18, 0), utc(2, 0, 0)];
        let now = utc(2, 0, 0) + chrono::Duration::seconds(30);
        let grace = Duration::from_secs(60);
        assert_eq!(
            plan_due(&due, now, grace, Misfire::Skip),
            DuePlan {
                fire: vec![utc(2, 0, 0)],
                missed: due[..3].to_vec()
            }
        );
        assert_eq!(
            plan_due(&due, now, grace, Misfire::FireOnce),
            DuePlan {
                fire: vec![utc(1, 18, 0), utc(2, 0, 0)],
                missed: due[..2].to_vec()
            }
        );
        assert_eq!(
            plan_due(&due, now, grace, Misfire::FireAll(2)),
            DuePlan {
                fire: vec![utc(1, 12, 0), utc(1, 18, 0), utc(2, 0, 0)],
                missed: due[..1].to_vec()
            }
        );
        assert_eq!(
            plan_due(&due, now, grace, Misfire::FireAll(10)),
            DuePlan {
                fire: due.to_vec(),
                missed: vec![]
            }
        );
        assert_eq!(
            plan_due(&[], now, grace, Misfire::FireOnce),
            DuePlan::default()
        );
    }
}
