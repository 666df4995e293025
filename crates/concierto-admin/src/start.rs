//! Starting a run by hand: the checks and the `run.start` message that the
//! admin API's `StartRun` and the dashboard's start form both publish
//! (durable, [`subjects::RUN_START`], message id = run id), so the two agree
//! on what a hand-started run is.
//!
//! [`subjects::RUN_START`]: concierto_core::subjects::RUN_START

use chrono::{DateTime, SecondsFormat, Utc};
use concierto_core::config::Studio;
use concierto_proto::v1;
use tonic::Status;

use crate::service::check_params;

/// Run id prefixes the orchestrator keeps for its own runs.
const RESERVED_PREFIXES: [&str; 2] = ["review-batch:", "feedback:"];

/// The `run.start` message of a run started by hand, as `requested_by`
/// (`admin:<id>`, `dashboard:<id>`) at `now`: the workflow must be the
/// studio's, the params within bounds, a given run id not one of the
/// orchestrator's own; an empty run id becomes
/// `manual:<workflow>@<now>-<random>`. The params get `fire_time` (like a
/// trigger's fire) unless they carry one.
pub fn start_run_message(
    studio: &Studio,
    req: v1::StartRunRequest,
    requested_by: String,
    now: DateTime<Utc>,
) -> Result<v1::StartRun, Status> {
    if !studio.workflows.contains_key(&req.workflow) {
        return Err(Status::not_found(format!(
            "no workflow {:?}; the studio has: {}",
            req.workflow.chars().take(80).collect::<String>(),
            studio
                .workflows
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for reserved in RESERVED_PREFIXES {
        if req.run_id.starts_with(reserved) {
            return Err(Status::invalid_argument(format!(
                "run ids starting with {reserved:?} are the orchestrator's own"
            )));
        }
    }
    check_params(&req.params)?;
    let run_id = if req.run_id.is_empty() {
        let n: u64 = rand::random();
        format!(
            "manual:{}@{}-{:06x}",
            req.workflow,
            now.to_rfc3339_opts(SecondsFormat::Millis, true),
            n & 0xff_ffff
        )
    } else {
        req.run_id
    };
    let mut params = req.params;
    params
        .entry("fire_time".to_string())
        .or_insert_with(|| now.to_rfc3339_opts(SecondsFormat::Secs, true));
    Ok(v1::StartRun {
        run_id,
        workflow: req.workflow,
        trigger: String::new(),
        fire_time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        priority: req.priority,
        params,
        requested_by,
        cause: None,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use tonic::Code;

    fn studio() -> Studio {
        let agents =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
        let yaml = format!(
            "studio: {{ name: \"Start test\", timezone: \"UTC\" }}\n\
agents: {{ paths: [\"{}\"] }}\n\
workflows:\n  launch:\n    description: \"Write it.\"\n    steps:\n      \
- {{ id: copy, role: content-creator, task: \"Write the copy.\", inputs: [trigger] }}\n",
            agents.display()
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("concierto.yaml");
        std::fs::write(&path, yaml).expect("written");
        concierto_core::config::load_with_env(&path, Vec::new()).expect("the test studio loads")
    }

    #[test]
    fn a_hand_started_run_is_named_and_stamped() {
        let s = studio();
        let Some(wf) = s.workflows.keys().next().cloned() else {
            panic!("the example studio has workflows");
        };
        let now = Utc
            .with_ymd_and_hms(2026, 3, 10, 9, 0, 0)
            .single()
            .expect("a time");
        let req = v1::StartRunRequest {
            workflow: wf.clone(),
            priority: v1::Priority::Urgent as i32,
            params: [("brief".to_string(), "Spring".to_string())].into(),
            run_id: String::new(),
        };
        let m = start_run_message(&s, req, "dashboard:ana".into(), now).expect("valid");
        assert!(
            m.run_id
                .starts_with(&format!("manual:{wf}@2026-03-10T09:00:00.000Z-")),
            "{}",
            m.run_id
        );
        assert_eq!(m.requested_by, "dashboard:ana");
        assert_eq!(m.params["brief"], "Spring");
        assert_eq!(m.params["fire_time"], "2026-03-10T09:00:00Z");
        assert_eq!(m.priority, v1::Priority::Urgent as i32);
    }

    #[test]
    fn unknown_workflows_reserved_ids_and_huge_params_are_refused() {
        let s = studio();
        let now = Utc::now();
        let bad = |req: v1::StartRunRequest| {
            start_run_message(&s, req, "x".into(), now)
                .err()
                .map(|e| e.code())
        };
        assert_eq!(
            bad(v1::StartRunRequest {
                workflow: "nope".into(),
                ..Default::default()
            }),
            Some(Code::NotFound)
        );
        let Some(wf) = s.workflows.keys().next().cloned() else {
            panic!("the example studio has workflows");
        };
        assert_eq!(
            bad(v1::StartRunRequest {
                workflow: wf.clone(),
                run_id: "feedback:x".into(),
                ..Default::default()
            }),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            bad(v1::StartRunRequest {
                workflow: wf,
                params: [("k".to_string(), "v".repeat(100_000))].into(),
                ..Default::default()
            }),
            Some(Code::InvalidArgument)
        );
    }
}
