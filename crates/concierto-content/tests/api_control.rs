//! A running content API follows the studio's `server.library_public`
//! through its [`ApiControl`]: reads open and close at the next request,
//! over a real socket; writes keep needing a token.

use std::sync::Arc;

use concierto_content::{ApiOptions, ContentLibrary, TokenAuth, router_with_control};
use reqwest::StatusCode;

#[tokio::test]
async fn reads_open_and_close_while_the_api_serves() {
    let library = Arc::new(ContentLibrary::temporary().expect("library"));
    let auth: TokenAuth = Arc::new(|token: &str| (token == "t0ken").then(|| "ana".to_string()));
    let (app, control) = router_with_control(library, auth, ApiOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let read = || http.get(format!("{base}/api/items")).send();

    assert!(control.read_requires_token());
    assert_eq!(read().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // `server.library_public: true` in a changed studio.
    control.set_read_requires_token(false);
    assert_eq!(read().await.unwrap().status(), StatusCode::OK);
    let write = http
        .post(format!("{base}/api/collections"))
        .json(&serde_json::json!({"name": "board"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status(),
        StatusCode::UNAUTHORIZED,
        "writes still need a token"
    );

    // The example studio keeps reads private.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let studio = concierto_core::config::load(&example).expect("the example studio loads");
    control.follow_studio(&studio);
    assert_eq!(read().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let with_token = http
        .get(format!("{base}/api/items"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
    server.abort();
}
