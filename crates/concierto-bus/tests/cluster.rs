//! The NATS bus on a three-node cluster (`server.bus.replicas: 3`): given
//! every node's URL it rides out a node's SIGKILL — the node it is connected
//! to, which also leads the stream — publishing durably and consuming all the
//! while, and loses nothing; every stream and bucket it creates has three
//! copies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use concierto_bus::{Bus, ConsumerSpec, NatsBus, NatsOptions, Outgoing, Retention, StreamSpec};
use concierto_testkit::{NatsCluster, eventually};

const PREFIX: &str = "ct.";
/// Messages per filter; two filters.
const EACH: usize = 150;

async fn bus(cluster: &NatsCluster) -> NatsBus {
    NatsBus::connect(
        &cluster.urls(),
        NatsOptions {
            prefix: PREFIX.into(),
            replicas: 3,
            ..Default::default()
        },
    )
    .await
    .expect("connects to the cluster")
}

/// The node (index) the stream's leader is on.
async fn stream_leader(
    js: &jetstream::Context,
    name: &str,
    cluster: &NatsCluster,
) -> Option<usize> {
    let mut s = js.get_stream(name).await.ok()?;
    let leader = s.info().await.ok()?.cluster.as_ref()?.leader.clone()?;
    (0..3).find(|i| cluster.name(*i) == leader)
}

/// Moves the stream's leader until it is on node `want` (each step down
/// elects one of the others at random).
async fn lead_on(
    js: &jetstream::Context,
    client: &async_nats::Client,
    name: &str,
    want: usize,
    cluster: &NatsCluster,
) {
    for _ in 0..20 {
        let now = eventually(Duration::from_secs(15), "a stream leader", || {
            stream_leader(js, name, cluster)
        })
        .await;
        if now == want {
            return;
        }
        let _ = client
            .request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"), "".into())
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the leader of {name} never moved to node {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dies_under_durable_publishing_and_consuming_and_nothing_is_lost() {
    let mut cluster = NatsCluster::start().expect("the cluster starts");
    let bus = Arc::new(bus(&cluster).await);
    // A spec asking for one copy gets the bus's three.
    bus.ensure_stream(&StreamSpec::new("JOBS", &["jobs.>"], Retention::WorkQueue))
        .await
        .expect("the stream");
    let js = jetstream::new(bus.client().clone());
    let stream = bus.stream_name("JOBS");
    let info = js
        .get_stream(&stream)
        .await
        .expect("the stream")
        .cached_info()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    bus.leases().await.expect("the lease bucket");
    let leases = js
        .get_stream(format!("KV_{}", bus.stream_name("LEASES")))
        .await
        .expect("the lease bucket's stream");
    assert_eq!(
        leases.cached_info().config.num_replicas,
        3,
        "leases outlive a node"
    );

    // The worst node to lose: the one this bus is connected to, leading the stream.
    let connected = bus.client().server_info().server_name;
    let doomed = (0..3)
        .find(|i| cluster.name(*i) == connected)
        .expect("the connected node");
    lead_on(&js, bus.client(), &stream, doomed, &cluster).await;

    // A worker-like consumer (no prefetch) and an intake-like one (prefetch).
    let got: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let mut consumers = Vec::new();
    for (durable, prefetch) in [("a", 0usize), ("b", 16)] {
        let mut spec = ConsumerSpec::new(durable, format!("jobs.{durable}"));
        spec.prefetch = prefetch;
        spec.ack_wait = Duration::from_secs(5);
        spec.max_deliver = 0;
        let consumer = bus.consumer("JOBS", &spec).await.expect("a consumer");
        let got = got.clone();
        consumers.push(tokio::spawn(async move {
            loop {
                match consumer.fetch(8, Duration::from_millis(300)).await {
                    Ok(batch) => {
                        for d in batch {
                            let key = String::from_utf8_lossy(&d.message.payload).into_owned();
                            *got.lock().unwrap().entry(key).or_default() += 1;
                            // A lost ack redelivers; that is counted, not lost.
                            let _ = d.ack().await;
                        }
                    }
                    // The loop keeps going through errors, as the services' do.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
    }

    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut published = 0usize;
            for i in 0..EACH {
                for filter in ["a", "b"] {
                    let body = format!("{filter}-{i}");
                    bus.publish_durable(
                        &format!("jobs.{filter}"),
                        Outgoing::new(body.clone()).msg_id(body),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("publishing {filter}-{i}: {e}"));
                    published += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            published
        })
    };
    eventually(Duration::from_secs(20), "a third consumed", || {
        let n = got.lock().unwrap().len();
        async move { (n >= 2 * EACH / 3).then_some(()) }
    })
    .await;
    cluster.kill(doomed);
    let killed_at = tokio::time::Instant::now();

    let published = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publisher finishes")
        .expect("every publish succeeds");
    assert_eq!(published, 2 * EACH);
    eventually(Duration::from_secs(60), "every message consumed", || {
        let n = got.lock().unwrap().len();
        async move { (n == 2 * EACH).then_some(()) }
    })
    .await;
    let recovered = killed_at.elapsed();
    for c in consumers {
        c.abort();
    }
    let got = got.lock().unwrap().clone();
    let want: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|f| (0..EACH).map(move |i| format!("{f}-{i}")))
        .collect();
    let mut keys: Vec<String> = got.keys().cloned().collect();
    keys.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(keys, want_sorted, "nothing lost, nothing foreign");
    // Stored once each: a publish retried after a lost acknowledgement was
    // recognised by its id.
    let mut s = js.get_stream(&stream).await.expect("the stream");
    let state = s.info().await.expect("its info").state.clone();
    assert_eq!(
        state.last_sequence,
        (2 * EACH) as u64,
        "each message stored once"
    );
    let redelivered: u32 = got.values().map(|n| n - 1).sum();
    println!(
        "node {doomed} killed: all {} messages consumed {recovered:?} later; {redelivered} redelivered",
        2 * EACH
    );
}
