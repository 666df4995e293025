//! The ingest supervisor over a real nats-server: a source whose reads panic
//! (made so through the documented test hook `IngestOptions::before_read`)
//! is started again after its backoff on the clock (1 s, then 2 s), and ingests
//! once its read stops panicking, while another source kept ingesting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::SledStore;
use concierto_ingest::{IngestOptions, ReadHook};
use concierto_proto::v1::ContentItem;
use concierto_testkit::{NatsServer, eventually};

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(4, 4, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn studio(dir: &std::path::Path, steady: &std::path::Path, flaky: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio: {{ name: supervised, timezone: UTC }}
agents:
  paths: ["{agents}"]
content_sources:
  curated_databases:
    - steady:
        type: image_database
        path: "{steady}"
        indexer: visual-storyteller
        refresh: on_update
    - flaky:
        type: image_database
        path: "{flaky}"
        indexer: visual-storyteller
        refresh: daily
"#,
        agents = agents.display(),
        steady = steady.display(),
        flaky = flaky.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

#[actix_rt::test]
async fn a_panicking_source_restarts_after_its_backoff_while_the_others_ingest() {
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (steady, flaky) = (dir.path().join("steady"), dir.path().join("flaky"));
    std::fs::create_dir_all(&steady).unwrap();
    std::fs::create_dir_all(&flaky).unwrap();
    std::fs::write(steady.join("first.png"), png([10, 10, 10])).unwrap();
    std::fs::write(flaky.join("one.png"), png([200, 10, 10])).unwrap();
    let st = studio(dir.path(), &steady, &flaky);

    let mut steady_items = bus
        .subscribe_proto::<ContentItem>("content.ingested.steady")
        .await
        .unwrap();
    let mut flaky_items = bus
        .subscribe_proto::<ContentItem>("content.ingested.flaky")
        .await
        .unwrap();

    // The first two reads of `flaky` panic; the third goes through.
    let flaky_reads = Arc::new(AtomicUsize::new(0));
    let hook = {
        let reads = flaky_reads.clone();
        ReadHook::new(move |name| {
            if name == "flaky" && reads.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("injected panic in the flaky source");
            }
        })
    };
    let manual = ManualClock::new(chrono::Utc::now());
    let clock: SharedClock = Arc::new(manual.clone());
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(clock.clone()),
    );
    let opts = IngestOptions {
        tick: Duration::from_millis(20),
        debounce: Duration::from_millis(100),
        before_read: Some(hook),
        ..Default::default()
    };
    let ingest = concierto_ingest::start(
        st,
        bus.clone(),
        library,
        Arc::new(SledStore::temporary().unwrap()),
        clock,
        opts,
    )
    .await
    .unwrap();

    let reads = |n: usize| {
        let r = flaky_reads.clone();
        move || {
            let r = r.clone();
            async move { (r.load(Ordering::SeqCst) >= n).then_some(()) }
        }
    };
    let (first, _) = tokio::time::timeout(Duration::from_secs(10), steady_items.next())
        .await
        .expect("the steady source is read")
        .unwrap();
    assert_eq!(first.title, "first.png");
    eventually(
        Duration::from_secs(10),
        "the flaky source's first read",
        reads(1),
    )
    .await;

    // The clock has not moved: `flaky` waits for its backoff, `steady` goes on.
    std::fs::write(steady.join("second.png"), png([10, 200, 10])).unwrap();
    let (second, _) = tokio::time::timeout(Duration::from_secs(10), steady_items.next())
        .await
        .expect("the steady source keeps ingesting while the flaky one waits")
        .unwrap();
    assert_eq!(second.title, "second.png");
    assert_eq!(
        flaky_reads.load(Ordering::SeqCst),
        1,
        "no restart before the backoff"
    );

    // After 1 s it starts again and panics again: the next wait is 2 s.
    manual.advance(Duration::from_secs(1));
    eventually(
        Duration::from_secs(10),
        "the flaky source's restart",
        reads(2),
    )
    .await;
    manual.advance(Duration::from_secs(1));
    // The steady source still reads (a change is picked up) while 1 s is not enough.
    std::fs::write(steady.join("third.png"), png([10, 10, 200])).unwrap();
    let (third, _) = tokio::time::timeout(Duration::from_secs(10), steady_items.next())
        .await
        .expect("the steady source keeps ingesting")
        .unwrap();
    assert_eq!(third.title, "third.png");
    assert_eq!(
        flaky_reads.load(Ordering::SeqCst),
        2,
        "the backoff doubled to 2 s"
    );

    // At 2 s it starts again; its read goes through and its item is announced.
    manual.advance(Duration::from_secs(1));
    let (one, _) = tokio::time::timeout(Duration::from_secs(10), flaky_items.next())
        .await
        .expect("the flaky source ingests after its backoff")
        .unwrap();
    assert_eq!(one.title, "one.png");
    assert_eq!(flaky_reads.load(Ordering::SeqCst), 3);

    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn outside_an_actix_system_start_says_so() {
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path(), dir.path(), dir.path());
    let clock: SharedClock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let err = concierto_ingest::start(
        st,
        bus,
        Arc::new(ContentLibrary::temporary().unwrap()),
        Arc::new(SledStore::temporary().unwrap()),
        clock,
        IngestOptions::default(),
    )
    .await
    .expect_err("no actix System");
    assert!(matches!(err, concierto_ingest::IngestError::NoSystem));
    assert!(err.to_string().contains("actix System"), "{err}");
}
