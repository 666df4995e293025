//! Quality gates decided by people (seed `feedback_loops.agent_to_human`,
//! DESIGN.md section 7), as part of the engine's state machine.
//!
//! ```text
//!  step output labelled with a gate's threshold (`campaign_launch`, ...)
//!     ─▶ step WAITING_GATE, run WAITING_GATE; gate OPEN (round n), due = now + sla
//!  reminders at due − remind_before (each once); at due: escalated once, the
//!  escalation contacts may decide too, and `on_breach` applies (hold: keep
//!  waiting; approve / reject: an automatic decision by `sla-policy`)
//!  decision by one of the gate's reviewers:
//!     approve          ─▶ the step succeeds once every gate of its round approved
//!     reject           ─▶ the step fails: the run takes its failure path
//!     request changes  ─▶ `<step>/changes-<n+1>` to the producer with the notes;
//!                         its output replaces the step's and the gates open again
//! ```
//!
//! Gates are stored in the `gates` tree (key = gate id) with every decision
//! (who, when, why), and the open ones are reloaded by `recover`. Every change
//! is an effect the service publishes on `event.gate.<kind>` (`opened`,
//! `reminder`, `escalated`, `decided`, and `joined` for a gate that joined a
//! batch: see `gate_batch.rs`) as a `concierto.v1.Gate`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use concierto_core::config::BreachAction;
use concierto_core::store::{Op, StoreError};
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

use crate::engine::{Effects, Engine, EngineError, ms};
use crate::review::aux_step;
use crate::run::{Aux, AuxKind, RunRecord, StepState};

pub(crate) const GATES: &str = "gates";
/// Who takes a decision made by a gate's `on_breach` policy.
pub const SLA_POLICY: &str = "sla-policy";

/// State of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateStatus {
    /// Waiting for a decision.
    Open,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// Sent back for changes (or closed because another gate of its step was).
    ChangesRequested,
}

/// A decision on a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionKind {
    /// Go on.
    Approve,
    /// Stop: the run fails.
    Reject,
    /// Revise with the notes, then ask again.
    RequestChanges,
}

/// A decision as stored: who, when, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// What was decided.
    pub kind: DecisionKind,
    /// The reviewer's id, or `sla-policy`.
    pub reviewer: String,
    /// Why.
    pub notes: String,
    /// When (unix ms).
    pub at_ms: i64,
    /// Taken by the breach policy or by the engine (closing a sibling gate).
    pub automatic: bool,
}

/// A gate as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// `<run>/<step>/<gate>/<round>`.
    pub gate_id: String,
    /// The gate's name in the configuration.
    pub gate: String,
    /// The run.
    pub run_id: String,
    /// The workflow of the run.
    pub workflow: String,
    /// The step whose output waits.
    pub step_id: String,
    /// The role that produced it.
    pub role: String,
    /// The label that opened it.
    pub label: String,
    /// Who may decide.
    pub reviewers: Vec<String>,
    /// Who is told on breach (and may decide after it).
    pub escalate_to: Vec<String>,
    /// One line for people.
    pub summary: String,
    /// The output to decide on.
    pub content: String,
    /// Opened (unix ms).
    pub opened_ms: i64,
    /// SLA end (unix ms).
    pub due_ms: i64,
    /// When reminders are due (unix ms), earliest first.
    pub remind_at_ms: Vec<i64>,
    /// Reminders sent.
    pub reminders: u32,
    /// True once the SLA passed.
    pub escalated: bool,
    /// 1, then 2 after one round of changes, ...
    pub round: u32,
    /// Its state.
    pub status: GateStatus,
    /// Every decision, oldest first.
    pub decisions: Vec<DecisionRecord>,
    /// The first gate of the batch it joined, whose decision it follows
    /// (`batch:` on the gate; see `gate_batch.rs`).
    #[serde(default)]
    pub batch_of: Option<String>,
    /// On a batch's first gate: the gates that joined it, in order.
    #[serde(default)]
    pub members: Vec<String>,
}

fn ts(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

impl GateRecord {
    /// The admin API's view.
    pub fn to_proto(&self) -> v1::Gate {
        v1::Gate {
            request: Some(v1::GateRequest {
                gate_id: self.gate_id.clone(),
                gate: self.gate.clone(),
                run_id: self.run_id.clone(),
                step_id: self.step_id.clone(),
                label: self.label.clone(),
                reviewers: self.reviewers.clone(),
                summary: crate::gate_batch::summary(self),
                content: self.content.clone(),
                opened_at: ts(self.opened_ms),
                due_at: ts(self.due_ms),
                round: self.round,
            }),
            state: match self.status {
                GateStatus::Open => v1::GateState::Open,
                GateStatus::Approved => v1::GateState::Approved,
                GateStatus::Rejected => v1::GateState::Rejected,
                GateStatus::ChangesRequested => v1::GateState::ChangesRequested,
            } as i32,
            decisions: self
                .decisions
                .iter()
                .map(|d| v1::GateDecision {
                    gate_id: self.gate_id.clone(),
                    decision: match d.kind {
                        DecisionKind::Approve => v1::GateDecisionKind::Approve,
                        DecisionKind::Reject => v1::GateDecisionKind::Reject,
                        DecisionKind::RequestChanges => v1::GateDecisionKind::RequestChanges,
                    } as i32,
                    reviewer: d.reviewer.clone(),
                    notes: d.notes.clone(),
                    decided_at: ts(d.at_ms),
                    automatic: d.automatic,
                })
                .collect(),
            reminders: self.reminders,
            escalated: self.escalated,
            batch_of: self.batch_of.clone().unwrap_or_default(),
            batch_size: crate::gate_batch::own_size(self),
        }
    }

    /// True when `who` may decide it.
    pub fn may_decide(&self, who: &str) -> bool {
        self.reviewers.iter().any(|r| r == who)
            || (self.escalated && self.escalate_to.iter().any(|r| r == who))
    }
}

/// A gate event for the service to publish: `(kind, gate)`.
pub type GateEvent = (&'static str, v1::Gate);

impl Engine {
    pub(crate) fn persist_gate(&self, g: &GateRecord) -> Result<(), StoreError> {
        let body = serde_json::to_vec(g)
            .map_err(|e| StoreError::from_message(format!("encoding gate {}: {e}", g.gate_id)))?;
        // The gate and its time index row together (see `gate_index.rs`).
        let (key, row) = crate::gate_index::gate_index_row(g)?;
        self.store_handle().apply_trees(vec![
            (GATES, vec![Op::Put(g.gate_id.as_bytes().to_vec(), body)]),
            (crate::gate_index::GATES_BY_TIME, vec![Op::Put(key, row)]),
        ])
    }

    pub(crate) fn load_gate(&self, id: &str) -> Result<Option<GateRecord>, StoreError> {
        match self.store_handle().get(GATES, id.as_bytes())? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::from_message(format!("decoding gate {id}: {e}"))),
        }
    }

    /// Loads the open gates (at recovery).
    pub(crate) fn recover_gates(&mut self) -> Result<(), StoreError> {
        let mut all = Vec::new();
        for (_, b) in self.store_handle().scan_prefix(GATES, b"")? {
            match serde_json::from_slice::<GateRecord>(&b) {
                Ok(g) => {
                    if g.status == GateStatus::Open {
                        self.open_gates.insert(g.gate_id.clone(), g.clone());
                    }
                    all.push(g);
                }
                Err(e) => {
                    tracing::error!(error = %e, "a stored gate does not decode; left as it is")
                }
            }
        }
        self.repair_gate_index(&all)
    }

    /// The step is done with its producer (and reviews): it succeeds, or waits
    /// at the quality gates its labels open.
    pub(crate) fn complete_step(
        &mut self,
        run: &mut RunRecord,
        step_id: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        self.label_proposals(run, step_id, now, fx);
        let Some(s) = run.step(step_id).cloned() else {
            return Ok(());
        };
        let gated = s.aux.is_none() && run.batch.is_none() && !run.failing;
        let labels: Vec<&String> = s.labels.iter().chain(s.result_labels.iter()).collect();
        let gates: Vec<_> = if gated {
            self.studio
                .feedback_loops
                .quality_gates
                .iter()
                .filter(|g| labels.contains(&&g.threshold))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if gates.is_empty() {
            if let Some(x) = run.step_mut(step_id) {
                x.state = StepState::Succeeded;
                x.finished_ms = ms(now);
            }
            // The step's own state change (the tracker counts content pieces on it).
            fx.events
                .push(run.event(Some(step_id), "succeeded", ms(now)));
            self.feedback_step_done(run, step_id, now, fx);
            self.advance(run, now, fx);
            return Ok(());
        }
        let round = s.gate_round.max(1);
        let now_ms = ms(now);
        if let Some(x) = run.step_mut(step_id) {
            x.state = StepState::WaitingGate;
            x.gate_round = round;
        }
        for g in gates {
            let sla_ms = i64::try_from(g.sla.as_millis()).unwrap_or(i64::MAX / 4);
            let due_ms = now_ms.saturating_add(sla_ms);
            let mut remind_at_ms: Vec<i64> = g
                .remind_before
                .iter()
                .filter(|r| **r < g.sla)
                .map(|r| due_ms - i64::try_from(r.as_millis()).unwrap_or(0))
                .collect();
            remind_at_ms.sort_unstable();
            remind_at_ms.dedup();
            let escalate_to = if g.escalate_to.is_empty() {
                let mut v: Vec<String> = Vec::new();
                for r in &g.reviewers {
                    for e in self
                        .studio
                        .reviewers
                        .get(r)
                        .map(|x| x.escalation.clone())
                        .unwrap_or_default()
                    {
                        if !v.contains(&e) && !g.reviewers.contains(&e) {
                            v.push(e);
                        }
                    }
                }
                v
            } else {
                g.escalate_to.clone()
            };
            let mut rec = GateRecord {
                gate_id: format!("{}/{}/{}/{}", run.run_id, step_id, g.name, round),
                gate: g.name.clone(),
                run_id: run.run_id.clone(),
                workflow: run.workflow.clone(),
                step_id: step_id.to_string(),
                role: s.role.clone(),
                label: g.threshold.clone(),
                reviewers: g.reviewers.clone(),
                escalate_to,
                summary: format!(
                    "{} / {} ({}): output labelled {}{}{}",
                    run.workflow,
                    step_id,
                    s.role,
                    g.threshold,
                    if round > 1 {
                        format!(", revised (round {round})")
                    } else {
                        String::new()
                    },
                    crate::changes::gate_note(&g.threshold, &s.output),
                ),
                content: run
                    .step(step_id)
                    .map(|x| x.output.clone())
                    .unwrap_or_default(),
                opened_ms: now_ms,
                due_ms,
                remind_at_ms,
                reminders: 0,
                escalated: false,
                round,
                status: GateStatus::Open,
                decisions: Vec::new(),
                batch_of: None,
                members: Vec::new(),
            };
            if self.open_gates.contains_key(&rec.gate_id) || self.load_gate(&rec.gate_id)?.is_some()
            {
                continue;
            }
            let joined = self.join_batch(&mut rec, g.batch, now)?;
            tracing::info!(gate = %rec.gate_id, reviewers = ?rec.reviewers, "quality gate opened");
            fx.events.push(run.event(
                Some(step_id),
                format!(
                    "waiting at quality gate {} for {} (label {}, SLA {:?}){}",
                    g.name,
                    g.reviewers.join(", "),
                    g.threshold,
                    g.sla,
                    self.batch_note(&rec)
                ),
                now_ms,
            ));
            self.persist_gate(&rec)?;
            // A gate that joined a batch asks nobody again (no `opened`).
            fx.gates.push(if joined {
                ("joined", self.gate_view(&rec)?)
            } else {
                ("opened", rec.to_proto())
            });
            self.open_gates.insert(rec.gate_id.clone(), rec);
        }
        Ok(())
    }

    /// Reminders and SLA breaches due at `now`.
    pub(crate) fn tick_gates(
        &mut self,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let now_ms = ms(now);
        // A gate in a batch follows its leader's clock, not its own.
        let ids: Vec<String> = self
            .open_gates
            .values()
            .filter(|g| g.batch_of.is_none())
            .map(|g| g.gate_id.clone())
            .collect();
        for id in ids {
            let Some(mut g) = self.open_gates.remove(&id) else {
                continue;
            };
            let mut changed = false;
            while (g.reminders as usize) < g.remind_at_ms.len()
                && g.remind_at_ms[g.reminders as usize] <= now_ms
                && now_ms < g.due_ms
            {
                g.reminders += 1;
                changed = true;
                tracing::info!(gate = %g.gate_id, reminders = g.reminders, "quality gate reminder");
                fx.gates.push(("reminder", g.to_proto()));
            }
            let mut breach = None;
            if !g.escalated && g.due_ms <= now_ms {
                g.escalated = true;
                // Reminders not sent before the breach are moot.
                g.reminders = g
                    .reminders
                    .max(u32::try_from(g.remind_at_ms.len()).unwrap_or(u32::MAX));
                changed = true;
                tracing::warn!(gate = %g.gate_id, escalate_to = ?g.escalate_to, "quality gate SLA passed: escalated");
                fx.gates.push(("escalated", g.to_proto()));
                breach = self
                    .studio
                    .feedback_loops
                    .quality_gates
                    .iter()
                    .find(|q| q.name == g.gate)
                    .map(|q| q.on_breach);
            }
            if changed {
                self.persist_gate(&g)?;
            }
            if let Some(run) = self.live.get_mut(&g.run_id)
                && changed
                && g.escalated
                && breach.is_some()
            {
                let ev = run.event(
                    Some(&g.step_id),
                    format!(
                        "quality gate {} passed its SLA: escalated to {}",
                        g.gate,
                        if g.escalate_to.is_empty() {
                            "nobody (no escalation contact)".to_string()
                        } else {
                            g.escalate_to.join(", ")
                        }
                    ),
                    now_ms,
                );
                fx.events.push(ev);
                // The event took a sequence number: store it with the run.
                if let Some(run) = self.live.get(&g.run_id) {
                    self.persist(run)?;
                }
            }
            let id = g.gate_id.clone();
            self.open_gates.insert(id.clone(), g);
            let kind = match breach {
                Some(BreachAction::Approve) => Some(DecisionKind::Approve),
                Some(BreachAction::Reject) => Some(DecisionKind::Reject),
                Some(BreachAction::Hold) | None => None,
            }
            .filter(|k| {
                let g = self.open_gates.get(&id);
                !g.is_some_and(|g| Engine::needs_a_person(g, *k))
            });
            if let Some(kind) = kind {
                let notes =
                    "the SLA passed without a decision; the gate's on_breach policy decided";
                self.apply_decision(&id, kind, SLA_POLICY, notes, true, now, fx)?;
            }
        }
        Ok(())
    }

    /// A person's decision, checked: the gate exists, is open, and `who` may decide it.
    pub fn decide_gate(
        &mut self,
        gate_id: &str,
        who: &str,
        kind: DecisionKind,
        notes: &str,
        now: DateTime<Utc>,
    ) -> Result<(v1::Gate, Effects), EngineError> {
        let mut fx = Effects::default();
        let Some(g) = self.open_gates.get(gate_id) else {
            return match self.load_gate(gate_id)? {
                Some(g) => Err(EngineError::GateClosed(gate_id.into(), g.status)),
                None => Err(EngineError::NotFound(gate_id.into())),
            };
        };
        if !self.may_decide_gate(g, who) {
            return Err(EngineError::NotReviewer {
                gate: gate_id.into(),
                who: who.into(),
                reviewers: g.reviewers.clone(),
            });
        }
        if kind == DecisionKind::RequestChanges && notes.trim().is_empty() {
            return Err(EngineError::Invalid(
                "a request for changes needs notes saying what to change".into(),
            ));
        }
        self.apply_decision(gate_id, kind, who, notes, false, now, &mut fx)?;
        self.dispatch(now, &mut fx)?;
        let gate = self
            .get_gate(gate_id)?
            .ok_or_else(|| EngineError::NotFound(gate_id.into()))?;
        Ok((gate, fx))
    }

    /// Records a decision on this one gate and moves its run on (see
    /// `apply_decision` for batches).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_one_decision(
        &mut self,
        gate_id: &str,
        kind: DecisionKind,
        who: &str,
        notes: &str,
        automatic: bool,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(mut g) = self.open_gates.remove(gate_id) else {
            return Ok(());
        };
        self.leave_batch_if_alone(&mut g)?;
        let now_ms = ms(now);
        g.status = match kind {
            DecisionKind::Approve => GateStatus::Approved,
            DecisionKind::Reject => GateStatus::Rejected,
            DecisionKind::RequestChanges => GateStatus::ChangesRequested,
        };
        g.decisions.push(DecisionRecord {
            kind,
            reviewer: who.to_string(),
            notes: notes.to_string(),
            at_ms: now_ms,
            automatic,
        });
        self.persist_gate(&g)?;
        tracing::info!(gate = %g.gate_id, decision = ?kind, reviewer = %who, automatic, "quality gate decided");
        fx.gates.push(("decided", g.to_proto()));
        let Some(mut run) = self.live.remove(&g.run_id) else {
            return Ok(());
        };
        let waiting = run
            .step(&g.step_id)
            .is_some_and(|s| s.state == StepState::WaitingGate && s.gate_round == g.round);
        if waiting {
            let verb = match kind {
                DecisionKind::Approve => "approved",
                DecisionKind::Reject => "rejected",
                DecisionKind::RequestChanges => "sent back for changes",
            };
            fx.events.push(run.event(
                Some(&g.step_id),
                format!(
                    "quality gate {} {verb} by {who}{}",
                    g.gate,
                    if notes.is_empty() {
                        String::new()
                    } else {
                        format!(": {notes}")
                    }
                ),
                now_ms,
            ));
            match kind {
                DecisionKind::Approve => {
                    let all_approved = self
                        .open_gates
                        .values()
                        .all(|o| !(o.run_id == g.run_id && o.step_id == g.step_id));
                    if all_approved {
                        if let Some(x) = run.step_mut(&g.step_id) {
                            x.state = StepState::Succeeded;
                            x.finished_ms = now_ms;
                        }
                        fx.events
                            .push(run.event(Some(&g.step_id), "succeeded", now_ms));
                        self.feedback_step_done(&mut run, &g.step_id, now, fx);
                        self.advance(&mut run, now, fx);
                    }
                }
                DecisionKind::Reject => {
                    self.close_sibling_gates(&g, GateStatus::Rejected, now_ms, fx)?;
                    let why = format!(
                        "rejected at quality gate {} by {who}{}",
                        g.gate,
                        if notes.is_empty() {
                            String::new()
                        } else {
                            format!(": {notes}")
                        }
                    );
                    self.fail_attempt(&mut run, &g.step_id, why, false, now, fx);
                }
                DecisionKind::RequestChanges => {
                    self.close_sibling_gates(&g, GateStatus::ChangesRequested, now_ms, fx)?;
                    self.request_changes(&mut run, &g, notes, now, fx);
                }
            }
        }
        self.finish_or_keep(run, now, fx)
    }

    /// Closes the other open gates of the same step and round.
    fn close_sibling_gates(
        &mut self,
        decided: &GateRecord,
        status: GateStatus,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let siblings: Vec<String> = self
            .open_gates
            .values()
            .filter(|o| o.run_id == decided.run_id && o.step_id == decided.step_id)
            .map(|o| o.gate_id.clone())
            .collect();
        for id in siblings {
            if let Some(mut o) = self.open_gates.remove(&id) {
                o.status = status;
                o.decisions.push(DecisionRecord {
                    kind: match status {
                        GateStatus::Rejected => DecisionKind::Reject,
                        _ => DecisionKind::RequestChanges,
                    },
                    reviewer: decided
                        .decisions
                        .last()
                        .map(|d| d.reviewer.clone())
                        .unwrap_or_default(),
                    notes: format!("closed with gate {}", decided.gate_id),
                    at_ms: now_ms,
                    automatic: true,
                });
                self.persist_gate(&o)?;
                fx.gates.push(("decided", o.to_proto()));
                self.batch_gate_closed(&o, fx)?;
            }
        }
        Ok(())
    }

    fn request_changes(
        &mut self,
        run: &mut RunRecord,
        g: &GateRecord,
        notes: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let Some(s) = run.step(&g.step_id).cloned() else {
            return;
        };
        let next = g.round + 1;
        let id = format!("{}/changes-{next}", g.step_id);
        if run.step(&id).is_some() {
            return;
        }
        let rev = aux_step(
            id.clone(),
            &s.role,
            s.task.clone(),
            s.inputs.clone(),
            Some(&s),
            Aux {
                kind: AuxKind::GateRevise,
                loop_name: g.gate.clone(),
                round: next,
                subject: g.step_id.clone(),
                draft: s.output.clone(),
                notes: format!(
                    "{} (quality gate {}): {notes}",
                    g.decisions
                        .last()
                        .map(|d| d.reviewer.as_str())
                        .unwrap_or(""),
                    g.gate
                ),
                pass_mark: 0.0,
                verdict: None,
                batch_verdicts: BTreeMap::new(),
            },
        );
        run.aux.push(rev);
        if let Some(x) = run.step_mut(&g.step_id) {
            x.state = StepState::InReview;
            x.gate_round = next;
        }
        fx.events.push(run.event(
            Some(&g.step_id),
            format!(
                "changes requested at quality gate {}: sent back to {}",
                g.gate, s.role
            ),
            ms(now),
        ));
        self.enqueue(run, &id, now, fx);
    }

    /// A revision asked for at a gate is done: its output replaces the step's
    /// and the step goes through its gates again.
    pub(crate) fn gate_revision_done(
        &mut self,
        run: &mut RunRecord,
        subject: &str,
        output: &str,
        labels: &[String],
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let open = run
            .step(subject)
            .is_some_and(|s| s.state == StepState::InReview);
        if !open {
            return Ok(());
        }
        if let Some(s) = run.step_mut(subject) {
            s.output = output.to_string();
            for l in labels {
                if !s.result_labels.contains(l) {
                    s.result_labels.push(l.clone());
                }
            }
        }
        self.complete_step(run, subject, now, fx)
    }

    /// Closes the open gates of a run that was cancelled or failed.
    pub(crate) fn close_run_gates(
        &mut self,
        run_id: &str,
        why: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .open_gates
            .values()
            .filter(|g| g.run_id == run_id)
            .map(|g| g.gate_id.clone())
            .collect();
        for id in ids {
            if let Some(mut g) = self.open_gates.remove(&id) {
                g.status = GateStatus::Rejected;
                g.decisions.push(DecisionRecord {
                    kind: DecisionKind::Reject,
                    reviewer: "orchestrator".into(),
                    notes: why.to_string(),
                    at_ms: ms(now),
                    automatic: true,
                });
                self.persist_gate(&g)?;
                fx.gates.push(("decided", g.to_proto()));
                self.batch_gate_closed(&g, fx)?;
            }
        }
        Ok(())
    }

    /// One gate.
    pub fn get_gate(&self, id: &str) -> Result<Option<v1::Gate>, StoreError> {
        if let Some(g) = self.open_gates.get(id) {
            return self.gate_view(g).map(Some);
        }
        self.load_gate(id)?.map(|g| self.gate_view(&g)).transpose()
    }
}
