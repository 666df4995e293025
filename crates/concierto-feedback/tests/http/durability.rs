use std::sync::Arc;
use std::time::Duration;

use concierto_core::store::{KvStore, SledStore};
use concierto_feedback::{
    FeedbackError, FeedbackOptions, OUTBOX_TREE, Outbox, OutboxPass, accept, start,
};
use concierto_proto::v1::{Feedback, FeedbackChannel};
use serde_json::Value;

use crate::common::{EMAIL_TOKEN, FlakyBus, Harness, clock, drain, feedback_consumer, options};

fn email(id: &str) -> String {
    format!("From: c@example.com\r\nSubject: s\r\nMessage-ID: <{id}>\r\n\r\nthe font is tiny\r\n")
}

#[tokio::test]
async fn accepted_while_the_bus_is_down_is_published_by_the_outbox() {
    let bus = FlakyBus::new();
    bus.fail(true);
    let h = Harness::with(Arc::new(bus.clone()), options()).await;
    let consumer = feedback_consumer(h.bus.as_ref(), "outbox-test").await;

    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .body(email("down-1@example.com"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 202, "accepted although the bus is down");
    let answer: Value = resp.json().await.expect("json");
    let id = answer["feedback_id"].as_str().expect("id").to_string();
    assert!(h.stored(&id).is_some(), "stored");
    assert_eq!(h.pending(), vec![id.clone()], "waiting in the outbox");
    assert!(
        drain(&consumer, Duration::from_millis(100))
            .await
            .is_empty()
    );

    let outbox = Outbox::new(h.state.clone());
    let pass = outbox.run_once().await.expect("pass");
    assert_eq!(
        pass,
        OutboxPass {
            published: 0,
            orphans: 0,
            left: 1
        },
        "still down"
    );
    assert_eq!(h.pending(), vec![id.clone()]);

    bus.fail(false);
    let pass = outbox.run_once().await.expect("pass");
    assert_eq!(pass.published, 1);
    assert!(h.pending().is_empty());
    let got = drain(&consumer, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.feedback_id, id);
    assert_eq!(got[0].2, id, "message id = feedback id");

    // Publishing again (a crash before the outbox entry was removed) is deduplicated.
    h.store.put(OUTBOX_TREE, id.as_bytes(), b"").expect("put");
    assert_eq!(outbox.run_once().await.expect("pass").published, 1);
    assert!(
        drain(&consumer, Duration::from_millis(200))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn outbox_removes_entries_without_a_record() {
    let h = Harness::new().await;
    h.store.put(OUTBOX_TREE, b"ghost", b"").expect("put");
    let pass = Outbox::new(h.state.clone()).run_once().await.expect("pass");
    assert_eq!(pass.orphans, 1);
    assert!(h.pending().is_empty());
}

#[tokio::test]
async fn started_service_publishes_pending_feedback_and_stops_gracefully() {
    let bus = FlakyBus::new();
    let store = Arc::new(SledStore::temporary().expect("store"));
    let opts = FeedbackOptions {
        outbox_every: Duration::from_millis(50),
        ..options()
    };
    let server = start(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(bus.clone()),
        store.clone() as Arc<dyn KvStore>,
        Arc::new(clock()),
        opts,
    )
    .await
    .expect("start");
    let consumer = feedback_consumer(&bus, "service-test").await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.local_addr);
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );

    bus.fail(true);
    let resp = http
        .post(format!("{base}/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .body(email("svc-1@example.com"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 202);
    assert_eq!(
        concierto_feedback::pending(store.as_ref())
            .expect("pending")
            .len(),
        1
    );
    bus.fail(false);
    // The outbox's next pass publishes it: wait for it on the stream.
    let got = drain(&consumer, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.feedback_id, "email-svc-1@example.com");

    server.stop().await.expect("stops cleanly");
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn accept_fills_in_ids_and_refuses_empty_feedback() {
    let h = Harness::new().await;
    let consumer = feedback_consumer(h.bus.as_ref(), "api-test").await;
    let fb = Feedback {
        subject: "From the CLI".into(),
        text: "more contrast please".into(),
        run_id: "r1".into(),
        ..Default::default()
    };
    let a = accept(&h.state, fb.clone()).await.expect("accepted");
    assert!(a.feedback_id.starts_with("api-"), "{}", a.feedback_id);
    assert!(!a.duplicate);
    assert!(a.published);
    let stored = h.stored(&a.feedback_id).expect("stored");
    assert_eq!(stored.channel, FeedbackChannel::Api as i32);
    assert!(stored.received_at.is_some());
    let got = drain(&consumer, Duration::from_millis(300)).await;
    assert_eq!(got[0].1, "feedback.in.api");

    let given = Feedback {
        feedback_id: "ticket-42".into(),
        ..fb.clone()
    };
    assert!(!accept(&h.state, given.clone()).await.expect("ok").duplicate);
    assert!(accept(&h.state, given).await.expect("ok").duplicate);

    let empty = Feedback::default();
    assert!(matches!(
        accept(&h.state, empty).await,
        Err(FeedbackError::Invalid(_))
    ));
    let bad_id = Feedback {
        feedback_id: "has space".into(),
        ..fb
    };
    let err = accept(&h.state, bad_id).await.expect_err("refused");
    assert_eq!(err.code(), "invalid_argument");
    assert_eq!(h.stored_count(), 2);
}
