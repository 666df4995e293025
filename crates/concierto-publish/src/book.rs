//! The publisher's state machine, free of the bus and of HTTP: every
//! deliverable with its outcomes, and the outbox of attempts due. Step 1 is the
//! content library; once it is settled, one job per publisher that takes the
//! workflow. Every change is written to the store; the caller flushes before it
//! acknowledges a delivery.
//!
//! Trees: `deliverables` (id → `DeliverableRecord`), `by_day`
//! (`<day>/<at ms>/<id>` → id, for the calendar), `outbox`
//! (`<id>\x1f<publisher>` → [`Job`] as JSON).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use concierto_core::config::{PublisherDef, Publishing};
use concierto_core::store::{KvStore, Op, StoreError};
use concierto_proto::v1;
use prost::Message as _;
use serde::{Deserialize, Serialize};

const RECORDS: &str = "deliverables";
const BY_DAY: &str = "by_day";
const OUTBOX: &str = "outbox";
const SEP: char = '\u{1f}';

/// The name of the content library step in outcomes.
pub const LIBRARY: &str = "library";
/// Attempts at the content library before its outcome is a failure.
pub const LIBRARY_ATTEMPTS: u32 = 10;
/// Most bytes of a deliverable accepted (id, title and content together).
pub const MAX_DELIVERABLE: usize = 1024 * 1024;
/// Most days one list request spans.
pub const MAX_DAYS: i64 = 366;
/// Days a list covers when it gives no range.
pub const DEFAULT_DAYS: i64 = 30;
/// Most deliverables per list page.
pub const MAX_PAGE: usize = 200;
/// Deliverables per list page when none is asked.
pub const DEFAULT_PAGE: usize = 50;
/// Most index entries one list request reads.
const MAX_SCAN: usize = 20_000;

/// One attempt due: a deliverable to one publisher (or the library).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The deliverable.
    pub deliverable_id: String,
    /// The publisher's name, or [`LIBRARY`].
    pub publisher: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (unix ms).
    pub due_ms: i64,
}

impl Job {
    fn key(&self) -> Vec<u8> {
        format!("{}{SEP}{}", self.deliverable_id, self.publisher).into_bytes()
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Delivered; where it went (a path, a status, a message ts, an item id).
    Done(String),
    /// Failed for now (a timeout, a 5xx, a 429): retried after a backoff.
    Retry(String),
    /// Failed for good (a 4xx, a bad setting): no more attempts.
    Failed(String),
}

/// Retry delays: `base` doubled per attempt, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after `attempts` failed attempts (1 = the first failed).
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Why a deliverable was refused.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// It cannot be taken as it is (dead-lettered, never retried).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state machine.
pub struct Book {
    store: Arc<dyn KvStore>,
    publishing: Arc<Publishing>,
    backoff: Backoff,
    /// Jobs handed out and not settled yet.
    in_flight: HashSet<Vec<u8>>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// When a deliverable was made (its `at`, else `fallback`).
pub fn made_at(d: &v1::Deliverable, fallback: DateTime<Utc>) -> DateTime<Utc> {
    d.at.as_ref()
        .and_then(|t| {
            Utc.timestamp_opt(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .single()
        })
        .unwrap_or(fallback)
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::from_message(format!("decoding {what}: {e}"))
}

impl Book {
    /// A book over `store`, publishing as `publishing` says.
    pub fn new(store: Arc<dyn KvStore>, publishing: Arc<Publishing>, backoff: Backoff) -> Self {
        Book {
            store,
            publishing,
            backoff,
            in_flight: HashSet::new(),
        }
    }

    /// Publishes as `publishing` says from now on (a changed studio): jobs
    /// already queued keep their publisher, looked up by name when due.
    pub fn set_publishing(&mut self, publishing: Arc<Publishing>) {
        self.publishing = publishing;
    }

    /// Forgets what was handed out (after a restart every job is due again).
    pub fn reset_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// One deliverable with its outcomes.
    pub fn get(&self, id: &str) -> Result<Option<v1::DeliverableRecord>, StoreError> {
        match self.store.get(RECORDS, id.as_bytes())? {
            None => Ok(None),
            Some(b) => v1::DeliverableRecord::decode(b.as_slice())
                .map(Some)
                .map_err(|e| decode_err(id, e)),
        }
    }

    fn put_record(&self, r: &v1::DeliverableRecord) -> Result<(), StoreError> {
        let id = r.deliverable.as_ref().map(|d| d.id.as_str()).unwrap_or("");
        self.store.apply(
            RECORDS,
            vec![Op::Put(id.as_bytes().to_vec(), r.encode_to_vec())],
        )
    }

    /// Takes a deliverable: stores it and its first job (the library). False
    /// if it was known already (a duplicate delivery).
    pub fn accept(&mut self, d: v1::Deliverable, now: DateTime<Utc>) -> Result<bool, BookError> {
        if d.id.is_empty() || d.id.len() > 512 || d.workflow.is_empty() {
            return Err(BookError::Invalid(
                "a deliverable needs an id (at most 512 bytes) and a workflow".into(),
            ));
        }
        if d.encoded_len() > MAX_DELIVERABLE {
            return Err(BookError::Invalid(format!(
                "deliverable {} is {} bytes; at most {MAX_DELIVERABLE}",
                d.id,
                d.encoded_len()
            )));
        }
        if self.get(&d.id)?.is_some() {
            return Ok(false);
        }
        let at = made_at(&d, now);
        let job = Job {
            deliverable_id: d.id.clone(),
            publisher: LIBRARY.into(),
            attempts: 0,
            due_ms: ms(now),
        };
        // The job first, the record last: a record means all is written.
        self.put_job(&job)?;
        let day_key = format!("{}/{:013}/{}", at.format("%Y-%m-%d"), ms(at).max(0), d.id);
        self.store.apply(
            BY_DAY,
            vec![Op::Put(day_key.into_bytes(), d.id.as_bytes().to_vec())],
        )?;
        let outcomes = vec![pending_outcome(&d.id, LIBRARY, LIBRARY, 0, "queued", now)];
        self.put_record(&v1::DeliverableRecord {
            deliverable: Some(d),
            outcomes,
        })?;
        Ok(true)
    }

    fn put_job(&self, job: &Job) -> Result<(), StoreError> {
        let body = serde_json::to_vec(job).map_err(|e| StoreError::from_message(e.to_string()))?;
        self.store.apply(OUTBOX, vec![Op::Put(job.key(), body)])
    }

    /// Jobs due at `now` (at most `max`), with their deliverables; they are
    /// in flight until [`Book::settle`]d.
    pub fn due(
        &mut self,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<(Job, v1::Deliverable)>, StoreError> {
        let mut out = Vec::new();
        for (key, body) in self.store.scan_prefix(OUTBOX, b"")? {
            if out.len() >= max {
                break;
            }
            if self.in_flight.contains(&key) {
                continue;
            }
            let Ok(job) = serde_json::from_slice::<Job>(&body) else {
                tracing::error!("an outbox entry does not decode; dropped");
                self.store.apply(OUTBOX, vec![Op::Delete(key)])?;
                continue;
            };
            if job.due_ms > ms(now) {
                continue;
            }
            match self.get(&job.deliverable_id)? {
                Some(v1::DeliverableRecord {
                    deliverable: Some(d),
                    ..
                }) => {
                    self.in_flight.insert(key);
                    out.push((job, d));
                }
                // Left by a crash before the record was written: the
                // redelivered deliverable writes it again.
                _ => self.store.apply(OUTBOX, vec![Op::Delete(key)])?,
            }
        }
        Ok(out)
    }

    fn max_attempts(&self, publisher: &str) -> u32 {
        if publisher == LIBRARY {
            return LIBRARY_ATTEMPTS;
        }
        self.publishing
            .publishers
            .get(publisher)
            .map_or(1, |p| p.max_attempts)
    }

    /// Records what an attempt came to; returns the outcomes to announce (the
    /// settled one, and after the library the publishers' queued ones).
    pub fn settle(
        &mut self,
        mut job: Job,
        attempt: Attempt,
        now: DateTime<Utc>,
    ) -> Result<Vec<v1::PublishOutcome>, StoreError> {
        self.in_flight.remove(&job.key());
        let Some(mut record) = self.get(&job.deliverable_id)? else {
            self.store.apply(OUTBOX, vec![Op::Delete(job.key())])?;
            return Ok(Vec::new());
        };
        let Some(d) = record.deliverable.clone() else {
            return Ok(Vec::new());
        };
        job.attempts += 1;
        let kind = if job.publisher == LIBRARY {
            LIBRARY.to_string()
        } else {
            self.publishing
                .publishers
                .get(&job.publisher)
                .map_or("unknown", |p| p.kind.as_str())
                .to_string()
        };
        let max = self.max_attempts(&job.publisher);
        let (ok, pending, detail) = match attempt {
            Attempt::Done(detail) => (true, false, detail),
            Attempt::Retry(e) if job.attempts < max => (false, true, e),
            Attempt::Retry(e) => (false, false, format!("{e} (gave up after {max} attempts)")),
            Attempt::Failed(e) => (false, false, e),
        };
        let outcome = v1::PublishOutcome {
            deliverable_id: job.deliverable_id.clone(),
            publisher: job.publisher.clone(),
            kind,
            ok,
            detail,
            attempts: job.attempts,
            at: Some(ts(now)),
            pending,
        };
        let mut announced = vec![outcome.clone()];
        if pending {
            let delay = self.backoff.delay(job.attempts);
            job.due_ms = ms(now) + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
            self.put_job(&job)?;
        } else {
            self.store.apply(OUTBOX, vec![Op::Delete(job.key())])?;
            concierto_telemetry::metrics::deliverable_published(
                &d.workflow,
                &job.publisher,
                if ok { "ok" } else { "failed" },
            );
        }
        set_outcome(&mut record.outcomes, outcome);
        if job.publisher == LIBRARY && !pending {
            // Step 2: every publisher that takes the workflow.
            let publishers: Vec<PublisherDef> = self
                .publishing
                .publishers_for(&d.workflow)
                .cloned()
                .collect();
            for p in publishers {
                let next = Job {
                    deliverable_id: d.id.clone(),
                    publisher: p.name.clone(),
                    attempts: 0,
                    due_ms: ms(now),
                };
                self.put_job(&next)?;
                let o = pending_outcome(&d.id, &p.name, p.kind.as_str(), 0, "queued", now);
                set_outcome(&mut record.outcomes, o.clone());
                announced.push(o);
            }
        }
        self.put_record(&record)?;
        Ok(announced)
    }

    /// Deliverables with their outcomes, newest first, by day range, paged.
    pub fn list(
        &self,
        req: &v1::ListDeliverablesRequest,
        now: DateTime<Utc>,
    ) -> Result<v1::ListDeliverablesResponse, BookError> {
        if !req.id.is_empty() {
            let found = self.get(&req.id)?;
            return Ok(v1::ListDeliverablesResponse {
                deliverables: found.into_iter().collect(),
                next_page_token: String::new(),
            });
        }
        let day = |s: &str, what: &str| -> Result<Option<NaiveDate>, BookError> {
            if s.is_empty() {
                return Ok(None);
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    BookError::Invalid(format!("{what} {s:?} is not a day such as 2026-12-06"))
                })
        };
        let to = day(&req.to_day, "to_day")?.unwrap_or_else(|| now.date_naive());
        let from = day(&req.from_day, "from_day")?
            .unwrap_or_else(|| to - chrono::Duration::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err(BookError::Invalid(format!(
                "from_day {from} is after to_day {to}"
            )));
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(BookError::Invalid(format!(
                "a list spans at most {MAX_DAYS} days"
            )));
        }
        let size = match req.page_size {
            0 => DEFAULT_PAGE,
            n => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
        };
        let offset: usize = match req.page_token.as_str() {
            "" => 0,
            t => t.parse().map_err(|_| {
                BookError::Invalid(format!("page_token {t:?} is not one this service gave"))
            })?,
        };
        let mut out = Vec::new();
        let mut seen = 0usize;
        let mut scanned = 0usize;
        let mut more = false;
        let mut d = to;
        'days: while d >= from {
            let prefix = format!("{}/", d.format("%Y-%m-%d"));
            let mut entries = self.store.scan_prefix(BY_DAY, prefix.as_bytes())?;
            entries.reverse();
            for (_, id) in entries {
                scanned += 1;
                if scanned > MAX_SCAN {
                    more = true;
                    break 'days;
                }
                let id = String::from_utf8_lossy(&id).to_string();
                let Some(r) = self.get(&id)? else { continue };
                let wf = r.deliverable.as_ref().map(|d| d.workflow.as_str());
                if !req.workflow.is_empty() && wf != Some(req.workflow.as_str()) {
                    continue;
                }
                if seen >= offset {
                    if out.len() == size {
                        more = true;
                        break 'days;
                    }
                    out.push(r);
                }
                seen += 1;
            }
            let Some(prev) = d.pred_opt() else { break };
            d = prev;
        }
        Ok(v1::ListDeliverablesResponse {
            next_page_token: if more && !out.is_empty() {
                (offset + out.len()).to_string()
            } else {
                String::new()
            },
            deliverables: out,
        })
    }
}

fn pending_outcome(
    id: &str,
    publisher: &str,
    kind: &str,
    attempts: u32,
    detail: &str,
    now: DateTime<Utc>,
) -> v1::PublishOutcome {
    v1::PublishOutcome {
        deliverable_id: id.into(),
        publisher: publisher.into(),
        kind: kind.into(),
        ok: false,
        detail: detail.into(),
        attempts,
        at: Some(ts(now)),
        pending: true,
    }
}

fn set_outcome(outcomes: &mut Vec<v1::PublishOutcome>, o: v1::PublishOutcome) {
    match outcomes.iter_mut().find(|x| x.publisher == o.publisher) {
        Some(x) => *x = o,
        None => outcomes.push(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_core::config::PublisherKind;
    use concierto_core::store::SledStore;

    fn book(max_attempts: u32) -> (tempfile::TempDir, Book) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut p = Publishing::default();
        p.deliverables.insert("wf".into(), vec!["write".into()]);
        p.publishers.insert(
            "hook".into(),
            PublisherDef {
                name: "hook".into(),
                kind: PublisherKind::Webhook {
                    url: "http://127.0.0.1:1/".into(),
                    secret_env: "K".into(),
                },
                workflows: vec![],
                max_attempts,
                timeout: Duration::from_secs(1),
            },
        );
        p.publishers.insert(
            "other".into(),
            PublisherDef {
                name: "other".into(),
                kind: PublisherKind::Folder { path: "/x".into() },
                workflows: vec!["another".into()],
                max_attempts,
                timeout: Duration::from_secs(1),
            },
        );
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
        (dir, Book::new(store, Arc::new(p), b))
    }

    fn deliverable(id: &str, at: DateTime<Utc>) -> v1::Deliverable {
        v1::Deliverable {
            id: id.into(),
            run_id: id.split('/').next().unwrap().into(),
            workflow: "wf".into(),
            step_id: "write".into(),
            title: "T".into(),
            content: "# T\nbody".into(),
            at: Some(ts(at)),
            ..Default::default()
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 9, 0, 0).unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let d: Vec<u64> = (1..=6).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn the_library_comes_first_then_the_publishers_that_take_the_workflow() {
        let (_d, mut b) = book(3);
        assert!(b.accept(deliverable("r1/write", t0()), t0()).unwrap());
        assert!(!b.accept(deliverable("r1/write", t0()), t0()).unwrap());
        let due = b.due(t0(), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0.publisher, LIBRARY);
        // Handed out: not due again until settled.
        assert!(b.due(t0(), 10).unwrap().is_empty());
        let out = b
            .settle(due[0].0.clone(), Attempt::Done("item abc".into()), t0())
            .unwrap();
        let names: Vec<&str> = out.iter().map(|o| o.publisher.as_str()).collect();
        assert_eq!(
            names,
            vec![LIBRARY, "hook"],
            "`other` takes another workflow"
        );
        assert!(out[0].ok && !out[0].pending && out[1].pending);
        let due = b.due(t0(), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0.publisher, "hook");
    }

    #[test]
    fn retries_back_off_and_give_up_after_max_attempts() {
        let (_d, mut b) = book(3);
        b.accept(deliverable("r1/write", t0()), t0()).unwrap();
        let (lib, _) = b.due(t0(), 10).unwrap().remove(0);
        b.settle(lib, Attempt::Done("ok".into()), t0()).unwrap();
        let mut now = t0();
        for (attempt, wait) in [(1u32, 1i64), (2, 2)] {
            let (job, _) = b.due(now, 10).unwrap().remove(0);
            let o = b.settle(job, Attempt::Retry("500".into()), now).unwrap();
            assert!(o[0].pending && !o[0].ok && o[0].attempts == attempt);
            // Not due before its backoff.
            let early = now + chrono::Duration::milliseconds(wait * 1000 - 1);
            assert!(b.due(early, 10).unwrap().is_empty());
            now += chrono::Duration::seconds(wait);
        }
        let (job, _) = b.due(now, 10).unwrap().remove(0);
        let o = b.settle(job, Attempt::Retry("500".into()), now).unwrap();
        assert!(!o[0].pending && !o[0].ok, "{o:?}");
        assert!(o[0].detail.contains("gave up after 3 attempts"));
        assert!(
            b.due(now + chrono::Duration::days(1), 10)
                .unwrap()
                .is_empty()
        );
        let r = b.get("r1/write").unwrap().unwrap();
        assert_eq!(r.outcomes.len(), 2);
        assert!(
            r.outcomes
                .iter()
                .any(|o| o.publisher == "hook" && !o.ok && o.attempts == 3)
        );
        // Counted on /metrics once settled for good.
        let text = concierto_telemetry::metrics::render();
        assert!(
            text.contains(
                "concierto_deliverables_published_total{workflow=\"wf\",publisher=\"hook\",outcome=\"failed\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_4xx_fails_at_once() {
        let (_d, mut b) = book(5);
        b.accept(deliverable("r1/write", t0()), t0()).unwrap();
        let (lib, _) = b.due(t0(), 10).unwrap().remove(0);
        b.settle(lib, Attempt::Done("ok".into()), t0()).unwrap();
        let (job, _) = b.due(t0(), 10).unwrap().remove(0);
        let o = b
            .settle(job, Attempt::Failed("HTTP 400".into()), t0())
            .unwrap();
        assert!(!o[0].pending && o[0].attempts == 1);
    }

    #[test]
    fn lists_newest_first_by_day_range_in_pages() {
        let (_d, mut b) = book(3);
        for (i, day) in [1u32, 2, 2, 3].iter().enumerate() {
            let at = Utc
                .with_ymd_and_hms(2026, 12, *day, 9, i as u32, 0)
                .unwrap();
            b.accept(deliverable(&format!("r{i}/write"), at), at)
                .unwrap();
        }
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let ids = |r: &v1::ListDeliverablesResponse| -> Vec<String> {
            r.deliverables
                .iter()
                .map(|x| x.deliverable.as_ref().unwrap().id.clone())
                .collect()
        };
        let all = b.list(&Default::default(), now).unwrap();
        assert_eq!(
            ids(&all),
            vec!["r3/write", "r2/write", "r1/write", "r0/write"]
        );
        let req = v1::ListDeliverablesRequest {
            from_day: "2026-12-02".into(),
            to_day: "2026-12-02".into(),
            page_size: 1,
            ..Default::default()
        };
        let p1 = b.list(&req, now).unwrap();
        assert_eq!(ids(&p1), vec!["r2/write"]);
        let p2 = b
            .list(
                &v1::ListDeliverablesRequest {
                    page_token: p1.next_page_token.clone(),
                    ..req.clone()
                },
                now,
            )
            .unwrap();
        assert_eq!(ids(&p2), vec!["r1/write"]);
        assert!(p2.next_page_token.is_empty());
        let bad = v1::ListDeliverablesRequest {
            from_day: "2020-01-01".into(),
            ..Default::default()
        };
        assert!(matches!(b.list(&bad, now), Err(BookError::Invalid(_))));
        let bad = v1::ListDeliverablesRequest {
            to_day: "yesterday".into(),
            ..Default::default()
        };
        assert!(matches!(b.list(&bad, now), Err(BookError::Invalid(_))));
    }

    #[test]
    fn oversized_or_anonymous_deliverables_are_refused() {
        let (_d, mut b) = book(3);
        let mut d = deliverable("r/write", t0());
        d.content = "x".repeat(MAX_DELIVERABLE + 1);
        assert!(matches!(b.accept(d, t0()), Err(BookError::Invalid(_))));
        let d = deliverable("", t0());
        assert!(matches!(b.accept(d, t0()), Err(BookError::Invalid(_))));
    }
}
