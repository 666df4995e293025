//! The one path every piece of feedback takes: stored (and flushed) first, then
//! published on `feedback.in.<channel>` with its id as the message id.
//!
//! Store trees:
//! - [`FEEDBACK_TREE`]: key = feedback id, value = the encoded `Feedback`;
//! - [`OUTBOX_TREE`]: key = feedback id, empty value, present while the record
//!   has not been published yet;
//! - the time index ([`crate::index`]), which pages of the list read.
//!
//! The outbox entry is written first, then the index entry, then the record
//! (all under one lock, then one flush), so a record never exists
//! without its outbox entry until it has been published; the entry is removed
//! only after the bus acknowledged the publish. Every field is capped first
//! ([`crate::caps`]).

use std::sync::Arc;

use concierto_bus::{BusExt, PublishAck};
use concierto_core::store::{KvStore, Op};
use concierto_core::subjects;
use concierto_proto::v1::{Feedback, FeedbackChannel};
use prost::Message as _;

use crate::error::FeedbackError;
use crate::{FeedbackState, caps, index};

/// Store tree of feedback records (key = feedback id, value = protobuf bytes).
pub const FEEDBACK_TREE: &str = "feedback";
/// Store tree of the ids not published yet.
pub const OUTBOX_TREE: &str = "feedback_outbox";
/// Longest feedback id accepted.
pub const MAX_ID_LEN: usize = 200;

/// What [`accept`] did with a piece of feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its id (given, derived from the source, or generated).
    pub feedback_id: String,
    /// True when a record with this id was already stored: nothing was written.
    pub duplicate: bool,
    /// True when it is on the bus; false when it waits in the outbox (the bus
    /// failed or timed out; the outbox publishes it later).
    pub published: bool,
}

/// The subject token of a channel: `slack`, `email`, `web_form` or `api`
/// (unspecified counts as `api`).
pub fn channel_name(channel: i32) -> &'static str {
    match FeedbackChannel::try_from(channel) {
        Ok(FeedbackChannel::Slack) => "slack",
        Ok(FeedbackChannel::Email) => "email",
        Ok(FeedbackChannel::WebForm) => "web_form",
        Ok(FeedbackChannel::Api) | Ok(FeedbackChannel::Unspecified) | Err(_) => "api",
    }
}

/// The subject a piece of feedback is published on: `feedback.in.<channel>`.
pub fn subject_for(feedback: &Feedback) -> String {
    subjects::feedback_in(channel_name(feedback.channel))
}

/// A new random id, `<prefix>-<UUID v4 form>`.
pub fn random_id(prefix: &str) -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{prefix}-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Makes any source id (an email's `Message-ID`) usable as a feedback id: ASCII
/// letters, digits and `.@_+=-` are kept, anything else becomes `_`; at most
/// [`MAX_ID_LEN`] characters with `prefix`. `None` when nothing is left.
pub fn sanitize_id(prefix: &str, raw: &str) -> Option<String> {
    let raw = raw.trim().trim_start_matches('<').trim_end_matches('>');
    let keep = MAX_ID_LEN.saturating_sub(prefix.len() + 1);
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".@_+=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(keep)
        .collect();
    if cleaned.trim_matches('_').is_empty() {
        None
    } else {
        Some(format!("{prefix}-{cleaned}"))
    }
}

fn check_id(id: &str) -> Result<(), FeedbackError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(FeedbackError::Invalid(format!(
            "feedback id {id:?} must be 1 to {MAX_ID_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Fills in what the caller may leave out and checks the rest: an unspecified
/// channel becomes `API`, an empty id a random one, a missing `received_at` the
/// clock's time. Feedback with no text, subject or attachment is refused.
fn normalize(state: &FeedbackState, fb: &mut Feedback) -> Result<(), FeedbackError> {
    if fb.channel == FeedbackChannel::Unspecified as i32
        || FeedbackChannel::try_from(fb.channel).is_err()
    {
        fb.channel = FeedbackChannel::Api as i32;
    }
    if fb.text.trim().is_empty() && fb.subject.trim().is_empty() && fb.attachments.is_empty() {
        return Err(FeedbackError::Invalid(
            "feedback has no text, subject or attachment".into(),
        ));
    }
    if fb.feedback_id.is_empty() {
        let prefix = match channel_name(fb.channel) {
            "web_form" => "web",
            other => other,
        };
        fb.feedback_id = random_id(prefix);
    }
    check_id(&fb.feedback_id)?;
    caps::apply(fb);
    if fb.received_at.is_none() {
        let now = state.clock().now();
        fb.received_at = Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        });
    }
    Ok(())
}

/// Runs a store call on a blocking thread (sled writes and flushes block).
pub(crate) async fn blocking<T, F>(store: Arc<dyn KvStore>, f: F) -> Result<T, FeedbackError>
where
    T: Send + 'static,
    F: FnOnce(&dyn KvStore) -> Result<T, FeedbackError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| FeedbackError::internal(format!("a store call did not finish: {e}")))?
}

/// Publishes a stored record, bounded by the publish timeout.
pub(crate) async fn publish(state: &FeedbackState, fb: &Feedback) -> Result<PublishAck, String> {
    let subject = subject_for(fb);
    let publish = state
        .bus()
        .publish_durable_proto(&subject, fb, &fb.feedback_id);
    match tokio::time::timeout(state.options().publish_timeout, publish).await {
        Ok(Ok(ack)) => Ok(ack),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no acknowledgement within {:?}",
            state.options().publish_timeout
        )),
    }
}

/// Removes a published id from the outbox.
pub(crate) async fn mark_published(state: &FeedbackState, id: &str) -> Result<(), FeedbackError> {
    let key = id.as_bytes().to_vec();
    blocking(state.store().clone(), move |s| {
        s.apply(OUTBOX_TREE, vec![Op::Delete(key)])?;
        Ok(())
    })
    .await
}

/// Takes one piece of feedback in: stores it and flushes the store (an error
/// here means nothing was accepted), then publishes it on
/// `feedback.in.<channel>` with message id = feedback id. A failed publish
/// leaves it in the outbox, which publishes it later; the feedback is accepted
/// all the same. A feedback id already stored is a duplicate: nothing is written
/// or published again.
///
/// This is the path of every HTTP channel and of the admin API's `SubmitFeedback`.
pub async fn accept(state: &FeedbackState, mut fb: Feedback) -> Result<Accepted, FeedbackError> {
    normalize(state, &mut fb)?;
    state.check_channel(channel_name(fb.channel))?;
    let id = fb.feedback_id.clone();

    let stored = {
        let _guard = state.accept_lock().lock().await;
        let key = id.as_bytes().to_vec();
        let fb = fb.clone();
        blocking(state.store().clone(), move |s| {
            if let Some(_existing) = s.get(FEEDBACK_TREE, &key)? {
                let pending = s.get(OUTBOX_TREE, &key)?.is_some();
                return Ok(Some(pending));
            }
            // Outbox first: a record is never stored without its entry (nor
            // without its time index entry, written next).
            s.apply(OUTBOX_TREE, vec![Op::Put(key, Vec::new())])?;
            index::put_record(s, &fb)?;
            s.flush()?;
            Ok(None)
        })
        .await?
    };
    if let Some(pending) = stored {
        tracing::info!(feedback_id = %id, "duplicate feedback: already stored");
        return Ok(Accepted {
            feedback_id: id,
            duplicate: true,
            published: !pending,
        });
    }

    let channel = channel_name(fb.channel);
    let published = match publish(state, &fb).await {
        Ok(ack) => {
            if let Err(e) = mark_published(state, &id).await {
                // Published but still in the outbox: it is published again
                // later, which the message id deduplicates.
                tracing::warn!(feedback_id = %id, error = %e, "could not clear the outbox entry");
            }
            tracing::info!(feedback_id = %id, channel, stream_seq = ack.sequence, "feedback accepted");
            true
        }
        Err(e) => {
            tracing::warn!(feedback_id = %id, channel, error = %e, "feedback stored; publish failed, the outbox retries it");
            false
        }
    };
    Ok(Accepted {
        feedback_id: id,
        duplicate: false,
        published,
    })
}

pub(crate) fn decode(id: &[u8], value: &[u8]) -> Result<Feedback, FeedbackError> {
    Feedback::decode(value).map_err(|e| FeedbackError::Corrupt {
        id: String::from_utf8_lossy(id).into_owned(),
        detail: e.to_string(),
    })
}

/// One stored piece of feedback. Blocking (a store read).
pub fn get(store: &dyn KvStore, id: &str) -> Result<Option<Feedback>, FeedbackError> {
    match store.get(FEEDBACK_TREE, id.as_bytes())? {
        Some(v) => decode(id.as_bytes(), &v).map(Some),
        None => Ok(None),
    }
}

/// The ids not published yet. Blocking (a store scan).
pub fn pending(store: &dyn KvStore) -> Result<Vec<String>, FeedbackError> {
    Ok(store
        .scan_prefix(OUTBOX_TREE, b"")?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_look_like_uuids() {
        let id = random_id("web");
        assert!(id.starts_with("web-"), "{id}");
        let uuid = &id[4..];
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(random_id("web"), id);
    }

    #[test]
    fn source_ids_are_sanitized() {
        assert_eq!(
            sanitize_id("email", "<CAF=abc.123@mail.example.com>").as_deref(),
            Some("email-CAF=abc.123@mail.example.com")
        );
        assert_eq!(
            sanitize_id("email", "a b/c\r\nd").as_deref(),
            Some("email-a_b_c__d")
        );
        assert_eq!(sanitize_id("email", "<>"), None);
        assert_eq!(sanitize_id("email", " ¿¿ "), None);
        let long = "x".repeat(500);
        assert_eq!(
            sanitize_id("email", &long).map(|s| s.len()),
            Some(MAX_ID_LEN)
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("slack-Ev123").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a b").is_err());
        assert!(check_id("a\nb").is_err());
        assert!(check_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn channels_name_their_subjects() {
        let fb = Feedback {
            channel: FeedbackChannel::WebForm as i32,
            ..Default::default()
        };
        assert_eq!(subject_for(&fb), "feedback.in.web_form");
        assert_eq!(channel_name(0), "api");
        assert_eq!(channel_name(99), "api");
        assert_eq!(channel_name(FeedbackChannel::Slack as i32), "slack");
    }

    #[test]
    fn records_are_read_back_by_id() {
        let store = concierto_core::store::SledStore::temporary().expect("store");
        let fb = Feedback {
            feedback_id: "c".into(),
            text: "t".into(),
            ..Default::default()
        };
        crate::index::put_record(&store, &fb).expect("put");
        store.put(FEEDBACK_TREE, b"zz", b"\xff\xff").expect("put");
        assert!(get(&store, "zz").is_err());
        assert_eq!(get(&store, "c").expect("get"), Some(fb));
        assert_eq!(get(&store, "nope").expect("get"), None);
    }
}
