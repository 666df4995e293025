//! What every state-changing button of the runs and triggers pages shares:
//! the form read from the body, its CSRF token checked (the double-submit
//! token of [`check_csrf`]), and the admin role required, as the admin API
//! requires it for the same calls. A refusal is a page with its status
//! (403 for a non-admin or a bad token, 400 for a malformed form).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::DashboardState;
use crate::auth::{Authed, check_csrf};
use crate::html::{page, refusal_box};
use crate::services::Refusal;

/// A form that carries its CSRF token.
pub(crate) trait WithCsrf {
    fn csrf(&self) -> &str;
}

/// The form `T` of an admin's post: parsed, its token checked, the signed-in
/// person an admin (`what` says what they may not do otherwise). The refusal
/// is the response to send (boxed: it is large).
pub(crate) fn admin_form<T: DeserializeOwned + WithCsrf>(
    state: &DashboardState,
    who: &Authed,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    active: &str,
) -> Result<T, Box<Response>> {
    let form: T = serde_urlencoded::from_bytes(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("not a form post: {e}")).into_response())?;
    check_csrf(state, headers, Some(form.csrf())).map_err(IntoResponse::into_response)?;
    if !who.identity.is_admin() {
        let r = Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "{id} may not {what}: it needs the admin role (reviewers.{id}.roles: [admin])",
                id = who.identity.id
            ),
        );
        return Err(Box::new(page(
            state,
            who,
            r.status,
            "Refused",
            active,
            &refusal_box(&r),
        )));
    }
    Ok(form)
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf_field(who: &Authed) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        crate::html::esc(&who.csrf)
    )
}
