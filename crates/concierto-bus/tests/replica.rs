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
