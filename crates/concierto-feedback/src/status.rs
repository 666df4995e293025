//! The web form's status page: on submit the person gets a link
//! `feedback/status/<token>` (64 hex characters, 256 random bits: unguessable)
//! whose page shows the feedback and, once the feedback router has sent it,
//! the studio's reply (asked of the router on `feedback.reply.get`).
//!
//! Store tree [`STATUS_TREE`]: key = token, value = feedback id.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use concierto_bus::BusExt;
use concierto_core::store::Op;
use concierto_core::subjects;
use concierto_proto::v1;

use crate::form::{escape, html, page};
use crate::intake::blocking;
use crate::requests::get_one;
use crate::{FeedbackError, FeedbackState};

/// Store tree of status-page tokens (key = token, value = feedback id).
pub const STATUS_TREE: &str = "feedback_status";
/// How long the page waits for the router's answer.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(2);

/// A new token for `feedback_id`, stored (and flushed) before it is shown.
pub async fn new_token(state: &FeedbackState, feedback_id: &str) -> Result<String, FeedbackError> {
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    let (k, v) = (token.clone().into_bytes(), feedback_id.as_bytes().to_vec());
    blocking(state.store().clone(), move |s| {
        s.apply(STATUS_TREE, vec![Op::Put(k, v)])?;
        s.flush()?;
        Ok(())
    })
    .await?;
    Ok(token)
}

fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GET /feedback/status/{token}`: 200 the page; 404 an unknown token.
pub(crate) async fn show(
    State(state): State<FeedbackState>,
    Path(token): Path<String>,
) -> Result<Response, FeedbackError> {
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                "<h1>Not found</h1>\n<p>This status link is not known.</p>",
            ),
            None,
        )
    };
    if !well_formed(&token) {
        return Ok(not_found());
    }
    let key = token.into_bytes();
    let id = blocking(
        state.store().clone(),
        move |s| Ok(s.get(STATUS_TREE, &key)?),
    )
    .await?;
    let Some(id) = id.map(|v| String::from_utf8_lossy(&v).into_owned()) else {
        return Ok(not_found());
    };
    let Some(fb) = get_one(&state, &id).await? else {
        return Ok(not_found());
    };
    let reply = state
        .bus()
        .request_proto::<_, v1::FeedbackReply>(
            subjects::FEEDBACK_REPLY_GET,
            &v1::GetFeedbackRequest {
                feedback_id: id.clone(),
            },
            ROUTER_TIMEOUT,
        )
        .await;
    let answer = match reply {
        Ok(r) if r.state == "sent" && !r.text.is_empty() => format!(
            "<h2>Our reply</h2>\n<div id=\"reply\" style=\"white-space:pre-wrap\">{}</div>",
            escape(&r.text)
        ),
        Ok(_) => "<p id=\"reply-state\">No reply yet: the studio's specialists are on it. \
Reload this page later.</p>"
            .to_string(),
        Err(e) => {
            tracing::debug!(feedback = %id, error = %e, "the router did not answer for a status page");
            "<p id=\"reply-state\">No reply to show right now; reload this page later.</p>"
                .to_string()
        }
    };
    let body = format!(
        "<h1>Your feedback</h1>\n<p>Reference <code id=\"feedback-id\">{id}</code></p>\n\
<blockquote style=\"white-space:pre-wrap\">{text}</blockquote>\n{answer}",
        id = escape(&fb.feedback_id),
        text = escape(&fb.text),
    );
    Ok(html(StatusCode::OK, page("Your feedback", &body), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_before_any_lookup() {
        assert!(well_formed(&"a".repeat(64)));
        assert!(!well_formed(&"a".repeat(63)));
        assert!(!well_formed(&format!("{}z", "a".repeat(63))));
        assert!(!well_formed("../../etc/passwd"));
    }
}
