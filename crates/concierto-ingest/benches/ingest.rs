//! Items ingested per second from a local RSS feed of 10,000 entries: one
//! fetch, parse, store (library batches), announce on the embedded bus.
//! `cargo bench -p concierto-ingest --bench ingest`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use concierto_bus::{Bus, EmbeddedBus, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{ContentSource, Refresh, SourceKind};
use concierto_core::store::{KvStore, SledStore};
use concierto_ingest::{IngestOptions, Ingester};

const ENTRIES: usize = 10_000;

fn feed() -> String {
    let mut s = String::from(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Bench</title><link>http://bench.test/</link>"#,
    );
    let words = [
        "brutalist",
        "duotone",
        "grid",
        "serif",
        "gradient",
        "poster",
        "risograph",
        "bento",
    ];
    for i in 0..ENTRIES {
        let a = words[i % words.len()];
        let b = words[(i / 8) % words.len()];
        s.push_str(&format!(
            "<item><title>Site {i}: {a} {b} portfolio</title><link>http://bench.test/site/{i}</link><guid>site-{i}</guid>\
             <description>A {a} layout with {b} type, number {i}, for a studio portfolio.</description>\
             <pubDate>Sun, 01 Mar 2026 10:00:00 GMT</pubDate></item>"
        ));
    }
    s.push_str("</channel></rss>");
    s
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let body = feed();
        let bytes = body.len();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/feed",
            get(move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/rss+xml")], body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("concierto."));
        ensure_standard_streams(bus.as_ref(), &Default::default())
            .await
            .expect("streams");
        let dir = tempfile::tempdir().expect("tempdir");
        let clock: SharedClock = Arc::new(SystemClock);
        let library = Arc::new(ContentLibrary::open(&dir.path().join("library")).expect("library"));
        let store: Arc<dyn KvStore> =
            Arc::new(SledStore::open(&dir.path().join("state")).expect("store"));
        let ingester = Ingester::new(bus, library, store, clock, IngestOptions::default())
            .expect("ingester");
        let source = ContentSource {
            name: "bench".into(),
            group: "external_inspiration".into(),
            kind: SourceKind::WebScraper,
            location: format!("http://{addr}/feed"),
            role: "innovation-catalyst".into(),
            refresh: Refresh::Continuous,
            extract: Vec::new(),
            allow_hosts: Vec::new(),
            // The feed is served on 127.0.0.1.
            allow_private_networks: true,
            enabled: true,
        };
        let started = Instant::now();
        let report = ingester.run_once(&source).await.expect("ingest");
        let elapsed = started.elapsed();
        assert_eq!(report.new, ENTRIES, "{report:?}");
        println!(
            "ingest: {ENTRIES} feed entries ({:.1} MiB) fetched, parsed, stored and announced in {:.2} s: {:.0} items/s",
            bytes as f64 / (1 << 20) as f64,
            elapsed.as_secs_f64(),
            ENTRIES as f64 / elapsed.as_secs_f64()
        );
        let started = Instant::now();
        let again = ingester.run_once(&source).await.expect("ingest again");
        println!(
            "ingest: the same feed again ({} unchanged, nothing announced) in {:.2} s: {:.0} items/s",
            again.unchanged,
            started.elapsed().as_secs_f64(),
            ENTRIES as f64 / started.elapsed().as_secs_f64()
        );
    });
}
