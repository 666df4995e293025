//! The gate list and short gate ids, served without decoding every gate.
//!
//! ```text
//!  gates           gate id ─▶ GateRecord (JSON)
//!  gates_by_time   opened_ms (u64 BE) ++ gate id ─▶ {state, run}   written with it
//! ```
//!
//! `ListGates` gives the open gates first (in memory, oldest due first), then
//! the others newest first from the index, decoding only the page's gates.
//! Its page token says where it stopped: `o<hex>` in the open ones (due ms ++
//! id), `c<hex>` in the index, `r<n>` in the gates of one run. `recover`
//! repairs the index from the gates it reads anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use concierto_core::store::{Op, StoreError};
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineError, page_size, preview};
use crate::gates::{GATES, GateRecord, GateStatus};
use crate::history::{hex, unhex};

/// The time index of gates.
pub(crate) const GATES_BY_TIME: &str = "gates_by_time";
const CHUNK: usize = 256;
/// Most index rows one page reads (see `history::MAX_ROWS_PER_PAGE`).
const MAX_ROWS_PER_PAGE: usize = 50_000;
/// Gates of one run read for a list or a short id.
const MAX_RUN_GATES: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    /// `v1::GateState`.
    #[serde(rename = "s")]
    state: i32,
    #[serde(rename = "r")]
    run_id: String,
}

fn state_of(status: GateStatus) -> i32 {
    (match status {
        GateStatus::Open => v1::GateState::Open,
        GateStatus::Approved => v1::GateState::Approved,
        GateStatus::Rejected => v1::GateState::Rejected,
        GateStatus::ChangesRequested => v1::GateState::ChangesRequested,
    }) as i32
}

/// The index key of a gate.
pub(crate) fn gate_index_key(g: &GateRecord) -> Vec<u8> {
    let mut k = u64::try_from(g.opened_ms.max(0))
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    k.extend_from_slice(g.gate_id.as_bytes());
    k
}

/// The index row of a gate.
pub(crate) fn gate_index_row(g: &GateRecord) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let row = Row {
        state: state_of(g.status),
        run_id: g.run_id.clone(),
    };
    let body = serde_json::to_vec(&row).map_err(|e| {
        StoreError::from_message(format!("encoding the index row of gate {}: {e}", g.gate_id))
    })?;
    Ok((gate_index_key(g), body))
}

fn open_key(g: &GateRecord) -> Vec<u8> {
    let mut k = g.due_ms.to_be_bytes().to_vec();
    k.extend_from_slice(g.gate_id.as_bytes());
    k
}

enum Cursor {
    Start,
    Open(Vec<u8>),
    Closed(Vec<u8>),
    Offset(usize),
}

fn cursor(token: &str) -> Option<Cursor> {
    if token.is_empty() {
        return Some(Cursor::Start);
    }
    let rest = token.get(1..)?;
    match token.as_bytes().first() {
        Some(b'o') => unhex(rest).map(Cursor::Open),
        Some(b'c') => unhex(rest).map(Cursor::Closed),
        Some(b'r') => rest.parse().ok().map(Cursor::Offset),
        _ => None,
    }
}

impl Engine {
    /// Every gate of `run_id` (bounded), from the gates keyed `<run>/...`.
    pub(crate) fn gates_of_run(&self, run_id: &str) -> Result<Vec<GateRecord>, StoreError> {
        let rows = self
            .store_handle()
            .scan_prefix(GATES, format!("{run_id}/").as_bytes())?;
        // Run `a`'s prefix `a/` also covers run `a/b`'s gates: keep this run's
        // before counting, so another run's gates never crowd them out.
        Ok(rows
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice::<GateRecord>(&b).ok())
            .filter(|g| g.run_id == run_id)
            .take(MAX_RUN_GATES)
            .map(|g| self.open_gates.get(&g.gate_id).cloned().unwrap_or(g))
            .collect())
    }

    /// Makes the gate index agree with `gates` (every stored gate, read at recovery).
    pub(crate) fn repair_gate_index(&self, gates: &[GateRecord]) -> Result<(), StoreError> {
        let mut want = BTreeMap::new();
        for g in gates {
            let (k, v) = gate_index_row(g)?;
            want.insert(k, v);
        }
        let mut ops = Vec::new();
        let mut seen = BTreeSet::new();
        for (k, v) in self.store_handle().scan_prefix(GATES_BY_TIME, b"")? {
            match want.get(&k) {
                Some(w) if *w == v => {}
                Some(w) => ops.push(Op::Put(k.clone(), w.clone())),
                None => ops.push(Op::Delete(k.clone())),
            }
            seen.insert(k);
        }
        for (k, v) in want {
            if !seen.contains(&k) {
                ops.push(Op::Put(k, v));
            }
        }
        if !ops.is_empty() {
            tracing::info!(rows = ops.len(), "gate index repaired");
            self.store_handle().apply(GATES_BY_TIME, ops)?;
        }
        Ok(())
    }

    /// Gates, open ones first (oldest due first), then the rest newest first;
    /// filtered, paged (see the module doc).
    pub fn list_gates(
        &self,
        req: &v1::ListGatesRequest,
    ) -> Result<v1::ListGatesResponse, EngineError> {
        let size = page_size(req.page_size);
        let Some(at) = cursor(&req.page_token) else {
            return Err(EngineError::Invalid(
                "page_token is not one this server gave (ask again without it)".into(),
            ));
        };
        let mut page: Vec<GateRecord> = Vec::new();
        let mut next = String::new();
        let open_state = v1::GateState::Open as i32;
        if !req.run_id.is_empty() {
            // One run's gates: few, sorted in memory.
            let mut all = self.gates_of_run(&req.run_id)?;
            all.retain(|g| req.state == 0 || state_of(g.status) == req.state);
            all.sort_by(|a, b| {
                let closed = |g: &GateRecord| g.status != GateStatus::Open;
                closed(a)
                    .cmp(&closed(b))
                    .then_with(|| {
                        if a.status == GateStatus::Open {
                            a.due_ms.cmp(&b.due_ms)
                        } else {
                            b.opened_ms.cmp(&a.opened_ms)
                        }
                    })
                    .then_with(|| a.gate_id.cmp(&b.gate_id))
            });
            let start = match at {
                Cursor::Offset(n) => n,
                _ => 0,
            };
            page = all.iter().skip(start).take(size).cloned().collect();
            if start + page.len() < all.len() {
                next = format!("r{}", start + page.len());
            }
        } else {
            let in_open = matches!(at, Cursor::Start | Cursor::Open(_));
            let mut open_left = false;
            if in_open && (req.state == 0 || req.state == open_state) {
                let mut open: Vec<&GateRecord> = self.open_gates.values().collect();
                open.sort_by_key(|g| open_key(g));
                let after = match &at {
                    Cursor::Open(k) => Some(k.clone()),
                    _ => None,
                };
                for g in open {
                    if after.as_ref().is_some_and(|a| open_key(g) <= *a) {
                        continue;
                    }
                    if page.len() == size {
                        open_left = true;
                        break;
                    }
                    page.push(g.clone());
                }
                if let Some(last) = page.last().filter(|_| open_left) {
                    next = format!("o{}", hex(&open_key(last)));
                }
            }
            let closed_wanted = req.state == 0 || req.state != open_state;
            if !open_left && closed_wanted {
                let mut upper = match &at {
                    Cursor::Closed(k) if !k.is_empty() => Bound::Excluded(k.clone()),
                    _ => Bound::Unbounded,
                };
                let mut read = 0usize;
                let mut last_key: Option<Vec<u8>> = None;
                'scan: loop {
                    let rows = self.store_handle().scan_range(
                        GATES_BY_TIME,
                        (Bound::Unbounded, upper.clone()),
                        true,
                        CHUNK,
                    )?;
                    let exhausted = rows.len() < CHUNK;
                    for (key, value) in rows {
                        read += 1;
                        upper = Bound::Excluded(key.clone());
                        let Ok(row) = serde_json::from_slice::<Row>(&value) else {
                            continue;
                        };
                        let wanted =
                            row.state != open_state && (req.state == 0 || row.state == req.state);
                        if wanted {
                            if page.len() == size {
                                // Another one is there: the next page starts after the last given.
                                next = format!(
                                    "c{}",
                                    last_key.as_deref().map(hex).unwrap_or_default()
                                );
                                break 'scan;
                            }
                            let id = key.get(8..).and_then(|b| std::str::from_utf8(b).ok());
                            if let Some(g) = id.map(|id| self.load_gate(id)).transpose()?.flatten()
                            {
                                page.push(g);
                            }
                            last_key = Some(key.clone());
                        }
                        if read >= MAX_ROWS_PER_PAGE {
                            next = format!("c{}", hex(&key));
                            break 'scan;
                        }
                    }
                    if exhausted {
                        break;
                    }
                }
            }
        }
        let gates = page
            .iter()
            .map(|g| {
                let mut p = self.gate_view(g)?;
                if let Some(r) = p.request.as_mut() {
                    r.content = preview(&r.content);
                }
                Ok(p)
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(v1::ListGatesResponse {
            gates,
            next_page_token: next,
        })
    }

    /// The gate id `given` names: a gate id, a unique prefix of one, or a
    /// run id (or its unique prefix) whose run has exactly one open gate (or
    /// exactly one gate at all).
    pub fn resolve_gate(&self, given: &str) -> Result<String, EngineError> {
        if given.is_empty() {
            return Err(EngineError::Invalid("a gate id is required".into()));
        }
        if self.open_gates.contains_key(given)
            || self.store_handle().get(GATES, given.as_bytes())?.is_some()
        {
            return Ok(given.to_string());
        }
        let exact_run = self.live.contains_key(given)
            || self
                .store_handle()
                .get(crate::engine::RUNS, given.as_bytes())?
                .is_some();
        if exact_run {
            return self.gate_of_run(given);
        }
        let gates = self.keys_with_prefix(GATES, given)?;
        if let [one] = gates.as_slice() {
            return Ok(one.clone());
        }
        match self.resolve_run(given) {
            Ok(run) => self.gate_of_run(&run),
            Err(EngineError::NotFound(_)) if gates.len() > 1 => {
                Err(EngineError::Ambiguous(format!(
                    "{given:?} names several gates: {}; give more of the id",
                    gates.join(", ")
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// The one gate of a run: its only open gate, else its only gate.
    fn gate_of_run(&self, run_id: &str) -> Result<String, EngineError> {
        let all = self.gates_of_run(run_id)?;
        let open: Vec<&GateRecord> = all
            .iter()
            .filter(|g| g.status == GateStatus::Open)
            .collect();
        let pick: Vec<&GateRecord> = if open.is_empty() {
            all.iter().collect()
        } else {
            open
        };
        match pick.as_slice() {
            [] => Err(EngineError::NotFound(format!("a gate of run {run_id}"))),
            [one] => Ok(one.gate_id.clone()),
            many => Err(EngineError::Ambiguous(format!(
                "run {run_id} has {} {}gates: {}; name one",
                many.len(),
                if many[0].status == GateStatus::Open {
                    "open "
                } else {
                    ""
                },
                many.iter()
                    .take(8)
                    .map(|g| g.gate_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}
