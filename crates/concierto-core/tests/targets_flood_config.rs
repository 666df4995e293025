//! The keys that make targets drive work (`on_off_target`) and keep event
//! triggers from flooding (`batch`, `max_runs_per_day`): the example studio's
//! values, and every mistake reported with its key path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use concierto_core::config::{Checked, check_with_env, off_target_predicate};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Checks the example studio with `from` replaced by `to` (which must occur once).
fn check_edited(from: &str, to: &str) -> Checked {
    let text = std::fs::read_to_string(example_dir().join("concierto.yaml")).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} occurs once");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example_dir().join("agents"), &dir.path().join("agents"));
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, text.replace(from, to)).unwrap();
    check_with_env(&file, Vec::new())
}

/// The error messages, as `path: message`.
fn errors(c: &Checked) -> Vec<String> {
    c.problems
        .iter()
        .filter(|p| p.severity == concierto_core::config::Severity::Error)
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect()
}

fn has_error(c: &Checked, path: &str, words: &str) {
    let e = errors(c);
    assert!(
        e.iter().any(|x| x.starts_with(path) && x.contains(words)),
        "no error at {path} saying {words:?}: {e:#?}"
    );
}

const DAILY: &str = "        on_off_target: { workflow: \"daily-content-pipeline\" }";
const FEEDBACK: &str = "        on_off_target: { notify: [creative_director, brand_manager] }";
const BATCH: &str = "        batch: \"1 hour\"";
const MAX: &str = "        max_runs_per_day: 8";

#[test]
fn the_example_studio_reacts_off_target_and_batches_inspiration() {
    let c = check_edited(MAX, MAX);
    let studio = c.studio.expect("the example loads");
    let daily = studio
        .progress_metrics
        .iter()
        .find(|m| m.name == "daily_output")
        .unwrap();
    let t = daily.on_off_target.as_ref().unwrap();
    assert_eq!(t.workflow.as_deref(), Some("daily-content-pipeline"));
    assert!(t.notify.is_empty());
    assert_eq!(off_target_predicate(daily).3, "daily_output < 10");
    let fb = studio
        .progress_metrics
        .iter()
        .find(|m| m.name == "feedback_response_time")
        .unwrap();
    let t = fb.on_off_target.as_ref().unwrap();
    assert_eq!(t.workflow, None);
    assert_eq!(t.notify, ["creative_director", "brand_manager"]);
    assert_eq!(off_target_predicate(fb).3, "feedback_response_time >= 7200");
    let sr = studio
        .progress_metrics
        .iter()
        .find(|m| m.name == "success_rate")
        .unwrap();
    assert_eq!(
        off_target_predicate(sr).3,
        "success_rate.improvement < 0.03"
    );
    let insp = studio
        .triggers
        .iter()
        .find(|t| t.name == "on_new_inspiration")
        .unwrap();
    assert_eq!(insp.flood.batch, Some(Duration::from_secs(3600)));
    assert_eq!(insp.flood.max_runs_per_day, Some(8));
}

#[test]
fn on_off_target_names_a_known_workflow_and_known_reviewers() {
    let c = check_edited(DAILY, "        on_off_target: { workflow: \"catch-up\" }");
    assert!(c.studio.is_none());
    has_error(
        &c,
        "progress_metrics.content_generation[0].daily_output.on_off_target.workflow",
        "unknown workflow \"catch-up\"",
    );

    let c = check_edited(
        FEEDBACK,
        "        on_off_target: { notify: [creative_director, ceo] }",
    );
    has_error(
        &c,
        "progress_metrics.system_health[1].feedback_response_time.on_off_target.notify[1]",
        "unknown reviewer \"ceo\"",
    );

    let c = check_edited(FEEDBACK, "        on_off_target: {}");
    has_error(
        &c,
        "progress_metrics.system_health[1].feedback_response_time.on_off_target",
        "give `workflow`",
    );

    let c = check_edited(
        FEEDBACK,
        "        on_off_target: { notify: [creative_director], page: true }",
    );
    has_error(
        &c,
        "progress_metrics.system_health[1].feedback_response_time.on_off_target.page",
        "unknown key `page`",
    );

    let c = check_edited(
        FEEDBACK,
        "        on_off_target: \"daily-content-pipeline\"",
    );
    has_error(
        &c,
        "progress_metrics.system_health[1].feedback_response_time.on_off_target",
        "must be a map",
    );
}

#[test]
fn batch_and_max_runs_per_day_are_checked() {
    let p = "triggers.event_based[0].on_new_inspiration";
    let c = check_edited(BATCH, "        batch: \"soon\"");
    assert!(c.studio.is_none());
    has_error(&c, &format!("{p}.batch"), "bad duration");

    let c = check_edited(BATCH, "        batch: \"10 seconds\"");
    has_error(&c, &format!("{p}.batch"), "between 1 minute and 24 hours");

    let c = check_edited(BATCH, "        batch: \"2 days\"");
    has_error(&c, &format!("{p}.batch"), "between 1 minute and 24 hours");

    let c = check_edited(MAX, "        max_runs_per_day: 0");
    has_error(&c, &format!("{p}.max_runs_per_day"), "between 1 and");

    let c = check_edited(MAX, "        max_runs_per_day: many");
    has_error(&c, &format!("{p}.max_runs_per_day"), "whole number");

    // A threshold trigger takes max_runs_per_day, not batch.
    let threshold = "        metric: \"engagement_rate < 0.05\"";
    let c = check_edited(
        threshold,
        &format!("{threshold}\n        batch: \"1 hour\""),
    );
    has_error(
        &c,
        "triggers.event_based[1].on_performance_threshold.batch",
        "new-content triggers",
    );
    let c = check_edited(
        threshold,
        &format!("{threshold}\n        max_runs_per_day: 3"),
    );
    assert!(c.studio.is_some(), "{:#?}", errors(&c));

    // A scheduled trigger takes neither.
    let time = "        time: \"09:00\"";
    let c = check_edited(time, &format!("{time}\n        max_runs_per_day: 3"));
    has_error(
        &c,
        "triggers.scheduled[0].daily_content_generation.max_runs_per_day",
        "event triggers only",
    );
}
