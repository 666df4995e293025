//! Proposals applied to a copy of the example studio: a valid change is
//! written in place and the file still validates; an invalid one leaves the
//! file untouched and says where it is wrong.

use std::path::{Path, PathBuf};

use concierto_core::config::{self, changes};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn example_copy(dir: &tempfile::TempDir) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio");
    copy_dir(&root, dir.path());
    dir.path().join("concierto.yaml")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn an_approved_threshold_change_is_written_in_place_and_still_validates() {
    let dir = tempfile::tempdir().unwrap();
    let file = example_copy(&dir);
    let before = std::fs::read_to_string(&file).unwrap();
    let proposals = changes::proposals(
        "## Optimization proposals\n\n```json\n{\"changes\": [\
         {\"key\": \"triggers.on_performance_threshold.metric\", \"value\": \"engagement_rate < 0.04\", \"why\": \"noise\"},\
         {\"key\": \"feedback_loops.creator_to_reviewer.pass_mark\", \"value\": 0.9},\
         {\"key\": \"progress_metrics.daily_output.target\", \"value\": 12}]}\n```\n",
    )
    .unwrap()
    .unwrap();
    let applied = changes::apply_to_file(&file, &proposals, no_env()).unwrap();
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(after, applied.text);
    assert_eq!(applied.version, changes::version(&after));
    // One line added (the pass mark), every other line as it was but the two values.
    assert_eq!(after.lines().count(), before.lines().count() + 1);
    let differing: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(!differing.is_empty());
    let metric = applied
        .changes
        .iter()
        .find(|c| c.key.ends_with(".metric"))
        .unwrap();
    assert_eq!(metric.old_value, "\"engagement_rate < 0.05\"");
    assert_eq!(
        after.lines().nth(metric.line - 1).unwrap().trim(),
        "metric: \"engagement_rate < 0.04\""
    );
    // The new file loads, with the new values.
    let studio = config::load(&file).unwrap();
    let lp = studio
        .feedback_loops
        .agent_to_agent
        .iter()
        .find(|l| l.name == "creator_to_reviewer")
        .unwrap();
    assert_eq!(lp.pass_mark, Some(0.9));
    assert_eq!(applied.studio.triggers.len(), studio.triggers.len());
}

#[test]
fn a_change_that_breaks_the_studio_is_refused_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = example_copy(&dir);
    let before = std::fs::read_to_string(&file).unwrap();
    let bad = vec![changes::Proposal {
        key: "triggers.daily_content_generation.time".into(),
        value: serde_json::json!("25:99"),
        why: String::new(),
    }];
    let errors = changes::apply_to_file(&file, &bad, no_env()).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("concierto.yaml:") && e.contains("daily_content_generation")),
        "{errors:?}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    // No temporary file left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty());
}

fn threshold_change() -> Vec<changes::Proposal> {
    vec![changes::Proposal {
        key: "triggers.on_performance_threshold.metric".into(),
        value: serde_json::json!("engagement_rate < 0.04"),
        why: String::new(),
    }]
}

#[cfg(unix)]
#[test]
fn a_linked_studio_file_stays_a_link_with_its_target_written_and_its_mode_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = example_copy(&dir);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("studio-link.yaml");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    changes::apply_to_file(&link, &threshold_change(), no_env()).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    let target = std::fs::read_to_string(&file).unwrap();
    assert!(target.contains("metric: \"engagement_rate < 0.04\""));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[cfg(unix)]
#[test]
fn a_link_planted_at_the_temporary_name_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let file = example_copy(&dir);
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let tmp = dir
        .path()
        .join(format!(".concierto.yaml.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    changes::apply_to_file(&file, &threshold_change(), no_env()).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert!(meta.file_type().is_file(), "the studio file became a link");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("metric: \"engagement_rate < 0.04\"")
    );
    assert!(!tmp.exists());
}

#[test]
fn a_studio_text_of_aliases_of_aliases_is_refused_before_it_is_expanded() {
    // What anyone who can publish on `studio.changed` could send every
    // process: nine lines the YAML loaders would expand to a billion values.
    let mut text = String::from("studio: {name: x}\nl0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let a = format!("*a{}", i - 1);
        text.push_str(&format!("l{i}: &a{i} [{}]\n", vec![a; 10].join(", ")));
    }
    let started = std::time::Instant::now();
    let checked = config::check_text_with_env(Path::new("concierto.yaml"), &text, no_env());
    assert!(checked.studio.is_none());
    assert!(
        checked.problems[0].to_string().contains("aliases"),
        "{:?}",
        checked.problems
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // And a deeply nested one does not overflow the stack.
    let deep = format!("studio: {{name: x}}\nx:\n{}y\n", "  - ".repeat(100_000));
    let checked = config::check_text_with_env(Path::new("concierto.yaml"), &deep, no_env());
    assert!(checked.studio.is_none());
}
