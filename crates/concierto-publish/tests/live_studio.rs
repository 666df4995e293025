//! A changed studio reaches a running publisher (`ServiceHandle::
//! studio_changed`): the next deliverable goes to the new studio's
//! publishers (a folder moved, a publisher added); over a real nats-server
//! and the ingest service's real `library.put`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, encode, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_proto::v1;
use concierto_publish::{Backoff, PublisherOptions};
use concierto_testkit::{NatsServer, eventually};

fn studio(dir: &Path, publishers: &str) -> Arc<Studio> {
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio: {{ name: live, timezone: UTC }}
agents:
  paths: ["{agents}"]
workflows:
  daily-content-pipeline:
    deliverables: [draft-content]
    steps:
      - id: draft-content
        role: content-creator
        task: "Write today's piece."
publishers:
{publishers}
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

fn folder(name: &str, path: &Path) -> String {
    format!("  {name}: {{kind: folder, path: \"{}\"}}\n", path.display())
}

fn deliverable(n: u32) -> v1::Deliverable {
    let run = format!("daily@2026-12-0{n}T09:00:00Z");
    v1::Deliverable {
        id: format!("{run}/draft-content"),
        run_id: run,
        workflow: "daily-content-pipeline".into(),
        step_id: "draft-content".into(),
        role: "content-creator".into(),
        title: format!("Piece {n}"),
        content: format!("# Piece {n}\nTerracotta and moss."),
        content_type: "text/markdown".into(),
        ..Default::default()
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits until `publisher` has settled deliverable `id`.
async fn settled(bus: &Arc<dyn Bus>, id: &str, publisher: &str) {
    eventually(Duration::from_secs(20), "the publish outcome", || {
        let (bus, id) = (bus.clone(), id.to_string());
        async move {
            let r: v1::ListDeliverablesResponse = bus
                .request_proto(
                    subjects::PUBLISH_LIST,
                    &v1::ListDeliverablesRequest {
                        id,
                        ..Default::default()
                    },
                    Duration::from_secs(2),
                )
                .await
                .ok()?;
            r.deliverables
                .into_iter()
                .next()?
                .outcomes
                .iter()
                .find(|o| o.publisher == publisher && o.ok && !o.pending)
                .cloned()
        }
    })
    .await;
}

#[actix_rt::test]
async fn the_next_deliverable_goes_to_the_new_studios_publishers() {
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let lib = Arc::new(ContentLibrary::temporary().unwrap());
    let (lib_handle, control) = ServiceHandle::new("library");
    concierto_ingest::deliverables::serve(bus.clone(), lib, control.signal.clone())
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut s = control.signal.clone();
        s.stopped().await;
        control.finished(Ok(()));
    });

    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let before = studio(d1.path(), &folder("drafts", &a));
    let after = studio(d2.path(), &(folder("drafts", &b) + &folder("archive", &c)));
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let clock: SharedClock = Arc::new(SystemClock);
    let publisher = concierto_publish::start(
        before,
        bus.clone(),
        store,
        clock,
        PublisherOptions {
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_millis(400),
            },
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            library_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(publisher.takes_studio_changes());

    let send = |d: v1::Deliverable| {
        let bus = bus.clone();
        async move {
            bus.publish_durable(
                &subjects::deliverable(&d.workflow),
                encode(&d).msg_id(d.id.clone()),
            )
            .await
            .unwrap();
        }
    };
    let first = deliverable(1);
    send(first.clone()).await;
    settled(&bus, &first.id, "drafts").await;
    assert_eq!(files(&a).len(), 1);

    // The drafts folder moves and an archive is added; no restart.
    assert!(publisher.studio_changed(&after));
    let second = deliverable(2);
    send(second.clone()).await;
    settled(&bus, &second.id, "drafts").await;
    settled(&bus, &second.id, "archive").await;
    assert_eq!(files(&a).len(), 1, "the old folder gets nothing more");
    assert_eq!(files(&b).len(), 1);
    assert_eq!(files(&c).len(), 1);
    assert!(files(&b)[0].contains("piece-2"), "{:?}", files(&b));

    publisher.stop().await.unwrap();
    lib_handle.stop().await.unwrap();
}
