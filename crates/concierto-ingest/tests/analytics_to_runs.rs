//! Targets drive work, across the real ingest, tracker and scheduler services on
//! one real nats-server, on a controlled clock:
//!
//! - a campaign analytics CSV with `engagement_rate` 0.03 is ingested → the
//!   ingester publishes a `metric.engagement_rate` sample (once per record
//!   version) → the tracker's `engagement_rate < 0.05` watch enters → the
//!   scheduler starts `content-optimization` (the seed's
//!   `on_performance_threshold`);
//! - `daily_output` ends a day below its target of 10 → the tracker's
//!   off-target watch enters → the scheduler starts the metric's
//!   `on_off_target` workflow, `daily-content-pipeline`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_content::ContentLibrary;
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects::{RUN_START, run_event};
use concierto_ingest::IngestOptions;
use concierto_proto::v1::{self, MetricSample, RunEvent, StartRun};
use concierto_scheduler::SchedulerOptions;
use concierto_testkit::NatsServer;
use concierto_tracker::TrackerOptions;

const PATIENCE: Duration = Duration::from_secs(30);

fn utc(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// The seed's threshold trigger and daily_output target, a campaign folder.
fn studio(dir: &std::path::Path, analytics: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Targets drive work"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
workflows:
  content-optimization:
    description: "Improve what underperforms."
    steps:
      - id: optimize
        role: growth-hacker
        task: "Propose changes to lift engagement."
        inputs: [trigger]
  daily-content-pipeline:
    description: "Draft the day's content."
    steps:
      - id: draft
        role: content-creator
        task: "Draft today's posts."
triggers:
  event_based:
    - on_performance_threshold:
        metric: "engagement_rate < 0.05"
        agents: [growth-hacker]
        workflow: "content-optimization"
content_sources:
  training_data:
    - successful_campaigns:
        source: "{analytics}"
        learner: growth-hacker
        training_frequency: "continuous"
progress_metrics:
  content_generation:
    - daily_output:
        target: 10
        type: "content_pieces"
        tracker: analytics-reporter
        on_off_target: {{ workflow: "daily-content-pipeline" }}
"#,
        agents = agents.display(),
        analytics = analytics.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

/// The next run.start of `trigger` within [`PATIENCE`].
async fn next_run(
    starts: &mut concierto_bus::TypedSubscription<StartRun>,
    trigger: &str,
) -> StartRun {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (run, _) = tokio::time::timeout_at(deadline, starts.next())
            .await
            .unwrap_or_else(|_| panic!("no run of {trigger} in time"))
            .expect("subscription open");
        if run.trigger == trigger {
            return run;
        }
    }
}

#[actix_rt::test]
async fn ingested_low_engagement_and_a_short_day_start_their_workflows() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let analytics = dir.path().join("analytics");
    std::fs::create_dir_all(&analytics).unwrap();
    std::fs::write(
        analytics.join("march.csv"),
        "campaign_id,name,engagement_rate,impressions,date\n\
         c1,Spring teaser,0.03,1200,2026-03-10\n",
    )
    .unwrap();
    let st = studio(dir.path(), &analytics);
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let mut starts = bus.subscribe_proto::<StartRun>(RUN_START).await.unwrap();
    let mut samples = bus
        .subscribe_proto::<MetricSample>("metric.engagement_rate")
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let manual = ManualClock::new(utc(10, 12));
    let clock: SharedClock = Arc::new(manual.clone());

    let tracker = concierto_tracker::start(
        st.clone(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()) as Arc<dyn KvStore>,
        clock.clone(),
        TrackerOptions {
            tick: Duration::from_millis(50),
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
            fetch_wait: Duration::from_millis(100),
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
            continuous_every: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // The record became a sample, at the record's date, labelled.
    let (sample, raw) = tokio::time::timeout(PATIENCE, samples.next())
        .await
        .expect("a metric sample from the ingested analytics")
        .unwrap();
    assert_eq!(raw.subject, "metric.engagement_rate");
    assert_eq!(sample.value, 0.03);
    assert_eq!(sample.at, Some(ts(utc(10, 0))));
    assert_eq!(sample.labels["record"], "march.csv#c1");
    assert_eq!(sample.labels["source"], "successful_campaigns");

    // The tracker's watch entered and the scheduler started content-optimization.
    let run = next_run(&mut starts, "on_performance_threshold").await;
    assert_eq!(run.workflow, "content-optimization");
    assert_eq!(
        run.run_id,
        "on_performance_threshold@engagement_rate@2026-03-10T00:00:00Z"
    );
    assert_eq!(run.params["metric"], "engagement_rate");
    assert_eq!(run.params["value"], "0.03");

    // A later read of the unchanged file publishes no sample again.
    manual.set(utc(10, 12) + chrono::Duration::minutes(5));
    assert!(
        tokio::time::timeout(Duration::from_secs(3), samples.next())
            .await
            .is_err(),
        "an unchanged record published a sample again"
    );

    // A day with one content piece against a target of 10: the catch-up run.
    let piece = RunEvent {
        run_id: "daily_content_generation@2026-03-10T09:00:00Z".into(),
        workflow: "daily-content-pipeline".into(),
        seq: 3,
        at: Some(ts(utc(10, 9))),
        run_state: v1::RunState::Running as i32,
        step_id: "draft".into(),
        step_state: v1::StepState::Succeeded as i32,
        role: "content-creator".into(),
        ..Default::default()
    };
    bus.publish_durable_proto(&run_event(&piece.run_id), &piece, "piece-1")
        .await
        .unwrap();
    manual.set(utc(11, 0) + chrono::Duration::seconds(30));
    let run = next_run(&mut starts, "target:daily_output").await;
    assert_eq!(run.workflow, "daily-content-pipeline");
    assert!(
        run.run_id.starts_with("target:daily_output@2026-03-1"),
        "{}",
        run.run_id
    );
    assert_eq!(run.params["metric"], "daily_output");
    assert_eq!(run.params["value"], "1");
    assert_eq!(run.params["target"], "10");

    ingest.stop().await.unwrap();
    scheduler.stop().await.unwrap();
    tracker.stop().await.unwrap();
}
