//! `user_feedback.learner: user-researcher` over a real nats-server: the
//! feedback router's exported JSON files in the source's folder are read by
//! the ingest service and their summary reaches the user-researcher as
//! standing context (`AgentContext` on `context.user-researcher`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_ingest::IngestOptions;
use concierto_proto::v1::AgentContext;
use concierto_testkit::NatsServer;

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let processed = dir.join("feedback/processed");
    std::fs::create_dir_all(&processed).expect("mkdir");
    let yaml = format!(
        r#"
studio:
  name: "Feedback learner"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  research:
    description: "Study what users say."
    steps:
      - id: study
        role: user-researcher
        task: "Summarise what users said."
content_sources:
  training_data:
    - user_feedback:
        source: "{processed}"
        learner: user-researcher
        training_frequency: "continuous"
"#,
        agents = agents.display(),
        processed = processed.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).expect("write");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

/// One answered piece of feedback as the feedback router exports it.
fn exported(id: &str, channel: &str, category: &str, text: &str) -> String {
    serde_json::json!({
        "feedback_id": id, "channel": channel, "author": "ana@example.com",
        "subject": "About the new site", "text": text,
        "received_at": "2026-12-01T10:00:00Z", "category": category,
        "roles": ["brand-guardian"], "reply": "Thanks, we are on it.",
        "sent_at": "2026-12-01T10:20:00Z", "response_seconds": 1200.0
    })
    .to_string()
}

#[actix_rt::test]
async fn exported_feedback_reaches_the_user_researcher() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("dir");
    let st = studio(dir.path());
    let folder = dir.path().join("feedback/processed");
    std::fs::write(
        folder.join("email-1.json"),
        exported(
            "email-1",
            "email",
            "brand",
            "The new logo is too small on phones",
        ),
    )
    .expect("write");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect"),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .expect("streams");
    let mut contexts = bus
        .subscribe_proto::<AgentContext>("context.user-researcher")
        .await
        .expect("subscribe");
    let clock = ManualClock::new(Utc::now());
    let shared: SharedClock = Arc::new(clock.clone());
    let library = Arc::new(
        ContentLibrary::temporary()
            .expect("library")
            .with_clock(shared.clone()),
    );
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().expect("store"));
    let opts = IngestOptions {
        tick: Duration::from_millis(50),
        debounce: Duration::from_millis(100),
        learn_delay: Duration::ZERO,
        ..Default::default()
    };
    let every = opts.continuous_every;
    let ingest = concierto_ingest::start(st.clone(), bus.clone(), library, store, shared, opts)
        .await
        .expect("ingest starts");

    // The learner may run before the folder is read; it runs again once the
    // read brings the record.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let (c, _) = tokio::time::timeout_at(deadline, contexts.next())
            .await
            .expect("feedback insights in time")
            .expect("subscription open");
        if c.content.contains("logo is too small") {
            break c;
        }
    };
    assert_eq!(first.role, "user-researcher");
    assert_eq!(first.name, "feedback-insights:user_feedback");
    assert!(
        first.content.contains("1 pieces of feedback"),
        "{}",
        first.content
    );
    assert!(first.content.contains("- brand: 1"), "{}", first.content);

    // A second export: recomputed without waiting.
    std::fs::write(
        folder.join("slack-2.json"),
        exported(
            "slack-2",
            "slack",
            "technical",
            "The form times out on submit",
        ),
    )
    .expect("write");
    // `continuous`: the folder is polled every `continuous_every` of the clock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recomputed insights in time"
        );
        clock.advance(every + Duration::from_secs(1));
        let Ok(Some((c, _))) =
            tokio::time::timeout(Duration::from_millis(500), contexts.next()).await
        else {
            continue;
        };
        if c.content.contains("2 pieces of feedback") {
            assert!(c.content.contains("form times out"), "{}", c.content);
            assert!(c.content.contains("- technical: 1"), "{}", c.content);
            break;
        }
    }
    ingest.stop().await.expect("stops");
}
