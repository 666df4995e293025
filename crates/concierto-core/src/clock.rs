//! Time, injectable: services ask a [`Clock`] for the wall time so that tests can
//! run a simulated month of schedules in milliseconds.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Where services get the wall time from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock to `t` (backwards too, to simulate a skewed host).
    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The environment variable naming a [`FileClock`]'s file: set, every
/// `concierto up`/`serve` process of the test reads the time from it.
pub const CLOCK_FILE_ENV: &str = "CONCIERTO_CLOCK_FILE";

/// A clock read from a file holding one RFC 3339 time, for tests that drive
/// several processes through a month: time stands still until the test
/// writes the next instant. The file is read again only when its
/// modification time or length changes; while it is missing or unreadable
/// the last time read (or the system's, before any) is shown.
#[derive(Debug)]
pub struct FileClock {
    path: std::path::PathBuf,
    last: Mutex<Seen>,
}

/// The file's modification time and length when last read, and the time it said.
type Stamp = Option<(std::time::SystemTime, u64)>;
type Seen = (Stamp, Option<DateTime<Utc>>);

impl FileClock {
    /// A clock reading `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        FileClock {
            path: path.into(),
            last: Mutex::new((None, None)),
        }
    }

    fn read(&self) -> Option<DateTime<Utc>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if stamp.is_some()
            && stamp != last.0
            && let Some(t) = self.read()
        {
            *last = (stamp, Some(t));
        }
        last.1.unwrap_or_else(Utc::now)
    }
}

/// The process's clock: a [`FileClock`] when [`CLOCK_FILE_ENV`] is set (tests),
/// else the system's.
pub fn from_env() -> SharedClock {
    match std::env::var(CLOCK_FILE_ENV) {
        Ok(path) if !path.trim().is_empty() => {
            tracing::warn!(file = %path, "the clock is read from a file ({CLOCK_FILE_ENV}); for tests only");
            Arc::new(FileClock::new(path))
        }
        _ => Arc::new(SystemClock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(std::time::Duration::from_secs(3600));
        assert_eq!(c.now(), start + chrono::Duration::hours(1));
        c.set(start);
        assert_eq!(c.now(), start);
    }

    #[test]
    fn file_clock_shows_what_the_file_says() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("now");
        let c = FileClock::new(&f);
        let before = Utc::now();
        assert!(c.now() >= before, "no file: the system's time");
        std::fs::write(&f, "2026-03-01T09:00:00Z\n").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        assert_eq!(c.now(), t);
        std::fs::write(&f, "2026-03-02T10:30:00+00:00").unwrap();
        assert_eq!(
            c.now(),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).unwrap()
        );
        std::fs::write(&f, "garbage!").unwrap();
        assert_eq!(
            c.now(),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).unwrap()
        );
    }
}
