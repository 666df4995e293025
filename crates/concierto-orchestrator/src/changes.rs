//! Proposals become changes (DESIGN.md section 5, "live changes"): a step
//! whose output carries a change block ([`concierto_core::config::changes`])
//! is labelled [`CHANGE_LABEL`], so the quality gate with that `threshold`
//! asks its reviewers. Approving it writes the change to the studio file
//! before the decision is recorded:
//!
//! ```text
//!  step output with ```json {"changes": [...]}```  ─▶ label studio_change ─▶ gate OPEN
//!  approve by a reviewer of the gate
//!     ─▶ apply_to_file (validated whole, atomic write; on error the gate stays
//!        open and the reviewer gets the file:line errors)
//!     ─▶ decision recorded, the run goes on; the engine takes the new studio
//!     ─▶ effects: `studio.changed` (every process reloads its services) and
//!        `event.studio.changed` (who approved what, durable)
//! ```
//!
//! A change gate is never decided by its `on_breach` policy's approval: a
//! change needs a person (the gate keeps waiting, said once in the run).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use concierto_core::config::Studio;
use concierto_core::config::changes::{self, Applied, CHANGE_LABEL, Proposal};
use concierto_core::store::StoreError;
use concierto_proto::v1;

use crate::engine::{Effects, Engine, EngineError, ms};
use crate::gates::{DecisionKind, GateRecord};
use crate::run::RunRecord;

/// What the orchestrator publishes after an approved change.
#[derive(Debug, Clone)]
pub struct StudioPublication {
    /// On `studio.changed`: every process applies it.
    pub announce: v1::StudioChanged,
    /// On `event.studio.changed`: the record of who approved what.
    pub applied: v1::StudioChangeApplied,
}

impl Engine {
    /// Labels the step's output [`CHANGE_LABEL`] when it proposes changes
    /// and a quality gate takes that label; says in the run why a proposal
    /// is ignored.
    pub(crate) fn label_proposals(
        &self,
        run: &mut RunRecord,
        step_id: &str,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) {
        let Some(step) = run.step(step_id) else {
            return;
        };
        if step.aux.is_some() {
            return;
        }
        let note = match changes::proposals(&step.output) {
            Ok(None) => return,
            Ok(Some(list)) => {
                let gated = self
                    .studio
                    .feedback_loops
                    .quality_gates
                    .iter()
                    .any(|g| g.threshold == CHANGE_LABEL);
                if gated {
                    if let Some(s) = run.step_mut(step_id)
                        && !s.result_labels.iter().any(|l| l == CHANGE_LABEL)
                    {
                        s.result_labels.push(CHANGE_LABEL.to_string());
                    }
                    format!(
                        "proposes {} studio change(s): {}",
                        list.len(),
                        summary(&list)
                    )
                } else {
                    format!(
                        "proposes studio changes ({}), but no quality gate has threshold \
                         {CHANGE_LABEL:?}: not applied",
                        summary(&list)
                    )
                }
            }
            Err(e) => format!("its change block is ignored: {e}"),
        };
        fx.events.push(run.event(Some(step_id), note, ms(now)));
    }

    /// Before a decision: when it approves a change gate, the gate's
    /// proposals after the same checks as the decision (the gate is open and
    /// `who` may decide it). `None` for every other decision. Refused for a
    /// gate leading a batch: its approval would cover its members' changes.
    pub fn change_to_apply(
        &self,
        gate_id: &str,
        who: &str,
        kind: DecisionKind,
    ) -> Result<Option<(GateRecord, Vec<Proposal>)>, EngineError> {
        if kind != DecisionKind::Approve {
            return Ok(None);
        }
        let Some(g) = self.open_gates.get(gate_id) else {
            return Ok(None);
        };
        if g.label != CHANGE_LABEL {
            return Ok(None);
        }
        if !self.may_decide_gate(g, who) {
            return Err(EngineError::NotReviewer {
                gate: gate_id.into(),
                who: who.into(),
                reviewers: g.reviewers.clone(),
            });
        }
        // A batch's decision would approve its members' changes too, which
        // are neither shown with it nor written: each is approved on its own.
        if !g.members.is_empty() {
            return Err(EngineError::Invalid(format!(
                "gate {gate_id} leads a batch of change gates ({}); a change is approved only \
                 as shown: decide each of those gates on its own first",
                g.members.join(", ")
            )));
        }
        match changes::proposals(&g.content) {
            Ok(Some(list)) => Ok(Some((g.clone(), list))),
            Ok(None) => Err(EngineError::Invalid(format!(
                "gate {gate_id} has no change block to apply; reject it instead"
            ))),
            Err(e) => Err(EngineError::Invalid(format!(
                "gate {gate_id}: {e}; reject it instead"
            ))),
        }
    }

    /// Says in the gate's run what was written and who approved it.
    pub(crate) fn record_change(
        &mut self,
        gate: &GateRecord,
        who: &str,
        applied: &Applied,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let text = format!(
            "studio changed (version {}), approved by {who}: {}",
            applied.version,
            applied
                .changes
                .iter()
                .map(|c| format!(
                    "{} {} → {} (line {})",
                    c.key,
                    if c.old_value.is_empty() {
                        "(added)"
                    } else {
                        &c.old_value
                    },
                    c.new_value,
                    c.line
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        tracing::info!(gate = %gate.gate_id, approved_by = who, version = %applied.version, "{text}");
        if let Some(run) = self.live.get_mut(&gate.run_id) {
            let ev = run.event(Some(&gate.step_id), text, ms(now));
            fx.events.push(ev);
            if let Some(run) = self.live.get(&gate.run_id) {
                self.persist(run)?;
            }
            return Ok(());
        }
        // The approval finished the run (the gate was its last): it is only
        // in the store now.
        if let Some(mut run) = self.load_run(&gate.run_id)? {
            let ev = run.event(Some(&gate.step_id), text, ms(now));
            fx.events.push(ev);
            self.persist(&run)?;
        }
        Ok(())
    }

    /// The studio the engine reads from now on (workflows for new runs,
    /// loops, gates, budgets and per-role limits). Runs in flight keep the
    /// steps they were created with.
    pub fn set_studio(&mut self, studio: Arc<Studio>) {
        self.set_role_limits(&studio);
        self.studio = studio;
    }

    /// True when an automatic (`on_breach`) approval must not decide this
    /// gate: a change needs a person.
    pub(crate) fn needs_a_person(g: &GateRecord, kind: DecisionKind) -> bool {
        kind == DecisionKind::Approve && g.label == CHANGE_LABEL
    }
}

/// What a change gate's summary adds: the changes it would write.
pub(crate) fn gate_note(label: &str, output: &str) -> String {
    if label != CHANGE_LABEL {
        return String::new();
    }
    match changes::proposals(output) {
        Ok(Some(list)) => format!("; approving writes to the studio file: {}", summary(&list)),
        _ => String::new(),
    }
}

/// `key → value` of each proposal, for events and gate summaries.
pub fn summary(list: &[Proposal]) -> String {
    list.iter()
        .map(|p| format!("{} → {}", p.key, p.value))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes the approved `proposals` to `file` (I/O: called by the actor, not
/// the engine). Errors keep the gate open and reach the reviewer.
pub fn apply(
    file: Option<&Path>,
    gate: &GateRecord,
    proposals: &[Proposal],
    who: &str,
    now: DateTime<Utc>,
) -> Result<(Applied, StudioPublication), EngineError> {
    let Some(file) = file else {
        return Err(EngineError::Invalid(
            "this orchestrator was not started from a studio file, so it cannot write a change; \
             reject the gate or edit the file by hand"
                .into(),
        ));
    };
    let applied =
        changes::apply_to_file(file, proposals, std::env::vars()).map_err(|problems| {
            EngineError::Invalid(format!(
                "the change was not applied and the gate stays open: {}",
                problems.join("; ")
            ))
        })?;
    let at = Some(prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
    });
    let publication = StudioPublication {
        announce: v1::StudioChanged {
            version: applied.version.clone(),
            text: applied.text.clone(),
            origin: format!("orchestrator-{}", std::process::id()),
            reason: format!("change gate {} approved by {who}", gate.gate_id),
        },
        applied: v1::StudioChangeApplied {
            gate_id: gate.gate_id.clone(),
            run_id: gate.run_id.clone(),
            approved_by: who.to_string(),
            changes: applied
                .changes
                .iter()
                .map(|c| v1::StudioChange {
                    key: c.key.clone(),
                    path: c.path.clone(),
                    old_value: c.old_value.clone(),
                    new_value: c.new_value.clone(),
                    why: c.why.clone(),
                    line: u32::try_from(c.line).unwrap_or(u32::MAX),
                })
                .collect(),
            version: applied.version.clone(),
            at,
            file: file.display().to_string(),
        },
    };
    Ok((applied, publication))
}
