//! An agent-to-agent review loop end to end: a real nats-server, the
//! `concierto` binary as separate processes, a `command` executor as the
//! producer (a real program) and the builtin brand-guardian as the reviewer,
//! scoring against the example studio's brand guide.

use std::path::{Path, PathBuf};
use std::time::Duration;

use concierto_bus::BusExt;
use concierto_core::subjects;
use concierto_e2e::{Sandbox, eventually, get_run, list_runs};
use concierto_proto::v1;

/// A copywriter with too much energy: its first draft breaks the brand guide;
/// asked to revise, it follows the notes.
const WRITER: &str = r#"#!/bin/sh
cat > /dev/null
if [ "$CONCIERTO_REVIEW_ACTION" = "revise" ]; then
  printf '## Handmade packaging, told with care\n\nOur studio designs every box by hand, with care for the material.\nEach one tells a clear story of the people who made it.\n'
else
  printf '## UNLOCK the packaging REVOLUTION!!!\n\nOur game-changer boxes will supercharge your brand. Guaranteed results!\n'
fi
"#;

fn write_studio(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(studio.join("brand")).unwrap();
    std::fs::copy(
        root.join("examples/studio/brand/rules.yaml"),
        studio.join("brand/rules.yaml"),
    )
    .unwrap();
    let writer = studio.join("writer.sh");
    std::fs::write(&writer, WRITER).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&writer, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Review loop test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
  executors:
    writer: {{ kind: command, command: ["{writer}"], timeout: "20 seconds" }}
  roles:
    content-creator: {{ executor: writer }}
workflows:
  launch-post:
    description: "Draft a launch post; the brand guardian must pass it."
    steps:
      - id: draft
        role: content-creator
        task: "Write the launch post for the new packaging line."
        inputs: [trigger]
        timeout: "30 seconds"
        review: creator_to_reviewer
feedback_loops:
  agent_to_agent:
    - creator_to_reviewer:
        producer: [content-creator]
        reviewer: [brand-guardian]
        cycle_time: "immediate"
"#,
            agents = root.join("examples/studio/agents").display(),
            writer = writer.display()
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brand_guardian_rejects_an_off_brand_draft_and_passes_the_revision() {
    let mut sb = Sandbox::new(&[]);
    let studio = write_studio(sb.dir());
    sb.use_studio(studio);
    sb.spawn("orchestrator", &["serve", "orchestrator"]);
    sb.spawn("content-creator", &["agent", "--role", "content-creator"]);
    sb.spawn("brand-guardian", &["agent", "--role", "brand-guardian"]);
    let client = sb.client().await;
    eventually(
        Duration::from_secs(30),
        "the orchestrator to answer",
        || async { list_runs(&client).await },
    )
    .await;

    let start = v1::StartRun {
        run_id: "launch@1".into(),
        workflow: "launch-post".into(),
        trigger: "manual".into(),
        requested_by: "test".into(),
        ..Default::default()
    };
    client
        .publish_durable_proto(subjects::RUN_START, &start, &start.run_id)
        .await
        .unwrap();
    let run = eventually(Duration::from_secs(60), "the run to finish", || async {
        get_run(&client, "launch@1")
            .await
            .filter(|r| r.state() != v1::RunState::Running)
    })
    .await;
    assert_eq!(
        run.state(),
        v1::RunState::Succeeded,
        "{run:?}\n{}",
        sb.logs()
    );

    let step = |id: &str| {
        run.steps
            .iter()
            .find(|s| s.step_id == id)
            .unwrap_or_else(|| panic!("step {id} in {run:?}"))
    };
    let draft = step("draft");
    assert_eq!(draft.review_rounds, 2, "{draft:?}");
    assert!(
        draft.output.contains("Handmade packaging"),
        "the passed revision is the output: {}",
        draft.output
    );
    assert_eq!(draft.usage.as_ref().unwrap().executor, "command");

    // Round 1: rejected, with a score and the notes that say why.
    let r1 = step("draft/review-1/brand-guardian");
    let v1r = r1.verdict.as_ref().expect("round 1 verdict");
    assert!(!v1r.pass && v1r.score < 0.85, "{v1r:?}");
    let reasons = v1r.reasons.join(" ").to_lowercase();
    assert!(
        reasons.contains("unlock") && reasons.contains("guaranteed"),
        "{reasons}"
    );
    assert_eq!(r1.usage.as_ref().unwrap().executor, "builtin");

    // The producer revised with those notes; round 2 passed.
    let revise = step("draft/revise-2");
    assert_eq!(revise.state(), v1::StepState::Succeeded);
    let r2 = step("draft/review-2/brand-guardian");
    let v2r = r2.verdict.as_ref().expect("round 2 verdict");
    assert!(v2r.pass && v2r.score >= 0.85, "{v2r:?}");

    eprintln!(
        "round 1: score {:.2}, pass {} — {}\nround 2: score {:.2}, pass {} — {}",
        v1r.score, v1r.pass, v1r.notes, v2r.score, v2r.pass, v2r.notes
    );

    // Both rounds are in the orchestrator's log with their scores.
    let log = sb.procs_log("orchestrator");
    assert!(
        log.contains("review round decided")
            && log.contains("round=1")
            && log.contains("passed=false"),
        "{log}"
    );
    assert!(
        log.contains("round=2") && log.contains("passed=true"),
        "{log}"
    );
}
