//! The work queue (the seed's `WorkflowQueue`): ready steps wait here until a
//! role has room. Order: steps acting on pending human feedback first, then
//! `urgent`, then `normal`; FIFO within a class; a normal step that has waited
//! longer than the aging limit is served with the urgent ones (by its age), so
//! scheduled work is never starved by a stream of urgent work.
//!
//! Cost is flat in the backlog: each role has a ready deque per class, roles
//! are interned (a [`RoleId`] instead of hashing the role's name), a pop looks
//! at the front of each role's deques only and asks once per role whether it
//! has room, so it costs O(roles) whatever waits. Removing a run's steps marks
//! them dead through a per-run index (no scan); dead entries are dropped when
//! they reach a front, and the counters behind [`WorkQueue::depth`] exclude
//! them at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Priority class of a queued step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Acts on pending human feedback.
    Feedback,
    /// `priority: urgent`.
    Urgent,
    /// Ordinary and scheduled work.
    Normal,
}

/// A role interned by the queue: an index, so the hot path compares and
/// indexes integers instead of hashing names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleId(pub u32);

impl RoleId {
    /// The index of the role, for tables kept beside the queue.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A step waiting for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// The role that will do it.
    pub role: String,
    /// Its class.
    pub class: Class,
    /// When it became ready.
    pub since: DateTime<Utc>,
}

/// One waiting step in its role's deque.
#[derive(Debug)]
struct Entry {
    run_id: String,
    step_id: String,
    since: DateTime<Utc>,
    /// Push order: FIFO within a class across roles.
    seq: u64,
}

/// Where a run's waiting step is, for removal without a scan.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    role: RoleId,
    class: Class,
}

/// The queue. Not thread-safe: owned by the orchestrator actor.
#[derive(Debug)]
pub struct WorkQueue {
    aging: Duration,
    /// Role names by id, and ids by name.
    names: Vec<String>,
    ids: HashMap<String, RoleId>,
    /// Per role, a deque per class (feedback, urgent, normal). The front of
    /// each deque is always a live entry.
    ready: Vec<[VecDeque<Entry>; 3]>,
    /// Live entries per class.
    counts: [usize; 3],
    /// The live entries of each run.
    by_run: HashMap<String, Vec<Slot>>,
    /// Entries removed but still in a deque (behind its front).
    dead: HashSet<u64>,
    next_seq: u64,
}

impl WorkQueue {
    /// An empty queue; normal work older than `aging` is served with urgent work.
    pub fn new(aging: Duration) -> Self {
        WorkQueue {
            aging,
            names: Vec::new(),
            ids: HashMap::new(),
            ready: Vec::new(),
            counts: [0; 3],
            by_run: HashMap::new(),
            dead: HashSet::new(),
            next_seq: 0,
        }
    }

    /// The id of `role`, interning it on first sight.
    pub fn role_id(&mut self, role: &str) -> RoleId {
        if let Some(id) = self.ids.get(role) {
            return *id;
        }
        let id = RoleId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        self.names.push(role.to_string());
        self.ids.insert(role.to_string(), id);
        self.ready.push(Default::default());
        id
    }

    /// The id of `role` if it was ever seen.
    pub fn known_role(&self, role: &str) -> Option<RoleId> {
        self.ids.get(role).copied()
    }

    /// The name of an interned role.
    pub fn role_name(&self, id: RoleId) -> &str {
        self.names.get(id.index()).map(String::as_str).unwrap_or("")
    }

    /// Roles interned so far (ids are `0..roles()`).
    pub fn roles(&self) -> usize {
        self.names.len()
    }

    /// Adds a ready step at the back of its class.
    pub fn push(&mut self, q: Queued) {
        let role = self.role_id(&q.role);
        let seq = self.next_seq;
        self.next_seq += 1;
        let class = q.class;
        self.by_run
            .entry(q.run_id.clone())
            .or_default()
            .push(Slot { seq, role, class });
        self.counts[class as usize] += 1;
        if let Some(deques) = self.ready.get_mut(role.index()) {
            deques[class as usize].push_back(Entry {
                run_id: q.run_id,
                step_id: q.step_id,
                since: q.since,
                seq,
            });
        }
    }

    /// Steps waiting.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest wait of a class: the earliest front of its deques.
    fn oldest(&self, class: usize, now: DateTime<Utc>) -> Duration {
        self.ready
            .iter()
            .filter_map(|d| d[class].front().map(|e| e.since))
            .min()
            .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO)
    }

    /// Steps waiting per class (feedback, urgent, normal) and the oldest wait.
    pub fn depth(&self, now: DateTime<Utc>) -> ([usize; 3], Duration) {
        let oldest = (0..3)
            .map(|c| self.oldest(c, now))
            .max()
            .unwrap_or(Duration::ZERO);
        (self.counts, oldest)
    }

    /// Per class (feedback, urgent, normal): steps waiting and the oldest wait.
    pub fn depth_by_class(&self, now: DateTime<Utc>) -> [(usize, Duration); 3] {
        [0, 1, 2].map(|c| (self.counts[c], self.oldest(c, now)))
    }

    /// Removes every step of `run_id`.
    pub fn remove_run(&mut self, run_id: &str) {
        let Some(slots) = self.by_run.remove(run_id) else {
            return;
        };
        for s in &slots {
            self.counts[s.class as usize] = self.counts[s.class as usize].saturating_sub(1);
            self.dead.insert(s.seq);
        }
        for s in slots {
            self.drop_dead_front(s.role, s.class);
        }
    }

    /// Keeps the front of a deque live.
    fn drop_dead_front(&mut self, role: RoleId, class: Class) {
        let Some(d) = self.ready.get_mut(role.index()) else {
            return;
        };
        let d = &mut d[class as usize];
        while let Some(front) = d.front() {
            if !self.dead.remove(&front.seq) {
                break;
            }
            d.pop_front();
        }
    }

    /// The next step whose role `has_room`, in queue order (see
    /// [`WorkQueue::pop_by_id`]); `has_room` is asked with each role's name.
    pub fn pop(&mut self, now: DateTime<Utc>, has_room: impl Fn(&str) -> bool) -> Option<Queued> {
        let room: Vec<bool> = self.names.iter().map(|n| has_room(n)).collect();
        self.pop_by_id(now, |r| room.get(r.index()).copied().unwrap_or(false))
            .map(|(q, _)| q)
    }

    /// The next step whose role has room, in queue order. `has_room` is asked
    /// at most once per role that has work waiting, so a pop costs O(roles).
    pub fn pop_by_id(
        &mut self,
        now: DateTime<Utc>,
        mut has_room: impl FnMut(RoleId) -> bool,
    ) -> Option<(Queued, RoleId)> {
        if self.is_empty() {
            return None;
        }
        let aged = chrono::Duration::from_std(self.aging).unwrap_or(chrono::Duration::MAX);
        // Per class, the earliest front (by push order) among roles with room;
        // and the earliest normal front that has aged.
        let mut best: [Option<(u64, DateTime<Utc>, usize)>; 3] = [None; 3];
        let mut old_normal: Option<(u64, DateTime<Utc>, usize)> = None;
        for (r, deques) in self.ready.iter().enumerate() {
            if deques.iter().all(VecDeque::is_empty) {
                continue;
            }
            if !has_room(RoleId(u32::try_from(r).unwrap_or(u32::MAX))) {
                continue;
            }
            for (c, d) in deques.iter().enumerate() {
                let Some(front) = d.front() else { continue };
                let here = (front.seq, front.since, r);
                if best[c].is_none_or(|b| here.0 < b.0) {
                    best[c] = Some(here);
                }
                if c == Class::Normal as usize
                    && now - front.since >= aged
                    && old_normal.is_none_or(|b| here.0 < b.0)
                {
                    old_normal = Some(here);
                }
            }
        }
        let (class, role) = if let Some((_, _, r)) = best[0] {
            (Class::Feedback, r)
        } else {
            match (best[1], old_normal) {
                // Both waiting: the one that has waited longer goes first.
                (Some(u), Some(n)) if n.1 < u.1 => (Class::Normal, n.2),
                (Some(u), _) => (Class::Urgent, u.2),
                (None, Some(n)) => (Class::Normal, n.2),
                (None, None) => (Class::Normal, best[2]?.2),
            }
        };
        self.take_front(RoleId(u32::try_from(role).unwrap_or(u32::MAX)), class)
    }

    /// Removes the live front of a role's class deque.
    fn take_front(&mut self, role: RoleId, class: Class) -> Option<(Queued, RoleId)> {
        let e = self.ready.get_mut(role.index())?[class as usize].pop_front()?;
        self.drop_dead_front(role, class);
        self.counts[class as usize] = self.counts[class as usize].saturating_sub(1);
        if let Some(slots) = self.by_run.get_mut(&e.run_id) {
            slots.retain(|s| s.seq != e.seq);
            if slots.is_empty() {
                self.by_run.remove(&e.run_id);
            }
        }
        Some((
            Queued {
                run_id: e.run_id,
                step_id: e.step_id,
                role: self.role_name(role).to_string(),
                class,
                since: e.since,
            },
            role,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
    }

    fn q(id: &str, role: &str, class: Class, secs: i64) -> Queued {
        Queued {
            run_id: id.into(),
            step_id: "s".into(),
            role: role.into(),
            class,
            since: t0() + chrono::Duration::seconds(secs),
        }
    }

    fn order(queue: &mut WorkQueue, now: DateTime<Utc>) -> Vec<String> {
        std::iter::from_fn(|| queue.pop(now, |_| true).map(|q| q.run_id)).collect()
    }

    #[test]
    fn feedback_then_urgent_then_normal_fifo_within_class() {
        let mut w = WorkQueue::new(Duration::from_secs(3600));
        w.push(q("n1", "a", Class::Normal, 0));
        w.push(q("u1", "a", Class::Urgent, 1));
        w.push(q("n2", "a", Class::Normal, 2));
        w.push(q("f1", "a", Class::Feedback, 3));
        w.push(q("u2", "a", Class::Urgent, 4));
        assert_eq!(
            order(&mut w, t0() + chrono::Duration::seconds(10)),
            ["f1", "u1", "u2", "n1", "n2"]
        );
    }

    #[test]
    fn fifo_within_a_class_holds_across_roles() {
        let mut w = WorkQueue::new(Duration::from_secs(3600));
        w.push(q("n1", "b", Class::Normal, 0));
        w.push(q("n2", "a", Class::Normal, 1));
        w.push(q("n3", "b", Class::Normal, 2));
        w.push(q("u1", "c", Class::Urgent, 3));
        w.push(q("n4", "c", Class::Normal, 4));
        assert_eq!(
            order(&mut w, t0() + chrono::Duration::seconds(10)),
            ["u1", "n1", "n2", "n3", "n4"]
        );
    }

    #[test]
    fn aged_normal_work_is_not_starved_by_urgent_work() {
        let mut w = WorkQueue::new(Duration::from_secs(60));
        w.push(q("old-normal", "a", Class::Normal, 0));
        for i in 0..3 {
            w.push(q(&format!("u{i}"), "a", Class::Urgent, 100 + i));
        }
        // At t=120 the normal step has waited 120 s > 60 s and is older than the urgent ones.
        let now = t0() + chrono::Duration::seconds(120);
        assert_eq!(order(&mut w, now), ["old-normal", "u0", "u1", "u2"]);
    }

    #[test]
    fn a_role_at_its_limit_does_not_block_other_roles() {
        let mut w = WorkQueue::new(Duration::from_secs(60));
        w.push(q("busy", "content-creator", Class::Urgent, 0));
        w.push(q("free", "brand-guardian", Class::Normal, 1));
        let got = w.pop(t0(), |role| role != "content-creator").unwrap();
        assert_eq!(got.run_id, "free");
        assert_eq!(w.len(), 1);
        w.remove_run("busy");
        assert!(w.is_empty());
    }

    #[test]
    fn room_is_asked_once_per_role_with_work() {
        let mut w = WorkQueue::new(Duration::from_secs(60));
        for i in 0..1000 {
            w.push(q(&format!("r{i}"), ["a", "b"][i % 2], Class::Normal, 0));
        }
        w.role_id("idle");
        let mut asked = Vec::new();
        let got = w.pop_by_id(t0(), |r| {
            asked.push(r);
            false
        });
        assert!(got.is_none());
        assert_eq!(asked, [RoleId(0), RoleId(1)]);
    }

    #[test]
    fn removed_runs_leave_the_counts_at_once_and_are_never_served() {
        let mut w = WorkQueue::new(Duration::from_secs(60));
        w.push(q("a", "r", Class::Normal, 0));
        w.push(q("b", "r", Class::Normal, 1));
        w.push(q("c", "r", Class::Normal, 2));
        w.push(q("b", "r", Class::Urgent, 3));
        // "b" sits behind the front: removed lazily, counted out at once.
        w.remove_run("b");
        let now = t0() + chrono::Duration::seconds(10);
        assert_eq!(w.depth(now).0, [0, 0, 2]);
        // "a" is the front: removing it exposes "c" (the dead "b" is skipped).
        w.remove_run("a");
        assert_eq!(w.depth_by_class(now)[2], (1, Duration::from_secs(8)));
        assert_eq!(order(&mut w, now), ["c"]);
        assert!(w.is_empty());
        // A removed run that had nothing waiting changes nothing.
        w.remove_run("nothing");
        assert!(w.is_empty());
    }

    #[test]
    fn depth_counts_classes_and_oldest_wait() {
        let mut w = WorkQueue::new(Duration::from_secs(60));
        w.push(q("a", "r", Class::Normal, 0));
        w.push(q("b", "r", Class::Feedback, 5));
        let (d, oldest) = w.depth(t0() + chrono::Duration::seconds(30));
        assert_eq!(d, [1, 0, 1]);
        assert_eq!(oldest, Duration::from_secs(30));
    }
}
