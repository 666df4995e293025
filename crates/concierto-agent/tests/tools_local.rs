//! The built-in tools that need no service: `Read`, `Grep`, `Glob` on real
//! folders (path escapes refused with the text the model sees), `Write` and
//! `Edit` on the step's deliverable, `brand_check`, the builder, and the
//! `validate` warning for unknown tool names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use concierto_agent::tools::files::{MAX_GLOB_RESULTS, MAX_MATCHES, MAX_READ_BYTES, Roots};
use concierto_agent::tools::{KNOWN_TOOLS, ToolCx, ToolError, builtin_toolbox, concierto_toolbox};
use concierto_bus::{Bus, EmbeddedBus};
use concierto_core::config::{Severity, Studio, check_with_env, load_with_env};
use concierto_core::roles::RoleDef;
use concierto_proto::v1::Task;
use serde_json::{Value, json};

struct Fixture {
    dir: tempfile::TempDir,
    studio: Studio,
}

impl Fixture {
    fn base(&self) -> &Path {
        self.dir.path()
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const ROLE_FILE: &str = "---\nname: ui-designer\ndescription: Designs.\ntools: Read, Grep, Glob, Write, Edit, brand_check, Bash, mcp__figma__export\n---\nYou design.\n";

/// A studio whose `ui-designer` indexes `assets/` (a folder source), with a
/// brand folder, a secret file beside them, and a link pointing out.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    write(&base.join("agents/ui-designer.md"), ROLE_FILE);
    write(
        &base.join("assets/patterns/buttons.md"),
        "# Buttons\nPrimary buttons use the teal accent.\nSecondary buttons are outlined.\n",
    );
    write(
        &base.join("assets/patterns/cards.md"),
        "# Cards\nCards use a teal border.\n",
    );
    write(&base.join("assets/logo.png"), "\u{0}PNG binary");
    write(
        &base.join("brand/rules.yaml"),
        "vocabulary: [studio, craft]\nbanned: [unlock]\nrisky_claims: [guaranteed]\n",
    );
    write(
        &base.join("brand/guide.md"),
        "Our voice is calm and clear.\n",
    );
    write(&base.join("secret/passwords.txt"), "hunter2\n");
    std::os::unix::fs::symlink(base.join("secret"), base.join("assets/escape")).unwrap();
    std::os::unix::fs::symlink(
        base.join("secret/passwords.txt"),
        base.join("assets/pw.txt"),
    )
    .unwrap();
    let yaml = format!(
        "studio: {{ name: Test }}\nagents:\n  paths: [agents]\n  tools: {{ max_calls: 7, max_answer_bytes: 4096 }}\ncontent_sources:\n  curated_databases:\n    - patterns:\n        type: component_library\n        path: \"{}\"\n        indexer: ui-designer\n        refresh: daily\n",
        base.join("assets").display()
    );
    write(&base.join("concierto.yaml"), &yaml);
    let studio = load_with_env(&base.join("concierto.yaml"), Vec::<(String, String)>::new())
        .expect("the test studio loads");
    Fixture { dir, studio }
}

fn role(f: &Fixture) -> RoleDef {
    f.studio.roles["ui-designer"].clone()
}

fn bus() -> Arc<dyn Bus> {
    Arc::new(EmbeddedBus::default())
}

fn cx() -> ToolCx {
    ToolCx::new(&Task {
        role: "ui-designer".into(),
        ..Default::default()
    })
}

async fn call(f: &Fixture, name: &str, args: Value) -> Result<String, ToolError> {
    let tb = builtin_toolbox(&f.studio, &role(f), bus());
    let tool = tb
        .get(name)
        .unwrap_or_else(|| panic!("the role has {name}"));
    tool.call(args, &cx()).await
}

fn canon(p: PathBuf) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

#[tokio::test]
async fn the_builder_gives_exactly_the_named_built_in_tools_with_the_limits() {
    let f = fixture();
    let tb = builtin_toolbox(&f.studio, &role(&f), bus());
    let names: Vec<String> = tb.tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(
        names,
        ["Read", "Grep", "Glob", "Write", "Edit", "brand_check"]
    );
    assert_eq!((tb.max_calls, tb.max_answer_bytes), (7, 4096));
    for t in &tb.tools {
        let s = t.spec();
        assert_eq!(s.input_schema["type"], "object", "{}", s.name);
        assert!(!s.description.is_empty());
    }

    let mut none = role(&f);
    none.tools.clear();
    assert!(builtin_toolbox(&f.studio, &none, bus()).is_empty());

    let c = concierto_toolbox(&f.studio, bus());
    let names: Vec<String> = c.tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(
        names,
        [
            "library_search",
            "metrics_get",
            "runs_recent",
            "brand_check"
        ]
    );
}

#[tokio::test]
async fn read_reads_inside_the_roots_with_numbered_lines_and_limits() {
    let f = fixture();
    let out = call(&f, "Read", json!({"file_path": "patterns/buttons.md"}))
        .await
        .unwrap();
    assert!(out.contains("     1\t# Buttons"), "{out}");
    assert!(out.contains("     2\tPrimary buttons use the teal accent."));

    let abs = f.base().join("brand/guide.md");
    let out = call(&f, "Read", json!({"file_path": abs.display().to_string()}))
        .await
        .unwrap();
    assert!(out.contains("Our voice is calm and clear."), "{out}");

    let out = call(
        &f,
        "Read",
        json!({"file_path": "patterns/buttons.md", "offset": 2, "limit": 1}),
    )
    .await
    .unwrap();
    assert!(
        out.contains("     2\tPrimary") && !out.contains("# Buttons") && !out.contains("Secondary")
    );
    assert!(out.contains("[lines 2 to 2 of 3"), "{out}");

    let big = "x".repeat(100) + "\n";
    write(&f.base().join("assets/big.txt"), &big.repeat(12_000));
    let out = call(&f, "Read", json!({"file_path": "big.txt", "limit": 3}))
        .await
        .unwrap();
    assert!(
        out.contains(&format!("only its first {MAX_READ_BYTES} bytes were read")),
        "{out}"
    );

    let e = call(&f, "Read", json!({"file_path": "logo.png"}))
        .await
        .unwrap_err();
    assert!(e.0.contains("binary file"), "{e}");
    let e = call(&f, "Read", json!({"file_path": "patterns/nope.md"}))
        .await
        .unwrap_err();
    assert!(
        e.0.starts_with("no such file or folder: patterns/nope.md"),
        "{e}"
    );
    let e = call(&f, "Read", json!({"path": "x"})).await.unwrap_err();
    assert_eq!(e.0, "`file_path` is required");
    let e = call(&f, "Read", json!("not an object")).await.unwrap_err();
    assert!(e.0.starts_with("arguments must be a JSON object"), "{e}");
}

#[tokio::test]
async fn path_escapes_are_refused_with_the_text_the_model_sees() {
    let f = fixture();
    let roots = format!(
        "{}, {}",
        canon(f.base().join("assets")),
        canon(f.base().join("brand"))
    );
    for path in [
        "../secret/passwords.txt".to_string(),
        "patterns/../../secret/passwords.txt".to_string(),
        "/etc/passwd".to_string(),
        f.base().join("secret/passwords.txt").display().to_string(),
        "pw.txt".to_string(),
        "escape/passwords.txt".to_string(),
    ] {
        let e = call(&f, "Read", json!({"file_path": path}))
            .await
            .unwrap_err();
        assert_eq!(
            e.0,
            format!("refused: {path} is outside the folders this role may read: {roots}"),
        );
    }
    let e = call(
        &f,
        "Grep",
        json!({"pattern": "hunter", "path": "../secret"}),
    )
    .await
    .unwrap_err();
    assert!(e.0.starts_with("refused: ../secret is outside"), "{e}");
    let e = call(&f, "Glob", json!({"pattern": "*", "path": "/etc"}))
        .await
        .unwrap_err();
    assert!(e.0.starts_with("refused: /etc is outside"), "{e}");
    // Walks do not follow the link out either.
    let out = call(&f, "Grep", json!({"pattern": "hunter2"}))
        .await
        .unwrap();
    assert!(out.starts_with("no match in"), "{out}");
    let out = call(&f, "Glob", json!({"pattern": "**/*.txt"}))
        .await
        .unwrap();
    assert!(!out.contains("passwords"), "{out}");
}

#[tokio::test]
async fn grep_and_glob_search_inside_the_roots_with_limits() {
    let f = fixture();
    let out = call(&f, "Grep", json!({"pattern": "(?i)teal"}))
        .await
        .unwrap();
    let buttons = canon(f.base().join("assets/patterns/buttons.md"));
    let cards = canon(f.base().join("assets/patterns/cards.md"));
    assert!(
        out.contains(&format!(
            "{buttons}:2: Primary buttons use the teal accent."
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{cards}:2: Cards use a teal border.")),
        "{out}"
    );
    let out = call(&f, "Grep", json!({"pattern": "teal", "glob": "cards.*"}))
        .await
        .unwrap();
    assert!(
        out.contains("cards.md") && !out.contains("buttons.md"),
        "{out}"
    );
    let e = call(&f, "Grep", json!({"pattern": "(unclosed"}))
        .await
        .unwrap_err();
    assert!(e.0.starts_with("bad regular expression"), "{e}");
    let e = call(&f, "Grep", json!({"pattern": "a".repeat(2000)}))
        .await
        .unwrap_err();
    assert!(e.0.contains("at most 1000 are accepted"), "{e}");

    let out = call(&f, "Glob", json!({"pattern": "**/*.md"}))
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            canon(f.base().join("assets/patterns/buttons.md")),
            canon(f.base().join("assets/patterns/cards.md")),
            canon(f.base().join("brand/guide.md")),
        ]
    );
    let out = call(&f, "Glob", json!({"pattern": "*.md", "path": "patterns"}))
        .await
        .unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");

    for i in 0..(MAX_GLOB_RESULTS + 10) {
        write(&f.base().join(format!("assets/many/f{i}.log")), "teal\n");
    }
    let out = call(&f, "Glob", json!({"pattern": "many/*.log"}))
        .await
        .unwrap();
    assert_eq!(out.lines().count(), MAX_GLOB_RESULTS + 1, "the cut is said");
    assert!(out.contains(&format!(
        "[{} files match; the first {MAX_GLOB_RESULTS} shown]",
        MAX_GLOB_RESULTS + 10
    )));
    let out = call(&f, "Grep", json!({"pattern": "teal", "path": "many"}))
        .await
        .unwrap();
    assert_eq!(out.lines().count(), MAX_MATCHES + 1);
    assert!(
        out.ends_with(&format!("[showing the first {MAX_MATCHES} matches]\n")),
        "{out}"
    );
}

#[tokio::test]
async fn write_then_edit_changes_the_deliverable_never_a_file() {
    let f = fixture();
    let tb = builtin_toolbox(&f.studio, &role(&f), bus());
    let cx = cx();
    let (w, e) = (tb.get("Write").unwrap(), tb.get("Edit").unwrap());
    let err = e
        .call(json!({"old_string": "a", "new_string": "b"}), &cx)
        .await
        .unwrap_err();
    assert_eq!(
        err.0,
        "there is no deliverable yet: write it with Write first"
    );
    let out = w
        .call(
            json!({"content": "# Launch\nOur teal cards ship today.\nteal, teal.\n", "file_path": "/etc/x"}),
            &cx,
        )
        .await
        .unwrap();
    assert_eq!(out, "wrote the deliverable (48 bytes, 3 lines)");
    assert!(!Path::new("/etc/x").exists());
    e.call(
        json!({"old_string": "ship today", "new_string": "ship on Monday"}),
        &cx,
    )
    .await
    .unwrap();
    let err = e
        .call(json!({"old_string": "teal", "new_string": "green"}), &cx)
        .await
        .unwrap_err();
    assert!(err.0.starts_with("old_string occurs 3 times"), "{err}");
    let out = e
        .call(
            json!({"old_string": "teal", "new_string": "green", "replace_all": true}),
            &cx,
        )
        .await
        .unwrap();
    assert!(out.starts_with("replaced 3 occurrences"), "{out}");
    let err = e
        .call(json!({"old_string": "purple", "new_string": "x"}), &cx)
        .await
        .unwrap_err();
    assert!(
        err.0
            .starts_with("old_string was not found in the deliverable"),
        "{err}"
    );
    assert_eq!(
        cx.written().as_deref(),
        Some("# Launch\nOur green cards ship on Monday.\ngreen, green.\n")
    );
    let err = w
        .call(json!({"content": "x".repeat(300 * 1024)}), &cx)
        .await
        .unwrap_err();
    assert!(err.0.contains("at most 262144 are kept"), "{err}");
}

#[tokio::test]
async fn brand_check_scores_against_the_studio_rules() {
    let f = fixture();
    let out = call(
        &f,
        "brand_check",
        json!({"text": "Unlock guaranteed growth with our studio. It is a guaranteed win."}),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pass"], false);
    assert!(v["score"].as_f64().unwrap() < 0.85);
    let issues = v["issues"].as_array().unwrap();
    assert!(
        issues
            .iter()
            .any(|i| i.as_str().unwrap().contains("guaranteed")),
        "{out}"
    );
    assert!(
        issues
            .iter()
            .any(|i| i.as_str().unwrap().contains("unlock")),
        "{out}"
    );

    let out = call(
        &f,
        "brand_check",
        json!({"text": "Our studio shows its craft. Calm work, made with care."}),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["pass"].clone(), v["score"].clone()),
        (json!(true), json!(1.0)),
        "{out}"
    );
}

#[test]
fn unknown_tool_names_are_a_validate_warning_listing_the_known_ones() {
    let f = fixture();
    let checked = check_with_env(
        &f.base().join("concierto.yaml"),
        Vec::<(String, String)>::new(),
    );
    assert!(
        checked.studio.is_some(),
        "a warning does not stop the studio loading"
    );
    let warnings: Vec<_> = checked
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning && p.key == "tools")
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[1]
            .message
            .starts_with("tool \"mcp__figma__export\" names the MCP server \"figma\", which agents.mcp_servers does not declare (none declared)"),
        "{}",
        warnings[1].message
    );
    let w = warnings[0];
    assert!(
        w.file.ends_with("agents/ui-designer.md") && w.line == Some(2),
        "{w:?}"
    );
    assert!(w.message.starts_with("unknown tool \"Bash\"; the role will not get it. Known tools: Read, Grep, Glob, WebFetch, WebSearch, Write, Edit, library_search, metrics_get, runs_recent, brand_check"), "{}", w.message);
    assert_eq!(KNOWN_TOOLS.len(), 11);
}

#[test]
fn roots_leave_out_missing_folders() {
    let f = fixture();
    let r = Roots::for_role(&f.studio, "someone-else");
    assert_eq!(
        r.dirs(),
        [std::fs::canonicalize(f.base().join("brand")).unwrap()]
    );
}
