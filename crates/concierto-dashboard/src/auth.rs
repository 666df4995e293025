//! Sign-in and CSRF. A reviewer token (the admin API's: its SHA-256 is a
//! `reviewers.<id>.token_sha256`) is exchanged on `POST /login` for a session:
//! an `HttpOnly; SameSite=Strict` cookie (also `Secure` with
//! `DashboardOptions::secure_cookies`) holding the reviewer id, the token
//! (the library proxy passes it on) and the expiry, sealed with
//! XChaCha20-Poly1305 under a key derived from the CSRF key. The dashboard
//! keeps no session table, so any replica with the same key
//! (`CONCIERTO_CSRF_KEY`) takes the cookie, and a restart signs nobody out.
//! Every request checks the token still belongs to that reviewer (a token
//! removed from the studio file ends its sessions). Signing out clears the
//! cookie and revokes the session on every running replica (an id on
//! [`subjects::DASHBOARD_SIGNOUT`], kept until the session would have
//! expired). State-changing requests carry
//! the double-submit CSRF token of the feedback form
//! ([`concierto_feedback::form`]): a cookie, and the same value in the form
//! field `csrf` or the `X-CSRF-Token` header.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use concierto_admin::Identity;
use concierto_bus::Outgoing;
use concierto_core::subjects;
use concierto_feedback::form::{check_token, cookie, new_token};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::DashboardState;
use crate::html::{self, esc};
use crate::security::cookie_attributes;

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "concierto_dashboard_session";
/// The CSRF cookie (another name than the feedback form's: cookies are
/// shared by every port of a host).
pub(crate) const CSRF_COOKIE: &str = "concierto_dashboard_csrf";
/// Header alternative to the `csrf` form field (scripts' `fetch`).
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Most revoked sessions remembered at once (the soonest to expire go first).
const MAX_REVOKED: usize = 100_000;
/// Associated data of a sealed session: a cookie sealed for something else
/// with the same key does not open as a session.
const SESSION_AAD: &[u8] = b"concierto-dashboard-session-v1";
/// Nonce length of XChaCha20-Poly1305 (random nonces are safe at 24 bytes).
const NONCE_LEN: usize = 24;

/// The cipher that seals sessions, keyed by SHA-256 of a label and the CSRF key.
pub(crate) fn session_cipher(csrf_key: &[u8]) -> XChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"concierto dashboard session key\0");
    h.update(csrf_key);
    let key: [u8; 32] = h.finalize().into();
    XChaCha20Poly1305::new(&key.into())
}

/// What a session cookie carries, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct SealedSession {
    /// Reviewer id.
    r: String,
    /// The reviewer's token.
    t: String,
    /// Expiry, Unix seconds.
    e: i64,
}

/// One signed-in person, from an opened cookie.
#[derive(Debug, Clone)]
struct Session {
    /// The nonce in hex: names the session (sign-out revokes it).
    id: String,
    identity: Identity,
    token: String,
    expires: DateTime<Utc>,
}

/// The cookie value of a new session.
fn seal(
    state: &DashboardState,
    reviewer: &str,
    token: &str,
    expires: DateTime<Utc>,
) -> Option<String> {
    let plain = serde_json::to_vec(&SealedSession {
        r: reviewer.to_string(),
        t: token.to_string(),
        e: expires.timestamp(),
    })
    .ok()?;
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = state
        .inner
        .session_cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: SESSION_AAD,
            },
        )
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Some(URL_SAFE_NO_PAD.encode(out))
}

/// The session a cookie value stands for: sealed by this key, not expired,
/// not signed out, and its token still the reviewer's.
fn open(state: &DashboardState, cookie: &str) -> Option<Session> {
    let raw = URL_SAFE_NO_PAD.decode(cookie.as_bytes()).ok()?;
    if raw.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let plain = state
        .inner
        .session_cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: SESSION_AAD,
            },
        )
        .ok()?;
    let s: SealedSession = serde_json::from_slice(&plain).ok()?;
    let expires = DateTime::from_timestamp(s.e, 0)?;
    if expires <= state.now() {
        return None;
    }
    let id = hex::encode(nonce);
    if revoked(state, &id) {
        return None;
    }
    let identity = state.identity_of(&s.t)?;
    if identity.id != s.r {
        return None;
    }
    Some(Session {
        id,
        identity,
        token: s.t,
        expires,
    })
}

fn revoked(state: &DashboardState, id: &str) -> bool {
    state
        .inner
        .revoked
        .lock()
        .map(|r| r.contains_key(id))
        .unwrap_or(false)
}

/// Remembers that session `id` was signed out, until it would have expired.
pub(crate) fn revoke(state: &DashboardState, id: &str, expires: DateTime<Utc>) {
    let now = state.now();
    if expires <= now {
        return;
    }
    if let Ok(mut r) = state.inner.revoked.lock() {
        r.retain(|_, until| *until > now);
        if r.len() >= MAX_REVOKED
            && let Some(first) = r
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone())
        {
            r.remove(&first);
        }
        r.insert(id.to_string(), expires);
    }
}

/// A sign-out as it travels to the other replicas on
/// [`subjects::DASHBOARD_SIGNOUT`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SignOut {
    /// The session id (its nonce in hex).
    pub id: String,
    /// When it would have expired, Unix seconds.
    pub expires: i64,
}

/// Takes a sign-out another replica announced.
pub(crate) fn signed_out_elsewhere(state: &DashboardState, payload: &[u8]) {
    match serde_json::from_slice::<SignOut>(payload) {
        Ok(s) if s.id.len() == NONCE_LEN * 2 => {
            if let Some(expires) = DateTime::from_timestamp(s.expires, 0) {
                revoke(state, &s.id, expires);
            }
        }
        Ok(_) | Err(_) => tracing::warn!("ignoring a malformed dashboard sign-out message"),
    }
}

/// Whether the session of this cookie value still holds (an open event
/// stream ends when it does not).
pub(crate) fn session_live(state: &DashboardState, cookie: &str) -> bool {
    open(state, cookie).is_some()
}

/// A request with a valid session, and the CSRF token its page carries.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    pub identity: Identity,
    pub token: String,
    /// The session cookie's value.
    session_cookie: String,
    session_id: String,
    session_expires: DateTime<Utc>,
    /// The CSRF token to put in forms.
    pub csrf: String,
    /// Set when the CSRF cookie has to be (re)issued with the response.
    new_csrf: bool,
}

impl Authed {
    /// The session cookie this request came with.
    pub(crate) fn session_cookie(&self) -> &str {
        &self.session_cookie
    }

    /// The session's id (its nonce in hex).
    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The `Set-Cookie` for the CSRF token, when a new one was made.
    pub fn csrf_cookie(&self, state: &DashboardState) -> Option<HeaderValue> {
        self.new_csrf
            .then(|| csrf_cookie_header(&self.csrf, state))
            .flatten()
    }
}

fn csrf_cookie_header(token: &str, state: &DashboardState) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={token}; Max-Age={}{}",
        state.opts().csrf_ttl.as_secs(),
        cookie_attributes(state)
    ))
    .ok()
}

/// A refused request: its status and a line saying why and what to do.
#[derive(Debug)]
pub(crate) struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

/// The CSRF token of a request: its cookie when still valid, else a new one.
fn csrf_for(state: &DashboardState, headers: &HeaderMap) -> Result<(String, bool), Refused> {
    let o = state.opts();
    if let Some(t) = cookie(headers, CSRF_COOKIE)
        && check_token(state.csrf_key(), &t, state.now(), o.csrf_ttl).is_ok()
    {
        return Ok((t, false));
    }
    new_token(state.csrf_key(), state.now())
        .map(|t| (t, true))
        .map_err(|e| {
            Refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot make a form token: {e}"),
            )
        })
}

/// Refuses a state-changing request whose CSRF token (form field `given`, or
/// the `X-CSRF-Token` header) is missing, differs from its cookie, or was not
/// made by this dashboard recently: 403 with the reason.
pub(crate) fn check_csrf(
    state: &DashboardState,
    headers: &HeaderMap,
    given: Option<&str>,
) -> Result<(), Refused> {
    let forbidden = |why: &str| {
        Refused(
            StatusCode::FORBIDDEN,
            format!("refused: {why}; reload the page and try again"),
        )
    };
    let from_cookie =
        cookie(headers, CSRF_COOKIE).ok_or_else(|| forbidden("missing form cookie"))?;
    let given = given
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .ok_or_else(|| forbidden("missing form token"))?;
    if !bool::from(given.as_bytes().ct_eq(from_cookie.as_bytes())) {
        return Err(forbidden("the form token does not match its cookie"));
    }
    let o = state.opts();
    check_token(state.csrf_key(), &given, state.now(), o.csrf_ttl)
        .map_err(|e| forbidden(&e.to_string()))
}

/// Where to go back to after signing in: a local path only.
fn safe_next(next: &str) -> &str {
    // Browsers drop tabs and newlines from URLs: `/\t/evil` would become `//evil`.
    if next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        next
    } else {
        "/"
    }
}

impl FromRequestParts<DashboardState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DashboardState,
    ) -> Result<Self, Self::Rejection> {
        let found = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|c| open(state, &c).map(|session| (c, session)));
        let Some((session_cookie, session)) = found else {
            // Pages send the browser to sign in; scripts and posts get 401.
            let page = parts.method == Method::GET
                && !parts.uri.path().starts_with("/library/api/")
                && parts.uri.path() != "/events";
            if page {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let to = format!(
                    "/login?{}",
                    serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
                );
                return Err(Redirect::to(&to).into_response());
            }
            return Err((
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "sign in first: POST /login with a reviewer token",
            )
                .into_response());
        };
        let (csrf, new_csrf) = csrf_for(state, &parts.headers).map_err(|r| r.into_response())?;
        Ok(Authed {
            identity: session.identity,
            token: session.token,
            session_cookie,
            session_id: session.id,
            session_expires: session.expires,
            csrf,
            new_csrf,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LoginQuery {
    next: String,
}

fn login_form(csrf: &str, next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<main class=\"login\"><h1>Concierto dashboard</h1>{error}\
<form method=\"post\" action=\"/login\" id=\"login-form\" data-login-form>\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"next\" value=\"{next}\">\
<label>Reviewer token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required></label>\
<button type=\"submit\" id=\"sign-in\">Sign in</button></form>\
<p class=\"hint\">The token whose SHA-256 is your <code>reviewers.&lt;id&gt;.token_sha256</code> in the studio file (the same as for the admin API).</p></main>",
        csrf = esc(csrf),
        next = esc(next),
    )
}

fn login_response(
    state: &DashboardState,
    status: StatusCode,
    csrf: &str,
    set_cookie: bool,
    next: &str,
    error: Option<&str>,
) -> Response {
    let body = html::document(
        "Sign in",
        &state.studio().studio.name,
        &login_form(csrf, next, error),
    );
    let mut resp = (status, axum::response::Html(body)).into_response();
    if set_cookie && let Some(c) = csrf_cookie_header(csrf, state) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// `GET /login`.
pub(crate) async fn login_page(
    State(state): State<DashboardState>,
    Query(q): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let (csrf, new) = match csrf_for(&state, &headers) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    login_response(&state, StatusCode::OK, &csrf, new, safe_next(&q.next), None)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    csrf: String,
    token: String,
    next: String,
}

/// `POST /login`: the token for a session cookie.
pub(crate) async fn login(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: LoginForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("not a form post: {e}")).into_response();
        }
    };
    if let Err(r) = check_csrf(&state, &headers, Some(&form.csrf)) {
        return r.into_response();
    }
    let next = safe_next(&form.next).to_string();
    let token = form.token.trim();
    let Some(identity) = state.identity_of(token) else {
        tracing::info!("dashboard sign-in refused: unknown token");
        return login_response(
            &state,
            StatusCode::UNAUTHORIZED,
            &form.csrf,
            false,
            &next,
            Some("Unknown token: use a token whose SHA-256 is a reviewer's token_sha256."),
        );
    };
    let ttl = state.opts().session_ttl;
    let expires =
        state.now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    let Some(id) = seal(&state, &identity.id, token, expires) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot seal a session; try again",
        )
            .into_response();
    };
    tracing::info!(reviewer = %identity.id, "signed in to the dashboard");
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Max-Age={}{}",
        ttl.as_secs(),
        cookie_attributes(&state)
    )) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CsrfForm {
    csrf: String,
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(state): State<DashboardState>,
    who: Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Err(r) = check_csrf(&state, &headers, Some(&form.csrf)) {
        return r.into_response();
    }
    revoke(&state, &who.session_id, who.session_expires);
    let note = SignOut {
        id: who.session_id.clone(),
        expires: who.session_expires.timestamp(),
    };
    match serde_json::to_vec(&note) {
        Ok(body) => {
            if let Err(e) = state
                .bus()
                .publish(subjects::DASHBOARD_SIGNOUT, Outgoing::new(body))
                .await
            {
                tracing::warn!(error = %e, "the other dashboard replicas were not told of a sign-out; its cookie is cleared here");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode a sign-out"),
    }
    tracing::info!(reviewer = %who.identity.id, "signed out of the dashboard");
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Max-Age=0{}",
        cookie_attributes(&state)
    )) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/runs/a?b=c"), "/runs/a?b=c");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next(""), "/");
    }
}
