//! The publisher against a real nats-server, the ingest service's real
//! `library.put` over a real content library, and local HTTP servers speaking
//! a webhook receiver's and Slack's Web API wire format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, encode, ensure_standard_streams};
use concierto_content::{ContentLibrary, Kind, Query};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_proto::v1;
use concierto_publish::{Backoff, PublisherOptions};
use concierto_testkit::{NatsServer, eventually};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a local receiver got: status answered, headers, body.
type Got = Arc<Mutex<Vec<(u16, HeaderMap, String)>>>;

/// A local HTTP server answering `failures` 500s, then 200 (or `ok_body`).
async fn receiver(
    path: &'static str,
    failures: usize,
    ok_body: &'static str,
) -> (String, Got, Arc<Mutex<usize>>) {
    #[derive(Clone)]
    struct S {
        got: Got,
        left: Arc<Mutex<usize>>,
        ok_body: &'static str,
    }
    async fn take(State(s): State<S>, headers: HeaderMap, body: String) -> (StatusCode, String) {
        let fail = {
            let mut left = s.left.lock().unwrap();
            let fail = *left > 0;
            *left = left.saturating_sub(1);
            fail
        };
        let status = if fail {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        s.got.lock().unwrap().push((status.as_u16(), headers, body));
        (
            status,
            if fail {
                "down".into()
            } else {
                s.ok_body.to_string()
            },
        )
    }
    let got: Got = Arc::default();
    let left = Arc::new(Mutex::new(failures));
    let app = Router::new().route(path, post(take)).with_state(S {
        got: got.clone(),
        left: left.clone(),
        ok_body,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), got, left)
}

fn studio(dir: &std::path::Path, publishers: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Publish tests"
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
      - id: brand-check
        role: brand-guardian
        task: "Check the piece against the brand."
        inputs: [draft-content]
publishers:
{publishers}
"#,
        agents = agents.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let checked = config::check(&path);
    let studio = checked
        .studio
        .unwrap_or_else(|| panic!("{:?}", checked.problems));
    Arc::new(studio)
}

async fn connect(nats: &NatsServer) -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    bus
}

/// The ingest service's `library.put` over a content library in `dir`.
async fn library(bus: &Arc<dyn Bus>) -> (Arc<ContentLibrary>, ServiceHandle) {
    let lib = Arc::new(ContentLibrary::temporary().unwrap());
    let (handle, control) = ServiceHandle::new("library");
    concierto_ingest::deliverables::serve(bus.clone(), lib.clone(), control.signal.clone())
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut s = control.signal.clone();
        s.stopped().await;
        control.finished(Ok(()));
    });
    (lib, handle)
}

fn opts() -> PublisherOptions {
    PublisherOptions {
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        },
        tick: Duration::from_millis(50),
        fetch_wait: Duration::from_millis(100),
        library_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn start_publisher(
    studio: &Arc<Studio>,
    bus: &Arc<dyn Bus>,
    store_dir: &std::path::Path,
) -> ServiceHandle {
    let store: Arc<dyn KvStore> = Arc::new(SledStore::open(store_dir).unwrap());
    let clock: SharedClock = Arc::new(SystemClock);
    concierto_publish::start(studio.clone(), bus.clone(), store, clock, opts())
        .await
        .unwrap()
}

fn deliverable(title: &str) -> v1::Deliverable {
    let now = chrono::Utc::now();
    v1::Deliverable {
        id: "daily@2026-12-06T09:00:00Z/draft-content".into(),
        run_id: "daily@2026-12-06T09:00:00Z".into(),
        workflow: "daily-content-pipeline".into(),
        step_id: "draft-content".into(),
        role: "content-creator".into(),
        title: title.into(),
        content: format!("# {title}\nTerracotta and moss for the autumn range."),
        content_type: "text/markdown".into(),
        labels: vec!["draft".into()],
        at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        params: [("brief".to_string(), "autumn".to_string())].into(),
    }
}

async fn send(bus: &Arc<dyn Bus>, d: &v1::Deliverable) {
    bus.publish_durable(
        &subjects::deliverable(&d.workflow),
        encode(d).msg_id(d.id.clone()),
    )
    .await
    .unwrap();
}

/// The deliverable `id` as `publish.list` shows it.
async fn listed(bus: &Arc<dyn Bus>, id: &str) -> Option<v1::DeliverableRecord> {
    let req = v1::ListDeliverablesRequest {
        id: id.into(),
        ..Default::default()
    };
    let r: v1::ListDeliverablesResponse = bus
        .request_proto(subjects::PUBLISH_LIST, &req, Duration::from_secs(2))
        .await
        .ok()?;
    r.deliverables.into_iter().next()
}

fn outcome<'a>(r: &'a v1::DeliverableRecord, publisher: &str) -> Option<&'a v1::PublishOutcome> {
    r.outcomes.iter().find(|o| o.publisher == publisher)
}

fn verify(key: &str, headers: &HeaderMap, body: &str) {
    let ts = headers["concierto-timestamp"].to_str().unwrap();
    let sig = headers["concierto-signature"].to_str().unwrap();
    let hex_sig = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(hex_sig).unwrap())
        .expect("the signature verifies with the shared key");
}

#[actix_rt::test]
async fn a_webhook_failing_twice_gets_the_deliverable_once_signed() {
    let (base, got, _) = receiver("/hook", 2, "{}").await;
    // nextest runs each test in its own process.
    unsafe { std::env::set_var("PUBLISH_TEST_HOOK_KEY", "k3y-for-the-test") };
    let dir = tempfile::tempdir().unwrap();
    let st = studio(
        dir.path(),
        &format!(
            "  cms: {{kind: webhook, url: \"{base}/hook\", secret_env: PUBLISH_TEST_HOOK_KEY, max_attempts: 5}}"
        ),
    );
    let nats = NatsServer::start().expect("nats-server");
    let bus = connect(&nats).await;
    let (lib, lib_handle) = library(&bus).await;
    let mut events = bus
        .subscribe_proto::<v1::PublishOutcome>(subjects::DELIVERABLE_EVENTS)
        .await
        .unwrap();
    let publisher = start_publisher(&st, &bus, &dir.path().join("store")).await;
    let d = deliverable("Autumn drop");
    send(&bus, &d).await;
    // A copy (the orchestrator's resend) collapses.
    send(&bus, &d).await;

    let r = eventually(Duration::from_secs(20), "the webhook outcome is ok", || {
        let bus = bus.clone();
        async move {
            listed(&bus, "daily@2026-12-06T09:00:00Z/draft-content")
                .await
                .filter(|r| outcome(r, "cms").is_some_and(|o| o.ok))
        }
    })
    .await;
    let o = outcome(&r, "cms").unwrap();
    assert_eq!(
        (o.attempts, o.kind.as_str(), o.pending),
        (3, "webhook", false)
    );
    assert!(outcome(&r, "library").unwrap().ok);
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = got.lock().unwrap().clone();
    let statuses: Vec<u16> = got.iter().map(|g| g.0).collect();
    assert_eq!(statuses, vec![500, 500, 200], "exactly one 2xx delivery");
    let (_, headers, body) = &got[2];
    verify("k3y-for-the-test", headers, body);
    assert_eq!(headers["idempotency-key"], d.id.as_str());
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["id"], d.id.as_str());
    assert_eq!(json["run"], d.run_id.as_str());
    assert_eq!(json["params"]["brief"], "autumn");
    assert!(json["content"].as_str().unwrap().contains("Terracotta"));
    // The retried attempts were announced as pending, the last as ok.
    let mut seen = Vec::new();
    while let Ok(Some((o, _))) =
        tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        if o.publisher == "cms" {
            seen.push((o.attempts, o.ok, o.pending));
        }
    }
    assert_eq!(
        seen,
        vec![
            (0, false, true),
            (1, false, true),
            (2, false, true),
            (3, true, false)
        ]
    );
    // The library has it once.
    let hits = lib
        .search(&Query::browse().kind(Kind::Deliverable))
        .unwrap();
    assert_eq!(hits.total, 1);
    publisher.stop().await.unwrap();
    lib_handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn a_restarted_publisher_delivers_from_its_outbox() {
    // Down until the test lets it up.
    let (base, got, left) = receiver("/hook", usize::MAX, "{}").await;
    unsafe { std::env::set_var("PUBLISH_TEST_RESTART_KEY", "another-key") };
    let dir = tempfile::tempdir().unwrap();
    let st = studio(
        dir.path(),
        &format!(
            "  cms: {{kind: webhook, url: \"{base}/hook\", secret_env: PUBLISH_TEST_RESTART_KEY, max_attempts: 50}}"
        ),
    );
    let nats = NatsServer::start().expect("nats-server");
    let bus = connect(&nats).await;
    let (_lib, lib_handle) = library(&bus).await;
    let store_dir = dir.path().join("store");
    let publisher = start_publisher(&st, &bus, &store_dir).await;
    let d = deliverable("Restart");
    send(&bus, &d).await;
    eventually(Duration::from_secs(20), "a failed attempt", || {
        let got = got.clone();
        async move { (!got.lock().unwrap().is_empty()).then_some(()) }
    })
    .await;
    publisher.stop().await.unwrap();
    // The deliverable was acknowledged: the bus holds nothing more for it.
    *left.lock().unwrap() = 0;
    let before = got.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got.lock().unwrap().len(),
        before,
        "a stopped publisher sends nothing"
    );

    let publisher = start_publisher(&st, &bus, &store_dir).await;
    let r = eventually(
        Duration::from_secs(20),
        "delivered after the restart",
        || {
            let bus = bus.clone();
            let id = d.id.clone();
            async move {
                listed(&bus, &id)
                    .await
                    .filter(|r| outcome(r, "cms").is_some_and(|o| o.ok))
            }
        },
    )
    .await;
    assert!(outcome(&r, "cms").unwrap().attempts > 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let oks = got.lock().unwrap().iter().filter(|g| g.0 == 200).count();
    assert_eq!(oks, 1);
    publisher.stop().await.unwrap();
    lib_handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn the_folder_publisher_keeps_hostile_titles_inside_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deliverables");
    let st = studio(dir.path(), "  drafts: {kind: folder, path: ./deliverables}");
    let nats = NatsServer::start().expect("nats-server");
    let bus = connect(&nats).await;
    let (_lib, lib_handle) = library(&bus).await;
    let publisher = start_publisher(&st, &bus, &dir.path().join("store")).await;
    let d = deliverable("../../../escape/../../etc/passwd");
    send(&bus, &d).await;
    let r = eventually(Duration::from_secs(20), "the folder outcome", || {
        let bus = bus.clone();
        let id = d.id.clone();
        async move {
            listed(&bus, &id)
                .await
                .filter(|r| outcome(r, "drafts").is_some_and(|o| !o.pending))
        }
    })
    .await;
    let o = outcome(&r, "drafts").unwrap();
    assert!(o.ok, "{o:?}");
    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(file.parent().unwrap(), out.as_path());
    assert_eq!(o.detail, file.display().to_string());
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        name.contains("-escape-etc-passwd-") && !name.contains(".."),
        "{name}"
    );
    // Nothing was written beside or above the folder.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    top.sort();
    assert_eq!(top, vec!["concierto.yaml", "deliverables", "store"]);
    // Markdown with JSON front matter.
    let text = std::fs::read_to_string(file).unwrap();
    let (front, body) = text.split_once("\n\n").unwrap();
    let json: serde_json::Value = serde_json::from_str(front).unwrap();
    assert_eq!(json["id"], d.id.as_str());
    assert_eq!(json["title"], d.title.as_str());
    assert_eq!(json["workflow"], "daily-content-pipeline");
    assert_eq!(json["labels"][0], "draft");
    assert!(body.contains("Terracotta"));
    publisher.stop().await.unwrap();
    lib_handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn slack_gets_the_post_after_a_rate_limit() {
    let (base, got, _) = receiver(
        "/api/chat.postMessage",
        1,
        r#"{"ok":true,"ts":"1733475600.000100"}"#,
    )
    .await;
    unsafe { std::env::set_var("PUBLISH_TEST_SLACK_TOKEN", "xoxb-test") };
    let dir = tempfile::tempdir().unwrap();
    let st = studio(
        dir.path(),
        &format!(
            "  team: {{kind: slack, channel: \"#content\", token_env: PUBLISH_TEST_SLACK_TOKEN, api_base: \"{base}/api\"}}"
        ),
    );
    let nats = NatsServer::start().expect("nats-server");
    let bus = connect(&nats).await;
    let (_lib, lib_handle) = library(&bus).await;
    let publisher = start_publisher(&st, &bus, &dir.path().join("store")).await;
    let d = deliverable("Slack post");
    send(&bus, &d).await;
    let r = eventually(Duration::from_secs(20), "the Slack outcome", || {
        let bus = bus.clone();
        let id = d.id.clone();
        async move {
            listed(&bus, &id)
                .await
                .filter(|r| outcome(r, "team").is_some_and(|o| o.ok))
        }
    })
    .await;
    assert!(
        outcome(&r, "team")
            .unwrap()
            .detail
            .contains("1733475600.000100")
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let (_, headers, body) = &got[1];
    assert_eq!(headers["authorization"], "Bearer xoxb-test");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["channel"], "#content");
    assert!(json["text"].as_str().unwrap().starts_with("*Slack post*"));
    publisher.stop().await.unwrap();
    lib_handle.stop().await.unwrap();
}

#[actix_rt::test]
async fn publish_list_refuses_bad_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path(), "  drafts: {kind: folder, path: ./deliverables}");
    let nats = NatsServer::start().expect("nats-server");
    let bus = connect(&nats).await;
    let publisher = start_publisher(&st, &bus, &dir.path().join("store")).await;
    let req = v1::ListDeliverablesRequest {
        from_day: "2020-01-01".into(),
        to_day: "2026-12-06".into(),
        ..Default::default()
    };
    let reply = bus
        .request(subjects::PUBLISH_LIST, encode(&req), Duration::from_secs(2))
        .await
        .unwrap();
    let err = reply
        .headers
        .get(subjects::ERROR_HEADER)
        .unwrap_or_default();
    assert!(
        err.starts_with("invalid_argument:") && err.contains("366 days"),
        "{err}"
    );
    publisher.stop().await.unwrap();
}
