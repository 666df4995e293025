//! Web sources against a local HTTP server serving feeds and pages we wrote in
//! the documented formats; the code under test is the real client.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{daily, fast_opts, harness, source};
use concierto_content::{Kind, Query};
use concierto_core::config::SourceKind;
use concierto_ingest::IngestError;

const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Inspiration</title><link>http://example.test/</link>
<item><title>Brutalist portfolio for Studio Nord</title><link>http://example.test/site/nord</link>
<guid>nord</guid><description>&lt;p&gt;A neo-brutalist portfolio with a &lt;b&gt;bento grid&lt;/b&gt;.&lt;/p&gt;</description>
<category>portfolio</category><pubDate>Sun, 01 Mar 2026 10:00:00 GMT</pubDate></item>
<item><title>Duotone posters</title><link>http://example.test/site/duo</link><guid>duo</guid>
<description>Bold duotone gradients.</description></item>
</channel></rss>"#;

const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom inspiration</title><id>urn:feed</id>
<updated>2026-03-02T10:00:00Z</updated>
<entry><title>Glassmorphism dashboard</title><id>urn:entry:1</id><link href="http://example.test/a/1"/>
<updated>2026-03-02T10:00:00Z</updated><summary>Frosted glass panels.</summary></entry>
<entry><title>Swiss grid poster</title><id>urn:entry:2</id><link href="http://example.test/a/2"/>
<updated>2026-03-01T10:00:00Z</updated><summary>Helvetica on a strict grid.</summary></entry>
</feed>"#;

const JSON_FEED: &str = r#"{"version":"https://jsonfeed.org/version/1.1","title":"JSON inspiration",
"items":[{"id":"j1","url":"http://example.test/j/1","title":"Risograph zine","content_text":"Grainy risograph print in two inks.","date_published":"2026-03-03T10:00:00Z","tags":["print"]}]}"#;

struct Counters {
    etag_hits: AtomicUsize,
    etag_conditional: AtomicUsize,
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn serve() -> (SocketAddr, Arc<Counters>) {
    let counters = Arc::new(Counters {
        etag_hits: AtomicUsize::new(0),
        etag_conditional: AtomicUsize::new(0),
    });
    let c = counters.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/robots.txt", get(|| async { "User-agent: *\nDisallow: /private/\n" }))
        .route("/rss.xml", get(|| async { ([(header::CONTENT_TYPE, "application/rss+xml")], RSS) }))
        .route("/atom.xml", get(|| async { ([(header::CONTENT_TYPE, "application/atom+xml")], ATOM) }))
        .route("/feed.json", get(|| async { ([(header::CONTENT_TYPE, "application/feed+json")], JSON_FEED) }))
        .route("/private/feed.xml", get(|| async { RSS }))
        .route("/garbage", get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "this is not a feed, just words") }))
        .route("/slow", get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            RSS
        }))
        .route(
            "/etag.xml",
            get(move |headers: HeaderMap| {
                let c = c.clone();
                async move {
                    c.etag_hits.fetch_add(1, Ordering::SeqCst);
                    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some("\"v1\"") {
                        c.etag_conditional.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::NOT_MODIFIED.into_response();
                    }
                    ([(header::ETAG, "\"v1\""), (header::CONTENT_TYPE, "application/rss+xml")], RSS).into_response()
                }
            }),
        )
        .route(
            "/sites",
            get(|| async {
                html(r#"<html><head><title>Sites</title></head><body>
                <a href="/site/1">One</a> <a href="/site/2">Two</a>
                <a href="/private/secret">Secret</a> <a href="/style.css">css</a>
                <a href="http://elsewhere.test/site/9">elsewhere</a></body></html>"#)
            }),
        )
        .route("/site/1", get(|| async {
            html(r#"<html><head><title>Studio Nord</title><meta name="description" content="A brutalist portfolio."></head>
            <body><h1>Studio Nord</h1><p style="font-family: 'Space Grotesk', sans-serif">Raw concrete and a bento grid.</p></body></html>"#)
        }))
        .route("/site/2", get(|| async {
            // "Café Zürich" in ISO-8859-1, declared only in the header.
            let mut body = b"<html><head><title>Caf\xe9 Z\xfcrich</title></head><body><p>Gem\xfctlich.</p></body></html>".to_vec();
            body.shrink_to_fit();
            ([(header::CONTENT_TYPE, "text/html; charset=ISO-8859-1")], body).into_response()
        }))
        .route("/private/secret", get(|| async { html("<html><title>secret</title></html>") }))
        .route(
            "/redirect",
            get(move || async move {
                (StatusCode::FOUND, [(header::LOCATION, format!("http://localhost:{}/rss.xml", addr.port()))]).into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, counters)
}

/// A web source reading the local server (on 127.0.0.1: private networks allowed).
fn web(name: &str, addr: SocketAddr, path: &str) -> concierto_core::config::ContentSource {
    let mut s = source(
        name,
        SourceKind::WebScraper,
        &format!("http://{addr}{path}"),
        daily(),
    );
    s.allow_private_networks = true;
    s
}

#[tokio::test]
async fn rss_atom_and_json_feeds_become_posts_once() {
    let (addr, _) = serve().await;
    let mut h = harness(fast_opts()).await;

    let rss = web("siteinspire", addr, "/rss.xml");
    let r = h.ingester.run_once(&rss).await.unwrap();
    assert_eq!((r.new, r.skipped), (2, 0), "{r:?}");
    let got = h.drain().await;
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|i| i.kind == "post" && i.source == "siteinspire")
    );
    assert!(got.iter().all(|i| i.item_id.starts_with("sha256:")));
    let nord = h
        .library
        .get_by_source_key("siteinspire", "nord")
        .unwrap()
        .unwrap();
    assert_eq!(nord.title, "Brutalist portfolio for Studio Nord");
    assert!(nord.text.contains("bento grid") && !nord.text.contains("<b>"));
    assert_eq!(nord.tags, vec!["portfolio"]);
    assert!(nord.published_ms.is_some());

    // Read again: the library has it all, nothing is announced.
    let again = h.ingester.run_once(&rss).await.unwrap();
    assert_eq!((again.new, again.changed, again.unchanged), (0, 0, 2));
    assert!(h.drain().await.is_empty());

    let atom = h
        .ingester
        .run_once(&web("atom", addr, "/atom.xml"))
        .await
        .unwrap();
    assert_eq!(atom.new, 2);
    let json = h
        .ingester
        .run_once(&web("jsonfeed", addr, "/feed.json"))
        .await
        .unwrap();
    assert_eq!(json.new, 1);
    let riso = h
        .library
        .get_by_source_key("jsonfeed", "j1")
        .unwrap()
        .unwrap();
    assert_eq!(riso.title, "Risograph zine");
    assert_eq!(h.drain().await.len(), 3);
    let page = h.library.search(&Query::text("glassmorphism")).unwrap();
    assert_eq!(page.total, 1);
}

#[tokio::test]
async fn etag_makes_the_second_read_conditional() {
    let (addr, counters) = serve().await;
    let mut h = harness(fast_opts()).await;
    let src = web("etag", addr, "/etag.xml");
    assert_eq!(h.ingester.run_once(&src).await.unwrap().new, 2);
    let second = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(second, Default::default(), "a 304 reads nothing");
    assert_eq!(counters.etag_hits.load(Ordering::SeqCst), 2);
    assert_eq!(counters.etag_conditional.load(Ordering::SeqCst), 1);
    assert_eq!(h.drain().await.len(), 2);
}

#[tokio::test]
async fn a_listing_page_yields_its_item_pages_under_the_rules() {
    let (addr, _) = serve().await;
    let mut h = harness(fast_opts()).await;
    let src = web("listing", addr, "/sites");
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(r.new, 2, "{r:?}");
    assert_eq!(r.skipped, 1, "the robots-disallowed page is skipped: {r:?}");
    let one = h
        .library
        .get_by_source_key("listing", &format!("http://{addr}/site/1"))
        .unwrap()
        .unwrap();
    assert_eq!(one.kind, Kind::Page);
    assert_eq!(one.title, "Studio Nord");
    assert!(one.typography.iter().any(|f| f.family == "Space Grotesk"));
    let two = h
        .library
        .get_by_source_key("listing", &format!("http://{addr}/site/2"))
        .unwrap()
        .unwrap();
    assert_eq!(
        two.title, "Café Zürich",
        "decoded with the header's charset"
    );
    assert!(two.text.contains("Gemütlich"));
    assert_eq!(h.drain().await.len(), 2);
}

#[tokio::test]
async fn bad_input_is_an_error_of_that_source_only() {
    let (addr, _) = serve().await;
    let mut h = harness(fast_opts()).await;

    let err = h
        .ingester
        .run_once(&web("garbage", addr, "/garbage"))
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::BadContent { .. }), "{err}");

    let started = std::time::Instant::now();
    let err = h
        .ingester
        .run_once(&web("slow", addr, "/slow"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));

    let err = h
        .ingester
        .run_once(&web("robots", addr, "/private/feed.xml"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("robots.txt"), "{err}");

    let err = h
        .ingester
        .run_once(&web("redirect", addr, "/redirect"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("allow list"), "{err}");

    // The same ingester still reads a good source.
    assert_eq!(
        h.ingester
            .run_once(&web("good", addr, "/rss.xml"))
            .await
            .unwrap()
            .new,
        2
    );
    assert_eq!(h.drain().await.len(), 2);
}

#[tokio::test]
async fn a_sources_allow_hosts_lets_a_redirect_through() {
    let (addr, _) = serve().await;
    let mut h = harness(fast_opts()).await;
    // `/redirect` sends the client to `localhost`, another host than the source's.
    let mut allowed = web("redirect-allowed", addr, "/redirect");
    allowed.allow_hosts = vec!["localhost".into()];
    let r = h.ingester.run_once(&allowed).await.unwrap();
    assert_eq!(r.new, 2, "{r:?}");
    assert_eq!(h.drain().await.len(), 2);
}

/// A robots.txt that cannot be read (a 5xx, or nothing listening) is reported
/// as unreachable, with why, and never as "disallowed"; the feed itself is
/// not fetched meanwhile, and it is read once robots.txt answers again.
#[tokio::test]
async fn an_unreachable_robots_txt_is_reported_as_unreachable_not_disallowed() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeds = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (robots_up, fed) = (up.clone(), feeds.clone());
    let app = Router::new()
        .route(
            "/robots.txt",
            get(move || async move {
                if robots_up.load(Ordering::SeqCst) {
                    (StatusCode::OK, "User-agent: *\nAllow: /\n").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
                }
            }),
        )
        .route(
            "/rss.xml",
            get(move || async move {
                fed.fetch_add(1, Ordering::SeqCst);
                ([(header::CONTENT_TYPE, "application/rss+xml")], RSS)
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let h = harness(fast_opts()).await;

    let err = h
        .ingester
        .run_once(&web("down", addr, "/rss.xml"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("robots.txt unreachable (HTTP status 503)"),
        "{err}"
    );
    assert!(!err.contains("disallowed"), "{err}");
    assert_eq!(
        feeds.load(Ordering::SeqCst),
        0,
        "the feed waits for robots.txt"
    );

    // Nothing listening at all: the connection error is named.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = gone.local_addr().unwrap();
    drop(gone);
    let err = h
        .ingester
        .run_once(&web("closed", closed, "/rss.xml"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("robots.txt unreachable ("), "{err}");
    assert!(!err.contains("disallowed"), "{err}");

    // The failure is not cached: once robots.txt answers, the feed is read.
    up.store(true, Ordering::SeqCst);
    let r = h
        .ingester
        .run_once(&web("down", addr, "/rss.xml"))
        .await
        .unwrap();
    assert_eq!(r.new, 2, "{r:?}");
    assert_eq!(feeds.load(Ordering::SeqCst), 1);
}
