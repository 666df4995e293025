//! System health in memory: the orchestrator's queue (from its `queue_depth`
//! and `queue_oldest_seconds` samples), agent workers (from heartbeats),
//! dead letters (`dlq.>`) and quality gates (`event.gate.*`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_proto::v1::{self, AgentHeartbeat, AgentState, GateState};

/// One worker as its heartbeats show it.
#[derive(Debug, Clone)]
struct Worker {
    role: String,
    /// When the tracker last heard from it (tracker clock).
    seen: DateTime<Utc>,
    in_flight: u32,
    tasks_done: u64,
    tasks_failed: u64,
    stopped: bool,
    /// (received, busy ms, idle ms) of recent heartbeats.
    recent: VecDeque<(DateTime<Utc>, u64, u64)>,
}

/// One priority class of the queue.
#[derive(Debug, Clone, Copy, Default)]
struct Queue {
    depth: u32,
    oldest_s: f64,
}

/// The health state.
#[derive(Debug, Clone)]
pub struct Health {
    roles: Vec<String>,
    workers: BTreeMap<String, Worker>,
    queues: BTreeMap<String, Queue>,
    gates: BTreeMap<String, Option<DateTime<Utc>>>,
    dead_letters: u64,
    heartbeat_interval: Duration,
    utilization_window: Duration,
}

/// The priority classes the orchestrator reports, in queue order.
pub const PRIORITY_CLASSES: [&str; 3] = ["feedback", "urgent", "normal"];

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A protobuf timestamp as a time.
pub fn from_ts(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    Utc.timestamp_opt(ts.seconds, nanos).single()
}

/// A time as a protobuf timestamp.
pub fn to_ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    concierto_proto::time::timestamp(t.into())
}

impl Health {
    /// Empty health for the studio's `roles`; a worker is a replica while its
    /// last heartbeat is fresher than 3 × `heartbeat_interval`; utilization
    /// covers the heartbeats of the last `utilization_window`.
    pub fn new(
        roles: Vec<String>,
        heartbeat_interval: Duration,
        utilization_window: Duration,
    ) -> Self {
        let mut queues = BTreeMap::new();
        for p in PRIORITY_CLASSES {
            queues.insert(p.to_string(), Queue::default());
        }
        Health {
            roles,
            workers: BTreeMap::new(),
            queues,
            gates: BTreeMap::new(),
            dead_letters: 0,
            heartbeat_interval,
            utilization_window,
        }
    }

    /// Takes a heartbeat received at `now`; returns its busy share and length
    /// (ms) for the overall utilization series, when it covers any time.
    pub fn heartbeat(&mut self, hb: &AgentHeartbeat, now: DateTime<Utc>) -> Option<(f64, f64)> {
        let w = self
            .workers
            .entry(hb.worker_id.clone())
            .or_insert_with(|| Worker {
                role: hb.role.clone(),
                seen: now,
                in_flight: 0,
                tasks_done: 0,
                tasks_failed: 0,
                stopped: false,
                recent: VecDeque::new(),
            });
        w.role = hb.role.clone();
        w.seen = now;
        w.in_flight = hb.in_flight;
        w.tasks_done = hb.tasks_done;
        w.tasks_failed = hb.tasks_failed;
        w.stopped = hb.state == AgentState::Stopped as i32;
        w.recent.push_back((now, hb.busy_ms, hb.idle_ms));
        let from = now - chrono(self.utilization_window);
        while w.recent.front().is_some_and(|(t, _, _)| *t < from) {
            w.recent.pop_front();
        }
        let total = hb.busy_ms.saturating_add(hb.idle_ms);
        (total > 0).then(|| (hb.busy_ms as f64 / total as f64, total as f64))
    }

    /// Takes a queue sample (`queue_depth` or `queue_oldest_seconds`) for `priority`.
    pub fn queue_sample(&mut self, metric: &str, priority: &str, value: f64) {
        if priority.is_empty() || !value.is_finite() || value < 0.0 {
            return;
        }
        let q = self.queues.entry(priority.to_string()).or_default();
        if metric == crate::spec::QUEUE_DEPTH {
            q.depth = u32::try_from(value.round() as u64).unwrap_or(u32::MAX);
        } else {
            q.oldest_s = value;
        }
    }

    /// Counts a dead letter.
    pub fn dead_letter(&mut self) {
        self.dead_letters += 1;
    }

    /// Takes a gate change: open gates are kept with their due time, decided ones dropped.
    pub fn gate(&mut self, gate: &v1::Gate) {
        let Some(req) = &gate.request else {
            return;
        };
        if gate.state == GateState::Open as i32 {
            let due = req.due_at.as_ref().and_then(from_ts);
            self.gates.insert(req.gate_id.clone(), due);
        } else {
            self.gates.remove(&req.gate_id);
        }
    }

    /// Forgets workers silent for ten heartbeat intervals.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let gone = now - chrono(self.heartbeat_interval * 10);
        self.workers.retain(|_, w| w.seen >= gone && !w.stopped);
    }

    /// The studio's roles (after a studio change); workers already heard from stay.
    pub fn set_roles(&mut self, roles: Vec<String>) {
        self.roles = roles;
    }

    /// Total queued steps.
    pub fn queue_total(&self) -> u32 {
        self.queues.values().map(|q| q.depth).sum()
    }

    /// Open gates and how many are past their SLA at `now`.
    pub fn gates(&self, now: DateTime<Utc>) -> (u32, u32) {
        let open = u32::try_from(self.gates.len()).unwrap_or(u32::MAX);
        let overdue = self
            .gates
            .values()
            .filter(|d| d.is_some_and(|d| d < now))
            .count();
        (open, u32::try_from(overdue).unwrap_or(u32::MAX))
    }

    /// The health at `now`.
    pub fn snapshot(&self, now: DateTime<Utc>) -> v1::SystemHealth {
        let fresh_from = now - chrono(self.heartbeat_interval * 3);
        let mut queues: Vec<v1::QueueHealth> = Vec::new();
        let mut names: Vec<&String> = Vec::new();
        for p in PRIORITY_CLASSES {
            if let Some((k, _)) = self.queues.get_key_value(p) {
                names.push(k);
            }
        }
        names.extend(
            self.queues
                .keys()
                .filter(|k| !PRIORITY_CLASSES.contains(&k.as_str())),
        );
        for name in names {
            let q = self.queues.get(name).copied().unwrap_or_default();
            queues.push(v1::QueueHealth {
                priority: name.clone(),
                depth: q.depth,
                oldest_age: Some(prost_types::Duration {
                    seconds: q.oldest_s.trunc() as i64,
                    nanos: (q.oldest_s.fract() * 1e9) as i32,
                }),
            });
        }
        let mut roles: Vec<String> = self.roles.clone();
        for w in self.workers.values() {
            if !roles.contains(&w.role) {
                roles.push(w.role.clone());
            }
        }
        let roles = roles
            .into_iter()
            .map(|role| {
                let ws: Vec<&Worker> = self.workers.values().filter(|w| w.role == role).collect();
                let fresh: Vec<&&Worker> = ws
                    .iter()
                    .filter(|w| w.seen >= fresh_from && !w.stopped)
                    .collect();
                let (busy, total) = ws.iter().flat_map(|w| w.recent.iter()).fold(
                    (0u64, 0u64),
                    |(b, t), (_, busy, idle)| {
                        (
                            b.saturating_add(*busy),
                            t.saturating_add(busy.saturating_add(*idle)),
                        )
                    },
                );
                v1::RoleHealth {
                    in_flight: fresh.iter().map(|w| w.in_flight).sum(),
                    replicas: u32::try_from(fresh.len()).unwrap_or(u32::MAX),
                    last_heartbeat: ws.iter().map(|w| w.seen).max().map(to_ts),
                    utilization: if total > 0 {
                        busy as f64 / total as f64
                    } else {
                        0.0
                    },
                    tasks_done: ws.iter().map(|w| w.tasks_done).sum(),
                    tasks_failed: ws.iter().map(|w| w.tasks_failed).sum(),
                    role,
                }
            })
            .collect();
        let (gates_open, gates_overdue) = self.gates(now);
        v1::SystemHealth {
            at: Some(to_ts(now)),
            queues,
            roles,
            dead_letters: self.dead_letters,
            gates_open,
            gates_overdue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_773_000_000 + s, 0).single().unwrap()
    }

    fn hb(role: &str, worker: &str, busy: u64, idle: u64, in_flight: u32) -> AgentHeartbeat {
        AgentHeartbeat {
            role: role.into(),
            worker_id: worker.into(),
            state: AgentState::Ready as i32,
            in_flight,
            busy_ms: busy,
            idle_ms: idle,
            tasks_done: 3,
            ..Default::default()
        }
    }

    #[test]
    fn replicas_are_workers_heard_within_three_intervals_and_utilization_is_busy_over_all() {
        let mut h = Health::new(
            vec!["content-creator".into(), "brand-guardian".into()],
            Duration::from_secs(10),
            Duration::from_secs(900),
        );
        assert_eq!(
            h.heartbeat(
                &hb("content-creator", "content-creator.a", 8_000, 2_000, 1),
                t(0)
            ),
            Some((0.8, 10_000.0))
        );
        h.heartbeat(
            &hb("content-creator", "content-creator.b", 2_000, 8_000, 0),
            t(25),
        );
        let s = h.snapshot(t(31));
        let cc = s
            .roles
            .iter()
            .find(|r| r.role == "content-creator")
            .unwrap();
        assert_eq!(cc.replicas, 1, "a is 31 s old, b 6 s");
        assert_eq!(cc.in_flight, 0);
        assert!((cc.utilization - 0.5).abs() < 1e-9);
        assert_eq!(cc.tasks_done, 6);
        assert_eq!(cc.last_heartbeat, Some(to_ts(t(25))));
        let bg = s.roles.iter().find(|r| r.role == "brand-guardian").unwrap();
        assert_eq!((bg.replicas, bg.utilization), (0, 0.0));
        let mut stop = hb("content-creator", "content-creator.b", 0, 1_000, 0);
        stop.state = AgentState::Stopped as i32;
        h.heartbeat(&stop, t(32));
        let s = h.snapshot(t(33));
        assert_eq!(s.roles[0].replicas, 0, "a stopped worker is no replica");
    }

    #[test]
    fn queues_gates_and_dead_letters() {
        let mut h = Health::new(
            Vec::new(),
            Duration::from_secs(10),
            Duration::from_secs(900),
        );
        h.queue_sample("queue_depth", "urgent", 4.0);
        h.queue_sample("queue_oldest_seconds", "urgent", 12.5);
        h.queue_sample("queue_depth", "", 4.0);
        h.dead_letter();
        let gate = |id: &str, state: GateState, due: i64| v1::Gate {
            request: Some(v1::GateRequest {
                gate_id: id.into(),
                due_at: Some(to_ts(t(due))),
                ..Default::default()
            }),
            state: state as i32,
            ..Default::default()
        };
        h.gate(&gate("g1", GateState::Open, 100));
        h.gate(&gate("g2", GateState::Open, 10_000));
        h.gate(&gate("g3", GateState::Open, 10));
        h.gate(&gate("g3", GateState::Approved, 10));
        let s = h.snapshot(t(200));
        let names: Vec<_> = s.queues.iter().map(|q| q.priority.as_str()).collect();
        assert_eq!(names, ["feedback", "urgent", "normal"]);
        assert_eq!(s.queues[1].depth, 4);
        assert_eq!(s.queues[1].oldest_age.unwrap().seconds, 12);
        assert_eq!((s.gates_open, s.gates_overdue, s.dead_letters), (2, 1, 1));
        assert_eq!(h.queue_total(), 4);
    }
}
