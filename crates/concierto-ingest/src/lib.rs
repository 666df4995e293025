//! The ingester: reads the studio's `content_sources` into the content library
//! and announces every new or changed item on `content.ingested.<source>`, which
//! is what `on_new_inspiration` triggers fire on.
//!
//! ```text
//!  IngestSupervisor (actor) ── one SourceActor per enabled source, one
//!                               LearnerActor per learner; a panicking one
//!                               starts again after its backoff (1 s doubling
//!                               to 60 s), the others go on
//!  content_sources (one SourceActor each, on its refresh)
//!   image_database / component_library ── walk the folder (confined to its root),
//!   training_data                         notify watcher for `on_update`
//!   web_scraper ── Fetcher: allow list, public addresses only (unless the
//!                  source says `allow_private_networks`), robots.txt, per-host
//!                  rate limit, ETag / Last-Modified, size limit, timeout
//!                  └─ RSS / Atom / JSON Feed (feed-rs), or an HTML listing → item pages
//!   twitter_stream ── X API v2 user timeline, since_id cursor, rate-limit headers
//!        │ NewItem (batches)
//!        ▼
//!  ContentLibrary::put_many (blocking thread) ── Put { outcome }
//!        │ New | Changed                       Unchanged → nothing
//!        ▼
//!  outbox (store tree `ingest`, key pending/<id>) ── publish_durable(content.ingested.<source>,
//!                                                     ContentItem, msg id = item id) ── delete
//! ```
//!
//! State kept in the store (tree [`TREE`]): per-file fingerprints (size and
//! modification time, so an unchanged file is not read again), HTTP validators
//! per URL, the X user id and `since_id` cursor, the time of each source's last
//! scan, and the announcements not yet published.
//!
//! Bad input (a feed that is not XML, a truncated image, a page in an odd
//! encoding, an API error) is logged with the source's name and skipped; the
//! source's actor keeps going and the next cycle tries again. A panic while
//! reading (a bug, or a library tripping on hostile input) ends only that
//! source's actor; the supervisor starts it again after its backoff
//! ([`IngestOptions::restart_backoff`]; the `supervisor` module says how).
//!
//! The ingester runs actix actors: [`start`] must be called inside an actix
//! `System` (`actix::System::with_tokio_rt`, or `#[actix_rt::test]` in
//! tests); outside one it returns [`IngestError::NoSystem`].

pub mod analytics;
mod announce;
pub mod deliverables;
mod error;
pub mod feedback_learn;
pub mod fetch;
mod folder;
mod http;
mod ingester;
mod learner;
mod learner_actor;
mod live;
mod netguard;
mod robots;
mod runner;
pub mod search;
mod supervisor;
mod training;
mod vision;
mod web;
mod x;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use concierto_bus::{Bus, StreamLimits, standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::SharedClock;
use concierto_core::config::Studio;
use concierto_core::live::LiveStudio;
use concierto_core::service::ServiceHandle;
use concierto_core::store::KvStore;
use concierto_core::subjects::{CONTENT_INGESTED, CONTEXT};

pub use announce::content_item;
pub use error::IngestError;
pub use ingester::{CycleReport, Ingester};
pub use learner::{
    CAMPAIGN_INSIGHTS, Learned, PATTERN_RECOGNITION, TREND_REPORT, TrendAudience,
    stored_campaign_insights, stored_trend_report, trend_audience,
};
pub use robots::Robots;
pub use vision::{
    INSTRUCTION as VISION_INSTRUCTION, MAX_IMAGE_BYTES, Vision, parse_concepts, vision_sources,
};

/// The store tree the ingester keeps its cursors, fingerprints and outbox in.
pub const TREE: &str = "ingest";

/// How long a stopping ingester waits for the bus to flush.
pub const STOP_FLUSH: Duration = Duration::from_secs(2);

/// A test hook called with a source's (or learner's) name in the task that
/// reads it (computes it), before each read: a panic there is a panicking
/// source, which tests use to check the supervisor's restarts. Production
/// code leaves [`IngestOptions::before_read`] at `None`.
#[derive(Clone)]
pub struct ReadHook(Arc<dyn Fn(&str) + Send + Sync>);

impl ReadHook {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        ReadHook(Arc::new(f))
    }

    pub(crate) fn call(&self, name: &str) {
        (self.0)(name)
    }
}

impl std::fmt::Debug for ReadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHook(..)")
    }
}

/// How the ingester runs. The defaults suit a production studio; tests shorten
/// the intervals.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// How often each runner looks at the clock (1 s).
    pub tick: Duration,
    /// How often a `continuous` source is read (60 s).
    pub continuous_every: Duration,
    /// How often an `on_update` folder is scanned in full besides its watcher (1 h).
    pub on_update_rescan: Duration,
    /// How soon a source that could not be read (missing folder, network
    /// failure) is tried again (5 min; never later than its own refresh).
    pub retry_after: Duration,
    /// How long a watcher waits for more changes before scanning (300 ms).
    pub debounce: Duration,
    /// Largest file read from a folder (32 MiB); larger ones are skipped with
    /// a warning and counted ([`CycleReport::too_large`]), and a file that
    /// grows past it while read is cut off and skipped the same way.
    pub max_file_bytes: u64,
    /// Most files looked at per folder scan (100,000).
    pub max_files: usize,
    /// Deepest folder nesting walked (32).
    pub max_depth: usize,
    /// Time limit of one HTTP request, headers and body (20 s).
    pub http_timeout: Duration,
    /// Largest HTTP response body read (10 MiB).
    pub max_response_bytes: u64,
    /// Least time between two requests to one host (1 s).
    pub min_host_interval: Duration,
    /// Hosts a web source may fetch besides its own URL's host.
    pub allow_hosts: Vec<String>,
    /// Every source (also the X API at `x_api_base`) may fetch from
    /// loopback, private and other non-public addresses (false: only a web
    /// source with `allow_private_networks: true` may).
    pub allow_private_networks: bool,
    /// Fixed addresses for host names, as curl's `--resolve` (the port of
    /// the URL is used). They are what the operator chose: not checked
    /// against the private-network rule.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Most item pages fetched from one HTML listing per cycle (50).
    pub max_listing_links: usize,
    /// How long a host's robots.txt is trusted (1 h).
    pub robots_ttl: Duration,
    /// The `User-Agent` sent, and the name matched in robots.txt groups.
    pub user_agent: String,
    /// Base URL of the X API (`https://api.twitter.com`).
    pub x_api_base: String,
    /// Environment variable holding the X bearer token (`X_BEARER_TOKEN`).
    pub x_token_env: String,
    /// Most timeline pages read per cycle (5 of 100 posts).
    pub x_max_pages: usize,
    /// Longest wait for an X rate-limit window to reset inside one cycle (0:
    /// never wait, leave the rest to the first cycle after the reset).
    pub x_max_rate_wait: Duration,
    /// Items handed to the library per batch (256: one flush and commit each).
    pub batch: usize,
    /// How often the trend report is computed (7 days).
    pub trend_every: Duration,
    /// The trend report's window, compared with the one before it (7 days).
    pub trend_window: Duration,
    /// Roles handed the trend report as context instead of the studio's
    /// ([`trend_audience`]: the `processor`/`indexer` roles of the sources
    /// that select `design_trends`); empty by default, so the studio decides.
    pub trend_roles: Vec<String>,
    /// Roles handed campaign insights as context besides the source's own
    /// `learner` (content-creator).
    pub campaign_roles: Vec<String>,
    /// How long after start a learner that never ran first computes (1 min,
    /// so the sources' first cycle lands first).
    pub learn_delay: Duration,
    /// Vision models by source ([`Vision::for_studio`]); `None`: concepts come
    /// from captions, alt text and file names only.
    pub vision: Option<Vision>,
    /// First wait before a source or learner that panicked starts again
    /// (1 s); it doubles at each panic in a row up to
    /// [`IngestOptions::restart_backoff_max`]. Measured on the clock.
    pub restart_backoff: Duration,
    /// Longest wait before such a restart (60 s).
    pub restart_backoff_max: Duration,
    /// How long a source or learner must run without panicking for its next
    /// wait to be [`IngestOptions::restart_backoff`] again (5 min).
    pub restart_healthy_after: Duration,
    /// Test hook ([`ReadHook`]); `None` in production.
    pub before_read: Option<ReadHook>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            tick: Duration::from_secs(1),
            continuous_every: Duration::from_secs(60),
            on_update_rescan: Duration::from_secs(3600),
            retry_after: Duration::from_secs(300),
            debounce: Duration::from_millis(300),
            max_file_bytes: 32 << 20,
            max_files: 100_000,
            max_depth: 32,
            http_timeout: Duration::from_secs(20),
            max_response_bytes: 10 << 20,
            min_host_interval: Duration::from_secs(1),
            allow_hosts: Vec::new(),
            allow_private_networks: false,
            resolve: Vec::new(),
            max_listing_links: 50,
            robots_ttl: Duration::from_secs(3600),
            user_agent: format!("concierto-ingest/{}", env!("CARGO_PKG_VERSION")),
            x_api_base: "https://api.twitter.com".into(),
            x_token_env: "X_BEARER_TOKEN".into(),
            x_max_pages: 5,
            x_max_rate_wait: Duration::ZERO,
            batch: 256,
            trend_every: Duration::from_secs(7 * 24 * 3600),
            trend_window: Duration::from_secs(7 * 24 * 3600),
            trend_roles: Vec::new(),
            campaign_roles: vec!["content-creator".into()],
            learn_delay: Duration::from_secs(60),
            vision: None,
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            restart_healthy_after: Duration::from_secs(300),
            before_read: None,
        }
    }
}

/// Starts the ingest supervisor, which starts one actor per configured content
/// source (and per learner): each reads its source on
/// its `refresh` (a watcher plus a scan at start for `on_update` folders,
/// scheduled scans on `clock` otherwise), stores what it finds in `library`
/// and announces new and changed items on `content.ingested.<source>`. Keeps
/// its cursors in `store` (tree [`TREE`]). Stop it with [`ServiceHandle::stop`].
///
/// The handle takes changed studios: sources added, removed or changed
/// (paths, refresh, extractors, roles) and the learners follow at their next
/// cycle, without a restart (see the `live` module).
///
/// Must be called inside an actix `System` ([`IngestError::NoSystem`] otherwise).
pub async fn start(
    studio: Arc<Studio>,
    bus: Arc<dyn Bus>,
    library: Arc<ContentLibrary>,
    store: Arc<dyn KvStore>,
    clock: SharedClock,
    opts: IngestOptions,
) -> Result<ServiceHandle, IngestError> {
    if actix::System::try_current().is_none() {
        return Err(IngestError::NoSystem);
    }
    let limits = StreamLimits {
        max_age: studio.server.bus.max_age,
        max_bytes: studio.server.bus.max_bytes,
        max_msgs: studio.server.bus.max_msgs,
        duplicate_window: studio.server.bus.duplicate_window,
        replicas: studio.server.bus.replicas,
    };
    for spec in standard_streams(&limits)
        .iter()
        .filter(|s| s.subjects.iter().any(|p| p == CONTENT_INGESTED))
    {
        bus.ensure_stream(spec).await?;
    }
    for spec in standard_streams(&limits)
        .iter()
        .filter(|s| s.subjects.iter().any(|p| p == CONTEXT))
    {
        bus.ensure_stream(spec).await?;
    }
    let ingester = Ingester::new(bus.clone(), library.clone(), store, clock, opts)?;
    let (handle, control) = ServiceHandle::new("ingest");
    deliverables::serve(bus.clone(), library.clone(), control.signal.clone()).await?;
    search::serve(bus.clone(), library, control.signal.clone()).await?;
    let web_fetcher = fetch::WebFetcher::new(&studio, ingester.opts(), ingester.store())?;
    let web_fetcher = fetch::SharedWebFetcher::new(Arc::new(web_fetcher));
    fetch::serve_shared(bus.clone(), web_fetcher.clone(), control.signal.clone()).await?;
    let supervisor = supervisor::IngestSupervisor::new(
        ingester.clone(),
        bus.clone(),
        LiveStudio::new(studio.clone()),
        web_fetcher,
    )
    .start();
    let handle = {
        let supervisor = supervisor.clone();
        handle.on_studio_change(move |next: Arc<Studio>| {
            supervisor.do_send(supervisor::StudioChanged(next));
        })
    };
    tracing::info!(sources = studio.content_sources.len(), "ingester started");
    let store = ingester.store();
    tokio::spawn(async move {
        let mut signal = control.signal.clone();
        signal.stopped().await;
        // Every source and learner stops after its read in flight.
        if let Err(e) = supervisor.send(supervisor::Shutdown).await {
            tracing::warn!(error = %e, "the ingest supervisor ended badly");
        }
        let result = store.flush().map_err(|e| e.to_string());
        // Bounded: with NATS gone a flush would wait for a reconnection that may never come.
        match tokio::time::timeout(STOP_FLUSH, bus.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not flush the bus on stop (the last announcements may not have reached it)");
            }
            Err(_) => {
                tracing::warn!(within = ?STOP_FLUSH, "could not flush the bus on stop in time (the last announcements may not have reached it)");
            }
        }
        tracing::info!("ingester stopped");
        control.finished(result);
    });
    Ok(handle)
}
