//! Run history: the time index runs are listed from, retention, and short
//! run ids.
//!
//! ```text
//!  runs          run id ─▶ RunRecord (JSON)              the truth
//!  runs_by_time  created_ms (u64 BE) ++ run id ─▶ Summary  written with it
//! ```
//!
//! Every write of a run writes its index row too (`Engine::persist`), and
//! `recover` compares the index with the runs it reads anyway and repairs it
//! (a store written before the index existed, a crash between the two trees).
//! `ListRuns` walks the index newest first, filters on the summaries (live
//! runs on their state in memory) and decodes only the page's runs; its page
//! token is the index key of the last row given (`c<hex>`). Retention walks it
//! oldest first, a bounded number of rows per tick.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use concierto_core::store::{Op, StoreError};
use concierto_proto::v1;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineError, RUNS, ms, page_size, preview};
use crate::run::RunRecord;

/// The time index of runs.
pub(crate) const RUNS_BY_TIME: &str = "runs_by_time";
/// Index rows read per store scan while listing.
const CHUNK: usize = 256;
/// Most index rows one `ListRuns` page reads: a filter that matches little
/// ends the page early (with a token to go on) instead of reading everything.
pub const MAX_ROWS_PER_PAGE: usize = 50_000;
/// Most index rows one retention pass reads per tick.
pub const PRUNE_PER_TICK: usize = 500;
/// How long retention waits after a pass that found nothing more to remove.
const PRUNE_EVERY_MS: i64 = 60_000;
/// Characters of a run's error and params the index keeps for `query`.
const SUMMARY_TEXT: usize = 240;
/// Most words of a `query`, and characters per word.
const MAX_WORDS: usize = 16;
const MAX_WORD: usize = 200;
/// Most candidates an ambiguous short id names.
const CANDIDATES: usize = 5;

/// What the index keeps of a run: enough to filter without decoding it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    #[serde(rename = "w")]
    workflow: String,
    #[serde(rename = "t")]
    trigger: String,
    /// `v1::RunState` as the API shows it.
    #[serde(rename = "s")]
    state: i32,
    #[serde(rename = "r")]
    requested_by: String,
    /// The start of its error.
    #[serde(rename = "e")]
    error: String,
    /// The start of its params, `k=v` separated by spaces.
    #[serde(rename = "p")]
    params: String,
    /// Last change (unix ms).
    #[serde(rename = "u")]
    updated_ms: i64,
    /// Ended.
    #[serde(rename = "f")]
    ended: bool,
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(SUMMARY_TEXT) {
        None => text.to_string(),
        Some((i, _)) => text[..i].to_string(),
    }
}

impl Summary {
    pub(crate) fn of(run: &RunRecord) -> Summary {
        let params: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Summary {
            workflow: run.workflow.clone(),
            trigger: run.trigger.clone(),
            state: run.proto_state() as i32,
            requested_by: run.requested_by.clone(),
            error: cut(&run.error),
            params: cut(&params.join(" ")),
            updated_ms: run.updated_ms,
            ended: run.state.is_final(),
        }
    }

    fn matches(
        &self,
        run_id: &str,
        state: i32,
        req: &v1::ListRunsRequest,
        words: &[String],
    ) -> bool {
        (req.workflow.is_empty() || self.workflow == req.workflow)
            && (req.trigger.is_empty() || self.trigger == req.trigger)
            && (req.state == 0 || state == req.state)
            && (words.is_empty() || {
                let hay = [
                    run_id,
                    &self.workflow,
                    &self.trigger,
                    &self.requested_by,
                    &self.error,
                    &self.params,
                ]
                .join("\n")
                .to_lowercase();
                words.iter().all(|w| hay.contains(w.as_str()))
            })
    }
}

/// The index key of a run created at `created_ms`.
pub(crate) fn index_key(created_ms: i64, run_id: &str) -> Vec<u8> {
    let mut k = time_key(created_ms);
    k.extend_from_slice(run_id.as_bytes());
    k
}

/// The first index key at `at_ms` (runs created then sort after it).
fn time_key(at_ms: i64) -> Vec<u8> {
    u64::try_from(at_ms.max(0))
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec()
}

fn run_id_of(key: &[u8]) -> Option<&str> {
    key.get(8..).and_then(|id| std::str::from_utf8(id).ok())
}

/// The index row of `run`.
pub(crate) fn index_row(run: &RunRecord) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let body = serde_json::to_vec(&Summary::of(run)).map_err(|e| {
        StoreError::from_message(format!("encoding the summary of run {}: {e}", run.run_id))
    })?;
    Ok((index_key(run.created_ms, &run.run_id), body))
}

fn encode_token(key: &[u8]) -> String {
    format!("c{}", hex(key))
}

fn decode_token(token: &str) -> Option<Vec<u8>> {
    unhex(token.strip_prefix('c')?)
}

/// `bytes` as lower-case hex (page tokens).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Bytes from hex written by [`hex`]; `None` for anything else (or too long).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 4096 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn ts_ms(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    })
}

/// The words of a `query`, lower case, bounded.
fn words(query: &str) -> Vec<String> {
    query
        .split_whitespace()
        .take(MAX_WORDS)
        .map(|w| w.chars().take(MAX_WORD).collect::<String>().to_lowercase())
        .collect()
}

/// Where retention is: the index key it goes on after, and when it runs next.
#[derive(Debug, Default)]
pub(crate) struct PruneState {
    after: Option<Vec<u8>>,
    next_ms: i64,
}

impl Engine {
    /// Runs, newest first, filtered, one page (see the module doc).
    pub fn list(&self, req: &v1::ListRunsRequest) -> Result<v1::ListRunsResponse, EngineError> {
        let size = page_size(req.page_size);
        let words = words(&req.query);
        let lower = match ts_ms(&req.since) {
            Some(since) => Bound::Included(time_key(since)),
            None => Bound::Unbounded,
        };
        let mut upper = match ts_ms(&req.until) {
            Some(until) => Bound::Excluded(time_key(until)),
            None => Bound::Unbounded,
        };
        if !req.page_token.is_empty() {
            let Some(after) = decode_token(&req.page_token) else {
                return Err(EngineError::Invalid(
                    "page_token is not one this server gave (ask again without it)".into(),
                ));
            };
            let before_until = match &upper {
                Bound::Excluded(u) => after < *u,
                _ => true,
            };
            if before_until {
                upper = Bound::Excluded(after);
            }
        }
        let mut matched: Vec<(Vec<u8>, String)> = Vec::new();
        let mut read = 0usize;
        let mut more = false;
        let mut last_read: Option<Vec<u8>> = None;
        'scan: loop {
            let rows = self.store_handle().scan_range(
                RUNS_BY_TIME,
                (lower.clone(), upper.clone()),
                true,
                CHUNK,
            )?;
            let exhausted = rows.len() < CHUNK;
            for (key, value) in rows {
                read += 1;
                upper = Bound::Excluded(key.clone());
                last_read = Some(key.clone());
                let Some(run_id) = run_id_of(&key) else {
                    continue;
                };
                let Ok(summary) = serde_json::from_slice::<Summary>(&value) else {
                    continue;
                };
                let state = match self.live.get(run_id) {
                    Some(live) => live.proto_state() as i32,
                    None => summary.state,
                };
                if summary.matches(run_id, state, req, &words) {
                    if matched.len() == size {
                        more = true;
                        break 'scan;
                    }
                    matched.push((key.clone(), run_id.to_string()));
                }
                if read >= MAX_ROWS_PER_PAGE {
                    more = true;
                    break 'scan;
                }
            }
            if exhausted {
                break;
            }
        }
        let mut runs = Vec::with_capacity(matched.len());
        for (_, run_id) in &matched {
            let record = match self.live.get(run_id) {
                Some(live) => Some(live.clone()),
                None => self.load_run(run_id)?,
            };
            if let Some(r) = record {
                let mut p = r.to_proto();
                for s in &mut p.steps {
                    s.output = preview(&s.output);
                }
                runs.push(p);
            }
        }
        let next_page_token = if !more {
            String::new()
        } else if matched.len() == size {
            matched
                .last()
                .map(|(k, _)| encode_token(k))
                .unwrap_or_default()
        } else {
            // The page stopped at its read limit: go on from the last row read.
            last_read.as_deref().map(encode_token).unwrap_or_default()
        };
        Ok(v1::ListRunsResponse {
            runs,
            next_page_token,
        })
    }

    /// Makes the time index agree with `rows` (every stored run's index row,
    /// read at recovery): missing and stale rows are written, rows of runs
    /// that are gone are removed.
    pub(crate) fn repair_run_index(
        &self,
        rows: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        let stored = self.store_handle().scan_prefix(RUNS_BY_TIME, b"")?;
        let mut seen = std::collections::BTreeSet::new();
        for (k, v) in stored {
            match rows.get(&k) {
                Some(want) if *want == v => {}
                Some(want) => ops.push(Op::Put(k.clone(), want.clone())),
                None => ops.push(Op::Delete(k.clone())),
            }
            seen.insert(k);
        }
        for (k, v) in rows {
            if !seen.contains(&k) {
                ops.push(Op::Put(k, v));
            }
        }
        if !ops.is_empty() {
            tracing::info!(rows = ops.len(), "run index repaired");
            self.store_handle().apply(RUNS_BY_TIME, ops)?;
        }
        Ok(())
    }

    /// Removes ended runs whose last change is older than the retention,
    /// oldest first, at most [`PRUNE_PER_TICK`] index rows per call; a run
    /// still going is never removed. Returns the runs removed.
    pub(crate) fn prune(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let Some(retention) = self.limits().retention else {
            return Ok(0);
        };
        let now_ms = ms(now);
        if now_ms < self.prune.next_ms {
            return Ok(0);
        }
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(keep_ms);
        // A run changes after it is created: one created after the cutoff is kept.
        let from = match self.prune.after.take() {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let rows = self.store_handle().scan_range(
            RUNS_BY_TIME,
            (from, Bound::Excluded(time_key(cutoff))),
            false,
            PRUNE_PER_TICK,
        )?;
        let full = rows.len() == PRUNE_PER_TICK;
        let mut removed = 0usize;
        let mut last = None;
        for (key, value) in rows {
            last = Some(key.clone());
            let Some(run_id) = run_id_of(&key).map(str::to_string) else {
                continue;
            };
            let Ok(summary) = serde_json::from_slice::<Summary>(&value) else {
                continue;
            };
            if !summary.ended || summary.updated_ms >= cutoff || self.live.contains_key(&run_id) {
                continue;
            }
            if self.remove_run(&run_id, key)? {
                removed += 1;
            }
        }
        if full {
            self.prune.after = last;
        } else {
            self.prune.next_ms = now_ms.saturating_add(PRUNE_EVERY_MS);
        }
        if removed > 0 {
            tracing::info!(removed, "ended runs past the retention removed");
        }
        Ok(removed)
    }

    /// Removes a stored run, its index row and its gates (with their index
    /// rows). A run with a review still deferred to a batch (a `cycle_time`
    /// longer than the retention) is kept until its verdict is in: false.
    fn remove_run(&mut self, run_id: &str, index_key: Vec<u8>) -> Result<bool, StoreError> {
        let waiting = self.store_handle().scan_range(
            crate::review_later::DEFERRED,
            (
                Bound::Included(format!("{run_id}\n").into_bytes()),
                Bound::Unbounded,
            ),
            false,
            1,
        )?;
        if waiting
            .first()
            .is_some_and(|(k, _)| k.starts_with(format!("{run_id}\n").as_bytes()))
        {
            return Ok(false);
        }
        let gates = self.gates_of_run(run_id)?;
        let mut gate_ops = Vec::new();
        let mut gate_index_ops = Vec::new();
        for g in gates {
            if self.open_gates.contains_key(&g.gate_id) {
                continue;
            }
            gate_ops.push(Op::Delete(g.gate_id.as_bytes().to_vec()));
            gate_index_ops.push(Op::Delete(crate::gate_index::gate_index_key(&g)));
        }
        self.store_handle().apply_trees(vec![
            (RUNS, vec![Op::Delete(run_id.as_bytes().to_vec())]),
            (RUNS_BY_TIME, vec![Op::Delete(index_key)]),
            (crate::gates::GATES, gate_ops),
            (crate::gate_index::GATES_BY_TIME, gate_index_ops),
        ])?;
        Ok(true)
    }

    /// The run id `given` names: itself when a run has it, else the one run
    /// whose id starts with it (as git does with commits).
    pub fn resolve_run(&self, given: &str) -> Result<String, EngineError> {
        if given.is_empty() {
            return Err(EngineError::Invalid("a run id is required".into()));
        }
        if self.live.contains_key(given)
            || self.store_handle().get(RUNS, given.as_bytes())?.is_some()
        {
            return Ok(given.to_string());
        }
        let found = self.keys_with_prefix(RUNS, given)?;
        match found.as_slice() {
            [] => Err(EngineError::NotFound(given.to_string())),
            [one] => Ok(one.clone()),
            many => Err(EngineError::Ambiguous(format!(
                "{given:?} names several runs: {}{}; give more of the id",
                many.iter()
                    .take(CANDIDATES - 1)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if many.len() >= CANDIDATES {
                    ", ..."
                } else {
                    ""
                }
            ))),
        }
    }

    /// Up to [`CANDIDATES`] keys of `tree` that start with `prefix`, in order.
    pub(crate) fn keys_with_prefix(
        &self,
        tree: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self.store_handle().scan_range(
            tree,
            (
                Bound::Included(prefix.as_bytes().to_vec()),
                Bound::Unbounded,
            ),
            false,
            CANDIDATES,
        )?;
        Ok(rows
            .into_iter()
            .take_while(|(k, _)| k.starts_with(prefix.as_bytes()))
            .filter_map(|(k, _)| String::from_utf8(k).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        let k = index_key(1_700_000_000_000, "daily@2026-11-24T09:00:00Z");
        assert_eq!(decode_token(&encode_token(&k)), Some(k));
        assert_eq!(decode_token("50"), None);
        assert_eq!(decode_token("cxyz"), None);
        assert_eq!(decode_token("c0"), None);
    }

    #[test]
    fn keys_sort_by_time() {
        assert!(index_key(999, "zzz") < index_key(1000, "aaa"));
        assert!(index_key(-5, "a") < index_key(1, "a"));
    }
}
