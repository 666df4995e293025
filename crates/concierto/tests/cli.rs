//! The `concierto` binary, run as a user runs it from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const EXAMPLE: &str = "examples/studio/concierto.yaml";

/// Runs `concierto args...` in the workspace root, without any `CONCIERTO*`
/// variables from the environment the tests run in.
fn concierto(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_concierto"));
    cmd.args(args)
        .current_dir(WORKSPACE)
        .env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("CONCIERTO") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("the concierto binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
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

/// A copy of the example studio (file and role files) with one role misspelt in
/// the daily trigger. Returns the folder, the file and the misspelt line.
fn misspelt_copy() -> (tempfile::TempDir, PathBuf, usize) {
    let right = "agents: [content-creator, visual-storyteller, brand-guardian,";
    let wrong = "agents: [content-creator, visual-storyteller, brand-guardain,";
    let example = Path::new(WORKSPACE).join(EXAMPLE);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &example.parent().unwrap().join("agents"),
        &dir.path().join("agents"),
    );
    let text = std::fs::read_to_string(&example).unwrap();
    assert_eq!(text.matches(right).count(), 1);
    let text = text.replacen(right, wrong, 1);
    let line = text
        .lines()
        .position(|l| l.contains(wrong))
        .expect("the misspelt line is there")
        + 1;
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, text).unwrap();
    (dir, file, line)
}

#[test]
fn validate_example_exits_0_and_prints_the_ok_summary() {
    let out = concierto(&["validate", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", show(&out));
    assert!(
        lines[0].starts_with(&format!("{EXAMPLE}:"))
            && lines[0]
                .contains(": warning: triggers.event_based[0].on_new_inspiration.source[2]: ")
            && lines[0].contains("\"instagram\""),
        "{}",
        show(&out)
    );
    assert_eq!(
        lines[1],
        format!(
            "{EXAMPLE}: ok — 20 roles, 6 triggers, 5 workflows, 2 review loops, 3 quality gates, \
             6 content sources, 6 metrics, 1 warning(s)"
        ),
        "{}",
        show(&out)
    );
}

#[test]
fn validate_misspelt_role_exits_1_with_file_line_and_name() {
    let (_dir, file, line) = misspelt_copy();
    let file_arg = file.to_str().unwrap();
    let out = concierto(&["validate", file_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    let error = text
        .lines()
        .find(|l| l.contains(": error: "))
        .unwrap_or_else(|| panic!("no error line\n{}", show(&out)));
    assert!(
        error.starts_with(&format!(
            "{file_arg}:{line}: error: triggers.scheduled[0].daily_content_generation.agents[2]: "
        )),
        "{}",
        show(&out)
    );
    assert!(error.contains("\"brand-guardain\""), "{}", show(&out));
    assert!(
        error.contains("did you mean \"brand-guardian\""),
        "{}",
        show(&out)
    );
    assert_eq!(
        text.lines().last(),
        // instagram, and the four sample-content folders not copied beside the file.
        Some(format!("{file_arg}: 1 error(s), 5 warning(s)").as_str()),
        "{}",
        show(&out)
    );
}

#[test]
fn validate_strict_fails_on_the_instagram_warning() {
    let out = concierto(&["validate", EXAMPLE, "--strict"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.contains(": warning: ") && l.contains("\"instagram\"")),
        "{}",
        show(&out)
    );
    assert_eq!(
        text.lines().last(),
        Some(format!("{EXAMPLE}: 0 error(s), 1 warning(s)").as_str()),
        "{}",
        show(&out)
    );
    assert!(!text.contains(": ok — "), "{}", show(&out));
}

#[test]
fn version_prints_the_package_version() {
    let out = concierto(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("concierto {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_works_for_the_top_level_and_every_subcommand() {
    let out = concierto(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("Usage: concierto"), "{text}");
    for sub in [
        "validate", "up", "serve", "agent", "run", "gate", "feedback", "trigger", "agents", "token",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(sub)),
            "top-level help does not list {sub}:\n{text}"
        );
    }

    for (sub, mentions) in [
        ("validate", "--strict"),
        ("up", "[FILE]"),
        ("serve", "--nats"),
        ("agent", "--role"),
        ("run", "--server"),
        ("gate", "--token"),
        ("feedback", "submit"),
        ("trigger", "fire"),
        ("agents", "ls"),
        ("token", "new"),
    ] {
        let out = concierto(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}: {}", show(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!("Usage: concierto {sub}")),
            "{sub}:\n{text}"
        );
        assert!(
            text.contains(mentions),
            "{sub} help lacks {mentions}:\n{text}"
        );

        let out = concierto(&["help", sub]);
        assert_eq!(out.status.code(), Some(0), "help {sub}: {}", show(&out));
        assert!(stdout(&out).contains(&format!("Usage: concierto {sub}")));
    }
}

#[test]
fn serve_refuses_unknown_and_unbuilt_services_naming_what_runs() {
    let out = concierto(&["serve", "--nats", "nats://127.0.0.1:1", "bogus"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("unknown service \"bogus\""), "{}", show(&out));
    assert!(err.contains("scheduler, orchestrator"), "{}", show(&out));
}

#[test]
fn up_on_an_invalid_studio_prints_its_problems_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "triggers:\n  scheduled:\n    - x:\n        time: \"Munday 10:00\"\n        workflow: nope\n").unwrap();
    let out = concierto(&["up", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("Munday"), "{}", show(&out));
    assert!(err.contains("is not a valid studio"), "{}", show(&out));
}

#[test]
fn client_subcommands_have_help_with_their_flags() {
    for (path, mentions) in [
        (
            &["run", "ls"][..],
            &["--workflow", "--state", "--limit", "--json", "waiting-gate"][..],
        ),
        (&["run", "show"], &["<ID>", "--json"]),
        (
            &["run", "start"],
            &["<WORKFLOW>", "--param", "--priority", "--id"],
        ),
        (&["run", "cancel"], &["<ID>", "--reason"]),
        (&["run", "watch"], &["[ID]", "--json"]),
        (&["gate", "ls"], &["--state", "--run", "changes-requested"]),
        (&["gate", "show"], &["<ID>"]),
        (&["gate", "approve"], &["<ID>", "--notes"]),
        (&["gate", "reject"], &["--notes <NOTES>"]),
        (&["gate", "request-changes"], &["--notes <NOTES>"]),
        (&["gate", "watch"], &["--mine"]),
        (&["feedback", "submit"], &["--text", "--subject", "--run"]),
        (&["feedback", "ls"], &["--json"]),
        (&["trigger", "ls"], &["--json"]),
        (&["trigger", "fire"], &["<NAME>", "--priority"]),
        (&["agents", "ls"], &["[FILE]", "--json"]),
        (&["token", "new"], &["Usage: concierto token new"]),
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let out = concierto(&args);
        assert_eq!(out.status.code(), Some(0), "{path:?}: {}", show(&out));
        let text = stdout(&out);
        for m in mentions {
            assert!(text.contains(m), "{path:?} help lacks {m}:\n{text}");
        }
        // Every admin command takes the connection flags.
        if !matches!(path[0], "agents" | "token") {
            for flag in ["--server", "--token", "--ca"] {
                assert!(text.contains(flag), "{path:?} help lacks {flag}:\n{text}");
            }
        }
    }
}

#[test]
fn help_never_shows_the_token_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_concierto"))
        .args(["run", "ls", "--help"])
        .env("CONCIERTO_TOKEN", "do-not-print-me")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!stdout(&out).contains("do-not-print-me"), "{}", show(&out));
}

#[test]
fn reject_without_notes_and_bad_flag_values_are_usage_errors() {
    for args in [
        &["gate", "reject", "g1"][..],
        &["gate", "request-changes", "g1"],
        &["run", "ls", "--state", "sleeping"],
        &["run", "start", "wf", "--param", "novalue"],
        &["run", "start", "wf", "--priority", "feedback"],
    ] {
        let out = concierto(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
    }
    // Empty notes are refused before any call (no server is needed to say so).
    let out = concierto(&[
        "gate",
        "reject",
        "g1",
        "--notes",
        " ",
        "--server",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: --notes"),
        "{}",
        show(&out)
    );
}
