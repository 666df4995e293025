//! `executor_for` over a studio whose roles use each kind of executor, and
//! the studios it refuses.

mod http_mock;

use concierto_agent::{AgentError, executor_for};
use concierto_core::config::{RoleSettings, Studio, load_with_env};
use http_mock::{
    ANTHROPIC_KEY, ANTHROPIC_KEY_VAR, OPENAI_KEY, OPENAI_KEY_VAR, UNSET_VAR, test_env,
};

/// Role files: `(name, executor, model)`.
const ROLES: &[(&str, &str, Option<&str>)] = &[
    ("writer", "gpt", None),
    ("critic", "claude", Some("claude-opus-4-1")),
    ("runner", "tool", None),
    ("helper", "builtin", None),
    ("drifter", "unnamed-model", Some("sonnet")),
    ("locked", "no-key", None),
];

fn studio() -> (tempfile::TempDir, Studio) {
    test_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).expect("mkdir");
    for (name, executor, model) in ROLES {
        let model = model.map(|m| format!("model: {m}\n")).unwrap_or_default();
        std::fs::write(
            agents.join(format!("{name}.md")),
            format!(
                "---\nname: {name}\ndescription: A role for tests.\nexecutor: {executor}\n{model}---\nYou are {name}.\n"
            ),
        )
        .expect("role file");
    }
    let yaml = format!(
        "agents:
  paths: [agents]
  executors:
    builtin: {{ kind: builtin }}
    gpt: {{ kind: openai, model: gpt-4o-mini, api_key_env: {OPENAI_KEY_VAR} }}
    claude: {{ kind: anthropic, model: claude-sonnet-4-5, api_key_env: {ANTHROPIC_KEY_VAR} }}
    tool: {{ kind: command, command: [./bin/agent.sh, --fast] }}
    unnamed-model: {{ kind: openai, base_url: \"http://127.0.0.1:11434/v1\" }}
    no-key: {{ kind: openai, model: gpt-4o, api_key_env: {UNSET_VAR} }}
"
    );
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, yaml).expect("studio file");
    let studio = load_with_env(&file, Vec::new()).unwrap_or_else(|p| panic!("{p}"));
    (dir, studio)
}

#[test]
fn each_role_gets_the_executor_of_its_kind_with_its_model() {
    let (dir, s) = studio();
    for (role, kind, model) in [
        ("writer", "openai", "gpt-4o-mini"),
        ("critic", "anthropic", "claude-opus-4-1"),
        ("runner", "command", ""),
        ("helper", "builtin", "builtin-v1"),
    ] {
        let ex = executor_for(&s, role).unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(ex.name(), kind, "{role}");
        assert_eq!(ex.model(&s.roles[role]), model, "{role}");
    }
    // A command's relative program is taken from the studio's folder.
    let ex = concierto_agent::CommandExecutor::new(&s.agents.executors["tool"], &s.base_dir)
        .expect("command");
    assert!(
        ex.program()
            .starts_with(std::path::absolute(dir.path()).expect("absolute")),
        "{}",
        ex.program().display()
    );
    // The per-role setting wins over the role file.
    let mut s2 = s.clone();
    s2.agents.roles.insert(
        "writer".into(),
        RoleSettings {
            executor: Some("claude".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        executor_for(&s2, "writer").expect("claude").name(),
        "anthropic"
    );
}

#[test]
fn a_model_executor_without_a_model_for_the_role_is_refused_naming_both() {
    let (_dir, s) = studio();
    let e = executor_for(&s, "drifter").err().expect("no model");
    assert!(matches!(e, AgentError::NoModel { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("\"drifter\""), "{text}");
    assert!(text.contains("\"unnamed-model\""), "{text}");
}

#[test]
fn a_missing_key_variable_is_refused_naming_it_and_never_a_key() {
    let (_dir, s) = studio();
    let e = executor_for(&s, "locked").err().expect("no key");
    assert!(matches!(e, AgentError::MissingApiKey { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(UNSET_VAR), "{text}");
    assert!(text.contains("\"no-key\""), "{text}");
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!text.contains(key));
    }
}

#[test]
fn an_executor_the_studio_does_not_define_is_refused() {
    let (_dir, mut s) = studio();
    s.agents.roles.insert(
        "writer".into(),
        RoleSettings {
            executor: Some("ghost".into()),
            ..Default::default()
        },
    );
    let e = executor_for(&s, "writer").err().expect("unknown");
    assert!(matches!(e, AgentError::UnknownExecutor { .. }), "{e:?}");
    assert!(e.to_string().contains("\"ghost\""), "{e}");
}
