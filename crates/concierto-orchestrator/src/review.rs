//! Agent-to-agent review loops (seed `feedback_loops.agent_to_agent`, DESIGN.md
//! section 7), as part of the engine's state machine.
//!
//! A step whose workflow names a loop (`review: <loop>`) does not succeed when
//! its producer answers: its output goes to the loop's reviewers first.
//!
//! ```text
//!  step done ─▶ IN_REVIEW, round 1
//!     immediate loop: one review step per reviewer (`<step>/review-<n>/<role>`)
//!     batched loop:   joins the loop's open batch; when the cycle ends, one
//!                     batch run (`review-batch:<loop>@<time>`) reviews every
//!                     output collected, one step per reviewer
//!  every verdict in ─▶ round passes if every reviewer passes it and the lowest
//!                      score reaches the pass mark
//!     passed                       ─▶ SUCCEEDED (verdict labels added)
//!     not passed, rounds remain    ─▶ `<step>/revise-<n+1>` to the producer with
//!                                     the notes ─▶ its output is reviewed again
//!     not passed, last round       ─▶ `on_exhausted: fail`: the step fails;
//!                                     `escalate`: SUCCEEDED with the label
//!                                     `review_escalated`, for a human gate
//! ```
//!
//! Reviewers: when a loop lists as many reviewers as producers, they pair by
//! position (the seed's `producer: [content-creator, ui-designer]`, `reviewer:
//! [brand-guardian, test-writer-fixer]`: brand-guardian reviews content-creator);
//! otherwise every reviewer reviews every producer. The pass mark is the loop's
//! `pass_mark`, else the `quality_score` progress metric's target, else 0.85.
//! A batch closes one `cycle_time` after the first output joined it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use concierto_core::config::{ContextItem, ContextKind, Exhausted, Goal, ReviewLoop};
use concierto_core::grammar::CycleTime;
use concierto_core::store::StoreError;
use concierto_core::structured::{self, FoundVerdict};
use concierto_proto::v1;

use crate::engine::{Effects, Engine, metric_sample, ms};
use crate::run::{
    Aux, AuxKind, BatchInfo, BatchItem, ReviewRound, ReviewerVerdict, RunRecord, RunState,
    StepRecord, StepState,
};

/// The label an output gets when its loop runs out of rounds and escalates.
pub const REVIEW_ESCALATED: &str = "review_escalated";
/// The pass mark when neither the loop nor `quality_score` sets one.
pub const DEFAULT_PASS_MARK: f64 = 0.85;
/// Run ids of batch runs start with this.
pub const BATCH_RUN_PREFIX: &str = "review-batch:";

fn found(role: &str, worker: &str, f: FoundVerdict) -> ReviewerVerdict {
    ReviewerVerdict {
        role: role.to_string(),
        worker: worker.to_string(),
        pass: f.pass,
        score: f.score,
        notes: f.notes,
        reasons: f.reasons,
        labels: f.labels,
    }
}

fn merge_labels(into: &mut Vec<String>, more: &[String]) {
    for l in more {
        if !into.contains(l) {
            into.push(l.clone());
        }
    }
}

pub(crate) fn aux_step(
    id: String,
    role: &str,
    task: String,
    inputs: Vec<String>,
    subject: Option<&StepRecord>,
    aux: Aux,
) -> StepRecord {
    StepRecord {
        id,
        role: role.to_string(),
        task,
        inputs,
        labels: subject.map(|s| s.labels.clone()).unwrap_or_default(),
        timeout_ms: subject.map_or(15 * 60 * 1000, |s| s.timeout_ms),
        retries: subject.map_or(2, |s| s.retries),
        state: StepState::Queued,
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
        review: None,
        rounds: Vec::new(),
        batch_due_ms: 0,
        batch_run: String::new(),
        gate_round: 0,
        context: aux_context(&aux, subject),
        aux: Some(aux),
        kept_from: String::new(),
    }
}

/// What a step a loop adds asks for: a revision gets the data its producer
/// had; a reviewer gets the brand guide.
fn aux_context(aux: &Aux, subject: Option<&StepRecord>) -> Vec<ContextItem> {
    match aux.kind {
        AuxKind::Revise | AuxKind::GateRevise => {
            subject.map(|s| s.context.clone()).unwrap_or_default()
        }
        AuxKind::Review | AuxKind::BatchReview => vec![ContextItem::new(ContextKind::Brand)],
    }
}

impl Engine {
    fn loop_def(&self, name: &str) -> Option<&ReviewLoop> {
        self.studio
            .feedback_loops
            .agent_to_agent
            .iter()
            .find(|l| l.name == name)
    }

    /// The pass mark of a loop: its own, else the `quality_score` target, else 0.85.
    pub fn pass_mark(&self, loop_name: &str) -> f64 {
        self.loop_def(loop_name)
            .and_then(|l| l.pass_mark)
            .or_else(|| {
                self.studio
                    .progress_metrics
                    .iter()
                    .find(|m| m.name == "quality_score")
                    .and_then(|m| match m.goal {
                        Goal::Target(t) => Some(t.value.as_f64()),
                        Goal::Improvement(_) => None,
                    })
            })
            .filter(|x| (0.0..=1.0).contains(x))
            .unwrap_or(DEFAULT_PASS_MARK)
    }

    /// The roles that review `producer`'s output in a loop.
    pub fn reviewers_for(&self, loop_name: &str, producer: &str) -> Vec<String> {
        let Some(l) = self.loop_def(loop_name) else {
            return Vec::new();
        };
        if l.reviewers.len() == l.producers.len()
            && let Some(i) = l.producers.iter().position(|p| p == producer)
        {
            return vec![l.reviewers[i].clone()];
        }
        l.reviewers.clone()
    }

    /// A successful result: a plain step succeeds (or goes to review); a loop
    /// step moves its loop on.
    pub(crate) fn step_succeeded(
        &mut self,
        run: &mut RunRecord,
        r: &v1::TaskResult,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(step) = run.step(&r.step_id) else {
            return Ok(());
        };
        let role = step.role.clone();
        let aux = step.aux.clone();
        let review = step
            .review
            .clone()
            .filter(|l| self.loop_def(l).is_some() && !run.failing);
        // A batched loop does not hold an urgent run (see `review_later.rs`).
        let (review, later) = match review {
            Some(l) if aux.is_none() && !self.review_holds(run, &l) => (None, Some(l)),
            other => (other, None),
        };
        match aux {
            None => {
                if let Some(s) = run.step_mut(&r.step_id) {
                    s.output = r.output.clone();
                    s.result_labels = r.labels.clone();
                    s.error.clear();
                    if review.is_some() {
                        s.state = StepState::InReview;
                    }
                }
                tracing::debug!(run = %run.run_id, step = %r.step_id, %role, worker = %r.worker_id, "step succeeded");
                let done = format!("done by {}", r.worker_id);
                match review {
                    Some(l) => {
                        // The event carries IN_REVIEW: the step was announced
                        // DISPATCHED once, when it was.
                        fx.events.push(run.event(Some(&r.step_id), done, ms(now)));
                        self.begin_round(run, &r.step_id, &l, 1, now, fx);
                    }
                    None => {
                        if let Some(l) = later {
                            self.review_later(run, &r.step_id, &l, now, fx)?;
                        }
                        // One event for the step's new state, saying who did it
                        // (not a second one while it still reads DISPATCHED).
                        let before = fx.events.len();
                        self.complete_step(run, &r.step_id, now, fx)?;
                        match fx.events[before..]
                            .iter_mut()
                            .find(|e| e.step_id == r.step_id && e.message == "succeeded")
                        {
                            Some(ev) => ev.message = done,
                            None => fx.events.push(run.event(Some(&r.step_id), done, ms(now))),
                        }
                    }
                }
            }
            Some(a) if a.kind == AuxKind::Review => {
                let verdict = r
                    .verdict
                    .as_ref()
                    .filter(|v| v.score.is_finite())
                    .map(|v| FoundVerdict {
                        pass: v.pass,
                        score: v.score.clamp(0.0, 1.0),
                        notes: v.notes.clone(),
                        reasons: v.reasons.clone(),
                        labels: r.labels.clone(),
                    })
                    .or_else(|| structured::verdict(&r.output));
                let Some(v) = verdict else {
                    let why = "the reviewer answered without a verdict (a JSON object with pass, score, notes)".to_string();
                    self.fail_attempt(run, &r.step_id, why, true, now, fx);
                    return Ok(());
                };
                let v = found(&role, &r.worker_id, v);
                let message = format!(
                    "review by {role}: score {:.2}, {}{}",
                    v.score,
                    if v.pass { "pass" } else { "fail" },
                    if v.notes.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", v.notes)
                    }
                );
                if let Some(s) = run.step_mut(&r.step_id) {
                    s.state = StepState::Succeeded;
                    s.output = r.output.clone();
                    s.result_labels = r.labels.clone();
                    s.finished_ms = ms(now);
                    if let Some(x) = s.aux.as_mut() {
                        x.verdict = Some(v);
                    }
                }
                fx.events
                    .push(run.event(Some(&r.step_id), message, ms(now)));
                self.round_done(run, &a.subject, a.round, now, fx)?;
            }
            Some(a) if a.kind == AuxKind::GateRevise => {
                if let Some(s) = run.step_mut(&r.step_id) {
                    s.state = StepState::Succeeded;
                    s.output = r.output.clone();
                    s.result_labels = r.labels.clone();
                    s.finished_ms = ms(now);
                }
                fx.events.push(run.event(
                    Some(&r.step_id),
                    format!("changes made by {}", r.worker_id),
                    ms(now),
                ));
                self.gate_revision_done(run, &a.subject, &r.output, &r.labels, now, fx)?;
            }
            Some(a) if a.kind == AuxKind::Revise => {
                if let Some(s) = run.step_mut(&r.step_id) {
                    s.state = StepState::Succeeded;
                    s.output = r.output.clone();
                    s.result_labels = r.labels.clone();
                    s.finished_ms = ms(now);
                }
                fx.events.push(run.event(
                    Some(&r.step_id),
                    format!("revised by {}", r.worker_id),
                    ms(now),
                ));
                let open = run
                    .step(&a.subject)
                    .is_some_and(|s| s.state == StepState::InReview);
                if open {
                    if let Some(s) = run.step_mut(&a.subject) {
                        s.output = r.output.clone();
                        merge_labels(&mut s.result_labels, &r.labels);
                    }
                    self.begin_round(run, &a.subject, &a.loop_name, a.round, now, fx);
                }
            }
            Some(_) => {
                // A batch review: one verdict per draft it was given.
                let mine: Vec<String> = run
                    .batch
                    .as_ref()
                    .map(|b| {
                        b.items
                            .iter()
                            .filter(|i| self.reviewers_for(&b.loop_name, &i.role).contains(&role))
                            .map(BatchItem::name)
                            .collect()
                    })
                    .unwrap_or_default();
                let given: BTreeMap<String, FoundVerdict> = structured::batch_verdicts(&r.output)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let missing: Vec<&String> =
                    mine.iter().filter(|n| !given.contains_key(*n)).collect();
                if !missing.is_empty() {
                    let why = format!(
                        "the batch review gave no verdict for {} of {} draft(s) ({}); expected {{\"items\": [{{\"subject\", \"pass\", \"score\", \"notes\"}}]}}",
                        missing.len(),
                        mine.len(),
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    self.fail_attempt(run, &r.step_id, why, true, now, fx);
                    return Ok(());
                }
                let verdicts: BTreeMap<String, ReviewerVerdict> = given
                    .into_iter()
                    .filter(|(k, _)| mine.contains(k))
                    .map(|(k, v)| (k, found(&role, &r.worker_id, v)))
                    .collect();
                let passed = verdicts.values().filter(|v| v.pass).count();
                if let Some(s) = run.step_mut(&r.step_id) {
                    s.state = StepState::Succeeded;
                    s.output = r.output.clone();
                    s.finished_ms = ms(now);
                    if let Some(x) = s.aux.as_mut() {
                        x.batch_verdicts = verdicts;
                    }
                }
                fx.events.push(run.event(
                    Some(&r.step_id),
                    format!(
                        "batch reviewed by {}: {passed} of {} draft(s) passed by the reviewer",
                        r.worker_id,
                        mine.len()
                    ),
                    ms(now),
                ));
                self.advance(run, now, fx);
            }
        }
        Ok(())
    }

    /// Starts review round `round` of `subject`'s output.
    fn begin_round(
        &mut self,
        run: &mut RunRecord,
        subject: &str,
        loop_name: &str,
        round: u32,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let Some(l) = self.loop_def(loop_name).cloned() else {
            return;
        };
        let Some(s) = run.step(subject).cloned() else {
            return;
        };
        let pass_mark = self.pass_mark(loop_name);
        match l.cycle_time {
            CycleTime::Immediate => {
                let reviewers = self.reviewers_for(loop_name, &s.role);
                for reviewer in &reviewers {
                    let id = format!("{subject}/review-{round}/{reviewer}");
                    if run.step(&id).is_some() {
                        continue;
                    }
                    let task = format!(
                        "Review the output of step {subject} ({}) for the {loop_name} loop, round {round} of {}: \
                         score it in 0..1 against your standards (it passes at {pass_mark:.2}) and say what must change.",
                        s.role, l.max_rounds
                    );
                    run.aux.push(aux_step(
                        id.clone(),
                        reviewer,
                        task,
                        Vec::new(),
                        Some(&s),
                        Aux {
                            kind: AuxKind::Review,
                            loop_name: loop_name.to_string(),
                            round,
                            subject: subject.to_string(),
                            draft: s.output.clone(),
                            notes: String::new(),
                            pass_mark,
                            verdict: None,
                            batch_verdicts: BTreeMap::new(),
                        },
                    ));
                    self.enqueue(run, &id, now, fx);
                }
                fx.events.push(run.event(
                    Some(subject),
                    format!(
                        "review round {round} of {} ({loop_name}): to {}",
                        l.max_rounds,
                        reviewers.join(", ")
                    ),
                    ms(now),
                ));
            }
            CycleTime::Every(period) => {
                let now_ms = ms(now);
                let due = self.batch_due(loop_name, period, now);
                self.pending_batches
                    .entry((loop_name.to_string(), due))
                    .or_default()
                    .push((run.run_id.clone(), subject.to_string()));
                if let Some(x) = run.step_mut(subject) {
                    x.batch_due_ms = due;
                    x.batch_run.clear();
                }
                let at = DateTime::<Utc>::from_timestamp_millis(due)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                fx.events.push(run.event(
                    Some(subject),
                    format!(
                        "review round {round} of {} ({loop_name}): waits for the batch review at {at}",
                        l.max_rounds
                    ),
                    now_ms,
                ));
            }
        }
    }

    /// Concludes round `round` of `subject` once every reviewer answered.
    fn round_done(
        &mut self,
        run: &mut RunRecord,
        subject: &str,
        round: u32,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let reviews: Vec<&StepRecord> = run
            .aux
            .iter()
            .filter(|s| {
                s.aux.as_ref().is_some_and(|a| {
                    a.kind == AuxKind::Review && a.subject == subject && a.round == round
                })
            })
            .collect();
        if reviews.iter().any(|s| s.state != StepState::Succeeded) {
            return Ok(());
        }
        let verdicts: Vec<ReviewerVerdict> = reviews
            .iter()
            .filter_map(|s| s.aux.as_ref().and_then(|a| a.verdict.clone()))
            .collect();
        self.conclude_round(run, subject, round, verdicts, "", now, fx)
    }

    /// Decides a round from its verdicts: pass, revise, fail or escalate.
    #[allow(clippy::too_many_arguments)]
    fn conclude_round(
        &mut self,
        run: &mut RunRecord,
        subject: &str,
        round: u32,
        verdicts: Vec<ReviewerVerdict>,
        batch_run: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(s) = run
            .step(subject)
            .filter(|s| s.state == StepState::InReview)
            .cloned()
        else {
            return Ok(());
        };
        let Some(loop_name) = s.review.clone() else {
            return Ok(());
        };
        let Some(l) = self.loop_def(&loop_name).cloned() else {
            return Ok(());
        };
        let pass_mark = self.pass_mark(&loop_name);
        let score = verdicts
            .iter()
            .map(|v| v.score)
            .fold(f64::INFINITY, f64::min);
        let score = if score.is_finite() { score } else { 0.0 };
        let scored = !verdicts.is_empty();
        let passed =
            !verdicts.is_empty() && verdicts.iter().all(|v| v.pass && v.score >= pass_mark);
        let notes = verdicts
            .iter()
            .filter(|v| !v.notes.is_empty())
            .map(|v| format!("{}: {}", v.role, v.notes))
            .collect::<Vec<_>>()
            .join("\n");
        let labels: Vec<String> = verdicts.iter().flat_map(|v| v.labels.clone()).collect();
        if let Some(x) = run.step_mut(subject) {
            x.rounds.push(ReviewRound {
                round,
                verdicts,
                score,
                passed,
                pass_mark,
                at_ms: ms(now),
                batch_run: batch_run.to_string(),
            });
            merge_labels(&mut x.result_labels, &labels);
            x.batch_due_ms = 0;
        }
        let head = format!(
            "review round {round} of {} ({loop_name}): score {score:.2}, pass mark {pass_mark:.2}",
            l.max_rounds
        );
        tracing::info!(
            run = %run.run_id,
            step = %subject,
            review_loop = %loop_name,
            round,
            score,
            pass_mark,
            passed,
            // The notes are stored with the step; the log line keeps their start.
            notes = %notes.chars().take(100).collect::<String>(),
            "review round decided"
        );
        if scored {
            // For the tracker's quality_score: the round's lowest score.
            fx.metrics.push(metric_sample(
                "quality_score",
                score,
                "",
                &[
                    ("run", &run.run_id),
                    ("step", subject),
                    ("loop", &loop_name),
                ],
                now,
            ));
        }
        if passed {
            fx.events
                .push(run.event(Some(subject), format!("{head}: passed"), ms(now)));
            return self.complete_step(run, subject, now, fx);
        }
        if round < l.max_rounds {
            let next = round + 1;
            let id = format!("{subject}/revise-{next}");
            if run.step(&id).is_none() {
                run.aux.push(aux_step(
                    id.clone(),
                    &s.role,
                    s.task.clone(),
                    s.inputs.clone(),
                    Some(&s),
                    Aux {
                        kind: AuxKind::Revise,
                        loop_name: loop_name.clone(),
                        round: next,
                        subject: subject.to_string(),
                        draft: s.output.clone(),
                        notes: notes.clone(),
                        pass_mark,
                        verdict: None,
                        batch_verdicts: BTreeMap::new(),
                    },
                ));
                fx.events.push(run.event(
                    Some(subject),
                    format!("{head}: sent back to {} — {notes}", s.role),
                    ms(now),
                ));
                self.enqueue(run, &id, now, fx);
            }
            return Ok(());
        }
        match l.on_exhausted {
            Exhausted::Fail => {
                let why = format!(
                    "review loop {loop_name}: not passed after {round} round(s) (last score {score:.2}, pass mark {pass_mark:.2}): {notes}"
                );
                self.fail_attempt(run, subject, why, false, now, fx);
                Ok(())
            }
            Exhausted::Escalate => {
                if let Some(x) = run.step_mut(subject) {
                    merge_labels(&mut x.result_labels, &[REVIEW_ESCALATED.to_string()]);
                }
                fx.events.push(run.event(
                    Some(subject),
                    format!("{head}: not passed after the last round; escalated to people (label {REVIEW_ESCALATED})"),
                    ms(now),
                ));
                self.complete_step(run, subject, now, fx)
            }
        }
    }

    /// Cancels the open review and revision steps about `subject`, releasing
    /// the ones in flight.
    pub(crate) fn cancel_loop_steps(
        &mut self,
        run: &mut RunRecord,
        subject: &str,
        now: DateTime<Utc>,
    ) {
        let mut released = Vec::new();
        for s in run.aux.iter_mut() {
            let about = s.aux.as_ref().is_some_and(|a| a.subject == subject);
            if about && s.state.is_open() {
                if s.state == StepState::Dispatched {
                    released.push(s.role.clone());
                }
                s.state = StepState::Cancelled;
                s.finished_ms = ms(now);
            }
        }
        for role in released {
            self.release(&role);
        }
    }

    /// Starts a batch run for every batch whose cycle ended.
    pub(crate) fn close_due_batches(
        &mut self,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let now_ms = ms(now);
        let due: Vec<(String, i64)> = self
            .pending_batches
            .keys()
            .filter(|(_, d)| *d <= now_ms)
            .cloned()
            .collect();
        for key in due {
            let members = self.pending_batches.remove(&key).unwrap_or_default();
            let (loop_name, due_ms) = key;
            let id = format!(
                "{BATCH_RUN_PREFIX}{loop_name}@{}",
                DateTime::<Utc>::from_timestamp_millis(due_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_else(|| due_ms.to_string())
            );
            // Several partitions: an id of this partition's (one batch per
            // loop and due time in each, looked up where it lives).
            let id = concierto_core::partition::id_in(&id, self.partition.0, self.partition.1);
            let mut items = Vec::new();
            let mut subjects: Vec<RunRecord> = Vec::new();
            for (run_id, step_id) in members {
                // An urgent run's output, not held (see `review_later.rs`).
                if let Some(item) = self.take_deferred(&run_id, &step_id, &loop_name, due_ms)? {
                    items.push(item);
                    continue;
                }
                // Outputs of one run may share a batch: take the run once.
                let mut run = match subjects.iter().position(|r| r.run_id == run_id) {
                    Some(i) => subjects.swap_remove(i),
                    None => match self.live.remove(&run_id) {
                        Some(r) => r,
                        None => continue,
                    },
                };
                let item = run
                    .step(&step_id)
                    .filter(|s| {
                        s.state == StepState::InReview
                            && s.batch_due_ms == due_ms
                            && s.batch_run.is_empty()
                    })
                    .map(|s| BatchItem {
                        run_id: run_id.clone(),
                        step_id: step_id.clone(),
                        role: s.role.clone(),
                        round: u32::try_from(s.rounds.len()).unwrap_or(u32::MAX - 1) + 1,
                        draft: s.output.clone(),
                        not_held: false,
                    });
                if let Some(item) = item {
                    if let Some(s) = run.step_mut(&step_id) {
                        s.batch_run = id.clone();
                    }
                    fx.events.push(run.event(
                        Some(&step_id),
                        format!("in batch review {id}"),
                        now_ms,
                    ));
                    items.push(item);
                }
                subjects.push(run);
            }
            if !items.is_empty() && !self.live.contains_key(&id) {
                self.start_batch_run(&id, &loop_name, items, now, fx)?;
            }
            for run in subjects {
                self.finish_or_keep(run, now, fx)?;
            }
        }
        Ok(())
    }

    fn start_batch_run(
        &mut self,
        id: &str,
        loop_name: &str,
        items: Vec<BatchItem>,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let pass_mark = self.pass_mark(loop_name);
        let mut reviewers: Vec<String> = Vec::new();
        for i in &items {
            for r in self.reviewers_for(loop_name, &i.role) {
                if !reviewers.contains(&r) {
                    reviewers.push(r);
                }
            }
        }
        let steps = reviewers
            .iter()
            .map(|reviewer| {
                let mut s = aux_step(
                    format!("review/{reviewer}"),
                    reviewer,
                    format!(
                        "Review each draft of this {loop_name} batch (one input per draft, named <run>/<step>): \
                         score each in 0..1 (a draft passes at {pass_mark:.2}) and say what must change."
                    ),
                    Vec::new(),
                    None,
                    Aux {
                        kind: AuxKind::BatchReview,
                        loop_name: loop_name.to_string(),
                        round: 0,
                        subject: String::new(),
                        draft: String::new(),
                        notes: String::new(),
                        pass_mark,
                        verdict: None,
                        batch_verdicts: BTreeMap::new(),
                    },
                );
                s.state = StepState::Waiting;
                s
            })
            .collect();
        let n = items.len();
        let mut run = RunRecord {
            run_id: id.to_string(),
            workflow: format!("{BATCH_RUN_PREFIX}{loop_name}"),
            trigger: String::new(),
            requested_by: "orchestrator".into(),
            priority: v1::Priority::Normal as i32,
            params: BTreeMap::new(),
            trigger_payload: String::new(),
            state: RunState::Running,
            steps,
            on_failure: None,
            error: String::new(),
            created_ms: ms(now),
            updated_ms: ms(now),
            event_seq: 0,
            failing: false,
            aux: Vec::new(),
            batch: Some(BatchInfo {
                loop_name: loop_name.to_string(),
                items,
                settled: false,
            }),
            // A batch serves many runs: each of its dispatches starts a trace.
            traceparent: String::new(),
            spent_usd: 0.0,
            spent_by_role: BTreeMap::new(),
            paused: String::new(),
            agents: None,
            retry_of: String::new(),
        };
        concierto_telemetry::metrics::run_started(&run.workflow);
        tracing::info!(run = %id, %loop_name, drafts = n, "batch review started");
        fx.events.push(run.event(
            None,
            format!("run started: batch review of {n} draft(s) for {loop_name}"),
            ms(now),
        ));
        self.advance(&mut run, now, fx);
        self.finish_or_keep(run, now, fx)
    }

    /// A batch run ended: its verdicts go to the runs it reviewed, or, when it
    /// failed or was cancelled, those steps fail with its reason.
    pub(crate) fn settle_batch(
        &mut self,
        batch: &mut RunRecord,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(info) = batch.batch.as_mut() else {
            return Ok(());
        };
        info.settled = true;
        let items = info.items.clone();
        for item in items {
            let verdicts_of = |name: &str| -> Vec<ReviewerVerdict> {
                batch
                    .steps
                    .iter()
                    .filter_map(|s| s.aux.as_ref().and_then(|a| a.batch_verdicts.get(name)))
                    .cloned()
                    .collect()
            };
            if item.not_held {
                let verdicts = verdicts_of(&item.name());
                self.record_late_verdict(&item, batch, verdicts, now, fx)?;
                continue;
            }
            let Some(mut run) = self.live.remove(&item.run_id) else {
                continue;
            };
            let waiting = run
                .step(&item.step_id)
                .is_some_and(|s| s.state == StepState::InReview && s.batch_run == batch.run_id);
            if waiting {
                if batch.state == RunState::Succeeded {
                    let verdicts = verdicts_of(&item.name());
                    self.conclude_round(
                        &mut run,
                        &item.step_id,
                        item.round,
                        verdicts,
                        &batch.run_id,
                        now,
                        fx,
                    )?;
                } else {
                    let why = format!(
                        "batch review {} ended {:?}: {}",
                        batch.run_id, batch.state, batch.error
                    );
                    self.fail_attempt(&mut run, &item.step_id, why, false, now, fx);
                }
            }
            self.finish_or_keep(run, now, fx)?;
        }
        Ok(())
    }
}
