//! Replica buckets on a real nats-server (2.9): many keys written and read
//! back in one walk, values above the message limit split and joined, the
//! chunks of a replaced value deleted, deletes, and the sequence.

use std::sync::Arc;

use concierto_bus::{Bus, NatsBus, NatsOptions};
use concierto_testkit::NatsServer;

async fn connect(nats: &NatsServer) -> Arc<dyn Bus> {
    Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connects"),
    )
}

#[tokio::test]
async fn a_replica_keeps_many_keys_and_large_values() {
    let nats = NatsServer::start().expect("nats-server");
    let bus = connect(&nats).await;
    let r = bus.replica("ORCH_P0", 1).await.expect("bucket");
    assert_eq!(r.last_seq().await.unwrap(), 0);
    assert!(r.load_all().await.unwrap().is_empty());
    assert_eq!(r.get("_meta.partitions").await.unwrap(), None);

    // 20,000 small keys in one batch.
    let n = 20_000usize;
    let entries: Vec<_> = (0..n)
        .map(|i| {
            (
                format!("runs.x{i:08x}"),
                Some(format!("run {i}").into_bytes()),
            )
        })
        .collect();
    let seq = r.put_many(entries).await.unwrap();
    assert_eq!(seq, n as u64);
    assert_eq!(r.last_seq().await.unwrap(), seq);

    // A value of 2.5 MB (above the 1 MiB message limit) and a delete.
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    r.put_many(vec![
        ("runs.xbig".into(), Some(big.clone())),
        ("runs.x00000000".into(), None),
    ])
    .await
    .unwrap();
    assert_eq!(
        r.get("runs.x00000001").await.unwrap(),
        Some(b"run 1".to_vec())
    );
    assert_eq!(r.get("runs.x00000000").await.unwrap(), None);

    // Another process reads it all back.
    let other = connect(&nats).await;
    let r2 = other.replica("ORCH_P0", 1).await.expect("bucket");
    let all: std::collections::HashMap<String, Vec<u8>> =
        r2.load_all().await.unwrap().into_iter().collect();
    assert_eq!(all.len(), n, "19,999 small keys and the big one");
    assert_eq!(all.get("runs.xbig"), Some(&big));
    assert!(!all.contains_key("runs.x00000000"));
    assert_eq!(all.get("runs.x00004e1f"), Some(&b"run 19999".to_vec()));

    // The big value replaced by a small one: its chunks go (the second
    // process learnt of them from its load).
    r2.put_many(vec![("runs.xbig".into(), Some(b"small".to_vec()))])
        .await
        .unwrap();
    let all: std::collections::HashMap<String, Vec<u8>> =
        r.load_all().await.unwrap().into_iter().collect();
    assert_eq!(all.get("runs.xbig"), Some(&b"small".to_vec()));
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("raw client"));
    let mut stream = js.get_stream("KV_CONCIERTO_ORCH_P0").await.unwrap();
    let info = stream.info().await.unwrap();
    // n small keys (one a delete marker), the big key, 3 chunks deleted (markers).
    assert_eq!(info.state.messages, n as u64 + 1 + 3);

    // Keys a KV bucket cannot hold are refused with a clear error.
    let err = r
        .put_many(vec![("runs.a b".into(), None)])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid"), "{err}");
}

/// The write-through fence: a writer that expects the bucket at the sequence
/// it last left writes on; once another writer has written, its writes
/// (pipelined, split values too) land nowhere and say conflict.
#[tokio::test]
async fn a_fenced_writer_writes_nothing_once_another_has_written() {
    let nats = NatsServer::start().expect("nats-server");
    let old_owner = connect(&nats).await;
    let new_owner = connect(&nats).await;
    let a = old_owner.replica("ORCH_P1", 1).await.expect("bucket");
    let b = new_owner.replica("ORCH_P1", 1).await.expect("bucket");

    let at = a
        .put_many_after(
            (0..100)
                .map(|i| (format!("runs.x{i:02x}"), Some(vec![1u8])))
                .collect(),
            Some(0),
        )
        .await
        .expect("the first writer writes from 0");
    assert_eq!(at, 100);
    assert_eq!(
        a.put_many_after(Vec::new(), Some(at)).await.unwrap(),
        at,
        "nothing to write keeps the sequence"
    );

    // The new owner takes over at the sequence it loaded and writes.
    let loaded = b.last_seq().await.unwrap();
    assert_eq!(loaded, at);
    let now = b
        .put_many_after(vec![("runs.x00".into(), Some(vec![2u8]))], Some(loaded))
        .await
        .expect("the new owner writes");
    assert_eq!(now, at + 1);

    // The old owner, still expecting `at`, lands nothing: small values, a
    // split value, a delete.
    let big = vec![7u8; 2_000_000];
    let err = a
        .put_many_after(
            vec![
                ("runs.x01".into(), Some(vec![3u8])),
                ("runs.xbig".into(), Some(big)),
                ("runs.x02".into(), None),
            ],
            Some(at),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, concierto_bus::BusError::Conflict(_)), "{err}");
    assert_eq!(b.last_seq().await.unwrap(), now, "nothing landed");
    assert_eq!(b.get("runs.x00").await.unwrap(), Some(vec![2u8]));
    assert_eq!(b.get("runs.x01").await.unwrap(), Some(vec![1u8]));
    assert_eq!(b.get("runs.xbig").await.unwrap(), None);

    // The embedded bus's replica fences the same way.
    let mem = concierto_bus::replica::MemoryReplica::default();
    use concierto_bus::ReplicaStore as _;
    let s = mem
        .put_many_after(vec![("k.x01".into(), Some(vec![1]))], Some(0))
        .await
        .unwrap();
    // Another writer.
    mem.put_many(vec![("k.x02".into(), Some(vec![2]))])
        .await
        .unwrap();
    let err = mem
        .put_many_after(vec![("k.x01".into(), Some(vec![9]))], Some(s))
        .await
        .unwrap_err();
    assert!(matches!(err, concierto_bus::BusError::Conflict(_)), "{err}");
}
