//! `feedback_capture.channels`: a channel the studio does not list is refused
//! over HTTP with a sentence naming the key; listed channels and the API work.

use concierto_feedback::{FeedbackOptions, accept};
use concierto_proto::v1::{Feedback, FeedbackChannel};

use serde_json::{Value, json};

use crate::common::{EMAIL_TOKEN, Harness, options, slack_event};

fn mention(text: &str) -> Value {
    json!({"type": "app_mention", "user": "U2CERLKJA", "text": text,
           "channel": "C024BE91L", "ts": "1700000000.000100"})
}

fn slack_only() -> FeedbackOptions {
    FeedbackOptions {
        channels: Some(vec!["slack".to_string()]),
        ..options()
    }
}

#[tokio::test]
async fn unlisted_channels_answer_404_naming_the_key() {
    let h = Harness::with_options(slack_only()).await;
    let email = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .header("Content-Type", "message/rfc822")
        .body("From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
        .send()
        .await
        .expect("send");
    assert_eq!(email.status(), 404);
    let text = email.text().await.expect("body");
    assert!(
        text.contains("the email feedback channel is off")
            && text.contains("feedback_capture.channels"),
        "{text}"
    );
    for (method, path) in [("GET", "/feedback"), ("POST", "/feedback")] {
        let req = if method == "GET" {
            h.http.get(h.url(path))
        } else {
            h.http
                .post(h.url(path))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("text=hello")
        };
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 404, "{method} {path}");
        let text = resp.text().await.expect("body");
        assert!(text.contains("web_form feedback channel is off"), "{text}");
    }
    // Slack is listed: a signed event is taken.
    let body = slack_event("EvCh1", mention("the logo is too small"));
    let resp = h
        .slack_request("/slack/events", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(h.stored_count(), 1);
    // `accept` refuses an unlisted channel too; the API is always on.
    let mut fb = Feedback {
        text: "from a mail gateway".into(),
        channel: FeedbackChannel::Email as i32,
        ..Default::default()
    };
    let refused = accept(&h.state, fb.clone()).await;
    assert!(
        matches!(&refused, Err(e) if e.status() == 404),
        "{refused:?}"
    );
    fb.channel = FeedbackChannel::Api as i32;
    let taken = accept(&h.state, fb).await.expect("api feedback is taken");
    assert!(taken.feedback_id.starts_with("api-"));
    assert_eq!(h.stored_count(), 2);
}

#[tokio::test]
async fn without_a_channel_list_every_channel_is_on() {
    let h = Harness::new().await;
    let resp = h.http.get(h.url("/feedback")).send().await.expect("send");
    assert_eq!(resp.status(), 200);
}
