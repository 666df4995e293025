//! An agent's `WebFetch`, `library_search` and `WebSearch` (library fallback)
//! tools through the real ingest service (`ingest.fetch`, `library.search`)
//! on a real nats-server, fetching from a local HTTP server: an allow-listed
//! host is fetched as text, a host not on the list, a private address and a
//! path robots.txt disallows are refused, and the refusal is what the model
//! sees.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use concierto_agent::tools::{ToolCx, Toolbox, builtin_toolbox};
use concierto_bus::{Bus, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::{ContentLibrary, Kind, NewItem};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::SledStore;
use concierto_ingest::IngestOptions;
use concierto_proto::v1::Task;
use concierto_testkit::NatsServer;
use serde_json::{Value, json};

const PAGE: &str = r#"<html><head><title>Studio Nord</title><script>var x = 1;</script></head>
<body><h1>Studio Nord</h1><p>Raw concrete and a bento grid.</p></body></html>"#;

async fn site() -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/robots.txt",
            get(|| async { "User-agent: *\nDisallow: /private/\n" }),
        )
        .route(
            "/nord",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }),
        )
        .route(
            "/long",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    "grain ".repeat(2000),
                )
            }),
        )
        .route(
            "/logo.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8, 1, 2]) }),
        )
        .route("/private/plan", get(|| async { "secret plan" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn studio(dir: &std::path::Path, private: bool) -> Arc<Studio> {
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    std::fs::write(
        dir.join("agents/researcher.md"),
        "---\nname: researcher\ndescription: Finds.\ntools: WebFetch, WebSearch, library_search\n---\nYou find.\n",
    )
    .unwrap();
    let path = dir.join("concierto.yaml");
    std::fs::write(
        &path,
        format!(
            "studio: {{ name: Tools }}\nagents:\n  paths: [agents]\n  tools:\n    web_fetch:\n      allow_hosts: [127.0.0.1]\n      allow_private_networks: {private}\n      max_text_bytes: 1000\n      timeout: 5 seconds\ncontent_sources:\n  external_inspiration:\n    - feedsite:\n        type: web_scraper\n        url: \"https://feeds.example.org/rss\"\n        processor: researcher\n        refresh: weekly\n        allow_hosts: [cdn.example.org]\n"
        ),
    )
    .unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("studio loads"))
}

struct Setup {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    _ingest: ServiceHandle,
    tools: Toolbox,
}

async fn setup(private: bool) -> Setup {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path(), private);
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(clock.clone()),
    );
    library
        .put_many(vec![
            NewItem::new(Kind::Post, "FigsFromPlums", "post-1")
                .title("Risograph poster series")
                .text("Two-colour risograph prints with a halftone grain.")
                .tags(["print"]),
            NewItem::new(Kind::Page, "siteinspire", "page-1")
                .title("Bento grid portfolio")
                .text("A bento grid of case studies."),
        ])
        .unwrap();
    let opts = IngestOptions {
        min_host_interval: Duration::ZERO,
        // The runner of the web source stays idle: its host does not resolve here.
        retry_after: Duration::from_secs(3600),
        ..Default::default()
    };
    let ingest = concierto_ingest::start(
        st.clone(),
        bus.clone(),
        library,
        Arc::new(SledStore::temporary().unwrap()),
        clock,
        opts,
    )
    .await
    .unwrap();
    let tools = builtin_toolbox(&st, &st.roles["researcher"], bus);
    Setup {
        _nats: nats,
        _dir: dir,
        _ingest: ingest,
        tools,
    }
}

async fn call(tb: &Toolbox, name: &str, args: Value) -> Result<String, String> {
    let cx = ToolCx::new(&Task {
        role: "researcher".into(),
        ..Default::default()
    });
    tb.get(name).unwrap().call(args, &cx).await.map_err(|e| e.0)
}

#[actix_rt::test]
async fn web_fetch_goes_through_the_ingesters_rules() {
    let addr = site().await;
    let s = setup(true).await;

    let out = call(
        &s.tools,
        "WebFetch",
        json!({"url": format!("http://{addr}/nord"), "prompt": "materials"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        format!(
            "URL: http://{addr}/nord\nStatus: 200\nTitle: Studio Nord\n\nStudio Nord Raw concrete and a bento grid."
        )
    );
    let out = call(
        &s.tools,
        "WebFetch",
        json!({"url": format!("http://{addr}/long")}),
    )
    .await
    .unwrap();
    let text = out
        .split_once("\n\n")
        .and_then(|(_, t)| t.strip_suffix("\n[the page's text was cut at the fetch limit]"))
        .expect("the cut is said");
    assert_eq!(text.len(), 1000, "cut to max_text_bytes");

    // Not on the allow list: `localhost` is the same server under another name.
    let e = call(
        &s.tools,
        "WebFetch",
        json!({"url": format!("http://localhost:{}/nord", addr.port())}),
    )
    .await
    .unwrap_err();
    assert!(
        e.starts_with(&format!("the web fetcher (ingest service) refused: fetch http://localhost:{}/nord: host not in the allow list (", addr.port())),
        "{e}"
    );
    assert!(
        e.ends_with("(agents.tools.web_fetch.allow_hosts adds hosts)"),
        "{e}"
    );
    assert!(
        e.contains("127.0.0.1, cdn.example.org, feeds.example.org"),
        "the web source's hosts are allowed: {e}"
    );

    let e = call(
        &s.tools,
        "WebFetch",
        json!({"url": format!("http://{addr}/private/plan")}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "the web fetcher (ingest service) refused: fetch http://{addr}/private/plan: disallowed by the host's robots.txt"
        )
    );
    let e = call(
        &s.tools,
        "WebFetch",
        json!({"url": format!("http://{addr}/logo.png")}),
    )
    .await
    .unwrap_err();
    assert!(e.contains("answered image/png, which is not text"), "{e}");
    let e = call(&s.tools, "WebFetch", json!({"url": "file:///etc/passwd"}))
        .await
        .unwrap_err();
    assert!(
        e.ends_with("only http and https URLs are fetched, not file"),
        "{e}"
    );
}

#[actix_rt::test]
async fn web_fetch_refuses_private_addresses_unless_allowed() {
    let addr = site().await;
    let s = setup(false).await;
    let e = call(
        &s.tools,
        "WebFetch",
        json!({"url": format!("http://{addr}/nord")}),
    )
    .await
    .unwrap_err();
    assert!(
        e.starts_with(&format!(
            "the web fetcher (ingest service) refused: fetch http://{addr}/nord: refused: "
        )),
        "{e}"
    );
    assert!(e.contains("loopback"), "{e}");
}

#[actix_rt::test]
async fn library_search_and_web_search_without_a_provider_ask_the_library() {
    let s = setup(false).await;
    let v: Value = serde_json::from_str(
        &call(
            &s.tools,
            "library_search",
            json!({"query": "risograph", "tags": ["print"]}),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["items"][0]["title"], "Risograph poster series");
    assert_eq!(v["items"][0]["kind"], "post");
    let e = call(
        &s.tools,
        "library_search",
        json!({"query": "x", "kind": "spaceship"}),
    )
    .await
    .unwrap_err();
    assert!(
        e.starts_with(
            "the content library (ingest service) refused: kind \"spaceship\" is not one of"
        ),
        "{e}"
    );

    let v: Value = serde_json::from_str(
        &call(&s.tools, "WebSearch", json!({"query": "bento grid"}))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["source"], "content library (no web search is configured)");
    assert_eq!(v["results"][0]["title"], "Bento grid portfolio");
}
