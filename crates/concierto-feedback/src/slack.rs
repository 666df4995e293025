//! Slack: the Events API (`POST /slack/events`) and slash commands
//! (`POST /slack/commands`), both signed as Slack documents ("Verifying requests
//! from Slack"): `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the
//! app's signing secret, in `X-Slack-Signature`; the timestamp in
//! `X-Slack-Request-Timestamp` must be within the tolerance of our clock, and a
//! signature seen within the window — by this replica or any other on the same
//! bus ([`crate::replay`]) — is refused as a replay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use concierto_proto::v1::{Attachment, Feedback, FeedbackChannel};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::FeedbackState;
use crate::error::FeedbackError;
use crate::intake::{self, sanitize_id};

/// Header carrying the request's signature (`v0=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Header carrying the request's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

type HmacSha256 = Hmac<Sha256>;

/// Why a Slack request was refused (all answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackAuthError {
    /// No `X-Slack-Signature`.
    #[error("missing X-Slack-Signature")]
    MissingSignature,
    /// No `X-Slack-Request-Timestamp`, or not a number.
    #[error("missing or malformed X-Slack-Request-Timestamp")]
    BadTimestamp,
    /// The timestamp is further from our clock than the tolerance.
    #[error("stale timestamp")]
    Stale,
    /// The signature does not match the body.
    #[error("bad signature")]
    BadSignature,
    /// The exact signature was seen already within the tolerance window.
    #[error("replayed request")]
    Replay,
}

fn hmac(secret: &[u8]) -> Result<HmacSha256, SlackAuthError> {
    // HMAC takes keys of any length; the error cannot happen, but is not unwrapped.
    HmacSha256::new_from_slice(secret).map_err(|_| SlackAuthError::BadSignature)
}

/// The signature Slack sends for `body` at `timestamp`: `v0=<hex>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    match hmac(secret) {
        Ok(mut mac) => {
            mac.update(b"v0:");
            mac.update(timestamp.as_bytes());
            mac.update(b":");
            mac.update(body);
            format!("v0={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// Checks a request's signature as Slack documents it: the timestamp within
/// `tolerance` of `now` (either way), then the HMAC compared in constant time.
pub fn verify_signature(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<i64, SlackAuthError> {
    let signature = signature.ok_or(SlackAuthError::MissingSignature)?;
    let ts_text = timestamp.ok_or(SlackAuthError::BadTimestamp)?.trim();
    let ts: i64 = ts_text.parse().map_err(|_| SlackAuthError::BadTimestamp)?;
    let age = now.timestamp().abs_diff(ts);
    if age > tolerance.as_secs() {
        return Err(SlackAuthError::Stale);
    }
    let hex_sig = signature
        .trim()
        .strip_prefix("v0=")
        .ok_or(SlackAuthError::BadSignature)?;
    let expected = hex::decode(hex_sig).map_err(|_| SlackAuthError::BadSignature)?;
    let mut mac = hmac(secret)?;
    mac.update(b"v0:");
    mac.update(ts_text.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SlackAuthError::BadSignature)?;
    Ok(ts)
}

/// Remembers the signatures accepted within the tolerance window, so that an
/// exact replay is refused.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Records `signature` (of a request stamped `ts`); refuses one already seen.
    /// Entries whose timestamp left the window are forgotten.
    pub fn check(
        &self,
        signature: &str,
        ts: i64,
        now: DateTime<Utc>,
        tolerance: Duration,
    ) -> Result<(), SlackAuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let window = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
        let oldest = now.timestamp().saturating_sub(window);
        seen.retain(|_, t| *t >= oldest);
        let key = signature.trim().to_ascii_lowercase();
        if seen.contains_key(&key) {
            return Err(SlackAuthError::Replay);
        }
        seen.insert(key, ts);
        Ok(())
    }
}

/// Verifies a request (signature, age, replay) with the state's secret and clock.
async fn authenticate(
    state: &FeedbackState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), FeedbackError> {
    let Some(secret) = state.options().slack_signing_secret.as_ref() else {
        return Err(FeedbackError::NotConfigured(
            "Slack intake is not configured (no signing secret)".into(),
        ));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = state.clock().now();
    let tolerance = state.options().slack_tolerance;
    let unauthorized = |e: SlackAuthError| {
        tracing::warn!(reason = %e, "refused a Slack request");
        FeedbackError::Unauthorized(e.to_string())
    };
    let ts = verify_signature(
        secret.expose(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        body,
        now,
        tolerance,
    )
    .map_err(unauthorized)?;
    state
        .replay_guard()
        .check(
            state.bus().as_ref(),
            header(SIGNATURE_HEADER).unwrap_or(""),
            ts,
            now,
            tolerance,
            state.options().publish_timeout,
        )
        .await
        .map_err(unauthorized)
}

/// What an Events API callback turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackEvent {
    /// Feedback to accept.
    Feedback(Box<Feedback>),
    /// Nothing to take in, and why.
    Ignored(&'static str),
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Turns an `event_callback` envelope into feedback: `message` and `app_mention`
/// events from people (not bots, not edits or joins) with text or files.
pub fn event_feedback(envelope: &Value) -> Result<SlackEvent, FeedbackError> {
    let Some(event) = envelope.get("event").filter(|e| e.is_object()) else {
        return Err(FeedbackError::Invalid(
            "event_callback without an event".into(),
        ));
    };
    let kind = str_field(event, "type");
    if kind != "message" && kind != "app_mention" {
        return Ok(SlackEvent::Ignored("event type not taken in"));
    }
    if event.get("bot_id").is_some_and(|b| !b.is_null()) {
        return Ok(SlackEvent::Ignored("message from a bot"));
    }
    match str_field(event, "subtype") {
        "" | "file_share" | "thread_broadcast" => {}
        "bot_message" => return Ok(SlackEvent::Ignored("message from a bot")),
        _ => return Ok(SlackEvent::Ignored("message subtype not taken in")),
    }
    let attachments: Vec<Attachment> = event
        .get("files")
        .and_then(Value::as_array)
        .map(|files| {
            files
                .iter()
                .map(|f| Attachment {
                    name: str_field(f, "name").to_string(),
                    content_type: str_field(f, "mimetype").to_string(),
                    size: f.get("size").and_then(Value::as_u64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let text = str_field(event, "text");
    if text.trim().is_empty() && attachments.is_empty() {
        return Ok(SlackEvent::Ignored("empty message"));
    }
    let event_id = str_field(envelope, "event_id");
    let feedback_id = sanitize_id("slack", event_id)
        .ok_or_else(|| FeedbackError::Invalid("event_callback without an event_id".into()))?;
    let mut metadata = HashMap::new();
    let mut meta = |k: &str, v: &str| {
        if !v.is_empty() {
            metadata.insert(k.to_string(), v.to_string());
        }
    };
    meta("slack_channel", str_field(event, "channel"));
    meta("slack_ts", str_field(event, "ts"));
    meta("slack_thread_ts", str_field(event, "thread_ts"));
    meta("slack_event_type", kind);
    meta("team_id", str_field(envelope, "team_id"));
    meta("event_id", event_id);
    Ok(SlackEvent::Feedback(Box::new(Feedback {
        feedback_id,
        channel: FeedbackChannel::Slack as i32,
        author: str_field(event, "user").to_string(),
        text: text.to_string(),
        attachments,
        metadata,
        ..Default::default()
    })))
}

/// `POST /slack/events`.
pub(crate) async fn events(
    State(state): State<FeedbackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FeedbackError> {
    authenticate(&state, &headers, &body).await?;
    let envelope: Value = serde_json::from_slice(&body)
        .map_err(|e| FeedbackError::Invalid(format!("not a Slack event (JSON): {e}")))?;
    match str_field(&envelope, "type") {
        "url_verification" => {
            let challenge = envelope
                .get("challenge")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    FeedbackError::Invalid("url_verification without a challenge".into())
                })?;
            Ok(Json(json!({ "challenge": challenge })).into_response())
        }
        "event_callback" => match event_feedback(&envelope)? {
            SlackEvent::Feedback(fb) => {
                let accepted = intake::accept(&state, *fb).await?;
                Ok(Json(json!({
                    "feedback_id": accepted.feedback_id,
                    "duplicate": accepted.duplicate,
                }))
                .into_response())
            }
            SlackEvent::Ignored(why) => Ok(Json(json!({ "ignored": why })).into_response()),
        },
        _ => Ok(Json(json!({ "ignored": "envelope type not taken in" })).into_response()),
    }
}

/// A slash command's form (the fields we use).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Command {
    command: String,
    text: String,
    user_id: String,
    user_name: String,
    channel_id: String,
    channel_name: String,
    team_id: String,
    trigger_id: String,
}

fn ephemeral(text: String) -> Response {
    (
        StatusCode::OK,
        Json(json!({ "response_type": "ephemeral", "text": text })),
    )
        .into_response()
}

/// `POST /slack/commands`.
pub(crate) async fn commands(
    State(state): State<FeedbackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FeedbackError> {
    authenticate(&state, &headers, &body).await?;
    let cmd: Command = serde_urlencoded::from_bytes(&body)
        .map_err(|e| FeedbackError::Invalid(format!("not a Slack slash command (form): {e}")))?;
    let name = if cmd.command.is_empty() {
        "/feedback"
    } else {
        cmd.command.as_str()
    };
    if cmd.text.trim().is_empty() {
        return Ok(ephemeral(format!(
            "Usage: `{name} <your feedback>` — for example `{name} the new banner's contrast is too low`. \
             Your message goes to the studio's specialists."
        )));
    }
    let feedback_id = sanitize_id("slack-cmd", &cmd.trigger_id).unwrap_or_default();
    let author = match (cmd.user_name.is_empty(), cmd.user_id.is_empty()) {
        (false, false) => format!("{} ({})", cmd.user_name, cmd.user_id),
        (false, true) => cmd.user_name.clone(),
        _ => cmd.user_id.clone(),
    };
    let mut metadata = HashMap::new();
    for (k, v) in [
        ("slack_channel", &cmd.channel_id),
        ("slack_channel_name", &cmd.channel_name),
        ("slack_user", &cmd.user_id),
        ("team_id", &cmd.team_id),
        ("slack_command", &cmd.command),
        ("trigger_id", &cmd.trigger_id),
    ] {
        if !v.is_empty() {
            metadata.insert(k.to_string(), v.clone());
        }
    }
    let fb = Feedback {
        feedback_id,
        channel: FeedbackChannel::Slack as i32,
        author,
        text: cmd.text.trim().to_string(),
        metadata,
        ..Default::default()
    };
    let accepted = intake::accept(&state, fb).await?;
    Ok(ephemeral(format!(
        "Thanks — feedback {} received; the studio's specialists will look at it.",
        accepted.feedback_id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const EXPECTED: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid time")
    }

    #[test]
    fn slack_documented_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET, TS, BODY), EXPECTED);
        let clock = concierto_core::clock::ManualClock::new(at(1_531_420_618));
        let now = concierto_core::clock::Clock::now(&clock);
        assert_eq!(
            verify_signature(SECRET, Some(TS), Some(EXPECTED), BODY, now, FIVE_MIN),
            Ok(1_531_420_618)
        );
    }

    #[test]
    fn wrong_signatures_are_refused() {
        let now = at(1_531_420_618);
        let v = |sig: Option<&str>, ts: Option<&str>, body: &[u8]| {
            verify_signature(SECRET, ts, sig, body, now, FIVE_MIN)
        };
        assert_eq!(
            v(None, Some(TS), BODY),
            Err(SlackAuthError::MissingSignature)
        );
        assert_eq!(
            v(Some(EXPECTED), None, BODY),
            Err(SlackAuthError::BadTimestamp)
        );
        assert_eq!(
            v(Some(EXPECTED), Some("soon"), BODY),
            Err(SlackAuthError::BadTimestamp)
        );
        assert_eq!(
            v(Some("v0=zz"), Some(TS), BODY),
            Err(SlackAuthError::BadSignature)
        );
        assert_eq!(
            v(Some(&EXPECTED[3..]), Some(TS), BODY),
            Err(SlackAuthError::BadSignature)
        );
        assert_eq!(
            v(Some(EXPECTED), Some(TS), b"x"),
            Err(SlackAuthError::BadSignature)
        );
        assert_eq!(
            v(Some(EXPECTED), Some("1531420619"), BODY),
            Err(SlackAuthError::BadSignature)
        );
    }

    #[test]
    fn stale_timestamps_are_refused_both_ways() {
        for now in [at(1_531_420_618 + 301), at(1_531_420_618 - 301)] {
            assert_eq!(
                verify_signature(SECRET, Some(TS), Some(EXPECTED), BODY, now, FIVE_MIN),
                Err(SlackAuthError::Stale)
            );
        }
        let edge = at(1_531_420_618 + 300);
        assert!(verify_signature(SECRET, Some(TS), Some(EXPECTED), BODY, edge, FIVE_MIN).is_ok());
    }

    #[test]
    fn replays_are_refused_within_the_window_and_forgotten_after() {
        let guard = ReplayGuard::default();
        let now = at(1000);
        assert_eq!(guard.check("v0=aa", 1000, now, FIVE_MIN), Ok(()));
        assert_eq!(
            guard.check("v0=AA", 1000, now, FIVE_MIN),
            Err(SlackAuthError::Replay)
        );
        assert_eq!(guard.check("v0=bb", 1000, now, FIVE_MIN), Ok(()));
        // Past the window the entry is forgotten (the timestamp is stale anyway).
        assert_eq!(guard.check("v0=cc", 1400, at(1400), FIVE_MIN), Ok(()));
        assert_eq!(guard.seen.lock().map(|s| s.len()).unwrap_or(0), 1);
    }

    #[test]
    fn events_become_feedback_or_are_ignored() {
        let envelope = json!({
            "type": "event_callback",
            "team_id": "T1",
            "event_id": "Ev123",
            "event": {"type": "app_mention", "user": "U1", "text": "<@B1> logo is off",
                      "channel": "C1", "ts": "1.2",
                      "files": [{"name": "shot.png", "mimetype": "image/png", "size": 42}]}
        });
        let SlackEvent::Feedback(fb) = event_feedback(&envelope).expect("ok") else {
            panic!("not feedback");
        };
        assert_eq!(fb.feedback_id, "slack-Ev123");
        assert_eq!(fb.author, "U1");
        assert_eq!(
            fb.metadata.get("slack_channel").map(String::as_str),
            Some("C1")
        );
        assert_eq!(fb.attachments[0].size, 42);

        let ignored = |event: Value| {
            let env = json!({"type": "event_callback", "event_id": "E", "event": event});
            event_feedback(&env).expect("ok")
        };
        assert!(matches!(
            ignored(json!({"type": "message", "bot_id": "B1", "text": "hi"})),
            SlackEvent::Ignored(_)
        ));
        assert!(matches!(
            ignored(json!({"type": "message", "subtype": "bot_message", "text": "hi"})),
            SlackEvent::Ignored(_)
        ));
        assert!(matches!(
            ignored(json!({"type": "message", "subtype": "message_changed"})),
            SlackEvent::Ignored(_)
        ));
        assert!(matches!(
            ignored(json!({"type": "reaction_added"})),
            SlackEvent::Ignored(_)
        ));
        assert!(matches!(
            ignored(json!({"type": "message", "user": "U1", "text": "  "})),
            SlackEvent::Ignored(_)
        ));
        let no_id = json!({"type": "event_callback", "event": {"type": "message", "text": "x"}});
        assert!(event_feedback(&no_id).is_err());
    }
}
