//! The store on a real disk that fills up and is freed again (a tmpfs; needs
//! root, as CI has): writes are held while it fails, reads see them, and the
//! first flush after space is back makes every one of them durable without a
//! restart.

use concierto_core::store::{KvStore, SledStore};
use concierto_testkit::SmallDisk;

fn disk() -> Option<SmallDisk> {
    match SmallDisk::mount(8 * 1024 * 1024) {
        Ok(d) => Some(d),
        Err(e) => {
            // Only where tests do not run as root; CI does.
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

fn value(i: usize) -> Vec<u8> {
    format!("{i:06}-").repeat(200).into_bytes()
}

#[test]
fn a_full_disk_holds_writes_and_a_freed_disk_takes_them_all() {
    let Some(disk) = disk() else { return };
    let dir = disk.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let store = SledStore::open(&dir).unwrap();
    store.put("runs", b"before", b"kept").unwrap();
    store.flush().unwrap();

    disk.fill().unwrap();
    // Write until sled notices the disk is full: each write still succeeds.
    let mut failed_at = None;
    for i in 0..2_000 {
        store
            .put("runs", format!("k{i:05}").as_bytes(), &value(i))
            .unwrap();
        if i % 50 == 49 && store.flush().is_err() {
            failed_at = Some(i);
            break;
        }
    }
    let failed_at = failed_at.expect("the full disk never made a flush fail");
    let why = store.failing().expect("a failing store says so");
    assert!(!why.is_empty());
    // Reads see every write, held or not.
    assert_eq!(
        store.get("runs", b"before").unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        store
            .get("runs", format!("k{failed_at:05}").as_bytes())
            .unwrap(),
        Some(value(failed_at))
    );
    assert_eq!(
        store.scan_prefix("runs", b"k").unwrap().len(),
        failed_at + 1
    );
    // More writes and deletes while it fails; flushes keep failing.
    store.put("runs", b"during", b"held").unwrap();
    store
        .apply(
            "runs",
            vec![concierto_core::store::Op::Delete(b"k00000".to_vec())],
        )
        .unwrap();
    assert!(store.flush().is_err());
    assert!(store.failing().is_some());

    disk.free().unwrap();
    store
        .flush()
        .expect("the store heals once the disk has room");
    assert!(store.failing().is_none());
    assert_eq!(store.held_bytes(), 0);
    drop(store);

    // Everything is on disk: a fresh open sees it all.
    let again = SledStore::open(&dir).unwrap();
    assert_eq!(
        again.get("runs", b"during").unwrap().as_deref(),
        Some(&b"held"[..])
    );
    assert_eq!(again.get("runs", b"k00000").unwrap(), None);
    assert_eq!(
        again
            .get("runs", format!("k{failed_at:05}").as_bytes())
            .unwrap(),
        Some(value(failed_at))
    );
    assert_eq!(again.scan_prefix("runs", b"k").unwrap().len(), failed_at);
}
