//! Batched new-content triggers (`batch: "1 hour"`): one run per window with
//! every item of the window.
//!
//! An item that fires a batched trigger does not start a run: it is written to
//! the scheduler's store (tree [`crate::state::TREE`], key
//! `batch/<trigger>/<window start ms, 20 digits>/<item id>`, the item without
//! its text) and flushed, and only then is the event acknowledged, so a restart
//! inside a window loses nothing. Windows are aligned on the Unix epoch (a
//! `1 hour` window starts on the hour, UTC) and an item joins the window open
//! at the time it is handled on the scheduler's clock. Once a window has
//! ended, the next tick fires it: run id `<trigger>@<window start, RFC 3339
//! UTC, seconds>`, params `batch_start`, `batch_end`, `batch_items` (how many)
//! and `items` (a JSON array of `{id, source, title, url}`, at most
//! [`MAX_ITEMS_PARAM_BYTES`]; the ones left out are counted in
//! `items_omitted`), and a `Content` cause whose text lists the items. The
//! window's keys are deleted once the run is published (or dropped by
//! `max_runs_per_day`); a crash in between publishes the same run id again,
//! which the bus drops as a duplicate.
//!
//! A window holds at most [`MAX_WINDOW_ITEMS`] items; later ones are dropped,
//! logged and counted in the trigger's `dropped`. An item already waiting in
//! an open window of the trigger (a redelivered event) is not added again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use concierto_core::config::{Studio, Trigger};
use concierto_core::store::{KvStore, Op};
use concierto_proto::v1::{ContentItem, StartRun, start_run};
use prost::Message as _;

use crate::SchedulerError;
use crate::runs::{REQUESTED_BY_SCHEDULER, scheduled_run_id, start_run, timestamp};
use crate::state::TREE;

/// Items one window holds at most.
pub const MAX_WINDOW_ITEMS: u32 = 1000;
/// Longest `items` param of a batch run (bytes of JSON).
pub const MAX_ITEMS_PARAM_BYTES: usize = 64 * 1024;
/// Longest text of a batch run's cause (the list of items).
pub const MAX_CAUSE_TEXT_BYTES: usize = 16 * 1024;
/// Longest title or URL of an item kept in a window.
const MAX_FIELD_BYTES: usize = 512;

/// The open windows of one trigger: start → items held.
pub(crate) type Windows = BTreeMap<DateTime<Utc>, u32>;

/// Start of the window of length `len` that holds `t` (aligned on the epoch).
pub fn window_start(len: Duration, t: DateTime<Utc>) -> DateTime<Utc> {
    let len_ms = i64::try_from(len.as_millis()).unwrap_or(i64::MAX).max(1);
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(len_ms)).unwrap_or(t)
}

fn trigger_prefix(trigger: &str) -> Vec<u8> {
    format!("batch/{trigger}/").into_bytes()
}

fn window_prefix(trigger: &str, start: DateTime<Utc>) -> Vec<u8> {
    format!("batch/{trigger}/{:020}/", start.timestamp_millis().max(0)).into_bytes()
}

fn item_key(trigger: &str, start: DateTime<Utc>, item_id: &str) -> Vec<u8> {
    let mut k = window_prefix(trigger, start);
    k.extend_from_slice(item_id.as_bytes());
    k
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The open windows of `trigger` in `store`, with their item counts.
pub(crate) fn load_windows(store: &dyn KvStore, trigger: &str) -> Result<Windows, SchedulerError> {
    let prefix = trigger_prefix(trigger);
    let mut out = Windows::new();
    for (key, _) in store.scan_prefix(TREE, &prefix)? {
        let rest = &key[prefix.len()..];
        let ms = rest
            .get(..20)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        match ms {
            Some(start) => *out.entry(start).or_default() += 1,
            None => {
                return Err(SchedulerError::CorruptState {
                    trigger: trigger.to_string(),
                    detail: format!("batch key {:?}", String::from_utf8_lossy(&key)),
                });
            }
        }
    }
    Ok(out)
}

/// What adding an item to a window came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// Stored and flushed.
    Stored,
    /// Already waiting in an open window.
    Duplicate,
    /// The window is full: dropped.
    Full,
}

/// Stores `item` in `trigger`'s window starting at `start` and flushes, unless
/// it already waits in one of `open` or the window is full.
pub(crate) async fn add_item(
    store: Arc<dyn KvStore>,
    trigger: String,
    open: Windows,
    start: DateTime<Utc>,
    item: ContentItem,
) -> Result<Added, SchedulerError> {
    tokio::task::spawn_blocking(move || {
        for s in open.keys() {
            if store
                .get(TREE, &item_key(&trigger, *s, &item.item_id))?
                .is_some()
            {
                return Ok(Added::Duplicate);
            }
        }
        if open.get(&start).copied().unwrap_or(0) >= MAX_WINDOW_ITEMS {
            return Ok(Added::Full);
        }
        let kept = ContentItem {
            text: String::new(),
            title: cut(&item.title, MAX_FIELD_BYTES),
            url: cut(&item.url, MAX_FIELD_BYTES),
            palette: Vec::new(),
            features: Default::default(),
            ..item.clone()
        };
        store.put(
            TREE,
            &item_key(&trigger, start, &item.item_id),
            &kept.encode_to_vec(),
        )?;
        store.flush()?;
        Ok(Added::Stored)
    })
    .await
    .map_err(|e| SchedulerError::Blocking(e.to_string()))?
}

/// The items of `trigger`'s window starting at `start`, oldest first.
pub(crate) fn read_items(
    store: &dyn KvStore,
    trigger: &str,
    start: DateTime<Utc>,
) -> Result<Vec<ContentItem>, SchedulerError> {
    let mut items = Vec::new();
    for (key, value) in store.scan_prefix(TREE, &window_prefix(trigger, start))? {
        match ContentItem::decode(value.as_slice()) {
            Ok(item) => items.push(item),
            Err(e) => {
                tracing::warn!(%trigger, key = %String::from_utf8_lossy(&key), error = %e, "an unreadable batched item is left out")
            }
        }
    }
    items.sort_by(|a, b| {
        let t = |i: &ContentItem| i.ingested_at.as_ref().map(|t| (t.seconds, t.nanos));
        t(a).cmp(&t(b)).then_with(|| a.item_id.cmp(&b.item_id))
    });
    Ok(items)
}

/// Deletes `trigger`'s window starting at `start` and flushes.
pub(crate) async fn clear(
    store: Arc<dyn KvStore>,
    trigger: String,
    start: DateTime<Utc>,
) -> Result<(), SchedulerError> {
    tokio::task::spawn_blocking(move || {
        let keys = store.scan_prefix(TREE, &window_prefix(&trigger, start))?;
        store.apply(TREE, keys.into_iter().map(|(k, _)| Op::Delete(k)).collect())?;
        store.flush()?;
        Ok(())
    })
    .await
    .map_err(|e| SchedulerError::Blocking(e.to_string()))?
}

/// Param: the window's start (RFC 3339 UTC).
pub const PARAM_BATCH_START: &str = "batch_start";
/// Param: the window's end.
pub const PARAM_BATCH_END: &str = "batch_end";
/// Param: how many items the window holds.
pub const PARAM_BATCH_ITEMS: &str = "batch_items";
/// Param: the items, a JSON array of `{id, source, title, url}`.
pub const PARAM_ITEMS: &str = "items";
/// Param: items left out of [`PARAM_ITEMS`] for its size.
pub const PARAM_ITEMS_OMITTED: &str = "items_omitted";

/// The run of `trigger`'s window `[start, start + len)` holding `items`.
pub fn batch_start(
    studio: &Studio,
    trigger: &Trigger,
    start: DateTime<Utc>,
    len: Duration,
    items: &[ContentItem],
) -> StartRun {
    let end = start + chrono::Duration::from_std(len).unwrap_or_default();
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let run_id = scheduled_run_id(&trigger.name, start);
    let mut run = start_run(studio, trigger, run_id.clone(), end, REQUESTED_BY_SCHEDULER);
    let mut listed = Vec::new();
    let mut bytes = 2;
    for item in items {
        let v = serde_json::json!({
            "id": item.item_id,
            "source": item.source,
            "title": item.title,
            "url": item.url,
        });
        let len = v.to_string().len() + 1;
        if bytes + len > MAX_ITEMS_PARAM_BYTES {
            break;
        }
        bytes += len;
        listed.push(v);
    }
    let omitted = items.len() - listed.len();
    let mut text = String::new();
    for item in items {
        let line = format!("- {} ({}) {}\n", item.title, item.source, item.url);
        if text.len() + line.len() > MAX_CAUSE_TEXT_BYTES {
            text.push_str("- ...\n");
            break;
        }
        text.push_str(&line);
    }
    for (k, v) in [
        (PARAM_BATCH_START, rfc(start)),
        (PARAM_BATCH_END, rfc(end)),
        (PARAM_BATCH_ITEMS, items.len().to_string()),
        (PARAM_ITEMS, serde_json::Value::Array(listed).to_string()),
        (PARAM_ITEMS_OMITTED, omitted.to_string()),
    ] {
        run.params.insert(k.to_string(), v);
    }
    let mut sources: Vec<&str> = items.iter().map(|i| i.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    run.cause = Some(start_run::Cause::Content(ContentItem {
        item_id: run_id,
        source: sources.join(", "),
        kind: "batch".to_string(),
        title: format!(
            "{} new items between {} and {}",
            items.len(),
            rfc(start),
            rfc(end)
        ),
        text,
        ingested_at: Some(timestamp(end)),
        ..Default::default()
    }));
    run
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn windows_are_aligned_on_the_epoch() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 10, 37, 12).unwrap();
        assert_eq!(
            window_start(Duration::from_secs(3600), t),
            Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
        );
        assert_eq!(
            window_start(Duration::from_secs(900), t),
            Utc.with_ymd_and_hms(2026, 3, 1, 10, 30, 0).unwrap()
        );
    }
}
