//! The storage the services keep their state in, behind a small trait so that
//! sled (named by the design, last released in 2021) can be swapped for a
//! maintained engine (redb, fjall) without touching the services.

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
}

/// sled behind [`KvStore`].
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
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

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// sled releases its file lock only when its background flusher lets go of the
    /// last handle, a moment after the previous owner dropped it; a service restarted
    /// in the same process (or a test reopening a store) would otherwise fail. So a
    /// held lock is retried for up to [`LOCK_WAIT`] before the error is returned.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        loop {
            match sled::open(dir) {
                Ok(db) => return Ok(SledStore { db }),
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

    /// A store that lives in memory only (for tests).
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(err)?;
        Ok(SledStore { db })
    }
}

impl KvStore for SledStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.db.open_tree(tree).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn apply(&self, tree: &str, ops: Vec<Op>) -> Result<(), StoreError> {
        let t = self.db.open_tree(tree).map_err(err)?;
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        t.apply_batch(batch).map_err(err)
    }

    fn scan_prefix(&self, tree: &str, prefix: &[u8]) -> Result<Entries, StoreError> {
        let t = self.db.open_tree(tree).map_err(err)?;
        t.scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(err))
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(err)
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
