//! The web form under a flood: its own small body limit, the per-client and
//! global rate limits (429 with `Retry-After`, on the harness's manual clock),
//! and the caps on what is stored.

use std::time::Duration;

use concierto_feedback::caps::{MAX_TEXT_CHARS, TRUNCATED_KEY};
use concierto_feedback::form::MAX_MESSAGE_CHARS;
use concierto_feedback::{FeedbackOptions, FormRateLimit};
use serde_json::Value;

use crate::common::{EMAIL_TOKEN, Harness, options};
use crate::form::{form, load_form};

/// Posts the form `n` times with one token; the statuses and `Retry-After`s.
async fn post_form(
    h: &Harness,
    http: &reqwest::Client,
    cookie: &str,
    token: &str,
    n: usize,
) -> Vec<(u16, Option<String>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let resp = http
            .post(h.url("/feedback"))
            .header("Cookie", cookie)
            .form(&form(token, &format!("flood message {i}")))
            .send()
            .await
            .expect("send");
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        out.push((resp.status().as_u16(), retry_after));
    }
    out
}

#[tokio::test]
async fn twenty_posts_from_one_client_are_429_after_ten_and_the_server_stays_up() {
    let h = Harness::new().await;
    assert_eq!(
        FeedbackOptions::default().form_rate,
        FormRateLimit {
            per_client_per_minute: 10,
            per_minute: 60,
            max_clients: 10_000,
        }
    );
    let (cookie, token) = load_form(&h).await;
    let got = post_form(&h, &h.http, &cookie, &token, 20).await;
    let statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses[..10], [200; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 10], "{statuses:?}");
    assert!(
        got[10..].iter().all(|(_, r)| r.as_deref() == Some("6")),
        "one post per 6 s refills: {got:?}"
    );
    assert_eq!(h.stored_count(), 10, "refused posts are not stored");

    // Still up, and the client is welcome again once a post refilled.
    let health = h.http.get(h.url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), 200);
    h.clock.advance(Duration::from_secs(6));
    let again = post_form(&h, &h.http, &cookie, &token, 2).await;
    assert_eq!(again[0].0, 200, "{again:?}");
    assert_eq!(again[1].0, 429, "{again:?}");
    // The other routes are not limited.
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .body("From: a@example.com\r\nSubject: hi\r\n\r\nstill taken in\r\n")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn another_client_is_not_held_back_but_the_global_limit_holds() {
    let opts = FeedbackOptions {
        form_rate: FormRateLimit {
            per_client_per_minute: 3,
            per_minute: 5,
            max_clients: 100,
        },
        ..options()
    };
    let h = Harness::with_options(opts).await;
    let (cookie, token) = load_form(&h).await;
    // 127.0.0.2 is loopback too: a second client address.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().expect("address"))
        .build()
        .expect("client");
    let first = post_form(&h, &h.http, &cookie, &token, 4).await;
    let statuses: Vec<u16> = first.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let second = post_form(&h, &other, &cookie, &token, 3).await;
    let statuses: Vec<u16> = second.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [200, 200, 429],
        "the form takes 5 a minute in all"
    );
    assert_eq!(second[2].1.as_deref(), Some("12"));
    assert_eq!(h.stored_count(), 5);
}

#[tokio::test]
async fn a_one_mib_form_body_is_413_while_email_keeps_its_own_limit() {
    let h = Harness::new().await;
    let (cookie, token) = load_form(&h).await;
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&form(&token, &"x".repeat(1024 * 1024)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&form(&token, &"x".repeat(70 * 1024)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413, "just over the form's 64 KiB");
    assert_eq!(h.stored_count(), 0);

    // An email of 200 KiB is under `max_body_bytes` (1 MiB): taken in, its
    // text capped.
    let text = "All good. ".repeat(20 * 1024);
    let resp = h
        .http
        .post(h.url("/email/inbound"))
        .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
        .body(format!(
            "From: a@example.com\r\nSubject: long\r\nMessage-ID: <long@example.com>\r\n\r\n{text}\r\n"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.expect("json");
    let fb = h
        .stored(answer["feedback_id"].as_str().expect("id"))
        .expect("stored");
    assert_eq!(fb.text.chars().count(), MAX_TEXT_CHARS);
    assert_eq!(
        fb.metadata.get(TRUNCATED_KEY).map(String::as_str),
        Some("text")
    );
}

#[tokio::test]
async fn a_message_over_the_forms_length_is_refused_with_the_form() {
    let h = Harness::new().await;
    let (cookie, token) = load_form(&h).await;
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&form(&token, &"é".repeat(MAX_MESSAGE_CHARS + 1)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.expect("html");
    assert!(html.contains("please keep it to 5000"), "{}", html.len());
    assert!(html.contains("<form"));
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&form(&token, &"é".repeat(MAX_MESSAGE_CHARS)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200, "5,000 characters fit in 64 KiB");
    assert_eq!(h.stored_count(), 1);
}
