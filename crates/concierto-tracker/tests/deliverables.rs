//! `daily_output` counts what the studio made: a succeeded run of a workflow
//! with `deliverables` adds the pieces of its deliverable steps' outputs
//! (Markdown `## ` sections, JSON arrays), read from the orchestrator over
//! `orchestrator.runs.get` on a real nats-server; its steps are not counted
//! one by one, and a redelivered run end counts nothing more.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};
use concierto_tracker::TrackerOptions;

const PATIENCE: Duration = Duration::from_secs(20);

fn utc(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, h, 0, 0).unwrap()
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn step(id: &str, role: &str, output: &str) -> v1::RunStep {
    v1::RunStep {
        step_id: id.into(),
        role: role.into(),
        state: v1::StepState::Succeeded as i32,
        output: output.into(),
        ..Default::default()
    }
}

async fn daily_output(bus: &Arc<dyn Bus>) -> Option<f64> {
    let r: v1::GetMetricsResponse = bus
        .request_proto(
            subjects::TRACKER_GET_METRICS,
            &v1::GetMetricsRequest {
                names: vec!["daily_output".into()],
                window_hours: 24,
            },
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    r.metrics.first().map(|m| m.current)
}

#[actix_rt::test]
async fn a_succeeded_run_counts_the_pieces_of_its_deliverables() {
    let server = NatsServer::start().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&server.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let st = Arc::new(config::load_with_env(&example, Vec::new()).unwrap());
    assert_eq!(
        st.publishing.steps_of("daily-content-pipeline"),
        ["draft-content", "visual-brief"]
    );

    // The orchestrator's answer about the run: three posts, one brief, and a
    // step that is not a deliverable.
    let run_id = "daily_content_generation@2026-03-10T09:00:00Z";
    let run = v1::Run {
        run_id: run_id.into(),
        workflow: "daily-content-pipeline".into(),
        state: v1::RunState::Succeeded as i32,
        steps: vec![
            step(
                "research-context",
                "trend-researcher",
                "## a\n## b\n## c\n## d\n",
            ),
            step(
                "draft-content",
                "content-creator",
                "# Today\n## Post: launch\ntext\n## Post: tips\ntext\n## Post: poll\ntext\n",
            ),
            step(
                "visual-brief",
                "visual-storyteller",
                "One brief for all three.",
            ),
        ],
        ..Default::default()
    };
    let mut asks = bus
        .queue_subscribe_proto::<v1::GetRunRequest>(subjects::ORCHESTRATOR_GET_RUN, "orchestrator")
        .await
        .unwrap();
    let answering = {
        let bus = bus.clone();
        tokio::spawn(async move {
            while let Some((req, raw)) = asks.next().await {
                let run = (req.run_id == run.run_id).then(|| run.clone());
                if let Some(reply) = raw.reply {
                    bus.respond_proto(&reply, &v1::GetRunResponse { run })
                        .await
                        .unwrap();
                }
            }
        })
    };
    bus.flush().await.unwrap();

    let clock: SharedClock = Arc::new(ManualClock::new(utc(12)));
    let tracker = concierto_tracker::start(
        st.clone(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()) as Arc<dyn KvStore>,
        clock,
        TrackerOptions {
            tick: Duration::from_millis(20),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Its steps succeed (not counted one by one), then the run (counted once,
    // even when its end is delivered twice).
    let events = [
        v1::RunEvent {
            run_id: run_id.into(),
            workflow: "daily-content-pipeline".into(),
            seq: 5,
            step_id: "draft-content".into(),
            role: "content-creator".into(),
            step_state: v1::StepState::Succeeded as i32,
            run_state: v1::RunState::Running as i32,
            at: ts(utc(9)),
            ..Default::default()
        },
        v1::RunEvent {
            run_id: run_id.into(),
            workflow: "daily-content-pipeline".into(),
            seq: 9,
            run_state: v1::RunState::Succeeded as i32,
            at: ts(utc(10)),
            ..Default::default()
        },
    ];
    for (i, e) in events.iter().chain(events.last()).enumerate() {
        bus.publish_durable_proto(&subjects::run_event(run_id), e, &format!("e{i}"))
            .await
            .unwrap();
    }
    eventually(PATIENCE, "daily_output 4", || {
        let bus = bus.clone();
        async move { (daily_output(&bus).await == Some(4.0)).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(daily_output(&bus).await, Some(4.0), "counted once");

    tracker.stop().await.unwrap();
    answering.abort();
}
