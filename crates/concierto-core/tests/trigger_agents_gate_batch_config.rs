//! A trigger's `agents` (the roles its runs may dispatch to) and a quality
//! gate's `batch` as `validate` checks and explains them: every problem with
//! its key path and line.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use concierto_core::config::explain::explain_file;
use concierto_core::config::{Checked, Severity, check_with_env};

/// A studio whose roles are the example studio's, written with `body` in a
/// temporary folder.
fn studio(body: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let text = format!(
        "studio:\n  name: \"Agents and batches\"\n  timezone: \"UTC\"\nagents:\n  paths: [\"{}\"]\n{body}",
        agents.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, &text).unwrap();
    (dir, file, text)
}

/// The 1-based line of the only line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} should be on exactly one line");
    hits[0]
}

/// `(severity, line, key, message)` of every problem.
fn problems(c: &Checked) -> Vec<(Severity, Option<usize>, String, String)> {
    c.problems
        .iter()
        .map(|p| (p.severity, p.line, p.key.clone(), p.message.clone()))
        .collect()
}

const WORKFLOW: &str = r#"reviewers:
  brand_manager: { name: "Brand Manager" }
workflows:
  wf:
    description: "Draft, then brief the visuals."
    steps:
      - id: draft
        role: content-creator
        task: "Draft."
        inputs: [trigger]
      - id: brief
        role: visual-storyteller
        task: "Brief the visuals."
        inputs: [draft]
    on_failure:
      role: studio-orchestrator
      task: "Say what failed."
feedback_loops:
  agent_to_agent:
    - creator_to_reviewer:
        producer: [content-creator]
        reviewer: [brand-guardian]
        cycle_time: "immediate"
"#;

#[test]
fn a_listed_role_the_workflow_never_uses_is_an_error_and_each_skipped_step_a_warning() {
    let body = format!(
        r#"{WORKFLOW}triggers:
  scheduled:
    - unused:
        time: "09:00"
        agents: [content-creator, trend-researcher, visual-storyteller]   # <<unused>>
        workflow: "wf"
    - partial:
        time: "10:00"
        agents: [content-creator]   # <<partial>>
        workflow: "wf"
    - exempt:
        time: "11:00"
        agents: [content-creator, visual-storyteller, studio-orchestrator, brand-guardian]
        workflow: "wf"
    - misspelt:
        time: "12:00"
        agents: [content-creator, visual-storyteler]   # <<misspelt>>
        workflow: "wf"
"#
    );
    let (_dir, file, text) = studio(&body);
    let c = check_with_env(&file, Vec::new());
    let all = problems(&c);
    let unused_line = line_of(&text, "<<unused>>");
    assert!(
        all.contains(&(
            Severity::Error,
            Some(unused_line),
            "triggers.scheduled[0].unused.agents[1]".into(),
            "trigger unused lists agent trend-researcher but workflow wf has no step for it".into()
        )),
        "{all:#?}"
    );
    let partial_line = line_of(&text, "<<partial>>");
    assert!(
        all.contains(&(
            Severity::Warning,
            Some(partial_line),
            "triggers.scheduled[1].partial.agents".into(),
            "in runs of partial, step brief (role visual-storyteller) is skipped: visual-storyteller is not among its agents".into()
        )),
        "{all:#?}"
    );
    // The misspelt role is an unknown role (its step would be skipped: that is
    // not reported on top of the error).
    let misspelt_line = line_of(&text, "<<misspelt>>");
    let misspelt: Vec<_> = all
        .iter()
        .filter(|p| p.2.starts_with("triggers.scheduled[3]"))
        .collect();
    assert_eq!(misspelt.len(), 1, "{misspelt:#?}");
    assert_eq!(misspelt[0].0, Severity::Error);
    assert_eq!(misspelt[0].1, Some(misspelt_line));
    assert!(
        misspelt[0].3.contains("unknown role \"visual-storyteler\""),
        "{misspelt:#?}"
    );
    // The on_failure role and the review loop's reviewer are used by the
    // workflow: listing them is no error; every step listed: no warning.
    assert!(
        !all.iter().any(|p| p.2.starts_with("triggers.scheduled[2]")),
        "{all:#?}"
    );
    // Exactly: the unused agent, the unknown role, the skipped step.
    assert_eq!(all.len(), 3, "{all:#?}");
}

#[test]
fn explain_says_which_steps_a_triggers_runs_skip_and_what_a_gate_batch_does() {
    let body = format!(
        r#"{WORKFLOW}  agent_to_human:
    - quality_gates:
        - brand_approval:
            threshold: "major_brand_changes"
            reviewers: ["brand_manager"]
            sla: "4 hours"
            batch: "2 hours"
triggers:
  scheduled:
    - partial:
        time: "10:00"
        agents: [content-creator]
        workflow: "wf"
"#
    );
    let (_dir, file, _) = studio(&body);
    let c = check_with_env(&file, Vec::new());
    let s = c.studio.as_ref().expect("the studio loads");
    assert_eq!(
        s.feedback_loops.quality_gates[0].batch,
        Some(Duration::from_secs(2 * 3600))
    );
    let now = DateTime::parse_from_rfc3339("2026-12-07T07:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap();
    let lines = explain_file(&file, now).expect("explained");
    let line = |k: &str| {
        lines
            .iter()
            .find(|l| l.key == k)
            .map(|l| l.effect.clone())
            .unwrap_or_else(|| panic!("{k} is not explained: {lines:#?}"))
    };
    let agents = line("triggers.scheduled.partial.agents");
    assert!(
        agents.contains("a step of wf whose role is not listed is skipped"),
        "{agents}"
    );
    assert!(
        agents.contains("its runs skip step brief (visual-storyteller)"),
        "{agents}"
    );
    assert!(agents.contains("on_failure step always run"), "{agents}");
    assert!(agents.contains("fires by hand"), "{agents}");
    let batch = line("feedback_loops.agent_to_human.quality_gates.brand_approval.batch");
    assert!(
        batch.contains("opened less than 2 hours ago is still open"),
        "{batch}"
    );
    assert!(batch.contains("event.gate.joined"), "{batch}");
    assert!(
        batch.contains("deciding a joined gate alone applies to it only"),
        "{batch}"
    );
}

#[test]
fn a_gate_batch_must_be_a_duration_of_at_least_a_minute() {
    let gate = |batch: &str| {
        format!(
            r#"{WORKFLOW}  agent_to_human:
    - quality_gates:
        - brand_approval:
            threshold: "major_brand_changes"
            reviewers: ["brand_manager"]
            sla: "4 hours"
            batch: {batch}   # <<batch>>
"#
        )
    };
    let key = "feedback_loops.agent_to_human[0].quality_gates[0].brand_approval.batch";
    for (value, severity, words) in [
        (
            "\"30 seconds\"",
            Severity::Error,
            "a batch window must be at least 1 minute, found \"30 seconds\"",
        ),
        ("\"soon\"", Severity::Error, "bad duration"),
        (
            "\"1 day\"",
            Severity::Warning,
            "gates join a batch only until its first gate's SLA (4 hours) passes",
        ),
    ] {
        let (_dir, file, text) = studio(&gate(value));
        let c = check_with_env(&file, Vec::new());
        let all = problems(&c);
        assert_eq!(all.len(), 1, "{value}: {all:#?}");
        let (sev, line, k, message) = &all[0];
        assert_eq!(*sev, severity, "{value}: {all:#?}");
        assert_eq!(*line, Some(line_of(&text, "<<batch>>")), "{value}");
        assert_eq!(k, key, "{value}");
        assert!(message.contains(words), "{value}: {message}");
    }
    let (_dir, file, _) = studio(&gate("\"1 minute\""));
    let c = check_with_env(&file, Vec::new());
    assert!(c.problems.is_empty(), "{:#?}", c.problems);
    assert_eq!(
        c.studio.unwrap().feedback_loops.quality_gates[0].batch,
        Some(Duration::from_secs(60))
    );
}
