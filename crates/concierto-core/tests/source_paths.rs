//! Content source folders: relative paths are taken from the studio file's
//! folder, absolute ones stay as written, a missing folder is a warning with
//! file and line (not an error), and `enabled` turns a source off.

use std::path::Path;

use concierto_core::config::{self, Severity};

fn agents() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/studio/agents")
        .display()
        .to_string()
}

fn write(dir: &Path, sources: &str) -> std::path::PathBuf {
    let file = dir.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            "studio: {{ name: paths, timezone: UTC }}\nagents:\n  paths: [\"{}\"]\ncontent_sources:\n{sources}",
            agents()
        ),
    )
    .unwrap();
    file
}

#[test]
fn relative_folders_resolve_against_the_studio_file_and_absolute_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let abs = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    let file = write(
        dir.path(),
        &format!(
            "  curated_databases:\n    - here:\n        type: image_database\n        path: \"assets\"\n        indexer: visual-storyteller\n    - there:\n        type: image_database\n        path: \"{}\"\n        indexer: visual-storyteller\n",
            abs.path().display()
        ),
    );
    let checked = config::check(&file);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let studio = checked.studio.unwrap();
    assert_eq!(
        Path::new(&studio.content_sources[0].location),
        dir.path().join("assets")
    );
    assert_eq!(
        studio.content_sources[1].location,
        abs.path().display().to_string()
    );
    assert!(studio.content_sources.iter().all(|s| s.enabled));
}

#[test]
fn a_missing_folder_is_a_warning_with_its_line_and_an_off_source_is_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "  curated_databases:\n    - missing:\n        type: image_database\n        path: \"not-yet/\"\n        indexer: visual-storyteller\n  training_data:\n    - off:\n        source: \"/nowhere/at/all/\"\n        learner: growth-hacker\n        enabled: false\n  external_inspiration:\n    - feed:\n        type: web_scraper\n        url: \"https://example.com/feed\"\n        processor: innovation-catalyst\n        enabled: false\n",
    );
    let checked = config::check(&file);
    let studio = checked.studio.expect("a missing folder is no error");
    assert_eq!(checked.problems.len(), 1, "{:?}", checked.problems);
    let p = &checked.problems[0];
    assert_eq!(p.severity, Severity::Warning);
    let line = p.to_string();
    assert!(
        line.contains(
            "concierto.yaml:8: warning: content_sources.curated_databases[0].missing.path"
        ),
        "{line}"
    );
    assert!(line.contains("does not exist"), "{line}");
    let enabled: Vec<bool> = studio.content_sources.iter().map(|s| s.enabled).collect();
    assert_eq!(enabled, [true, false, false]);
}

#[test]
fn enabled_must_be_true_or_false() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "  external_inspiration:\n    - feed:\n        type: web_scraper\n        url: \"https://example.com/feed\"\n        processor: innovation-catalyst\n        enabled: sometimes\n",
    );
    let checked = config::check(&file);
    assert!(checked.studio.is_none());
    assert!(
        checked
            .problems
            .iter()
            .any(|p| p.severity == Severity::Error && p.to_string().contains("enabled")),
        "{:?}",
        checked.problems
    );
}
