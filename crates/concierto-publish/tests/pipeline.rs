//! A succeeded daily pipeline end to end against a real nats-server: the
//! orchestrator, a builtin worker per role, the ingest service with its content
//! library, and the publisher. The run's deliverable step ends up in the
//! library (kind `deliverable`, searchable, in the workflow's collection) and as
//! a file in the folder publisher's folder.

use std::sync::Arc;
use std::time::Duration;

use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::{ContentLibrary, Kind, Query};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_ingest::IngestOptions;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1;
use concierto_publish::{Backoff, PublisherOptions};
use concierto_testkit::{NatsServer, eventually};

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Pipeline"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  daily-content-pipeline:
    description: "Research, draft, check."
    deliverables: [draft-content]
    steps:
      - id: research-context
        role: trend-researcher
        task: "Summarise today's trends."
        inputs: [trigger]
      - id: draft-content
        role: content-creator
        task: "Write today's piece."
        inputs: [research-context]
        labels: [draft]
      - id: brand-check
        role: brand-guardian
        task: "Check the piece against the brand."
        inputs: [draft-content]
publishers:
  drafts: {{kind: folder, path: ./deliverables}}
"#,
        agents = agents.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let checked = config::check(&path);
    Arc::new(
        checked
            .studio
            .unwrap_or_else(|| panic!("{:?}", checked.problems)),
    )
}

#[actix_rt::test]
async fn a_succeeded_daily_pipeline_leaves_a_deliverable_in_the_library_and_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let orch_store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let orch = concierto_orchestrator::start(
        st.clone(),
        bus.clone(),
        orch_store.clone(),
        clock.clone(),
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut workers = Vec::new();
    for role in ["trend-researcher", "content-creator", "brand-guardian"] {
        workers.push(
            start_worker(
                st.roles[role].clone(),
                Arc::new(BuiltinExecutor::default()),
                bus.clone(),
                WorkerOptions {
                    worker_id: "t".into(),
                    fetch_wait: Duration::from_millis(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
    }
    let library = Arc::new(ContentLibrary::temporary().unwrap());
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
    let publisher = concierto_publish::start(
        st.clone(),
        bus.clone(),
        Arc::new(SledStore::open(&dir.path().join("publisher")).unwrap()),
        clock.clone(),
        PublisherOptions {
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let run_id = "daily-content-pipeline@2026-12-06T09:00:00Z";
    let start = v1::StartRun {
        run_id: run_id.into(),
        workflow: "daily-content-pipeline".into(),
        trigger: "daily_content_generation".into(),
        priority: v1::Priority::Normal as i32,
        params: [("brief".to_string(), "autumn range".to_string())].into(),
        requested_by: "test".into(),
        ..Default::default()
    };
    bus.publish_durable_proto(subjects::RUN_START, &start, run_id)
        .await
        .unwrap();

    let id = format!("{run_id}/draft-content");
    let record = eventually(
        Duration::from_secs(60),
        "the deliverable's outcomes",
        || {
            let (bus, id) = (bus.clone(), id.clone());
            async move {
                let req = v1::ListDeliverablesRequest {
                    id,
                    ..Default::default()
                };
                let r: v1::ListDeliverablesResponse = bus
                    .request_proto(subjects::PUBLISH_LIST, &req, Duration::from_secs(2))
                    .await
                    .ok()?;
                r.deliverables
                    .into_iter()
                    .next()
                    .filter(|r| r.outcomes.len() == 2 && r.outcomes.iter().all(|o| !o.pending))
            }
        },
    )
    .await;
    let d = record.deliverable.clone().unwrap();
    assert_eq!(d.run_id, run_id);
    assert_eq!(d.workflow, "daily-content-pipeline");
    assert_eq!(d.step_id, "draft-content");
    assert_eq!(d.role, "content-creator");
    assert!(!d.content.is_empty() && !d.title.is_empty());
    assert!(d.labels.iter().any(|l| l == "draft"), "{:?}", d.labels);
    assert_eq!(d.params["brief"], "autumn range");
    for o in &record.outcomes {
        assert!(o.ok, "{o:?}");
    }

    // In the library: kind deliverable, linked to its run, in the workflow's collection, searchable.
    let hits = library
        .search(&Query::browse().kind(Kind::Deliverable))
        .unwrap();
    assert_eq!(hits.total, 1);
    let item = &hits.hits[0].item;
    assert_eq!(item.source_key, id);
    assert!(item.notes.contains(run_id));
    assert!(
        item.tags
            .iter()
            .any(|t| t == &format!("run:{}", run_id.to_lowercase()))
    );
    let in_collection = library
        .collection_items(&concierto_ingest::deliverables::collection_of(
            "daily-content-pipeline",
        ))
        .unwrap();
    assert_eq!(in_collection.len(), 1);
    let word = d
        .content
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| w.len() > 5)
        .expect("a word of the content")
        .to_string();
    let found = library
        .search(&Query::text(&word).kind(Kind::Deliverable))
        .unwrap();
    assert_eq!(found.total, 1, "searching for {word:?}");

    // In the folder.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("deliverables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains(&format!("\"id\": \"{id}\"")), "{text}");

    // The orchestrator's outbox is empty once the bus took it.
    eventually(
        Duration::from_secs(10),
        "the orchestrator's outbox drained",
        || {
            let s = orch_store.clone();
            async move {
                concierto_orchestrator::deliverables::pending(&s, 10)
                    .unwrap()
                    .is_empty()
                    .then_some(())
            }
        },
    )
    .await;

    publisher.stop().await.unwrap();
    ingest.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    orch.stop().await.unwrap();
}
