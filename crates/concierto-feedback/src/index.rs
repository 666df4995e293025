//! The time index of stored feedback, so that a page of `feedback.list` reads
//! the records of that page and no others.
//!
//! Two store trees beside [`FEEDBACK_TREE`]:
//! - [`TIME_INDEX_TREE`]: key = `<reversed seconds, 16 hex><reversed nanos, 8
//!   hex><feedback id>`, empty value. Keys in order are the feedback newest
//!   first (equal times by id), as pages list them.
//! - [`TIME_BUCKETS_TREE`]: key = the first [`BUCKET_LEN`] characters of index
//!   keys in use (buckets of 4096 seconds), empty value: the store reads by
//!   prefix, so a page walks the buckets from its start and reads the index
//!   keys of those buckets only, never the records it does not show.
//!
//! [`put_record`] writes the index entry before the record (a record never
//! exists without its entry; an entry whose record is missing is skipped).
//! A store written before the index existed is indexed once, by the first
//! [`ensure_time_index`] (at [`crate::start`], else at the first listing).

use concierto_core::store::{KvStore, Op};
use concierto_proto::v1::Feedback;
use prost::Message as _;

use crate::error::FeedbackError;
use crate::intake::{FEEDBACK_TREE, decode};

/// Store tree of the time index (key = reversed time + feedback id).
pub const TIME_INDEX_TREE: &str = "feedback_by_time";
/// Store tree of the index's buckets in use.
pub const TIME_BUCKETS_TREE: &str = "feedback_by_time_buckets";
/// Store tree of the index's state (`version` once the index is complete).
const INDEX_META_TREE: &str = "feedback_index";
const VERSION_KEY: &[u8] = b"version";
const VERSION: &[u8] = b"1";
/// Characters of an index key that name its bucket (4096 seconds).
pub const BUCKET_LEN: usize = 13;
/// Characters of an index key before the feedback id.
const TIME_LEN: usize = 24;

/// `(seconds, nanos)` of a record's `received_at` (zero when missing).
fn time_of(fb: &Feedback) -> (i64, i32) {
    fb.received_at
        .as_ref()
        .map(|t| (t.seconds, t.nanos))
        .unwrap_or((0, 0))
}

/// The index key of a record received at `(seconds, nanos)` with `id`: keys
/// sort newest first, then by id.
pub fn index_key(seconds: i64, nanos: i32, id: &str) -> Vec<u8> {
    // Order-preserving as unsigned, then reversed.
    let biased = (seconds as u64) ^ (1 << 63);
    let nanos = u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0);
    let mut key = format!("{:016x}{:08x}", u64::MAX - biased, 999_999_999 - nanos).into_bytes();
    key.extend_from_slice(id.as_bytes());
    key
}

/// The `(seconds, nanos, id)` an index key was made of.
fn parse_index_key(key: &[u8]) -> Option<(i64, i32, String)> {
    let time = std::str::from_utf8(key.get(..TIME_LEN)?).ok()?;
    let rev_s = u64::from_str_radix(&time[..16], 16).ok()?;
    let rev_n = u32::from_str_radix(&time[16..], 16).ok()?;
    let seconds = ((u64::MAX - rev_s) ^ (1 << 63)) as i64;
    let nanos = i32::try_from(999_999_999u32.checked_sub(rev_n)?).ok()?;
    let id = String::from_utf8(key[TIME_LEN..].to_vec()).ok()?;
    Some((seconds, nanos, id))
}

/// The ops that index `fb` (its entry and its bucket), per tree.
fn index_ops(fb: &Feedback) -> (Op, Op) {
    let (s, n) = time_of(fb);
    let key = index_key(s, n, &fb.feedback_id);
    let bucket = key[..BUCKET_LEN].to_vec();
    (Op::Put(bucket, Vec::new()), Op::Put(key, Vec::new()))
}

/// Writes `fb`'s index entry, then the record (no flush, no outbox entry: see
/// [`crate::accept`] for taking feedback in). Blocking.
pub fn put_record(store: &dyn KvStore, fb: &Feedback) -> Result<(), FeedbackError> {
    let (bucket, entry) = index_ops(fb);
    store.apply(TIME_BUCKETS_TREE, vec![bucket])?;
    store.apply(TIME_INDEX_TREE, vec![entry])?;
    store.apply(
        FEEDBACK_TREE,
        vec![Op::Put(
            fb.feedback_id.as_bytes().to_vec(),
            fb.encode_to_vec(),
        )],
    )?;
    Ok(())
}

/// Indexes every stored record once, when the store has no complete index yet
/// (a store of an older version); then marks the index complete. Returns how
/// many records it indexed (0 when the index was complete). Blocking; the
/// one time it indexes, it reads every record.
pub fn ensure_time_index(store: &dyn KvStore) -> Result<usize, FeedbackError> {
    if store.get(INDEX_META_TREE, VERSION_KEY)?.as_deref() == Some(VERSION) {
        return Ok(0);
    }
    let mut buckets = Vec::new();
    let mut entries = Vec::new();
    for (k, v) in store.scan_prefix(FEEDBACK_TREE, b"")? {
        match decode(&k, &v) {
            Ok(fb) => {
                let (bucket, entry) = index_ops(&fb);
                buckets.push(bucket);
                entries.push(entry);
            }
            Err(e) => tracing::warn!(error = %e, "not indexing an unreadable feedback record"),
        }
    }
    let indexed = entries.len();
    store.apply(TIME_BUCKETS_TREE, buckets)?;
    store.apply(TIME_INDEX_TREE, entries)?;
    store.put(INDEX_META_TREE, VERSION_KEY, VERSION)?;
    store.flush()?;
    if indexed > 0 {
        tracing::info!(records = indexed, "stored feedback indexed by time");
    }
    Ok(indexed)
}

/// Up to `limit` stored pieces of feedback, newest first. Blocking.
pub fn list(store: &dyn KvStore, limit: usize) -> Result<Vec<Feedback>, FeedbackError> {
    Ok(list_page(store, limit, "")?.0)
}

/// The page token of the entry `key` (`<seconds>:<nanos>:<id>`).
fn token_of(key: &[u8]) -> String {
    match parse_index_key(key) {
        Some((s, n, id)) => format!("{s}:{n}:{id}"),
        None => String::new(),
    }
}

/// The index key a page token stands for.
fn parse_token(token: &str) -> Result<Vec<u8>, FeedbackError> {
    let bad =
        || FeedbackError::Invalid(format!("page token {token:?} is not one this server gave"));
    let mut parts = token.splitn(3, ':');
    let s: i64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let n: i32 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?;
    Ok(index_key(s, n, id))
}

/// A page of stored feedback, newest first: up to `page_size` records after
/// `page_token` (empty for the first page), and the token of the next page
/// (empty when this is the last). It reads the index keys of the buckets the
/// page spans and the page's records, nothing else; records that do not
/// decode are skipped with a warning. Blocking.
pub fn list_page(
    store: &dyn KvStore,
    page_size: usize,
    page_token: &str,
) -> Result<(Vec<Feedback>, String), FeedbackError> {
    let after = if page_token.is_empty() {
        None
    } else {
        Some(parse_token(page_token)?)
    };
    ensure_time_index(store)?;
    let first_bucket = after.as_ref().map(|a| a[..BUCKET_LEN].to_vec());
    // One more key than the page: whether there is a next page.
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(page_size.saturating_add(1).min(1024));
    'buckets: for (bucket, _) in store.scan_prefix(TIME_BUCKETS_TREE, b"")? {
        if first_bucket.as_ref().is_some_and(|f| bucket < *f) {
            continue;
        }
        for (key, _) in store.scan_prefix(TIME_INDEX_TREE, &bucket)? {
            if after.as_ref().is_some_and(|a| key <= *a) {
                continue;
            }
            keys.push(key);
            if keys.len() > page_size {
                break 'buckets;
            }
        }
    }
    let more = keys.len() > page_size;
    keys.truncate(page_size);
    let mut page = Vec::with_capacity(keys.len());
    for key in &keys {
        let id = &key[TIME_LEN.min(key.len())..];
        // No record: its entry was written just before a crash kept the
        // record from being stored; nothing to show.
        if let Some(v) = store.get(FEEDBACK_TREE, id)? {
            match decode(id, &v) {
                Ok(fb) => page.push(fb),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable feedback record"),
            }
        }
    }
    let next = match (more, keys.last()) {
        (true, Some(last)) => token_of(last),
        _ => String::new(),
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_core::store::SledStore;

    fn fb(id: &str, seconds: i64, nanos: i32) -> Feedback {
        Feedback {
            feedback_id: id.to_string(),
            text: "t".into(),
            received_at: Some(prost_types::Timestamp { seconds, nanos }),
            ..Default::default()
        }
    }

    #[test]
    fn keys_sort_newest_first_then_by_id_and_read_back() {
        let mut keys = [
            index_key(1000, 0, "b"),
            index_key(-5, 0, "a"),
            index_key(1000, 0, "a"),
            index_key(1000, 500, "z"),
            index_key(2_000_000_000, 0, "c"),
        ];
        keys.sort();
        let order: Vec<_> = keys
            .iter()
            .map(|k| parse_index_key(k).expect("parses"))
            .collect();
        assert_eq!(
            order,
            [
                (2_000_000_000, 0, "c".to_string()),
                (1000, 500, "z".to_string()),
                (1000, 0, "a".to_string()),
                (1000, 0, "b".to_string()),
                (-5, 0, "a".to_string()),
            ]
        );
    }

    #[test]
    fn pages_are_newest_first_and_chain() {
        let store = SledStore::temporary().expect("store");
        ensure_time_index(&store).expect("index");
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            // Two buckets apart, so pages cross buckets.
            put_record(&store, &fb(id, 1000 + 3000 * i as i64, 0)).expect("put");
        }
        let (first, next) = list_page(&store, 2, "").expect("page");
        let ids: Vec<_> = first.iter().map(|f| f.feedback_id.as_str()).collect();
        assert_eq!(ids, ["e", "d"]);
        let (second, next) = list_page(&store, 2, &next).expect("page");
        let ids: Vec<_> = second.iter().map(|f| f.feedback_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        let (third, next) = list_page(&store, 2, &next).expect("page");
        assert_eq!(third.len(), 1);
        assert_eq!(next, "");
        assert_eq!(list(&store, 10).expect("list").len(), 5);
        assert!(list_page(&store, 2, "nonsense").is_err());
    }

    #[test]
    fn a_store_without_an_index_is_indexed_once() {
        let store = SledStore::temporary().expect("store");
        for (i, id) in ["x", "y", "z"].iter().enumerate() {
            let f = fb(id, 500 + i as i64, 0);
            store
                .put(FEEDBACK_TREE, id.as_bytes(), &f.encode_to_vec())
                .expect("put");
        }
        store
            .put(FEEDBACK_TREE, b"broken", b"\xff\xff")
            .expect("put");
        let ids: Vec<_> = list(&store, 10)
            .expect("list")
            .into_iter()
            .map(|f| f.feedback_id)
            .collect();
        assert_eq!(ids, ["z", "y", "x"]);
        assert_eq!(ensure_time_index(&store).expect("index"), 0, "done once");
    }
}
