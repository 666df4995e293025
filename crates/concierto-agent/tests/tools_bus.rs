//! Concierto's tools over a real nats-server: `library_search`,
//! `metrics_get` and `runs_recent` against responders speaking the services'
//! protos on their subjects (the real ingest responders are exercised in
//! concierto-ingest's `tools` test), a service not running, and `WebSearch`
//! against a local server speaking the Brave Search API's wire format, and
//! its content-library fallback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use concierto_agent::tools::web::WebSearchTool;
use concierto_agent::tools::{Tool, ToolCx, concierto_toolbox};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ProtoMessage};
use concierto_core::config::{Studio, WebSearchSettings, load_with_env};
use concierto_core::subjects;
use concierto_proto::v1;
use concierto_testkit::NatsServer;
use serde_json::{Value, json};

async fn connect(server: &NatsServer) -> Arc<dyn Bus> {
    Arc::new(
        NatsBus::connect(&server.url(), NatsOptions::default())
            .await
            .expect("connect to the test nats-server"),
    )
}

fn studio() -> (tempfile::TempDir, Studio) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("concierto.yaml"),
        "studio: { name: Test }\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("agents")).unwrap();
    let s = load_with_env(
        &dir.path().join("concierto.yaml"),
        Vec::<(String, String)>::new(),
    )
    .expect("studio");
    (dir, s)
}

fn cx() -> ToolCx {
    ToolCx::new(&v1::Task {
        role: "analytics-reporter".into(),
        ..Default::default()
    })
}

/// Answers `subject` (queue group `group`) with `answer(request)`, and keeps
/// the requests it saw.
async fn respond<Q: ProtoMessage + Clone, R: ProtoMessage>(
    bus: &Arc<dyn Bus>,
    subject: &str,
    group: &str,
    answer: impl Fn(&Q) -> R + Send + 'static,
) -> Arc<Mutex<Vec<Q>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sub = bus
        .queue_subscribe_proto::<Q>(subject, group)
        .await
        .unwrap();
    let (bus, s) = (bus.clone(), seen.clone());
    tokio::spawn(async move {
        while let Some((req, msg)) = sub.next().await {
            s.lock().unwrap().push(req.clone());
            if let Some(reply) = msg.reply.clone() {
                bus.respond_proto(&reply, &answer(&req)).await.unwrap();
            }
        }
    });
    bus_flush(&seen).await;
    seen
}

async fn bus_flush<T>(_: &T) {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn item(i: usize) -> v1::ContentItem {
    v1::ContentItem {
        item_id: format!("sha256:{i:04}"),
        source: "siteinspire".into(),
        kind: "page".into(),
        title: format!("Brutalist portfolio {i}"),
        url: format!("https://example.com/{i}"),
        text: "word ".repeat(500),
        tags: vec!["portfolio".into()],
        palette: vec![v1::PaletteColor {
            hex: "#1f3a5f".into(),
            share: 0.5,
        }],
        ingested_at: ts(1_780_000_000),
        ..Default::default()
    }
}

async fn call(tool: &dyn Tool, args: Value) -> Result<Value, String> {
    tool.call(args, &cx())
        .await
        .map(|s| serde_json::from_str(&s).expect("answers are JSON"))
        .map_err(|e| e.0)
}

#[tokio::test]
async fn concierto_tools_ask_their_services_over_the_bus() {
    let server = NatsServer::start().expect("nats-server");
    let bus = connect(&server).await;
    let (_dir, s) = studio();
    let tb = concierto_toolbox(&s, bus.clone());

    // Nobody answering yet: the model is told which service is not running.
    let e = call(tb.get("metrics_get").unwrap().as_ref(), json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        "the tracker is not running (nobody answers on the bus); try again later"
    );

    let searches = respond(
        &bus,
        subjects::LIBRARY_SEARCH,
        "ingest",
        |r: &v1::SearchContentRequest| v1::SearchContentResponse {
            items: (0..r.page_size as usize).map(item).collect(),
            next_page_token: String::new(),
        },
    )
    .await;
    let metrics = respond(
        &bus,
        subjects::TRACKER_GET_METRICS,
        "tracker",
        |_: &v1::GetMetricsRequest| v1::GetMetricsResponse {
            metrics: vec![v1::Metric {
                name: "engagement_rate".into(),
                group: "content_generation".into(),
                target: "0.05".into(),
                current: 0.06,
                on_target: true,
                tracker: "analytics-reporter".into(),
                series: (0..100)
                    .map(|i| v1::MetricPoint {
                        at: ts(1_780_000_000 + i * 60),
                        value: 0.01 + i as f64 * 0.0005,
                    })
                    .collect(),
                unit: "ratio".into(),
            }],
        },
    )
    .await;
    let runs = respond(
        &bus,
        subjects::ORCHESTRATOR_LIST_RUNS,
        "orchestrator",
        |r: &v1::ListRunsRequest| v1::ListRunsResponse {
            runs: vec![v1::Run {
                run_id: "r-1".into(),
                workflow: r.workflow.clone(),
                trigger: "daily".into(),
                state: v1::RunState::Succeeded as i32,
                created_at: ts(1_780_000_000),
                steps: vec![v1::RunStep {
                    step_id: "review".into(),
                    role: "brand-guardian".into(),
                    state: v1::StepState::Succeeded as i32,
                    verdict: Some(v1::Verdict {
                        pass: true,
                        score: 0.9,
                        notes: "On voice.".into(),
                        reasons: vec![],
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            next_page_token: String::new(),
        },
    )
    .await;

    let v = call(
        tb.get("library_search").unwrap().as_ref(),
        json!({"query": "brutalist", "kind": "page", "tags": ["portfolio"], "limit": 3}),
    )
    .await
    .unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(v["items"][0]["title"], "Brutalist portfolio 0");
    assert_eq!(v["items"][0]["palette"], json!(["#1f3a5f"]));
    assert_eq!(v["items"][0]["ingested_at"], "2026-05-28T20:26:40Z");
    assert!(
        v["items"][0]["text"].as_str().unwrap().chars().count() <= 401,
        "text is cut"
    );
    {
        let seen = searches.lock().unwrap();
        assert_eq!(
            (
                seen[0].query.as_str(),
                seen[0].kind.as_str(),
                seen[0].tags.clone(),
                seen[0].page_size
            ),
            ("brutalist", "page", vec!["portfolio".to_string()], 3)
        );
    }
    let e = call(
        tb.get("library_search").unwrap().as_ref(),
        json!({"query": "x", "limit": 500}),
    )
    .await
    .unwrap_err();
    assert_eq!(e, "`limit` must be a whole number from 1 to 20");

    let v = call(
        tb.get("metrics_get").unwrap().as_ref(),
        json!({"names": ["engagement_rate"], "window_hours": 6}),
    )
    .await
    .unwrap();
    let m = &v["metrics"][0];
    assert_eq!(
        (
            m["name"].clone(),
            m["on_target"].clone(),
            m["points"].clone()
        ),
        (json!("engagement_rate"), json!(true), json!(100))
    );
    assert_eq!(
        m["series"].as_array().unwrap().len(),
        48,
        "the latest 48 points"
    );
    assert!((m["change"].as_f64().unwrap() - 0.0495).abs() < 1e-9);
    assert_eq!(metrics.lock().unwrap()[0].window_hours, 6);

    let v = call(
        tb.get("runs_recent").unwrap().as_ref(),
        json!({"workflow": "daily-content-pipeline", "limit": 2}),
    )
    .await
    .unwrap();
    assert_eq!(v["runs"][0]["outcome"], "succeeded");
    assert_eq!(v["runs"][0]["workflow"], "daily-content-pipeline");
    assert_eq!(
        v["runs"][0]["steps"][0],
        json!({"step": "review", "role": "brand-guardian", "state": "succeeded", "score": 0.9, "pass": true, "notes": "On voice."})
    );
    assert_eq!(runs.lock().unwrap()[0].page_size, 2);

    // A service that refuses: its reason reaches the model.
    let mut sub = bus
        .queue_subscribe(subjects::ORCHESTRATOR_GET_RUN, "x")
        .await
        .unwrap();
    let b = bus.clone();
    tokio::spawn(async move {
        if let Some(m) = sub.next().await {
            let out = concierto_bus::Outgoing::new(Vec::new())
                .header(subjects::ERROR_HEADER, "not_found: no run r-9");
            b.respond(m.reply.as_deref().unwrap(), out).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = concierto_agent::tools::studio::ask::<v1::GetRunRequest, v1::GetRunResponse>(
        bus.as_ref(),
        "orchestrator",
        subjects::ORCHESTRATOR_GET_RUN,
        &v1::GetRunRequest {
            run_id: "r-9".into(),
        },
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "the orchestrator refused: no run r-9");
}

#[tokio::test]
async fn a_service_that_does_not_answer_in_time_is_an_error_the_model_sees() {
    let server = NatsServer::start().expect("nats-server");
    let bus = connect(&server).await;
    // Subscribed but never answering.
    let _sub = bus
        .queue_subscribe(subjects::TRACKER_GET_METRICS, "tracker")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = concierto_agent::tools::studio::ask::<v1::GetMetricsRequest, v1::GetMetricsResponse>(
        bus.as_ref(),
        "tracker",
        subjects::TRACKER_GET_METRICS,
        &v1::GetMetricsRequest::default(),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "the tracker did not answer within 300ms");
}

/// A search API speaking Brave's format: `GET /res/v1/web/search?q=..&count=..`
/// with `X-Subscription-Token`.
async fn brave() -> (String, Arc<Mutex<Vec<HashMap<String, String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = Router::new().route(
        "/res/v1/web/search",
        get(move |headers: HeaderMap, Query(q): Query<HashMap<String, String>>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(q.clone());
                if headers.get("x-subscription-token").and_then(|v| v.to_str().ok()) != Some("k-123") {
                    return (StatusCode::UNAUTHORIZED, "bad token".to_string());
                }
                let results: Vec<Value> = (0..15)
                    .map(|i| json!({"title": format!("{} result {i}", q["q"]), "url": format!("https://r.test/{i}"), "description": "d".repeat(1000), "extra": 1}))
                    .collect();
                (StatusCode::OK, json!({"type": "search", "web": {"type": "search", "results": results}}).to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/res/v1/web/search"), seen)
}

#[tokio::test]
async fn web_search_calls_the_configured_api_or_falls_back_to_the_library() {
    let server = NatsServer::start().expect("nats-server");
    let bus = connect(&server).await;
    let (url, seen) = brave().await;
    let settings = WebSearchSettings {
        url: url.clone(),
        api_key_env: "TEST_SEARCH_KEY".into(),
        header: "X-Subscription-Token".into(),
    };
    let env = |k: &str| (k == "TEST_SEARCH_KEY").then(|| "k-123".to_string());
    let t = WebSearchTool::with_env(bus.clone(), Some(&settings), env);
    let v = call(&t, json!({"query": "brutalist portfolios 2026"}))
        .await
        .unwrap();
    assert_eq!(v["source"], "web");
    assert_eq!(v["count"], 10);
    assert_eq!(
        v["results"][0]["title"],
        "brutalist portfolios 2026 result 0"
    );
    assert_eq!(v["results"][0]["url"], "https://r.test/0");
    assert!(
        v["results"][0]["description"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 401
    );
    assert_eq!(seen.lock().unwrap()[0]["count"], "10");

    let wrong = WebSearchTool::with_env(bus.clone(), Some(&settings), |_| Some("nope".into()));
    let e = call(&wrong, json!({"query": "x"})).await.unwrap_err();
    assert_eq!(e, "the search API answered HTTP 401: bad token");
    let unset = WebSearchTool::with_env(bus.clone(), Some(&settings), |_| None);
    let e = call(&unset, json!({"query": "x"})).await.unwrap_err();
    assert_eq!(
        e,
        "web search is not available: the environment variable TEST_SEARCH_KEY is not set"
    );
    let e = call(&t, json!({"query": "q".repeat(500)}))
        .await
        .unwrap_err();
    assert!(e.contains("at most 400 are accepted"), "{e}");

    // Not configured: the content library answers.
    let searches = respond(
        &bus,
        subjects::LIBRARY_SEARCH,
        "ingest",
        |r: &v1::SearchContentRequest| v1::SearchContentResponse {
            items: (0..2)
                .map(item)
                .collect::<Vec<_>>()
                .into_iter()
                .map(|mut i| {
                    i.title = r.query.clone();
                    i
                })
                .collect(),
            next_page_token: String::new(),
        },
    )
    .await;
    let lib = WebSearchTool::with_env(bus.clone(), None, |_| None);
    assert!(lib.spec().description.contains("content library"));
    let v = call(&lib, json!({"query": "duotone posters"}))
        .await
        .unwrap();
    assert_eq!(v["source"], "content library (no web search is configured)");
    assert_eq!(v["results"][1]["title"], "duotone posters");
    assert_eq!(searches.lock().unwrap()[0].page_size, 10);
}
