//! Operating the studio from the command line, end to end (a real nats-server,
//! the services and an agent as `concierto` processes, only the CLI driving):
//! `trigger pause|resume` and the trigger table's state, times in the studio's
//! zone with their label (`--utc` for UTC, RFC 3339 with the offset in
//! `--json`), `run ls` paging and its date flags, `gate show` of an unknown id
//! saying what to do, and `completions`.

mod admin_common;

use admin_common::{
    BRAND, OPS, TRIGGER, WORKFLOW, cli, show, start_studio, stderr, stdout, wait_ready,
};
use concierto_e2e::concierto_bin;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", show(out)))
}

/// The example studio: its zone (Europe/Madrid) is what the tables show.
fn madrid_studio() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/studio/concierto.yaml")
        .display()
        .to_string()
}

fn trigger_line(text: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(TRIGGER))
        .unwrap_or_else(|| panic!("no {TRIGGER} line in\n{text}"))
        .to_string()
}

#[test]
fn triggers_pause_and_resume_and_times_show_in_the_studio_zone() {
    let (sb, addr) = start_studio();
    wait_ready(&sb, &addr);

    // Active, its next fire labelled with the zone of the studio file given.
    let madrid = madrid_studio();
    let out = cli(&addr, Some(BRAND), &["trigger", "ls", "--file", &madrid]);
    assert!(out.status.success(), "{}\n{}", show(&out), sb.logs());
    let line = trigger_line(&stdout(&out));
    assert!(line.contains(" active "), "{line}");
    assert!(
        line.contains(" CET ") || line.contains(" CEST "),
        "the next fire in Madrid time, labelled: {line}"
    );
    let out = cli(
        &addr,
        Some(BRAND),
        &["trigger", "ls", "--json", "--file", &madrid],
    );
    let next = json(&out)[0]["next_fire"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        next.ends_with("+01:00") || next.ends_with("+02:00"),
        "RFC 3339 with Madrid's offset: {next}"
    );
    // --utc: UTC, labelled; JSON with Z.
    let out = cli(
        &addr,
        Some(BRAND),
        &["trigger", "ls", "--utc", "--file", &madrid],
    );
    assert!(
        trigger_line(&stdout(&out)).contains(" UTC "),
        "{}",
        show(&out)
    );
    let out = cli(&addr, Some(BRAND), &["trigger", "ls", "--json", "--utc"]);
    let next = json(&out)[0]["next_fire"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(next.ends_with('Z'), "{next}");

    // Only an admin pauses.
    let out = cli(&addr, Some(BRAND), &["trigger", "pause", TRIGGER]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: permission denied: "),
        "{}",
        show(&out)
    );
    let out = cli(&addr, Some(OPS), &["trigger", "pause", "no_such_trigger"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: not found: "),
        "{}",
        show(&out)
    );

    let out = cli(&addr, Some(OPS), &["trigger", "pause", TRIGGER, "--utc"]);
    assert!(out.status.success(), "{}\n{}", show(&out), sb.logs());
    let said = stdout(&out);
    assert!(
        said.starts_with(&format!("{TRIGGER}: paused by ops at "))
            && said.trim_end().ends_with(" UTC"),
        "{said}"
    );
    let out = cli(&addr, Some(BRAND), &["trigger", "ls"]);
    let text = stdout(&out);
    let line = trigger_line(&text);
    assert!(line.contains("PAUSED by ops"), "{text}");
    assert!(
        text.contains("trigger resume"),
        "the table says how to resume:\n{text}"
    );
    let out = cli(
        &addr,
        Some(BRAND),
        &["trigger", "ls", "--json", "--file", &madrid],
    );
    let t = &json(&out)[0];
    assert_eq!(t["paused"], true, "{t:#}");
    assert_eq!(t["paused_by"], "ops", "{t:#}");
    assert_eq!(t["next_fire"], Value::Null, "{t:#}");
    let at = t["paused_at"].as_str().unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{t:#}");

    let out = cli(&addr, Some(OPS), &["trigger", "resume", TRIGGER]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).starts_with(&format!("{TRIGGER}: resumed; next fire 20")),
        "{}",
        show(&out)
    );
    let out = cli(&addr, Some(BRAND), &["trigger", "ls"]);
    assert!(
        trigger_line(&stdout(&out)).contains(" active "),
        "{}",
        show(&out)
    );
}

#[test]
fn run_ls_pages_with_a_token_and_reads_dates_and_gate_show_says_what_to_do() {
    let (sb, addr) = start_studio();
    wait_ready(&sb, &addr);
    for id in ["campaign@a", "campaign@b"] {
        let out = cli(&addr, Some(OPS), &["run", "start", WORKFLOW, "--id", id]);
        assert!(out.status.success(), "{}\n{}", show(&out), sb.logs());
    }
    let out = cli(&addr, Some(OPS), &["run", "ls", "--limit", "1", "--utc"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let first: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("campaign@"))
        .collect();
    assert_eq!(first.len(), 1, "{text}");
    assert!(first[0].contains(" UTC "), "created time labelled: {text}");
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("more runs: add --page-token "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no next page hint in\n{text}"))
        .to_string();
    let out = cli(
        &addr,
        Some(OPS),
        &[
            "run",
            "ls",
            "--limit",
            "1",
            "--page-token",
            &token,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let runs = json(&out);
    let second = runs[0]["run_id"].as_str().unwrap_or_default();
    assert!(second.starts_with("campaign@"), "{runs:#}");
    assert!(
        !first[0].starts_with(second),
        "the next page goes on: {runs:#}"
    );

    // A date the CLI cannot read is a usage error naming the forms it takes.
    let out = cli(&addr, Some(OPS), &["run", "ls", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("--since") && stderr(&out).contains("RFC 3339"),
        "{}",
        show(&out)
    );

    let out = cli(&addr, Some(OPS), &["gate", "show", "nothing-like-this"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.starts_with("concierto: not found: "), "{err}");
    assert!(
        err.contains("concierto gate ls --run nothing-like-this"),
        "{err}"
    );
}

#[test]
fn completions_are_printed_for_each_shell_and_an_unknown_shell_is_a_usage_error() {
    for (shell, mark) in [
        ("bash", "_concierto()"),
        ("zsh", "#compdef concierto"),
        ("fish", "complete -c concierto"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[concierto]"),
    ] {
        let out = std::process::Command::new(concierto_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", show(&out));
        let text = stdout(&out);
        assert!(text.contains(mark), "{shell}: no {mark:?}");
        assert!(text.contains("pause"), "{shell}: the subcommands are in it");
    }
    let out = std::process::Command::new(concierto_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
