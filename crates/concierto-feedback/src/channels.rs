//! `feedback_capture.channels`: a channel the studio does not list is off.
//! Its routes answer 404 with a sentence naming the key, and [`crate::accept`]
//! refuses its feedback the same way; the admin API (`api`) is always on.
//!
//! | route | channel |
//! |---|---|
//! | `/slack/events`, `/slack/commands` | `slack` |
//! | `/email/inbound` | `email` |
//! | `/feedback`, `/feedback/status/{token}` | `web_form` |
//!
//! The list is read per request: a changed studio handed to
//! [`crate::FeedbackState::take_studio`] turns a channel on or off at once.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concierto_core::config::Studio;
use concierto_core::config::keys::{channel_off_message, channel_on};

use crate::{FeedbackError, FeedbackOptions, FeedbackState};

/// The HTTP channels a studio turns on: `None` (every one) when it has no
/// `feedback_capture`, else those its `channels` list.
pub fn channels_of(studio: &Studio) -> Option<Vec<String>> {
    (!studio.feedback_loops.human_to_agent.is_empty()).then(|| {
        ["slack", "email", "web_form"]
            .into_iter()
            .filter(|c| channel_on(studio, c))
            .map(str::to_string)
            .collect()
    })
}

/// Whether `channel` is taken under the list `channels` (`None`: every one):
/// `api` always.
pub fn listed(channels: Option<&[String]>, channel: &str) -> bool {
    channel == "api" || channels.is_none_or(|list| list.iter().any(|c| c == channel))
}

/// The channel a request path belongs to, if any.
pub fn channel_of_path(path: &str) -> Option<&'static str> {
    if path.starts_with("/slack/") {
        Some("slack")
    } else if path == "/email/inbound" {
        Some("email")
    } else if path == "/feedback" || path.starts_with("/feedback/") {
        Some("web_form")
    } else {
        None
    }
}

impl FeedbackOptions {
    /// Whether feedback from `channel` is taken: `api` always; the others
    /// when [`FeedbackOptions::channels`] is unset or lists them.
    pub fn channel_on(&self, channel: &str) -> bool {
        listed(self.channels.as_deref(), channel)
    }

    /// An error refusing `channel` when it is off.
    pub fn check_channel(&self, channel: &str) -> Result<(), FeedbackError> {
        if self.channel_on(channel) {
            Ok(())
        } else {
            Err(FeedbackError::NotConfigured(channel_off_message(channel)))
        }
    }
}

/// Middleware: answers 404 with the reason for the routes of a channel that is off.
pub(crate) async fn refuse_off(
    State(state): State<FeedbackState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(channel) = channel_of_path(request.uri().path())
        && let Err(e) = state.check_channel(channel)
    {
        tracing::info!(channel, "feedback refused: channel off");
        return e.into_response();
    }
    next.run(request).await
}
