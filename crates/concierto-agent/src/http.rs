//! The HTTP call the model executors share: POST a JSON body, retry what a
//! retry may fix, and turn every failure into an [`Outcome`].
//!
//! ```text
//!   attempt ──▶ 2xx ──────────────▶ parse the JSON body ──▶ Reply
//!      │        429, 5xx, timeout,
//!      │        connection refused ──▶ retries left? ── no ──▶ RETRYABLE
//!      │                                 │ yes
//!      │               Retry-After? ── longer than max_retry_after ──▶ RETRYABLE ("retry after …")
//!      │                 │ yes: wait it   │ no: wait base·2ⁿ ± jitter (≤ max_delay)
//!      ◀─────────────────┴────────────────┘
//!      └─ other 4xx ──▶ FAILED with the provider's message
//! ```
//!
//! A `Retry-After` is read as whole or fractional seconds or an HTTP date;
//! negative, non-finite and unreadable values are ignored (the backoff
//! applies), and anything beyond [`RETRY_AFTER_CEILING`] counts as that
//! ceiling, so no answer can make a worker wait (or compute a date) without
//! bound. A body (success or error) larger than [`MAX_RESPONSE_BYTES`] is not
//! read further: the call fails (`FAILED`, not retried) with "response larger
//! than N bytes".
//!
//! The API key travels in an [`ApiKey`], whose `Debug` prints `***`; header
//! values that carry it are marked sensitive, and provider messages are
//! scrubbed of it before they go anywhere.

use std::fmt;
use std::time::{Duration, Instant};

use concierto_core::config::ExecutorDef;
use concierto_core::roles::RoleDef;
use concierto_proto::v1::Task;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use crate::error::AgentError;
use crate::executor::Outcome;
use crate::executor::model_for;
use crate::prompt::{Prompt, stamp, word_count};

/// `details` key: attempts made for the call.
pub const DETAIL_HTTP_ATTEMPTS: &str = "http_attempts";
/// `details` key: the provider's request id (`x-request-id` or `request-id`).
pub const DETAIL_REQUEST_ID: &str = "request_id";

/// Most bytes of a model API's answer read (16 MiB); a longer answer fails the
/// call.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Longest `Retry-After` taken as given (one day): a longer one, or an HTTP
/// date further away, counts as this.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(24 * 3600);

/// How an HTTP executor retries: answers 429 and 5xx, timeouts and
/// connection failures are tried again up to `max_retries` times, waiting
/// `base_delay · 2ⁿ` ± `jitter` (at most `max_delay`) between attempts, or
/// exactly what the provider's `Retry-After` asks — unless that is longer than
/// `max_retry_after`, in which case the call gives up at once and says when to
/// try again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry.
    pub base_delay: Duration,
    /// Longest wait between attempts.
    pub max_delay: Duration,
    /// Longest `Retry-After` the call waits for.
    pub max_retry_after: Duration,
    /// Random spread of each wait, as a fraction (0.2: ± 20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 3 retries, 500 ms doubling up to 30 s, ± 20 %, `Retry-After` up to 60 s.
    fn default() -> Self {
        RetryPolicy {
            max_retries: concierto_core::config::DEFAULT_MAX_RETRIES,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The default policy with the executor's `max_retries`.
    pub fn for_executor(def: &ExecutorDef) -> Self {
        RetryPolicy {
            max_retries: def.max_retries,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(32);
        let wait = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return wait;
        }
        wait.mul_f64(rand::random_range((1.0 - jitter)..=(1.0 + jitter)))
            .min(self.max_delay)
    }
}

/// An API key read from the environment. Its `Debug` prints `***`, it has no
/// `Display`, and it never leaves this crate except in a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl ApiKey {
    /// The key in environment variable `var` of executor `executor`; a
    /// variable that is unset or empty is an error naming it (never a value).
    pub fn from_env(executor: &str, var: &str) -> Result<ApiKey, AgentError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(ApiKey(v.trim().to_string())),
            _ => Err(AgentError::MissingApiKey {
                executor: executor.to_string(),
                var: var.to_string(),
            }),
        }
    }

    /// A header value carrying `prefix` and the key, marked sensitive so that
    /// it is never printed.
    pub(crate) fn header(&self, executor: &str, prefix: &str) -> Result<HeaderValue, AgentError> {
        let mut v = HeaderValue::from_str(&format!("{prefix}{}", self.0)).map_err(|_| {
            AgentError::InvalidExecutor {
                executor: executor.to_string(),
                why: "its API key holds characters an HTTP header cannot carry".into(),
            }
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

/// `text` scrubbed of `key` when there is one.
pub(crate) fn scrub(key: Option<&ApiKey>, text: &str) -> String {
    match key {
        Some(k) => k.scrub(text),
        None => text.to_string(),
    }
}

/// A successful call.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The JSON body.
    pub body: Value,
    /// Attempts it took.
    pub attempts: u32,
    /// The provider's request id.
    pub request_id: Option<String>,
}

/// A model call made: when it began, the model asked for (and the one that
/// answered), the prompt's estimated tokens, and the reply.
pub(crate) struct Call {
    /// When the call began.
    pub started: Instant,
    /// The model the answer came from: the body's `model`, else the one asked for.
    pub model: String,
    /// Input tokens estimated from the prompt.
    pub estimate: u64,
    /// The provider's reply.
    pub reply: Reply,
}

impl HttpClient {
    /// Renders the prompt for `role`, picks the model, and posts the body
    /// `body` builds to `url`. A role with no model, or a call that failed
    /// (after retries), is the finished `Outcome` to return.
    pub(crate) async fn call_model(
        &self,
        def: &ExecutorDef,
        role: &RoleDef,
        task: &Task,
        url: &str,
        headers: HeaderMap,
        body: impl FnOnce(&Prompt, &str) -> Value,
    ) -> Result<Call, Outcome> {
        let started = Instant::now();
        let model = model_for(def, role);
        let prompt = Prompt::render(role, task);
        let estimate = word_count(&prompt.plain_text());
        if model.is_empty() {
            let out = Outcome::failed(format!(
                "executor {:?} has no model for role {:?}: set `model` on the executor or the role",
                def.name, role.name
            ));
            return Err(stamp(out, def, &model, (0, 0), started));
        }
        let body = body(&prompt, &model);
        match self.post_json(url, headers, &body).await {
            Ok(reply) => {
                let model = reply
                    .body
                    .get("model")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map_or(model, str::to_string);
                Ok(Call {
                    started,
                    model,
                    estimate,
                    reply,
                })
            }
            Err(out) => {
                tracing::debug!(executor = %def.name, error = %out.error, "model call failed");
                Err(stamp(out, def, &model, (0, 0), started))
            }
        }
    }
}

/// What a model API's answer says beside its text: where its token counts
/// are (JSON pointers), the prompt's estimated size, and its finish reason.
pub(crate) struct Answered<'a> {
    /// JSON pointers of the input and output token counts.
    pub usage: (&'a str, &'a str),
    /// Input tokens estimated from the prompt, when the body has none.
    pub estimate: u64,
    /// The `details` key and value of the finish or stop reason.
    pub reason: Option<(&'static str, String)>,
}

impl Reply {
    /// Completes a model call's outcome: tokens (from the body, else
    /// estimated), attempts, request id, finish reason, then usage and cost.
    pub(crate) fn finish(
        self,
        mut out: Outcome,
        answered: Answered<'_>,
        def: &ExecutorDef,
        model: &str,
        started: Instant,
    ) -> Outcome {
        let input_tokens = self
            .body
            .pointer(answered.usage.0)
            .and_then(Value::as_u64)
            .unwrap_or(answered.estimate);
        let output_tokens = self
            .body
            .pointer(answered.usage.1)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| word_count(&out.output));
        out.details
            .insert(DETAIL_HTTP_ATTEMPTS.into(), self.attempts.to_string());
        if let Some(id) = self.request_id {
            out.details.insert(DETAIL_REQUEST_ID.into(), id);
        }
        if let Some((key, reason)) = answered.reason {
            out.details.insert(key.into(), reason);
        }
        stamp(out, def, model, (input_tokens, output_tokens), started)
    }
}

/// One client per executor: the connection pool, the per-attempt timeout, the
/// retry policy and the key to scrub.
pub(crate) struct HttpClient {
    client: reqwest::Client,
    provider: &'static str,
    timeout: Duration,
    pub policy: RetryPolicy,
    key: Option<ApiKey>,
    max_response_bytes: usize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.provider)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .field("key", &self.key)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// Why an attempt did not give a usable answer, when a retry may help.
enum Transient {
    Status { status: StatusCode, message: String },
    Timeout,
    Transport(String),
}

impl HttpClient {
    /// A client for executor `def` of `provider` (`openai`, `anthropic`).
    pub(crate) fn new(
        provider: &'static str,
        def: &ExecutorDef,
        key: Option<ApiKey>,
    ) -> Result<Self, AgentError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("concierto/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AgentError::InvalidExecutor {
                executor: def.name.clone(),
                why: format!("cannot build its HTTP client: {e}"),
            })?;
        Ok(HttpClient {
            client,
            provider,
            timeout: def.timeout,
            policy: RetryPolicy::for_executor(def),
            key,
            max_response_bytes: MAX_RESPONSE_BYTES,
        })
    }

    /// The key, when the executor has one.
    pub(crate) fn key(&self) -> Option<&ApiKey> {
        self.key.as_ref()
    }

    /// `text` without the key.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(self.key.as_ref(), text)
    }

    /// POSTs `body` to `url` with `headers`, retrying per the policy. A
    /// failure is the [`Outcome`] to report, with `http_attempts` and
    /// `request_id` in its details.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        headers: HeaderMap,
        body: &Value,
    ) -> Result<Reply, Outcome> {
        let provider = self.provider;
        let mut attempts = 0u32;
        let mut request_id = None;
        loop {
            attempts += 1;
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.timeout, self.attempt(url, &headers, body));
            let (transient, retry_after) = match attempt.await {
                Err(_) => (Transient::Timeout, None),
                Ok(Err(AttemptError::TooLarge(status))) => {
                    return Err(with_details(
                        Outcome::failed(format!(
                            "{provider} answered {} with a response larger than {} bytes; \
                             it was not read",
                            status.as_u16(),
                            self.max_response_bytes
                        )),
                        attempts,
                        &request_id,
                    ));
                }
                Ok(Err(AttemptError::Http(e))) if e.is_timeout() => (Transient::Timeout, None),
                Ok(Err(AttemptError::Http(e))) => {
                    (Transient::Transport(self.scrub(&error_chain(&e))), None)
                }
                Ok(Ok((status, resp_headers, bytes))) => {
                    if let Some(id) = header_text(&resp_headers, "x-request-id")
                        .or_else(|| header_text(&resp_headers, "request-id"))
                    {
                        request_id = Some(id);
                    }
                    tracing::debug!(
                        provider,
                        attempt = attempts,
                        status = status.as_u16(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "model API answered"
                    );
                    if status.is_success() {
                        return match serde_json::from_slice::<Value>(&bytes) {
                            Ok(body) => Ok(Reply {
                                body,
                                attempts,
                                request_id,
                            }),
                            Err(e) => Err(with_details(
                                Outcome::retryable(format!(
                                    "{provider} answered {} with a body that is not JSON ({e}): {}",
                                    status.as_u16(),
                                    self.scrub(&snippet(&String::from_utf8_lossy(&bytes)))
                                )),
                                attempts,
                                &request_id,
                            )),
                        };
                    }
                    let message = self.scrub(&provider_message(&bytes));
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        let retry_after = resp_headers
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                        (Transient::Status { status, message }, retry_after)
                    } else {
                        return Err(with_details(
                            Outcome::failed(format!(
                                "{provider} refused the request ({}): {message}",
                                status.as_u16()
                            )),
                            attempts,
                            &request_id,
                        ));
                    }
                }
            };
            if attempts > self.policy.max_retries {
                let reason = match transient {
                    Transient::Status { status, message } => format!(
                        "{provider} returned {} after {attempts} attempts: {message}",
                        status.as_u16()
                    ),
                    Transient::Timeout => format!(
                        "{provider} did not answer within {} ({attempts} attempts)",
                        human(self.timeout)
                    ),
                    Transient::Transport(e) => {
                        format!("{provider} could not be reached ({attempts} attempts): {e}")
                    }
                };
                return Err(with_details(
                    Outcome::retryable(reason),
                    attempts,
                    &request_id,
                ));
            }
            let wait = match retry_after {
                Some(wait) if wait > self.policy.max_retry_after => {
                    let now = chrono::Utc::now();
                    let at = chrono::Duration::from_std(wait)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .unwrap_or(now);
                    let what = match &transient {
                        Transient::Status { status, message } => {
                            format!("{} ({message})", status.as_u16())
                        }
                        _ => "an error".to_string(),
                    };
                    return Err(with_details(
                        Outcome::retryable(format!(
                            "{provider} answered {what} and asked to retry after {} \
                             (at {}), longer than the {} this executor waits: retry then",
                            human(wait),
                            at.format("%Y-%m-%dT%H:%M:%SZ"),
                            human(self.policy.max_retry_after)
                        )),
                        attempts,
                        &request_id,
                    ));
                }
                Some(wait) => wait,
                None => self.policy.backoff(attempts),
            };
            let what = match &transient {
                Transient::Status { status, .. } => status.as_u16().to_string(),
                Transient::Timeout => format!("no answer within {}", human(self.timeout)),
                Transient::Transport(e) => e.clone(),
            };
            tracing::warn!(
                provider,
                attempt = attempts,
                wait_ms = wait.as_millis() as u64,
                "model API call failed ({what}); retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: the status, headers and whole body, read chunk by chunk
    /// up to `max_response_bytes`.
    async fn attempt(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), AttemptError> {
        let mut resp = self
            .client
            .post(url)
            .headers(headers.clone())
            .timeout(self.timeout)
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        let max = self.max_response_bytes;
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(AttemptError::TooLarge(status));
        }
        let headers = resp.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if bytes.len().saturating_add(chunk.len()) > max {
                return Err(AttemptError::TooLarge(status));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, headers, bytes))
    }
}

/// Why an attempt gave no answer to look at.
enum AttemptError {
    /// The request failed (connection, timeout, a broken body).
    Http(reqwest::Error),
    /// The answer (with this status) is longer than `max_response_bytes`.
    TooLarge(StatusCode),
}

impl From<reqwest::Error> for AttemptError {
    fn from(e: reqwest::Error) -> Self {
        AttemptError::Http(e)
    }
}

/// `outcome` with `http_attempts` and `request_id`.
fn with_details(mut outcome: Outcome, attempts: u32, request_id: &Option<String>) -> Outcome {
    outcome
        .details
        .insert(DETAIL_HTTP_ATTEMPTS.into(), attempts.to_string());
    if let Some(id) = request_id {
        outcome.details.insert(DETAIL_REQUEST_ID.into(), id.clone());
    }
    outcome
}

fn header_text(headers: &HeaderMap, name: &'static str) -> Option<String> {
    headers
        .get(HeaderName::from_static(name))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `Retry-After` as a wait at `now`: seconds (whole or not), or an HTTP date
/// (a date in the past is no wait), at most [`RETRY_AFTER_CEILING`].
/// Negative, non-finite and unreadable values are `None`: no wait asked.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CEILING));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // Clamped before the conversion: `from_secs_f64` panics on a value
        // as large as 1e300.
        let secs = secs.min(RETRY_AFTER_CEILING.as_secs_f64());
        return Some(Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc).signed_duration_since(now);
    Some(
        wait.to_std()
            .unwrap_or(Duration::ZERO)
            .min(RETRY_AFTER_CEILING),
    )
}

/// The provider's error message from a JSON error body (`{"error":
/// {"message"}}`, `{"error": "..."}`, `{"message"}`, `{"detail"}`), else the
/// start of the body as text.
pub(crate) fn provider_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let candidates = [
            v.pointer("/error/message"),
            v.get("error").filter(|e| e.is_string()),
            v.get("message"),
            v.get("detail"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str()
                && !s.trim().is_empty()
            {
                let kind = v
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty() && !s.contains(t));
                return match kind {
                    Some(t) => format!("{} ({t})", snippet(s)),
                    None => snippet(s),
                };
            }
        }
    }
    if text.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        snippet(&text)
    }
}

/// At most 500 characters of `s`, trimmed.
pub(crate) fn snippet(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `2s`, `300ms`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        let parse = |v: &str| parse_retry_after(v, now);
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(
            parse("Tue, 10 Mar 2026 12:01:30 GMT"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse("soon"), None);
    }

    #[test]
    fn hostile_retry_after_values_are_ignored_or_clamped() {
        let now = chrono::Utc::now();
        let parse = |v: &str| parse_retry_after(v, now);
        for ignored in ["-5", "NaN", "nan", "inf", "-inf", "-0.5", ""] {
            assert_eq!(parse(ignored), None, "{ignored:?}");
        }
        for huge in [
            "1e300",
            "18446744073709551615",
            "99999999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(parse(huge), Some(RETRY_AFTER_CEILING), "{huge:?}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = RetryPolicy::default();
        for (retry, base) in [(1, 500u64), (2, 1000), (3, 2000), (7, 30_000), (40, 30_000)] {
            let w = p.backoff(retry).as_millis() as u64;
            assert!(
                w >= base * 8 / 10 && w <= (base * 12 / 10).min(30_000),
                "retry {retry}: {w} ms"
            );
        }
        let exact = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(exact.backoff(2), Duration::from_secs(1));
    }

    #[test]
    fn provider_messages_are_found_in_the_usual_shapes() {
        let openai =
            br#"{"error":{"message":"Invalid model","type":"invalid_request_error","code":null}}"#;
        assert_eq!(
            provider_message(openai),
            "Invalid model (invalid_request_error)"
        );
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(provider_message(anthropic), "Overloaded (overloaded_error)");
        assert_eq!(
            provider_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(provider_message(b"Bad Gateway"), "Bad Gateway");
        assert_eq!(provider_message(b""), "(empty body)");
    }

    #[test]
    fn the_key_never_prints() {
        let k = ApiKey("sk-secret".into());
        assert_eq!(format!("{k:?}"), "***");
        assert_eq!(k.scrub("bad key sk-secret!"), "bad key ***!");
        let h = k.header("gpt", "Bearer ").expect("header");
        assert!(!format!("{h:?}").contains("sk-secret"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(300)), "300ms");
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
