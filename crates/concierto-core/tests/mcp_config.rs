//! `agents.mcp_servers`: what loads, and every mistake reported with its key.

use std::time::Duration;

use concierto_core::config::{
    McpTransport, Problems, Severity, Studio, check_with_env, load_with_env,
};

fn load(mcp: &str, role_tools: &str) -> (tempfile::TempDir, Result<Studio, Problems>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).expect("mkdir");
    std::fs::write(
        agents.join("scout.md"),
        format!(
            "---\nname: scout\ndescription: Looks around.\ntools: {role_tools}\n---\nYou look.\n"
        ),
    )
    .expect("role");
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, format!("agents:\n  mcp_servers:\n{mcp}")).expect("studio");
    let loaded = load_with_env(&file, Vec::new());
    (dir, loaded)
}

#[test]
fn command_and_url_servers_load() {
    let (_d, s) = load(
        "    files:
      command: [npx, -y, server-filesystem]
      args: [./content]
      env: { LOG_LEVEL: warn, TOKEN: \"${FILES_TOKEN}\", DEPTH: 3 }
    fetch: { command: uvx, args: [mcp-server-fetch] }
    tracker: { url: \"http://localhost:8931/mcp\", timeout: 5 seconds }
",
        "Read, mcp__files__read_file, mcp__tracker__list",
    );
    let s = s.unwrap_or_else(|p| panic!("{p}"));
    let m = &s.agents.mcp_servers;
    assert_eq!(m.keys().collect::<Vec<_>>(), ["files", "fetch", "tracker"]);
    assert_eq!(
        m["files"].transport,
        McpTransport::Command {
            program: "npx".into(),
            args: vec!["-y".into(), "server-filesystem".into(), "./content".into()]
        }
    );
    assert_eq!(m["files"].env["TOKEN"], "${FILES_TOKEN}");
    assert_eq!(m["files"].env["DEPTH"], "3");
    assert_eq!(m["files"].timeout, Duration::from_secs(30));
    assert_eq!(
        m["fetch"].transport,
        McpTransport::Command {
            program: "uvx".into(),
            args: vec!["mcp-server-fetch".into()]
        }
    );
    assert_eq!(
        m["tracker"].transport,
        McpTransport::Url("http://localhost:8931/mcp".into())
    );
    assert_eq!(m["tracker"].timeout, Duration::from_secs(5));
}

#[test]
fn mistakes_are_reported_with_their_key() {
    let (_d, s) = load(
        "    Bad__Name: { command: x }
    both: { command: x, url: \"http://a/mcp\" }
    neither: { env: { A: b } }
    ftp: { url: \"ftp://a/mcp\" }
    partial: { command: x, env: { A: \"pre-${B}\" } }
    badvar: { command: x, env: { \"1A\": b } }
    slow: { command: x, timeout: 1 hour }
    extra: { command: x, cwd: /tmp }
",
        "Read",
    );
    let problems = s.expect_err("refused").to_string();
    for needed in [
        "agents.mcp_servers.Bad__Name: bad MCP server name",
        "agents.mcp_servers.both: set exactly one of `command` and `url`",
        "agents.mcp_servers.neither: needs `command` (a program to start) or `url`",
        "agents.mcp_servers.ftp.url: must be an http:// or https:// URL",
        "agents.mcp_servers.partial.env.A: only a whole-value reference",
        "agents.mcp_servers.badvar.env.1A: bad variable name",
        "agents.mcp_servers.slow.timeout: must be between 1 second and 10 minutes",
        "agents.mcp_servers.extra.cwd: unknown key `cwd`",
    ] {
        assert!(
            problems.contains(needed),
            "missing {needed:?} in:\n{problems}"
        );
    }
}

#[test]
fn a_role_naming_an_undeclared_server_is_warned() {
    let (dir, s) = load(
        "    files: { command: x }\n",
        "mcp__files__read, mcp__web__fetch",
    );
    assert!(s.is_ok());
    let checked = check_with_env(&dir.path().join("concierto.yaml"), Vec::new());
    let warnings: Vec<String> = checked
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(|p| p.message.clone())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("\"mcp__web__fetch\" names the MCP server \"web\", which agents.mcp_servers does not declare (files)")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("mcp__files__read")),
        "{warnings:?}"
    );
}
