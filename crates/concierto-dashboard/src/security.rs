//! What every response carries and what bounds the live streams.
//!
//! - Headers on every response ([`headers`]): a Content-Security-Policy
//!   ([`CSP`]: scripts, styles, images and connections from the dashboard
//!   itself only, no inline script or style, no framing, no plugins), unless
//!   the handler set a stricter one (the library proxy's `sandbox`);
//!   `X-Frame-Options: DENY`; `X-Content-Type-Options: nosniff`;
//!   `Referrer-Policy: same-origin`. The pages keep to the policy: the
//!   script and style are served files, colours and bars are SVG attributes.
//! - Cookies carry `Secure` when [`DashboardOptions::secure_cookies`] is set
//!   (the studio's `server.dashboard_secure_cookies`: browsers reach the
//!   dashboard over HTTPS through a proxy; the dashboard itself speaks HTTP).
//! - `GET /events` streams are counted per session and in total
//!   ([`DashboardOptions::max_streams_per_session`],
//!   [`DashboardOptions::max_streams`]); one over either is answered 429.
//!
//! [`DashboardOptions::secure_cookies`]: crate::DashboardOptions::secure_cookies
//! [`DashboardOptions::max_streams_per_session`]: crate::DashboardOptions::max_streams_per_session
//! [`DashboardOptions::max_streams`]: crate::DashboardOptions::max_streams

use std::collections::HashMap;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::DashboardState;

/// The dashboard's Content-Security-Policy.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to a response (keeping a policy the handler set).
pub(crate) async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// The attributes every cookie of the dashboard ends with.
pub(crate) fn cookie_attributes(state: &DashboardState) -> &'static str {
    if state.opts().secure_cookies {
        "; Path=/; SameSite=Strict; HttpOnly; Secure"
    } else {
        "; Path=/; SameSite=Strict; HttpOnly"
    }
}

/// Open event streams: in total and per session id.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    total: usize,
    by_session: HashMap<String, usize>,
}

/// One open event stream; its place is given back when dropped (the
/// browser left or the dashboard stopped).
pub(crate) struct StreamSlot {
    state: DashboardState,
    session: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut s = self
            .state
            .inner
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_session.get_mut(&self.session) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.by_session.remove(&self.session);
            }
        }
    }
}

/// A place for one more event stream of `session`, or why not (which limit
/// is reached, for [`too_many_streams`]).
pub(crate) fn open_stream(state: &DashboardState, session: &str) -> Result<StreamSlot, String> {
    let (per_session, total) = (
        state.opts().max_streams_per_session,
        state.opts().max_streams,
    );
    let mut s = state
        .inner
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mine = s.by_session.get(session).copied().unwrap_or(0);
    let refusal = if mine >= per_session {
        Some(format!(
            "this session has {mine} live streams open, the most one may have: close other \
             dashboard tabs"
        ))
    } else if s.total >= total {
        Some(format!(
            "the dashboard has {total} live streams open, the most it serves: try again later"
        ))
    } else {
        None
    };
    if let Some(message) = refusal {
        tracing::info!(
            open = s.total,
            session_open = mine,
            "live stream refused: {message}"
        );
        return Err(message);
    }
    s.total += 1;
    *s.by_session.entry(session.to_string()).or_default() += 1;
    Ok(StreamSlot {
        state: state.clone(),
        session: session.to_string(),
    })
}

/// The 429 for a stream over a limit.
pub(crate) fn too_many_streams(message: String) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::RETRY_AFTER, "30"),
        ],
        message,
    )
        .into_response()
}
