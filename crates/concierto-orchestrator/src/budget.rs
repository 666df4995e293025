//! Budgets (`agents.budget`, `agents.roles.<role>.budget`): what a step, a run
//! and a UTC day may spend on model calls, from the `cost_usd` the workers
//! report.
//!
//! - Before a step is dispatched, its task gets [`v1::Budget`]: the least of
//!   what is left of every limit that applies (the step's own, the run's, the
//!   role's share of the run, the day's), so an executor's tool loop stops at
//!   it mid-task with the limit's key in its reason.
//! - A run or step budget already spent fails the step at once, without an
//!   attempt, with the reason on the step; the run takes its failure path.
//! - A day budget spent *pauses* instead: the step stays queued, the run shows
//!   `PENDING` with the reason, and it goes on when the day's spend allows
//!   again (the next UTC day, or a higher limit after a reload). The first time
//!   a day budget is reached, `event.budget.day` names the reviewers of
//!   `agents.budget_owner`.
//!
//! Spend per UTC day is kept in store tree [`BUDGET`] (key: the day, JSON
//! [`DaySpend`]), so a restart keeps counting.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use concierto_core::config::Budget;
use concierto_core::store::{Op, StoreError};
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

use crate::engine::{Effects, Engine, ms};
use crate::run::RunRecord;

/// The store tree of daily spend.
pub(crate) const BUDGET: &str = "budget";

/// Days of spend kept in memory (today and yesterday are what matter).
const DAYS_KEPT: usize = 3;

/// Less than this is nothing left (float sums).
const EPSILON: f64 = 1e-9;

/// What was spent in one UTC day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaySpend {
    /// Every role's spend.
    pub total_usd: f64,
    /// Spend per role.
    #[serde(default)]
    pub by_role: BTreeMap<String, f64>,
    /// Spend per workflow.
    #[serde(default)]
    pub by_workflow: BTreeMap<String, f64>,
    /// Day limits already announced as reached (`studio`, `role:<name>`).
    #[serde(default)]
    pub reached: BTreeSet<String>,
}

/// The UTC day of `t`: `2026-12-06`.
pub(crate) fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Why a step may not go ahead.
pub(crate) enum Refusal {
    /// A run or step limit is spent: the step fails with this reason.
    Fail(String, Box<v1::BudgetReached>),
    /// A day limit is spent: the run waits; the event is set the first time.
    Pause(String, Option<Box<v1::BudgetReached>>),
}

/// One limit that applies to a step: what is left and the key that set it.
struct Left {
    usd: f64,
    limit_usd: f64,
    key: String,
    scope: &'static str,
}

fn usd(x: f64) -> String {
    format!("${x:.4}")
}

impl Engine {
    fn role_budget(&self, role: &str) -> Budget {
        self.studio
            .agents
            .roles
            .get(role)
            .map(|r| r.budget)
            .unwrap_or_default()
    }

    /// True when any budget is configured.
    fn budgets_set(&self) -> bool {
        !self.studio.agents.budget.is_empty()
            || self
                .studio
                .agents
                .roles
                .values()
                .any(|r| !r.budget.is_empty())
    }

    /// The spend of `day`, loaded from the store the first time.
    pub(crate) fn day_spend(&mut self, day: &str) -> Result<&mut DaySpend, StoreError> {
        if !self.spend.contains_key(day) {
            let loaded = match self.store_handle().get(BUDGET, day.as_bytes())? {
                Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                    tracing::error!(%day, error = %e, "stored spend does not decode; counting from zero");
                    DaySpend::default()
                }),
                None => DaySpend::default(),
            };
            self.spend.insert(day.to_string(), loaded);
            while self.spend.len() > DAYS_KEPT {
                let Some(oldest) = self.spend.keys().next().cloned() else {
                    break;
                };
                self.spend.remove(&oldest);
            }
        }
        self.spend
            .get_mut(day)
            .ok_or_else(|| StoreError::from_message("day spend vanished"))
    }

    fn persist_day(&mut self, day: &str) -> Result<(), StoreError> {
        let body = serde_json::to_vec(&*self.day_spend(day)?)
            .map_err(|e| StoreError::from_message(format!("encoding spend of {day}: {e}")))?;
        self.store_handle()
            .apply(BUDGET, vec![Op::Put(day.as_bytes().to_vec(), body)])
    }

    /// Counts `cost` of a task of `role` against `run` and the day.
    pub(crate) fn charge(
        &mut self,
        run: &mut RunRecord,
        role: &str,
        cost: f64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !cost.is_finite() || cost <= 0.0 {
            return Ok(());
        }
        run.spent_usd += cost;
        *run.spent_by_role.entry(role.to_string()).or_insert(0.0) += cost;
        concierto_telemetry::metrics::spent(role, &run.workflow, cost);
        let day = day_of(now);
        let d = self.day_spend(&day)?;
        d.total_usd += cost;
        *d.by_role.entry(role.to_string()).or_insert(0.0) += cost;
        *d.by_workflow.entry(run.workflow.clone()).or_insert(0.0) += cost;
        let (total, role_total) = (d.total_usd, d.by_role.get(role).copied().unwrap_or(0.0));
        concierto_telemetry::metrics::day_spent("studio", total);
        concierto_telemetry::metrics::day_spent(&format!("role:{role}"), role_total);
        // The limits beside the spend, for the budget alerts (deploy/prometheus).
        if let Some(limit) = self.studio.agents.budget.per_day_usd {
            concierto_telemetry::metrics::day_limit("studio", limit);
        }
        if let Some(limit) = self.role_budget(role).per_day_usd {
            concierto_telemetry::metrics::day_limit(&format!("role:{role}"), limit);
        }
        self.persist_day(&day)
    }

    /// What a task of `role` in `run` may spend, or why it may not start.
    pub(crate) fn task_budget(
        &mut self,
        run: &RunRecord,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Option<v1::Budget>, Refusal>, StoreError> {
        if !self.budgets_set() {
            return Ok(Ok(None));
        }
        let studio = self.studio.agents.budget;
        let own = self.role_budget(role);
        let day = day_of(now);
        // Only the two figures: this runs before every dispatch.
        let (day_total, role_day) = {
            let d = self.day_spend(&day)?;
            (d.total_usd, d.by_role.get(role).copied().unwrap_or(0.0))
        };
        let role_run = run.spent_by_role.get(role).copied().unwrap_or(0.0);
        let mut lefts = Vec::new();
        let mut add = |limit: Option<f64>, spent: f64, key: String, scope: &'static str| {
            if let Some(l) = limit {
                lefts.push(Left {
                    usd: l - spent,
                    limit_usd: l,
                    key,
                    scope,
                });
            }
        };
        add(
            studio.per_step_usd,
            0.0,
            "agents.budget.per_step_usd".into(),
            "step",
        );
        add(
            own.per_step_usd,
            0.0,
            format!("agents.roles.{role}.budget.per_step_usd"),
            "step",
        );
        add(
            studio.per_run_usd,
            run.spent_usd,
            "agents.budget.per_run_usd".into(),
            "run",
        );
        add(
            own.per_run_usd,
            role_run,
            format!("agents.roles.{role}.budget.per_run_usd"),
            "run",
        );
        add(
            studio.per_day_usd,
            day_total,
            "agents.budget.per_day_usd".into(),
            "day",
        );
        add(
            own.per_day_usd,
            role_day,
            format!("agents.roles.{role}.budget.per_day_usd"),
            "day",
        );
        // A spent day limit pauses; a spent run limit fails.
        if let Some(l) = lefts.iter().find(|l| l.scope == "day" && l.usd <= EPSILON) {
            let reason = format!(
                "paused: the day's budget is spent ({} of {}, {}); the run goes on when the day's spend allows (00:00 UTC)",
                usd(l.limit_usd - l.usd),
                usd(l.limit_usd),
                l.key
            );
            let mark = if l.key.starts_with("agents.roles.") {
                format!("role:{role}")
            } else {
                "studio".to_string()
            };
            let ev = self.event(l, run, role, &day, now);
            let d = self.day_spend(&day)?;
            let first = d.reached.insert(mark);
            if first {
                self.persist_day(&day)?;
            }
            return Ok(Err(Refusal::Pause(reason, first.then(|| Box::new(ev)))));
        }
        if let Some(l) = lefts.iter().find(|l| l.usd <= EPSILON) {
            let reason = format!(
                "budget reached: the run spent {} of its {} ({}); the step was not started",
                usd(l.limit_usd - l.usd),
                usd(l.limit_usd),
                l.key
            );
            let ev = self.event(l, run, role, &day, now);
            return Ok(Err(Refusal::Fail(reason, Box::new(ev))));
        }
        let least = lefts
            .iter()
            .min_by(|a, b| a.usd.total_cmp(&b.usd))
            .map(|l| v1::Budget {
                usd: l.usd,
                limit: l.key.clone(),
            });
        Ok(Ok(least))
    }

    fn event(
        &self,
        l: &Left,
        run: &RunRecord,
        role: &str,
        day: &str,
        now: DateTime<Utc>,
    ) -> v1::BudgetReached {
        v1::BudgetReached {
            scope: l.scope.to_string(),
            limit: l.key.clone(),
            limit_usd: l.limit_usd,
            spent_usd: l.limit_usd - l.usd,
            run_id: run.run_id.clone(),
            workflow: run.workflow.clone(),
            role: role.to_string(),
            day: day.to_string(),
            owners: self.studio.agents.budget_owner.clone(),
            at: Some(concierto_proto::time::timestamp(now.into())),
        }
    }

    /// Takes runs paused for a day budget up again when their next step may
    /// start now.
    pub(crate) fn resume_paused(
        &mut self,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let paused: Vec<String> = self
            .live
            .values()
            .filter(|r| !r.paused.is_empty() && !r.state.is_final())
            .map(|r| r.run_id.clone())
            .collect();
        for id in paused {
            let Some(mut run) = self.live.remove(&id) else {
                continue;
            };
            let held: Vec<(String, String)> = run
                .all_steps()
                .filter(|s| s.state == crate::run::StepState::Queued)
                .map(|s| (s.id.clone(), s.role.clone()))
                .collect();
            let mut ready = true;
            for (_, role) in &held {
                if let Err(Refusal::Pause(..)) = self.task_budget(&run, role, now)? {
                    ready = false;
                    break;
                }
            }
            if ready {
                run.paused.clear();
                tracing::info!(run = %run.run_id, "run resumed: the day's budget allows it again");
                fx.events
                    .push(run.event(None, "resumed: the day's budget allows it", ms(now)));
                for (step, _) in held {
                    self.enqueue(&mut run, &step, now, fx);
                }
            }
            self.live.insert(run.run_id.clone(), run);
        }
        Ok(())
    }
}

impl Engine {
    /// Fails or pauses `step_id` of `run` for a spent budget.
    pub(crate) fn refuse_for_budget(
        &mut self,
        run: &mut RunRecord,
        step_id: &str,
        refusal: Refusal,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        match refusal {
            Refusal::Fail(reason, ev) => {
                tracing::warn!(run = %run.run_id, step = %step_id, %reason, "step refused: budget");
                fx.budgets.push(*ev);
                self.fail_attempt(run, step_id, reason, false, now, fx);
            }
            Refusal::Pause(reason, ev) => {
                if let Some(ev) = ev {
                    tracing::warn!(run = %run.run_id, limit = %ev.limit, owners = ?ev.owners, "a day budget is spent; runs pause");
                    fx.budgets.push(*ev);
                }
                if run.paused != reason {
                    run.paused = reason.clone();
                    fx.events.push(run.event(Some(step_id), reason, ms(now)));
                }
            }
        }
    }
}

/// Most days a spend report covers.
pub const MAX_SPEND_DAYS: u32 = 90;

impl Engine {
    /// Spend of the last `days` UTC days up to `now`'s, newest first.
    pub fn spend_report(
        &mut self,
        days: u32,
        now: DateTime<Utc>,
    ) -> Result<v1::GetSpendResponse, StoreError> {
        let days = match days {
            0 => 7,
            n => n.min(MAX_SPEND_DAYS),
        };
        let mut out = Vec::new();
        for back in 0..i64::from(days) {
            let day = day_of(now - chrono::Duration::days(back));
            // Read from the store without filling the in-memory window.
            let spend = match self.spend.get(&day) {
                Some(d) => d.clone(),
                None => match self.store_handle().get(BUDGET, day.as_bytes())? {
                    Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
                    None => DaySpend::default(),
                },
            };
            out.push(v1::DaySpend {
                day,
                total_usd: spend.total_usd,
                by_role: spend.by_role.into_iter().collect(),
                by_workflow: spend.by_workflow.into_iter().collect(),
            });
        }
        Ok(v1::GetSpendResponse {
            days: out,
            per_day_usd: self.studio.agents.budget.per_day_usd.unwrap_or(0.0),
        })
    }
}
