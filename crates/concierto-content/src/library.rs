//! [`ContentLibrary`]: items in a key/value store (the truth), a tantivy index
//! over them (derived, rebuilt from the store whenever it is behind), and the
//! write path that ties them together.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::store::{KvStore, Op, SledStore, StoreError};
use tantivy::{Index, IndexReader, IndexWriter};

mod prepare;

use self::prepare::{Prepared, prepare, prepare_all};
use crate::error::ContentError;
use crate::gate::Gate;
use crate::index::{self, Fields};
use crate::model::{Blob, Collection, Edit, Item, NewItem, Outcome, Page, Put, Query};

/// The tree holding items, source keys, reference counts, collections and meta.
const TREE: &str = "content";
/// The tree holding image bytes by item id.
const BLOBS: &str = "content_blobs";
const ITEM: &[u8] = b"item/";
const KEY: &[u8] = b"key/";
const REFS: &[u8] = b"refs/";
const COLL: &[u8] = b"coll/";
const SEQ: &[u8] = b"meta/seq";

/// Colours extracted per image.
pub const PALETTE_SIZE: usize = 6;
const MAX_NAME: usize = 200;
const MAX_SOURCE_KEY: usize = 4096;
const MAX_TAGS: usize = 64;
const MAX_TAG: usize = 100;
const MAX_PLAIN_TEXT: usize = 1 << 20;
const WRITER_THREADS_MAX: usize = 2;
/// Most searches running at once in this process; the others wait their turn.
pub const MAX_CONCURRENT_SEARCHES: usize = 4;

static SEARCHES: Gate = Gate::new(MAX_CONCURRENT_SEARCHES);
const WRITER_BUDGET_PER_THREAD: usize = 48 * 1024 * 1024;

/// The content library: every item stored once by content hash, searchable,
/// editable and gathered into collections.
///
/// Thread-safe (`Send + Sync`); share it in an `Arc`. Writes are serialised
/// and durable when the call returns: the store is flushed and the index
/// committed. Use [`put_many`](Self::put_many) to ingest in batches (one flush
/// and one commit per batch). The calls block (disk, CPU): from async code,
/// run them on a blocking thread.
pub struct ContentLibrary {
    store: Arc<dyn KvStore>,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<Writer>,
    clock: SharedClock,
}

struct Writer {
    index: IndexWriter,
    /// Count of index-affecting changes; also the index's commit payload.
    seq: u64,
}

impl std::fmt::Debug for ContentLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentLibrary").finish_non_exhaustive()
    }
}

/// What one batch changed, to decide what to flush and commit.
#[derive(Default)]
struct Tx {
    store: bool,
    index: bool,
}

fn payload(seq: u64) -> String {
    format!("concierto-content v{} seq {seq}", index::SCHEMA_VERSION)
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn source_key(source: &str, key_in_source: &str) -> Vec<u8> {
    let mut k = key(KEY, source.as_bytes());
    k.push(0);
    k.extend_from_slice(key_in_source.as_bytes());
    k
}

fn decode<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, ContentError> {
    serde_json::from_slice(v).map_err(|e| ContentError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ContentError> {
    serde_json::to_vec(v).map_err(|e| ContentError::Invalid(format!("cannot encode: {e}")))
}

fn u64_of(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Tags as stored: trimmed, inner whitespace collapsed, lowercase.
pub(crate) fn normalise_tag(tag: &str) -> String {
    tag.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn normalise_tags<S: AsRef<str>>(tags: &[S]) -> Result<Vec<String>, ContentError> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = normalise_tag(t.as_ref());
        if t.is_empty() || out.contains(&t) {
            continue;
        }
        if t.chars().count() > MAX_TAG || t.chars().any(char::is_control) {
            return Err(ContentError::Invalid(format!(
                "tag {t:?}: tags are at most {MAX_TAG} characters without control characters"
            )));
        }
        out.push(t);
    }
    if out.len() > MAX_TAGS {
        return Err(ContentError::Invalid(format!(
            "{} tags: an item has at most {MAX_TAGS}",
            out.len()
        )));
    }
    Ok(out)
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), ContentError> {
    if name.trim().is_empty() {
        return Err(ContentError::Invalid(format!("{what} is empty: give one")));
    }
    if name.len() > max || name.chars().any(char::is_control) {
        return Err(ContentError::Invalid(format!(
            "{what} {name:?}: at most {max} bytes, no control characters"
        )));
    }
    Ok(())
}

impl ContentLibrary {
    /// Opens (or creates) the library in `dir`: the store in `dir/store`, the
    /// search index in `dir/index`. An index that is missing, unreadable or
    /// behind the store is rebuilt from the store.
    pub fn open(dir: &Path) -> Result<Self, ContentError> {
        let store = SledStore::open(&dir.join("store")).map_err(|e| {
            StoreError::from_message(format!(
                "{e} (only one process or handle may open the content library in {} at a time)",
                dir.display()
            ))
        })?;
        Self::from_parts(
            Arc::new(store),
            Some(&dir.join("index")),
            Arc::new(SystemClock),
        )
    }

    /// A library in memory only (for tests).
    pub fn temporary() -> Result<Self, ContentError> {
        Self::from_parts(
            Arc::new(SledStore::temporary()?),
            None,
            Arc::new(SystemClock),
        )
    }

    /// A library over any [`KvStore`] (its trees `content` and
    /// `content_blobs`), with its index in `index_dir` (or in memory, rebuilt
    /// from the store now), telling time by `clock`.
    pub fn from_parts(
        store: Arc<dyn KvStore>,
        index_dir: Option<&Path>,
        clock: SharedClock,
    ) -> Result<Self, ContentError> {
        let (schema, fields) = index::schema();
        let index = index::open(index_dir, schema)?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, WRITER_THREADS_MAX);
        let writer: IndexWriter = index
            .writer_with_num_threads(threads, threads * WRITER_BUDGET_PER_THREAD)
            .map_err(|e| {
                ContentError::Index(format!(
                    "{e} (is another process using this content library?)"
                ))
            })?;
        let reader = index::reader(&index)?;
        let seq = u64_of(store.get(TREE, SEQ)?);
        let lib = ContentLibrary {
            store,
            index,
            reader,
            fields,
            writer: Mutex::new(Writer { index: writer, seq }),
            clock,
        };
        let committed = lib.index.load_metas()?.payload;
        let fresh = seq == 0 && committed.is_none();
        if !fresh && committed.as_deref() != Some(payload(seq).as_str()) {
            tracing::info!(
                seq,
                committed = committed.as_deref().unwrap_or("none"),
                "content index is behind the store; rebuilding it"
            );
            lib.reindex()?;
        }
        Ok(lib)
    }

    /// Uses `clock` for the times the library records.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the search index from the store.
    pub fn reindex(&self) -> Result<(), ContentError> {
        let mut w = self.lock();
        w.index.delete_all_documents()?;
        for nibble in b"0123456789abcdef" {
            for (k, v) in self.store.scan_prefix(TREE, &key(ITEM, &[*nibble]))? {
                let item: Item = decode(&k, &v)?;
                if item.is_live() {
                    w.index.add_document(index::document(&self.fields, &item))?;
                }
            }
        }
        self.finish(
            &mut w,
            Tx {
                store: false,
                index: true,
            },
        )
    }

    fn get_item(&self, id: &str) -> Result<Option<Item>, ContentError> {
        let k = key(ITEM, id.as_bytes());
        self.store
            .get(TREE, &k)?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    fn refs(&self, id: &str) -> Result<u64, ContentError> {
        Ok(u64_of(self.store.get(TREE, &key(REFS, id.as_bytes()))?))
    }

    fn get_collection(&self, name: &str) -> Result<Option<Collection>, ContentError> {
        let k = key(COLL, name.as_bytes());
        self.store
            .get(TREE, &k)?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    fn refs_op(id: &str, n: u64) -> Op {
        let k = key(REFS, id.as_bytes());
        if n == 0 {
            Op::Delete(k)
        } else {
            Op::Put(k, n.to_be_bytes().to_vec())
        }
    }

    fn item_op(item: &Item) -> Result<Op, ContentError> {
        Ok(Op::Put(key(ITEM, item.id.as_bytes()), encode(item)?))
    }

    fn collection_op(c: &Collection) -> Result<Op, ContentError> {
        Ok(Op::Put(key(COLL, c.name.as_bytes()), encode(c)?))
    }

    /// Flushes the store, then commits the index with the store's sequence
    /// number, so an index is never ahead of its store.
    fn finish(&self, w: &mut Writer, tx: Tx) -> Result<(), ContentError> {
        if tx.store {
            self.store.flush()?;
        }
        if tx.index {
            let mut commit = w.index.prepare_commit()?;
            commit.set_payload(&payload(w.seq));
            commit.commit()?;
            self.reader.reload()?;
        }
        Ok(())
    }

    /// Writes `ops` (plus the bumped sequence number) and replaces the index
    /// documents of `reindex`, removing those of `unindex`.
    fn write(
        &self,
        w: &mut Writer,
        tx: &mut Tx,
        mut ops: Vec<Op>,
        reindex: &[&Item],
        unindex: &[&str],
    ) -> Result<(), ContentError> {
        let touches_index = !reindex.is_empty() || !unindex.is_empty();
        if touches_index {
            w.seq += 1;
            ops.push(Op::Put(SEQ.to_vec(), w.seq.to_be_bytes().to_vec()));
        }
        self.store.apply(TREE, ops)?;
        tx.store = true;
        if touches_index {
            for id in unindex {
                w.index.delete_term(index::id_term(&self.fields, id));
            }
            for item in reindex {
                w.index.delete_term(index::id_term(&self.fields, &item.id));
                // An item gone from its source stays out when it is edited.
                if item.is_live() {
                    w.index.add_document(index::document(&self.fields, item))?;
                }
            }
            tx.index = true;
        }
        Ok(())
    }

    /// Stores one prepared item (see [`put`](Self::put) for the rules).
    fn stage(
        &self,
        w: &mut Writer,
        tx: &mut Tx,
        p: Prepared,
        now: i64,
    ) -> Result<Put, ContentError> {
        let id = p.item.id.clone();
        let skey = source_key(&p.item.source, &p.item.source_key);
        let prev = self
            .store
            .get(TREE, &skey)?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        let existing = self.get_item(&id)?;
        if prev.as_deref() == Some(id.as_str())
            && let Some(e) = existing.as_ref().filter(|e| e.is_live())
        {
            return Ok(Put {
                item: e.clone(),
                outcome: Outcome::Unchanged,
            });
        }
        let live_duplicate = existing.as_ref().is_some_and(Item::is_live);
        let mut item = match existing {
            Some(mut e) => {
                // Back at a source: in the library again.
                e.superseded_by = None;
                e.removed_ms = None;
                e
            }
            None => p.item,
        };
        let mut ops = Vec::new();
        let mut unindex: Vec<String> = Vec::new();
        let mut outcome = if live_duplicate {
            Outcome::Unchanged
        } else {
            Outcome::New
        };
        let mut refs = self.refs(&id)?;
        if prev.as_deref() != Some(id.as_str()) {
            refs += 1;
        }

        if let Some(old_id) = prev.filter(|o| *o != id) {
            outcome = Outcome::Changed;
            let old_refs = self.refs(&old_id)?.saturating_sub(1);
            ops.push(Self::refs_op(&old_id, old_refs));
            if let Some(mut old) = self.get_item(&old_id)?.filter(|_| old_refs == 0) {
                // The old version is gone from every source key: the new one
                // takes its place, keeping what people added to it.
                for t in &old.tags {
                    if !item.tags.contains(t) {
                        item.tags.push(t.clone());
                    }
                }
                if item.notes.trim().is_empty() {
                    item.notes = old.notes.clone();
                }
                for name in std::mem::take(&mut old.collections) {
                    if let Some(mut c) = self.get_collection(&name)? {
                        let had_new = c.items.contains(&id);
                        c.items = c
                            .items
                            .into_iter()
                            .filter_map(|x| {
                                if x == old_id {
                                    (!had_new).then(|| id.clone())
                                } else {
                                    Some(x)
                                }
                            })
                            .collect();
                        c.updated_ms = now;
                        ops.push(Self::collection_op(&c)?);
                    }
                    if !item.collections.contains(&name) {
                        item.collections.push(name);
                    }
                }
                item.replaces = Some(old_id.clone());
                old.superseded_by = Some(id.clone());
                old.updated_ms = now;
                ops.push(Self::item_op(&old)?);
                unindex.push(old_id);
            }
        }
        ops.push(Op::Put(skey, id.as_bytes().to_vec()));
        ops.push(Self::refs_op(&id, refs));

        let unindex_refs: Vec<&str> = unindex.iter().map(String::as_str).collect();
        if outcome == Outcome::Unchanged {
            // Known content under one more source key: only the mapping is new.
            self.write(w, tx, ops, &[], &unindex_refs)?;
        } else {
            item.updated_ms = now;
            ops.push(Self::item_op(&item)?);
            if let Some(bytes) = p.blob {
                self.store
                    .apply(BLOBS, vec![Op::Put(id.as_bytes().to_vec(), bytes)])?;
            }
            self.write(w, tx, ops, &[&item], &unindex_refs)?;
        }
        Ok(Put { item, outcome })
    }

    /// Stores content once by content hash and indexes it, running the
    /// extractors on raw bytes (palette for images; page features, typography
    /// and concepts for HTML; typography for CSS).
    ///
    /// - The same content again at the same source key: [`Outcome::Unchanged`],
    ///   nothing written.
    /// - Content the library has under another source key: `Unchanged`; the
    ///   source key now maps to it too.
    /// - New content at a source key the library knew: [`Outcome::Changed`]. The
    ///   new version replaces the old one in the index and in its collections
    ///   and inherits its tags and notes; the old one is kept, marked
    ///   `superseded_by`, and can still be fetched by id.
    /// - Otherwise [`Outcome::New`].
    ///
    /// An image that cannot be decoded is refused with [`ContentError::Image`].
    pub fn put(&self, new: NewItem) -> Result<Put, ContentError> {
        let now = self.now_ms();
        let prepared = prepare(new, now)?;
        let mut w = self.lock();
        let mut tx = Tx::default();
        let staged = self.stage(&mut w, &mut tx, prepared, now);
        self.finish(&mut w, tx)?;
        staged
    }

    /// Stores a batch with one flush and one commit. Each item gets its own
    /// result (a bad image fails alone); the outer error is a storage failure.
    pub fn put_many(
        &self,
        items: Vec<NewItem>,
    ) -> Result<Vec<Result<Put, ContentError>>, ContentError> {
        let now = self.now_ms();
        let prepared = prepare_all(items, now);
        let mut w = self.lock();
        let mut tx = Tx::default();
        let mut out = Vec::with_capacity(prepared.len());
        let mut failure = None;
        for p in prepared {
            match p.and_then(|p| self.stage(&mut w, &mut tx, p, now)) {
                Err(e) if matches!(e.kind(), crate::error::ErrorKind::Internal) => {
                    failure = Some(e);
                    break;
                }
                r => out.push(r),
            }
        }
        self.finish(&mut w, tx)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The item with this id (also a superseded one).
    pub fn get(&self, id: &str) -> Result<Option<Item>, ContentError> {
        self.get_item(id)
    }

    /// The current item at a source key.
    pub fn get_by_source_key(
        &self,
        source: &str,
        key_in_source: &str,
    ) -> Result<Option<Item>, ContentError> {
        match self.store.get(TREE, &source_key(source, key_in_source))? {
            Some(id) => self.get_item(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The kept bytes of an image item.
    pub fn blob(&self, id: &str) -> Result<Option<Blob>, ContentError> {
        let Some(item) = self.get_item(id)? else {
            return Ok(None);
        };
        Ok(self.store.get(BLOBS, id.as_bytes())?.map(|bytes| Blob {
            media_type: item
                .media_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes,
        }))
    }

    /// How many items are searchable (superseded versions are not).
    pub fn count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Changes an item's title, tags or notes; the change is searchable when
    /// this returns.
    pub fn update(&self, id: &str, edit: Edit) -> Result<Item, ContentError> {
        let title = match edit.title {
            Some(t) => {
                let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
                if t.is_empty() {
                    return Err(ContentError::Invalid(
                        "title is blank: give a title or leave it out".into(),
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let tags = edit.tags.as_deref().map(normalise_tags).transpose()?;
        let now = self.now_ms();
        let mut w = self.lock();
        let mut item = self.live_item(id)?;
        if let Some(t) = title {
            item.title = t;
        }
        if let Some(t) = tags {
            item.tags = t;
        }
        if let Some(n) = edit.notes {
            item.notes = n;
        }
        item.updated_ms = now;
        let mut tx = Tx::default();
        self.write(&mut w, &mut tx, vec![Self::item_op(&item)?], &[&item], &[])?;
        self.finish(&mut w, tx)?;
        Ok(item)
    }

    /// Adds visual concepts and techniques to an item (from a vision model,
    /// say): lowercase, trimmed, at most 64 characters each, no repeats, at
    /// most 32 in all; searchable when this returns. Nothing new: unchanged.
    pub fn add_concepts<S: AsRef<str>>(
        &self,
        id: &str,
        concepts: &[S],
    ) -> Result<Item, ContentError> {
        let now = self.now_ms();
        let mut w = self.lock();
        let mut item = self.live_item(id)?;
        let before = item.concepts.len();
        for c in concepts {
            let c = c
                .as_ref()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            if c.is_empty() || c.chars().count() > 64 || item.concepts.contains(&c) {
                continue;
            }
            if item.concepts.len() >= 32 {
                break;
            }
            item.concepts.push(c);
        }
        if item.concepts.len() == before {
            return Ok(item);
        }
        item.updated_ms = now;
        let mut tx = Tx::default();
        self.write(&mut w, &mut tx, vec![Self::item_op(&item)?], &[&item], &[])?;
        self.finish(&mut w, tx)?;
        Ok(item)
    }

    fn live_item(&self, id: &str) -> Result<Item, ContentError> {
        let item = self
            .get_item(id)?
            .ok_or_else(|| ContentError::ItemNotFound(id.to_string()))?;
        if let Some(by) = item.superseded_by {
            return Err(ContentError::Superseded {
                id: id.to_string(),
                by,
            });
        }
        Ok(item)
    }

    /// The keys `source` has items at that start with `prefix`, sorted (all of
    /// them with an empty prefix).
    pub fn source_keys(&self, source: &str, prefix: &str) -> Result<Vec<String>, ContentError> {
        let start = source_key(source, "");
        Ok(self
            .store
            .scan_prefix(TREE, &source_key(source, prefix))?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[start.len()..]).into_owned())
            .collect())
    }

    /// Forgets that `source` has items at `keys` (a file deleted, records
    /// dropped), with one flush and one index commit. Content no other source
    /// key maps to any more leaves the index (browse and search) and is marked
    /// [`removed_ms`](Item::removed_ms); it is kept with its blob, so the
    /// collections that hold it and fetches by id still work, and the same
    /// content ingested again brings it back. Returns the items that left the
    /// library (an unknown key, or content still at another key, gives none).
    pub fn remove_source_keys<S: AsRef<str>>(
        &self,
        source: &str,
        keys: &[S],
    ) -> Result<Vec<Item>, ContentError> {
        let now = self.now_ms();
        let mut w = self.lock();
        let mut tx = Tx::default();
        let mut gone = Vec::new();
        for k in keys {
            let skey = source_key(source, k.as_ref());
            let Some(id) = self
                .store
                .get(TREE, &skey)?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
            else {
                continue;
            };
            // Written at once, so a second key of the same content sees the count.
            let refs = self.refs(&id)?.saturating_sub(1);
            let mut ops = vec![Op::Delete(skey), Self::refs_op(&id, refs)];
            match self.get_item(&id)?.filter(|i| refs == 0 && i.is_live()) {
                Some(mut item) => {
                    item.removed_ms = Some(now);
                    item.updated_ms = now;
                    ops.push(Self::item_op(&item)?);
                    self.write(&mut w, &mut tx, ops, &[], &[id.as_str()])?;
                    gone.push(item);
                }
                None => self.write(&mut w, &mut tx, ops, &[], &[])?,
            }
        }
        self.finish(&mut w, tx)?;
        Ok(gone)
    }

    /// Creates an empty collection.
    pub fn create_collection(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Collection, ContentError> {
        check_name("collection name", name, MAX_NAME)?;
        let now = self.now_ms();
        let mut w = self.lock();
        if self.get_collection(name)?.is_some() {
            return Err(ContentError::CollectionExists(name.to_string()));
        }
        let c = Collection {
            name: name.to_string(),
            description: description.trim().to_string(),
            items: Vec::new(),
            created_ms: now,
            updated_ms: now,
        };
        let mut tx = Tx::default();
        self.write(&mut w, &mut tx, vec![Self::collection_op(&c)?], &[], &[])?;
        self.finish(&mut w, tx)?;
        Ok(c)
    }

    /// Adds an item to a collection (at the end); `false` if it was there already.
    pub fn add_to_collection(&self, name: &str, id: &str) -> Result<bool, ContentError> {
        let now = self.now_ms();
        let mut w = self.lock();
        let mut c = self
            .get_collection(name)?
            .ok_or_else(|| ContentError::CollectionNotFound(name.to_string()))?;
        let mut item = self.live_item(id)?;
        if c.items.iter().any(|x| x == id) {
            return Ok(false);
        }
        c.items.push(id.to_string());
        c.updated_ms = now;
        if !item.collections.iter().any(|x| x == name) {
            item.collections.push(name.to_string());
        }
        item.updated_ms = now;
        let mut tx = Tx::default();
        let ops = vec![Self::collection_op(&c)?, Self::item_op(&item)?];
        self.write(&mut w, &mut tx, ops, &[&item], &[])?;
        self.finish(&mut w, tx)?;
        Ok(true)
    }

    /// Removes an item from a collection; `false` if it was not in it.
    pub fn remove_from_collection(&self, name: &str, id: &str) -> Result<bool, ContentError> {
        let now = self.now_ms();
        let mut w = self.lock();
        let mut c = self
            .get_collection(name)?
            .ok_or_else(|| ContentError::CollectionNotFound(name.to_string()))?;
        if !c.items.iter().any(|x| x == id) {
            return Ok(false);
        }
        c.items.retain(|x| x != id);
        c.updated_ms = now;
        let mut ops = vec![Self::collection_op(&c)?];
        let mut tx = Tx::default();
        match self.get_item(id)? {
            Some(mut item) => {
                item.collections.retain(|x| x != name);
                item.updated_ms = now;
                ops.push(Self::item_op(&item)?);
                let reindex: Vec<&Item> = if item.is_live() { vec![&item] } else { vec![] };
                self.write(&mut w, &mut tx, ops, &reindex, &[])?;
            }
            None => self.write(&mut w, &mut tx, ops, &[], &[])?,
        }
        self.finish(&mut w, tx)?;
        Ok(true)
    }

    /// Deletes a collection (its items stay in the library).
    pub fn delete_collection(&self, name: &str) -> Result<(), ContentError> {
        let now = self.now_ms();
        let mut w = self.lock();
        let c = self
            .get_collection(name)?
            .ok_or_else(|| ContentError::CollectionNotFound(name.to_string()))?;
        let mut ops = vec![Op::Delete(key(COLL, name.as_bytes()))];
        let mut items = Vec::new();
        for id in &c.items {
            if let Some(mut item) = self.get_item(id)? {
                item.collections.retain(|x| x != name);
                item.updated_ms = now;
                ops.push(Self::item_op(&item)?);
                items.push(item);
            }
        }
        let reindex: Vec<&Item> = items.iter().filter(|i| i.is_live()).collect();
        let mut tx = Tx::default();
        self.write(&mut w, &mut tx, ops, &reindex, &[])?;
        self.finish(&mut w, tx)
    }

    /// Every collection, by name.
    pub fn collections(&self) -> Result<Vec<Collection>, ContentError> {
        self.store
            .scan_prefix(TREE, COLL)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// One collection.
    pub fn collection(&self, name: &str) -> Result<Collection, ContentError> {
        self.get_collection(name)?
            .ok_or_else(|| ContentError::CollectionNotFound(name.to_string()))
    }

    /// The items of a collection, in its order.
    pub fn collection_items(&self, name: &str) -> Result<Vec<Item>, ContentError> {
        let c = self.collection(name)?;
        let mut out = Vec::with_capacity(c.items.len());
        for id in &c.items {
            if let Some(item) = self.get_item(id)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Searches (ranked by relevance) or browses (newest first, when the
    /// query text is empty), with filters and paging.
    ///
    /// Text over [`MAX_QUERY_CHARS`](crate::MAX_QUERY_CHARS),
    /// [`MAX_QUERY_TERMS`](crate::MAX_QUERY_TERMS) or
    /// [`MAX_QUERY_DEPTH`](crate::MAX_QUERY_DEPTH), or more than
    /// [`MAX_QUERY_TAGS`](crate::MAX_QUERY_TAGS) tags, is refused with
    /// [`ContentError::Invalid`] naming the limit. At most
    /// [`MAX_CONCURRENT_SEARCHES`] searches run at once; the others wait.
    pub fn search(&self, query: &Query) -> Result<Page, ContentError> {
        index::check_text(query.text.trim())?;
        if query.tags.len() > index::MAX_QUERY_TAGS {
            return Err(ContentError::Invalid(format!(
                "{} tags: at most {} in one search",
                query.tags.len(),
                index::MAX_QUERY_TAGS
            )));
        }
        if let Some(c) = &query.colour {
            crate::colour::parse_hex(&c.hex)?;
        }
        if query.offset > index::MAX_OFFSET {
            return Err(ContentError::Invalid(format!(
                "offset {}: at most {}; narrow the query with filters instead",
                query.offset,
                index::MAX_OFFSET
            )));
        }
        let _turn = SEARCHES.enter();
        let searcher = self.reader.searcher();
        let (ids, total) = index::search(&self.index, &searcher, &self.fields, query)?;
        let mut hits = Vec::with_capacity(ids.len());
        for (id, score) in ids {
            match self.get_item(&id)? {
                Some(item) => hits.push(crate::model::Hit { item, score }),
                None => tracing::warn!(%id, "content index names an item the store lacks"),
            }
        }
        Ok(Page { total, hits })
    }

    /// A collection as one self-contained HTML page: images inlined as data
    /// URIs with their titles, tags, notes and palettes; no external requests.
    pub fn export_moodboard_html(&self, name: &str) -> Result<String, ContentError> {
        let c = self.collection(name)?;
        let mut entries = Vec::with_capacity(c.items.len());
        for item in self.collection_items(name)? {
            let blob = self.blob(&item.id)?;
            entries.push((item, blob));
        }
        Ok(crate::export::moodboard_html(&c, &entries, self.now_ms()))
    }

    /// A collection and its items as JSON.
    pub fn export_json(&self, name: &str) -> Result<serde_json::Value, ContentError> {
        let c = self.collection(name)?;
        let items = self.collection_items(name)?;
        Ok(crate::export::json(&c, &items, self.now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_is_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<ContentLibrary>();
    }

    #[test]
    fn tags_are_normalised_and_checked() {
        assert_eq!(
            normalise_tags(&["  Dark  Mode ", "dark mode", "", "Riso"]).unwrap(),
            ["dark mode", "riso"]
        );
        assert!(normalise_tags(&["a\u{7}"]).is_err());
        let many: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        assert!(normalise_tags(&many).is_err());
    }
}
