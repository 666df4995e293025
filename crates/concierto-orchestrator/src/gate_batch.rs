//! Quality gates that batch several outputs into one decision (`batch:` on a
//! gate, `concierto_core::config::gate_batch`), inside the engine's state
//! machine.
//!
//! ```text
//!  gate G opens (kind K, batch W): an open K gate L, opened < W ago, within
//!  its SLA, leading a batch or alone, in another run?
//!     no  ─▶ G opens alone: event.gate.opened (reviewers are told)
//!     yes ─▶ G joins L: G.batch_of = L, L.members += G; event.gate.joined
//!            (nobody is told again); G's own reminders and SLA are not used
//!  decision on L (a person, or L's on_breach) ─▶ the same decision on every
//!     open member (same reviewer and notes), each run going on as if decided
//!  decision on a member alone ─▶ that member only; it leaves the batch
//!  L closed without a decision of its own (its run ended, a sibling gate
//!  of its step decided) ─▶ its first open member leads the rest, keeping
//!     L's SLA clock; event.gate.opened for it
//! ```
//!
//! Membership is stored on both sides (`GateRecord::batch_of` on a member,
//! `GateRecord::members` on the leader) in the `gates` tree, so a restart
//! recovers it; a member whose leader is no longer open at recovery is
//! promoted as above.

use chrono::{DateTime, Utc};
use concierto_core::store::StoreError;
use concierto_proto::v1;

use crate::engine::{Effects, Engine, ms};
use crate::gates::{DecisionKind, GateRecord};

/// Member ids a leader's summary names before "and n more".
const NAMED_MEMBERS: usize = 3;

/// `batch_size` of `g` as far as its own record knows: itself and its members
/// when it leads a batch, else 0 (a member's is filled by
/// [`Engine::gate_view`]).
pub(crate) fn own_size(g: &GateRecord) -> u32 {
    if g.members.is_empty() {
        0
    } else {
        u32::try_from(g.members.len() + 1).unwrap_or(u32::MAX)
    }
}

/// The summary people see: a leader's says what its decision covers.
pub(crate) fn summary(g: &GateRecord) -> String {
    if g.members.is_empty() {
        return g.summary.clone();
    }
    let mut named: Vec<&str> = g
        .members
        .iter()
        .take(NAMED_MEMBERS)
        .map(String::as_str)
        .collect();
    let more = g.members.len().saturating_sub(NAMED_MEMBERS);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    named.sort_unstable();
    format!(
        "{} — batch of {}: one decision for this gate and {}{more}",
        g.summary,
        g.members.len() + 1,
        named.join(", ")
    )
}

impl Engine {
    /// The gate as the API shows it: a member carries its batch's size and due
    /// time (its leader's), and says whose decision it follows.
    pub(crate) fn gate_view(&self, g: &GateRecord) -> Result<v1::Gate, StoreError> {
        let mut p = g.to_proto();
        let Some(leader_id) = &g.batch_of else {
            return Ok(p);
        };
        let leader = match self.open_gates.get(leader_id) {
            Some(l) => Some(l.clone()),
            None => self.load_gate(leader_id)?,
        };
        if let Some(l) = leader {
            p.batch_size = own_size(&l).max(1);
            if let Some(r) = p.request.as_mut() {
                if g.status == crate::gates::GateStatus::Open {
                    r.due_at = Some(prost_types::Timestamp {
                        seconds: l.due_ms.div_euclid(1000),
                        nanos: i32::try_from(l.due_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
                    });
                }
                r.summary = format!("{} — decided with gate {leader_id}", g.summary);
            }
        }
        Ok(p)
    }

    /// Makes `rec`, about to open, a member of an open batch of its kind when
    /// its gate batches (`window`) and one qualifies; stores the leader with
    /// its new member. True when it joined.
    pub(crate) fn join_batch(
        &mut self,
        rec: &mut GateRecord,
        window: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(window) = window else {
            return Ok(false);
        };
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let now_ms = ms(now);
        let leader = self
            .open_gates
            .values()
            .filter(|l| {
                l.gate == rec.gate
                    && l.batch_of.is_none()
                    && l.run_id != rec.run_id
                    && !l.escalated
                    && now_ms < l.due_ms
                    && now_ms.saturating_sub(l.opened_ms) < window_ms
            })
            .min_by(|a, b| {
                a.opened_ms
                    .cmp(&b.opened_ms)
                    .then_with(|| a.gate_id.cmp(&b.gate_id))
            })
            .map(|l| l.gate_id.clone());
        let Some(leader) = leader else {
            return Ok(false);
        };
        let Some(l) = self.open_gates.get_mut(&leader) else {
            return Ok(false);
        };
        l.members.push(rec.gate_id.clone());
        let l = l.clone();
        self.persist_gate(&l)?;
        rec.batch_of = Some(leader);
        tracing::info!(gate = %rec.gate_id, leader = %l.gate_id, size = l.members.len() + 1, "quality gate joined a batch");
        Ok(true)
    }

    /// The run event's note for a gate that joined a batch (empty otherwise).
    pub(crate) fn batch_note(&self, rec: &GateRecord) -> String {
        match rec.batch_of.as_ref().and_then(|l| self.open_gates.get(l)) {
            Some(l) => format!(
                "; joined the batch of gate {} ({} gates), decided with it",
                l.gate_id,
                l.members.len() + 1
            ),
            None => String::new(),
        }
    }

    /// True when `who` may decide `g`: its own reviewers, or its escalation
    /// contacts once its SLA passed — a member's being its leader's.
    pub(crate) fn may_decide_gate(&self, g: &GateRecord, who: &str) -> bool {
        if g.may_decide(who) {
            return true;
        }
        g.batch_of
            .as_ref()
            .and_then(|l| self.open_gates.get(l))
            .is_some_and(|l| l.escalated && g.escalate_to.iter().any(|r| r == who))
    }

    /// Records a decision on a gate and moves its run on; on a batch's leader
    /// the same decision is then applied to every open member.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_decision(
        &mut self,
        gate_id: &str,
        kind: DecisionKind,
        who: &str,
        notes: &str,
        automatic: bool,
        now: DateTime<Utc>,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let members: Vec<String> = self
            .open_gates
            .get(gate_id)
            .filter(|g| g.batch_of.is_none())
            .map(|g| g.members.clone())
            .unwrap_or_default();
        self.apply_one_decision(gate_id, kind, who, notes, automatic, now, fx)?;
        for m in members {
            // The leader is closed now: the member keeps its place in the batch.
            self.apply_one_decision(&m, kind, who, notes, automatic, now, fx)?;
        }
        Ok(())
    }

    /// A gate being decided: when it is a member decided alone (its leader
    /// still open), it leaves the batch.
    pub(crate) fn leave_batch_if_alone(&mut self, g: &mut GateRecord) -> Result<(), StoreError> {
        let Some(leader_id) = g.batch_of.clone() else {
            return Ok(());
        };
        let Some(l) = self.open_gates.get_mut(&leader_id) else {
            return Ok(());
        };
        l.members.retain(|m| m != &g.gate_id);
        let l = l.clone();
        self.persist_gate(&l)?;
        g.batch_of = None;
        tracing::info!(gate = %g.gate_id, leader = %leader_id, "quality gate decided alone: it left its batch");
        Ok(())
    }

    /// `closed` was closed without a decision of its own: off its leader's
    /// list if it is a member; if it led a batch, its first open member leads
    /// the rest, on `closed`'s SLA clock.
    pub(crate) fn batch_gate_closed(
        &mut self,
        closed: &GateRecord,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if let Some(l) = closed
            .batch_of
            .as_ref()
            .and_then(|l| self.open_gates.get_mut(l))
        {
            l.members.retain(|m| m != &closed.gate_id);
            let l = l.clone();
            self.persist_gate(&l)?;
        }
        self.promote(closed, fx)
    }

    fn promote(&mut self, closed: &GateRecord, fx: &mut Effects) -> Result<(), StoreError> {
        let open: Vec<String> = closed
            .members
            .iter()
            .filter(|m| {
                self.open_gates
                    .get(*m)
                    .is_some_and(|g| g.batch_of.as_deref() == Some(closed.gate_id.as_str()))
            })
            .cloned()
            .collect();
        let Some((first, rest)) = open.split_first() else {
            return Ok(());
        };
        let Some(mut lead) = self.open_gates.remove(first) else {
            return Ok(());
        };
        lead.batch_of = None;
        lead.members = rest.to_vec();
        lead.due_ms = closed.due_ms;
        lead.remind_at_ms = closed.remind_at_ms.clone();
        lead.reminders = closed.reminders;
        lead.escalated = closed.escalated;
        for m in rest {
            if let Some(x) = self.open_gates.get_mut(m) {
                x.batch_of = Some(lead.gate_id.clone());
                let x = x.clone();
                self.persist_gate(&x)?;
            }
        }
        self.persist_gate(&lead)?;
        tracing::info!(gate = %lead.gate_id, was = %closed.gate_id, size = lead.members.len() + 1, "quality gate leads its batch now");
        fx.gates.push(("opened", lead.to_proto()));
        self.open_gates.insert(lead.gate_id.clone(), lead);
        Ok(())
    }

    /// At recovery: members whose leader is no longer open are promoted (the
    /// first of each batch leads the rest on the old leader's clock).
    pub(crate) fn repair_batches(&mut self, fx: &mut Effects) -> Result<(), StoreError> {
        let mut orphaned: Vec<String> = self
            .open_gates
            .values()
            .filter_map(|g| g.batch_of.clone())
            .filter(|l| !self.open_gates.contains_key(l))
            .collect();
        orphaned.sort_unstable();
        orphaned.dedup();
        for id in orphaned {
            let closed = match self.load_gate(&id)? {
                Some(l) => l,
                None => {
                    // Its record is gone: its members lead themselves.
                    let ids: Vec<String> = self
                        .open_gates
                        .values()
                        .filter(|g| g.batch_of.as_deref() == Some(id.as_str()))
                        .map(|g| g.gate_id.clone())
                        .collect();
                    for m in ids {
                        if let Some(g) = self.open_gates.get_mut(&m) {
                            g.batch_of = None;
                            let g = g.clone();
                            self.persist_gate(&g)?;
                        }
                    }
                    continue;
                }
            };
            self.promote(&closed, fx)?;
        }
        Ok(())
    }
}
