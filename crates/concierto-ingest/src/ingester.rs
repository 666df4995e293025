//! [`Ingester`]: what every runner shares (library, bus, store, clock, HTTP
//! fetcher), one read of a source ([`Ingester::run_once`]) and the store-then-
//! announce path every source ends in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use concierto_bus::{Bus, BusExt};
use concierto_content::{ContentError, ContentLibrary, Kind, NewItem, Outcome, Put};
use concierto_core::clock::SharedClock;
use concierto_core::config::{ContentSource, SourceKind};
use concierto_core::store::{KvStore, Op};
use concierto_core::subjects::content_ingested;
use concierto_proto::v1::ContentItem;
use prost::Message as _;

use crate::error::IngestError;
use crate::http::Fetcher;
use crate::{IngestOptions, TREE, analytics, announce, folder, web, x};

const PENDING: &str = "pending/";
/// Pictures waiting for the vision model (see `vision.rs`).
const VISION: &str = "vision/";

/// What one read of a source did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    /// Items the library had not seen.
    pub new: usize,
    /// New versions of items the library knew (same source key).
    pub changed: usize,
    /// Items the library already had as they are.
    pub unchanged: usize,
    /// Files, entries or pages skipped because they were bad or refused (each logged).
    pub skipped: usize,
    /// Of those skipped, files over the size limit
    /// ([`IngestOptions::max_file_bytes`](crate::IngestOptions::max_file_bytes))
    /// and pictures over a decoding limit (too many pixels for their memory).
    pub too_large: usize,
    /// Files left alone because their size and modification time had not changed.
    pub unmodified: usize,
    /// Announcements published on `content.ingested.<source>`.
    pub announced: usize,
    /// Items that left the library because they left their source (a deleted
    /// file, a record no longer in its file).
    pub removed: usize,
    /// Metric samples published from analytics records (`metric.<field>`).
    pub samples: usize,
    /// Samples left out past [`analytics::MAX_SAMPLES_PER_CYCLE`].
    pub samples_skipped: usize,
}

/// The shared core of the ingester. Cheap to clone.
#[derive(Clone)]
pub struct Ingester {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn Bus>,
    library: Arc<ContentLibrary>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: IngestOptions,
    fetcher: Fetcher,
    /// Per source: no API call before this time (X rate limits).
    blocked: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Per source: how many batches brought new or changed items since start
    /// (what a learner watches to recompute).
    changes: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester").finish_non_exhaustive()
    }
}

impl Ingester {
    /// An ingester storing into `library`, announcing on `bus`, keeping its
    /// cursors in `store` (tree [`TREE`]) and telling time by `clock`.
    pub fn new(
        bus: Arc<dyn Bus>,
        library: Arc<ContentLibrary>,
        store: Arc<dyn KvStore>,
        clock: SharedClock,
        opts: IngestOptions,
    ) -> Result<Self, IngestError> {
        let fetcher = Fetcher::new(&opts, store.clone())?;
        Ok(Ingester {
            inner: Arc::new(Inner {
                bus,
                library,
                store,
                clock,
                opts,
                fetcher,
                blocked: Mutex::new(HashMap::new()),
                changes: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub(crate) fn opts(&self) -> &IngestOptions {
        &self.inner.opts
    }

    pub(crate) fn store(&self) -> Arc<dyn KvStore> {
        self.inner.store.clone()
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.inner.fetcher
    }

    /// The library items are stored in.
    pub fn library(&self) -> &Arc<ContentLibrary> {
        &self.inner.library
    }

    pub(crate) fn blocked_until(&self, source: &str) -> Option<DateTime<Utc>> {
        let map = self.inner.blocked.lock().unwrap_or_else(|p| p.into_inner());
        map.get(source).copied()
    }

    /// How many batches of `source` brought new, changed or removed items
    /// since this ingester started.
    pub fn changes(&self, source: &str) -> u64 {
        let map = self.inner.changes.lock().unwrap_or_else(|p| p.into_inner());
        map.get(source).copied().unwrap_or(0)
    }

    pub(crate) fn block_until(&self, source: &str, until: DateTime<Utc>) {
        let mut map = self.inner.blocked.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(source.to_string(), until);
    }

    /// Reads `source` once: publishes announcements left over from an earlier
    /// cycle, then reads the source, stores what is new and announces it.
    /// Bad items are logged and counted in [`CycleReport::skipped`]; an error
    /// means the source as a whole could not be read this time.
    pub async fn run_once(&self, source: &ContentSource) -> Result<CycleReport, IngestError> {
        let mut report = CycleReport::default();
        report.announced += self.flush_outbox().await?;
        self.look_at_pictures().await?;
        match source.kind {
            SourceKind::ImageDatabase | SourceKind::ComponentLibrary | SourceKind::TrainingData => {
                folder::run(self, source, &mut report).await?
            }
            SourceKind::WebScraper => web::run(self, source, &mut report).await?,
            SourceKind::TwitterStream => x::run(self, source, &mut report).await?,
        }
        tracing::debug!(source = %source.name, ?report, "source read");
        Ok(report)
    }

    /// Publishes the announcements the outbox still holds; returns how many.
    pub async fn flush_outbox(&self) -> Result<usize, IngestError> {
        let store = self.inner.store.clone();
        let pending = blocking(move || Ok(store.scan_prefix(TREE, PENDING.as_bytes())?)).await?;
        let mut done = 0;
        let mut budget = CycleReport::default();
        for (key, value) in pending {
            match ContentItem::decode(value.as_slice()) {
                Ok(item) => {
                    self.publish(&item, &mut budget).await?;
                    done += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dropping an unreadable announcement from the outbox")
                }
            }
            self.inner.store.apply(TREE, vec![Op::Delete(key)])?;
        }
        Ok(done)
    }

    /// Publishes the announcement of `item`, then the metric samples of an
    /// analytics record ([`analytics`]) within the cycle's bound.
    async fn publish(
        &self,
        item: &ContentItem,
        report: &mut CycleReport,
    ) -> Result<(), IngestError> {
        self.inner
            .bus
            .publish_durable_proto(&content_ingested(&item.source), item, &item.item_id)
            .await?;
        for s in analytics::samples(item) {
            if report.samples >= analytics::MAX_SAMPLES_PER_CYCLE {
                if report.samples_skipped == 0 {
                    tracing::warn!(source = %item.source, max = analytics::MAX_SAMPLES_PER_CYCLE, "this read of the source has published as many metric samples as it may; the rest are left out");
                }
                report.samples_skipped += 1;
                continue;
            }
            self.inner
                .bus
                .publish_durable_proto(&s.subject, &s.sample, &s.id)
                .await?;
            report.samples += 1;
        }
        Ok(())
    }

    /// Forgets the items of `source` at `keys` (gone from the source): each
    /// leaves the library unless another source key still has its content.
    pub(crate) async fn remove_keys(
        &self,
        source: &str,
        keys: Vec<String>,
        report: &mut CycleReport,
    ) -> Result<(), IngestError> {
        if keys.is_empty() {
            return Ok(());
        }
        let library = self.inner.library.clone();
        let src = source.to_string();
        let gone = blocking(move || Ok(library.remove_source_keys(&src, &keys)?)).await?;
        for item in &gone {
            tracing::info!(source, item = %item.id, title = %item.title, "gone from its source; out of the library");
        }
        report.removed += gone.len();
        let mut map = self.inner.changes.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(source.to_string()).or_default() += 1;
        Ok(())
    }

    /// [`Ingester::store_items`] with the extractors `source`'s
    /// `extractor`/`extract` selects set on every item.
    pub(crate) async fn store_items_of(
        &self,
        source: &concierto_core::config::ContentSource,
        items: Vec<NewItem>,
        report: &mut CycleReport,
    ) -> Result<Vec<Result<Put, ContentError>>, IngestError> {
        let selected = concierto_content::extract::Extractors::from_names(&source.extract);
        let items = items.into_iter().map(|n| n.extractors(selected)).collect();
        self.store_items(&source.name, items, report).await
    }

    /// Stores `items` of `source` in batches and announces the new and changed
    /// ones. Returns each item's result in order; a bad item is logged and
    /// counted as skipped, a storage failure ends the call.
    pub(crate) async fn store_items(
        &self,
        source: &str,
        items: Vec<NewItem>,
        report: &mut CycleReport,
    ) -> Result<Vec<Result<Put, ContentError>>, IngestError> {
        let mut out = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let batch: Vec<NewItem> = items.by_ref().take(self.inner.opts.batch.max(1)).collect();
            let keys: Vec<String> = batch.iter().map(|n| n.source_key.clone()).collect();
            let library = self.inner.library.clone();
            let results = blocking(move || Ok(library.put_many(batch)?)).await?;
            let mut announce = Vec::new();
            let mut look = Vec::new();
            for (r, key) in results.iter().zip(&keys) {
                if let Ok(put) = r
                    && put.outcome != Outcome::Unchanged
                    && put.item.kind == Kind::Image
                    && self
                        .inner
                        .opts
                        .vision
                        .as_ref()
                        .is_some_and(|v| v.covers(source))
                {
                    look.push(put.item.id.clone());
                }
                match r {
                    Ok(put) => match put.outcome {
                        Outcome::New => {
                            report.new += 1;
                            announce.push(announce::content_item(&put.item));
                        }
                        Outcome::Changed => {
                            report.changed += 1;
                            announce.push(announce::content_item(&put.item));
                        }
                        Outcome::Unchanged => report.unchanged += 1,
                    },
                    Err(e) => {
                        report.skipped += 1;
                        if e.kind() == concierto_content::ErrorKind::TooLarge {
                            report.too_large += 1;
                        }
                        tracing::warn!(source, key = %key, error = %e, "item skipped");
                    }
                }
            }
            if !look.is_empty() {
                let ops = look
                    .iter()
                    .map(|id| {
                        Op::Put(
                            format!("{VISION}{id}").into_bytes(),
                            source.as_bytes().to_vec(),
                        )
                    })
                    .collect();
                self.inner.store.apply(TREE, ops)?;
            }
            if !announce.is_empty() {
                let mut map = self.inner.changes.lock().unwrap_or_else(|p| p.into_inner());
                *map.entry(source.to_string()).or_default() += 1;
            }
            let announced = self.announce(announce, report).await?;
            report.announced += announced;
            self.look_at_pictures().await?;
            out.extend(results);
        }
        Ok(out)
    }

    /// Shows the pictures waiting for a vision model (store keys
    /// `vision/<id>`, value = source) to it and adds the concepts it names;
    /// a picture the model could not read is logged and not asked again.
    pub async fn look_at_pictures(&self) -> Result<usize, IngestError> {
        let Some(vision) = self.inner.opts.vision.clone() else {
            return Ok(0);
        };
        let store = self.inner.store.clone();
        let waiting = blocking(move || Ok(store.scan_prefix(TREE, VISION.as_bytes())?)).await?;
        let mut done = 0;
        for (key, source) in waiting {
            let id = String::from_utf8_lossy(&key[VISION.len()..]).to_string();
            let source = String::from_utf8_lossy(&source).to_string();
            let library = self.inner.library.clone();
            let blob_id = id.clone();
            let blob = blocking(move || Ok(library.blob(&blob_id)?)).await?;
            match blob {
                Some(blob) => match vision
                    .concepts(&source, &id, &blob.media_type, &blob.bytes)
                    .await
                {
                    Ok(concepts) => {
                        let library = self.inner.library.clone();
                        let item_id = id.clone();
                        let found = concepts.clone();
                        match blocking(move || Ok(library.add_concepts(&item_id, &found)?)).await {
                            Ok(item) => {
                                done += 1;
                                tracing::info!(%source, item = %id, concepts = ?concepts, all = ?item.concepts, "concepts from the vision model");
                            }
                            Err(e) => {
                                tracing::warn!(%source, item = %id, error = %e, "concepts could not be stored")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%source, item = %id, error = %e, "the vision model could not read the picture; skipped")
                    }
                },
                None => {
                    tracing::warn!(%source, item = %id, "picture no longer in the library; skipped")
                }
            }
            self.inner.store.apply(TREE, vec![Op::Delete(key)])?;
        }
        Ok(done)
    }

    /// Writes the announcements to the outbox, publishes them, then clears them.
    async fn announce(
        &self,
        items: Vec<ContentItem>,
        report: &mut CycleReport,
    ) -> Result<usize, IngestError> {
        if items.is_empty() {
            return Ok(0);
        }
        let key = |i: &ContentItem| format!("{PENDING}{}", i.item_id).into_bytes();
        let ops = items
            .iter()
            .map(|i| Op::Put(key(i), i.encode_to_vec()))
            .collect();
        self.inner.store.apply(TREE, ops)?;
        for item in &items {
            self.publish(item, report).await?;
            tracing::debug!(source = %item.source, item = %item.item_id, kind = %item.kind, title = %item.title, "content ingested");
        }
        self.inner
            .store
            .apply(TREE, items.iter().map(|i| Op::Delete(key(i))).collect())?;
        Ok(items.len())
    }
}

/// Runs blocking work (disk, extractors) off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, IngestError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, IngestError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IngestError::Blocking(e.to_string()))?
}
