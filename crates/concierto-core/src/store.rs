//! The storage the services keep their state in, behind a small trait so that
//! sled (named by the design, last released in 2021) can be swapped for a
//! maintained engine (redb, fjall) without touching the services.

use std::ops::{Bound, RangeBounds as _};
use std::path::Path;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(String);

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

/// Key/value pairs in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Named trees of ordered keys. Writes are durable once [`KvStore::flush`] returns.
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key` in `tree`.
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies every op to `tree` atomically.
    fn apply(&self, tree: &str, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Every entry of `tree` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: &str, prefix: &[u8]) -> Result<Entries, StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Sets one key.
    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.apply(tree, vec![Op::Put(key.to_vec(), value.to_vec())])
    }

    /// Applies each tree's ops, one tree after another (a store that can make
    /// them atomic together may). Callers keeping an index beside its records
    /// write both here and check the index at start.
    fn apply_trees(&self, batches: Vec<(&str, Vec<Op>)>) -> Result<(), StoreError> {
        for (tree, ops) in batches {
            self.apply(tree, ops)?;
        }
        Ok(())
    }

    /// At most `limit` entries of `tree` with keys in `range`, in key order,
    /// or from the last key down when `reverse`. The default reads the whole
    /// tree; stores override it with a bounded scan.
    fn scan_range(
        &self,
        tree: &str,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let mut all: Entries = self
            .scan_prefix(tree, b"")?
            .into_iter()
            .filter(|(k, _)| range.contains(k))
            .collect();
        if reverse {
            all.reverse();
        }
        all.truncate(limit);
        Ok(all)
    }

    /// Why the store cannot be relied on now (`None` while it works): a write
    /// or flush failed and no flush has succeeded since. Writes may still be
    /// accepted (held until a flush makes them durable).
    fn trouble(&self) -> Option<String> {
        None
    }

    /// False while reads cannot be served (the store is closed after an
    /// error until a flush reopens it): callers should wait rather than act
    /// on a read that fails half-way.
    fn readable(&self) -> bool {
        true
    }
}

/// sled behind [`KvStore`], made to survive a failing disk.
///
/// sled keeps the first I/O error it meets and fails every later call with it,
/// even once space is freed. So every write is also held in memory (newest
/// value per key) until a [`KvStore::flush`] has made it durable: while the
/// disk fails, writes still succeed (they are held), reads see them, and each
/// flush first reopens sled and writes the held changes again. Nothing written
/// is lost as long as the process lives, and the store heals on its own when
/// the disk does. Held changes are bounded ([`MAX_HELD_BYTES`]): past that a
/// write fails instead of growing memory without end.
#[derive(Clone)]
pub struct SledStore {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    /// Where it lives; `None` for a temporary store (which cannot be reopened).
    dir: Option<std::path::PathBuf>,
    /// `None` after a reopen failed: reads fail until one succeeds.
    db: std::sync::RwLock<Option<sled::Db>>,
    held: std::sync::Mutex<Held>,
}

/// How [`SledStore::apply`] hands its ops to sled: one key alone, or a batch
/// (atomic in sled's log).
enum Write {
    One(Option<(sled::IVec, Option<sled::IVec>)>),
    Batch(sled::Batch),
}

/// A held change: the new value, or `None` for a removal.
type Change = Option<Vec<u8>>;

/// Changes not yet known to be durable.
#[derive(Default)]
struct Held {
    /// Written since the last flush began, by tree and key.
    current: std::collections::BTreeMap<(String, Vec<u8>), Change>,
    /// Taken by a flush that has not succeeded yet (older than `current`).
    flushing: std::collections::BTreeMap<(String, Vec<u8>), Change>,
    /// Bytes of keys and values in both maps, roughly.
    bytes: usize,
    /// True from a failed sled call until a flush succeeds: sled must be reopened.
    failing: bool,
    /// The error that made it fail.
    error: String,
}

/// Most bytes of changes held in memory while the disk fails (256 MiB).
pub const MAX_HELD_BYTES: usize = 256 * 1024 * 1024;

/// Held changes past which a write flushes by itself while the disk works
/// (for callers that rely on sled's own background flushes).
const FLUSH_HELD_BYTES: usize = 32 * 1024 * 1024;

impl Held {
    fn get(&self, tree: &str, key: &[u8]) -> Option<&Change> {
        let k = (tree.to_string(), key.to_vec());
        self.current.get(&k).or_else(|| self.flushing.get(&k))
    }

    /// Held changes of `tree` under `prefix`, older first so newer ones win.
    fn under(&self, tree: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Change)> {
        let from = (tree.to_string(), prefix.to_vec());
        let mut out = Vec::new();
        for map in [&self.flushing, &self.current] {
            for ((t, k), v) in map.range(from.clone()..) {
                if t != tree || !k.starts_with(prefix) {
                    break;
                }
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    fn fail(&mut self, e: &dyn std::fmt::Display) {
        crate::health::store_error();
        if !self.failing {
            tracing::error!(error = %e, "store failed; writes are held in memory until the disk is writable again");
        }
        self.failing = true;
        self.error = e.to_string();
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl StoreError {
    /// An error with this message.
    pub fn from_message(message: impl Into<String>) -> Self {
        StoreError(message.into())
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// How long [`SledStore::open`] waits for a store's lock held by a handle being dropped.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::open(dir) {
            Ok(db) => return Ok(db),
            // sled 0.34 reports a held lock as ErrorKind::Other with this text.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(StoreError(format!("opening {}: {e}", dir.display()))),
        }
    }
}

/// Writes, syncs and removes a 1 MiB probe file in `dir`: an error when the
/// disk is full or read-only.
fn disk_has_room(dir: &Path) -> Result<(), StoreError> {
    use std::io::Write as _;
    let probe = dir.join(".concierto-probe");
    let written = (|| {
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(&vec![0u8; 1024 * 1024])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| StoreError(format!("no room in {}: {e}", dir.display())))
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// sled releases its file lock only when its background flusher lets go of the
    /// last handle, a moment after the previous owner dropped it; a service restarted
    /// in the same process (or a test reopening a store) would otherwise fail. So a
    /// held lock is retried for up to [`LOCK_WAIT`] before the error is returned.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_sled(dir)?;
        Ok(Self::with_db(db, Some(dir.to_path_buf())))
    }

    /// A store that lives in memory only (for tests).
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(err)?;
        Ok(Self::with_db(db, None))
    }

    fn with_db(db: sled::Db, dir: Option<std::path::PathBuf>) -> Self {
        SledStore {
            inner: std::sync::Arc::new(Inner {
                dir,
                db: std::sync::RwLock::new(Some(db)),
                held: std::sync::Mutex::new(Held::default()),
            }),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        match self.inner.held.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn db(&self) -> Result<sled::Db, sled::Error> {
        let db = match self.inner.db.read() {
            Ok(db) => db.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        db.ok_or_else(|| {
            sled::Error::Io(std::io::Error::other(
                "the store is closed after an error; it is reopened at the next flush",
            ))
        })
    }

    /// Why the store is failing now (`None` while it works): a write or flush
    /// failed and no flush has succeeded since.
    pub fn failing(&self) -> Option<String> {
        let h = self.held();
        h.failing.then(|| h.error.clone())
    }

    /// True while sled is open and can be read (false after a reopen failed).
    pub fn readable(&self) -> bool {
        self.db().is_ok()
    }

    /// Changes held in memory that are not yet durable, in bytes.
    pub fn held_bytes(&self) -> usize {
        self.held().bytes
    }

    /// The names of the trees that hold data (sled's own default tree left
    /// out), written or held: what a copy of the whole store walks.
    pub fn tree_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: std::collections::BTreeSet<String> = self
            .db()
            .map_err(err)?
            .tree_names()
            .into_iter()
            .filter_map(|n| String::from_utf8(n.to_vec()).ok())
            .filter(|n| n != "__sled__default")
            .collect();
        let h = self.held();
        for map in [&h.flushing, &h.current] {
            names.extend(map.keys().map(|(t, _)| t.clone()));
        }
        Ok(names.into_iter().collect())
    }

    /// Removes every tree and every held change, durably: the store is empty
    /// afterwards (a store replaced by another copy of its state).
    pub fn clear(&self) -> Result<(), StoreError> {
        let db = self.db().map_err(err)?;
        for name in db.tree_names() {
            if name.as_ref() == b"__sled__default" {
                db.clear().map_err(err)?;
            } else {
                db.drop_tree(&name).map_err(err)?;
            }
        }
        {
            let mut h = self.held();
            h.current.clear();
            h.flushing.clear();
            h.bytes = 0;
        }
        db.flush().map_err(err)?;
        Ok(())
    }

    /// Drops the failed sled handle and opens the folder again.
    fn reopen(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.inner.dir else {
            return Err(StoreError("a temporary store cannot be reopened".into()));
        };
        let mut db = match self.inner.db.write() {
            Ok(db) => db,
            Err(poisoned) => poisoned.into_inner(),
        };
        // sled lets go of its file lock when the last handle is dropped.
        drop(db.take());
        *db = Some(open_sled(dir)?);
        Ok(())
    }

    /// Writes `changes` to sled.
    fn write_changes(
        db: &sled::Db,
        changes: &std::collections::BTreeMap<(String, Vec<u8>), Change>,
    ) -> Result<(), StoreError> {
        let mut by_tree: std::collections::BTreeMap<&str, sled::Batch> =
            std::collections::BTreeMap::new();
        for ((tree, key), value) in changes {
            let batch = by_tree.entry(tree.as_str()).or_default();
            match value {
                Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        for (tree, batch) in by_tree {
            db.open_tree(tree)
                .map_err(err)?
                .apply_batch(batch)
                .map_err(err)?;
        }
        Ok(())
    }
}

impl KvStore for SledStore {
    fn trouble(&self) -> Option<String> {
        self.failing()
    }

    fn readable(&self) -> bool {
        SledStore::readable(self)
    }

    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(change) = self.held().get(tree, key) {
            return Ok(change.clone());
        }
        let read = self
            .db()
            .and_then(|db| db.open_tree(tree))
            .and_then(|t| t.get(key))
            .map(|v| v.map(|v| v.to_vec()));
        read.map_err(|e| {
            self.held().fail(&e);
            err(e)
        })
    }

    fn apply(&self, tree: &str, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut held = self.held();
        if held.failing && held.bytes > MAX_HELD_BYTES {
            return Err(StoreError(format!(
                "the store is failing ({}) and {} MiB of changes wait in memory; refusing more",
                held.error,
                held.bytes / (1024 * 1024)
            )));
        }
        // One change goes in as a plain insert or remove: sled 0.34 writes
        // (and syncs) its log buffer twice for every batch, whatever its size
        // (`pin_log`), which made each store write cost two disk writes.
        let mut write = if ops.len() == 1 {
            Write::One(None)
        } else {
            Write::Batch(sled::Batch::default())
        };
        for op in ops {
            let (key, value) = match op {
                Op::Put(k, v) => (k, Some(v)),
                Op::Delete(k) => (k, None),
            };
            match &mut write {
                Write::One(one) => {
                    *one = Some((
                        sled::IVec::from(key.as_slice()),
                        value.as_deref().map(sled::IVec::from),
                    ));
                }
                Write::Batch(batch) => match &value {
                    Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                    None => batch.remove(key.as_slice()),
                },
            }
            held.bytes += key.len() + value.as_ref().map_or(0, Vec::len) + tree.len();
            held.current.insert((tree.to_string(), key), value);
        }
        if held.failing {
            // The next flush reopens sled and writes every held change.
            return Ok(());
        }
        let written = self
            .db()
            .and_then(|db| db.open_tree(tree))
            .and_then(|t| match write {
                Write::One(Some((k, Some(v)))) => t.insert(k, v).map(|_| ()),
                Write::One(Some((k, None))) => t.remove(k).map(|_| ()),
                Write::One(None) => Ok(()),
                Write::Batch(batch) => t.apply_batch(batch),
            });
        if let Err(e) = written {
            held.fail(&e);
            return Ok(());
        }
        if held.bytes > FLUSH_HELD_BYTES {
            // A caller that never flushes must not grow the held changes
            // without end: make them durable here.
            match self.db().and_then(|db| db.flush()) {
                Ok(_) => {
                    held.current.clear();
                    held.flushing.clear();
                    held.bytes = 0;
                }
                Err(e) => held.fail(&e),
            }
        }
        Ok(())
    }

    fn scan_range(
        &self,
        tree: &str,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        // Held changes in the range (newer over older), then sled's entries
        // merged with them in scan order until `limit`.
        let held: std::collections::BTreeMap<Vec<u8>, Change> = {
            let h = self.held();
            let mut out = std::collections::BTreeMap::new();
            for map in [&h.flushing, &h.current] {
                let from = match &range.0 {
                    Bound::Included(k) | Bound::Excluded(k) => (tree.to_string(), k.clone()),
                    Bound::Unbounded => (tree.to_string(), Vec::new()),
                };
                for ((t, k), v) in map.range(from..) {
                    if t != tree {
                        break;
                    }
                    if range.contains(k) {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            out
        };
        let t = self.db().and_then(|db| db.open_tree(tree)).map_err(|e| {
            self.held().fail(&e);
            err(e)
        })?;
        let iter = t.range::<Vec<u8>, _>(range.clone());
        let mut sled_iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if reverse {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
        let mut held_iter: Box<dyn Iterator<Item = (Vec<u8>, Change)>> = if reverse {
            Box::new(held.into_iter().rev())
        } else {
            Box::new(held.into_iter())
        };
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut out = Entries::new();
        let mut next_sled = sled_iter.next().transpose().map_err(err)?;
        let mut next_held = held_iter.next();
        while out.len() < limit {
            let take_held = match (&next_sled, &next_held) {
                (None, None) => break,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((sk, _)), Some((hk, _))) => {
                    if hk.as_slice() == sk.as_ref() {
                        // The held change wins over what sled has.
                        next_sled = sled_iter.next().transpose().map_err(err)?;
                        true
                    } else {
                        before(hk, sk)
                    }
                }
            };
            if take_held {
                if let Some((k, Some(v))) = next_held.take() {
                    out.push((k, v));
                }
                next_held = held_iter.next();
            } else if let Some((k, v)) = next_sled.take() {
                out.push((k.to_vec(), v.to_vec()));
                next_sled = sled_iter.next().transpose().map_err(err)?;
            }
        }
        Ok(out)
    }

    fn scan_prefix(&self, tree: &str, prefix: &[u8]) -> Result<Entries, StoreError> {
        let changes = self.held().under(tree, prefix);
        let scanned: Result<Entries, sled::Error> =
            self.db().and_then(|db| db.open_tree(tree)).and_then(|t| {
                t.scan_prefix(prefix)
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                    .collect()
            });
        let entries = scanned.map_err(|e| {
            self.held().fail(&e);
            err(e)
        })?;
        if changes.is_empty() {
            return Ok(entries);
        }
        let mut merged: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
            entries.into_iter().collect();
        for (k, v) in changes {
            match v {
                Some(v) => merged.insert(k, v),
                None => merged.remove(&k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let failing = {
            let mut held = self.held();
            let current = std::mem::take(&mut held.current);
            held.flushing.extend(current);
            held.failing
        };
        let attempt = (|| {
            if failing {
                // Reopening needs room: while there is none, keep the failed
                // handle (it may still serve reads) rather than lose it.
                if let Some(dir) = &self.inner.dir {
                    disk_has_room(dir)?;
                }
                self.reopen()?;
                let held = self.held();
                Self::write_changes(&self.db().map_err(err)?, &held.flushing)?;
            }
            self.db().and_then(|db| db.flush()).map(|_| ()).map_err(err)
        })();
        let mut held = self.held();
        if let Err(e) = attempt {
            held.fail(&e);
            return Err(e);
        }
        if held.failing {
            // What was written while this flush reopened sled is only held:
            // write it to the reopened database too.
            let written = self
                .db()
                .map_err(err)
                .and_then(|db| Self::write_changes(&db, &held.current));
            if let Err(e) = written {
                held.fail(&e);
                return Err(e);
            }
            tracing::info!("store writable again; every held change is written");
        }
        held.flushing.clear();
        held.failing = false;
        held.error.clear();
        // Only what was written during this flush is still held.
        held.bytes = held
            .current
            .iter()
            .map(|((t, k), v)| t.len() + k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.apply(
                "runs",
                vec![
                    Op::Put(b"r/1".to_vec(), b"a".to_vec()),
                    Op::Put(b"r/2".to_vec(), b"b".to_vec()),
                ],
            )
            .unwrap();
            s.put("other", b"r/3", b"c").unwrap();
            s.apply("runs", vec![Op::Delete(b"r/1".to_vec())]).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get("runs", b"r/1").unwrap(), None);
        assert_eq!(s.get("runs", b"r/2").unwrap(), Some(b"b".to_vec()));
        assert_eq!(
            s.scan_prefix("runs", b"r/").unwrap(),
            vec![(b"r/2".to_vec(), b"b".to_vec())]
        );
    }

    #[test]
    fn trees_are_listed_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.put("runs", b"a", b"1").unwrap();
        s.put("gates", b"b", b"2").unwrap();
        s.flush().unwrap();
        s.put("held", b"c", b"3").unwrap();
        assert_eq!(s.tree_names().unwrap(), ["gates", "held", "runs"]);
        s.clear().unwrap();
        assert!(s.tree_names().unwrap().is_empty());
        assert_eq!(s.get("runs", b"a").unwrap(), None);
        assert_eq!(s.get("held", b"c").unwrap(), None);
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get("gates", b"b").unwrap(), None, "cleared durably");
    }

    #[test]
    fn range_scans_merge_held_changes_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let keys: Vec<Vec<u8>> = (0u8..10).map(|i| vec![i]).collect();
        s.apply(
            "t",
            keys.iter()
                .map(|k| Op::Put(k.clone(), b"old".to_vec()))
                .collect(),
        )
        .unwrap();
        s.flush().unwrap();
        // Held (not yet flushed): one changed, one removed, one new.
        s.apply(
            "t",
            vec![
                Op::Put(vec![3], b"new".to_vec()),
                Op::Delete(vec![5]),
                Op::Put(vec![5, 1], b"added".to_vec()),
            ],
        )
        .unwrap();
        let range = (Bound::Included(vec![2]), Bound::Excluded(vec![7]));
        let fwd = s.scan_range("t", range.clone(), false, 100).unwrap();
        let fwd_keys: Vec<Vec<u8>> = fwd.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            fwd_keys,
            vec![vec![2], vec![3], vec![4], vec![5, 1], vec![6]]
        );
        assert_eq!(fwd[1].1, b"new".to_vec());
        let rev = s.scan_range("t", range, true, 3).unwrap();
        let rev_keys: Vec<Vec<u8>> = rev.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(rev_keys, vec![vec![6], vec![5, 1], vec![4]]);
        let all = s
            .scan_range("t", (Bound::Unbounded, Bound::Unbounded), true, 2)
            .unwrap();
        assert_eq!(all[0].0, vec![9]);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn open_waits_for_a_lock_that_is_being_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = SledStore::open(dir.path()).unwrap();
        first.put("t", b"k", b"v").unwrap();
        first.flush().unwrap();
        let path = dir.path().to_path_buf();
        let second = std::thread::spawn(move || SledStore::open(&path));
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(first);
        let second = second.join().unwrap().unwrap();
        assert_eq!(second.get("t", b"k").unwrap(), Some(b"v".to_vec()));
    }
}
