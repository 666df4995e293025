//! A [`NatsCluster`] is a real JetStream cluster: a stream with three replicas
//! keeps what was published before one node was SIGKILLed, and a client given
//! every node's URL reads it from the two that are left.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use concierto_testkit::{NatsCluster, eventually};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_keeps_its_messages_when_a_node_dies() {
    let mut cluster = NatsCluster::start().expect("the cluster starts");
    let urls: Vec<String> = cluster.urls().split(',').map(str::to_string).collect();
    let client = async_nats::connect(urls.as_slice())
        .await
        .expect("connects to the cluster");
    let js = jetstream::new(client);
    let created = js
        .create_stream(stream::Config {
            name: "R3".into(),
            subjects: vec!["r3.>".into()],
            num_replicas: 3,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("an R3 stream");
    assert_eq!(created.cached_info().config.num_replicas, 3);
    for i in 0..100u32 {
        js.publish(format!("r3.{i}"), i.to_string().into())
            .await
            .expect("sent")
            .await
            .expect("stored");
    }
    // Kill the node leading the stream: the worst one.
    let mut info = js.get_stream("R3").await.expect("the stream");
    let leader = info
        .info()
        .await
        .expect("its info")
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a stream leader");
    let dead = (0..3).find(|i| cluster.name(*i) == leader).expect("a node");
    cluster.kill(dead);

    // A new leader from the two left, with every message.
    let state = eventually(Duration::from_secs(30), "a new stream leader", || {
        let js = js.clone();
        let leader = leader.clone();
        async move {
            let mut s = js.get_stream("R3").await.ok()?;
            let info = s.info().await.ok()?;
            let now = info.cluster.as_ref()?.leader.clone()?;
            (now != leader).then(|| info.state.clone())
        }
    })
    .await;
    assert_eq!(state.messages, 100);
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("R3")
        .await
        .expect("the stream")
        .create_consumer(pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut got = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("a pull");
    while let Some(m) = batch.next().await {
        let m = m.expect("a message");
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    let want: Vec<String> = (0..100u32).map(|i| i.to_string()).collect();
    assert_eq!(got, want);

    // The node comes back and catches up.
    cluster.restart(dead).expect("restarts");
    cluster
        .wait_ready(Duration::from_secs(30))
        .expect("the cluster is whole again");
}
