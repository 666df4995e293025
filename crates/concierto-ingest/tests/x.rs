//! An X account against a local server speaking the X API v2 JSON: user
//! lookup, timeline with since_id, a 429 with its reset, an API error.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{fast_opts, harness, source};
use concierto_core::clock::Clock;
use concierto_core::config::{Refresh, SourceKind};
use concierto_ingest::{IngestError, IngestOptions};

#[derive(Default)]
struct Api {
    /// Query strings of the timeline calls, in order.
    timeline_calls: Vec<String>,
    lookups: usize,
    /// Unix seconds of the reset the next since_id call is refused until.
    limit_once_until: Option<i64>,
}

type Shared = Arc<Mutex<Api>>;

fn authorised(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer test-token")
}

async fn lookup(State(s): State<Shared>, h: HeaderMap) -> Response {
    if !authorised(&h) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"title":"Unauthorized","status":401,"detail":"Unauthorized"}"#,
        )
            .into_response();
    }
    s.lock().unwrap().lookups += 1;
    axum::Json(
        serde_json::json!({"data": {"id": "42", "name": "Figs", "username": "FigsFromPlums"}}),
    )
    .into_response()
}

async fn timeline(
    State(s): State<Shared>,
    h: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if !authorised(&h) {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    let mut api = s.lock().unwrap();
    let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    api.timeline_calls.push(qs.join("&"));
    let since = q
        .iter()
        .find(|(k, _)| k == "since_id")
        .map(|(_, v)| v.clone());
    match since.as_deref() {
        None => axum::Json(serde_json::json!({
            "data": [
                {"id": "102", "text": "Duotone #poster series", "created_at": "2026-03-02T10:00:00.000Z",
                 "entities": {"hashtags": [{"start": 9, "end": 16, "tag": "poster"}]},
                 "attachments": {"media_keys": ["3_102"]}},
                {"id": "101", "text": "Brutalist type specimen", "created_at": "2026-03-01T10:00:00.000Z"}
            ],
            "includes": {"media": [{"media_key": "3_102", "type": "photo", "url": "https://pbs.example/1.jpg", "alt_text": "a duotone gradient poster"}]},
            "meta": {"result_count": 2, "newest_id": "102", "oldest_id": "101"}
        }))
        .into_response(),
        Some("102") => {
            if let Some(reset) = api.limit_once_until.take() {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("x-rate-limit-remaining", "0".to_string()), ("x-rate-limit-reset", reset.to_string())],
                    r#"{"title":"Too Many Requests","status":429}"#,
                )
                    .into_response();
            }
            axum::Json(serde_json::json!({
                "data": [{"id": "103", "text": "Risograph zine", "created_at": "2026-03-03T10:00:00.000Z"}],
                "meta": {"result_count": 1, "newest_id": "103", "oldest_id": "103"}
            }))
            .into_response()
        }
        Some(_) => axum::Json(serde_json::json!({"meta": {"result_count": 0}})).into_response(),
    }
}

async fn serve(state: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/2/users/by/username/{handle}", get(lookup))
        .route("/2/users/{id}/tweets", get(timeline))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn opts(base: &str, env: &str) -> IngestOptions {
    IngestOptions {
        x_api_base: base.into(),
        x_token_env: env.into(),
        // The fake X API listens on 127.0.0.1.
        allow_private_networks: true,
        ..fast_opts()
    }
}

#[tokio::test]
async fn the_timeline_is_read_since_the_last_post_and_rate_limits_are_honoured() {
    // SAFETY: this test binary runs this one test in its own process (nextest).
    unsafe { std::env::set_var("CONCIERTO_TEST_X_TOKEN", "test-token") };
    let state: Shared = Arc::default();
    let base = serve(state.clone()).await;
    let mut h = harness(opts(&base, "CONCIERTO_TEST_X_TOKEN")).await;
    let src = source(
        "FigsFromPlums",
        SourceKind::TwitterStream,
        "@FigsFromPlums",
        Refresh::Continuous,
    );

    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(r.new, 2, "{r:?}");
    let post = h
        .library
        .get_by_source_key("FigsFromPlums", "102")
        .unwrap()
        .unwrap();
    assert_eq!(post.tags, vec!["poster"]);
    assert!(post.text.contains("duotone gradient poster"));
    assert_eq!(h.drain().await.len(), 2);
    {
        let api = state.lock().unwrap();
        assert_eq!(api.lookups, 1);
        assert!(!api.timeline_calls[0].contains("since_id"));
        assert!(api.timeline_calls[0].contains("max_results=100"));
        assert!(api.timeline_calls[0].contains("expansions=attachments.media_keys"));
    }

    // The next read asks since 102 and is refused with a reset 15 minutes on.
    let reset = (h.clock.now() + chrono::Duration::minutes(15)).timestamp();
    state.lock().unwrap().limit_once_until = Some(reset);
    let err = h.ingester.run_once(&src).await.unwrap_err();
    assert!(matches!(err, IngestError::RateLimited { .. }), "{err}");
    // Before the reset, nothing is asked at all.
    let calls = state.lock().unwrap().timeline_calls.len();
    assert!(matches!(
        h.ingester.run_once(&src).await,
        Err(IngestError::RateLimited { .. })
    ));
    assert_eq!(state.lock().unwrap().timeline_calls.len(), calls);

    // After it, the read resumes from the cursor.
    h.clock.advance(Duration::from_secs(16 * 60));
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(r.new, 1, "{r:?}");
    assert!(
        state
            .lock()
            .unwrap()
            .timeline_calls
            .last()
            .unwrap()
            .contains("since_id=102")
    );
    let got = h.drain().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].title, "Risograph zine");
    assert_eq!(
        state.lock().unwrap().lookups,
        1,
        "the user id is remembered"
    );

    // Nothing new: an empty answer, nothing announced.
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(r, Default::default());
}

#[tokio::test]
async fn an_api_error_or_a_missing_token_is_reported() {
    unsafe { std::env::set_var("CONCIERTO_TEST_X_BAD_TOKEN", "wrong") };
    let state: Shared = Arc::default();
    let base = serve(state.clone()).await;
    let h = harness(opts(&base, "CONCIERTO_TEST_X_BAD_TOKEN")).await;
    let src = source(
        "figs",
        SourceKind::TwitterStream,
        "@FigsFromPlums",
        Refresh::Continuous,
    );
    match h.ingester.run_once(&src).await {
        Err(IngestError::Api { status: 401, .. }) => {}
        other => panic!("expected a 401 API error, got {other:?}"),
    }
    let h = harness(opts(&base, "CONCIERTO_TEST_X_UNSET")).await;
    let err = h.ingester.run_once(&src).await.unwrap_err();
    assert!(err.to_string().contains("CONCIERTO_TEST_X_UNSET"), "{err}");
}
