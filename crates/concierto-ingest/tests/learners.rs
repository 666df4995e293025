//! The learners over a real nats-server: the week's trend report and the
//! campaign insights are computed from the library, sampled as
//! `pattern_recognition`, handed as context to their roles, and the
//! orchestrator puts them into those roles' tasks.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use concierto_bus::{Bus, BusExt, ConsumerSpec, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::{ContentLibrary, Kind, NewItem};
use concierto_core::clock::{Clock, ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_ingest::IngestOptions;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::{AgentContext, MetricSample, StartRun, Task};
use concierto_testkit::NatsServer;

const DAY: i64 = 24 * 3600 * 1000;

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    // A season of campaigns: two winners (video, AI topics), six others.
    let analytics = dir.join("analytics");
    std::fs::create_dir_all(&analytics).unwrap();
    let mut csv = String::from("campaign_id,engagement_rate,format,topics\n");
    for n in 0..8 {
        let (rate, format, topics) = if n < 2 {
            (0.12, "video", "ai; automation")
        } else {
            (0.02, "email", "pricing")
        };
        csv.push_str(&format!("c{n},{rate},{format},{topics}\n"));
    }
    std::fs::write(analytics.join("q3.csv"), csv).unwrap();
    let yaml = format!(
        r#"
studio:
  name: "Learners"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  market-intelligence:
    description: "Read the week's trends and plan content."
    steps:
      - id: trends
        role: trend-researcher
        task: "Summarise what is rising this week."
      - id: draft
        role: content-creator
        task: "Draft a post that uses what worked."
content_sources:
  # The trend report reads the sources that select design_trends (an
  # explicit list, or none: every default extractor) and goes to their
  # roles. Neither is read here (no network, no folder): the test stores
  # their items straight into the library.
  external_inspiration:
    - siteinspire:
        type: "web_scraper"
        url: "http://127.0.0.1:9/feed"
        frequency: "daily"
        processor: trend-researcher
        extractor: [design_trends, typography_patterns]
  curated_databases:
    - internal_assets:
        type: "image_database"
        path: "{missing}"
        indexer: innovation-catalyst
        refresh: "daily"
  training_data:
    - successful_campaigns:
        source: "{analytics}"
        learner: growth-hacker
        training_frequency: "on_update"
"#,
        agents = agents.display(),
        analytics = analytics.display(),
        missing = dir.join("no-such-folder").display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(16, 16, image::Rgb(rgb));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn page(title: &str, font: &str, n: usize) -> Vec<u8> {
    format!(
        r#"<!doctype html><html><head><title>{title} {n}</title>
<style>body {{ font-family: "{font}", sans-serif; font-size: 18px; }}</style></head>
<body><h1>{title}</h1><p>Case study number {n}.</p></body></html>"#
    )
    .into_bytes()
}

/// Two weeks of inspiration, stored straight into the library.
fn fill(library: &ContentLibrary, now_ms: i64) {
    let mut items = Vec::new();
    for n in 0..4 {
        items.push(
            NewItem::new(Kind::Page, "siteinspire", format!("old-{n}"))
                .bytes(
                    page("Soft gradient landing", "Helvetica", n),
                    Some("text/html"),
                )
                .published_ms(now_ms - 10 * DAY),
        );
    }
    for n in 0..6 {
        items.push(
            NewItem::new(Kind::Page, "siteinspire", format!("new-{n}"))
                .bytes(
                    page("Brutalist grid portfolio", "Space Grotesk", n),
                    Some("text/html"),
                )
                .published_ms(now_ms - 2 * DAY),
        );
    }
    for n in 0..4u8 {
        items.push(
            NewItem::new(Kind::Image, "internal_assets", format!("green-{n}.png"))
                .title(format!("neon green poster {n}"))
                .bytes(png([40 + n, 250, 20]), Some("image/png"))
                .published_ms(now_ms - DAY),
        );
    }
    library.put_many(items).unwrap();
}

async fn contexts_kept(store: &Arc<dyn KvStore>, keys: &[&str]) {
    for _ in 0..300 {
        if keys
            .iter()
            .all(|k| store.get("contexts", k.as_bytes()).unwrap().is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the orchestrator did not keep the contexts {keys:?}");
}

async fn next_task(bus: &Arc<dyn Bus>, role: &str) -> Task {
    let consumer = bus
        .consumer("TASKS", &ConsumerSpec::new(role, format!("task.{role}")))
        .await
        .unwrap();
    for _ in 0..100 {
        let got = consumer
            .fetch_proto::<Task>(1, Duration::from_millis(200))
            .await
            .unwrap();
        if let Some((task, delivery)) = got.into_iter().next() {
            delivery.ack().await.unwrap();
            return task;
        }
    }
    panic!("no task for {role}");
}

fn input<'a>(task: &'a Task, name: &str) -> &'a str {
    task.inputs
        .iter()
        .find(|i| i.name == name)
        .map(|i| i.content.as_str())
        .unwrap_or_else(|| {
            panic!(
                "task {} has no input {name}: {:?}",
                task.task_id,
                task.inputs.iter().map(|i| &i.name).collect::<Vec<_>>()
            )
        })
}

#[actix_rt::test]
async fn reports_reach_the_roles_tasks_and_the_pattern_metric() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let mut contexts = bus
        .subscribe_proto::<AgentContext>("context.>")
        .await
        .unwrap();
    let mut samples = bus
        .subscribe_proto::<MetricSample>("metric.pattern_recognition")
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let shared: SharedClock = clock.clone();
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(shared.clone()),
    );
    fill(&library, clock.now().timestamp_millis());

    let orch_store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let orch = concierto_orchestrator::start(
        st.clone(),
        bus.clone(),
        orch_store.clone(),
        shared.clone(),
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ingest_store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let opts = IngestOptions {
        tick: Duration::from_millis(50),
        learn_delay: Duration::ZERO,
        ..Default::default()
    };
    let ingest = concierto_ingest::start(
        st.clone(),
        bus.clone(),
        library.clone(),
        ingest_store.clone(),
        shared.clone(),
        opts.clone(),
    )
    .await
    .unwrap();

    // Contexts for trend-researcher and innovation-catalyst (the trend report),
    // content-creator and growth-hacker (the campaign insights).
    // The campaign learner may run before the folder is read; it runs again
    // once the read brings the records.
    let mut got = std::collections::BTreeMap::new();
    let read = |got: &std::collections::BTreeMap<(String, String), AgentContext>| {
        ["content-creator", "growth-hacker"].iter().all(|r| {
            got.get(&(
                r.to_string(),
                "campaign-insights:successful_campaigns".to_string(),
            ))
            .is_some_and(|c| c.content.contains("of 8 campaigns"))
        })
    };
    while got.len() < 4 || !read(&got) {
        let (c, _) = tokio::time::timeout(Duration::from_secs(20), contexts.next())
            .await
            .expect("contexts in time")
            .expect("subscription open");
        got.insert((c.role.clone(), c.name.clone()), c);
    }
    let trend = &got[&("trend-researcher".to_string(), "trend-report".to_string())];
    assert!(trend.content.contains("Space Grotesk"), "{}", trend.content);
    assert!(
        trend.content.contains("brutalist grid"),
        "{}",
        trend.content
    );
    assert!(got.contains_key(&(
        "innovation-catalyst".to_string(),
        "trend-report".to_string()
    )));
    let insights = &got[&(
        "content-creator".to_string(),
        "campaign-insights:successful_campaigns".to_string(),
    )];
    assert!(
        insights.content.contains("2 of 8 campaigns"),
        "{}",
        insights.content
    );
    assert!(
        insights.content.contains("- video: 100%"),
        "{}",
        insights.content
    );
    assert!(got.contains_key(&(
        "growth-hacker".to_string(),
        "campaign-insights:successful_campaigns".to_string()
    )));

    // pattern_recognition: the 10 items of this week all carry a rising pattern.
    let (sample, _) = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("a pattern_recognition sample")
        .expect("subscription open");
    assert_eq!(sample.metric, "pattern_recognition");
    assert!(sample.value > 0.9, "{}", sample.value);
    let (_, stored) = concierto_ingest::stored_trend_report(&ingest_store).expect("report stored");
    assert_eq!(stored.items_current, 10);
    assert_eq!(stored.typefaces[0].family, "Space Grotesk");

    // The orchestrator hands them to the roles' tasks.
    contexts_kept(
        &orch_store,
        &[
            "trend-researcher/trend-report",
            "content-creator/campaign-insights:successful_campaigns",
        ],
    )
    .await;
    bus.publish_durable_proto(
        "run.start",
        &StartRun {
            run_id: "mi-1".into(),
            workflow: "market-intelligence".into(),
            requested_by: "test".into(),
            ..Default::default()
        },
        "mi-1",
    )
    .await
    .unwrap();
    let task = next_task(&bus, "trend-researcher").await;
    assert!(input(&task, "context:trend-report").contains("Space Grotesk"));

    // A new file of campaign records: the watched folder is read and the
    // insights are recomputed without waiting a week.
    std::fs::write(
        dir.path().join("analytics/q4.csv"),
        "campaign_id,engagement_rate,format,topics\nc9,0.2,carousel,ai\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (c, _) = tokio::time::timeout_at(deadline, contexts.next())
            .await
            .expect("recomputed insights in time")
            .expect("subscription open");
        if c.role == "content-creator" && c.content.contains("of 9 campaigns") {
            break;
        }
    }

    // A restart does not recompute the trend report before it is due.
    ingest.stop().await.unwrap();
    let ingest = concierto_ingest::start(
        st.clone(),
        bus.clone(),
        library.clone(),
        ingest_store.clone(),
        shared.clone(),
        opts,
    )
    .await
    .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(800), samples.next()).await;
    assert!(
        quiet.is_err(),
        "no new pattern_recognition sample before a week passed"
    );
    // A week later it is.
    clock.advance(Duration::from_secs(7 * 24 * 3600));
    let (again, _) = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .expect("the weekly recomputation")
        .expect("subscription open");
    assert_eq!(again.metric, "pattern_recognition");

    ingest.stop().await.unwrap();
    orch.stop().await.unwrap();
}
