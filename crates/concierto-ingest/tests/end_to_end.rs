//! End to end over a real nats-server: a new feed item is ingested, announced
//! on content.ingested.siteinspire, fires on_new_inspiration in the scheduler,
//! and the orchestrator starts a run of its workflow.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_ingest::IngestOptions;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::RunEvent;
use concierto_scheduler::SchedulerOptions;
use concierto_testkit::NatsServer;

const RSS: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Inspiration</title>
<item><title>Brutalist portfolio for Studio Nord</title><link>http://example.test/nord</link><guid>nord</guid>
<description>A neo-brutalist portfolio with a bento grid.</description></item></channel></rss>"#;

fn studio(dir: &std::path::Path, feed: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Ingest end to end"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  inspiration-to-concept:
    description: "Turn new inspiration into a concept."
    steps:
      - id: concept
        role: innovation-catalyst
        task: "Propose a campaign concept from the new inspiration."
        inputs: [trigger]
triggers:
  event_based:
    - on_new_inspiration:
        source: ["siteinspire"]
        agents: [innovation-catalyst]
        workflow: "inspiration-to-concept"
content_sources:
  external_inspiration:
    - siteinspire:
        type: "web_scraper"
        url: "{feed}"
        frequency: "daily"
        processor: innovation-catalyst
        allow_private_networks: true
"#,
        agents = agents.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

#[actix_rt::test]
async fn a_new_feed_item_fires_on_new_inspiration_and_a_run_starts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/feed",
        get(|| async { ([(header::CONTENT_TYPE, "application/rss+xml")], RSS) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path(), &format!("http://{addr}/feed"));
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let mut events = bus
        .subscribe_proto::<RunEvent>("run.event.>")
        .await
        .unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(chrono::Utc::now()));

    let orch = concierto_orchestrator::start(
        st.clone(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()) as Arc<dyn KvStore>,
        clock.clone(),
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let worker = start_worker(
        st.roles["innovation-catalyst"].clone(),
        Arc::new(BuiltinExecutor::default()),
        bus.clone(),
        WorkerOptions {
            worker_id: "t".into(),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let scheduler = concierto_scheduler::start(
        st.clone(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()),
        clock.clone(),
        SchedulerOptions {
            tick: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(clock.clone()),
    );
    let ingest = concierto_ingest::start(
        st.clone(),
        bus.clone(),
        library.clone(),
        Arc::new(SledStore::temporary().unwrap()),
        clock.clone(),
        IngestOptions {
            tick: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let item = library_item(&library).await;
    let expected_run = format!("on_new_inspiration@sha256:{}", item);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen_states = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("a run event of the inspiration run in time")
            .expect("the subscription is open");
        let (ev, _) = next;
        if ev.run_id == expected_run {
            assert_eq!(ev.workflow, "inspiration-to-concept");
            seen_states.push(ev.run_state);
            break;
        }
    }
    assert!(!seen_states.is_empty());

    ingest.stop().await.unwrap();
    scheduler.stop().await.unwrap();
    worker.stop().await.unwrap();
    orch.stop().await.unwrap();
}

/// Waits until the ingester has stored the feed's item; its library id.
async fn library_item(library: &ContentLibrary) -> String {
    for _ in 0..200 {
        if let Some(item) = library.get_by_source_key("siteinspire", "nord").unwrap() {
            return item.id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the feed item was not ingested");
}
