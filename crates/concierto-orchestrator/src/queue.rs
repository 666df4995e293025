//! The work queue (the seed's `WorkflowQueue`): ready steps wait here until a
//! role has room. Order: steps acting on pending human feedback first, then
//! `urgent`, then `normal`; FIFO within a class; a normal step that has waited
//! longer than the aging limit is served with the urgent ones (by its age), so
//! scheduled work is never starved by a stream of urgent work.

use std::collections::VecDeque;
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

/// The queue. Not thread-safe: owned by the orchestrator actor.
#[derive(Debug)]
pub struct WorkQueue {
    classes: [VecDeque<Queued>; 3],
    aging: Duration,
}

impl WorkQueue {
    /// An empty queue; normal work older than `aging` is served with urgent work.
    pub fn new(aging: Duration) -> Self {
        WorkQueue {
            classes: Default::default(),
            aging,
        }
    }

    /// Adds a ready step at the back of its class.
    pub fn push(&mut self, q: Queued) {
        let i = q.class as usize;
        self.classes[i].push_back(q);
    }

    /// Steps waiting.
    pub fn len(&self) -> usize {
        self.classes.iter().map(VecDeque::len).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Steps waiting per class (feedback, urgent, normal) and the oldest wait.
    pub fn depth(&self, now: DateTime<Utc>) -> ([usize; 3], Duration) {
        let oldest = self
            .classes
            .iter()
            .filter_map(|c| c.iter().map(|q| q.since).min())
            .min()
            .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO);
        (
            [
                self.classes[0].len(),
                self.classes[1].len(),
                self.classes[2].len(),
            ],
            oldest,
        )
    }

    /// Per class (feedback, urgent, normal): steps waiting and the oldest wait.
    pub fn depth_by_class(&self, now: DateTime<Utc>) -> [(usize, Duration); 3] {
        let class = |c: &VecDeque<Queued>| {
            let oldest = c
                .iter()
                .map(|q| q.since)
                .min()
                .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::ZERO);
            (c.len(), oldest)
        };
        [
            class(&self.classes[0]),
            class(&self.classes[1]),
            class(&self.classes[2]),
        ]
    }

    /// Removes every step of `run_id`.
    pub fn remove_run(&mut self, run_id: &str) {
        for c in &mut self.classes {
            c.retain(|q| q.run_id != run_id);
        }
    }

    /// The next step whose role `has_room`, in queue order.
    pub fn pop(&mut self, now: DateTime<Utc>, has_room: impl Fn(&str) -> bool) -> Option<Queued> {
        if let Some(i) = self.classes[0].iter().position(|q| has_room(&q.role)) {
            return self.classes[0].remove(i);
        }
        let aged = chrono::Duration::from_std(self.aging).unwrap_or(chrono::Duration::MAX);
        let urgent = self.classes[1].iter().position(|q| has_room(&q.role));
        let old_normal = self.classes[2]
            .iter()
            .position(|q| has_room(&q.role) && now - q.since >= aged);
        match (urgent, old_normal) {
            (Some(u), Some(n)) => {
                // Both waiting: the one that has waited longer goes first.
                if self.classes[2][n].since < self.classes[1][u].since {
                    self.classes[2].remove(n)
                } else {
                    self.classes[1].remove(u)
                }
            }
            (Some(u), None) => self.classes[1].remove(u),
            (None, Some(n)) => self.classes[2].remove(n),
            (None, None) => {
                let i = self.classes[2].iter().position(|q| has_room(&q.role))?;
                self.classes[2].remove(i)
            }
        }
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
    fn depth_counts_classes_and_oldest_wait() {
        let mut w = WorkQueue::new(Duration::from_secs(60));
        w.push(q("a", "r", Class::Normal, 0));
        w.push(q("b", "r", Class::Feedback, 5));
        let (d, oldest) = w.depth(t0() + chrono::Duration::seconds(30));
        assert_eq!(d, [1, 0, 1]);
        assert_eq!(oldest, Duration::from_secs(30));
    }
}
