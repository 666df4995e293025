use concierto_feedback::FeedbackOptions;

use crate::common::{EMAIL_TOKEN, Harness, options};

#[tokio::test]
async fn oversized_body_is_413() {
    let h = Harness::new().await;
    assert_eq!(FeedbackOptions::default().max_body_bytes, 1024 * 1024);
    assert_eq!(FeedbackOptions::default().form_max_body_bytes, 64 * 1024);
    let big = "x".repeat(1024 * 1024 + 1);
    for path in [
        "/email/inbound",
        "/slack/events",
        "/slack/commands",
        "/feedback",
    ] {
        let resp = h
            .http
            .post(h.url(path))
            .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
            .body(big.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 413, "{path}");
    }
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn body_limit_follows_the_options() {
    let opts = FeedbackOptions {
        max_body_bytes: 512,
        ..options()
    };
    let h = Harness::with_options(opts).await;
    let message = format!(
        "From: a@example.com\r\nSubject: big\r\n\r\n{}\r\n",
        "y".repeat(600)
    );
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .body(message)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let small = "From: a@example.com\r\nSubject: small\r\n\r\nok\r\n";
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .body(small)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn healthz_is_ok() {
    let h = Harness::new().await;
    let resp = h.http.get(h.url("/healthz")).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("text"), "ok");
}
