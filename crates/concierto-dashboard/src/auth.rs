//! Sign-in and CSRF. A reviewer token (the admin API's: its SHA-256 is a
//! `reviewers.<id>.token_sha256`) is exchanged on `POST /login` for a session:
//! a random id in an `HttpOnly; SameSite=Strict` cookie, mapped in memory to
//! the identity and the token until it expires. State-changing requests carry
//! the double-submit CSRF token of the feedback form
//! ([`concierto_feedback::form`]): a cookie, and the same value in the form
//! field `csrf` or the `X-CSRF-Token` header.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use concierto_admin::Identity;
use concierto_feedback::form::{check_token, cookie, new_token};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::DashboardState;
use crate::html::{self, esc};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "concierto_dashboard_session";
/// The CSRF cookie (another name than the feedback form's: cookies are
/// shared by every port of a host).
pub(crate) const CSRF_COOKIE: &str = "concierto_dashboard_csrf";
/// Header alternative to the `csrf` form field (scripts' `fetch`).
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Most sessions kept at once (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// One signed-in person.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    identity: Identity,
    token: String,
    expires: DateTime<Utc>,
}

pub(crate) fn live_sessions(state: &DashboardState) -> usize {
    let now = state.now();
    state
        .inner
        .sessions
        .lock()
        .map(|s| s.values().filter(|x| x.expires > now).count())
        .unwrap_or(0)
}

/// Whether the session `id` still exists and has not expired (an open event
/// stream ends when it does not).
pub(crate) fn session_live(state: &DashboardState, id: &str) -> bool {
    let now = state.now();
    state
        .inner
        .sessions
        .lock()
        .map(|s| s.get(id).is_some_and(|x| x.expires > now))
        .unwrap_or(false)
}

/// A request with a valid session, and the CSRF token its page carries.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    pub identity: Identity,
    pub token: String,
    session_id: String,
    /// The CSRF token to put in forms.
    pub csrf: String,
    /// Set when the CSRF cookie has to be (re)issued with the response.
    new_csrf: bool,
}

impl Authed {
    /// The session this request came with.
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
        "{CSRF_COOKIE}={token}; Path=/; Max-Age={}; SameSite=Strict; HttpOnly",
        state.opts().csrf_ttl.as_secs()
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
        && check_token(o.csrf_key.expose(), &t, state.now(), o.csrf_ttl).is_ok()
    {
        return Ok((t, false));
    }
    new_token(o.csrf_key.expose(), state.now())
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
    check_token(o.csrf_key.expose(), &given, state.now(), o.csrf_ttl)
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
        let now = state.now();
        let found = cookie(&parts.headers, SESSION_COOKIE).and_then(|id| {
            let mut sessions = state.inner.sessions.lock().ok()?;
            match sessions.get(&id) {
                Some(s) if s.expires > now => Some((id, s.clone())),
                Some(_) => {
                    sessions.remove(&id);
                    None
                }
                None => None,
            }
        });
        let Some((session_id, session)) = found else {
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
            session_id,
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
<form method=\"post\" action=\"/login\">\
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
    let Some(identity) = state.inner.identities.by_token(token).cloned() else {
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
    let id = hex::encode(rand::random::<[u8; 32]>());
    let now = state.now();
    let ttl = state.opts().session_ttl;
    let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    if let Ok(mut sessions) = state.inner.sessions.lock() {
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                identity: identity.clone(),
                token: token.to_string(),
                expires,
            },
        );
    }
    tracing::info!(reviewer = %identity.id, "signed in to the dashboard");
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; Max-Age={}; SameSite=Strict; HttpOnly",
        ttl.as_secs()
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
    if let Ok(mut sessions) = state.inner.sessions.lock() {
        sessions.remove(&who.session_id);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "concierto_dashboard_session=; Path=/; Max-Age=0; SameSite=Strict; HttpOnly",
        ),
    );
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
