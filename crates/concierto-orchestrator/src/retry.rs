//! Retrying an ended run, and the alert for a run that failed with nothing
//! to handle it.
//!
//! ```text
//!  RetryRun{run, from_start}  (orchestrator.runs.retry, requester in Concierto-Identity)
//!    run FAILED or CANCELLED ─▶ new run `<base>~retry<N>` (N: first free)
//!      steps as the old run ran them (its stored copy, not today's studio),
//!      params, priority, trigger payload; retry_of = old run
//!      from the failed step: steps that succeeded before it keep their output
//!      (label `kept-from:<old run>`), it and every step after run again
//!      from_start: every step runs again
//!  run FAILED, no on_failure ─▶ RunFailed on event.run.failed (durable, id = run id)
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use concierto_proto::v1;

use crate::engine::{Effects, Engine, EngineError, ms};
use crate::run::{RunRecord, RunState, StepRecord, StepState};

/// How a retry's id ends: `<base>~retry<N>`.
pub const RETRY_SUFFIX: &str = "~retry";
/// Most retries of one run.
const MAX_RETRIES: u32 = 1_000;

/// The `RunFailed` alert of `run`, when it failed with no `on_failure`
/// path (a batch review run's failure goes to the runs it reviewed instead).
pub(crate) fn run_failed(run: &RunRecord, now_ms: i64) -> Option<v1::RunFailed> {
    if run.state != RunState::Failed || run.on_failure.is_some() || run.batch.is_some() {
        return None;
    }
    let step = run
        .steps
        .iter()
        .chain(run.aux.iter())
        .find(|s| s.state == StepState::Failed);
    Some(v1::RunFailed {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        trigger: run.trigger.clone(),
        step_id: step.map(|s| s.id.clone()).unwrap_or_default(),
        role: step.map(|s| s.role.clone()).unwrap_or_default(),
        error: run.error.clone(),
        at: Some(prost_types::Timestamp {
            seconds: now_ms.div_euclid(1000),
            nanos: i32::try_from(now_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
    })
}

/// A step as the workflow gave it, before it ran.
fn fresh(s: &StepRecord) -> StepRecord {
    StepRecord {
        state: StepState::Waiting,
        attempt: 0,
        deadline_ms: 0,
        retry_at_ms: 0,
        output: String::new(),
        error: String::new(),
        result_labels: Vec::new(),
        worker: String::new(),
        executor: String::new(),
        model: String::new(),
        latency_ms: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0.0,
        tool_calls: Vec::new(),
        started_ms: 0,
        finished_ms: 0,
        rounds: Vec::new(),
        batch_due_ms: 0,
        batch_run: String::new(),
        gate_round: 0,
        aux: None,
        kept_from: String::new(),
        ..s.clone()
    }
}

/// The id a retry of `run_id` gets: the first `<base>~retry<N>` not taken,
/// where `base` is the run id without its own retry suffix.
fn base_of(run_id: &str) -> &str {
    match run_id.rfind(RETRY_SUFFIX) {
        Some(i)
            if !run_id[i + RETRY_SUFFIX.len()..].is_empty()
                && run_id[i + RETRY_SUFFIX.len()..]
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
        {
            &run_id[..i]
        }
        _ => run_id,
    }
}

/// The new run of a retry of `old` (not yet started).
fn retry_record(
    old: &RunRecord,
    new_id: String,
    from_start: bool,
    who: &str,
    now_ms: i64,
) -> RunRecord {
    // Steps before the first one that did not finish keep what they made.
    let resume_at = if from_start {
        0
    } else {
        old.steps
            .iter()
            .position(|s| !s.state.is_done())
            .unwrap_or(old.steps.len())
    };
    let steps = old
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i < resume_at {
                StepRecord {
                    kept_from: old.run_id.clone(),
                    ..s.clone()
                }
            } else {
                fresh(s)
            }
        })
        .collect();
    RunRecord {
        run_id: new_id,
        workflow: old.workflow.clone(),
        trigger: old.trigger.clone(),
        requested_by: if who.is_empty() {
            old.requested_by.clone()
        } else {
            who.to_string()
        },
        priority: old.priority,
        params: old.params.clone(),
        trigger_payload: old.trigger_payload.clone(),
        state: RunState::Running,
        steps,
        on_failure: old.on_failure.as_ref().map(fresh),
        error: String::new(),
        created_ms: now_ms,
        updated_ms: now_ms,
        event_seq: 0,
        failing: false,
        aux: Vec::new(),
        batch: None,
        traceparent: String::new(),
        spent_usd: 0.0,
        spent_by_role: BTreeMap::new(),
        paused: String::new(),
        agents: old.agents.clone(),
        retry_of: old.run_id.clone(),
    }
}

impl Engine {
    /// Starts a retry of the ended run `given` names (an id or a unique
    /// prefix); returns the new run's id. See the module doc.
    pub fn retry_run(
        &mut self,
        given: &str,
        from_start: bool,
        who: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, Effects), EngineError> {
        let run_id = self.resolve_run(given)?;
        let new_id = self.next_retry_id(&run_id)?;
        let fx = self.start_retry(&run_id, new_id.clone(), from_start, who, now)?;
        Ok((new_id, fx))
    }

    /// The first free `<base>~retry<N>` for `run_id`.
    fn next_retry_id(&self, run_id: &str) -> Result<String, EngineError> {
        let base = base_of(run_id);
        for n in 1..=MAX_RETRIES {
            let id = format!("{base}{RETRY_SUFFIX}{n}");
            if !self.live.contains_key(&id) && self.load_run(&id)?.is_none() {
                return Ok(id);
            }
        }
        Err(EngineError::Precondition(format!(
            "run {base} was retried {MAX_RETRIES} times already"
        )))
    }

    /// Starts `new_id` as a retry of the stored run `run_id`.
    pub(crate) fn start_retry(
        &mut self,
        run_id: &str,
        new_id: String,
        from_start: bool,
        who: &str,
        now: DateTime<Utc>,
    ) -> Result<Effects, EngineError> {
        if self.live.contains_key(run_id) {
            return Err(EngineError::Precondition(format!(
                "run {run_id} has not ended: only a failed or cancelled run can be retried (cancel it first)"
            )));
        }
        let Some(old) = self.load_run(run_id)? else {
            return Err(EngineError::NotFound(run_id.to_string()));
        };
        if !matches!(old.state, RunState::Failed | RunState::Cancelled) {
            return Err(EngineError::Precondition(format!(
                "run {run_id} is {:?}: only a failed or cancelled run can be retried",
                old.state
            )));
        }
        if old.steps.is_empty() {
            return Err(EngineError::Precondition(format!(
                "run {run_id} has no steps to run again ({})",
                old.error
            )));
        }
        if old.batch.is_some() {
            return Err(EngineError::Precondition(format!(
                "run {run_id} is a batch review: retry the runs it reviewed instead"
            )));
        }
        if self.live.contains_key(&new_id) || self.load_run(&new_id)?.is_some() {
            return Err(EngineError::Precondition(format!(
                "run {new_id} exists already"
            )));
        }
        let mut fx = Effects::default();
        let mut run = retry_record(&old, new_id, from_start, who, ms(now));
        concierto_telemetry::metrics::run_started(&run.workflow);
        tracing::info!(run = %run.run_id, retry_of = %run_id, from_start, by = %who, "run retried");
        let kept: Vec<String> = run
            .steps
            .iter()
            .filter(|s| !s.kept_from.is_empty())
            .map(|s| s.id.clone())
            .collect();
        fx.events.push(run.event(
            None,
            format!(
                "run started: retry of {run_id}{}",
                if from_start { " from the start" } else { "" }
            ),
            ms(now),
        ));
        for id in kept {
            fx.events
                .push(run.event(Some(&id), format!("kept from {run_id}"), ms(now)));
        }
        self.advance(&mut run, now, &mut fx);
        self.finish_or_keep(run, now, &mut fx)?;
        self.dispatch(now, &mut fx)?;
        Ok(fx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_of_retries_count_on_the_base() {
        assert_eq!(base_of("daily@2026"), "daily@2026");
        assert_eq!(base_of("daily@2026~retry3"), "daily@2026");
        assert_eq!(base_of("daily@2026~retryx"), "daily@2026~retryx");
        assert_eq!(base_of("daily@2026~retry"), "daily@2026~retry");
    }
}
