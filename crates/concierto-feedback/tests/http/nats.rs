use std::sync::Arc;
use std::time::Duration;

use concierto_bus::{ConsumerSpec, NatsBus, NatsOptions, StreamLimits, ensure_standard_streams};
use concierto_core::store::{KvStore, SledStore};
use concierto_feedback::start;
use concierto_proto::v1::Feedback;
use concierto_testkit::NatsServer;
use serde_json::{Value, json};

use crate::common::{clock, options, slack_event, slack_request};

#[tokio::test]
async fn slack_event_lands_on_the_feedback_stream_in_nats() {
    let nats = NatsServer::start().expect("nats-server");
    let bus = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect"),
    );
    ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
        .await
        .expect("streams");
    let store = Arc::new(SledStore::temporary().expect("store"));
    let clock = clock();
    let server = start(
        "127.0.0.1:0".parse().expect("addr"),
        bus.clone(),
        store as Arc<dyn KvStore>,
        Arc::new(clock.clone()),
        options(),
    )
    .await
    .expect("start");

    let body = slack_event(
        "EvNats1",
        json!({"type": "message", "user": "U1", "text": "the onboarding copy is great",
               "channel": "C1", "ts": "3.0"}),
    );
    let http = reqwest::Client::new();
    let url = format!("http://{}/slack/events", server.local_addr);
    let ts = concierto_core::clock::Clock::now(&clock)
        .timestamp()
        .to_string();
    let resp = slack_request(&http, &url, &ts, &body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["feedback_id"], "slack-EvNats1");

    let consumer = bus_consumer(&bus).await;
    let got = consumer
        .fetch_proto::<Feedback>(10, Duration::from_secs(5))
        .await
        .expect("fetch");
    assert_eq!(got.len(), 1);
    let (fb, delivery) = got.into_iter().next().expect("one");
    assert_eq!(fb.feedback_id, "slack-EvNats1");
    assert_eq!(fb.text, "the onboarding copy is great");
    assert_eq!(delivery.message.subject, "feedback.in.slack");
    assert_eq!(delivery.message.msg_id(), Some("slack-EvNats1"));
    delivery.ack().await.expect("ack");

    server.stop().await.expect("stops");
}

async fn bus_consumer(bus: &NatsBus) -> concierto_bus::Consumer {
    use concierto_bus::Bus;
    bus.consumer(
        "FEEDBACK",
        &ConsumerSpec::new("feedback-test", "feedback.in.slack"),
    )
    .await
    .expect("consumer")
}

/// Two replicas of the intake, each with its own store, on one nats-server:
/// a signed Slack request replayed to the second replica is refused there
/// (the replay guard is shared through the bus), and nothing is stored twice.
#[tokio::test]
async fn a_slack_request_replayed_to_another_replica_is_refused() {
    let nats = NatsServer::start().expect("nats-server");
    let mut replicas = Vec::new();
    let mut stores = Vec::new();
    let clock = clock();
    for _ in 0..2 {
        let bus = Arc::new(
            NatsBus::connect(&nats.url(), NatsOptions::default())
                .await
                .expect("connect"),
        );
        let store = Arc::new(SledStore::temporary().expect("store"));
        let server = start(
            "127.0.0.1:0".parse().expect("addr"),
            bus,
            store.clone() as Arc<dyn KvStore>,
            Arc::new(clock.clone()),
            options(),
        )
        .await
        .expect("start");
        stores.push(store);
        replicas.push(server);
    }
    let body = slack_event(
        "EvReplay1",
        json!({"type": "message", "user": "U1", "text": "the footer is cut off",
               "channel": "C1", "ts": "4.0"}),
    );
    let ts = concierto_core::clock::Clock::now(&clock)
        .timestamp()
        .to_string();
    let http = reqwest::Client::new();
    let url = |i: usize| format!("http://{}/slack/events", replicas[i].local_addr);

    let first = slack_request(&http, &url(0), &ts, &body)
        .send()
        .await
        .expect("send");
    assert_eq!(first.status(), 200);
    // The very same request (timestamp, signature, body) to the other replica.
    let replay = slack_request(&http, &url(1), &ts, &body)
        .send()
        .await
        .expect("send");
    assert_eq!(replay.status(), 401);
    assert!(
        replay.text().await.expect("text").contains("replayed"),
        "refused as a replay"
    );
    let stored = |i: usize| concierto_feedback::list(stores[i].as_ref(), 10).expect("list");
    assert_eq!(stored(0).len(), 1);
    assert_eq!(
        stored(1).len(),
        0,
        "the replica that refused stored nothing"
    );

    // A new request (a new signature) to the second replica is taken in.
    clock.advance(Duration::from_secs(1));
    let ts = concierto_core::clock::Clock::now(&clock)
        .timestamp()
        .to_string();
    let body = slack_event(
        "EvReplay2",
        json!({"type": "message", "user": "U1", "text": "and the header",
               "channel": "C1", "ts": "5.0"}),
    );
    let fresh = slack_request(&http, &url(1), &ts, &body)
        .send()
        .await
        .expect("send");
    assert_eq!(fresh.status(), 200);
    assert_eq!(stored(1).len(), 1);

    for r in replicas {
        r.stop().await.expect("stops");
    }
}
