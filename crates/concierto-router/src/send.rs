//! Sending a reply back on the channel the feedback came from:
//!
//! | channel | how |
//! |---|---|
//! | Slack | `POST {api_base}/chat.postMessage` (bearer bot token) in the original message's thread (`thread_ts` = its `thread_ts`, else its `ts`; a slash command has none: a plain message in its channel) |
//! | email | an SMTP reply (lettre, tokio, rustls): `Re: <subject>`, `In-Reply-To` and `References` = the original `Message-ID`, STARTTLS when the server offers it (or required, or off: `server.feedback.smtp.tls`) |
//! | web form | nothing to send: the status page shows the reply |
//! | API | nothing to send: `concierto feedback show` / `GetFeedback` show it |
//!
//! One call is one attempt, bounded by a timeout; the engine retries. A failure
//! that no retry can fix (no bot token, no address) is permanent.

use std::fmt;
use std::time::Duration;

use concierto_proto::v1;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use crate::engine::{Send, SendError, SendResult};

/// How STARTTLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS when the server offers it, plain otherwise.
    Opportunistic,
    /// STARTTLS or no mail.
    Required,
    /// Never (a local relay).
    Off,
}

/// Where email replies go out.
#[derive(Clone)]
pub struct SmtpSettings {
    /// The server's host name.
    pub host: String,
    /// Its port (587 for submission).
    pub port: u16,
    /// The `From` address of replies.
    pub from: String,
    /// Login, when the server wants one.
    pub username: Option<String>,
    /// Password (never printed).
    pub password: Option<String>,
    /// STARTTLS use.
    pub tls: SmtpTls,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username.as_ref().map(|_| "***"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// Slack's Web API for thread replies.
#[derive(Clone)]
pub struct SlackSettings {
    /// `https://slack.com/api` or a local server.
    pub api_base: String,
    /// The bot token (never printed).
    pub token: String,
}

impl fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSettings")
            .field("api_base", &self.api_base)
            .field("token", &"***")
            .finish()
    }
}

/// Every channel's sender.
#[derive(Debug, Clone)]
pub struct Senders {
    /// Slack, when a bot token is set.
    pub slack: Option<SlackSettings>,
    /// SMTP, when `server.feedback.smtp` is set.
    pub smtp: Option<SmtpSettings>,
    /// How long one attempt may take.
    pub timeout: Duration,
    client: reqwest::Client,
}

impl Senders {
    /// Senders with these settings.
    pub fn new(
        slack: Option<SlackSettings>,
        smtp: Option<SmtpSettings>,
        timeout: Duration,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Senders {
            slack,
            smtp,
            timeout,
            client,
        }
    }

    /// One attempt to send `s`.
    pub async fn send(&self, s: &Send) -> SendResult {
        let fb = &s.feedback;
        match v1::FeedbackChannel::try_from(fb.channel) {
            Ok(v1::FeedbackChannel::Slack) => self.slack(fb, &s.text).await,
            Ok(v1::FeedbackChannel::Email) => self.email(fb, &s.text).await,
            // Shown where the person looks: the status page, `feedback show`.
            _ => Ok(()),
        }
    }

    async fn slack(&self, fb: &v1::Feedback, text: &str) -> SendResult {
        let Some(slack) = &self.slack else {
            return Err(SendError::permanent(
                "no Slack bot token (server.feedback.slack_bot_token_env names its variable)",
            ));
        };
        let Some(channel) = fb.metadata.get("slack_channel").filter(|c| !c.is_empty()) else {
            return Err(SendError::permanent("the Slack message named no channel"));
        };
        let mut body =
            json!({"channel": channel, "text": text, "unfurl_links": false, "unfurl_media": false});
        if let Some(ts) = fb
            .metadata
            .get("slack_thread_ts")
            .or_else(|| fb.metadata.get("slack_ts"))
            .filter(|t| !t.is_empty())
        {
            body["thread_ts"] = Value::String(ts.clone());
        }
        let url = format!("{}/chat.postMessage", slack.api_base.trim_end_matches('/'));
        let resp = self
            .client
            .post(&url)
            .bearer_auth(&slack.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                SendError::transient(format!("Slack could not be reached: {}", without_url(&e)))
            })?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        if resp.content_length().is_some_and(|n| n > MAX_SLACK_ANSWER) {
            return Err(SendError::transient(format!(
                "Slack's answer is over {MAX_SLACK_ANSWER} bytes"
            )));
        }
        let bytes = read_capped(resp).await?;
        if !status.is_success() {
            // 429 and 5xx are worth another try; other statuses are not.
            let transient = status.as_u16() == 429 || status.is_server_error();
            return Err(SendError {
                retry_after,
                ..SendError::new(format!("Slack answered {status}"), !transient)
            });
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("ok") == Some(&Value::Bool(true)) => Ok(()),
            Ok(v) => {
                let error = v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no error given")
                    .to_string();
                let transient = matches!(
                    error.as_str(),
                    "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable"
                );
                Err(SendError {
                    retry_after,
                    ..SendError::new(format!("Slack refused the reply: {error}"), !transient)
                })
            }
            Err(_) => Err(SendError::transient("Slack's answer is not JSON")),
        }
    }

    async fn email(&self, fb: &v1::Feedback, text: &str) -> SendResult {
        let Some(smtp) = &self.smtp else {
            return Err(SendError::permanent(
                "no SMTP server (server.feedback.smtp) to reply with",
            ));
        };
        let to = fb
            .metadata
            .get("email_from")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| SendError::permanent("the email had no sender address"))?;
        let message = reply_message(smtp, fb, to, text).map_err(SendError::permanent)?;
        let transport = transport(smtp, self.timeout).map_err(SendError::permanent)?;
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SendError::new(format!("SMTP: {e}"), e.is_permanent())),
            Err(_) => Err(SendError::transient(format!(
                "SMTP: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// The reply to an emailed piece of feedback.
pub fn reply_message(
    smtp: &SmtpSettings,
    fb: &v1::Feedback,
    to: &str,
    text: &str,
) -> Result<Message, String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("server.feedback.smtp.from {:?}: {e}", smtp.from))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("the sender address {to:?}: {e}"))?;
    let subject = fb.subject.trim();
    let subject = if subject.is_empty() {
        "Re: your feedback".to_string()
    } else if subject.len() >= 3 && subject[..3].eq_ignore_ascii_case("re:") {
        subject.to_string()
    } else {
        format!("Re: {subject}")
    };
    let mut b = Message::builder().from(from).to(to).subject(subject);
    if let Some(mid) = fb.metadata.get("message_id").filter(|m| !m.is_empty()) {
        let mid = format!(
            "<{}>",
            mid.trim().trim_start_matches('<').trim_end_matches('>')
        );
        b = b.in_reply_to(mid.clone()).references(mid);
    }
    b.header(ContentType::TEXT_PLAIN)
        .body(text.to_string())
        .map_err(|e| format!("building the reply: {e}"))
}

fn transport(
    smtp: &SmtpSettings,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let params =
        || TlsParameters::new(smtp.host.clone()).map_err(|e| format!("TLS for {}: {e}", smtp.host));
    let tls = match smtp.tls {
        SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
        SmtpTls::Required => Tls::Required(params()?),
        SmtpTls::Off => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}

/// Largest answer read from Slack (its answers to `chat.postMessage` are small).
pub const MAX_SLACK_ANSWER: u64 = 64 * 1024;
/// Longest `Retry-After` taken from Slack's answer (the engine also caps it).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The `Retry-After` of an answer, in seconds (Slack sends seconds), at most
/// [`MAX_RETRY_AFTER`]; none when absent or not a number.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, SendError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() as u64 + chunk.len() as u64 > MAX_SLACK_ANSWER {
                    return Err(SendError::transient(format!(
                        "Slack's answer is over {MAX_SLACK_ANSWER} bytes"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(SendError::transient(format!(
                    "reading Slack's answer: {}",
                    without_url(&e)
                )));
            }
        }
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<slack>");
    }
    s
}
