//! The feedback router (`concierto serve feedback-router`): owns each piece of
//! feedback from capture to answer.
//!
//! ```text
//!  feedback service: stored (every channel, the admin API included) ─▶ feedback.in.<channel>
//!  orchestrator: run feedback:<id> (workflow human-feedback): categorise ─▶ respond-<role>...
//!  router (this crate), following the run's events:
//!     categorised ─▶ feedback.routed.<category> (RoutedFeedback)
//!     run ended   ─▶ the first specialist response is the reply ─▶ sent on its channel
//!                    (Slack thread, SMTP reply, web-form status page, `feedback show`)
//!     sent        ─▶ metric.feedback_response_time (received → sent), JSON export
//! ```
//!
//! [`engine`] is the state machine (no I/O); [`service`] the one actix actor
//! that does the I/O; [`send`] the channels; [`export`] the `user_feedback`
//! folder.

pub mod engine;
pub mod export;
pub mod send;
pub mod service;

pub use engine::{Engine, Item, ReplyState, RetryPolicy, SendError};
pub use send::{Senders, SlackSettings, SmtpSettings, SmtpTls};
pub use service::{ITEMS_TREE, RouterError, RouterOptions, start, start_live};
