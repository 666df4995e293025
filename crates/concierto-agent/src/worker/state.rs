//! The worker's pure state: the counters behind heartbeats and the restart
//! backoff. No I/O and no clock of their own: every call takes `now`, so the
//! actor ([`super::actor`]) owns the time and tests can play it.

use std::time::Duration;

use tokio::time::Instant;

use concierto_proto::v1::AgentState;

/// Counters behind heartbeats, and the in-flight count the actor admits work by.
///
/// Busy time is the time-integral of the number of tasks running, divided by
/// the capacity (summed per-slot busy time / capacity): with 4 slots, one task
/// for 1 s is 250 ms busy. So `busy_ms + idle_ms` is the wall time since the
/// previous heartbeat and `busy / (busy + idle)` is the utilisation of the
/// worker's capacity.
#[derive(Debug)]
pub(super) struct Stats {
    pub state: AgentState,
    pub capacity: u32,
    in_flight: u32,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    /// When `in_flight` last changed (or the window was last folded).
    last_change: Instant,
    /// Start of the current heartbeat window.
    window_start: Instant,
    /// Per-slot busy time in the window.
    slot_busy: Duration,
}

impl Stats {
    pub fn new(capacity: u32, now: Instant) -> Self {
        Stats {
            state: AgentState::Starting,
            capacity,
            in_flight: 0,
            tasks_done: 0,
            tasks_failed: 0,
            last_change: now,
            window_start: now,
            slot_busy: Duration::ZERO,
        }
    }

    /// Tasks running.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Slots free: how many tasks a fetch may take now.
    pub fn free(&self) -> u32 {
        self.capacity.saturating_sub(self.in_flight)
    }

    fn fold(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_change);
        self.slot_busy += dt * self.in_flight;
        self.last_change = now;
    }

    /// One task starts. False (and nothing counted) when the worker is full:
    /// the caller must hand the task back.
    pub fn start_one(&mut self, now: Instant) -> bool {
        if self.in_flight >= self.capacity {
            return false;
        }
        self.fold(now);
        self.in_flight += 1;
        true
    }

    /// One task ended (however it ended).
    pub fn end_one(&mut self, now: Instant) {
        self.fold(now);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Busy and idle time since the previous call; starts a new window.
    pub fn take_window(&mut self, now: Instant) -> (Duration, Duration) {
        self.fold(now);
        let elapsed = now.saturating_duration_since(self.window_start);
        let busy = (self.slot_busy / self.capacity.max(1)).min(elapsed);
        self.window_start = now;
        self.slot_busy = Duration::ZERO;
        (busy, elapsed - busy)
    }
}

/// First restart delay.
pub(super) const RESTART_FIRST: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub(super) const RESTART_MAX: Duration = Duration::from_secs(10);
/// A crash this long after the previous one starts the backoff afresh.
pub(super) const RESTART_CALM: Duration = Duration::from_secs(60);

/// How long a restarted worker waits before it fetches again: 100 ms after a
/// first crash, doubling with each crash that follows within a minute of the
/// previous one, at most 10 s. A worker whose jobs or fetches keep panicking
/// (a bug) so slows down instead of spinning, and one that crashes once in a
/// while restarts at once.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    last_crash: Option<Instant>,
    delay: Duration,
    /// Crashes since the worker started.
    pub restarts: u64,
}

impl Backoff {
    /// Records a crash at `now`; returns the delay before fetching again.
    pub fn crashed(&mut self, now: Instant) -> Duration {
        self.restarts += 1;
        let calm = self
            .last_crash
            .is_none_or(|t| now.saturating_duration_since(t) > RESTART_CALM);
        self.delay = if calm || self.delay.is_zero() {
            RESTART_FIRST
        } else {
            (self.delay * 2).min(RESTART_MAX)
        };
        self.last_crash = Some(now);
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_slot_time_over_capacity() {
        let t0 = Instant::now();
        let mut s = Stats::new(2, t0);
        assert!(s.start_one(t0));
        assert!(s.start_one(t0 + Duration::from_millis(100)));
        s.end_one(t0 + Duration::from_millis(300));
        s.end_one(t0 + Duration::from_millis(300));
        // slot time: 1×100 + 2×200 = 500 ms over 2 slots = 250 ms busy in 400 ms.
        let (busy, idle) = s.take_window(t0 + Duration::from_millis(400));
        assert_eq!(busy, Duration::from_millis(250));
        assert_eq!(idle, Duration::from_millis(150));
        let (busy, idle) = s.take_window(t0 + Duration::from_millis(500));
        assert_eq!((busy, idle), (Duration::ZERO, Duration::from_millis(100)));
    }

    #[test]
    fn in_flight_never_passes_the_capacity() {
        let t0 = Instant::now();
        let mut s = Stats::new(3, t0);
        let admitted = (0..10).filter(|_| s.start_one(t0)).count();
        assert_eq!(admitted, 3);
        assert_eq!((s.in_flight(), s.free()), (3, 0));
        s.end_one(t0);
        assert_eq!(s.free(), 1);
        assert!(s.start_one(t0));
        assert!(!s.start_one(t0));
        for _ in 0..10 {
            s.end_one(t0);
        }
        assert_eq!((s.in_flight(), s.free()), (0, 3));
    }

    #[test]
    fn restart_delay_doubles_to_ten_seconds_and_calms_down() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            delays.push(b.crashed(now));
            now += Duration::from_secs(1);
        }
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.restarts, 10);
        // A crash long after the previous one starts afresh.
        assert_eq!(b.crashed(now + RESTART_CALM * 2), RESTART_FIRST);
    }
}
