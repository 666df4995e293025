//! A quality gate that batches several outputs into one decision: `batch:`
//! beside the seed's `threshold`, `reviewers` and `sla`.
//!
//! ```yaml
//! feedback_loops:
//!   agent_to_human:
//!     - quality_gates:
//!         - brand_approval:
//!             threshold: "major_brand_changes"
//!             reviewers: ["brand_manager"]
//!             sla: "4 hours"
//!             batch: "4 hours"   # gates opened within 4 hours of an open one join it
//! ```
//!
//! When a gate of that kind opens while another gate of the same kind, opened
//! less than the window ago, is still open (and has not passed its SLA), the
//! new gate joins it instead of asking separately: its reviewers are not asked
//! again (`event.gate.joined`, not `opened`), and a decision on the batch's
//! first gate applies to every gate of the batch. A window must be at least a
//! minute; one longer than the SLA changes nothing, as gates join only until
//! the first gate's SLA passes (a warning says so).

use std::time::Duration;

use serde_json::{Map, Value};

use super::model::QualityGate;
use super::spans::child;
use super::walk::Walker;
use crate::grammar::{format_duration, parse_duration};

/// The key this file parses.
pub const KEY: &str = "batch";
/// Shortest batch window.
pub const MIN_BATCH: Duration = Duration::from_secs(60);

/// Parses `batch` of gate map `g` at `p`, whose SLA is `sla` (zero when it
/// did not parse).
pub(crate) fn parse(
    w: &mut Walker<'_>,
    g: &Map<String, Value>,
    p: &str,
    sla: Duration,
) -> Option<Duration> {
    let text = w.opt_string(g, KEY, p)?;
    let bp = child(p, KEY);
    match parse_duration(&text) {
        Ok(d) if d < MIN_BATCH => {
            w.error(
                &bp,
                format!("a batch window must be at least 1 minute, found {text:?}"),
            );
            None
        }
        Ok(d) => {
            if !sla.is_zero() && d > sla {
                w.warning(
                    &bp,
                    format!(
                        "gates join a batch only until its first gate's SLA ({}) passes: a window of {} batches nothing more than one of {}",
                        format_duration(sla),
                        format_duration(d),
                        format_duration(sla)
                    ),
                );
            }
            Some(d)
        }
        Err(e) => {
            w.error(&bp, format!("bad duration: {e}"));
            None
        }
    }
}

/// What `batch` of `g` does, for `validate --explain`.
pub fn explain(g: &QualityGate) -> Option<String> {
    let d = g.batch?;
    Some(format!(
        "one decision for several outputs: a {name} gate opening while another {name} gate opened less than {} ago is still open (and within its SLA) joins that gate's batch instead of asking again (event.gate.joined, no new notification); approve, reject or request changes on the batch's first gate applies to every gate in it (each run goes on, fails or revises as if decided itself); deciding a joined gate alone applies to it only and takes it out of the batch; reminders, escalation and on_breach follow the first gate's SLA",
        format_duration(d),
        name = g.name,
    ))
}
