//! The feedback service's bus requests besides `feedback.list`:
//!
//! - `feedback.submit` (`Feedback` → `SubmitFeedbackResponse`): the admin API's
//!   `SubmitFeedback` lands here, so API feedback is stored, published and
//!   listed like every other channel's ([`crate::accept`]);
//! - `feedback.get` (`GetFeedbackRequest` → `GetFeedbackResponse`, its
//!   `feedback` only): one stored record, for the feedback router and
//!   `GetFeedback`. Unknown ids answer `not_found`.

use std::sync::Arc;

use concierto_bus::{Bus, BusExt, Outgoing, encode};
use concierto_core::subjects;
use concierto_proto::v1;

use crate::intake::{self, blocking};
use crate::{FeedbackError, FeedbackState};

fn error_reply(code: &str, e: impl std::fmt::Display) -> Outgoing {
    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, format!("{code}: {e}"))
}

/// What `feedback.submit` answers for one request.
pub async fn submit(
    state: &FeedbackState,
    mut fb: v1::Feedback,
) -> Result<v1::SubmitFeedbackResponse, FeedbackError> {
    // Only the API submits here; the HTTP channels have their own routes.
    fb.channel = v1::FeedbackChannel::Api as i32;
    let accepted = intake::accept(state, fb).await?;
    Ok(v1::SubmitFeedbackResponse {
        feedback_id: accepted.feedback_id,
    })
}

/// Answers `feedback.submit` until the subscription ends.
pub async fn serve_submit(state: FeedbackState) {
    let bus: Arc<dyn Bus> = state.bus().clone();
    let mut sub = match bus
        .queue_subscribe_proto::<v1::Feedback>(subjects::FEEDBACK_SUBMIT, "feedback")
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve feedback.submit");
            return;
        }
    };
    while let Some((fb, msg)) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let out = match submit(&state, fb).await {
            Ok(r) => encode(&r),
            Err(e) => error_reply(e.code(), e),
        };
        if let Err(e) = bus.respond(&reply, out).await {
            tracing::warn!(error = %e, "answering feedback.submit failed");
        }
    }
}

/// One stored record by id (`None`: not stored).
pub async fn get_one(
    state: &FeedbackState,
    id: &str,
) -> Result<Option<v1::Feedback>, FeedbackError> {
    if id.is_empty() || id.len() > intake::MAX_ID_LEN {
        return Err(FeedbackError::Invalid(format!(
            "feedback_id must have 1 to {} characters",
            intake::MAX_ID_LEN
        )));
    }
    let id = id.to_string();
    blocking(state.store().clone(), move |s| intake::get(s, &id)).await
}

/// Answers `feedback.get` until the subscription ends.
pub async fn serve_get(state: FeedbackState) {
    let bus: Arc<dyn Bus> = state.bus().clone();
    let mut sub = match bus
        .queue_subscribe_proto::<v1::GetFeedbackRequest>(subjects::FEEDBACK_GET, "feedback")
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve feedback.get");
            return;
        }
    };
    while let Some((req, msg)) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let out = match get_one(&state, &req.feedback_id).await {
            Ok(Some(fb)) => encode(&v1::GetFeedbackResponse {
                feedback: Some(fb),
                reply: None,
            }),
            Ok(None) => error_reply("not_found", format!("no feedback {:?}", req.feedback_id)),
            Err(e) => error_reply(e.code(), e),
        };
        if let Err(e) = bus.respond(&reply, out).await {
            tracing::warn!(error = %e, "answering feedback.get failed");
        }
    }
}
