//! Reviews that do not hold their run (DESIGN.md section 7, review loops).
//!
//! A batched loop (`cycle_time: "24 hours"`) holds a step `IN_REVIEW` until
//! its batch is reviewed. An urgent run (priority `urgent`, or `feedback`)
//! cannot wait a day, so there the step succeeds at once and its output joins
//! the loop's open batch *not held*:
//!
//! ```text
//!  urgent run: step done ─▶ SUCCEEDED, the run goes on
//!                └─▶ the draft is kept (tree `review_deferred`) and joins the
//!                    loop's open batch, with the held outputs of other runs
//!  the batch is reviewed ─▶ its verdict is recorded on the step as a review
//!                           round (and a `quality_score` sample and a run
//!                           event), even when the run has ended; there is no
//!                           revision: the run did not wait for it
//! ```
//!
//! The draft is stored until its batch closes, so a restart in between loses
//! nothing.

use chrono::{DateTime, Utc};
use concierto_core::grammar::CycleTime;
use concierto_core::store::{Op, StoreError};
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

use crate::engine::{Effects, Engine, metric_sample, ms};
use crate::run::{BatchItem, ReviewRound, ReviewerVerdict, RunRecord, RunState};

/// Store tree of outputs waiting for their batch without holding their run.
pub(crate) const DEFERRED: &str = "review_deferred";

/// An output of an urgent run waiting for its loop's batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deferred {
    loop_name: String,
    due_ms: i64,
    item: BatchItem,
}

fn key(run_id: &str, step_id: &str) -> Vec<u8> {
    format!("{run_id}\n{step_id}").into_bytes()
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Whether a run of this priority waits for a batched loop: urgent and
/// feedback runs do not.
pub(crate) fn held_by_batches(priority: i32) -> bool {
    !matches!(
        v1::Priority::try_from(priority),
        Ok(v1::Priority::Urgent | v1::Priority::Feedback)
    )
}

impl Engine {
    /// Whether review by `loop_name` holds `run`'s step until it passes: always
    /// for an immediate loop, and for a batched one unless the run is urgent.
    pub(crate) fn review_holds(&self, run: &RunRecord, loop_name: &str) -> bool {
        let batched = self
            .studio
            .feedback_loops
            .agent_to_agent
            .iter()
            .find(|l| l.name == loop_name)
            .is_some_and(|l| matches!(l.cycle_time, CycleTime::Every(_)));
        !batched || held_by_batches(run.priority)
    }

    /// When `loop_name`'s open batch closes: the latest batch not yet due, else
    /// one `period` from now (a batch closes one cycle after its first output).
    pub(crate) fn batch_due(
        &self,
        loop_name: &str,
        period: std::time::Duration,
        now: DateTime<Utc>,
    ) -> i64 {
        let now_ms = ms(now);
        self.pending_batches
            .keys()
            .filter(|(n, d)| n == loop_name && *d > now_ms)
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_else(|| now_ms + i64::try_from(period.as_millis()).unwrap_or(i64::MAX / 4))
    }

    /// Puts the output of `step_id` (which succeeds without waiting) into
    /// `loop_name`'s open batch, not held.
    pub(crate) fn review_later(
        &mut self,
        run: &mut RunRecord,
        step_id: &str,
        loop_name: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(CycleTime::Every(period)) = self
            .studio
            .feedback_loops
            .agent_to_agent
            .iter()
            .find(|l| l.name == loop_name)
            .map(|l| l.cycle_time)
        else {
            return Ok(());
        };
        let Some(s) = run.step(step_id) else {
            return Ok(());
        };
        let due = self.batch_due(loop_name, period, now);
        let d = Deferred {
            loop_name: loop_name.to_string(),
            due_ms: due,
            item: BatchItem {
                run_id: run.run_id.clone(),
                step_id: step_id.to_string(),
                role: s.role.clone(),
                round: u32::try_from(s.rounds.len()).unwrap_or(u32::MAX - 1) + 1,
                draft: s.output.clone(),
                not_held: true,
            },
        };
        let body = serde_json::to_vec(&d).map_err(|e| {
            StoreError::from_message(format!("encoding the deferred review of {step_id}: {e}"))
        })?;
        self.store_handle()
            .apply(DEFERRED, vec![Op::Put(key(&run.run_id, step_id), body)])?;
        self.pending_batches
            .entry((loop_name.to_string(), due))
            .or_default()
            .push((run.run_id.clone(), step_id.to_string()));
        let priority = match v1::Priority::try_from(run.priority) {
            Ok(v1::Priority::Feedback) => "feedback",
            _ => "urgent",
        };
        fx.events.push(run.event(
            Some(step_id),
            format!(
                "{loop_name} reviews in batches: this {priority} run does not wait; the output joins the batch review at {} and its verdict is recorded here",
                rfc3339(due)
            ),
            ms(now),
        ));
        Ok(())
    }

    /// The stored output of `(run, step)` waiting for `loop_name`'s batch due
    /// at `due_ms`, removed from the store; `None` when it is not one.
    pub(crate) fn take_deferred(
        &self,
        run_id: &str,
        step_id: &str,
        loop_name: &str,
        due_ms: i64,
    ) -> Result<Option<BatchItem>, StoreError> {
        let k = key(run_id, step_id);
        let Some(bytes) = self.store_handle().get(DEFERRED, &k)? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Deferred>(&bytes) {
            Ok(d) if d.loop_name == loop_name && d.due_ms == due_ms => {
                self.store_handle().apply(DEFERRED, vec![Op::Delete(k)])?;
                Ok(Some(d.item))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::error!(run = %run_id, step = %step_id, error = %e, "a deferred review does not decode; dropped");
                self.store_handle().apply(DEFERRED, vec![Op::Delete(k)])?;
                Ok(None)
            }
        }
    }

    /// Puts the stored outputs waiting for a batch back into their batches.
    pub(crate) fn recover_deferred_reviews(&mut self) -> Result<(), StoreError> {
        for (_, bytes) in self.store_handle().scan_prefix(DEFERRED, b"")? {
            match serde_json::from_slice::<Deferred>(&bytes) {
                Ok(d) => self
                    .pending_batches
                    .entry((d.loop_name, d.due_ms))
                    .or_default()
                    .push((d.item.run_id, d.item.step_id)),
                Err(e) => {
                    tracing::error!(error = %e, "a deferred review does not decode; left as it is")
                }
            }
        }
        Ok(())
    }

    /// Records the verdicts of `batch` (a batch run that ended) on the step of
    /// a run it did not hold: a review round, a `quality_score` sample and an
    /// event; or, when the batch did not succeed, an event saying so.
    pub(crate) fn record_late_verdict(
        &mut self,
        item: &BatchItem,
        batch: &RunRecord,
        verdicts: Vec<ReviewerVerdict>,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let (mut run, live) = match self.live.remove(&item.run_id) {
            Some(r) => (r, true),
            None => match self.load_run(&item.run_id)? {
                Some(r) => (r, false),
                None => return Ok(()),
            },
        };
        let loop_name = batch
            .batch
            .as_ref()
            .map(|b| b.loop_name.clone())
            .unwrap_or_default();
        let message = if batch.state != RunState::Succeeded || verdicts.is_empty() {
            format!(
                "batch review {} ended {:?} without a verdict for this output: {}",
                batch.run_id, batch.state, batch.error
            )
        } else {
            let pass_mark = self.pass_mark(&loop_name);
            let score = verdicts
                .iter()
                .map(|v| v.score)
                .fold(f64::INFINITY, f64::min);
            let score = if score.is_finite() { score } else { 0.0 };
            let passed = verdicts.iter().all(|v| v.pass && v.score >= pass_mark);
            let notes = verdicts
                .iter()
                .filter(|v| !v.notes.is_empty())
                .map(|v| format!("{}: {}", v.role, v.notes))
                .collect::<Vec<_>>()
                .join("\n");
            fx.metrics.push(metric_sample(
                "quality_score",
                score,
                "",
                &[
                    ("run", &item.run_id),
                    ("step", &item.step_id),
                    ("loop", &loop_name),
                ],
                now,
            ));
            tracing::info!(run = %item.run_id, step = %item.step_id, review_loop = %loop_name, score, passed, "late review recorded");
            if let Some(s) = run.step_mut(&item.step_id) {
                s.rounds.push(ReviewRound {
                    round: item.round,
                    verdicts,
                    score,
                    passed,
                    pass_mark,
                    at_ms: ms(now),
                    batch_run: batch.run_id.clone(),
                });
            }
            format!(
                "review by {loop_name} in {} (the run did not wait for it): score {score:.2}, pass mark {pass_mark:.2}: {}{}",
                batch.run_id,
                if passed { "passed" } else { "not passed" },
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" — {notes}")
                }
            )
        };
        fx.events
            .push(run.event(Some(&item.step_id), message, ms(now)));
        if live {
            self.finish_or_keep(run, now, fx)
        } else {
            self.persist(&run)
        }
    }
}
