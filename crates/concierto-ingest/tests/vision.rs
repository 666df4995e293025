//! Visual concepts from a vision model: a studio whose asset folder's indexer
//! runs on an `openai` executor; the executor talks to a local server speaking
//! the chat-completions API, which sees the picture and answers with concepts.

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::{fast_opts, harness};
use concierto_core::config::{self, SourceKind};
use concierto_ingest::{IngestOptions, Vision};
use serde_json::{Value, json};

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(12, 12, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

type Seen = Arc<Mutex<Vec<Value>>>;

async fn chat(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    let n = {
        let mut s = seen.lock().unwrap();
        s.push(body);
        s.len()
    };
    let content = if n == 1 {
        "Sure.\n```json\n{\"concepts\": [\"Duotone\", \"bento grid\", \"risograph\"]}\n```"
    } else {
        "I cannot tell."
    };
    Json(json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 20, "total_tokens": 920}
    }))
}

#[tokio::test]
async fn a_vision_model_adds_the_concepts_it_sees() {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir(&assets).unwrap();
    std::fs::write(assets.join("poster.png"), png([230, 40, 90])).unwrap();
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio: {{ name: "Vision", timezone: "UTC" }}
agents:
  paths: ["{agents}"]
  executors:
    eyes: {{ kind: openai, base_url: "http://{addr}/v1", model: "gpt-4o-mini", max_retries: 0 }}
  roles:
    visual-storyteller: {{ executor: eyes }}
content_sources:
  curated_databases:
    - internal_assets:
        type: "image_database"
        path: "{assets}"
        indexer: visual-storyteller
        refresh: "daily"
    - design_patterns:
        type: "component_library"
        path: "{assets}"
        indexer: ui-designer
        refresh: "daily"
"#,
        agents = agents.display(),
        assets = assets.display(),
    );
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let studio = config::load_with_env(&path, Vec::new()).expect("studio loads");

    // Only the source whose role runs on a model gets one.
    let vision = Vision::for_studio(&studio);
    assert!(vision.covers("internal_assets"));
    assert!(
        !vision.covers("design_patterns"),
        "ui-designer runs on builtin"
    );

    let mut h = harness(IngestOptions {
        vision: Some(vision),
        ..fast_opts()
    })
    .await;
    let source = studio
        .content_sources
        .iter()
        .find(|s| s.name == "internal_assets")
        .unwrap()
        .clone();
    assert_eq!(source.kind, SourceKind::ImageDatabase);
    let r = h.ingester.run_once(&source).await.unwrap();
    assert_eq!(r.new, 1);
    assert_eq!(
        h.drain().await.len(),
        1,
        "announced before the model is asked"
    );

    let item = h
        .library
        .get_by_source_key("internal_assets", "poster.png")
        .unwrap()
        .unwrap();
    for c in ["duotone", "bento grid", "risograph"] {
        assert!(
            item.concepts.contains(&c.to_string()),
            "{:?}",
            item.concepts
        );
    }
    // The model saw the picture itself.
    let request = seen.lock().unwrap()[0].clone();
    let text = request.to_string();
    assert!(text.contains("data:image/png;base64,"), "{text}");
    assert!(text.contains("visual concepts"), "{text}");
    // Searchable by what the model saw.
    let hits = h
        .library
        .search(&concierto_content::Query::text("risograph"))
        .unwrap();
    assert_eq!(hits.total, 1);

    // An answer without concepts is logged and skipped; the picture stays.
    std::fs::write(assets.join("second.png"), png([10, 200, 90])).unwrap();
    let r = h.ingester.run_once(&source).await.unwrap();
    assert_eq!(r.new, 1);
    let second = h
        .library
        .get_by_source_key("internal_assets", "second.png")
        .unwrap()
        .unwrap();
    assert!(!second.concepts.iter().any(|c| c == "duotone"));
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Nothing is left waiting for the model.
    assert!(
        h.store
            .scan_prefix("ingest", b"vision/")
            .unwrap()
            .is_empty()
    );
}
