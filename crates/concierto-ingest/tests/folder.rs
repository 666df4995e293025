//! Asset folders and training data on a temporary folder of generated PNGs,
//! CSS and records; the watcher on a running service.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{daily, fast_opts, harness, source};
use concierto_bus::BusExt;
use concierto_content::Kind;
use concierto_core::clock::SharedClock;
use concierto_core::config::{Refresh, SourceKind, Studio};
use concierto_proto::v1::ContentItem;

fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn a_folder_is_ingested_once_and_changes_are_re_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("logos")).unwrap();
    std::fs::write(root.join("logos/red.png"), png(8, 8, [220, 20, 30])).unwrap();
    std::fs::write(root.join("blue.png"), png(8, 8, [20, 40, 220])).unwrap();
    let mut broken = png(16, 16, [0, 200, 0]);
    broken.truncate(broken.len() / 2);
    std::fs::write(root.join("truncated.png"), broken).unwrap();
    std::fs::write(
        root.join("theme.css"),
        "body { font-family: 'Inter', sans-serif; font-size: 16px }",
    )
    .unwrap();
    std::fs::write(root.join("notes.txt"), "ignored").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("leak.png"), png(4, 4, [1, 2, 3])).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("leak.png"), root.join("leak.png")).unwrap();

    let mut h = harness(fast_opts()).await;
    let src = source(
        "internal_assets",
        SourceKind::ImageDatabase,
        root.to_str().unwrap(),
        daily(),
    );
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(r.new, 3, "two images and the stylesheet: {r:?}");
    assert_eq!(r.skipped, 1, "the truncated PNG: {r:?}");
    let got = h.drain().await;
    assert_eq!(got.len(), 3);
    let red = h
        .library
        .get_by_source_key("internal_assets", "logos/red.png")
        .unwrap()
        .unwrap();
    assert_eq!(red.kind, Kind::Image);
    assert_eq!(red.palette[0].hex.len(), 7);
    assert_eq!(red.tags, vec!["logos"]);
    let css = h
        .library
        .get_by_source_key("internal_assets", "theme.css")
        .unwrap()
        .unwrap();
    assert!(css.typography.iter().any(|f| f.family == "Inter"));
    assert!(
        h.library
            .get_by_source_key("internal_assets", "leak.png")
            .unwrap()
            .is_none()
    );
    let announced_red = got.iter().find(|i| i.title == "red.png").unwrap();
    assert!(!announced_red.palette.is_empty());

    // Twice: nothing stored twice, nothing announced.
    let again = h.ingester.run_once(&src).await.unwrap();
    assert_eq!((again.new, again.changed), (0, 0), "{again:?}");
    assert_eq!(again.unmodified, 3);
    assert!(h.drain().await.is_empty());

    // Even when the fingerprints are forgotten, the library knows the content.
    let seen: Vec<_> = h.store.scan_prefix("ingest", b"seen/").unwrap();
    h.store
        .apply(
            "ingest",
            seen.into_iter()
                .map(|(k, _)| concierto_core::store::Op::Delete(k))
                .collect(),
        )
        .unwrap();
    let third = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(
        (third.new, third.changed, third.unchanged),
        (0, 0, 3),
        "{third:?}"
    );
    assert!(h.drain().await.is_empty());

    // A changed file: Changed, and announced.
    std::fs::write(root.join("blue.png"), png(12, 12, [250, 200, 0])).unwrap();
    let changed = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(changed.changed, 1, "{changed:?}");
    let got = h.drain().await;
    assert_eq!(got.len(), 1);
    assert!(got[0].features.contains_key("replaces"));
}

#[tokio::test]
async fn a_missing_folder_is_an_error_and_training_data_yields_records() {
    let mut h = harness(fast_opts()).await;
    let missing = source(
        "internal_assets",
        SourceKind::ImageDatabase,
        "/no/such/brand-assets/",
        daily(),
    );
    let err = h.ingester.run_once(&missing).await.unwrap_err();
    assert!(err.to_string().contains("/no/such/brand-assets/"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("q1.csv"),
        "campaign_id,name,ctr,date\nc1,Spring launch,0.12,2026-03-01\nc2,Summer drop,0.08,2026-06-01\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more.json"),
        r#"[{"id":"c3","name":"Autumn","ctr":0.2}]"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.json"), "{not json").unwrap();
    let src = source(
        "successful_campaigns",
        SourceKind::TrainingData,
        dir.path().to_str().unwrap(),
        daily(),
    );
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!((r.new, r.skipped), (3, 1), "{r:?}");
    let c1 = h
        .library
        .get_by_source_key("successful_campaigns", "q1.csv#c1")
        .unwrap()
        .unwrap();
    assert_eq!(c1.kind, Kind::Analytics);
    assert_eq!(c1.title, "Spring launch");
    let got = h.drain().await;
    assert!(got.iter().all(|i| i.kind == "analytics"));

    let fb = tempfile::tempdir().unwrap();
    std::fs::write(
        fb.path().join("week.jsonl"),
        "{\"feedback_id\":\"f1\",\"text\":\"More contrast\"}\n",
    )
    .unwrap();
    let src = source(
        "user_feedback",
        SourceKind::TrainingData,
        fb.path().to_str().unwrap(),
        Refresh::Continuous,
    );
    assert_eq!(h.ingester.run_once(&src).await.unwrap().new, 1);
    let f1 = h
        .library
        .get_by_source_key("user_feedback", "week.jsonl#f1")
        .unwrap()
        .unwrap();
    assert_eq!(f1.kind, Kind::Feedback);
}

fn agents_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents")
}

#[actix_rt::test]
async fn the_watcher_picks_up_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("first.png"), png(4, 4, [10, 10, 10])).unwrap();
    let h = harness(fast_opts()).await;
    let yaml = format!(
        "studio: {{ name: watch, timezone: UTC }}\nagents:\n  paths: [\"{agents}\"]\ncontent_sources:\n  curated_databases:\n    - internal_assets:\n        type: image_database\n        path: \"{}\"\n        indexer: visual-storyteller\n        refresh: on_update\n",
        dir.path().display(),
        agents = agents_dir().display(),
    );
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let studio: Arc<Studio> =
        Arc::new(concierto_core::config::load_with_env(&path, Vec::new()).expect("studio loads"));
    let mut sub = h
        .bus
        .subscribe_proto::<ContentItem>("content.ingested.internal_assets")
        .await
        .unwrap();
    let clock: SharedClock = Arc::new(h.clock.clone());
    let service = concierto_ingest::start(
        studio,
        h.bus.clone(),
        h.library.clone(),
        h.store.clone(),
        clock,
        fast_opts(),
    )
    .await
    .unwrap();
    let (first, _) = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.title, "first.png");
    // Give the watcher a moment to be in place, then add a file.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("second.png"), png(4, 4, [200, 10, 10])).unwrap();
    let (second, _) = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.title, "second.png");
    service.stop().await.unwrap();
}

/// What leaves a folder leaves the library: a deleted picture is out of
/// browse and search (kept in its collection and by id) and comes back with
/// its file; records no longer in a data file, or in a deleted one, go.
#[tokio::test]
async fn deleted_files_and_dropped_records_leave_the_library() {
    use concierto_content::Query;
    let mut h = harness(fast_opts()).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("red.png"), png(8, 8, [220, 20, 30])).unwrap();
    std::fs::write(root.join("blue.png"), png(8, 8, [20, 40, 220])).unwrap();
    let src = source(
        "internal_assets",
        SourceKind::ImageDatabase,
        root.to_str().unwrap(),
        daily(),
    );
    assert_eq!(h.ingester.run_once(&src).await.unwrap().new, 2);
    h.drain().await;
    let blue = h
        .library
        .get_by_source_key("internal_assets", "blue.png")
        .unwrap()
        .unwrap();
    h.library.create_collection("moodboard", "").unwrap();
    h.library.add_to_collection("moodboard", &blue.id).unwrap();
    let browse = |library: &concierto_content::ContentLibrary| {
        let page = library
            .search(&Query {
                source: Some("internal_assets".into()),
                ..Query::default()
            })
            .unwrap();
        let mut titles: Vec<String> = page.hits.into_iter().map(|h| h.item.title).collect();
        titles.sort();
        titles
    };
    assert_eq!(browse(&h.library), vec!["blue.png", "red.png"]);

    std::fs::remove_file(root.join("blue.png")).unwrap();
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!((r.removed, r.new, r.unmodified), (1, 0, 1), "{r:?}");
    assert_eq!(browse(&h.library), vec!["red.png"]);
    assert!(
        h.library
            .get_by_source_key("internal_assets", "blue.png")
            .unwrap()
            .is_none()
    );
    let kept = h.library.get(&blue.id).unwrap().unwrap();
    assert!(kept.removed_ms.is_some());
    let board = h.library.collection_items("moodboard").unwrap();
    assert_eq!(board.len(), 1, "a collection keeps what it holds");
    // Another scan removes nothing more.
    assert_eq!(h.ingester.run_once(&src).await.unwrap().removed, 0);

    // The file back: the same item, in the library again (its announcement
    // has the item's id as message id: the stream drops a repeat within its
    // duplicate window).
    std::fs::write(root.join("blue.png"), png(8, 8, [20, 40, 220])).unwrap();
    let r = h.ingester.run_once(&src).await.unwrap();
    assert_eq!(r.new, 1, "{r:?}");
    h.drain().await;
    let back = h.library.get(&blue.id).unwrap().unwrap();
    assert!(back.removed_ms.is_none());
    assert_eq!(back.collections, vec!["moodboard"]);
    assert_eq!(browse(&h.library), vec!["blue.png", "red.png"]);

    // Training data: a record dropped from its file, then the whole file.
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("q1.csv");
    std::fs::write(
        &csv,
        "campaign_id,name,ctr\nc1,Spring,0.12\nc2,Summer,0.08\nc3,Autumn,0.2\n",
    )
    .unwrap();
    let campaigns = source(
        "successful_campaigns",
        SourceKind::TrainingData,
        data.path().to_str().unwrap(),
        daily(),
    );
    assert_eq!(h.ingester.run_once(&campaigns).await.unwrap().new, 3);
    let before = h.ingester.changes("successful_campaigns");
    std::fs::write(
        &csv,
        "campaign_id,name,ctr\nc1,Spring,0.12\nc3,Autumn,0.2\n",
    )
    .unwrap();
    let r = h.ingester.run_once(&campaigns).await.unwrap();
    assert_eq!(r.removed, 1, "{r:?}");
    assert!(
        h.ingester.changes("successful_campaigns") > before,
        "the learner hears of it"
    );
    let keys = h.library.source_keys("successful_campaigns", "").unwrap();
    assert_eq!(keys, vec!["q1.csv#c1", "q1.csv#c3"]);
    std::fs::remove_file(&csv).unwrap();
    let r = h.ingester.run_once(&campaigns).await.unwrap();
    assert_eq!(r.removed, 2, "{r:?}");
    assert!(
        h.library
            .source_keys("successful_campaigns", "")
            .unwrap()
            .is_empty()
    );
}

/// A folder that does not exist when the service starts is read as soon as
/// it appears, on a clock that never moves: not after `retry_after` (5 min)
/// or the hourly rescan of an `on_update` folder.
#[actix_rt::test]
async fn a_folder_created_after_start_is_read_at_once_without_the_clock_moving() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    let analytics = dir.path().join("analytics");
    let h = harness(fast_opts()).await;
    // Relative paths: taken from the studio file's folder.
    let yaml = format!(
        "studio: {{ name: later, timezone: UTC }}\nagents:\n  paths: [\"{agents}\"]\ncontent_sources:\n  curated_databases:\n    - internal_assets:\n        type: image_database\n        path: \"assets/\"\n        indexer: visual-storyteller\n        refresh: on_update\n  training_data:\n    - successful_campaigns:\n        source: \"analytics/\"\n        learner: growth-hacker\n        training_frequency: weekly\n",
        agents = agents_dir().display(),
    );
    let path = dir.path().join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    let checked = concierto_core::config::check(&path);
    let warned: Vec<String> = checked
        .problems
        .iter()
        .map(|p| p.to_string())
        .filter(|p| p.contains("does not exist"))
        .collect();
    assert_eq!(warned.len(), 2, "a warning per missing folder: {warned:?}");
    assert!(
        warned
            .iter()
            .all(|w| w.contains(": warning: ") && w.contains("concierto.yaml:")),
        "{warned:?}"
    );
    let studio: Arc<Studio> = Arc::new(checked.studio.expect("a warning is no error"));
    assert_eq!(
        studio.content_sources[0].location,
        assets.join("").display().to_string()
    );
    let mut sub = h
        .bus
        .subscribe_proto::<ContentItem>("content.ingested.>")
        .await
        .unwrap();
    let clock: SharedClock = Arc::new(h.clock.clone());
    let service = concierto_ingest::start(
        studio,
        h.bus.clone(),
        h.library.clone(),
        h.store.clone(),
        clock,
        fast_opts(),
    )
    .await
    .unwrap();
    // Both first reads fail (nothing there); then the folders appear.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir(&assets).unwrap();
    std::fs::write(assets.join("navy.png"), png(4, 4, [31, 58, 95])).unwrap();
    std::fs::create_dir(&analytics).unwrap();
    std::fs::write(
        analytics.join("campaigns.csv"),
        "campaign,engagement_rate\nspring,0.07\n",
    )
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let (item, _) = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("the new folders are read within seconds")
            .unwrap();
        got.push((item.source, item.title));
    }
    got.sort();
    assert_eq!(got[0].0, "internal_assets");
    assert_eq!(got[0].1, "navy.png");
    assert_eq!(got[1].0, "successful_campaigns");
    service.stop().await.unwrap();
}
