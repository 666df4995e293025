//! The web form: `GET /feedback` shows it, `POST /feedback` takes it.
//!
//! CSRF protection is a double submit: the page sets a cookie
//! (`SameSite=Strict; HttpOnly`) and carries the same token in a hidden field;
//! a post must bring both, equal, and the token must be one this server made
//! (`<unix time>.<nonce>.<HMAC-SHA256(csrf_key, "<unix time>.<nonce>")>`) within
//! `csrf_ttl`. Anything else is refused with 403.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use concierto_proto::v1::{Feedback, FeedbackChannel};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::FeedbackState;
use crate::error::FeedbackError;
use crate::intake;

/// Name of the CSRF cookie (and of the hidden field).
pub const CSRF_COOKIE: &str = "concierto_csrf";
/// Longest author, email or run id kept from the form.
const MAX_FIELD: usize = 200;
/// Longest message the form takes (a longer one is refused with 400 and the
/// form again).
pub const MAX_MESSAGE_CHARS: usize = 5_000;

type HmacSha256 = Hmac<Sha256>;

fn token_mac(key: &[u8], payload: &str) -> Result<HmacSha256, FeedbackError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(FeedbackError::internal)?;
    mac.update(payload.as_bytes());
    Ok(mac)
}

/// A new CSRF token made at `now` with `key`.
pub fn new_token(key: &[u8], now: DateTime<Utc>) -> Result<String, FeedbackError> {
    let nonce: [u8; 16] = rand::random();
    let payload = format!("{}.{}", now.timestamp(), hex::encode(nonce));
    let mac = token_mac(key, &payload)?.finalize().into_bytes();
    Ok(format!("{payload}.{}", hex::encode(mac)))
}

/// Checks that `token` was made with `key` no longer than `ttl` before `now`.
pub fn check_token(
    key: &[u8],
    token: &str,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<(), FeedbackError> {
    let forbidden = |why: &str| FeedbackError::Forbidden(format!("invalid form token: {why}"));
    let (payload, mac_hex) = token
        .rsplit_once('.')
        .ok_or_else(|| forbidden("malformed"))?;
    let (ts, _nonce) = payload
        .split_once('.')
        .ok_or_else(|| forbidden("malformed"))?;
    let mac = hex::decode(mac_hex).map_err(|_| forbidden("malformed"))?;
    token_mac(key, payload)?
        .verify_slice(&mac)
        .map_err(|_| forbidden("not issued by this server"))?;
    let ts: i64 = ts.parse().map_err(|_| forbidden("malformed"))?;
    let age = now.timestamp().saturating_sub(ts);
    if age < -60 || age.unsigned_abs() > ttl.as_secs() {
        return Err(forbidden("expired; reload the form"));
    }
    Ok(())
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// What the form posts.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct FormValues {
    csrf: String,
    author: String,
    email: String,
    run_id: String,
    message: String,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}\
label{display:block;margin-top:1rem;font-weight:600}\
input,textarea{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}\
textarea{min-height:10rem}button{margin-top:1rem;padding:.6rem 1.4rem;font:inherit}\
.error{color:#a00;font-weight:600}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
}

fn render_form(token: &str, values: &FormValues, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Send feedback to the studio</h1>\n{error}\n\
<form method=\"post\" action=\"feedback\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
<label for=\"author\">Your name</label><input id=\"author\" name=\"author\" maxlength=\"{MAX_FIELD}\" value=\"{author}\">\n\
<label for=\"email\">Email (optional)</label><input id=\"email\" name=\"email\" type=\"email\" maxlength=\"{MAX_FIELD}\" value=\"{email}\">\n\
<label for=\"run_id\">Run id (optional)</label><input id=\"run_id\" name=\"run_id\" maxlength=\"{MAX_FIELD}\" value=\"{run_id}\">\n\
<label for=\"message\">Message</label><textarea id=\"message\" name=\"message\" maxlength=\"{MAX_MESSAGE_CHARS}\" required>{message}</textarea>\n\
<button type=\"submit\">Send</button>\n</form>",
        token = escape(token),
        author = escape(&values.author),
        email = escape(&values.email),
        run_id = escape(&values.run_id),
        message = escape(&values.message),
    );
    page("Feedback", &body)
}

pub(crate) fn html(status: StatusCode, body: String, set_cookie: Option<HeaderValue>) -> Response {
    let mut resp = (status, Html(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    if let Some(c) = set_cookie {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

/// `GET /feedback`: the form, with a fresh token in the cookie and the field.
pub(crate) async fn show(State(state): State<FeedbackState>) -> Result<Response, FeedbackError> {
    let opts = state.options();
    let token = new_token(opts.csrf_key.expose(), state.clock().now())?;
    let cookie = format!(
        "{CSRF_COOKIE}={token}; Path=/; Max-Age={}; SameSite=Strict; HttpOnly",
        opts.csrf_ttl.as_secs()
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(FeedbackError::internal)?;
    Ok(html(
        StatusCode::OK,
        render_form(&token, &FormValues::default(), None),
        Some(cookie),
    ))
}

fn clip(s: &str) -> String {
    s.trim().chars().take(MAX_FIELD).collect()
}

/// `POST /feedback`.
pub(crate) async fn submit(
    State(state): State<FeedbackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FeedbackError> {
    let values: FormValues = serde_urlencoded::from_bytes(&body)
        .map_err(|e| FeedbackError::Invalid(format!("not a form post: {e}")))?;
    let from_cookie = cookie(&headers, CSRF_COOKIE).ok_or_else(|| {
        FeedbackError::Forbidden("missing form cookie; enable cookies and reload the form".into())
    })?;
    if values.csrf.is_empty() {
        return Err(FeedbackError::Forbidden("missing form token".into()));
    }
    if !bool::from(values.csrf.as_bytes().ct_eq(from_cookie.as_bytes())) {
        return Err(FeedbackError::Forbidden(
            "form token does not match its cookie; reload the form".into(),
        ));
    }
    let opts = state.options();
    check_token(
        opts.csrf_key.expose(),
        &values.csrf,
        state.clock().now(),
        opts.csrf_ttl,
    )?;

    if values.message.trim().is_empty() {
        return Ok(html(
            StatusCode::BAD_REQUEST,
            render_form(&values.csrf, &values, Some("Please write a message.")),
            None,
        ));
    }
    let length = values.message.trim().chars().count();
    if length > MAX_MESSAGE_CHARS {
        let error =
            format!("Your message has {length} characters; please keep it to {MAX_MESSAGE_CHARS}.");
        return Ok(html(
            StatusCode::BAD_REQUEST,
            render_form(&values.csrf, &values, Some(&error)),
            None,
        ));
    }
    let name = clip(&values.author);
    let email = clip(&values.email);
    let author = match (name.is_empty(), email.is_empty()) {
        (false, false) => format!("{name} <{email}>"),
        (false, true) => name,
        (true, false) => email.clone(),
        (true, true) => "anonymous".to_string(),
    };
    let mut metadata = HashMap::new();
    if !email.is_empty() {
        metadata.insert("email".to_string(), email);
    }
    if let Some(ua) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        metadata.insert(
            "user_agent".to_string(),
            ua.chars().take(MAX_FIELD).collect(),
        );
    }
    let fb = Feedback {
        channel: FeedbackChannel::WebForm as i32,
        author,
        text: values.message.trim().to_string(),
        run_id: clip(&values.run_id),
        metadata,
        ..Default::default()
    };
    let accepted = intake::accept(&state, fb).await?;
    // The link to the page that shows the studio's reply (crate::status).
    let token = crate::status::new_token(&state, &accepted.feedback_id).await?;
    let body = format!(
        "<h1>Thank you</h1>\n<p>Your feedback was received; its reference is \
<code id=\"feedback-id\">{}</code>.</p>\n<p>The studio's reply will appear on \
<a id=\"status-link\" href=\"feedback/status/{token}\">your feedback's status page</a>; \
keep the link.</p>\n<p><a href=\"feedback\">Send more feedback</a></p>",
        escape(&accepted.feedback_id)
    );
    Ok(html(StatusCode::OK, page("Thank you", &body), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid time")
    }

    #[test]
    fn tokens_verify_and_expire() {
        let ttl = Duration::from_secs(3600);
        let t = new_token(KEY, at(1000)).expect("token");
        assert!(check_token(KEY, &t, at(1000), ttl).is_ok());
        assert!(check_token(KEY, &t, at(1000 + 3600), ttl).is_ok());
        assert!(check_token(KEY, &t, at(1000 + 3601), ttl).is_err());
        assert!(check_token(b"another key", &t, at(1000), ttl).is_err());
        let mut tampered = t.clone();
        tampered.replace_range(0..1, "2");
        assert!(check_token(KEY, &tampered, at(1000), ttl).is_err());
        assert!(check_token(KEY, "garbage", at(1000), ttl).is_err());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; concierto_csrf=tok; b=2"),
        );
        assert_eq!(cookie(&h, CSRF_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
