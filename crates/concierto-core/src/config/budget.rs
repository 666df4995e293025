//! `agents.budget`, `agents.roles.<role>.budget` and `agents.budget_owner`:
//! what model calls may cost.
//!
//! ```yaml
//! agents:
//!   budget: { per_step_usd: 0.50, per_run_usd: 2.00, per_day_usd: 20.00 }
//!   budget_owner: [creative_director]
//!   roles:
//!     content-creator: { budget: { per_run_usd: 1.00 } }
//! ```
//!
//! A limit left out is no limit; a role's own limit applies to that role's
//! spend alongside the studio's. Costs come from the executors' `prices`, so a
//! budget without prices limits nothing (`validate` warns).

use serde_json::{Map, Value};

use super::spans::child;
use super::walk::Walker;

/// Spending limits in US dollars; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// What one step (one attempt of it) may spend.
    pub per_step_usd: Option<f64>,
    /// What one run may spend over all its steps and attempts.
    pub per_run_usd: Option<f64>,
    /// What the studio (or the role) may spend in one UTC day.
    pub per_day_usd: Option<f64>,
}

impl Budget {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.per_step_usd.is_none() && self.per_run_usd.is_none() && self.per_day_usd.is_none()
    }
}

/// Keys of a budget map.
pub(super) const BUDGET_KEYS: &[&str] = &["per_step_usd", "per_run_usd", "per_day_usd"];

/// Reads a budget map at `path` (`agents.budget`, `agents.roles.x.budget`).
pub(super) fn budget(w: &mut Walker<'_>, v: Option<&Value>, path: &str) -> Budget {
    let Some(m) = w.map(v, path) else {
        return Budget::default();
    };
    w.known_keys(m, path, BUDGET_KEYS);
    Budget {
        per_step_usd: limit(w, m, "per_step_usd", path),
        per_run_usd: limit(w, m, "per_run_usd", path),
        per_day_usd: limit(w, m, "per_day_usd", path),
    }
}

fn limit(w: &mut Walker<'_>, m: &Map<String, Value>, key: &str, path: &str) -> Option<f64> {
    let n = w.number(m, key, path)?;
    if !n.is_finite() || n <= 0.0 {
        w.error(
            &child(path, key),
            format!("must be an amount of US dollars above 0, found {n}"),
        );
        return None;
    }
    Some(n)
}

/// Cross-checks: owners are reviewers; a budget with no priced executor
/// limits nothing.
pub(super) fn check(w: &mut Walker<'_>, s: &super::Studio) {
    for (i, r) in s.agents.budget_owner.iter().enumerate() {
        if !s.reviewers.contains_key(r) {
            w.error(
                &super::spans::item("agents.budget_owner", i),
                format!("unknown reviewer {r:?}: add them under `reviewers`"),
            );
        }
    }
    let any_budget =
        !s.agents.budget.is_empty() || s.agents.roles.values().any(|r| !r.budget.is_empty());
    let priced = s.agents.executors.values().any(|e| e.prices.is_some());
    if any_budget && !priced {
        w.warning(
            "agents.budget",
            "no executor in agents.executors has `prices`, so every call costs $0 and no budget is ever reached",
        );
    }
    if s.agents.budget.per_day_usd.is_some() && s.agents.budget_owner.is_empty() {
        w.warning(
            "agents.budget_owner",
            "agents.budget.per_day_usd is set but nobody is named to hear when it is reached",
        );
    }
}
