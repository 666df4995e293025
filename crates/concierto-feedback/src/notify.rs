//! Gate notifications on Slack: every gate change the orchestrator publishes
//! (`event.gate.<kind>`, a `concierto.v1.Gate`) becomes a direct message to the
//! people it concerns, sent with Slack's `chat.postMessage`.
//!
//! ```text
//!  event.gate.opened    ─▶ each reviewer: "… is waiting for you … Decide before <due>"
//!  event.gate.reminder  ─▶ each reviewer: "Reminder (<n>): … is due at <due>"
//!  event.gate.escalated ─▶ each escalation contact: "… you may decide it"
//!                          the other reviewers: "… was escalated to <contacts>"
//!  event.gate.decided   ─▶ the reviewers (and the contacts once escalated), not
//!                          whoever decided: "… was approved by <who>: <notes>"
//!        │ queue group `notifier`: one feedback replica sends each event
//!        ▼
//!  POST {api_base}/chat.postMessage   Authorization: Bearer <bot token>
//!     200 {"ok":true}             ─▶ sent
//!     200 {"ok":false,"error"}    ─▶ failed, not retried (`channel_not_found`, …)
//!     429 Retry-After: n          ─▶ wait n s (at most `max_retry_after`), again
//!     5xx, timeout, no connection ─▶ wait backoff · 2ⁿ (at most `max_backoff`), again
//!     other 4xx, or `attempts` used ─▶ failed
//! ```
//!
//! A failure is logged and the next message goes out: a notification never
//! stops the service. People without a Slack id are skipped (debug log).
//! Messages carry the gate's summary and id, never its content (the draft);
//! the bot token travels in a sensitive header and is never logged.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use concierto_bus::{Bus, BusExt};
use concierto_core::config::Studio;
use concierto_core::service::ServiceHandle;
use concierto_core::subjects;
use concierto_proto::v1;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};

use crate::recipients::{Recipients, SharedRecipients};
use crate::{FeedbackError, Secret};

/// The queue group of the notifiers: each gate event goes to one of them.
pub const NOTIFIER_GROUP: &str = "notifier";
/// Slack's Web API.
pub const DEFAULT_SLACK_API_BASE: &str = "https://slack.com/api";
/// Longest summary or notes quoted in a message, in characters.
const MAX_QUOTE_CHARS: usize = 300;

/// Someone who may be told about a gate: a reviewer of the studio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their id (the key in `reviewers`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Slack user id (`U…`); without one they get no message.
    pub slack: Option<String>,
}

/// The studio's reviewers as [`Person`]s.
pub fn people_of(studio: &Studio) -> Vec<Person> {
    studio
        .reviewers
        .values()
        .map(|r| Person {
            id: r.id.clone(),
            name: r.name.clone(),
            slack: r.slack.clone().filter(|s| !s.trim().is_empty()),
        })
        .collect()
}

/// Who each quality gate escalates to, by gate name: its `escalate_to`, else
/// its reviewers' `escalation` contacts that are not reviewers of the gate
/// themselves (what the orchestrator lets decide after the SLA).
pub fn escalations_of(studio: &Studio) -> HashMap<String, Vec<String>> {
    studio
        .feedback_loops
        .quality_gates
        .iter()
        .map(|g| {
            let contacts = if g.escalate_to.is_empty() {
                let mut v: Vec<String> = Vec::new();
                for e in g
                    .reviewers
                    .iter()
                    .filter_map(|r| studio.reviewers.get(r))
                    .flat_map(|r| r.escalation.iter())
                {
                    if !v.contains(e) && !g.reviewers.contains(e) {
                        v.push(e.clone());
                    }
                }
                v
            } else {
                g.escalate_to.clone()
            };
            (g.name.clone(), contacts)
        })
        .collect()
}

/// The studio's escalation contacts, told when a run fails with no
/// `on_failure` path ([`crate::failure_notify`]): every reviewer named in any
/// reviewer's `escalation` list, each once, sorted by id.
pub fn failure_contacts_of(studio: &Studio) -> Vec<String> {
    let mut v: Vec<String> = studio
        .reviewers
        .values()
        .flat_map(|r| r.escalation.iter())
        .filter(|e| !e.trim().is_empty())
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v
}

/// How a message is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotifyRetry {
    /// Tries per message, the first included.
    pub attempts: u32,
    /// Wait before the second try after a 5xx or a network error; doubled
    /// after each further one.
    pub backoff: Duration,
    /// Longest such wait.
    pub max_backoff: Duration,
    /// Longest `Retry-After` waited for; a longer one fails the message.
    pub max_retry_after: Duration,
    /// How long one try may take.
    pub timeout: Duration,
    /// How long a durable notice (a failed run) that Slack did not take waits
    /// before it is tried again (redelivered from the stream).
    pub redeliver_after: Duration,
}

impl Default for NotifyRetry {
    /// 4 tries, 500 ms doubling up to 8 s, `Retry-After` up to 30 s, 10 s a
    /// try; a durable notice again after 60 s.
    fn default() -> Self {
        NotifyRetry {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            redeliver_after: Duration::from_secs(60),
        }
    }
}

impl NotifyRetry {
    /// The wait after failed try number `attempt` (1 for the first).
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// The feedback service's gate notifications ([`crate::FeedbackOptions`]):
/// [`crate::start`] runs a [`Notifier`] when there is a bot token.
#[derive(Debug, Clone)]
pub struct GateNotifications {
    /// The Slack bot token (`xoxb-…`); without it gate events go only to the bus.
    pub slack_bot_token: Option<Secret>,
    /// Slack's Web API base URL ([`DEFAULT_SLACK_API_BASE`]).
    pub slack_api_base: String,
    /// Who may be told.
    pub people: Vec<Person>,
    /// Escalation contacts by gate name ([`escalations_of`]).
    pub escalations: HashMap<String, Vec<String>>,
    /// Who is told of a run that failed with no `on_failure` path
    /// ([`failure_contacts_of`]).
    pub failure_contacts: Vec<String>,
    /// How messages are retried.
    pub retry: NotifyRetry,
}

impl Default for GateNotifications {
    fn default() -> Self {
        GateNotifications {
            slack_bot_token: None,
            slack_api_base: DEFAULT_SLACK_API_BASE.to_string(),
            people: Vec::new(),
            escalations: HashMap::new(),
            failure_contacts: Vec::new(),
            retry: NotifyRetry::default(),
        }
    }
}

impl GateNotifications {
    /// The studio's people and escalation contacts, posting with `bot_token`
    /// to `api_base`.
    pub fn from_studio(studio: &Studio, bot_token: Option<Secret>, api_base: &str) -> Self {
        GateNotifications {
            slack_bot_token: bot_token,
            slack_api_base: api_base.to_string(),
            people: people_of(studio),
            escalations: escalations_of(studio),
            failure_contacts: failure_contacts_of(studio),
            retry: NotifyRetry::default(),
        }
    }

    /// Checks the settings; the error says which one to fix.
    pub fn validate(&self) -> Result<(), FeedbackError> {
        let bad = |m: String| Err(FeedbackError::Config(m));
        if let Some(token) = &self.slack_bot_token {
            if token.is_empty() {
                return bad(
                    "slack_bot_token is empty; leave it unset to send gate events only to the bus"
                        .into(),
                );
            }
            if bearer(token).is_none() {
                return bad("slack_bot_token holds characters an HTTP header cannot carry".into());
            }
        }
        let base = self.slack_api_base.trim_end_matches('/');
        let host = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"));
        if host.is_none_or(str::is_empty) {
            return bad(format!(
                "slack_api_base {:?} is not an http:// or https:// URL",
                self.slack_api_base
            ));
        }
        if self.retry.attempts == 0 || self.retry.timeout.is_zero() {
            return bad("the notifier's attempts and timeout must be more than 0".into());
        }
        Ok(())
    }
}

fn bearer(token: &Secret) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_bytes(&[b"Bearer ", token.expose()].concat()).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The kinds of gate event (the last token of `event.gate.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateEventKind {
    /// A gate opened: its reviewers should decide.
    Opened,
    /// A reminder came due.
    Reminder,
    /// The SLA passed without a decision.
    Escalated,
    /// Decided (by a person, the breach policy, or with a sibling gate).
    Decided,
}

impl GateEventKind {
    /// The kind of `subject` (`event.gate.opened`, …), if it is one.
    pub fn from_subject(subject: &str) -> Option<Self> {
        match subject.strip_prefix("event.gate.")? {
            "opened" => Some(GateEventKind::Opened),
            "reminder" => Some(GateEventKind::Reminder),
            "escalated" => Some(GateEventKind::Escalated),
            "decided" => Some(GateEventKind::Decided),
            _ => None,
        }
    }

    /// `opened`, `reminder`, `escalated` or `decided`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateEventKind::Opened => "opened",
            GateEventKind::Reminder => "reminder",
            GateEventKind::Escalated => "escalated",
            GateEventKind::Decided => "decided",
        }
    }
}

/// One message to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The person's id.
    pub person: String,
    /// Their Slack user id, the message's channel; `None`: skipped.
    pub channel: Option<String>,
    /// The message (Slack mrkdwn).
    pub text: String,
}

/// What one gate event's notifications came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyReport {
    /// Messages Slack accepted.
    pub sent: usize,
    /// People without a Slack id.
    pub skipped: usize,
    /// Messages that failed (logged).
    pub failed: usize,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Slack answered `{"ok": false, "error": …}`.
    #[error("Slack refused the message: {0}")]
    Refused(String),
    /// An HTTP status other than 200 (after the retries, for 429 and 5xx).
    #[error("Slack answered {status}: {detail}")]
    Status {
        /// The status.
        status: u16,
        /// Slack's `error`, or the start of the body.
        detail: String,
    },
    /// Slack asked to wait longer than the notifier waits.
    #[error("Slack asked to retry after {0:?}, longer than the notifier waits")]
    RetryAfterTooLong(Duration),
    /// No answer: connection refused, timeout, … (after the retries).
    #[error("Slack could not be reached: {0}")]
    Unreachable(String),
    /// A 200 whose body is not `chat.postMessage`'s JSON.
    #[error("Slack's answer is not JSON: {0}")]
    BadAnswer(String),
}

/// Sends gate notifications; [`Notifier::start`] runs it on the bus.
pub struct Notifier {
    bus: Arc<dyn Bus>,
    recipients: SharedRecipients,
    endpoint: String,
    auth: HeaderValue,
    token: Secret,
    client: reqwest::Client,
    retry: NotifyRetry,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("endpoint", &self.endpoint)
            .field("people", &self.recipients.get().people.len())
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier telling `people` about gates (escalation contacts by gate
    /// name in `escalations`), posting to `{base_url}/chat.postMessage` with
    /// `bot_token`.
    pub fn new(
        bus: Arc<dyn Bus>,
        people: Vec<Person>,
        escalations: HashMap<String, Vec<String>>,
        base_url: &str,
        bot_token: Secret,
    ) -> Result<Self, FeedbackError> {
        let settings = GateNotifications {
            slack_bot_token: Some(bot_token.clone()),
            slack_api_base: base_url.to_string(),
            ..GateNotifications::default()
        };
        settings.validate()?;
        let auth = bearer(&bot_token).ok_or_else(|| FeedbackError::internal("bot token"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("concierto/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FeedbackError::Config(format!("cannot build the Slack client: {e}")))?;
        Ok(Notifier {
            bus,
            recipients: SharedRecipients::new(Recipients::new(people, escalations)),
            endpoint: format!("{}/chat.postMessage", base_url.trim_end_matches('/')),
            auth,
            token: bot_token,
            client,
            retry: NotifyRetry::default(),
        })
    }

    /// From the feedback service's settings; `None` without a bot token.
    pub fn from_settings(
        bus: Arc<dyn Bus>,
        settings: &GateNotifications,
    ) -> Result<Option<Self>, FeedbackError> {
        let Some(token) = settings.slack_bot_token.clone() else {
            return Ok(None);
        };
        settings.validate()?;
        let n = Notifier::new(
            bus,
            settings.people.clone(),
            settings.escalations.clone(),
            &settings.slack_api_base,
            token,
        )?;
        let mut recipients = (*n.recipients.get()).clone();
        recipients.failure_contacts = settings.failure_contacts.clone();
        n.recipients.set(recipients);
        Ok(Some(n.with_retry(settings.retry)))
    }

    /// With another retry policy (tests use milliseconds).
    pub fn with_retry(mut self, retry: NotifyRetry) -> Self {
        self.retry = retry;
        self
    }

    /// Reads its people and escalation contacts from `shared` (set to what
    /// it has now), so whoever holds `shared` can change them while it runs.
    pub fn with_shared_recipients(mut self, shared: SharedRecipients) -> Self {
        shared.set((*self.recipients.get()).clone());
        self.recipients = shared;
        self
    }

    /// Its people and escalation contacts, shared (see
    /// [`Self::with_shared_recipients`]).
    pub fn recipients(&self) -> &SharedRecipients {
        &self.recipients
    }

    /// The bus it listens on.
    pub(crate) fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Its retry policy.
    pub(crate) fn retry(&self) -> NotifyRetry {
        self.retry
    }

    /// A message for reviewer `person` (by id), to their Slack id if they
    /// have one.
    pub(crate) fn to(&self, person: &str, text: String) -> Notification {
        to(&self.recipients.get(), person, text)
    }

    /// Who is told what about `gate`'s `kind` event, one message per person.
    pub fn messages(&self, kind: GateEventKind, gate: &v1::Gate) -> Vec<Notification> {
        let who = self.recipients.get();
        let who = who.as_ref();
        let empty = v1::GateRequest::default();
        let req = gate.request.as_ref().unwrap_or(&empty);
        let name = escape(&req.gate);
        let id = code(&req.gate_id);
        let summary = quote(&req.summary);
        let due = req.due_at.as_ref().map_or_else(
            || "(no deadline)".to_string(),
            |t| {
                DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                    .map_or_else(
                        || "(no deadline)".to_string(),
                        |d| d.to_rfc3339_opts(SecondsFormat::Secs, true),
                    )
            },
        );
        let reviewers = unique(req.reviewers.iter());
        let contacts = unique(who.escalations.get(&req.gate).into_iter().flatten());
        match kind {
            GateEventKind::Opened => reviewers
                .iter()
                .map(|r| {
                    to(
                        who,
                        r,
                        format!(
                            "Quality gate {name} is waiting for you: {summary}. \
                             Decide before {due}: `concierto gate show {id}`"
                        ),
                    )
                })
                .collect(),
            GateEventKind::Reminder => reviewers
                .iter()
                .map(|r| {
                    to(
                        who,
                        r,
                        format!(
                            "Reminder ({}): gate {name} is due at {due}: {summary}. \
                             `concierto gate show {id}`",
                            gate.reminders
                        ),
                    )
                })
                .collect(),
            GateEventKind::Escalated => {
                let mut out: Vec<Notification> = contacts
                    .iter()
                    .map(|c| {
                        to(
                            who,
                            c,
                            format!(
                                "Gate {name} passed its SLA without a decision; you may decide it: \
                                 `concierto gate approve|reject|request-changes {id}` ({summary})"
                            ),
                        )
                    })
                    .collect();
                let to_whom = if contacts.is_empty() {
                    "nobody (no escalation contact)".to_string()
                } else {
                    contacts
                        .iter()
                        .map(|c| escape(who.name_of(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                out.extend(reviewers.iter().filter(|r| !contacts.contains(r)).map(|r| {
                    to(
                        who,
                        r,
                        format!(
                            "Gate {name} passed its SLA without a decision and was escalated \
                             to {to_whom}; you may still decide it: `concierto gate show {id}`"
                        ),
                    )
                }));
                out
            }
            // A gate decided with its batch: the leader's message says it for all.
            GateEventKind::Decided if !gate.batch_of.is_empty() => Vec::new(),
            GateEventKind::Decided => {
                let last = gate.decisions.last();
                let verb = match last.map(|d| d.decision()) {
                    Some(v1::GateDecisionKind::Approve) => "approved",
                    Some(v1::GateDecisionKind::Reject) => "rejected",
                    Some(v1::GateDecisionKind::RequestChanges) => "sent back for changes",
                    Some(v1::GateDecisionKind::Unspecified) | None => match gate.state() {
                        v1::GateState::Approved => "approved",
                        v1::GateState::Rejected => "rejected",
                        v1::GateState::ChangesRequested => "sent back for changes",
                        v1::GateState::Open | v1::GateState::Unspecified => "decided",
                    },
                };
                let decider = last.map_or("", |d| d.reviewer.as_str());
                let automatic = last.is_some_and(|d| d.automatic);
                let by = match (automatic, decider.is_empty()) {
                    (true, true) => format!("automatically {verb}"),
                    (true, false) => format!("automatically {verb} ({})", escape(decider)),
                    (false, true) => verb.to_string(),
                    (false, false) => format!("{verb} by {}", escape(who.name_of(decider))),
                };
                let notes = last
                    .map(|d| d.notes.trim())
                    .filter(|n| !n.is_empty())
                    .map_or(String::new(), |n| format!(": {}", quote(n)));
                let mut told = reviewers.clone();
                if gate.escalated {
                    told.extend(contacts.iter().filter(|c| !reviewers.contains(c)).cloned());
                }
                told.iter()
                    .filter(|p| automatic || p.as_str() != decider)
                    .map(|p| {
                        to(
                            who,
                            p,
                            format!("Gate {name} was {by}{notes}\n`concierto gate show {id}`"),
                        )
                    })
                    .collect()
            }
        }
    }

    /// Sends `gate`'s `kind` notifications one after the other; failures are
    /// logged and counted, never returned.
    pub async fn notify(&self, kind: GateEventKind, gate: &v1::Gate) -> NotifyReport {
        let gate_id = gate
            .request
            .as_ref()
            .map_or("", |r| r.gate_id.as_str())
            .to_string();
        let mut report = NotifyReport::default();
        for n in self.messages(kind, gate) {
            let Some(channel) = &n.channel else {
                tracing::debug!(gate = %gate_id, kind = kind.as_str(), person = %n.person, "no Slack id: not notified on Slack");
                report.skipped += 1;
                continue;
            };
            match self.post(channel, &n.text).await {
                Ok(()) => {
                    tracing::debug!(gate = %gate_id, kind = kind.as_str(), person = %n.person, "gate notification sent on Slack");
                    report.sent += 1;
                }
                Err(e) => {
                    tracing::warn!(gate = %gate_id, kind = kind.as_str(), person = %n.person, error = %e, "gate notification not sent on Slack");
                    report.failed += 1;
                }
            }
        }
        report
    }

    /// Posts `text` to `channel` (a Slack user id: a direct message from the
    /// bot), retrying 429s, 5xx and network failures per the policy.
    pub async fn post(&self, channel: &str, text: &str) -> Result<(), NotifyError> {
        let body = json!({
            "channel": channel,
            "text": text,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (error, retry_after) =
                match tokio::time::timeout(self.retry.timeout, self.attempt(&body)).await {
                    Err(_) => (
                        NotifyError::Unreachable(format!(
                            "no answer within {:?}",
                            self.retry.timeout
                        )),
                        None,
                    ),
                    Ok(Err(e)) => (NotifyError::Unreachable(self.scrub(&error_chain(&e))), None),
                    Ok(Ok((status, headers, bytes))) => {
                        let answer = serde_json::from_slice::<Value>(&bytes).ok();
                        if status.is_success() {
                            return match answer {
                                Some(v) if v.get("ok") == Some(&Value::Bool(true)) => Ok(()),
                                Some(v) => Err(NotifyError::Refused(
                                    v.get("error")
                                        .and_then(Value::as_str)
                                        .unwrap_or("no error given")
                                        .to_string(),
                                )),
                                None => Err(NotifyError::BadAnswer(self.snippet(&bytes))),
                            };
                        }
                        let detail = answer
                            .as_ref()
                            .and_then(|v| v.get("error"))
                            .and_then(Value::as_str)
                            .map_or_else(|| self.snippet(&bytes), str::to_string);
                        let error = NotifyError::Status {
                            status: status.as_u16(),
                            detail,
                        };
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            let wait = headers
                                .get(RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map_or(Duration::from_secs(1), Duration::from_secs);
                            (error, Some(wait))
                        } else if status.is_server_error() {
                            (error, None)
                        } else {
                            return Err(error);
                        }
                    }
                };
            if attempt >= self.retry.attempts {
                return Err(error);
            }
            let wait = match retry_after {
                Some(w) if w > self.retry.max_retry_after => {
                    return Err(NotifyError::RetryAfterTooLong(w));
                }
                Some(w) => w,
                None => self.retry.backoff_after(attempt),
            };
            tracing::debug!(attempt, error = %error, wait_ms = wait.as_millis() as u64, "Slack did not take the message; trying again");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        body: &Value,
    ) -> Result<(StatusCode, HeaderMap, Bytes), reqwest::Error> {
        let resp = self
            .client
            .post(&self.endpoint)
            .header(AUTHORIZATION, self.auth.clone())
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        Ok((status, headers, bytes))
    }

    fn scrub(&self, text: &str) -> String {
        match std::str::from_utf8(self.token.expose()) {
            Ok(t) if !t.is_empty() => text.replace(t, "***"),
            _ => text.to_string(),
        }
    }

    fn snippet(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        self.scrub(&text.chars().take(200).collect::<String>())
    }

    /// Subscribes to `event.gate.>` in queue group [`NOTIFIER_GROUP`] (before
    /// returning: no event published afterwards is missed), then sends each
    /// event's notifications until stopped. A stop abandons the event in hand.
    pub async fn start(self) -> Result<ServiceHandle, FeedbackError> {
        let mut sub = self
            .bus
            .queue_subscribe_proto::<v1::Gate>(subjects::GATE_EVENTS, NOTIFIER_GROUP)
            .await?;
        let (handle, control) = ServiceHandle::new("gate-notifier");
        let mut signal = control.signal.clone();
        tracing::info!(endpoint = %self.endpoint, people = self.recipients.get().people.len(), "gate notifications go to Slack");
        tokio::spawn(async move {
            let result = loop {
                let (gate, msg) = tokio::select! {
                    _ = signal.stopped() => break Ok(()),
                    next = sub.next() => match next {
                        Some(m) => m,
                        None => {
                            tracing::error!("the gate event subscription ended: no more Slack notifications");
                            break Err("the gate event subscription ended".to_string());
                        }
                    },
                };
                let Some(kind) = GateEventKind::from_subject(&msg.subject) else {
                    tracing::debug!(subject = %msg.subject, "not a gate event kind the notifier knows");
                    continue;
                };
                tokio::select! {
                    _ = signal.stopped() => {
                        tracing::info!(subject = %msg.subject, "stopping: this gate event's notifications may not all be sent");
                        break Ok(());
                    }
                    report = self.notify(kind, &gate) => {
                        if report != NotifyReport::default() {
                            tracing::debug!(subject = %msg.subject, ?report, "gate event notified");
                        }
                    }
                }
            };
            control.finished(result);
        });
        Ok(handle)
    }
}

/// A message for reviewer `person` (by id), to their Slack id if they have one.
fn to(who: &Recipients, person: &str, text: String) -> Notification {
    Notification {
        person: person.to_string(),
        channel: who.slack_of(person),
        text,
    }
}

/// The ids in order, each once.
fn unique<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for id in ids {
        if !id.is_empty() && !v.contains(id) {
            v.push(id.clone());
        }
    }
    v
}

/// Text made safe for Slack mrkdwn (`&`, `<`, `>` escaped).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A person's text, on one line, at most [`MAX_QUOTE_CHARS`], escaped.
fn quote(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = line.chars().take(MAX_QUOTE_CHARS).collect();
    let cut = if cut.len() < line.len() {
        format!("{cut}…")
    } else {
        cut
    };
    escape(&cut)
}

/// An id inside backticks: no backtick or newline may close the code span.
fn code(text: &str) -> String {
    escape(&text.replace(['`', '\n', '\r'], ""))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(people: Vec<Person>, escalations: &[(&str, &[&str])]) -> Notifier {
        Notifier::new(
            Arc::new(concierto_bus::EmbeddedBus::default()),
            people,
            escalations
                .iter()
                .map(|(g, c)| (g.to_string(), c.iter().map(|s| s.to_string()).collect()))
                .collect(),
            "http://127.0.0.1:9/api/",
            Secret::from("xoxb-unit"),
        )
        .expect("notifier")
    }

    fn person(id: &str, slack: Option<&str>) -> Person {
        Person {
            id: id.into(),
            name: format!("{id} name"),
            slack: slack.map(str::to_string),
        }
    }

    fn gate(reviewers: &[&str]) -> v1::Gate {
        v1::Gate {
            request: Some(v1::GateRequest {
                gate_id: "run-1/draft/brand/1".into(),
                gate: "brand".into(),
                reviewers: reviewers.iter().map(|s| s.to_string()).collect(),
                summary: "launch <post> & more".into(),
                content: "THE DRAFT".into(),
                due_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            state: v1::GateState::Open as i32,
            ..Default::default()
        }
    }

    #[test]
    fn the_example_studio_gives_people_and_escalation_contacts() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/studio/concierto.yaml"
        );
        let studio = concierto_core::config::load_with_env(std::path::Path::new(file), Vec::new())
            .expect("the example studio loads");
        let people = people_of(&studio);
        assert!(people.contains(&Person {
            id: "brand_manager".into(),
            name: "Brand Manager".into(),
            slack: Some("U0BRANDMGR".into()),
        }));
        // No `escalate_to`: the reviewers' escalation contacts.
        let e = escalations_of(&studio);
        assert_eq!(e["brand_approval"], ["creative_director"]);
        assert_eq!(e["creative_review"], ["brand_manager"]);
    }

    #[test]
    fn kinds_come_from_the_subject() {
        assert_eq!(
            GateEventKind::from_subject("event.gate.opened"),
            Some(GateEventKind::Opened)
        );
        assert_eq!(
            GateEventKind::from_subject("event.gate.decided"),
            Some(GateEventKind::Decided)
        );
        assert_eq!(GateEventKind::from_subject("event.gate.other"), None);
        assert_eq!(GateEventKind::from_subject("run.event.x"), None);
    }

    #[test]
    fn opened_tells_each_reviewer_once_without_the_content() {
        let n = notifier(vec![person("ana", Some("U1")), person("bo", None)], &[]);
        let msgs = n.messages(GateEventKind::Opened, &gate(&["ana", "bo", "ana"]));
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].channel.as_deref(), Some("U1"));
        assert_eq!(msgs[1].channel, None);
        assert_eq!(
            msgs[0].text,
            "Quality gate brand is waiting for you: launch &lt;post&gt; &amp; more. \
             Decide before 2023-11-14T22:13:20Z: `concierto gate show run-1/draft/brand/1`"
        );
        assert!(!msgs[0].text.contains("THE DRAFT"));
    }

    #[test]
    fn a_gate_decided_with_its_batch_tells_nobody_again() {
        let n = notifier(
            vec![person("ana", Some("U1")), person("bo", Some("U2"))],
            &[],
        );
        let mut g = gate(&["ana", "bo"]);
        g.state = v1::GateState::Approved as i32;
        g.decisions.push(v1::GateDecision {
            decision: v1::GateDecisionKind::Approve as i32,
            reviewer: "ana".into(),
            notes: "fine".into(),
            ..Default::default()
        });
        assert_eq!(n.messages(GateEventKind::Decided, &g).len(), 1);
        g.batch_of = "run-0/draft/brand/1".into();
        assert!(n.messages(GateEventKind::Decided, &g).is_empty());
    }

    #[test]
    fn decided_skips_the_decider_and_says_automatically() {
        let n = notifier(
            vec![person("ana", Some("U1")), person("bo", Some("U2"))],
            &[],
        );
        let mut g = gate(&["ana", "bo"]);
        g.state = v1::GateState::Approved as i32;
        g.decisions.push(v1::GateDecision {
            decision: v1::GateDecisionKind::Approve as i32,
            reviewer: "ana".into(),
            notes: "fine".into(),
            ..Default::default()
        });
        let msgs = n.messages(GateEventKind::Decided, &g);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].person, "bo");
        assert!(
            msgs[0]
                .text
                .starts_with("Gate brand was approved by ana name: fine\n"),
            "{}",
            msgs[0].text
        );
        g.decisions[0].automatic = true;
        g.decisions[0].reviewer = "sla-policy".into();
        let msgs = n.messages(GateEventKind::Decided, &g);
        assert_eq!(msgs.len(), 2);
        assert!(
            msgs[0]
                .text
                .starts_with("Gate brand was automatically approved (sla-policy): fine"),
            "{}",
            msgs[0].text
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = NotifyRetry {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..NotifyRetry::default()
        };
        assert_eq!(r.backoff_after(1), Duration::from_millis(100));
        assert_eq!(r.backoff_after(2), Duration::from_millis(200));
        assert_eq!(r.backoff_after(3), Duration::from_millis(300));
        assert_eq!(r.backoff_after(40), Duration::from_millis(300));
    }

    #[test]
    fn settings_are_validated_and_the_token_never_prints() {
        let ok = GateNotifications {
            slack_bot_token: Some(Secret::from("xoxb-123-secret")),
            ..GateNotifications::default()
        };
        assert!(ok.validate().is_ok());
        assert!(!format!("{ok:?}").contains("xoxb-123-secret"));
        let n = notifier(Vec::new(), &[]);
        assert!(!format!("{n:?}").contains("xoxb-unit"));
        for bad in [
            GateNotifications {
                slack_bot_token: Some(Secret::from("")),
                ..GateNotifications::default()
            },
            GateNotifications {
                slack_bot_token: Some(Secret::from("xoxb\n1")),
                ..GateNotifications::default()
            },
            GateNotifications {
                slack_api_base: "slack.com/api".into(),
                ..GateNotifications::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
