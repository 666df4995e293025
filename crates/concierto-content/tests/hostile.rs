//! Hostile requests against the content API over a real socket: search text
//! that would overflow the query parser's stack or cost too much is refused
//! with 400 naming the limit (and the server keeps answering), and reads need
//! a reviewer's token unless the library is public.

use std::sync::Arc;

use concierto_content::{
    ApiOptions, ContentLibrary, Kind, MAX_QUERY_CHARS, MAX_QUERY_DEPTH, MAX_QUERY_TERMS, NewItem,
    Query, TokenAuth, router,
};
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "hostile-token";

async fn serve(opts: ApiOptions) -> (String, Arc<ContentLibrary>) {
    let library = Arc::new(ContentLibrary::temporary().expect("library"));
    library
        .put(
            NewItem::new(Kind::Post, "feed", "riso-1")
                .title("Risograph poster")
                .text("Two-colour risograph print with halftone grain."),
        )
        .expect("put");
    let auth: TokenAuth = Arc::new(|t: &str| (t == TOKEN).then(|| "ana".to_string()));
    let app = router(library.clone(), auth, opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), library)
}

async fn search(http: &reqwest::Client, base: &str, q: &str) -> (StatusCode, Value) {
    let res = http
        .get(format!("{base}/api/items"))
        .query(&[("q", q)])
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the server answers");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_parentheses_are_400_and_the_server_keeps_answering() {
    let (base, _library) = serve(ApiOptions::default()).await;
    let http = reqwest::Client::new();

    let (status, body) = search(&http, &base, &"(".repeat(1000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(
        error.contains(&format!("limit of {MAX_QUERY_DEPTH}")),
        "names the nesting limit: {error}"
    );

    // The process is alive and a normal search still works.
    let (status, body) = search(&http, &base, "risograph poster").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["items"][0]["title"], "Risograph poster");
    let (status, body) = search(&http, &base, "(risograph OR zine) -duotone").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_deep_and_wordy_search_text_is_refused_naming_its_limit() {
    let (base, library) = serve(ApiOptions::default()).await;
    let http = reqwest::Client::new();
    let cases = [
        (
            "NOT ".repeat(200) + "riso",
            format!("limit of {MAX_QUERY_DEPTH}"),
        ),
        ("[".repeat(500), format!("limit of {MAX_QUERY_DEPTH}")),
        (
            "title:(".repeat(10) + "riso",
            format!("limit of {MAX_QUERY_DEPTH}"),
        ),
        ("riso ".repeat(100), format!("limit of {MAX_QUERY_TERMS}")),
        ("a,".repeat(400), format!("limit of {MAX_QUERY_TERMS}")),
        ("r".repeat(5_000), format!("limit of {MAX_QUERY_CHARS}")),
    ];
    for (q, needle) in &cases {
        let (status, body) = search(&http, &base, q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q:.40}: {body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.contains(needle.as_str()), "{q:.40}: {error}");
    }
    // Too many tag filters.
    let tags: Vec<(&str, String)> = (0..100).map(|i| ("tag", format!("t{i}"))).collect();
    let res = http
        .get(format!("{base}/api/items"))
        .query(&tags)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // At the limits, and the same refused search many times: each answer is
    // a refusal from the check, not a parse; the library still searches.
    let at_limit = "(".repeat(MAX_QUERY_DEPTH) + "risograph" + &")".repeat(MAX_QUERY_DEPTH);
    let (status, body) = search(&http, &base, &at_limit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1, "{body}");
    for _ in 0..200 {
        let (status, _) = search(&http, &base, &"(".repeat(1000)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // The library refuses it directly too (what library.search and the
    // dashboard reach).
    let err = library
        .search(&Query::text("(".repeat(1000)))
        .expect_err("refused");
    assert_eq!(err.kind(), concierto_content::ErrorKind::Invalid);
    assert_eq!(
        library
            .search(&Query::text("risograph"))
            .expect("search")
            .total,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_token_unless_the_library_is_public() {
    let (base, library) = serve(ApiOptions::default()).await;
    let id = library
        .search(&Query::browse())
        .expect("browse")
        .hits
        .remove(0)
        .item
        .id;
    let http = reqwest::Client::new();
    let reads = [
        "/api/items".to_string(),
        "/api/items?q=risograph".to_string(),
        format!("/api/items/{id}"),
        format!("/api/items/{id}/blob"),
        "/api/collections".to_string(),
        "/api/collections/board".to_string(),
        "/api/collections/board/export.html".to_string(),
        "/api/collections/board/export.json".to_string(),
    ];
    for path in &reads {
        let res = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer realm=\"concierto\"",
            "{path}"
        );
        let res = http
            .get(format!("{base}{path}"))
            .bearer_auth("not-a-reviewer")
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let res = http
        .get(format!("{base}/api/items"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let res = http
        .get(format!("{base}/api/items/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let res = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK, "health needs no token");

    // server.library_public: true
    let public = ApiOptions {
        read_requires_token: false,
        ..ApiOptions::default()
    };
    let (base, _library) = serve(public).await;
    let res = http
        .get(format!("{base}/api/items?q=risograph"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["total"], 1, "{body}");
    let res = http
        .post(format!("{base}/api/collections"))
        .json(&serde_json::json!({ "name": "board" }))
        .send()
        .await
        .expect("send");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "writes still need a token"
    );
}
