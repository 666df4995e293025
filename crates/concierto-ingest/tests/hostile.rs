//! Hostile sources: web sources pointing at private addresses (directly, by a
//! name, or through a redirect from a public-looking host), responses over
//! the size limit, and folder files too big to read or too big to decode.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use common::{daily, fast_opts, harness, source};
use concierto_core::config::SourceKind;
use concierto_ingest::{IngestError, IngestOptions};

const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Inspiration</title><link>http://example.test/</link>
<item><title>Brutalist portfolio</title><link>http://example.test/site/nord</link><guid>nord</guid>
<description>A neo-brutalist portfolio.</description></item>
</channel></rss>"#;

/// A local server counting every request it gets.
async fn serve() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let port = addr.port();
    let counted = hits.clone();
    let app = Router::new()
        .route("/robots.txt", get(|| async { "User-agent: *\nAllow: /\n" }))
        .route(
            "/rss.xml",
            get(|| async { ([(header::CONTENT_TYPE, "application/rss+xml")], RSS) }),
        )
        .route(
            "/to-literal",
            get(move || async move {
                let to = format!("http://127.0.0.1:{port}/rss.xml");
                (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
            }),
        )
        .route(
            "/to-name",
            get(move || async move {
                let to = format!("http://localhost:{port}/rss.xml");
                (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counted = counted.clone();
                async move {
                    if req.uri().path() != "/robots.txt" {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    next.run(req).await
                }
            },
        ));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, hits)
}

/// A bare HTTP server on a real socket: `/declared-huge` declares a
/// gigabyte, `/endless` sends 1 MiB with no length (until it closes);
/// robots.txt is 404 (everything allowed).
async fn serve_raw() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let _ = match path.as_str() {
                    "/declared-huge" => {
                        conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\n\
                              content-length: 1000000000\r\nconnection: close\r\n\r\n<rss>",
                        )
                        .await
                    }
                    "/endless" => {
                        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/rss+xml\r\n\
                                        connection: close\r\n\r\n"
                            .to_vec();
                        out.extend(std::iter::repeat_n(b'x', 1 << 20));
                        conn.write_all(&out).await
                    }
                    _ => {
                        conn.write_all(
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await
                    }
                };
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

fn web(name: &str, url: &str) -> concierto_core::config::ContentSource {
    source(name, SourceKind::WebScraper, url, daily())
}

#[tokio::test]
async fn a_source_pointing_at_a_private_address_is_refused_before_connecting() {
    let (addr, hits) = serve().await;
    let mut h = harness(fast_opts()).await;

    // A literal loopback address: refused before any request (robots.txt too).
    let literal = web("literal", &format!("http://{addr}/rss.xml"));
    let err = h.ingester.run_once(&literal).await.expect_err("refused");
    let IngestError::PrivateAddress { url, message } = &err else {
        panic!("not a private-address refusal: {err}");
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        message.contains("127.0.0.1 is not a public address"),
        "{message}"
    );
    assert!(
        message.contains("allow_private_networks: true"),
        "{message}"
    );
    assert!(
        err.to_string().contains("refused"),
        "the logged line says so: {err}"
    );

    // A name resolving to loopback: refused by the resolver.
    let named = web(
        "named",
        &format!("http://localhost:{}/rss.xml", addr.port()),
    );
    let err = h.ingester.run_once(&named).await.expect_err("refused");
    let IngestError::PrivateAddress { message, .. } = &err else {
        panic!("not a private-address refusal: {err}");
    };
    assert!(
        message.contains("localhost resolves only to non-public addresses"),
        "{message}"
    );
    // An IPv4-mapped IPv6 form of it.
    let mapped = web(
        "mapped",
        &format!("http://[::ffff:127.0.0.1]:{}/rss.xml", addr.port()),
    );
    let err = h.ingester.run_once(&mapped).await.expect_err("refused");
    assert!(matches!(err, IngestError::PrivateAddress { .. }), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the server never saw a request"
    );
    assert_eq!(h.library.count(), 0);
    assert!(h.drain().await.is_empty());

    // The same source with the opt-in reads the feed.
    let mut allowed = literal.clone();
    allowed.allow_private_networks = true;
    let r = h.ingester.run_once(&allowed).await.expect("read");
    assert_eq!(r.new, 1, "{r:?}");
}

#[tokio::test]
async fn a_redirect_from_a_public_host_to_a_private_address_is_refused() {
    let (addr, hits) = serve().await;
    // `public.test` stands for a public host (a fixed address, as curl's
    // --resolve, is the operator's choice and is not checked); the
    // redirects it answers lead to 127.0.0.1 and to localhost.
    let opts = IngestOptions {
        resolve: vec![("public.test".into(), addr)],
        ..fast_opts()
    };
    let mut h = harness(opts).await;
    for (path, host, needle) in [
        (
            "/to-literal",
            "127.0.0.1",
            "127.0.0.1 is not a public address",
        ),
        (
            "/to-name",
            "localhost",
            "localhost resolves only to non-public addresses",
        ),
    ] {
        let mut src = web(
            path.trim_start_matches('/'),
            &format!("http://public.test:{}{path}", addr.port()),
        );
        // The hosts are allowed: the address rule is what refuses them.
        src.allow_hosts = vec!["127.0.0.1".into(), "localhost".into()];
        let before = hits.load(Ordering::SeqCst);
        let err = h.ingester.run_once(&src).await.expect_err("refused");
        let IngestError::PrivateAddress { url, message } = &err else {
            panic!("not a private-address refusal: {err}");
        };
        // The redirect's target (its robots.txt is asked first).
        assert!(
            url.starts_with(&format!("http://{host}:{}/", addr.port())),
            "{url}"
        );
        assert!(message.contains(needle), "{message}");
        assert_eq!(
            hits.load(Ordering::SeqCst) - before,
            1,
            "only the public host's redirect was requested"
        );
    }
    assert_eq!(h.library.count(), 0);
    assert!(h.drain().await.is_empty());
}

#[tokio::test]
async fn responses_over_the_size_limit_are_refused() {
    let addr = serve_raw().await;
    let opts = IngestOptions {
        max_response_bytes: 64 * 1024,
        ..fast_opts()
    };
    let h = harness(opts).await;
    for path in ["/declared-huge", "/endless"] {
        let mut src = web(path, &format!("http://{addr}{path}"));
        src.allow_private_networks = true;
        let err = h.ingester.run_once(&src).await.expect_err("refused");
        let IngestError::Fetch { message, .. } = &err else {
            panic!("not a fetch error: {err}");
        };
        assert!(
            message.contains("over the 65536 byte limit"),
            "{path}: {message}"
        );
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 40, 40]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A valid small PNG whose header now declares `w`×`h` pixels.
fn declaring(w: u32, h: u32) -> Vec<u8> {
    let mut p = png(2, 2);
    // Signature (8), IHDR length (4) and type (4), then width and height.
    p[16..20].copy_from_slice(&w.to_be_bytes());
    p[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&p[12..29]);
    p[29..33].copy_from_slice(&crc.to_be_bytes());
    p
}

#[tokio::test]
async fn files_too_big_to_read_or_to_decode_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("red.png"), png(8, 8)).expect("write");
    // 64 MiB that take no disk: over the 32 MiB default.
    let big = std::fs::File::create(dir.path().join("huge.png")).expect("create");
    big.set_len(64 << 20).expect("set_len");
    // A valid PNG of a few dozen bytes whose header declares 30000×30000 pixels.
    std::fs::write(dir.path().join("bomb.png"), declaring(30_000, 30_000)).expect("write");

    let mut h = harness(fast_opts()).await;
    let src = source(
        "assets",
        SourceKind::ImageDatabase,
        dir.path().to_str().expect("utf-8 path"),
        daily(),
    );
    let r = h.ingester.run_once(&src).await.expect("scan");
    assert_eq!((r.new, r.skipped, r.too_large), (1, 2, 2), "{r:?}");
    assert!(
        h.library
            .get_by_source_key("assets", "red.png")
            .expect("get")
            .is_some()
    );
    for key in ["huge.png", "bomb.png"] {
        assert!(
            h.library
                .get_by_source_key("assets", key)
                .expect("get")
                .is_none(),
            "{key}"
        );
    }
    assert_eq!(h.drain().await.len(), 1);

    // With a 16-byte limit every file is over it (the read itself is bounded
    // too: see folder.rs's unit test for a file that grows after the walk).
    let h2 = harness(IngestOptions {
        max_file_bytes: 16,
        ..fast_opts()
    })
    .await;
    let r = h2.ingester.run_once(&src).await.expect("scan");
    assert_eq!((r.new, r.too_large), (0, 3), "{r:?}");
}
