//! Flood control of event triggers: `batch` and `max_runs_per_day`.
//!
//! ```yaml
//! triggers:
//!   event_based:
//!     - on_new_inspiration:
//!         source: ["siteinspire", "twitter"]
//!         workflow: "inspiration-to-concept"
//!         batch: "1 hour"        # one run per hour with all the hour's items
//!         max_runs_per_day: 6    # fires past it that (UTC) day are dropped and counted
//! ```
//!
//! `batch` applies to new-content triggers only (a window of items; windows are
//! aligned on the Unix epoch, at least a minute and at most a day long);
//! `max_runs_per_day` to every event trigger (at least 1). Both are refused on
//! scheduled triggers, whose schedule already bounds them.

use std::time::Duration;

use serde_json::{Map, Value};

use super::spans::child;
use super::walk::Walker;
use crate::grammar::parse_duration;

/// Shortest batch window.
pub const MIN_BATCH: Duration = Duration::from_secs(60);
/// Longest batch window.
pub const MAX_BATCH: Duration = Duration::from_secs(24 * 3600);
/// Largest `max_runs_per_day`.
pub const MAX_RUNS_PER_DAY: u64 = 100_000;

/// A trigger's flood control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flood {
    /// One run per window of this length, with every item of the window.
    pub batch: Option<Duration>,
    /// Runs started at most per UTC day; later fires that day are dropped and counted.
    pub max_runs_per_day: Option<u32>,
}

/// The keys this file parses.
pub const KEYS: [&str; 2] = ["batch", "max_runs_per_day"];

/// Parses `batch` and `max_runs_per_day` of trigger map `t` at `p`.
/// `new_content` says whether the trigger fires on new content, `scheduled`
/// whether it is a scheduled trigger.
pub(crate) fn parse(
    w: &mut Walker<'_>,
    t: &Map<String, Value>,
    p: &str,
    scheduled: bool,
    new_content: bool,
) -> Flood {
    let mut out = Flood::default();
    if scheduled {
        for k in KEYS {
            if t.contains_key(k) {
                w.error(
                    &child(p, k),
                    format!(
                        "`{k}` applies to event triggers only; a schedule already bounds its runs"
                    ),
                );
            }
        }
        return out;
    }
    if let Some(text) = w.opt_string(t, "batch", p) {
        let bp = child(p, "batch");
        match parse_duration(&text) {
            Ok(_) if !new_content => w.error(
                &bp,
                "`batch` applies to new-content triggers (`source: [...]`) only",
            ),
            Ok(d) if d < MIN_BATCH || d > MAX_BATCH => w.error(
                &bp,
                format!("a batch window must be between 1 minute and 24 hours, found {text:?}"),
            ),
            Ok(d) => out.batch = Some(d),
            Err(e) => w.error(&bp, format!("bad duration: {e}")),
        }
    }
    if t.contains_key("max_runs_per_day") {
        let whole = match t.get("max_runs_per_day") {
            Some(Value::Number(n)) => n.as_u64().is_some(),
            Some(Value::String(s)) => s.trim().parse::<u64>().is_ok(),
            _ => false,
        };
        // `count` reports a value that is not a whole number.
        let n = w.count(t, "max_runs_per_day", p, 0);
        let mp = child(p, "max_runs_per_day");
        if whole && (n == 0 || n > MAX_RUNS_PER_DAY) {
            w.error(
                &mp,
                format!("must be between 1 and {MAX_RUNS_PER_DAY}, found {n}"),
            );
        } else if whole {
            out.max_runs_per_day = u32::try_from(n).ok();
        }
    }
    out
}
