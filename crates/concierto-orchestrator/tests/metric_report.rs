//! The built-in `metric-report:<metric>` workflow: a run the scheduler starts
//! for a metric's periodic report gives its `tracker` role one task, with the
//! metric's series as context.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use concierto_core::config;
use concierto_core::store::{KvStore, SledStore};
use concierto_orchestrator::{Engine, Limits};
use concierto_proto::v1;

#[test]
fn a_report_run_gives_the_metrics_tracker_a_task_with_its_series() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/concierto.yaml");
    let studio = Arc::new(config::load_with_env(&path, Vec::new()).unwrap());
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let now = Utc.with_ymd_and_hms(2026, 3, 11, 0, 5, 0).unwrap();
    let mut e = Engine::new(studio, store, Limits::default());
    e.recover(now).unwrap();
    let fx = e
        .start_run(
            v1::StartRun {
                run_id: "report:daily_output@2026-03-11T00:05:00Z".into(),
                workflow: "metric-report:daily_output".into(),
                trigger: "report:daily_output".into(),
                params: [(
                    "previous_fire_time".to_string(),
                    "2026-03-10T00:05:00Z".to_string(),
                )]
                .into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
    assert_eq!(fx.tasks.len(), 1, "{fx:?}");
    let task = &fx.tasks[0];
    assert_eq!(task.role, "analytics-reporter");
    assert_eq!(task.step_id, "report");
    assert!(
        task.instruction.contains("daily_output"),
        "{}",
        task.instruction
    );
    let metrics = task
        .context
        .iter()
        .find(|c| c.kind == "metrics")
        .expect("the series is asked for");
    assert_eq!(metrics.names, ["daily_output"]);

    // A report of a metric the studio does not have is no workflow.
    let fx = e
        .start_run(
            v1::StartRun {
                run_id: "report:nope@x".into(),
                workflow: "metric-report:nope".into(),
                ..Default::default()
            },
            now,
        )
        .unwrap();
    assert!(fx.tasks.is_empty());
}
