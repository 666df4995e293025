use std::time::Duration;

use concierto_feedback::{FeedbackOptions, Secret};
use concierto_proto::v1::FeedbackChannel;
use serde_json::{Value, json};

use crate::common::{Harness, SLACK_SECRET, T0, drain, feedback_consumer, slack_event};

fn mention(text: &str) -> Value {
    json!({"type": "app_mention", "user": "U2CERLKJA", "text": text,
           "channel": "C024BE91L", "ts": "1700000000.000100"})
}

#[tokio::test]
async fn slack_event_is_stored_and_published() {
    let h = Harness::new().await;
    let consumer = feedback_consumer(h.bus.as_ref(), "slack-test").await;
    let body = slack_event(
        "Ev08MFMKH6",
        mention("<@U0LAN0Z89> the hero image is too dark"),
    );
    let resp = h
        .slack_request("/slack/events", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["feedback_id"], "slack-Ev08MFMKH6");
    assert_eq!(answer["duplicate"], false);

    let fb = h.stored("slack-Ev08MFMKH6").expect("stored");
    assert_eq!(fb.channel, FeedbackChannel::Slack as i32);
    assert_eq!(fb.author, "U2CERLKJA");
    assert_eq!(fb.text, "<@U0LAN0Z89> the hero image is too dark");
    assert_eq!(fb.metadata["slack_channel"], "C024BE91L");
    assert_eq!(fb.metadata["slack_ts"], "1700000000.000100");
    assert_eq!(fb.metadata["team_id"], "T1");
    assert_eq!(fb.metadata["event_id"], "Ev08MFMKH6");
    assert_eq!(fb.received_at.as_ref().map(|t| t.seconds), Some(T0));
    assert!(h.pending().is_empty(), "published, so nothing pending");

    let got = drain(&consumer, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, fb);
    assert_eq!(got[0].1, "feedback.in.slack");
    assert_eq!(got[0].2, "slack-Ev08MFMKH6");
}

#[tokio::test]
async fn slack_bad_or_missing_signature_is_401() {
    let h = Harness::new().await;
    let body = slack_event("Ev1", mention("hello"));
    let resp = h
        .http
        .post(h.url("/slack/events"))
        .header("X-Slack-Request-Timestamp", T0.to_string())
        .header("X-Slack-Signature", "v0=00ff")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.expect("text").contains("bad signature"));

    // Signed with another secret.
    let sig = concierto_feedback::slack::sign(b"not the secret", &T0.to_string(), body.as_bytes());
    let resp = h
        .http
        .post(h.url("/slack/events"))
        .header("X-Slack-Request-Timestamp", T0.to_string())
        .header("X-Slack-Signature", sig)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);

    let resp = h
        .http
        .post(h.url("/slack/events"))
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .expect("text")
            .contains("X-Slack-Signature")
    );
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn slack_stale_timestamp_is_401() {
    let h = Harness::new().await;
    let body = slack_event("Ev2", mention("hello"));
    let request = h.slack_request("/slack/events", &body);
    // Signed correctly, but delivered six minutes later by our clock.
    h.clock.advance(Duration::from_secs(360));
    let resp = request.send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.expect("text").contains("stale timestamp"));
    // From the future, too.
    let old = crate::common::slack_request(
        &h.http,
        &h.url("/slack/events"),
        &(T0 + 360 + 301).to_string(),
        &body,
    );
    assert_eq!(old.send().await.expect("send").status(), 401);
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn slack_replayed_request_is_401() {
    let h = Harness::new().await;
    let body = slack_event("Ev3", mention("hello"));
    let first = h.slack_request("/slack/events", &body);
    let replay = h.slack_request("/slack/events", &body);
    assert_eq!(first.send().await.expect("send").status(), 200);
    let resp = replay.send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.expect("text").contains("replayed"));
}

#[tokio::test]
async fn slack_url_verification_answers_the_challenge() {
    let h = Harness::new().await;
    let body = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let resp = h
        .slack_request("/slack/events", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(
        answer,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn slack_bot_messages_and_other_events_are_ignored() {
    let h = Harness::new().await;
    let events = [
        json!({"type": "message", "bot_id": "B123", "text": "I am a bot", "channel": "C1", "ts": "1.1"}),
        json!({"type": "message", "subtype": "bot_message", "text": "bot", "channel": "C1", "ts": "1.2"}),
        json!({"type": "message", "subtype": "message_deleted", "channel": "C1", "ts": "1.3"}),
        json!({"type": "reaction_added", "user": "U1", "reaction": "thumbsup"}),
    ];
    for (i, event) in events.into_iter().enumerate() {
        let body = slack_event(&format!("EvBot{i}"), event);
        let resp = h
            .slack_request("/slack/events", &body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.expect("json");
        assert!(answer.get("ignored").is_some(), "{answer}");
        h.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn slack_duplicate_event_id_is_stored_once() {
    let h = Harness::new().await;
    let consumer = feedback_consumer(h.bus.as_ref(), "dup-test").await;
    let body = slack_event(
        "EvDup",
        json!({"type": "message", "user": "U1", "text": "fix the footer", "channel": "C1", "ts": "2.0"}),
    );
    let first: Value = h
        .slack_request("/slack/events", &body)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    // Slack's retry: same event, new timestamp and signature.
    h.clock.advance(Duration::from_secs(2));
    let resp = h
        .slack_request("/slack/events", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let second: Value = resp.json().await.expect("json");
    assert_eq!(first["feedback_id"], "slack-EvDup");
    assert_eq!(second["feedback_id"], "slack-EvDup");
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(h.stored_count(), 1);
    assert_eq!(drain(&consumer, Duration::from_millis(300)).await.len(), 1);
}

#[tokio::test]
async fn slack_command_is_taken_in_and_answered_ephemerally() {
    let h = Harness::new().await;
    let body = "token=x&team_id=T1&channel_id=C9&channel_name=design&user_id=U7&user_name=roadrunner\
&command=%2Ffeedback&text=the+palette+clashes&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let resp = h
        .slack_request("/slack/commands", body)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["response_type"], "ephemeral");
    let id = "slack-cmd-398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert!(
        answer["text"].as_str().expect("text").contains(id),
        "{answer}"
    );
    let fb = h.stored(id).expect("stored");
    assert_eq!(fb.author, "roadrunner (U7)");
    assert_eq!(fb.text, "the palette clashes");
    assert_eq!(fb.metadata["slack_channel"], "C9");

    // Empty text: usage, nothing stored.
    h.clock.advance(Duration::from_secs(1));
    let resp = h
        .slack_request(
            "/slack/commands",
            "command=%2Ffeedback&text=&user_id=U7&trigger_id=t2",
        )
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(answer["text"].as_str().expect("text").starts_with("Usage"));
    assert_eq!(h.stored_count(), 1);
}

#[tokio::test]
async fn slack_documented_vector_is_accepted_over_http() {
    // Slack's own example request: signature valid at its timestamp; text is
    // empty, so the command answers with its usage.
    let opts = FeedbackOptions {
        slack_signing_secret: Some(Secret::from(SLACK_SECRET)),
        ..crate::common::options()
    };
    let h = Harness::with_options(opts).await;
    h.clock
        .set(chrono::DateTime::from_timestamp(1_531_420_618, 0).expect("valid time"));
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let resp = h
        .http
        .post(h.url("/slack/commands"))
        .header("X-Slack-Request-Timestamp", "1531420618")
        .header(
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        )
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert!(
        answer["text"]
            .as_str()
            .expect("text")
            .contains("/webhook-collect")
    );
}

#[tokio::test]
async fn slack_without_a_signing_secret_is_404() {
    let opts = FeedbackOptions {
        slack_signing_secret: None,
        ..crate::common::options()
    };
    let h = Harness::with_options(opts).await;
    let body = slack_event("Ev9", mention("hi"));
    let resp = h
        .slack_request("/slack/events", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
}
