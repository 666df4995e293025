//! The metrics server over a real socket: health, readiness through its life,
//! and the HTTP request counter of a service's router.

use axum::Router;
use axum::routing::get;
use concierto_telemetry::{Readiness, metrics, serve, server::count_http};

async fn get_text(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn readyz_follows_the_process_and_http_requests_are_counted_by_route() {
    let readiness = Readiness::new();
    let server = serve("127.0.0.1:0", readiness.clone()).await.unwrap();
    let base = format!("http://{}", server.local_addr);

    assert_eq!(
        get_text(&format!("{base}/healthz")).await,
        (200, "ok\n".into())
    );
    assert_eq!(
        get_text(&format!("{base}/readyz")).await,
        (503, "starting\n".into())
    );
    let ready_gauge = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("concierto_ready "))
            .map(str::to_string)
    };
    let text = get_text(&format!("{base}/metrics")).await.1;
    assert_eq!(ready_gauge(&text).as_deref(), Some("0"), "{text}");
    readiness.set_ready();
    assert_eq!(
        get_text(&format!("{base}/readyz")).await,
        (200, "ready\n".into())
    );
    let text = get_text(&format!("{base}/metrics")).await.1;
    assert_eq!(ready_gauge(&text).as_deref(), Some("1"), "{text}");
    // A service's condition (a failing store) makes it not ready, with why.
    concierto_core::health::set_unready("test.store", "disk full");
    assert_eq!(
        get_text(&format!("{base}/readyz")).await,
        (503, "not ready\ntest.store: disk full\n".into())
    );
    concierto_core::health::store_error();
    let text = get_text(&format!("{base}/metrics")).await.1;
    assert_eq!(
        ready_gauge(&text).as_deref(),
        Some("0"),
        "a condition: not ready"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("concierto_store_errors_total ") && !l.ends_with(" 0")),
        "{text}"
    );
    concierto_core::health::clear("test.store");
    assert_eq!(
        get_text(&format!("{base}/readyz")).await,
        (200, "ready\n".into())
    );
    readiness.set_stopping();
    readiness.set_ready();
    assert_eq!(
        get_text(&format!("{base}/readyz")).await,
        (503, "stopping\n".into()),
        "never ready again once stopping"
    );

    // A service's own router, counted.
    let app = count_http(
        Router::new().route("/items/{id}", get(|| async { "item" })),
        "library",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app_task = tokio::spawn(async move { axum::serve(listener, app).await });
    for path in ["/items/1", "/items/2", "/nowhere"] {
        reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    }
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(
            "concierto_http_requests_total{service=\"library\",route=\"/items/{id}\",status=\"200\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "concierto_http_requests_total{service=\"library\",route=\"unmatched\",status=\"404\"} 1"
        ),
        "{text}"
    );
    // The registry's text, then the process's readiness (stopping: 0).
    assert_eq!(
        text.strip_suffix("concierto_ready 0\n")
            .and_then(|t| t.strip_suffix("# TYPE concierto_ready gauge\n")),
        Some(
            metrics::render()
                + "# HELP concierto_ready 1 while the process is ready (GET /readyz answers 200), else 0.\n"
        )
        .as_deref()
    );
    app_task.abort();
    server.stop().await;
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "stopped"
    );
}
