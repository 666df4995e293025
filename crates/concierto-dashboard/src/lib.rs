//! The dashboard: plain server-rendered HTML pages over the studio's services,
//! live over server-sent events, for people with a reviewer token.
//!
//! ```text
//!  browser ──▶ /login (token → session cookie) ──▶ pages ──▶ bus requests ──▶ orchestrator
//!     ▲                                              │                      tracker
//!     │ GET /events (SSE) ◀── live hub ◀── bus subscriptions                 feedback
//!     │                                   (run.event.>, event.gate.>,        scheduler
//!     │                                    event.metric.>, agent.heartbeat.>)
//!     └── /library/api/... ──▶ proxy (reqwest, the user's token) ──▶ content library API
//! ```
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `ok`, no session needed |
//! | `GET /login`, `POST /login`, `POST /logout` | sign in with a reviewer token, sign out |
//! | `GET /` | progress metrics against their targets (values in their units, sparklines), threshold crossings |
//! | `GET /metrics/{name}` | one metric's chart: time axis in the studio's zone, unit, target line, `?rollup=raw\|day\|week\|month` |
//! | `GET /agents` | per role: utilization, replicas, in flight, last heartbeat |
//! | `GET /queue` | depth and oldest age per priority, dead letters, gates open/overdue |
//! | `GET /runs`, `POST /runs` | runs, filtered (`state`, `workflow`, `trigger`, `from`, `to` days in the studio's zone, `q`) and paged (`page`); start a run (admins) |
//! | `GET /runs/{id}` | one run (a unique prefix of its id redirects): timeline, steps, their inputs and outputs as sanitised Markdown, tool calls, review |
//! | `POST /runs/{id}/cancel`, `POST /runs/{id}/retry` | cancel a live run; retry an ended one (`from=failed` or `start`) (admins) |
//! | `GET /triggers`, `POST /triggers/{name}/fire`, `POST /triggers/{name}/pause` | triggers with next/last fire and paused state; fire now, pause (`paused=true`) or resume (admins) |
//! | `GET /gates`, `GET /gates/{id}`, `POST /gates/{id}/decide` | quality gates (a prefix or run id redirects), decision buttons for those who may decide, decided as the signed-in reviewer |
//! | `GET /dead-letters`, `GET /dead-letters/{seq}`, `POST /dead-letters/{seq}/replay` | dead letters by subject prefix, paged; one decoded; replayed (admins) |
//! | `GET /feedback` | the feedback inbox with first-response times against the SLA |
//! | `GET /library` | the content library: gallery, search, collections, upload |
//! | `ANY /library/api/{*path}` | proxied to `{server.library_url}/api/{path}` (default `http://{server.library_addr}`) |
//! | `GET /events` | server-sent events: `run`, `gate`, `metric`, `heartbeat`; 429 over 4 streams per session or 256 in all |
//! | `GET /assets/dashboard.css`, `/assets/dashboard.js` | the embedded style and script |
//!
//! Identity is the admin API's: the SHA-256 of a token must be a
//! `reviewers.<id>.token_sha256` ([`concierto_admin::Identities`]). A session
//! is an `HttpOnly; SameSite=Strict` cookie sealing the reviewer id, the
//! token (which the library proxy passes on) and the expiry (XChaCha20-Poly1305,
//! key derived from [`DashboardOptions::csrf_key`]). Pages without a session redirect to `/login`; the SSE stream,
//! the proxy and every `POST` answer 401. State-changing requests carry the
//! feedback form's double-submit CSRF token (cookie and form field or
//! `X-CSRF-Token` header, [`concierto_feedback::form`]).
//!
//! Every response carries a Content-Security-Policy (no inline script or
//! style, nothing from elsewhere, no framing), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`;
//! cookies carry `Secure` with [`DashboardOptions::secure_cookies`] (see
//! `security.rs`).
//!
//! Gate decisions go to the orchestrator with the reviewer's id in
//! [`subjects::IDENTITY_HEADER`], so the orchestrator applies the gRPC API's
//! rules; its refusal is shown on the page. A service that is not running is
//! named on its page ("the orchestrator is not running"), never an empty 500.
//!
//! Any number of replicas can run: the dashboard keeps no data, and a session
//! opens on every replica sharing the key (`CONCIERTO_CSRF_KEY`), so no sticky
//! sessions are needed and a restart signs nobody out. Without the variable,
//! the key is made once into `<data_dir>/session.key`
//! ([`DashboardOptions::data_dir`], `data/dashboard` under `up` and `serve`)
//! and read again at every start. A sign-out is announced
//! to the running replicas on [`subjects::DASHBOARD_SIGNOUT`]; a replica started
//! after it would take a copy of that cookie until it expires (to end every
//! session of a reviewer at once, change their token in the studio file).
//!
//! A changed studio is taken live ([`DashboardState::take_studio`], the
//! handle's [`ServiceHandle::on_studio_change`]): the next request reads its
//! workflows, triggers, metric targets and reviewers, and signs in (or keeps
//! signed in) by its tokens. Addresses and cookie settings need a restart.
//!
//! [`subjects::IDENTITY_HEADER`]: concierto_core::subjects::IDENTITY_HEADER

mod actions;
mod auth;
mod dead_letters;
mod deliverables;
mod gates;
mod html;
mod library;
mod live;
mod markdown;
mod metrics;
mod pages;
mod run_page;
mod runs;
mod security;
mod services;
mod session_key;
mod spend;
mod triggers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing;
use concierto_admin::{Identities, Identity};
use concierto_bus::Bus;
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::live::NeedsRestart;
use concierto_core::service::ServiceHandle;
use concierto_feedback::Secret;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use crate::live::LiveEvent;

/// What can stop the dashboard from starting.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An option is out of range; the message says which.
    #[error("dashboard options: {0}")]
    Options(String),
    /// A bus subscription for the live updates failed.
    #[error("bus: {0}")]
    Bus(#[from] concierto_bus::BusError),
    /// The HTTP client of the library proxy could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The session key file could not be read or made.
    #[error("session key {path}: {message}")]
    SessionKey {
        /// The file (or folder).
        path: std::path::PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
}

/// Settings of the dashboard.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// Base URL of the content library's JSON API (`server.library_url`:
    /// where this process reaches the library, by default `http://` + `server.library_addr`).
    pub library_url: String,
    /// Longest wait for a service's answer on the bus.
    pub request_timeout: Duration,
    /// Longest wait for the content library (the whole proxied exchange).
    pub library_timeout: Duration,
    /// Largest body the proxy passes either way (an upload, a blob).
    pub library_max_bytes: usize,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Key of the CSRF tokens, from which the session key is derived (at
    /// least 16 bytes; `CONCIERTO_CSRF_KEY`: give every replica the same).
    /// `None`: the key in `<data_dir>/session.key`, made there once, so a
    /// restart signs nobody out; without a `data_dir` either, a random key
    /// per process (sign-ins end with it), with a warning.
    pub csrf_key: Option<Secret>,
    /// The dashboard's data folder (`<data>/dashboard` under `up` and
    /// `serve`), where the session key is kept when `csrf_key` is `None`.
    pub data_dir: Option<std::path::PathBuf>,
    /// How long a CSRF token is good for.
    pub csrf_ttl: Duration,
    /// Threshold crossings kept for the overview page.
    pub keep_thresholds: usize,
    /// Cookies carry `Secure`, so browsers send them over HTTPS only: set it
    /// when browsers reach the dashboard over HTTPS (a TLS-terminating proxy
    /// in front; the dashboard itself speaks plain HTTP). From the studio's
    /// `server.dashboard_secure_cookies` (false by default).
    pub secure_cookies: bool,
    /// Most `GET /events` streams one session may have open at once (4);
    /// another is answered 429.
    pub max_streams_per_session: usize,
    /// Most `GET /events` streams open at once in all (256).
    pub max_streams: usize,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            library_url: "http://127.0.0.1:8081".into(),
            request_timeout: Duration::from_secs(5),
            library_timeout: Duration::from_secs(30),
            library_max_bytes: 128 * 1024 * 1024,
            session_ttl: Duration::from_secs(12 * 3600),
            csrf_key: None,
            data_dir: None,
            csrf_ttl: Duration::from_secs(12 * 3600),
            keep_thresholds: 50,
            secure_cookies: false,
            max_streams_per_session: 4,
            max_streams: 256,
        }
    }
}

impl DashboardOptions {
    /// From the studio's `server` section (`server.library_url`,
    /// `server.dashboard_secure_cookies`).
    pub fn from_studio(studio: &Studio) -> Self {
        DashboardOptions {
            library_url: studio.server.library_url.clone(),
            secure_cookies: studio.server.dashboard_secure_cookies,
            ..Default::default()
        }
    }

    /// Checks the options; the error says which one to fix.
    pub fn validate(&self) -> Result<(), DashboardError> {
        let bad = |m: &str| Err(DashboardError::Options(m.to_string()));
        if !(self.library_url.starts_with("http://") || self.library_url.starts_with("https://")) {
            return bad("library_url must start with http:// or https://");
        }
        if self.csrf_key.as_ref().is_some_and(|k| k.len() < 16) {
            return bad("csrf_key must have at least 16 bytes");
        }
        if self.request_timeout.is_zero()
            || self.library_timeout.is_zero()
            || self.session_ttl.is_zero()
            || self.csrf_ttl.is_zero()
        {
            return bad("timeouts and lifetimes must be more than 0");
        }
        if self.library_max_bytes == 0 {
            return bad("library_max_bytes must be more than 0");
        }
        if self.max_streams == 0 || self.max_streams_per_session == 0 {
            return bad("max_streams and max_streams_per_session must be more than 0");
        }
        Ok(())
    }
}

/// Everything the pages share: cheap to clone.
#[derive(Clone)]
pub struct DashboardState {
    inner: Arc<Inner>,
}

/// The studio the next request reads, with its token identities.
struct Current {
    studio: Arc<Studio>,
    identities: Identities,
}

struct Inner {
    current: RwLock<Arc<Current>>,
    bus: Arc<dyn Bus>,
    clock: SharedClock,
    opts: DashboardOptions,
    /// The CSRF key in use (given, from the data folder, or random).
    csrf_key: Secret,
    http: reqwest::Client,
    session_cipher: chacha20poly1305::XChaCha20Poly1305,
    /// Signed-out sessions (id → when it would have expired).
    revoked: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    live: broadcast::Sender<LiveEvent>,
    thresholds: Mutex<VecDeque<live::Crossing>>,
    closing: watch::Sender<bool>,
    /// Open `GET /events` streams.
    streams: Mutex<security::Streams>,
}

impl DashboardState {
    /// The dashboard of `studio` over `bus`; identities from the studio's
    /// reviewers; `clock` for sessions, CSRF tokens and ages.
    pub fn new(
        studio: Arc<Studio>,
        bus: Arc<dyn Bus>,
        clock: SharedClock,
        opts: DashboardOptions,
    ) -> Result<Self, DashboardError> {
        opts.validate()?;
        let http = reqwest::Client::builder()
            .timeout(opts.library_timeout)
            .connect_timeout(opts.library_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DashboardError::Client(e.to_string()))?;
        let (live, _) = broadcast::channel(256);
        let (closing, _) = watch::channel(false);
        let (csrf_key, source) =
            session_key::resolve(opts.csrf_key.as_ref(), opts.data_dir.as_deref())?;
        match &source {
            session_key::KeySource::Given => {}
            session_key::KeySource::Read(p) => {
                tracing::debug!(file = %p.display(), "dashboard session key read")
            }
            session_key::KeySource::Made(p) => {
                tracing::info!(file = %p.display(), "dashboard session key made (kept for the next starts)")
            }
            session_key::KeySource::Unwritable(why) => tracing::warn!(
                error = %why,
                "no dashboard session key (CONCIERTO_CSRF_KEY) and none could be kept in the data folder: a random one for this process, so sign-ins end with it; set the variable (the same on every replica) or make the data folder writable"
            ),
            session_key::KeySource::Random => tracing::warn!(
                "no dashboard session key (CONCIERTO_CSRF_KEY) and no data folder: a random one for this process, so sign-ins end with it; set the variable (the same on every replica) or give the dashboard a data folder"
            ),
        }
        let session_cipher = auth::session_cipher(csrf_key.expose());
        Ok(DashboardState {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(Current {
                    identities: Identities::from_studio(&studio),
                    studio,
                })),
                bus,
                clock,
                opts,
                csrf_key,
                http,
                session_cipher,
                revoked: Mutex::new(HashMap::new()),
                live,
                thresholds: Mutex::new(VecDeque::new()),
                closing,
                streams: Mutex::new(security::Streams::default()),
            }),
        })
    }

    /// Subscribes to run, gate, threshold and heartbeat events and feeds the
    /// live hub (`GET /events`) until [`DashboardState::close`].
    pub async fn watch_bus(&self) -> Result<(), DashboardError> {
        live::watch_bus(self.clone()).await
    }

    /// Ends the live feeds and every open event stream (so a graceful
    /// shutdown does not wait for browsers).
    pub fn close(&self) {
        let _ = self.inner.closing.send(true);
    }

    /// Publishes an event to every open `GET /events` stream.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.inner.live.send(event);
    }

    /// Takes a changed studio: the next request reads it and signs in by
    /// its reviewers' tokens (a session whose token left is refused). Logs
    /// one line.
    pub fn take_studio(&self, studio: Arc<Studio>) {
        let next = Arc::new(Current {
            identities: Identities::from_studio(&studio),
            studio,
        });
        tracing::info!(
            identities = next.identities.len(),
            workflows = next.studio.workflows.len(),
            metrics = next.studio.progress_metrics.len(),
            "dashboard took the changed studio"
        );
        match self.inner.current.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
    }

    fn current(&self) -> Arc<Current> {
        match self.inner.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The studio now.
    pub(crate) fn studio(&self) -> Arc<Studio> {
        self.current().studio.clone()
    }

    /// Who `token` stands for in the studio now.
    pub(crate) fn identity_of(&self, token: &str) -> Option<Identity> {
        self.current().identities.by_token(token).cloned()
    }

    pub(crate) fn bus(&self) -> &dyn Bus {
        self.inner.bus.as_ref()
    }

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn opts(&self) -> &DashboardOptions {
        &self.inner.opts
    }

    /// The CSRF key in use.
    pub(crate) fn csrf_key(&self) -> &[u8] {
        self.inner.csrf_key.expose()
    }
}

/// The dashboard's routes (see the [crate docs](crate) for the table).
pub fn router(state: DashboardState) -> Router {
    let proxy_limit = state.opts().library_max_bytes;
    Router::new()
        .route("/healthz", routing::get(|| async { "ok" }))
        .route("/login", routing::get(auth::login_page).post(auth::login))
        .route("/logout", routing::post(auth::logout))
        .route("/", routing::get(metrics::overview))
        .route("/metrics/{name}", routing::get(metrics::metric))
        .route("/agents", routing::get(pages::agents))
        .route("/queue", routing::get(pages::queue))
        .route("/runs", routing::get(runs::list).post(runs::start))
        .route("/runs/{id}", routing::get(run_page::show))
        .route("/runs/{id}/cancel", routing::post(run_page::cancel))
        .route("/runs/{id}/retry", routing::post(run_page::retry))
        .route("/triggers", routing::get(triggers::list))
        .route("/triggers/{name}/fire", routing::post(triggers::fire))
        .route("/triggers/{name}/pause", routing::post(triggers::pause))
        .route("/gates", routing::get(gates::gates))
        .route("/gates/{id}", routing::get(gates::gate))
        .route("/gates/{id}/decide", routing::post(gates::decide))
        .route("/dead-letters", routing::get(dead_letters::list))
        .route("/dead-letters/{seq}", routing::get(dead_letters::show))
        .route(
            "/dead-letters/{seq}/replay",
            routing::post(dead_letters::replay),
        )
        .route("/feedback", routing::get(pages::feedback))
        .route("/deliverables", routing::get(deliverables::calendar))
        .route("/deliverables/{id}", routing::get(deliverables::show))
        .route("/library", routing::get(library::gallery))
        .route(
            "/library/api/{*path}",
            routing::any(library::proxy).layer(DefaultBodyLimit::max(proxy_limit)),
        )
        .route("/events", routing::get(live::events))
        .route("/assets/dashboard.css", routing::get(html::css))
        .route("/assets/dashboard.js", routing::get(html::js))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state)
}

/// Serves the dashboard on `addr` (`127.0.0.1:0` for any free port) with its
/// live feeds; returns the handle (stop: feeds and event streams end, then the
/// server drains) and the address it listens on.
pub async fn serve(
    state: DashboardState,
    addr: &str,
) -> Result<(ServiceHandle, SocketAddr), DashboardError> {
    serve_with(state, addr, Router::new()).await
}

/// [`serve`], with `extra` routes merged in beside the pages (the tracker's
/// `POST /api/metrics`, which checks its own bearer tokens).
pub async fn serve_with(
    state: DashboardState,
    addr: &str,
    extra: Router,
) -> Result<(ServiceHandle, SocketAddr), DashboardError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| DashboardError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    state.watch_bus().await?;
    let (handle, control) = ServiceHandle::new("dashboard");
    let handle = {
        let (state, started) = (state.clone(), state.studio());
        let restart = NeedsRestart::new("dashboard");
        handle.on_studio_change(move |next: Arc<Studio>| {
            let (was, now) = (&started.server, &next.server);
            restart.check(
                "server.dashboard_addr",
                &was.dashboard_addr,
                &now.dashboard_addr,
            );
            restart.check("server.library_url", &was.library_url, &now.library_url);
            restart.check(
                "server.dashboard_secure_cookies",
                &was.dashboard_secure_cookies.to_string(),
                &now.dashboard_secure_cookies.to_string(),
            );
            restart.check(
                "server.feedback.csrf_key_env",
                &was.feedback.csrf_key_env,
                &now.feedback.csrf_key_env,
            );
            state.take_studio(next);
        })
    };
    let mut stop = control.signal.clone();
    let extra = extra.layer(axum::middleware::from_fn(security::headers));
    let app = router(state.clone()).merge(extra);
    tokio::spawn(async move {
        // TCP_NODELAY: a small page or JSON answer goes out at once, not
        // after Nagle's algorithm and the browser's delayed ACK.
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
                }
            });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stop.stopped().await;
                state.close();
            })
            .await;
        tracing::info!("dashboard stopped");
        control.finished(served.map_err(|e| format!("dashboard: {e}")));
    });
    tracing::info!(addr = %local, "dashboard listening");
    Ok((handle, local))
}
