//! Email: `POST /email/inbound` takes the raw RFC 822 message as the body (what
//! inbound-mail webhooks and `sendmail`-style pipes deliver), authenticated by
//! `Authorization: Bearer <email_token>`; without a configured token the route answers 404.
//!
//! The sender, subject and text are kept (an HTML-only message is converted to
//! text); attachments are listed (name, content type, decoded size), never
//! inlined. The feedback id is `email-<Message-ID>`, so a webhook that retries
//! is stored once.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use concierto_proto::v1::{Attachment, Feedback, FeedbackChannel};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::FeedbackState;
use crate::error::FeedbackError;
use crate::intake::{self, sanitize_id};

/// Content types the route takes (and none at all).
const ACCEPTED_TYPES: &[&str] = &["message/rfc822", "text/plain", "application/octet-stream"];

/// Parses a raw RFC 822 message into feedback (channel `EMAIL`, id from its
/// `Message-ID`, no `received_at`). The error says what is wrong with it.
pub fn parse_email(raw: &[u8]) -> Result<Feedback, String> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err("empty message".into());
    }
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or("not an RFC 822 message: no header found")?;
    let from = msg
        .from()
        .and_then(|a| a.first())
        .ok_or("no From address")?;
    let address = from
        .address()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or("no From address")?;
    let name = from.name().map(str::trim).filter(|n| !n.is_empty());
    let author = match name {
        Some(name) => format!("{name} <{address}>"),
        None => address.to_string(),
    };

    let text = msg
        .body_text(0)
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let attachments: Vec<Attachment> = msg
        .attachments()
        .enumerate()
        .map(|(i, part)| Attachment {
            name: part
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("attachment-{}", i + 1)),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase(),
            size: part.len() as u64,
        })
        .collect();
    if text.is_empty() && attachments.is_empty() {
        return Err("the message has no body (no text, HTML or attachment)".into());
    }

    let mut metadata = HashMap::new();
    metadata.insert("email_from".to_string(), address.to_string());
    if let Some(name) = name {
        metadata.insert("email_name".to_string(), name.to_string());
    }
    if let Some(to) = msg.to().and_then(|a| a.first()).and_then(|a| a.address()) {
        metadata.insert("email_to".to_string(), to.to_string());
    }
    if let Some(date) = msg.date() {
        metadata.insert("email_date".to_string(), date.to_rfc3339());
    }
    let message_id = msg.message_id().map(str::trim).filter(|m| !m.is_empty());
    if let Some(mid) = message_id {
        metadata.insert("message_id".to_string(), mid.to_string());
    }
    Ok(Feedback {
        feedback_id: message_id
            .and_then(|m| sanitize_id("email", m))
            .unwrap_or_default(),
        channel: FeedbackChannel::Email as i32,
        author,
        subject: msg.subject().map(str::trim).unwrap_or_default().to_string(),
        text,
        attachments,
        metadata,
        ..Default::default()
    })
}

fn authenticate(state: &FeedbackState, headers: &HeaderMap) -> Result<(), FeedbackError> {
    let Some(token) = state.options().email_token.as_ref() else {
        return Err(FeedbackError::NotConfigured(
            "inbound email is not configured: set the token (server.feedback.email_token_env, CONCIERTO_EMAIL_TOKEN by default) and send it as Authorization: Bearer".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| FeedbackError::Unauthorized("missing Authorization: Bearer token".into()))?;
    if bool::from(given.as_bytes().ct_eq(token.expose())) {
        Ok(())
    } else {
        tracing::warn!("refused an inbound email with a wrong token");
        Err(FeedbackError::Unauthorized("bad bearer token".into()))
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), FeedbackError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ACCEPTED_TYPES.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(FeedbackError::UnsupportedMediaType(format!(
            "send the raw message as Content-Type: message/rfc822 (got {ct:?})"
        )))
    }
}

/// `POST /email/inbound`.
pub(crate) async fn inbound(
    State(state): State<FeedbackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, FeedbackError> {
    authenticate(&state, &headers)?;
    check_content_type(&headers)?;
    let fb = parse_email(&body)
        .map_err(|why| FeedbackError::Invalid(format!("malformed email: {why}")))?;
    let accepted = intake::accept(&state, fb).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "feedback_id": accepted.feedback_id,
            "duplicate": accepted.duplicate,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_parses() {
        let raw = b"From: Ana Diaz <ana@example.com>\r\nTo: studio@example.com\r\n\
Subject: Logo\r\nMessage-ID: <m1@example.com>\r\n\r\nThe logo is blurry.\r\n";
        let fb = parse_email(raw).expect("parses");
        assert_eq!(fb.author, "Ana Diaz <ana@example.com>");
        assert_eq!(fb.subject, "Logo");
        assert_eq!(fb.text, "The logo is blurry.");
        assert_eq!(fb.feedback_id, "email-m1@example.com");
        assert_eq!(
            fb.metadata.get("email_to").map(String::as_str),
            Some("studio@example.com")
        );
    }

    #[test]
    fn malformed_messages_say_why() {
        assert_eq!(parse_email(b"").unwrap_err(), "empty message");
        assert_eq!(
            parse_email(b"Subject: hi\r\n\r\nbody\r\n").unwrap_err(),
            "no From address"
        );
        assert!(
            parse_email(b"From: a@example.com\r\nSubject: x\r\n\r\n")
                .unwrap_err()
                .contains("no body")
        );
    }

    #[test]
    fn a_message_without_message_id_gets_no_id_here() {
        let fb = parse_email(b"From: a@example.com\r\n\r\nhello\r\n").expect("parses");
        assert_eq!(fb.feedback_id, "");
        assert_eq!(fb.author, "a@example.com");
    }
}
