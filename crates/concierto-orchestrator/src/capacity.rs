//! Capacity from live workers: each role's in-flight limit follows the
//! heartbeats of its workers (`agent.heartbeat.<role>.<worker>`), so starting
//! a second worker process doubles what the orchestrator hands that role.
//!
//! Pure and on the engine's clock: a worker is known by role and id with the
//! capacity it last reported and when it was last heard. It lapses when it
//! says it is draining or stopped, or when it has not been heard for
//! `max(Limits::heartbeat_lapse, 3 × the longest gap between its heartbeats)`
//! (the lapse is checked on the engine's tick).
//!
//! A role's limit:
//! - no live worker of the role (never heard, or all lapsed): the static value
//!   from the studio, as without heartbeats (`replicas × max_in_flight`,
//!   `Limits::role_limits`, else `Limits::default_role_limit`);
//! - otherwise the sum of its live workers' capacities, capped by the static
//!   value only when the studio sets `replicas` for the role explicitly;
//! - in a studio of P partitions each partition's engine takes
//!   `ceil(capacity / P)`: the role's workers serve every partition, and
//!   rounding up keeps a single small worker busy in each.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_core::store::StoreError;
use concierto_proto::v1;

use crate::engine::{Effects, Engine};

/// How long a worker may stay silent before it lapses, unless its
/// heartbeats are spaced wider (`Limits::heartbeat_lapse`).
pub const DEFAULT_LAPSE: Duration = Duration::from_secs(30);

/// A worker lapses after this many of its heartbeat intervals.
const LAPSE_INTERVALS: u32 = 3;

/// Workers tracked at most: heartbeats from more new workers are ignored
/// (bounded memory whatever is published on the heartbeat subjects).
pub const MAX_WORKERS: usize = 4096;

/// One live worker.
#[derive(Debug, Clone)]
struct Worker {
    capacity: u32,
    last: DateTime<Utc>,
    /// The longest gap seen between two of its heartbeats.
    gap: Duration,
}

/// Live workers by role and id.
#[derive(Debug, Default)]
pub struct Capacity {
    workers: HashMap<(String, String), Worker>,
}

impl Capacity {
    /// Records a heartbeat heard at `now`. True when its role's live capacity
    /// changed (a worker came, went or reported another capacity).
    pub fn heard(&mut self, hb: &v1::AgentHeartbeat, now: DateTime<Utc>) -> bool {
        let key = (hb.role.clone(), hb.worker_id.clone());
        let leaving = matches!(
            v1::AgentState::try_from(hb.state),
            Ok(v1::AgentState::Draining | v1::AgentState::Stopped)
        );
        if leaving {
            return self.workers.remove(&key).is_some();
        }
        let full = self.workers.len() >= MAX_WORKERS;
        match self.workers.get_mut(&key) {
            Some(w) => {
                let gap = (now - w.last).to_std().unwrap_or(Duration::ZERO);
                w.gap = w.gap.max(gap);
                w.last = now;
                let changed = w.capacity != hb.capacity;
                w.capacity = hb.capacity;
                changed
            }
            None if full => false,
            None => {
                self.workers.insert(
                    key,
                    Worker {
                        capacity: hb.capacity,
                        last: now,
                        gap: Duration::ZERO,
                    },
                );
                true
            }
        }
    }

    /// Drops the workers silent for too long (see the module doc); true when
    /// any did.
    pub fn expire(&mut self, now: DateTime<Utc>, lapse: Duration) -> bool {
        let before = self.workers.len();
        self.workers.retain(|_, w| {
            let silent = (now - w.last).to_std().unwrap_or(Duration::ZERO);
            silent < lapse.max(w.gap.saturating_mul(LAPSE_INTERVALS))
        });
        self.workers.len() != before
    }

    /// The summed capacity of `role`'s live workers; `None` when none is live.
    pub fn live(&self, role: &str) -> Option<u64> {
        let mut any = false;
        let mut sum = 0u64;
        for ((r, _), w) in &self.workers {
            if r == role {
                any = true;
                sum += u64::from(w.capacity);
            }
        }
        any.then_some(sum)
    }

    /// Live workers of `role`.
    pub fn workers(&self, role: &str) -> usize {
        self.workers.keys().filter(|(r, _)| r == role).count()
    }

    /// `role`'s in-flight limit for one of `partitions` engines, from its
    /// static limit and whether the studio caps it (see the module doc).
    pub fn limit(&self, role: &str, static_limit: usize, capped: bool, partitions: u32) -> usize {
        let Some(live) = self.live(role) else {
            return static_limit;
        };
        let share =
            usize::try_from(live.div_ceil(u64::from(partitions.max(1)))).unwrap_or(usize::MAX);
        if capped {
            share.min(static_limit)
        } else {
            share
        }
    }
}

impl Engine {
    /// A worker's heartbeat: when its role's live capacity changed, the
    /// role's limit follows and what now fits is dispatched at once.
    pub fn apply_heartbeat(
        &mut self,
        hb: &v1::AgentHeartbeat,
        now: DateTime<Utc>,
    ) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        if self.capacity.heard(hb, now) {
            tracing::debug!(role = %hb.role, worker = %hb.worker_id, capacity = hb.capacity, state = hb.state, "live capacity changed");
            self.refresh_role_limits();
            self.dispatch(now, &mut fx)?;
        }
        Ok(fx)
    }

    /// Lets silent workers lapse (on the tick); their share of their role's
    /// limit is released.
    pub(crate) fn expire_workers(&mut self, now: DateTime<Utc>) {
        if self.capacity.expire(now, self.limits().heartbeat_lapse) {
            self.refresh_role_limits();
        }
    }

    /// A role's in-flight limit now (see the module doc).
    pub(crate) fn role_limit_of(&self, role: &str) -> usize {
        let limits = self.limits();
        let fixed = limits
            .role_limits
            .get(role)
            .copied()
            .unwrap_or(limits.default_role_limit);
        let capped = limits.capped_roles.contains(role);
        self.capacity.limit(role, fixed, capped, self.partition.1)
    }

    /// A role's in-flight limit now, by name; the static value for a role
    /// the engine has not queued work for yet.
    pub fn limit_for_role(&self, role: &str) -> usize {
        self.role_limit_of(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn hb(role: &str, worker: &str, capacity: u32, state: v1::AgentState) -> v1::AgentHeartbeat {
        v1::AgentHeartbeat {
            role: role.into(),
            worker_id: worker.into(),
            capacity,
            state: state as i32,
            ..Default::default()
        }
    }

    const READY: v1::AgentState = v1::AgentState::Ready;

    #[test]
    fn a_role_never_heard_keeps_its_static_limit() {
        let c = Capacity::default();
        assert_eq!(c.live("writer"), None);
        assert_eq!(c.limit("writer", 4, false, 1), 4);
        assert_eq!(c.limit("writer", 4, true, 3), 4);
    }

    #[test]
    fn live_capacity_is_the_sum_of_workers_and_caps_only_explicit_replicas() {
        let mut c = Capacity::default();
        assert!(c.heard(&hb("writer", "w1", 2, v1::AgentState::Starting), at(0)));
        assert!(c.heard(&hb("writer", "w2", 3, READY), at(0)));
        assert!(c.heard(&hb("editor", "e1", 1, READY), at(0)));
        // The same beat again changes nothing.
        assert!(!c.heard(&hb("writer", "w2", 3, READY), at(1)));
        assert_eq!(c.live("writer"), Some(5));
        assert_eq!(c.workers("writer"), 2);
        // Not capped: live capacity even above the static value.
        assert_eq!(c.limit("writer", 2, false, 1), 5);
        // `replicas` set in the studio: capped by replicas × max_in_flight.
        assert_eq!(c.limit("writer", 4, true, 1), 4);
        assert_eq!(c.limit("writer", 8, true, 1), 5);
    }

    #[test]
    fn partitions_take_the_ceiling_of_their_share() {
        let mut c = Capacity::default();
        c.heard(&hb("writer", "w1", 5, READY), at(0));
        assert_eq!(c.limit("writer", 1, false, 2), 3);
        assert_eq!(c.limit("writer", 1, false, 5), 1);
        assert_eq!(c.limit("writer", 1, false, 8), 1);
        assert_eq!(c.limit("writer", 1, false, 0), 5);
    }

    #[test]
    fn a_stopping_worker_leaves_at_once() {
        let mut c = Capacity::default();
        c.heard(&hb("writer", "w1", 2, READY), at(0));
        c.heard(&hb("writer", "w2", 2, READY), at(0));
        assert!(c.heard(&hb("writer", "w1", 2, v1::AgentState::Draining), at(1)));
        assert_eq!(c.live("writer"), Some(2));
        assert!(c.heard(&hb("writer", "w2", 0, v1::AgentState::Stopped), at(1)));
        // None live: the static value again.
        assert_eq!(c.live("writer"), None);
        assert_eq!(c.limit("writer", 4, false, 1), 4);
        // A stop from a worker never heard changes nothing.
        assert!(!c.heard(&hb("writer", "w9", 0, v1::AgentState::Stopped), at(1)));
    }

    #[test]
    fn a_silent_worker_lapses_after_the_lapse_or_three_of_its_intervals() {
        let lapse = Duration::from_secs(30);
        let mut c = Capacity::default();
        c.heard(&hb("writer", "fast", 2, READY), at(0));
        c.heard(&hb("writer", "slow", 2, READY), at(0));
        // "slow" beats every 20 s: it lapses after 60 s, not 30.
        c.heard(&hb("writer", "slow", 2, READY), at(20));
        assert!(!c.expire(at(29), lapse));
        assert!(c.expire(at(30), lapse));
        assert_eq!(c.workers("writer"), 1);
        assert!(!c.expire(at(79), lapse));
        assert!(c.expire(at(80), lapse));
        assert_eq!(c.live("writer"), None);
    }

    #[test]
    fn workers_beyond_the_bound_are_ignored() {
        let mut c = Capacity::default();
        for i in 0..MAX_WORKERS {
            c.heard(&hb("writer", &format!("w{i}"), 1, READY), at(0));
        }
        assert!(!c.heard(&hb("writer", "one-too-many", 1, READY), at(0)));
        assert_eq!(c.live("writer"), Some(MAX_WORKERS as u64));
    }
}
