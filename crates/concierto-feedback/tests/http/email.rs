use std::time::Duration;

use concierto_proto::v1::FeedbackChannel;
use serde_json::Value;

use crate::common::{EMAIL_TOKEN, Harness, drain, feedback_consumer};

/// A 1x1 PNG, 70 bytes.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn mixed_message() -> String {
    format!(
        "From: \"Ana Diaz\" <ana.diaz@example.com>\r\n\
To: studio@example.com\r\n\
Subject: Landing page feedback\r\n\
Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
Message-ID: <CAF1234.abcd@mail.example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--XYZ\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
The call-to-action button is hard to see on mobile.\r\n\
See the screenshot.\r\n\
--XYZ\r\n\
Content-Type: image/png; name=\"screenshot.png\"\r\n\
Content-Disposition: attachment; filename=\"screenshot.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
{PNG_BASE64}\r\n\
--XYZ--\r\n"
    )
}

fn post(h: &Harness, body: String) -> reqwest::RequestBuilder {
    h.http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .header("Content-Type", "message/rfc822")
        .body(body)
}

#[tokio::test]
async fn email_multipart_with_attachment_is_accepted() {
    let h = Harness::new().await;
    let consumer = feedback_consumer(h.bus.as_ref(), "email-test").await;
    let resp = post(&h, mixed_message()).send().await.expect("send");
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.expect("json");
    let id = "email-CAF1234.abcd@mail.example.com";
    assert_eq!(answer["feedback_id"], id);
    assert_eq!(answer["duplicate"], false);

    let fb = h.stored(id).expect("stored");
    assert_eq!(fb.channel, FeedbackChannel::Email as i32);
    assert_eq!(fb.author, "Ana Diaz <ana.diaz@example.com>");
    assert_eq!(fb.subject, "Landing page feedback");
    assert_eq!(
        fb.text,
        "The call-to-action button is hard to see on mobile.\r\nSee the screenshot."
    );
    assert_eq!(fb.attachments.len(), 1);
    let a = &fb.attachments[0];
    assert_eq!(a.name, "screenshot.png");
    assert_eq!(a.content_type, "image/png");
    assert_eq!(a.size, 70);
    assert_eq!(fb.metadata["email_from"], "ana.diaz@example.com");
    assert_eq!(fb.metadata["message_id"], "CAF1234.abcd@mail.example.com");

    let got = drain(&consumer, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "feedback.in.email");

    // The webhook retries: same id, stored once.
    let resp = post(&h, mixed_message()).send().await.expect("send");
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["feedback_id"], id);
    assert_eq!(answer["duplicate"], true);
    assert_eq!(h.stored_count(), 1);
}

#[tokio::test]
async fn email_html_only_alternative_is_converted_to_text() {
    let h = Harness::new().await;
    let raw = "From: bob@example.com\r\n\
Subject: Colors\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"ALT\"\r\n\
\r\n\
--ALT\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><p>The <b>orange</b> is too loud.</p><script>x()</script></body></html>\r\n\
--ALT--\r\n";
    let resp = post(&h, raw.to_string()).send().await.expect("send");
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.expect("json");
    let id = answer["feedback_id"].as_str().expect("id");
    assert!(id.starts_with("email-"), "{id}");
    let fb = h.stored(id).expect("stored");
    assert_eq!(fb.author, "bob@example.com");
    assert!(fb.text.contains("The orange is too loud."), "{:?}", fb.text);
    assert!(!fb.text.contains('<'), "{:?}", fb.text);
    assert!(fb.attachments.is_empty());
}

#[tokio::test]
async fn email_malformed_is_400_with_reason() {
    let h = Harness::new().await;
    let cases = [
        ("", "empty message"),
        ("Subject: no sender\r\n\r\nhello\r\n", "no From address"),
        ("From: a@example.com\r\nSubject: nothing\r\n\r\n", "no body"),
    ];
    for (raw, why) in cases {
        let resp = post(&h, raw.to_string()).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{raw:?}");
        let text = resp.text().await.expect("text");
        assert!(
            text.contains("malformed email") && text.contains(why),
            "{text}"
        );
    }
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn email_bad_or_missing_token_is_401() {
    let h = Harness::new().await;
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", "Bearer wrong")
        .body(mixed_message())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .body(mixed_message())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn email_wrong_content_type_is_415() {
    let h = Harness::new().await;
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .header("Content-Type", "application/json")
        .body(mixed_message())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 415);
}

#[tokio::test]
async fn email_without_a_configured_token_is_404_and_stores_nothing() {
    let opts = concierto_feedback::FeedbackOptions {
        email_token: None,
        ..crate::common::options()
    };
    let h = Harness::with_options(opts).await;
    let resp = post(&h, mixed_message()).send().await.expect("send");
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("not configured"));
    assert!(h.pending().is_empty());
}
