//! The ingest service and a changed studio, over a real nats-server: sources
//! added, moved and removed take effect at their next cycle without a
//! restart; the trend report reads only the sources that select
//! `design_trends` and goes only to their roles, and follows the studio when
//! that selection changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use concierto_bus::{
    Bus, BusExt, NatsBus, NatsOptions, TypedSubscription, ensure_standard_streams,
};
use concierto_content::{ContentLibrary, Kind, NewItem};
use concierto_core::clock::{Clock, ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_ingest::{IngestOptions, trend_audience};
use concierto_proto::v1::{AgentContext, ContentItem, MetricSample};
use concierto_testkit::NatsServer;

const DAY: Duration = Duration::from_secs(24 * 3600);
const DAY_MS: i64 = 24 * 3600 * 1000;

fn write_studio(dir: &Path, sources: &str) -> Arc<Studio> {
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        "studio: {{ name: live, timezone: UTC }}\nagents:\n  paths: [\"{}\"]\ncontent_sources:\n{sources}",
        agents.display()
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

/// `curated_databases` with these sources.
fn curated(sources: &[String]) -> String {
    format!("  curated_databases:\n{}", sources.concat())
}

/// A daily `component_library` folder source, indexed by ui-designer.
fn folder_source(name: &str, path: &Path) -> String {
    format!(
        "    - {name}:\n        type: \"component_library\"\n        path: \"{}\"\n        indexer: ui-designer\n        refresh: \"daily\"\n",
        path.display()
    )
}

struct Service {
    bus: Arc<dyn Bus>,
    clock: Arc<ManualClock>,
    library: Arc<ContentLibrary>,
    store: Arc<dyn KvStore>,
    _nats: NatsServer,
}

async fn service() -> Service {
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let shared: SharedClock = clock.clone();
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(shared.clone()),
    );
    Service {
        bus,
        clock,
        library,
        store: Arc::new(SledStore::temporary().unwrap()),
        _nats: nats,
    }
}

impl Service {
    async fn start(
        &self,
        studio: &Arc<Studio>,
        opts: IngestOptions,
    ) -> concierto_core::service::ServiceHandle {
        let shared: SharedClock = self.clock.clone();
        concierto_ingest::start(
            studio.clone(),
            self.bus.clone(),
            self.library.clone(),
            self.store.clone(),
            shared,
            opts,
        )
        .await
        .unwrap()
    }
}

fn fast() -> IngestOptions {
    IngestOptions {
        tick: Duration::from_millis(20),
        learn_delay: Duration::ZERO,
        ..Default::default()
    }
}

/// The sources and titles announced: waits up to 20 s for the first, then
/// until nothing more comes for `quiet`.
async fn announced(
    sub: &mut TypedSubscription<ContentItem>,
    quiet: Duration,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut wait = Duration::from_secs(20);
    while let Ok(Some((item, _))) = tokio::time::timeout(wait, sub.next()).await {
        out.push((item.source, item.title));
        wait = quiet;
    }
    out.sort();
    out
}

fn css(dir: &Path, file: &str, font: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(file),
        format!("body {{ font-family: \"{font}\", sans-serif; }}\n"),
    )
    .unwrap();
}

#[actix_rt::test]
async fn sources_added_moved_and_removed_take_effect_at_their_next_cycle() {
    let svc = service().await;
    let root = tempfile::tempdir().unwrap();
    let (a, a2, b) = (
        root.path().join("a"),
        root.path().join("a2"),
        root.path().join("b"),
    );
    css(&a, "one.css", "Inter");
    css(&a2, "moved.css", "Lora");
    css(&b, "two.css", "Fraunces");
    let mut sub = svc
        .bus
        .subscribe_proto::<ContentItem>("content.ingested.>")
        .await
        .unwrap();
    svc.bus.flush().await.unwrap();

    let s1 = tempfile::tempdir().unwrap();
    let first = write_studio(s1.path(), &curated(&[folder_source("assets", &a)]));
    let ingest = svc.start(&first, fast()).await;
    assert!(ingest.takes_studio_changes());
    let got = announced(&mut sub, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "assets");

    // A new source (read at once: it was never read) and `assets` moved to
    // another folder (read at its next cycle, a day after its last read).
    let s2 = tempfile::tempdir().unwrap();
    let second = write_studio(
        s2.path(),
        &curated(&[folder_source("assets", &a2), folder_source("patterns", &b)]),
    );
    assert!(ingest.studio_changed(&second));
    let got = announced(&mut sub, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1, "only the new source is read now: {got:?}");
    assert_eq!(got[0].0, "patterns");
    svc.clock.advance(DAY);
    let got = announced(&mut sub, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1, "the moved source's new folder: {got:?}");
    assert_eq!(got[0].0, "assets");
    let moved = svc
        .library
        .search(&concierto_content::Query::browse().source("assets"))
        .unwrap();
    assert!(
        moved
            .hits
            .iter()
            .any(|h| h.item.source_key.contains("moved.css")),
        "{:?}",
        moved
            .hits
            .iter()
            .map(|h| &h.item.source_key)
            .collect::<Vec<_>>()
    );

    // `patterns` leaves the studio: a file added to its folder is not read.
    let s3 = tempfile::tempdir().unwrap();
    let third = write_studio(s3.path(), &curated(&[folder_source("assets", &a2)]));
    assert!(ingest.studio_changed(&third));
    // The supervisor stops its runner before the files and the day come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    css(&b, "three.css", "Merriweather");
    css(&a2, "four.css", "Karla");
    svc.clock.advance(DAY);
    let got = announced(&mut sub, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].0, "assets",
        "the removed source is not read: {got:?}"
    );

    ingest.stop().await.unwrap();
}

fn page(title: &str, font: &str, n: usize) -> Vec<u8> {
    format!(
        r#"<!doctype html><html><head><title>{title} {n}</title>
<style>body {{ font-family: "{font}", sans-serif; }}</style></head>
<body><h1>{title}</h1><p>Case study number {n}.</p></body></html>"#
    )
    .into_bytes()
}

/// A web source that is never reached (a closed port on loopback, refused as
/// a private address): its items are stored straight into the library.
fn web_source(name: &str, role: &str, extract: &str) -> String {
    format!(
        "    - {name}:\n        type: \"web_scraper\"\n        url: \"http://127.0.0.1:9/{name}\"\n        frequency: \"daily\"\n        processor: {role}\n        extractor: [{extract}]\n"
    )
}

async fn contexts_for(
    sub: &mut TypedSubscription<AgentContext>,
    quiet: Duration,
) -> Vec<AgentContext> {
    let mut out = Vec::new();
    while let Ok(Some((c, _))) = tokio::time::timeout(quiet, sub.next()).await {
        out.push(c);
    }
    out
}

#[actix_rt::test]
async fn the_trend_report_reads_and_goes_to_the_sources_that_select_design_trends() {
    let svc = service().await;
    let now = svc.clock.now().timestamp_millis();
    let mut items = Vec::new();
    // A (design_trends, trend-researcher): brutalist grids in Space Grotesk.
    for n in 0..6 {
        items.push(
            NewItem::new(Kind::Page, "studio_feed", format!("a-{n}"))
                .bytes(
                    page("Brutalist grid portfolio", "Space Grotesk", n),
                    Some("text/html"),
                )
                .published_ms(now - 2 * DAY_MS),
        );
    }
    // B (no design_trends, innovation-catalyst): vaporwave in Comic Neue.
    for n in 0..5 {
        items.push(
            NewItem::new(Kind::Page, "mood_feed", format!("b-{n}"))
                .bytes(
                    page("Vaporwave neon collage", "Comic Neue", n),
                    Some("text/html"),
                )
                .published_ms(now - DAY_MS),
        );
    }
    svc.library.put_many(items).unwrap();
    let mut contexts = svc
        .bus
        .subscribe_proto::<AgentContext>("context.>")
        .await
        .unwrap();
    let mut samples = svc
        .bus
        .subscribe_proto::<MetricSample>("metric.pattern_recognition")
        .await
        .unwrap();
    svc.bus.flush().await.unwrap();

    let s1 = tempfile::tempdir().unwrap();
    let first = write_studio(
        s1.path(),
        &format!(
            "  external_inspiration:\n{}{}",
            web_source(
                "studio_feed",
                "trend-researcher",
                "design_trends, typography_patterns"
            ),
            web_source(
                "mood_feed",
                "innovation-catalyst",
                "colour_palettes, typography_patterns"
            ),
        ),
    );
    let audience = trend_audience(&first);
    assert_eq!(audience.sources, ["studio_feed"]);
    assert_eq!(audience.roles, ["trend-researcher"]);
    let opts = IngestOptions {
        trend_every: Duration::from_secs(3600),
        ..fast()
    };
    let ingest = svc.start(&first, opts).await;

    let (sample, _) = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("the trend report in time")
        .expect("subscription open");
    assert_eq!(sample.labels["items"], "6", "A's items only");
    let got = contexts_for(&mut contexts, Duration::from_millis(800)).await;
    let trend: Vec<&AgentContext> = got.iter().filter(|c| c.name == "trend-report").collect();
    assert_eq!(
        trend.iter().map(|c| c.role.as_str()).collect::<Vec<_>>(),
        ["trend-researcher"],
        "A's role only"
    );
    assert!(
        trend[0].content.contains("Space Grotesk"),
        "{}",
        trend[0].content
    );
    assert!(
        !trend[0].content.contains("Comic Neue"),
        "{}",
        trend[0].content
    );
    assert!(!trend[0].content.to_lowercase().contains("vaporwave"));
    let (_, stored) = concierto_ingest::stored_trend_report(&svc.store).expect("stored");
    assert_eq!(stored.items_current, 6);

    // The studio turns it round: B selects design_trends, A no longer does.
    // The next report (an hour later) reads B's items and goes to B's role.
    let s2 = tempfile::tempdir().unwrap();
    let second = write_studio(
        s2.path(),
        &format!(
            "  external_inspiration:\n{}{}",
            web_source("studio_feed", "trend-researcher", "typography_patterns"),
            web_source("mood_feed", "innovation-catalyst", "design_trends"),
        ),
    );
    assert!(ingest.studio_changed(&second));
    // The supervisor applies it (stops and starts learners) before time moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    svc.clock.advance(Duration::from_secs(3600));
    let (sample, _) = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("the next trend report in time")
        .expect("subscription open");
    assert_eq!(sample.labels["items"], "5", "B's items only");
    let got = contexts_for(&mut contexts, Duration::from_millis(800)).await;
    let trend: Vec<&AgentContext> = got.iter().filter(|c| c.name == "trend-report").collect();
    assert_eq!(
        trend.iter().map(|c| c.role.as_str()).collect::<Vec<_>>(),
        ["innovation-catalyst"]
    );
    assert!(
        trend[0].content.contains("Comic Neue"),
        "{}",
        trend[0].content
    );

    // No source selects it any more: no report, however long we wait.
    let s3 = tempfile::tempdir().unwrap();
    let third = write_studio(
        s3.path(),
        &format!(
            "  external_inspiration:\n{}",
            web_source("studio_feed", "trend-researcher", "typography_patterns"),
        ),
    );
    assert!(trend_audience(&third).sources.is_empty());
    assert!(ingest.studio_changed(&third));
    // The supervisor applies it (stops and starts learners) before time moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    svc.clock.advance(Duration::from_secs(2 * 3600));
    let quiet = tokio::time::timeout(Duration::from_millis(800), samples.next()).await;
    assert!(
        quiet.is_err(),
        "no trend report without a design_trends source"
    );

    ingest.stop().await.unwrap();
}
