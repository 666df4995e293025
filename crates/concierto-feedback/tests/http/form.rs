use concierto_proto::v1::FeedbackChannel;

use crate::common::Harness;

/// GETs the form: (cookie pair `concierto_csrf=...`, hidden field token).
pub async fn load_form(h: &Harness) -> (String, String) {
    let resp = h.http.get(h.url("/feedback")).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_string();
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let pair = set_cookie.split(';').next().expect("pair").to_string();
    let html = resp.text().await.expect("html");
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("hidden field") + marker.len();
    let end = start + html[start..].find('"').expect("end of value");
    let token = html[start..end].to_string();
    assert_eq!(pair, format!("concierto_csrf={token}"));
    (pair, token)
}

pub fn form(token: &str, message: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", token.to_string()),
        ("author", "Dana".to_string()),
        ("email", "dana@example.com".to_string()),
        ("run_id", "daily@2026-11-24T09:00:00Z".to_string()),
        ("message", message.to_string()),
    ]
}

#[tokio::test]
async fn form_with_cookie_and_token_is_stored() {
    let h = Harness::new().await;
    let (cookie, token) = load_form(&h).await;
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&form(&token, "Love the <new> layout & colours"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html");
    let marker = "<code id=\"feedback-id\">";
    let start = html.find(marker).expect("id on the page") + marker.len();
    let end = start + html[start..].find('<').expect("end");
    let id = &html[start..end];
    assert!(id.starts_with("web-"), "{id}");
    let fb = h.stored(id).expect("stored");
    assert_eq!(fb.channel, FeedbackChannel::WebForm as i32);
    assert_eq!(fb.author, "Dana <dana@example.com>");
    assert_eq!(fb.run_id, "daily@2026-11-24T09:00:00Z");
    assert_eq!(fb.text, "Love the <new> layout & colours");
}

#[tokio::test]
async fn form_without_token_is_403() {
    let h = Harness::new().await;
    let (cookie, token) = load_form(&h).await;
    // No cookie.
    let resp = h
        .http
        .post(h.url("/feedback"))
        .form(&form(&token, "hello"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    // No hidden field.
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&[("message", "hello")])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn form_with_tampered_or_mismatched_token_is_403() {
    let h = Harness::new().await;
    let (_cookie, token) = load_form(&h).await;
    let (_other_cookie, other_token) = load_form(&h).await;

    // Field and cookie differ (each valid on its own).
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", format!("concierto_csrf={other_token}"))
        .form(&form(&token, "hello"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);

    // Both tampered the same way: equal, but not made by the server.
    let mut forged = token.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == '0' { '1' } else { '0' });
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", format!("concierto_csrf={forged}"))
        .form(&form(&forged, "hello"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);

    // A token made with another key.
    let foreign = concierto_feedback::form::new_token(
        b"another key, 32 bytes long......",
        chrono::Utc::now(),
    )
    .expect("token");
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", format!("concierto_csrf={foreign}"))
        .form(&form(&foreign, "hello"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert_eq!(h.stored_count(), 0);
}

#[tokio::test]
async fn form_with_empty_message_is_400_and_rerendered() {
    let h = Harness::new().await;
    let (cookie, token) = load_form(&h).await;
    let resp = h
        .http
        .post(h.url("/feedback"))
        .header("Cookie", &cookie)
        .form(&form(&token, "   "))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.expect("html");
    assert!(html.contains("Please write a message."), "{html}");
    assert!(html.contains("<form"), "{html}");
    assert!(
        html.contains("value=\"Dana\""),
        "kept what was typed: {html}"
    );
    assert!(html.contains(&token), "same token, so a retry works");
    assert_eq!(h.stored_count(), 0);
}
