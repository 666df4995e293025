//! `concierto up`, `concierto serve` and `concierto agent`: the services of a
//! studio in one process on the embedded bus, or chosen services against NATS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use concierto_bus::{
    Bus, EmbeddedBus, NatsAuth, NatsBus, NatsOptions, NatsTls, StreamLimits,
    ensure_standard_streams, redact_url,
};
use concierto_core::clock::SharedClock;
use concierto_core::config::{self, Studio};
use concierto_core::live::LiveStudio;
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};

use crate::observability::Observability;

/// Services `serve` can run.
pub const SERVICES: &[&str] = &[
    "scheduler",
    "orchestrator",
    "admin",
    "feedback",
    "ingest",
    "tracker",
    "dashboard",
    "publisher",
    "feedback-router",
];

/// Loads a studio, printing every problem when it has errors.
pub fn load_studio(file: &Path) -> anyhow::Result<Arc<Studio>> {
    match config::load(file) {
        Ok(s) => Ok(Arc::new(s)),
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            bail!(
                "{} is not a valid studio (run `concierto validate {}`)",
                file.display(),
                file.display()
            )
        }
    }
}

/// Stream limits from `server.bus`.
pub fn stream_limits(studio: &Studio) -> StreamLimits {
    let b = &studio.server.bus;
    StreamLimits {
        max_age: b.max_age,
        max_bytes: b.max_bytes,
        max_msgs: b.max_msgs,
        duplicate_window: b.duplicate_window,
        replicas: b.replicas,
    }
}

fn open_store(data_dir: &Path, service: &str) -> anyhow::Result<Arc<dyn KvStore>> {
    let dir = data_dir.join(service);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Arc::new(SledStore::open(&dir)?))
}

/// How long the bus may take to flush when the process stops.
pub const STOP_FLUSH: Duration = Duration::from_secs(2);

/// SIGTERM and Ctrl-C (SIGINT), listened to from creation on: the first asks
/// for a stop, a second (during the stop) exits at once.
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}

impl Signals {
    /// Starts listening (until then SIGTERM ends the process at once, as
    /// while the services start).
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(signal = name, error = %e, "cannot listen to this signal");
                    None
                }
            };
            Signals {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Waits for the next signal; its name and the exit status it calls for
    /// when it cuts a stop short (128 + its number).
    pub async fn next(&mut self) -> (&'static str, i32) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        if s.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => ("SIGTERM", 143),
                _ = recv(&mut self.int) => ("SIGINT", 130),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ("Ctrl-C", 130)
        }
    }
}

/// Stops the process's services within `grace` of the first signal: the
/// groups of `groups` in reverse order ([`stop_all`]), then a flush of `bus`
/// (at most [`STOP_FLUSH`]; `bus` names what it is flushed to), then the
/// telemetry. A second signal meanwhile exits at once. When a service did not
/// stop within the grace, or the bus could not be flushed, it says which and
/// what, and exits with status 1 at once (what was not flushed is not waited
/// for). Returns after a clean stop.
async fn shut_down(
    groups: Vec<Vec<ServiceHandle>>,
    bus: Option<(&dyn Bus, String)>,
    obs: Observability,
    grace: Duration,
    mut signals: Signals,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + grace;
    let flush_target = bus.as_ref().map(|(_, target)| target.clone());
    let running = std::sync::Mutex::new(
        groups
            .iter()
            .flatten()
            .map(|h| h.name().to_string())
            .collect::<Vec<_>>(),
    );
    let stop = async {
        stop_all(groups, &running).await;
        let (bus, target) = bus?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let within = STOP_FLUSH.min(left);
        match tokio::time::timeout(within, bus.flush()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("the bus could not be flushed to {target}: {e}")),
            Err(_) => Some(format!(
                "the bus could not be flushed to {target} within {within:?}"
            )),
        }
    };
    let outcome = tokio::select! {
        outcome = tokio::time::timeout_at(deadline, stop) => outcome,
        (name, status) = signals.next() => {
            let left = names(&running);
            tracing::error!(signal = name, still_stopping = %left, "a second signal: exiting at once");
            eprintln!("concierto: {name} again while stopping: exiting at once (still stopping: {left})");
            std::process::exit(status);
        }
    };
    let mut problems = Vec::new();
    match outcome {
        Ok(None) => {}
        Ok(Some(unflushed)) => problems.push(format!(
            "{unflushed}; messages published since the last flush may not have reached it"
        )),
        Err(_) => {
            problems.push(format!(
                "did not stop within the grace period of {grace:?}: {} (what they hold is not \
                 flushed; work they did not acknowledge is delivered again after its ack_wait)",
                names(&running)
            ));
            if let Some(target) = flush_target {
                problems.push(format!(
                    "the bus was not flushed to {target}: messages published since the last \
                     flush may not have reached it"
                ));
            }
        }
    }
    // The metrics server and the last spans: within what is left, at least half a second.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if tokio::time::timeout(left.max(Duration::from_millis(500)), obs.finish())
        .await
        .is_err()
    {
        problems.push("the telemetry (metrics server, last spans) did not finish in time".into());
    }
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        tracing::error!(problem = %p, "unclean stop");
        eprintln!("concierto: unclean stop: {p}");
    }
    // Not returned: dropping the runtime would wait for whatever still runs.
    std::process::exit(1);
}

/// The names in `running`, comma-separated.
fn names(running: &std::sync::Mutex<Vec<String>>) -> String {
    running.lock().unwrap_or_else(|p| p.into_inner()).join(", ")
}

/// Starts a service; one of [`crate::leased::LEASED`] under its lease (one
/// active instance per studio, the others standbys).
async fn start_service(
    name: &str,
    live: &LiveStudio,
    file: &Path,
    bus: &Arc<dyn Bus>,
    data_dir: &Path,
    clock: &SharedClock,
) -> anyhow::Result<ServiceHandle> {
    if name == "orchestrator" {
        // Partitions, each under its own lease, written through to the bus
        // (concierto_orchestrator::partitions); one partition keeps the
        // single lease `orchestrator`.
        let studio = live.get();
        let mut popts = concierto_orchestrator::PartitionOptions::new(
            studio.server.partitions,
            crate::leased::holder_id(),
            data_dir,
        );
        popts.write_through = !bus.in_process();
        let opts = concierto_orchestrator::OrchestratorOptions {
            ack_wait: studio.server.bus.ack_wait,
            streams: stream_limits(&studio),
            limits: concierto_orchestrator::Limits::for_studio(&studio),
            studio_file: Some(file.to_path_buf()),
            ..Default::default()
        };
        return Ok(concierto_orchestrator::start_partitions(
            studio,
            bus.clone(),
            clock.clone(),
            opts,
            popts,
        )
        .await?);
    }
    let Some(service) = crate::leased::LEASED.iter().copied().find(|s| *s == name) else {
        return start_unleased(name, &live.get(), bus, data_dir, clock).await;
    };
    let (live, bus2, data_dir, clock) = (
        live.clone(),
        bus.clone(),
        data_dir.to_path_buf(),
        clock.clone(),
    );
    crate::leased::leased(bus, service, Default::default(), move || {
        // The studio as it is when the lease is taken (a standby may start
        // after changes).
        let (studio, bus, data_dir, clock) =
            (live.get(), bus2.clone(), data_dir.clone(), clock.clone());
        async move { start_unleased(service, &studio, &bus, &data_dir, &clock).await }
    })
    .await
}

async fn start_unleased(
    name: &str,
    studio: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
    data_dir: &Path,
    clock: &SharedClock,
) -> anyhow::Result<ServiceHandle> {
    match name {
        "scheduler" => {
            let store = open_store(data_dir, name)?;
            let opts = concierto_scheduler::SchedulerOptions {
                instance: format!("scheduler-{}", std::process::id()),
                ack_wait: studio.server.bus.ack_wait,
                ..Default::default()
            };
            Ok(
                concierto_scheduler::start(studio.clone(), bus.clone(), store, clock.clone(), opts)
                    .await?,
            )
        }
        "admin" => {
            let opts = concierto_admin::AdminOptions::from_studio(studio);
            let known = concierto_admin::identities(studio).len();
            if known == 0 {
                tracing::warn!(
                    "no reviewer has a token_sha256: every admin call will be refused (UNAUTHENTICATED)"
                );
            }
            let (handle, addr) = concierto_admin::start(studio.clone(), bus.clone(), opts).await?;
            tracing::info!(%addr, identities = known, "admin API (gRPC) listening");
            Ok(handle)
        }
        "feedback" => {
            let store = open_store(data_dir, name)?;
            let f = &studio.server.feedback;
            let secret = |var: &str| {
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(concierto_feedback::Secret::from)
            };
            let csrf_key = csrf_key(studio)?;
            let opts = concierto_feedback::FeedbackOptions {
                slack_signing_secret: secret(&f.slack_signing_secret_env),
                email_token: secret(&f.email_token_env),
                csrf_key,
                max_body_bytes: usize::try_from(f.max_body_bytes).unwrap_or(usize::MAX),
                form_max_body_bytes: usize::try_from(f.form_max_body_bytes).unwrap_or(usize::MAX),
                form_rate: concierto_feedback::FormRateLimit {
                    per_client_per_minute: f.form_per_client_per_minute,
                    per_minute: f.form_per_minute,
                    ..Default::default()
                },
                stream_limits: stream_limits(studio),
                gate_notifications: concierto_feedback::GateNotifications::from_studio(
                    studio,
                    secret(&f.slack_bot_token_env),
                    &f.slack_api_base,
                ),
                channels: concierto_feedback::channels::channels_of(studio),
                ..Default::default()
            };
            if opts.slack_signing_secret.is_none() {
                tracing::warn!(var = %f.slack_signing_secret_env, "no Slack signing secret in the environment: the Slack routes answer 404");
            }
            if opts.email_token.is_none() {
                tracing::warn!(var = %f.email_token_env, "no inbound-mail token in the environment: /email/inbound answers 404");
            }
            let addr: std::net::SocketAddr = studio
                .server
                .http_addr
                .parse()
                .with_context(|| format!("server.http_addr {:?}", studio.server.http_addr))?;
            let server =
                concierto_feedback::start(addr, bus.clone(), store, clock.clone(), opts).await?;
            tracing::info!(addr = %server.local_addr, "feedback intake (Slack, email, web form) listening");
            Ok(server.taking_studio_changes(studio.clone()).handle)
        }
        "ingest" => {
            // The ingester's cursors in data/ingest/state, the content library
            // (store and search index) in data/ingest/library.
            let dir = data_dir.join(name);
            let state_dir = dir.join("state");
            std::fs::create_dir_all(&state_dir)
                .with_context(|| format!("creating {}", state_dir.display()))?;
            let store: Arc<dyn KvStore> = Arc::new(SledStore::open(&state_dir)?);
            let library = concierto_content::ContentLibrary::open(&dir.join("library"))
                .with_context(|| format!("opening the content library in {}", dir.display()))?
                .with_clock(clock.clone());
            let library = Arc::new(library);
            let ingester = concierto_ingest::start(
                studio.clone(),
                bus.clone(),
                library.clone(),
                store,
                clock.clone(),
                ingest_options(studio),
            )
            .await?;
            // The content library's JSON API, in the same process: the library
            // is opened by one process only.
            let api = serve_library(studio, library).await?;
            // A changed studio goes to both.
            let hooks: Vec<_> = [ingester.studio_hook(), api.studio_hook()]
                .into_iter()
                .flatten()
                .collect();
            let (handle, control) = ServiceHandle::new("ingest");
            let handle = handle.on_studio_change(move |s| hooks.iter().for_each(|h| h(s.clone())));
            tokio::spawn(async move {
                let mut stop = control.signal.clone();
                stop.stopped().await;
                let a = api.stop().await;
                let b = ingester.stop().await;
                control.finished(a.and(b));
            });
            Ok(handle)
        }
        "publisher" => {
            // Deliverables out of the system: the library, folders, webhooks, Slack.
            let store = open_store(data_dir, name)?;
            let opts = concierto_publish::PublisherOptions {
                ack_wait: studio.server.bus.ack_wait,
                streams: stream_limits(studio),
                ..Default::default()
            };
            Ok(
                concierto_publish::start(studio.clone(), bus.clone(), store, clock.clone(), opts)
                    .await?,
            )
        }
        "feedback-router" => {
            // Replies to feedback on its own channel (concierto-router).
            let store = open_store(data_dir, name)?;
            Ok(concierto_router::start_live(
                bus.clone(),
                store,
                clock.clone(),
                crate::router_opts::options(studio),
                crate::router_opts::build,
            )
            .await?)
        }
        "tracker" => {
            let store = open_store(data_dir, name)?;
            let opts = concierto_tracker::TrackerOptions {
                ack_wait: studio.server.bus.ack_wait,
                streams: stream_limits(studio),
                ..Default::default()
            };
            let tracker =
                concierto_tracker::start(studio.clone(), bus.clone(), store, clock.clone(), opts)
                    .await?;
            // Its metrics and health join this process's `/metrics`.
            let view = tracker.view();
            concierto_telemetry::metrics::add_text_source(Arc::new(move || view.prometheus_text()));
            Ok(tracker.into_handle())
        }
        "dashboard" => {
            // Stateless: sessions are sealed cookies, so any number of replicas
            // sharing the key (server.feedback.csrf_key_env) serve every browser;
            // without it, the key made once into <data>/dashboard/session.key.
            let opts = concierto_dashboard::DashboardOptions {
                csrf_key: env_csrf_key(studio)?,
                data_dir: Some(data_dir.join("dashboard")),
                ..concierto_dashboard::DashboardOptions::from_studio(studio)
            };
            let state = concierto_dashboard::DashboardState::new(
                studio.clone(),
                bus.clone(),
                clock.clone(),
                opts,
            )?;
            // Engagement samples and the like, posted by scripts with a reviewer token.
            let metrics =
                concierto_tracker::router(bus.clone(), concierto_admin::identities(studio));
            let (handle, addr) =
                concierto_dashboard::serve_with(state, &studio.server.dashboard_addr, metrics)
                    .await?;
            tracing::info!(%addr, "dashboard listening (sign in with a reviewer token)");
            Ok(handle)
        }
        other => bail!("unknown service {other:?}; known: {}", SERVICES.join(", ")),
    }
}

/// The web forms' CSRF key (the dashboard also seals its sessions with it),
/// from the variable `server.feedback.csrf_key_env` names; without it, a
/// random key per process, with a warning.
fn csrf_key(studio: &Studio) -> anyhow::Result<concierto_feedback::Secret> {
    match env_csrf_key(studio)? {
        Some(k) => Ok(k),
        None => {
            let var = &studio.server.feedback.csrf_key_env;
            tracing::warn!(var = %var, "no CSRF key in the environment: a random one per process (feedback forms do not survive a restart, and replicas do not share them)");
            Ok(concierto_feedback::Secret::random())
        }
    }
}

/// The key from the variable `server.feedback.csrf_key_env` names, if set.
fn env_csrf_key(studio: &Studio) -> anyhow::Result<Option<concierto_feedback::Secret>> {
    let var = &studio.server.feedback.csrf_key_env;
    match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        Some(k) if k.len() >= 16 => Ok(Some(concierto_feedback::Secret::from(k))),
        Some(_) => bail!("{var} must hold at least 16 bytes (the web forms' CSRF and session key)"),
        None => Ok(None),
    }
}

/// Serves the content library's JSON API on `server.library_addr`; writes,
/// and reads unless `server.library_public`, need a token of the studio's
/// `reviewers` (as the admin API).
async fn serve_library(
    studio: &Arc<Studio>,
    library: Arc<concierto_content::ContentLibrary>,
) -> anyhow::Result<ServiceHandle> {
    // Tokens and `server.library_public` follow the studio (see the hook below).
    let identities = Arc::new(std::sync::RwLock::new(Arc::new(
        concierto_admin::identities(studio),
    )));
    let current = identities.clone();
    let auth: concierto_content::TokenAuth = Arc::new(move |token: &str| {
        let ids = current.read().unwrap_or_else(|p| p.into_inner()).clone();
        ids.by_token(token).map(|i| i.id.clone())
    });
    let (router, api) = concierto_content::router_with_control(
        library,
        auth,
        concierto_content::ApiOptions::for_studio(studio),
    );
    let router = concierto_telemetry::server::count_http(router, "ingest");
    let addr = studio.server.library_addr.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on server.library_addr {addr}"))?;
    let local = listener.local_addr()?;
    let (handle, control) = ServiceHandle::new("library");
    let (started, restart) = (
        studio.clone(),
        concierto_core::live::NeedsRestart::new("ingest"),
    );
    let handle = handle.on_studio_change(move |next: Arc<Studio>| {
        restart.check(
            "server.library_addr",
            &started.server.library_addr,
            &next.server.library_addr,
        );
        api.follow_studio(&next);
        let ids = Arc::new(concierto_admin::identities(&next));
        tracing::info!(
            identities = ids.len(),
            public_reads = next.server.library_public,
            "content library API took the changed studio"
        );
        *identities.write().unwrap_or_else(|p| p.into_inner()) = ids;
    });
    let mut stop = control.signal.clone();
    tokio::spawn(async move {
        let served = axum::serve(concierto_telemetry::server::no_delay(listener), router)
            .with_graceful_shutdown(async move { stop.stopped().await })
            .await;
        control.finished(served.map_err(|e| format!("content library API: {e}")));
    });
    tracing::info!(addr = %local, "content library API (JSON) listening");
    Ok(handle)
}

/// The ingester's options for `studio`: vision models for the sources whose
/// role runs on a model executor.
fn ingest_options(studio: &Studio) -> concierto_ingest::IngestOptions {
    let vision = concierto_ingest::Vision::for_studio(studio);
    if !vision.is_empty() {
        tracing::info!(?vision, "pictures are shown to vision models");
    }
    concierto_ingest::IngestOptions {
        vision: (!vision.is_empty()).then_some(vision),
        ..Default::default()
    }
}

/// The studio of `file` as a live value, with the reloader that keeps it up
/// to date (started by the caller once the services run).
fn live_studio(
    file: &Path,
    studio: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
) -> (LiveStudio, Arc<crate::reload::Reloader>) {
    let live = LiveStudio::new(studio.clone());
    let reloader = crate::reload::Reloader::new(file, live.clone(), bus.clone());
    (live, reloader)
}

async fn start_workers(
    studio: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
    role: &str,
    replicas: u32,
    id_prefix: &str,
) -> anyhow::Result<Vec<ServiceHandle>> {
    let def = studio
        .roles
        .get(role)
        .with_context(|| format!("no role {role:?} in the studio's role files"))?
        .clone();
    // The role's tools (its `tools:` line): Concierto's own over the bus, and
    // MCP servers' tools (one connection per server, shared by the replicas).
    let mut toolbox = concierto_agent::tools::builtin_toolbox(studio, &def, bus.clone());
    for tool in concierto_agent::tools::mcp::mcp_tools(studio, &def.tools).await? {
        toolbox.push(tool);
    }
    let executor = concierto_agent::executor_with_tools(studio, role, toolbox)?;
    let settings = studio.agents.roles.get(role);
    let mut out = Vec::new();
    for i in 0..replicas.max(1) {
        let opts = concierto_agent::WorkerOptions {
            worker_id: format!("{id_prefix}{i}"),
            max_in_flight: settings.and_then(|s| s.max_in_flight).unwrap_or(4) as usize,
            ack_wait: studio.server.bus.ack_wait,
            max_deliver: studio.server.bus.max_deliver,
            context: concierto_agent::ContextOptions::for_studio(studio),
            ..Default::default()
        };
        out.push(
            concierto_agent::start_worker(def.clone(), executor.clone(), bus.clone(), opts).await?,
        );
    }
    Ok(out)
}

/// Stops services in groups, last group first; the services of one group stop
/// together (e.g. every agent worker drains at once). Each service's name leaves
/// `running` once it has stopped.
async fn stop_all(groups: Vec<Vec<ServiceHandle>>, running: &std::sync::Mutex<Vec<String>>) {
    for group in groups.into_iter().rev() {
        let stops = group.into_iter().map(|h| async move {
            let name = h.name().to_string();
            if let Err(e) = h.stop().await {
                tracing::error!(service = %name, error = %e, "stopped with an error");
            }
            let mut left = running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = left.iter().position(|n| *n == name) {
                left.remove(i);
            }
        });
        futures::future::join_all(stops).await;
    }
}

/// `concierto up`: every service in one process on the embedded bus.
pub async fn up(
    file: &Path,
    nats: Option<String>,
    data_dir: Option<PathBuf>,
    log_json: bool,
    grace: Duration,
    new_token: bool,
) -> anyhow::Result<()> {
    let studio = load_studio(file)?;
    let obs = Observability::start(&studio, "concierto", log_json).await?;
    let data_dir = data_dir.unwrap_or_else(|| studio.server.data_dir.clone());
    // The first-run admin (no reviewer of the file has a token): in memory
    // at start and on every reload (crate::first_run).
    let first_run = crate::first_run::prepare(&studio, &data_dir, new_token)?;
    let studio = match &first_run {
        Some(fr) => Arc::new(crate::first_run::overlay((*studio).clone(), &fr.hash)),
        None => studio,
    };
    // The embedded bus unless `--nats` names a server: then the same services
    // in one process share that server with other processes and tools.
    let bus: Arc<dyn Bus> = match &nats {
        None => {
            let bus: Arc<dyn Bus> =
                Arc::new(EmbeddedBus::new(studio.server.subject_prefix.clone()));
            ensure_standard_streams(bus.as_ref(), &stream_limits(&studio)).await?;
            bus
        }
        Some(url) => connect(url, &studio, "concierto-up").await?,
    };
    let clock: SharedClock = concierto_core::clock::from_env();
    let (live, reloader) = live_studio(file, &studio, &bus);
    if let Some(fr) = &first_run {
        reloader.set_overlay(crate::first_run::overlay_fn(fr));
    }
    // Stopped in reverse: the scheduler first, then the workers drain, then the orchestrator.
    let mut handles = vec![vec![
        start_service("orchestrator", &live, file, &bus, &data_dir, &clock).await?,
    ]];
    let mut workers = Vec::new();
    for role in studio.roles.keys() {
        let replicas = studio
            .agents
            .roles
            .get(role)
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        workers.extend(start_workers(&studio, &bus, role, replicas, "up-").await?);
    }
    handles.push(workers);
    handles.push(vec![
        start_service("scheduler", &live, file, &bus, &data_dir, &clock).await?,
        start_service("admin", &live, file, &bus, &data_dir, &clock).await?,
        start_service("feedback", &live, file, &bus, &data_dir, &clock).await?,
        start_service("ingest", &live, file, &bus, &data_dir, &clock).await?,
        start_service("tracker", &live, file, &bus, &data_dir, &clock).await?,
        start_service("dashboard", &live, file, &bus, &data_dir, &clock).await?,
        start_service("publisher", &live, file, &bus, &data_dir, &clock).await?,
        start_service("feedback-router", &live, file, &bus, &data_dir, &clock).await?,
    ]);
    tracing::info!(
        studio = %studio.studio.name,
        roles = studio.roles.len(),
        triggers = studio.triggers.len(),
        data = %data_dir.display(),
        "studio up; Ctrl-C stops it"
    );
    println!("{}", executor_table(&studio));
    if let Some(fr) = &first_run {
        // On stdout only: the token is never logged.
        println!("{}", crate::first_run::message(fr, &studio));
    }
    reloader.watch(handles.iter().flatten());
    handles.push(vec![reloader.start()]);
    obs.ready();
    let mut signals = Signals::new();
    let (signal, _) = signals.next().await;
    tracing::info!(signal, ?grace, "stopping");
    obs.stopping();
    let target = nats.map(|url| format!("NATS at {}", redact_url(&url)));
    let flush = target.as_ref().map(|t| (bus.as_ref(), t.clone()));
    shut_down(handles, flush, obs, grace, signals).await
}

/// Which executor and model each role runs on, as `up` prints it.
pub fn executor_table(studio: &Studio) -> String {
    let rows = crate::local_cmds::role_rows(studio);
    let width = rows.iter().map(|r| r.role.len()).max().unwrap_or(4);
    let mut out = format!(
        "roles and their executors (default {:?}; set {} to switch):\n",
        studio.agents.default_executor,
        concierto_core::config::EXECUTOR_SWITCH
    );
    for r in rows {
        out.push_str(&format!(
            "  {:width$}  {} ({}, {})\n",
            r.role,
            r.executor,
            r.kind,
            if r.model.is_empty() { "-" } else { &r.model },
        ));
    }
    out.trim_end().to_string()
}

async fn connect(url: &str, studio: &Studio, name: &str) -> anyhow::Result<Arc<dyn Bus>> {
    let opts = nats_options(studio, name, url, |var| std::env::var(var).ok())?;
    let who = opts.auth.describe();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(url, opts).await?);
    tracing::info!(nats = %redact_url(url), login = %who, "connected to NATS");
    ensure_standard_streams(bus.as_ref(), &stream_limits(studio)).await?;
    Ok(bus)
}

/// `concierto serve`: chosen services against NATS.
pub async fn serve(
    file: &Path,
    services: &[String],
    nats: Option<String>,
    data_dir: Option<PathBuf>,
    log_json: bool,
    grace: Duration,
) -> anyhow::Result<()> {
    if services.is_empty() {
        bail!("name the services to run: {}", SERVICES.join(", "));
    }
    for s in services {
        if !SERVICES.contains(&s.as_str()) {
            bail!("unknown service {s:?}; known: {}", SERVICES.join(", "));
        }
    }
    let studio = load_studio(file)?;
    let obs = Observability::start_on(
        &studio,
        &format!("concierto-{}", services.join("-")),
        log_json,
        &crate::metrics_ports::serve_addr(&studio.server.metrics_addr, services),
    )
    .await?;
    let url = nats.unwrap_or_else(|| studio.server.nats_url.clone());
    let data_dir = data_dir.unwrap_or_else(|| studio.server.data_dir.clone());
    let bus = connect(
        &url,
        &studio,
        &format!("concierto-serve-{}", services.join("-")),
    )
    .await?;
    let clock: SharedClock = concierto_core::clock::from_env();
    let (live, reloader) = live_studio(file, &studio, &bus);
    let mut handles = Vec::new();
    for s in services {
        handles.push(vec![
            start_service(s, &live, file, &bus, &data_dir, &clock).await?,
        ]);
        tracing::info!(service = %s, nats = %redact_url(&url), "service started");
    }
    reloader.watch(handles.iter().flatten());
    handles.push(vec![reloader.start()]);
    obs.ready();
    let mut signals = Signals::new();
    let (signal, _) = signals.next().await;
    tracing::info!(signal, ?grace, "stopping");
    obs.stopping();
    let target = format!("NATS at {}", redact_url(&url));
    shut_down(handles, Some((bus.as_ref(), target)), obs, grace, signals).await
}

/// The roles one `concierto agent` process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRoles {
    /// These roles (`--role a --role b`, `--role a,b`).
    Named(Vec<String>),
    /// Every role of the studio but these (`--all-roles --except a`).
    AllExcept(Vec<String>),
}

impl AgentRoles {
    /// The roles of `studio` this selects, in the studio's order; every name
    /// must be a role of the studio, and at least one role must be left.
    pub fn resolve(&self, studio: &Studio) -> anyhow::Result<Vec<String>> {
        let names = match self {
            AgentRoles::Named(n) | AgentRoles::AllExcept(n) => n,
        };
        for n in names {
            if !studio.roles.contains_key(n) {
                bail!(
                    "no role {n:?} in the studio's role files; roles: {}",
                    studio.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let roles: Vec<String> = match self {
            AgentRoles::Named(n) => {
                let mut out: Vec<String> = Vec::new();
                for r in n {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
                out
            }
            AgentRoles::AllExcept(except) => studio
                .roles
                .keys()
                .filter(|r| !except.contains(r))
                .cloned()
                .collect(),
        };
        if roles.is_empty() {
            bail!("no role left to run");
        }
        Ok(roles)
    }
}

/// `concierto agent`: workers of one or more roles against NATS.
pub async fn agent(
    file: &Path,
    roles: &AgentRoles,
    replicas: u32,
    id: Option<String>,
    nats: Option<String>,
    log_json: bool,
    grace: Duration,
) -> anyhow::Result<()> {
    let studio = load_studio(file)?;
    let roles = roles.resolve(&studio)?;
    let url = nats.unwrap_or_else(|| studio.server.nats_url.clone());
    let name = match roles.as_slice() {
        [one] => format!("concierto-agent-{one}"),
        many => format!("concierto-agent-{}-roles", many.len()),
    };
    let obs = Observability::start_on(
        &studio,
        &name,
        log_json,
        &crate::metrics_ports::agent_addr(&studio.server.metrics_addr),
    )
    .await?;
    let bus = connect(&url, &studio, &name).await?;
    let prefix = id.unwrap_or_else(|| format!("{}-", std::process::id()));
    let mut handles = Vec::new();
    for role in &roles {
        handles.extend(start_workers(&studio, &bus, role, replicas, &prefix).await?);
    }
    tracing::info!(roles = %roles.join(","), replicas, nats = %redact_url(&url), "agent workers started");
    obs.ready();
    let mut signals = Signals::new();
    let (signal, _) = signals.next().await;
    tracing::info!(signal, ?grace, "draining");
    obs.stopping();
    let target = format!("NATS at {}", redact_url(&url));
    shut_down(
        vec![handles],
        Some((bus.as_ref(), target)),
        obs,
        grace,
        signals,
    )
    .await
}

/// `concierto mcp`: Concierto's tools as an MCP server on stdio. stdout is the
/// protocol's, so logs go to stderr and no telemetry endpoint is started.
pub async fn mcp(file: &Path, nats: Option<String>) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let studio = load_studio(file)?;
    let url = nats.unwrap_or_else(|| studio.server.nats_url.clone());
    let bus = connect(&url, &studio, "concierto-mcp").await?;
    let toolbox = concierto_agent::tools::concierto_toolbox(&studio, bus.clone());
    concierto_agent::tools::mcp_server::serve_stdio(toolbox).await?;
    Ok(())
}

/// How this process connects to NATS: `server.bus` with its secrets from the
/// environment (`env` looks a variable up) or the files it names. At most one
/// way to log in: a credentials file, an nkey seed, a token, or a user
/// (`server.bus.user`, else `CONCIERTO_NATS_USER`) with its password.
pub fn nats_options(
    studio: &Studio,
    client_name: &str,
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<NatsOptions> {
    let a = &studio.server.bus.auth;
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut ways: Vec<(String, NatsAuth)> = Vec::new();
    if let Some(path) = &a.creds_file {
        ways.push((
            format!("the credentials file {}", path.display()),
            NatsAuth::CredsFile(path.clone()),
        ));
    }
    if let Some(path) = &a.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .with_context(|| format!("reading the NATS nkey seed file {}", path.display()))?;
        ways.push((
            format!("the nkey seed file {}", path.display()),
            NatsAuth::NKey(seed.trim().to_string()),
        ));
    }
    if let Some(seed) = var(&a.nkey_seed_env) {
        ways.push((
            format!("the nkey seed in {}", a.nkey_seed_env),
            NatsAuth::NKey(seed.trim().to_string()),
        ));
    }
    if let Some(token) = var(&a.token_env) {
        ways.push((
            format!("the token in {}", a.token_env),
            NatsAuth::Token(token),
        ));
    }
    let user = a
        .user
        .clone()
        .or_else(|| var(concierto_core::config::BusAuth::USER_ENV));
    match (user, var(&a.password_env)) {
        (Some(user), Some(password)) => ways.push((
            format!("user {user} with the password in {}", a.password_env),
            NatsAuth::UserPassword { user, password },
        )),
        (Some(user), None) => bail!(
            "NATS user {user} has no password: set {} (the variable server.bus.password_env names)",
            a.password_env
        ),
        (None, Some(_)) => bail!(
            "{} holds a NATS password but no user is given: set server.bus.user or {}",
            a.password_env,
            concierto_core::config::BusAuth::USER_ENV
        ),
        (None, None) => {}
    }
    if ways.len() > 1 {
        let names: Vec<&str> = ways.iter().map(|(n, _)| n.as_str()).collect();
        bail!(
            "more than one way to log in to NATS is given ({}): keep one",
            names.join("; ")
        );
    }
    let auth = ways.pop().map(|(_, a)| a).unwrap_or_default();
    if auth != NatsAuth::None && redact_url(url) != url {
        bail!(
            "the NATS URL {} carries credentials and server.bus gives {}: keep one",
            redact_url(url),
            auth.describe()
        );
    }
    let tls = studio.server.bus.tls.as_ref().map(|t| NatsTls {
        ca: t.ca.clone(),
        client_cert: t.cert.clone().zip(t.key.clone()),
        required: t.required,
    });
    Ok(NatsOptions {
        prefix: studio.server.subject_prefix.clone(),
        client_name: client_name.to_string(),
        connect_timeout: Duration::from_secs(10),
        auth,
        tls,
        // `_INBOX.<user>` for a user (NatsBus::connect): the only inboxes its
        // NATS permissions let it read (deploy/nats/nats.conf).
        inbox_prefix: None,
        // Every stream and bucket this process creates (leases, dead letters).
        replicas: studio.server.bus.replicas,
    })
}

#[cfg(test)]
mod nats_options_tests {
    use std::collections::HashMap;

    use super::*;

    fn studio(bus: &str) -> (tempfile::TempDir, Studio) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seed.nk"), "SUAEXAMPLESEED\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "pem").unwrap();
        let file = dir.path().join("concierto.yaml");
        std::fs::write(
            &file,
            format!("agents:\n  paths: []\nserver:\n  bus:\n{bus}"),
        )
        .unwrap();
        let studio = config::load_with_env(&file, Vec::new()).unwrap();
        (dir, studio)
    }

    fn opts(studio: &Studio, env: &[(&str, &str)]) -> anyhow::Result<NatsOptions> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        nats_options(studio, "test", "nats://nats:4222", |k| env.get(k).cloned())
    }

    #[test]
    fn the_default_variables_give_a_user_and_its_password() {
        let (_d, s) = studio("    max_deliver: 5\n");
        assert_eq!(opts(&s, &[]).unwrap().auth, NatsAuth::None);
        let o = opts(
            &s,
            &[
                ("CONCIERTO_NATS_USER", "agent"),
                ("CONCIERTO_NATS_PASSWORD", "pw-1"),
            ],
        )
        .unwrap();
        assert_eq!(
            o.auth,
            NatsAuth::UserPassword {
                user: "agent".into(),
                password: "pw-1".into()
            }
        );
        assert!(
            !format!("{o:?}").contains("pw-1"),
            "Debug hides the password"
        );
        let o = opts(&s, &[("CONCIERTO_NATS_TOKEN", "tok")]).unwrap();
        assert_eq!(o.auth, NatsAuth::Token("tok".into()));
    }

    #[test]
    fn the_configured_user_variable_file_and_tls_are_used() {
        let (d, s) =
            studio("    user: orchestrator\n    password_env: ORCH_PW\n    tls: { ca: ca.pem }\n");
        let o = opts(&s, &[("ORCH_PW", "pw-2"), ("CONCIERTO_NATS_USER", "other")]).unwrap();
        assert_eq!(
            o.auth,
            NatsAuth::UserPassword {
                user: "orchestrator".into(),
                password: "pw-2".into()
            }
        );
        let tls = o.tls.unwrap();
        assert_eq!(tls.ca, Some(d.path().join("ca.pem")));
        assert!(tls.required);
        let (_d, s) = studio("    nkey_seed_file: seed.nk\n");
        assert_eq!(
            opts(&s, &[]).unwrap().auth,
            NatsAuth::NKey("SUAEXAMPLESEED".into())
        );
    }

    #[test]
    fn missing_or_ambiguous_credentials_are_errors_that_name_the_variable() {
        let (_d, s) = studio("    user: orchestrator\n");
        let e = opts(&s, &[]).unwrap_err().to_string();
        assert!(
            e.contains("orchestrator has no password") && e.contains("CONCIERTO_NATS_PASSWORD"),
            "{e}"
        );
        let (_d, s) = studio("    max_deliver: 5\n");
        let e = opts(&s, &[("CONCIERTO_NATS_PASSWORD", "pw")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no user is given"), "{e}");
        let e = opts(
            &s,
            &[
                ("CONCIERTO_NATS_USER", "agent"),
                ("CONCIERTO_NATS_PASSWORD", "pw-3"),
                ("CONCIERTO_NATS_TOKEN", "tok-3"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than one way"), "{e}");
        assert!(
            !e.contains("pw-3") && !e.contains("tok-3"),
            "no secret in {e}"
        );
        let env: HashMap<String, String> =
            [("CONCIERTO_NATS_TOKEN".to_string(), "tok".to_string())].into();
        let e = nats_options(&s, "t", "nats://u:secret@nats:4222", |k| {
            env.get(k).cloned()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("carries credentials") && !e.contains("secret@"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod agent_roles_tests {
    use super::*;

    fn example() -> Arc<Studio> {
        load_studio(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/concierto.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn all_roles_except_leaves_out_the_named_ones_and_keeps_the_rest() {
        let studio = example();
        let roles = AgentRoles::AllExcept(vec!["content-creator".into()])
            .resolve(&studio)
            .unwrap();
        assert_eq!(roles.len(), studio.roles.len() - 1);
        assert!(!roles.contains(&"content-creator".to_string()));
        assert!(roles.contains(&"brand-guardian".to_string()));
    }

    #[test]
    fn named_roles_are_checked_and_deduplicated() {
        let studio = example();
        let roles = AgentRoles::Named(vec![
            "brand-guardian".into(),
            "content-creator".into(),
            "brand-guardian".into(),
        ])
        .resolve(&studio)
        .unwrap();
        assert_eq!(roles, ["brand-guardian", "content-creator"]);
        let err = AgentRoles::Named(vec!["content-creater".into()])
            .resolve(&studio)
            .unwrap_err();
        assert!(
            err.to_string().contains("no role \"content-creater\""),
            "{err}"
        );
        let err = AgentRoles::AllExcept(vec!["nobody".into()])
            .resolve(&studio)
            .unwrap_err();
        assert!(err.to_string().contains("no role \"nobody\""), "{err}");
    }

    #[test]
    fn excepting_every_role_is_an_error() {
        let studio = example();
        let all: Vec<String> = studio.roles.keys().cloned().collect();
        let err = AgentRoles::AllExcept(all).resolve(&studio).unwrap_err();
        assert!(err.to_string().contains("no role left"), "{err}");
    }
}
