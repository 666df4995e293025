//! Human feedback intake: every message from a person (Slack, email, the web
//! form, the admin API) becomes a `concierto.v1.Feedback`, is stored before it
//! is answered, then published on `feedback.in.<channel>` (stream `FEEDBACK`,
//! work queue) for the feedback processor.
//!
//! # The flow
//!
//! ```text
//!  POST /slack/events   ── signature, age, replay ─┐
//!  POST /slack/commands ── signature, age, replay ─┤
//!  POST /email/inbound  ── bearer token, MIME ─────┼─▶ accept(): caps, store + flush ──▶ answer 200/202
//!  POST /feedback       ── rate limit, CSRF ───────┤        │ (tree "feedback", its id in tree
//!  admin SubmitFeedback ───────────────────────────┘        │  "feedback_outbox", the time index)
//!                                                           ▼
//!                         publish_durable(feedback.in.<channel>, msg id = feedback id)
//!                           ok ─▶ id removed from the outbox
//!                           failed ─▶ stays; Outbox re-publishes at start-up and every
//!                                     `outbox_every` (the message id deduplicates)
//! ```
//!
//! - Nothing accepted is lost: [`accept`] answers only after the record and its
//!   outbox entry are flushed; a store failure answers 503 so the sender retries.
//! - Ids are deterministic where the source gives one (`slack-<event_id>`,
//!   `slack-cmd-<trigger_id>`, `email-<Message-ID>`), so a retried webhook is
//!   stored once and answered with the same id and `"duplicate": true`;
//!   otherwise `<channel>-<random UUID>`.
//! - Every refusal is a status with a short reason: 400 malformed, 401 bad
//!   signature or token (or a replayed Slack request), 403 bad form token,
//!   404 channel not configured, 413 body over `max_body_bytes` (the web
//!   form: over `form_max_body_bytes`, 64 KiB), 415 wrong content type, 429
//!   the web form's rate limit ([`rate`]), 503 store down. Secrets are
//!   [`Secret`]s, printed as `***` and never logged.
//! - What is kept of each message is capped ([`caps`]): text, subject, names,
//!   metadata and attachments; pages of `feedback.list` read a time index
//!   ([`index`]), not every record.
//!
//! The service also tells people about their quality gates: with a Slack bot
//! token, a [`Notifier`] turns `event.gate.>` into Slack direct messages
//! (see [`notify`]); budgets reached and metrics off target go to their owners
//! ([`budget_notify`]), and runs that failed with no `on_failure` path to the
//! studio's escalation contacts ([`failure_notify`]).
//!
//! A changed studio is taken live ([`FeedbackServer::taking_studio_changes`]):
//! `feedback_capture.channels` apply to the next request, reviewers' Slack ids
//! and escalation contacts to the next notification; the address, the
//! secrets' variables and the body and rate limits need a restart (said once
//! at warn, naming the key).
//!
//! [`router`] gives the routes for embedding in another axum server; [`start`]
//! serves them on their own address with the [`Outbox`] and the [`Notifier`]
//! and returns a [`FeedbackServer`] whose [`ServiceHandle`] stops them all
//! gracefully.

pub mod budget_notify;
pub mod caps;
pub mod channels;
pub mod email;
mod error;
pub mod failure_notify;
pub mod form;
pub mod index;
mod intake;
mod list;
pub mod notify;
#[cfg(feature = "openapi")]
pub mod openapi;
mod outbox;
pub mod rate;
pub mod recipients;
pub mod replay;
pub mod requests;
pub mod slack;
pub mod status;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing;
use concierto_bus::{Bus, StreamLimits, standard_streams};
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::live::NeedsRestart;
use concierto_core::service::ServiceHandle;
use concierto_core::store::KvStore;
use concierto_core::subjects::FEEDBACK_IN;

pub use crate::error::FeedbackError;
pub use crate::index::{ensure_time_index, list, list_page, put_record};
pub use crate::intake::{
    Accepted, FEEDBACK_TREE, MAX_ID_LEN, OUTBOX_TREE, accept, channel_name, get, pending,
    random_id, sanitize_id, subject_for,
};
pub use crate::list::{entry_of, list_entries, serve_list};
pub use crate::notify::{GateNotifications, Notifier, NotifyRetry, Person};
pub use crate::outbox::{Outbox, OutboxPass};
pub use crate::rate::FormRateLimit;
pub use crate::recipients::{Recipients, SharedRecipients};

/// A secret (signing secret, token, key): its `Debug` prints `***`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Secret(value.into())
    }

    /// 32 random bytes (the default CSRF key).
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Secret(bytes.to_vec())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes it has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it has none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// The web form's body limit by default (64 KiB: a 5,000-character message
/// fits, percent-encoded).
pub const DEFAULT_FORM_MAX_BODY_BYTES: usize = 64 * 1024;

/// How the intake runs.
#[derive(Debug, Clone)]
pub struct FeedbackOptions {
    /// The Slack app's signing secret; without it the Slack routes answer 404.
    pub slack_signing_secret: Option<Secret>,
    /// The bearer token inbound-mail webhooks must send; without it
    /// `/email/inbound` answers 404 (not configured).
    pub email_token: Option<Secret>,
    /// Key of the web form's CSRF tokens (at least 16 bytes). Random by
    /// default: set the same key on every replica behind one address.
    pub csrf_key: Secret,
    /// How long a form token stays valid (12 hours by default).
    pub csrf_ttl: Duration,
    /// Largest request body; a larger one is answered 413 (1 MiB by default).
    pub max_body_bytes: usize,
    /// Largest body of a web-form post (64 KiB by default; never more than
    /// `max_body_bytes`): the form is open to anyone.
    pub form_max_body_bytes: usize,
    /// Rate limits of web-form posts, per client address and overall.
    pub form_rate: FormRateLimit,
    /// How far a Slack request's timestamp may be from our clock (5 minutes).
    pub slack_tolerance: Duration,
    /// How often the outbox re-publishes what the bus refused (5 s).
    pub outbox_every: Duration,
    /// How long a publish may take before the request is answered anyway, the
    /// record left to the outbox (2 s: Slack wants an answer within 3 s).
    pub publish_timeout: Duration,
    /// Limits of the FEEDBACK stream that [`start`] declares.
    pub stream_limits: StreamLimits,
    /// Gate notifications on Slack: with a bot token, [`start`] runs a
    /// [`Notifier`]; without one, gate events go only to the bus.
    pub gate_notifications: GateNotifications,
    /// The channels `feedback_capture.channels` lists (`slack`, `email`,
    /// `web_form`); `None` takes every channel. A channel not listed answers
    /// 404 with a sentence naming the key ([`channels::refuse_off`]); `api`
    /// is always taken.
    pub channels: Option<Vec<String>>,
}

impl Default for FeedbackOptions {
    fn default() -> Self {
        FeedbackOptions {
            slack_signing_secret: None,
            email_token: None,
            csrf_key: Secret::random(),
            csrf_ttl: Duration::from_secs(12 * 3600),
            max_body_bytes: 1024 * 1024,
            form_max_body_bytes: DEFAULT_FORM_MAX_BODY_BYTES,
            form_rate: FormRateLimit::default(),
            slack_tolerance: Duration::from_secs(300),
            outbox_every: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(2),
            stream_limits: StreamLimits::default(),
            gate_notifications: GateNotifications::default(),
            channels: None,
        }
    }
}

impl FeedbackOptions {
    /// Checks the options; the error says which one to fix.
    pub fn validate(&self) -> Result<(), FeedbackError> {
        let bad = |m: &str| Err(FeedbackError::Config(m.to_string()));
        if self.csrf_key.len() < 16 {
            return bad("csrf_key must have at least 16 bytes");
        }
        if self
            .slack_signing_secret
            .as_ref()
            .is_some_and(Secret::is_empty)
        {
            return bad("slack_signing_secret is empty; leave it unset to turn Slack off");
        }
        if self.email_token.as_ref().is_some_and(Secret::is_empty) {
            return bad("email_token is empty; leave it unset to turn inbound email off");
        }
        if self.max_body_bytes == 0 || self.form_max_body_bytes == 0 {
            return bad("max_body_bytes and form_max_body_bytes must be more than 0");
        }
        if self.form_rate.per_client_per_minute == 0
            || self.form_rate.per_minute == 0
            || self.form_rate.max_clients == 0
        {
            return bad("the form's rate limits must be more than 0");
        }
        if self.outbox_every.is_zero() || self.publish_timeout.is_zero() {
            return bad("outbox_every and publish_timeout must be more than 0");
        }
        if self.slack_tolerance.is_zero() || self.csrf_ttl.is_zero() {
            return bad("slack_tolerance and csrf_ttl must be more than 0");
        }
        self.gate_notifications.validate()
    }
}

/// What the handlers share: bus, store, clock, options, the Slack replay guard,
/// the web form's rate limiter and the lock that makes "already stored?" and
/// "store" one step. Cheap to clone.
#[derive(Clone)]
pub struct FeedbackState {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: FeedbackOptions,
    replay: replay::SharedReplayGuard,
    form_limiter: rate::RateLimiter,
    accept_lock: tokio::sync::Mutex<()>,
    /// `feedback_capture.channels` now (starts as `opts.channels`).
    channels: RwLock<Option<Vec<String>>>,
    /// Who the notifiers tell now (starts as `opts.gate_notifications`').
    recipients: SharedRecipients,
}

impl fmt::Debug for FeedbackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedbackState")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl FeedbackState {
    /// The shared state of the routes and of [`accept`].
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn KvStore>,
        clock: SharedClock,
        opts: FeedbackOptions,
    ) -> Self {
        FeedbackState {
            inner: Arc::new(Inner {
                bus,
                store,
                clock,
                form_limiter: rate::RateLimiter::new(opts.form_rate),
                channels: RwLock::new(opts.channels.clone()),
                recipients: SharedRecipients::new(Recipients {
                    failure_contacts: opts.gate_notifications.failure_contacts.clone(),
                    ..Recipients::new(
                        opts.gate_notifications.people.clone(),
                        opts.gate_notifications.escalations.clone(),
                    )
                }),
                opts,
                replay: replay::SharedReplayGuard::default(),
                accept_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The bus feedback is published on.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    /// The store feedback is kept in.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.inner.store
    }

    /// The clock (Slack timestamps, form tokens, `received_at`).
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The options as started; the channels and the notifiers' people
    /// follow the studio ([`Self::channels`], [`Self::recipients`]).
    pub fn options(&self) -> &FeedbackOptions {
        &self.inner.opts
    }

    /// The channels taken now (`None`: every one); see
    /// [`FeedbackOptions::channels`].
    pub fn channels(&self) -> Option<Vec<String>> {
        match self.inner.channels.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether feedback from `channel` is taken now: `api` always.
    pub fn channel_on(&self, channel: &str) -> bool {
        match self.inner.channels.read() {
            Ok(g) => channels::listed(g.as_deref(), channel),
            Err(p) => channels::listed(p.into_inner().as_deref(), channel),
        }
    }

    /// An error (404) refusing `channel` when it is off, naming the key.
    pub fn check_channel(&self, channel: &str) -> Result<(), FeedbackError> {
        if self.channel_on(channel) {
            Ok(())
        } else {
            Err(FeedbackError::NotConfigured(
                concierto_core::config::keys::channel_off_message(channel),
            ))
        }
    }

    /// Who the gate, budget and target notifiers tell, and gates' escalation
    /// contacts.
    pub fn recipients(&self) -> &SharedRecipients {
        &self.inner.recipients
    }

    /// Takes a changed studio: its `feedback_capture.channels` apply to the
    /// next request, its reviewers (Slack ids) and escalation contacts to
    /// the next notification. Logs one line.
    pub fn take_studio(&self, studio: &Studio) {
        let channels = channels::channels_of(studio);
        let recipients = Recipients::of_studio(studio);
        tracing::info!(
            channels = ?channels,
            people = recipients.people.len(),
            "feedback service took the changed studio"
        );
        match self.inner.channels.write() {
            Ok(mut g) => *g = channels,
            Err(p) => *p.into_inner() = channels,
        }
        self.inner.recipients.set(recipients);
    }

    pub(crate) fn replay_guard(&self) -> &replay::SharedReplayGuard {
        &self.inner.replay
    }

    /// The web form's rate limiter.
    pub fn form_limiter(&self) -> &rate::RateLimiter {
        &self.inner.form_limiter
    }

    pub(crate) fn accept_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.accept_lock
    }
}

/// The intake's routes, with the body limit applied:
///
/// | route | answers |
/// |---|---|
/// | `POST /slack/events` | 200 `{"feedback_id","duplicate"}`, `{"challenge"}`, `{"ignored"}`; 401, 400, 404 |
/// | `POST /slack/commands` | 200 `{"response_type":"ephemeral","text"}`; 401, 400, 404 |
/// | `POST /email/inbound` | 202 `{"feedback_id","duplicate"}`; 401, 400, 415 |
/// | `GET /feedback` | 200 the form, sets the CSRF cookie |
/// | `POST /feedback` | 200 thank-you page (with the status link); 400 form with the error; 403 bad token; 429 over the rate limit |
/// | `GET /feedback/status/{token}` | 200 the feedback and its reply ([`status`]); 404 unknown token |
/// | `GET /healthz` | 200 `ok` |
///
/// Any body over `max_body_bytes` (a form post: over `form_max_body_bytes`)
/// is answered 413; a store failure 503. The form's rate limit is per client
/// address: serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()` (as [`start`] does),
/// else only its global limit applies.
pub fn router(state: FeedbackState) -> Router {
    let limit = state.options().max_body_bytes;
    let form_limit = state.options().form_max_body_bytes.min(limit);
    let form = routing::get(form::show)
        .post(form::submit)
        .layer(DefaultBodyLimit::max(form_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate::limit_form,
        ));
    let routes = Router::new()
        .route("/healthz", routing::get(|| async { "ok" }))
        .route("/slack/events", routing::post(slack::events))
        .route("/slack/commands", routing::post(slack::commands))
        .route("/email/inbound", routing::post(email::inbound))
        .route("/feedback", form)
        .route("/feedback/status/{token}", routing::get(status::show));
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        channels::refuse_off,
    ));
    // Every answer counted in `concierto_http_requests_total{service="feedback"}`.
    concierto_telemetry::server::count_http(routes, "feedback")
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A running intake server.
#[derive(Debug)]
pub struct FeedbackServer {
    /// Where it listens (the bound port when `:0` was asked for).
    pub local_addr: SocketAddr,
    /// Stops the server (in-flight requests finish), the outbox and the gate
    /// notifier, then flushes the store.
    pub handle: ServiceHandle,
    /// The state, for calling [`accept`] in the same process (admin API).
    pub state: FeedbackState,
}

impl FeedbackServer {
    /// Its handle takes changed studios ([`FeedbackState::take_studio`]);
    /// `started` is the studio its options came from: a change of a key it
    /// cannot take live (the address, the secrets' variables, body and rate
    /// limits, the Slack API base) is logged once at warn, naming the key.
    pub fn taking_studio_changes(mut self, started: Arc<Studio>) -> Self {
        let state = self.state.clone();
        let restart = NeedsRestart::new("feedback");
        self.handle = self.handle.on_studio_change(move |next: Arc<Studio>| {
            for (key, was, now) in restart_keys(&started, &next) {
                restart.check(key, &was, &now);
            }
            state.take_studio(&next);
        });
        self
    }

    /// Stops it gracefully and waits.
    pub async fn stop(self) -> Result<(), String> {
        self.handle.stop().await
    }
}

/// How long a graceful stop waits for open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Declares the FEEDBACK stream, starts the [`Outbox`] (which publishes what
/// was left unpublished at once) and, with a Slack bot token, the gate
/// [`Notifier`], and serves [`router`] on `addr`.
pub async fn start(
    addr: SocketAddr,
    bus: Arc<dyn Bus>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: FeedbackOptions,
) -> Result<FeedbackServer, FeedbackError> {
    opts.validate()?;
    for spec in standard_streams(&opts.stream_limits)
        .iter()
        .filter(|s| s.subjects.iter().any(|s| s == FEEDBACK_IN))
    {
        bus.ensure_stream(spec).await?;
    }
    let outbox_every = opts.outbox_every;
    // A store of an older version is indexed by time once, before serving.
    let indexing = store.clone();
    tokio::task::spawn_blocking(move || ensure_time_index(indexing.as_ref()))
        .await
        .map_err(|e| FeedbackError::Internal(format!("indexing stored feedback: {e}")))??;
    let state = FeedbackState::new(bus, store, clock, opts);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| FeedbackError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| FeedbackError::Bind { addr, source })?;
    let notifier =
        match Notifier::from_settings(state.bus().clone(), &state.options().gate_notifications)? {
            Some(n) => Some(
                n.with_shared_recipients(state.recipients().clone())
                    .start()
                    .await?,
            ),
            None => {
                tracing::warn!("no Slack bot token: gate notifications go only to the bus");
                None
            }
        };
    // Budgets reached, to `agents.budget_owner` on Slack (same token).
    let budget_notifier =
        match Notifier::from_settings(state.bus().clone(), &state.options().gate_notifications)? {
            Some(n) => Some(
                crate::budget_notify::start(n.with_shared_recipients(state.recipients().clone()))
                    .await?,
            ),
            None => None,
        };
    // Runs that failed with no on_failure path, to the escalation contacts
    // (same token; a durable consumer of event.run.failed).
    let failure_notifier =
        match Notifier::from_settings(state.bus().clone(), &state.options().gate_notifications)? {
            Some(n) => Some(
                crate::failure_notify::start(
                    n.with_shared_recipients(state.recipients().clone()),
                    state.store().clone(),
                    state.clock().clone(),
                    &state.options().stream_limits,
                )
                .await?,
            ),
            None => None,
        };

    let (handle, control) = ServiceHandle::new("feedback");
    let mut shutdown = control.signal.clone();
    let app = router(state.clone());
    let mut server = tokio::spawn(async move {
        axum::serve(
            concierto_telemetry::server::no_delay(listener),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.stopped().await })
        .await
    });
    let outbox = Outbox::new(state.clone()).start(outbox_every);
    let submitter = tokio::spawn(requests::serve_submit(state.clone()));
    let getter = tokio::spawn(requests::serve_get(state.clone()));
    let lister = tokio::spawn(serve_list(
        state.bus().clone(),
        state.store().clone(),
        state.options().publish_timeout.max(Duration::from_secs(2)),
    ));
    tracing::info!(addr = %local_addr, "feedback intake listening");

    let store = state.store().clone();
    tokio::spawn(async move {
        let mut signal = control.signal.clone();
        let mut result = tokio::select! {
            _ = signal.stopped() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(joined) => served(joined),
                    Err(_) => {
                        server.abort();
                        Err(format!("connections still open after {SHUTDOWN_GRACE:?}; closed"))
                    }
                }
            }
            joined = &mut server => {
                let r = served(joined);
                tracing::error!(result = ?r, "feedback intake server ended on its own");
                r.and(Err("the feedback server ended without being asked".to_string()))
            }
        };
        lister.abort();
        submitter.abort();
        getter.abort();
        if let Err(e) = outbox.stop().await {
            result = result.and(Err(e));
        }
        if let Some(n) = budget_notifier
            && let Err(e) = n.stop().await
        {
            tracing::warn!(error = %e, "the budget notifier stopped badly");
        }
        if let Some(n) = failure_notifier
            && let Err(e) = n.stop().await
        {
            tracing::warn!(error = %e, "the failed-run notifier stopped badly");
        }
        if let Some(notifier) = notifier
            && let Err(e) = notifier.stop().await
        {
            result = result.and(Err(e));
        }
        match tokio::task::spawn_blocking(move || store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = result.and(Err(e.to_string())),
            Err(e) => result = result.and(Err(format!("store flush: {e}"))),
        }
        tracing::info!(?result, "feedback intake stopped");
        control.finished(result);
    });

    Ok(FeedbackServer {
        local_addr,
        handle,
        state,
    })
}

/// The keys the feedback service keeps as started, with their values then and now.
fn restart_keys(was: &Studio, now: &Studio) -> Vec<(&'static str, String, String)> {
    let (a, b) = (&was.server, &now.server);
    let (fa, fb) = (&a.feedback, &b.feedback);
    vec![
        ("server.http_addr", a.http_addr.clone(), b.http_addr.clone()),
        (
            "server.feedback.slack_signing_secret_env",
            fa.slack_signing_secret_env.clone(),
            fb.slack_signing_secret_env.clone(),
        ),
        (
            "server.feedback.slack_bot_token_env",
            fa.slack_bot_token_env.clone(),
            fb.slack_bot_token_env.clone(),
        ),
        (
            "server.feedback.email_token_env",
            fa.email_token_env.clone(),
            fb.email_token_env.clone(),
        ),
        (
            "server.feedback.csrf_key_env",
            fa.csrf_key_env.clone(),
            fb.csrf_key_env.clone(),
        ),
        (
            "server.feedback.slack_api_base",
            fa.slack_api_base.clone(),
            fb.slack_api_base.clone(),
        ),
        (
            "server.feedback.max_body_bytes",
            fa.max_body_bytes.to_string(),
            fb.max_body_bytes.to_string(),
        ),
        (
            "server.feedback.form_max_body_bytes",
            fa.form_max_body_bytes.to_string(),
            fb.form_max_body_bytes.to_string(),
        ),
        (
            "server.feedback.form_per_client_per_minute",
            fa.form_per_client_per_minute.to_string(),
            fb.form_per_client_per_minute.to_string(),
        ),
        (
            "server.feedback.form_per_minute",
            fa.form_per_minute.to_string(),
            fb.form_per_minute.to_string(),
        ),
    ]
}

fn served(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), String> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("feedback server: {e}")),
        Err(e) => Err(format!("feedback server task: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let opts = FeedbackOptions {
            slack_signing_secret: Some(Secret::from("xoxb-very-secret")),
            email_token: Some(Secret::from("mail-token")),
            ..FeedbackOptions::default()
        };
        let shown = format!("{opts:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("mail-token"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn options_are_validated() {
        assert!(FeedbackOptions::default().validate().is_ok());
        let short_key = FeedbackOptions {
            csrf_key: Secret::from("short"),
            ..FeedbackOptions::default()
        };
        assert!(short_key.validate().is_err());
        let empty_secret = FeedbackOptions {
            slack_signing_secret: Some(Secret::from("")),
            ..FeedbackOptions::default()
        };
        assert!(empty_secret.validate().is_err());
        let no_body = FeedbackOptions {
            max_body_bytes: 0,
            ..FeedbackOptions::default()
        };
        assert!(no_body.validate().is_err());
    }
}
