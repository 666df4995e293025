//! Queries in a partitioned studio: every orchestrator process (holding
//! partitions or not) answers the plain subjects (`orchestrator.runs.get`,
//! ...) in the queue group `orchestrator-router` by asking the partitions'
//! owners on `orchestrator.p<k>.*` and merging their answers.
//!
//! - A run (GetRun, CancelRun, RetryRun): its partition by hash first; an id
//!   that is not found there exactly (a short id) is asked of every
//!   partition, and one match must stand out. A change (cancel, retry) is
//!   sent, with the exact id, to the partition holding the run only.
//! - A gate (GetGate, DecideGate): asked of every partition the same way.
//! - ListRuns: every partition's page, merged newest first by (created, run
//!   id); the page token holds each partition's cursor (opaque to callers).
//! - ListGates: every partition's page merged in the one gate order (open
//!   ones first, due soonest first, then the others newest first), the page
//!   token holding each partition's cursor as for ListRuns.
//! - Spend: summed over partitions.
//!
//! A partition nobody owns right now makes the answer an error that names it
//! (`unavailable: partitions 3,5 have no orchestrator`): nothing is silently
//! left out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concierto_bus::{Bus, BusError, Message, Outgoing, ProtoMessage, decode, encode};
use concierto_core::partition;
use concierto_core::subjects;
use concierto_proto::v1;

/// How long one partition may take to answer.
const PARTITION_TIMEOUT: Duration = Duration::from_secs(4);

/// Requests routed at once; more wait.
const CONCURRENCY: usize = 64;

/// What one partition said.
enum Said<R> {
    Ok(R),
    /// Its error header (`code: message`).
    Err(String),
    /// Nobody answered.
    Unavailable,
}

#[derive(Clone)]
struct Router {
    bus: Arc<dyn Bus>,
    partitions: u32,
}

/// Starts answering the plain query subjects; the task ends when aborted.
pub(crate) async fn start(
    bus: Arc<dyn Bus>,
    partitions: u32,
) -> Result<tokio::task::JoinHandle<()>, BusError> {
    let all = [
        subjects::ORCHESTRATOR_GET_RUN,
        subjects::ORCHESTRATOR_LIST_RUNS,
        subjects::ORCHESTRATOR_CANCEL_RUN,
        subjects::ORCHESTRATOR_RETRY_RUN,
        subjects::ORCHESTRATOR_LIST_GATES,
        subjects::ORCHESTRATOR_GET_GATE,
        subjects::ORCHESTRATOR_DECIDE_GATE,
        subjects::ORCHESTRATOR_SPEND,
    ];
    let mut subs = Vec::new();
    for s in all {
        subs.push(bus.queue_subscribe(s, "orchestrator-router").await?);
    }
    let router = Router { bus, partitions };
    Ok(tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut merged = futures::stream::select_all(subs);
        while let Some(m) = futures::StreamExt::next(&mut merged).await {
            let Some(reply) = m.reply.clone() else {
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let router = router.clone();
            tokio::spawn(async move {
                let out = router.answer(&m).await;
                if let Err(e) = router.bus.respond(&reply, out).await {
                    tracing::warn!(error = %e, "answering a routed query failed");
                }
                drop(permit);
            });
        }
    }))
}

fn error(text: impl Into<String>) -> Outgoing {
    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, text.into())
}

fn unavailable(parts: &[u32]) -> String {
    let list: Vec<String> = parts.iter().map(u32::to_string).collect();
    if parts.len() == 1 {
        format!(
            "unavailable: partition {} has no orchestrator right now",
            list[0]
        )
    } else {
        format!(
            "unavailable: partitions {} have no orchestrator right now",
            list.join(",")
        )
    }
}

fn ms_of(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    })
}

impl Router {
    /// Asks partition `k` the query `subject` with `q` (and the original's headers).
    async fn ask<Q: ProtoMessage, R: ProtoMessage>(
        &self,
        k: u32,
        subject: &str,
        q: &Q,
        original: &Message,
    ) -> Said<R> {
        let mut out = encode(q);
        for (name, v) in original.headers.iter() {
            if name != concierto_bus::MSG_ID {
                out = out.header(name, v);
            }
        }
        let to = subjects::orchestrator_partition(k, subject);
        match self.bus.request(&to, out, PARTITION_TIMEOUT).await {
            Ok(m) => match m.headers.get(subjects::ERROR_HEADER) {
                Some(e) => Said::Err(e.to_string()),
                None => match decode::<R>(&m) {
                    Ok(r) => Said::Ok(r),
                    Err(e) => Said::Err(format!("internal: partition {k} answered {e}")),
                },
            },
            Err(e) => {
                tracing::debug!(partition = k, error = %e, "a partition did not answer");
                Said::Unavailable
            }
        }
    }

    /// The next page of every partition whose cursor is not done (`None` for
    /// those), asked at once with `query(its page token)`; an error when a
    /// partition errs or nobody owns it.
    async fn pages<Q: ProtoMessage, R: ProtoMessage>(
        &self,
        subject: &str,
        cursors: &[Cursor],
        m: &Message,
        query: impl Fn(String) -> Q,
    ) -> Result<Vec<Option<R>>, String> {
        let asks = cursors.iter().enumerate().map(|(k, cursor)| {
            let token = match cursor {
                Cursor::Done => None,
                Cursor::Start => Some(String::new()),
                Cursor::At(t) => Some(t.clone()),
            };
            let q = token.map(&query);
            async move {
                match q {
                    None => None,
                    Some(q) => Some(self.ask::<_, R>(k as u32, subject, &q, m).await),
                }
            }
        });
        let said = futures::future::join_all(asks).await;
        let mut pages = Vec::with_capacity(cursors.len());
        let mut missing = Vec::new();
        for (k, s) in said.into_iter().enumerate() {
            match s {
                None => pages.push(None),
                Some(Said::Ok(r)) => pages.push(Some(r)),
                Some(Said::Err(e)) => return Err(e),
                Some(Said::Unavailable) => {
                    missing.push(k as u32);
                    pages.push(None);
                }
            }
        }
        if !missing.is_empty() {
            return Err(unavailable(&missing));
        }
        Ok(pages)
    }

    /// Asks every partition.
    async fn ask_all<Q: ProtoMessage, R: ProtoMessage>(
        &self,
        subject: &str,
        q: &Q,
        original: &Message,
    ) -> Vec<Said<R>> {
        futures::future::join_all((0..self.partitions).map(|k| self.ask(k, subject, q, original)))
            .await
    }

    async fn answer(&self, m: &Message) -> Outgoing {
        let result = match m.subject.as_str() {
            subjects::ORCHESTRATOR_GET_RUN => match decode::<v1::GetRunRequest>(m) {
                Ok(q) => self
                    .resolve_run(&q.run_id, m)
                    .await
                    .map(|(_, run)| encode(&v1::GetRunResponse { run: Some(run) })),
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_CANCEL_RUN => match decode::<v1::CancelRunRequest>(m) {
                Ok(mut q) => match self.resolve_run(&q.run_id, m).await {
                    Ok((k, run)) => {
                        q.run_id = run.run_id;
                        self.forward::<_, v1::CancelRunResponse>(k, m, &q).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_RETRY_RUN => match decode::<v1::RetryRunRequest>(m) {
                Ok(mut q) => match self.resolve_run(&q.run_id, m).await {
                    Ok((k, run)) => {
                        q.run_id = run.run_id;
                        self.forward::<_, v1::RetryRunResponse>(k, m, &q).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_GET_GATE => match decode::<v1::GetGateRequest>(m) {
                Ok(q) => self
                    .resolve_gate(&q.gate_id, m)
                    .await
                    .map(|(_, gate)| encode(&v1::GetGateResponse { gate: Some(gate) })),
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_DECIDE_GATE => match decode::<v1::DecideGateRequest>(m) {
                Ok(mut q) => match self.resolve_gate(&q.gate_id, m).await {
                    Ok((k, gate)) => {
                        q.gate_id = gate.request.map(|r| r.gate_id).unwrap_or_default();
                        self.forward::<_, v1::DecideGateResponse>(k, m, &q).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_LIST_RUNS => match decode::<v1::ListRunsRequest>(m) {
                Ok(q) => self.list_runs(q, m).await.map(|r| encode(&r)),
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_LIST_GATES => match decode::<v1::ListGatesRequest>(m) {
                Ok(q) => self.list_gates(q, m).await.map(|r| encode(&r)),
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            subjects::ORCHESTRATOR_SPEND => match decode::<v1::GetSpendRequest>(m) {
                Ok(q) => self.spend(q, m).await.map(|r| encode(&r)),
                Err(e) => Err(format!("invalid_argument: {e}")),
            },
            other => Err(format!("unimplemented: {other} is not routed")),
        };
        result.unwrap_or_else(error)
    }

    /// Sends `q` to partition `k` and passes its answer on.
    async fn forward<Q: ProtoMessage, R: ProtoMessage>(
        &self,
        k: u32,
        original: &Message,
        q: &Q,
    ) -> Result<Outgoing, String> {
        match self.ask::<Q, R>(k, &original.subject, q, original).await {
            Said::Ok(r) => Ok(encode(&r)),
            Said::Err(e) => Err(e),
            Said::Unavailable => Err(unavailable(&[k])),
        }
    }

    /// The run `given` names (an id or a unique prefix) and its partition.
    async fn resolve_run(&self, given: &str, m: &Message) -> Result<(u32, v1::Run), String> {
        let q = v1::GetRunRequest {
            run_id: given.to_string(),
        };
        let home = partition::of(given, self.partitions);
        if let Said::Ok(v1::GetRunResponse { run: Some(run) }) = self
            .ask::<_, v1::GetRunResponse>(home, subjects::ORCHESTRATOR_GET_RUN, &q, m)
            .await
            && run.run_id == given
        {
            return Ok((home, run));
        }
        let said = self
            .ask_all::<_, v1::GetRunResponse>(subjects::ORCHESTRATOR_GET_RUN, &q, m)
            .await;
        let found = one_of(
            said,
            |r: v1::GetRunResponse| r.run,
            |r| r.run_id.clone(),
            given,
        )?;
        Ok(found)
    }

    /// The gate `given` names (an id, a unique prefix, or its run) and its partition.
    async fn resolve_gate(&self, given: &str, m: &Message) -> Result<(u32, v1::Gate), String> {
        let q = v1::GetGateRequest {
            gate_id: given.to_string(),
        };
        let said = self
            .ask_all::<_, v1::GetGateResponse>(subjects::ORCHESTRATOR_GET_GATE, &q, m)
            .await;
        one_of(
            said,
            |r: v1::GetGateResponse| r.gate,
            |g| {
                g.request
                    .as_ref()
                    .map(|r| r.gate_id.clone())
                    .unwrap_or_default()
            },
            given,
        )
    }

    async fn list_runs(
        &self,
        q: v1::ListRunsRequest,
        m: &Message,
    ) -> Result<v1::ListRunsResponse, String> {
        let p = self.partitions as usize;
        let cursors = decode_cursors(&q.page_token, p)?;
        let size = crate::engine::page_size(q.page_size);
        let pages: Vec<Option<v1::ListRunsResponse>> = self
            .pages(subjects::ORCHESTRATOR_LIST_RUNS, &cursors, m, |token| {
                let mut q = q.clone();
                q.page_size = size as u32;
                q.page_token = token;
                q
            })
            .await?;
        // Newest first: the index key reversed. A partition's token names
        // the last index row it read.
        let (runs, next_page_token) = merge_pages(
            pages
                .into_iter()
                .map(|r| r.map(|r| (r.runs, r.next_page_token)))
                .collect(),
            cursors,
            size,
            |run| {
                std::cmp::Reverse(crate::history::index_key(
                    ms_of(&run.created_at),
                    &run.run_id,
                ))
            },
            |token| token_key(token).map(std::cmp::Reverse),
            |key| format!("c{}", crate::history::hex(&key.0)),
        );
        Ok(v1::ListRunsResponse {
            runs,
            next_page_token,
        })
    }

    /// Gates of every partition merged in one order (open ones first, due
    /// soonest first, then the others newest first), the page token holding
    /// each partition's cursor like ListRuns'.
    async fn list_gates(
        &self,
        mut q: v1::ListGatesRequest,
        m: &Message,
    ) -> Result<v1::ListGatesResponse, String> {
        if !q.run_id.is_empty() {
            // One run's gates: its partition.
            let (k, run) = self.resolve_run(&q.run_id, m).await?;
            q.run_id = run.run_id;
            return match self
                .ask::<_, v1::ListGatesResponse>(k, subjects::ORCHESTRATOR_LIST_GATES, &q, m)
                .await
            {
                Said::Ok(r) => Ok(r),
                Said::Err(e) => Err(e),
                Said::Unavailable => Err(unavailable(&[k])),
            };
        }
        let cursors = decode_cursors(&q.page_token, self.partitions as usize)?;
        let size = crate::engine::page_size(q.page_size);
        let pages: Vec<Option<v1::ListGatesResponse>> = self
            .pages(subjects::ORCHESTRATOR_LIST_GATES, &cursors, m, |token| {
                let mut q = q.clone();
                q.page_size = size as u32;
                q.page_token = token;
                q
            })
            .await?;
        let (gates, next_page_token) = merge_pages(
            pages
                .into_iter()
                .map(|r| r.map(|r| (r.gates, r.next_page_token)))
                .collect(),
            cursors,
            size,
            GateAt::of,
            GateAt::of_token,
            GateAt::token,
        );
        Ok(v1::ListGatesResponse {
            gates,
            next_page_token,
        })
    }

    /// Spend summed over partitions (each holds the spend of its runs).
    async fn spend(
        &self,
        q: v1::GetSpendRequest,
        m: &Message,
    ) -> Result<v1::GetSpendResponse, String> {
        let said = self
            .ask_all::<_, v1::GetSpendResponse>(subjects::ORCHESTRATOR_SPEND, &q, m)
            .await;
        let mut days: BTreeMap<String, v1::DaySpend> = BTreeMap::new();
        let mut per_day = 0.0;
        let mut missing = Vec::new();
        for (k, s) in said.into_iter().enumerate() {
            match s {
                Said::Ok(r) => {
                    per_day += r.per_day_usd;
                    for d in r.days {
                        let e = days.entry(d.day.clone()).or_insert_with(|| v1::DaySpend {
                            day: d.day.clone(),
                            ..Default::default()
                        });
                        e.total_usd += d.total_usd;
                        for (role, v) in d.by_role {
                            *e.by_role.entry(role).or_default() += v;
                        }
                        for (w, v) in d.by_workflow {
                            *e.by_workflow.entry(w).or_default() += v;
                        }
                    }
                }
                Said::Err(e) => return Err(e),
                Said::Unavailable => missing.push(k as u32),
            }
        }
        if !missing.is_empty() {
            return Err(unavailable(&missing));
        }
        Ok(v1::GetSpendResponse {
            days: days.into_values().rev().collect(),
            // Each partition enforces its share of the day budget: together, the studio's.
            per_day_usd: per_day,
        })
    }
}

/// The one item the partitions' answers name: an exact id wins; several
/// matches are ambiguous; a partition that did not answer makes it unknown.
fn one_of<R, T>(
    said: Vec<Said<R>>,
    item: impl Fn(R) -> Option<T>,
    id: impl Fn(&T) -> String,
    given: &str,
) -> Result<(u32, T), String> {
    let mut found: Vec<(u32, T)> = Vec::new();
    let mut missing = Vec::new();
    let mut not_found = None;
    for (k, s) in said.into_iter().enumerate() {
        match s {
            Said::Ok(r) => {
                if let Some(t) = item(r) {
                    found.push((k as u32, t));
                }
            }
            Said::Err(e) if e.starts_with("not_found") => not_found = Some(e),
            Said::Err(e) => return Err(e),
            Said::Unavailable => missing.push(k as u32),
        }
    }
    if let Some(i) = found.iter().position(|(_, t)| id(t) == given) {
        return Ok(found.swap_remove(i));
    }
    if !missing.is_empty() {
        return Err(unavailable(&missing));
    }
    match found.len() {
        0 => Err(not_found.unwrap_or_else(|| format!("not_found: {given} not found"))),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<String> = found.iter().take(4).map(|(_, t)| id(t)).collect();
            Err(format!(
                "invalid_argument: {given} is ambiguous: it starts {} (give more of the id)",
                names.join(", ")
            ))
        }
    }
}

/// Where a gate stands in ListGates' order (see `gate_index.rs`): the open
/// ones first by due time then id, then the others newest first by opening
/// time then id; the same keys as the partitions' page tokens (`o<hex>`,
/// `c<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum GateAt {
    Open(Vec<u8>),
    Closed(Vec<u8>),
}

impl Ord for GateAt {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (GateAt::Open(a), GateAt::Open(b)) => a.cmp(b),
            (GateAt::Closed(a), GateAt::Closed(b)) => b.cmp(a),
            (GateAt::Open(_), GateAt::Closed(_)) => std::cmp::Ordering::Less,
            (GateAt::Closed(_), GateAt::Open(_)) => std::cmp::Ordering::Greater,
        }
    }
}

impl PartialOrd for GateAt {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl GateAt {
    fn of(g: &v1::Gate) -> GateAt {
        let (id, open) = match &g.request {
            Some(r) => (r.gate_id.as_bytes(), g.state == v1::GateState::Open as i32),
            None => (&b""[..], g.state == v1::GateState::Open as i32),
        };
        let opened = g.request.as_ref().map_or(0, |r| ms_of(&r.opened_at));
        let due = g.request.as_ref().map_or(0, |r| ms_of(&r.due_at));
        if open {
            let mut k = due.to_be_bytes().to_vec();
            k.extend_from_slice(id);
            GateAt::Open(k)
        } else {
            let mut k = u64::try_from(opened.max(0))
                .unwrap_or(0)
                .to_be_bytes()
                .to_vec();
            k.extend_from_slice(id);
            GateAt::Closed(k)
        }
    }

    /// A partition's page token as a place in the order.
    fn of_token(token: &str) -> Option<GateAt> {
        let hex = token.get(1..)?;
        match token.as_bytes().first() {
            Some(b'o') => crate::history::unhex(hex).map(GateAt::Open),
            Some(b'c') => crate::history::unhex(hex).map(GateAt::Closed),
            _ => None,
        }
    }

    /// The partition's page token that goes on after this place.
    fn token(&self) -> String {
        match self {
            GateAt::Open(k) => format!("o{}", crate::history::hex(k)),
            GateAt::Closed(k) => format!("c{}", crate::history::hex(k)),
        }
    }
}

/// One page from every partition's page (its items and its next token), in
/// the one order `key` gives: none past the *frontier* (the earliest place
/// where a partition with more to give stopped, as its token names it: it
/// may hold items before what the others gave); each partition's cursor then
/// goes on after the last of its items given (`token` of its key), or to its
/// own next token when all its page was given. Gives the items and the page
/// token (empty when every partition is done).
fn merge_pages<T: Clone, K: Ord>(
    pages: Vec<Option<(Vec<T>, String)>>,
    mut cursors: Vec<Cursor>,
    size: usize,
    key: impl Fn(&T) -> K,
    at_token: impl Fn(&str) -> Option<K>,
    token: impl Fn(&K) -> String,
) -> (Vec<T>, String) {
    let frontier = pages
        .iter()
        .flatten()
        .filter(|(_, next)| !next.is_empty())
        .filter_map(|(_, next)| at_token(next))
        .min();
    let mut all: Vec<(K, usize, usize)> = Vec::new();
    for (k, page) in pages.iter().enumerate() {
        if let Some((items, _)) = page {
            for (i, item) in items.iter().enumerate() {
                all.push((key(item), k, i));
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let p = pages.len();
    let mut taken = vec![0usize; p];
    let mut last: Vec<Option<K>> = (0..p).map(|_| None).collect();
    let mut out = Vec::new();
    for (at, k, i) in all {
        if out.len() == size || frontier.as_ref().is_some_and(|f| at > *f) {
            break;
        }
        if let Some(Some((items, _))) = pages.get(k)
            && let Some(item) = items.get(i)
        {
            out.push(item.clone());
            taken[k] += 1;
            last[k] = Some(at);
        }
    }
    for (k, page) in pages.iter().enumerate() {
        let (Some((items, next)), Some(cursor)) = (page, cursors.get_mut(k)) else {
            continue;
        };
        if taken[k] == items.len() {
            *cursor = if next.is_empty() {
                Cursor::Done
            } else {
                Cursor::At(next.clone())
            };
        } else if let Some(at) = &last[k] {
            *cursor = Cursor::At(token(at));
        }
    }
    let next_page_token = if cursors.iter().all(|c| *c == Cursor::Done) {
        String::new()
    } else {
        encode_cursors(&cursors)
    };
    (out, next_page_token)
}

/// Where one partition's listing is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    Start,
    At(String),
    Done,
}

/// `m<P>:` then each partition's cursor, `.`-separated: `_` start, `d` done,
/// else the partition's own token (`c<hex>`).
fn encode_cursors(cursors: &[Cursor]) -> String {
    let parts: Vec<&str> = cursors
        .iter()
        .map(|c| match c {
            Cursor::Start => "_",
            Cursor::Done => "d",
            Cursor::At(t) => t.as_str(),
        })
        .collect();
    format!("m{}:{}", cursors.len(), parts.join("."))
}

fn decode_cursors(token: &str, p: usize) -> Result<Vec<Cursor>, String> {
    if token.is_empty() {
        return Ok(vec![Cursor::Start; p]);
    }
    let bad = || {
        "invalid_argument: page_token is not one this server gave (ask again without it)"
            .to_string()
    };
    if token.len() > 64 * 4200 {
        return Err(bad());
    }
    let rest = token.strip_prefix('m').ok_or_else(bad)?;
    let (n, list) = rest.split_once(':').ok_or_else(bad)?;
    if n.parse::<usize>().ok() != Some(p) {
        return Err(
            "invalid_argument: page_token was given with another partition count (ask again without it)"
                .into(),
        );
    }
    let out: Vec<Cursor> = list
        .split('.')
        .map(|c| match c {
            "_" => Ok(Cursor::Start),
            "d" => Ok(Cursor::Done),
            // `c<hex>` (runs, closed gates) or `o<hex>` (open gates).
            t if (t.starts_with('c') || t.starts_with('o'))
                && crate::history::unhex(&t[1..]).is_some() =>
            {
                Ok(Cursor::At(t.to_string()))
            }
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    if out.len() != p {
        return Err(bad());
    }
    Ok(out)
}

/// The index key a partition's page token names.
fn token_key(token: &str) -> Option<Vec<u8>> {
    crate::history::unhex(token.strip_prefix('c')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(id: &str, open: bool, opened_ms: i64, due_ms: i64) -> v1::Gate {
        let ts = |ms: i64| {
            Some(prost_types::Timestamp {
                seconds: ms / 1000,
                nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap(),
            })
        };
        v1::Gate {
            request: Some(v1::GateRequest {
                gate_id: id.into(),
                opened_at: ts(opened_ms),
                due_at: ts(due_ms),
                ..Default::default()
            }),
            state: if open {
                v1::GateState::Open
            } else {
                v1::GateState::Approved
            } as i32,
            ..Default::default()
        }
    }

    /// A partition as the engine pages its gates: its own order, the token
    /// naming the last gate given.
    fn partition_page(gates: &[v1::Gate], token: &str, size: usize) -> v1::ListGatesResponse {
        let mut sorted: Vec<&v1::Gate> = gates.iter().collect();
        sorted.sort_by_key(|g| GateAt::of(g));
        let after = GateAt::of_token(token);
        let rest: Vec<&v1::Gate> = sorted
            .into_iter()
            .filter(|g| after.as_ref().is_none_or(|a| GateAt::of(g) > *a))
            .collect();
        let page: Vec<v1::Gate> = rest.iter().take(size).map(|g| (*g).clone()).collect();
        let next = if rest.len() > page.len() {
            page.last()
                .map(|g| GateAt::of(g).token())
                .unwrap_or_default()
        } else {
            String::new()
        };
        v1::ListGatesResponse {
            gates: page,
            next_page_token: next,
        }
    }

    #[test]
    fn gates_of_every_partition_come_in_one_order_each_once_across_pages() {
        // Three partitions, open and decided gates interleaved in time.
        let parts: Vec<Vec<v1::Gate>> = (0..3)
            .map(|k| {
                (0..7)
                    .map(|i| {
                        let n = i * 3 + k;
                        gate(
                            &format!("g{n:02}"),
                            n % 3 != 1,
                            1_000 + n * 10,
                            90_000 - n * 7,
                        )
                    })
                    .collect()
            })
            .collect();
        let mut want: Vec<v1::Gate> = parts.iter().flatten().cloned().collect();
        want.sort_by_key(GateAt::of);
        for size in [1, 2, 3, 5, 50] {
            let mut got = Vec::new();
            let mut token = String::new();
            for _ in 0..100 {
                let cursors = decode_cursors(&token, 3).unwrap();
                let pages: Vec<Option<v1::ListGatesResponse>> = cursors
                    .iter()
                    .enumerate()
                    .map(|(k, c)| match c {
                        Cursor::Done => None,
                        Cursor::Start => Some(partition_page(&parts[k], "", size)),
                        Cursor::At(t) => Some(partition_page(&parts[k], t, size)),
                    })
                    .collect();
                let pages = pages
                    .into_iter()
                    .map(|r| r.map(|r| (r.gates, r.next_page_token)))
                    .collect();
                let (gates, next) = merge_pages(
                    pages,
                    cursors,
                    size,
                    GateAt::of,
                    GateAt::of_token,
                    GateAt::token,
                );
                assert!(gates.len() <= size);
                got.extend(gates);
                token = next;
                if token.is_empty() {
                    break;
                }
            }
            let ids = |v: &[v1::Gate]| -> Vec<String> {
                v.iter()
                    .map(|g| g.request.as_ref().unwrap().gate_id.clone())
                    .collect()
            };
            assert_eq!(ids(&got), ids(&want), "page size {size}");
        }
        // Open ones first (due soonest first), then the rest newest first.
        let first_closed = want
            .iter()
            .position(|g| g.state != v1::GateState::Open as i32)
            .unwrap();
        assert!(
            want[first_closed..]
                .iter()
                .all(|g| g.state != v1::GateState::Open as i32)
        );
        assert!(first_closed > 0);
    }

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = vec![
            Cursor::Start,
            Cursor::Done,
            Cursor::At(format!(
                "c{}",
                crate::history::hex(b"\0\0\0\0\0\0\0\x01run")
            )),
        ];
        let t = encode_cursors(&c);
        assert_eq!(decode_cursors(&t, 3).unwrap(), c);
        assert!(
            decode_cursors(&t, 4)
                .unwrap_err()
                .contains("partition count")
        );
        assert!(decode_cursors("c00", 3).is_err());
        assert!(decode_cursors("m3:_.d.zz", 3).is_err());
        assert!(decode_cursors("m3:_.d", 3).is_err());
    }

    #[test]
    fn an_exact_id_wins_and_several_matches_are_ambiguous() {
        let said = |ids: &[&str]| -> Vec<Said<String>> {
            ids.iter()
                .map(|i| {
                    if i.is_empty() {
                        Said::Err("not_found: no".into())
                    } else {
                        Said::Ok(i.to_string())
                    }
                })
                .collect()
        };
        let pick = |s, given| one_of(s, Some, |t: &String| t.clone(), given);
        assert_eq!(
            pick(said(&["ab", "", "abc"]), "ab").unwrap(),
            (0, "ab".into())
        );
        assert_eq!(
            pick(said(&["", "", "abc"]), "a").unwrap(),
            (2, "abc".into())
        );
        let e = pick(said(&["abd", "", "abc"]), "ab").unwrap_err();
        assert!(
            e.starts_with("invalid_argument:") && e.contains("abd"),
            "{e}"
        );
        assert!(
            pick(said(&["", ""]), "x")
                .unwrap_err()
                .starts_with("not_found")
        );
        let e = pick(
            vec![Said::Unavailable, Said::Err("not_found: x".into())],
            "x",
        )
        .unwrap_err();
        assert_eq!(e, "unavailable: partition 0 has no orchestrator right now");
    }
}
