//! Deliverables: made when a run succeeds, kept in the outbox until the bus
//! took them, published again after a failed publish.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{Bus, ConsumerSpec, EmbeddedBus, ensure_standard_streams};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Engine, Limits, deliverables};
use concierto_proto::v1;

fn studio(dir: &tempfile::TempDir) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
agents:
  paths: ["{}"]
workflows:
  daily:
    deliverables: [draft, check]
    steps:
      - id: research
        role: trend-researcher
        task: "Research."
      - id: draft
        role: content-creator
        task: "Draft."
        labels: [draft]
      - id: check
        role: brand-guardian
        task: "Check."
"#,
        agents.display()
    );
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 9, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn result(task: &v1::Task, status: v1::TaskStatus, output: &str) -> v1::TaskResult {
    v1::TaskResult {
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        step_id: task.step_id.clone(),
        attempt: task.attempt,
        role: task.role.clone(),
        worker_id: "w".into(),
        status: status as i32,
        output: output.into(),
        error: if status == v1::TaskStatus::Succeeded {
            String::new()
        } else {
            "broke".into()
        },
        ..Default::default()
    }
}

#[test]
fn a_succeeded_run_makes_one_deliverable_per_named_step_kept_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(&dir), store.clone(), Limits::default());
    e.recover(t(0)).unwrap();
    let start = v1::StartRun {
        run_id: "r1".into(),
        workflow: "daily".into(),
        params: [("brief".to_string(), "autumn".to_string())].into(),
        ..Default::default()
    };
    let mut fx = e.start_run(start, t(0)).unwrap();
    let outputs = [
        "notes",
        "intro line\n## Autumn drop\nTerracotta.",
        "no heading here",
    ];
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            fx.deliverables.is_empty(),
            "nothing before the run succeeds"
        );
        let task = fx.tasks[0].clone();
        fx = e
            .apply_result(
                result(&task, v1::TaskStatus::Succeeded, out),
                t(i as i64 + 1),
            )
            .unwrap();
    }
    let ids: Vec<&str> = fx.deliverables.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec!["r1/draft", "r1/check"]);
    let d = &fx.deliverables[0];
    assert_eq!(d.title, "Autumn drop");
    assert_eq!(fx.deliverables[1].title, "daily 2026-12-06");
    assert_eq!(d.role, "content-creator");
    assert_eq!(d.labels, vec!["draft"]);
    assert_eq!(d.params["brief"], "autumn");
    assert_eq!(d.content, outputs[1]);
    assert_eq!(d.at.unwrap().seconds, t(3).timestamp());
    // Written with the run, until the bus takes them.
    let pending = deliverables::pending(&store, 10).unwrap();
    assert_eq!(pending.len(), 2);
    deliverables::published(&store, "r1/draft").unwrap();
    assert_eq!(deliverables::pending(&store, 10).unwrap()[0].id, "r1/check");
}

#[test]
fn a_failed_run_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let mut e = Engine::new(studio(&dir), store.clone(), Limits::default());
    e.recover(t(0)).unwrap();
    let start = v1::StartRun {
        run_id: "r2".into(),
        workflow: "daily".into(),
        ..Default::default()
    };
    let fx = e.start_run(start, t(0)).unwrap();
    let task = fx.tasks[0].clone();
    let fx = e
        .apply_result(result(&task, v1::TaskStatus::Failed, ""), t(1))
        .unwrap();
    assert!(fx.deliverables.is_empty());
    assert!(deliverables::pending(&store, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_deliverable_whose_publish_failed_is_published_from_the_outbox() {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("t."));
    let d = v1::Deliverable {
        id: "r1/draft".into(),
        run_id: "r1".into(),
        workflow: "daily".into(),
        ..Default::default()
    };
    deliverables::stage(&store, std::slice::from_ref(&d)).unwrap();
    // No stream yet: the publish fails and the deliverable stays.
    deliverables::send(&bus, &store, std::slice::from_ref(&d)).await;
    assert_eq!(deliverables::pending(&store, 10).unwrap().len(), 1);

    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let (handle, control) = ServiceHandle::new("resender");
    let task = deliverables::spawn_resender(
        bus.clone(),
        store.clone(),
        Duration::from_millis(20),
        control.signal.clone(),
    );
    let consumer = bus
        .consumer(
            "DELIVERABLES",
            &ConsumerSpec::new("publisher", "deliverable.>"),
        )
        .await
        .unwrap();
    let got = consumer.fetch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].message.subject.ends_with("deliverable.daily"));
    assert_eq!(got[0].message.msg_id(), Some("r1/draft"));
    for _ in 0..100 {
        if deliverables::pending(&store, 10).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(deliverables::pending(&store, 10).unwrap().is_empty());
    // Resending again publishes nothing new: the outbox is empty.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        consumer
            .fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    task.abort();
    drop((handle, control));
}
