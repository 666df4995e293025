//! MCP both ways: `mcp_tools` against a real MCP server (the Python `mcp`
//! package from PyPI, stdio), and an `rmcp` client against `serve` (the
//! server side of `concierto mcp`) over an in-process duplex stream.

mod tool_kit;

use std::path::PathBuf;
use std::sync::Arc;

use concierto_agent::AgentError;
use concierto_agent::tools::mcp::mcp_tools;
use concierto_agent::tools::mcp_server::serve;
use concierto_agent::tools::{Tool, ToolCx};
use concierto_core::config::{Studio, load_with_env};
use concierto_proto::v1::Task;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tool_kit::*;

/// The Python with the `mcp` package: `$CONCIERTO_PYTHON` (CI sets it; it
/// must work then), else the CI virtualenv, else `python3`. `None` (the test
/// says it is skipped) only when none of these has `mcp`.
fn python() -> Option<PathBuf> {
    let has_mcp = |p: &PathBuf| {
        std::process::Command::new(p)
            .args(["-c", "import mcp.server.mcpserver"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = std::env::var_os("CONCIERTO_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            has_mcp(&p),
            "CONCIERTO_PYTHON={} has no `mcp` package: pip install -r tests/python/requirements.txt",
            p.display()
        );
        return Some(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    [
        home.join(".cache/concierto-venv/bin/python3"),
        PathBuf::from("python3"),
    ]
    .into_iter()
    .find(has_mcp)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/mcp_test_server.py")
}

/// A studio declaring the Python server as `py`, its `SHOUT_PREFIX` taken
/// from the environment.
fn studio(python: &std::path::Path) -> (tempfile::TempDir, Studio) {
    // SAFETY: nextest runs each test in its own process; set before any
    // thread reads it.
    unsafe { std::env::set_var("CONCIERTO_TEST_SHOUT", "loud: ") };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("agents")).expect("mkdir");
    let yaml = format!(
        "agents:
  mcp_servers:
    py:
      command: [{python:?}, {script:?}]
      env: {{ SHOUT_PREFIX: \"${{CONCIERTO_TEST_SHOUT}}\" }}
      timeout: 20 seconds
",
        python = python.display().to_string(),
        script = script().display().to_string(),
    );
    let file = dir.path().join("concierto.yaml");
    std::fs::write(&file, yaml).expect("studio file");
    let studio = load_with_env(&file, Vec::new()).unwrap_or_else(|p| panic!("{p}"));
    (dir, studio)
}

macro_rules! python_or_skip {
    () => {
        match python() {
            Some(p) => p,
            None => {
                eprintln!(
                    "SKIPPED: no Python with the `mcp` package (set CONCIERTO_PYTHON or \
                     pip install -r tests/python/requirements.txt)"
                );
                return;
            }
        }
    };
}

fn cx() -> ToolCx {
    ToolCx::new(&Task::default())
}

#[tokio::test]
async fn a_python_mcp_server_s_tools_are_listed_and_called() {
    let py = python_or_skip!();
    let (_dir, s) = studio(&py);
    let wanted: Vec<String> = ["Read", "mcp__py__add", "mcp__py__shout", "mcp__py__fail"]
        .map(String::from)
        .to_vec();
    let tools = mcp_tools(&s, &wanted).await.expect("tools");
    let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(names, ["mcp__py__add", "mcp__py__shout", "mcp__py__fail"]);
    let add = tools[0].spec();
    assert_eq!(add.description, "Adds two integers.");
    assert_eq!(add.input_schema["type"], "object");
    assert_eq!(add.input_schema["properties"]["a"]["type"], "integer");
    assert_eq!(add.input_schema["required"], json!(["a", "b"]));

    assert_eq!(
        tools[0].call(json!({"a": 2, "b": 40}), &cx()).await,
        Ok("42".to_string())
    );
    assert_eq!(
        tools[1].call(json!({"text": "refill"}), &cx()).await,
        Ok("loud: REFILL".to_string()),
        "the env reference reached the server"
    );
    let err = tools[2]
        .call(json!({"why": "the shelf is empty"}), &cx())
        .await
        .expect_err("fail fails");
    assert!(err.0.contains("the shelf is empty"), "{err}");
    let err = tools[0]
        .call(json!({"a": "two", "b": 1}), &cx())
        .await
        .expect_err("bad arguments");
    assert!(!err.0.is_empty());
}

#[tokio::test]
async fn a_server_name_alone_gives_all_its_tools_and_unknown_names_are_refused() {
    let py = python_or_skip!();
    let (_dir, s) = studio(&py);
    let tools = mcp_tools(&s, &["mcp__py".to_string()])
        .await
        .expect("tools");
    let mut names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "mcp__py__add",
            "mcp__py__crash",
            "mcp__py__fail",
            "mcp__py__pid",
            "mcp__py__shout"
        ]
    );

    match mcp_tools(&s, &["mcp__nope__x".to_string()]).await {
        Err(AgentError::Mcp { server, why }) => {
            assert_eq!(server, "nope");
            assert!(why.contains("does not declare it (declared: py)"), "{why}");
        }
        other => panic!("expected an MCP error, got {:?}", other.map(|t| t.len())),
    }
    match mcp_tools(&s, &["mcp__py__divide".to_string()]).await {
        Err(AgentError::Mcp { why, .. }) => {
            assert!(why.contains("no tool \"divide\""), "{why}");
            assert!(why.contains("add"), "{why}");
        }
        other => panic!("expected an MCP error, got {:?}", other.map(|t| t.len())),
    }
}

#[tokio::test]
async fn a_dead_server_is_restarted_once_then_its_tools_answer_an_error() {
    let py = python_or_skip!();
    let (_dir, s) = studio(&py);
    let tools = mcp_tools(&s, &["mcp__py__add".into(), "mcp__py__crash".into()])
        .await
        .expect("tools");
    let (add, crash) = (&tools[0], &tools[1]);
    assert_eq!(
        add.call(json!({"a": 1, "b": 1}), &cx()).await,
        Ok("2".into())
    );

    let err = crash.call(json!({}), &cx()).await.expect_err("it died");
    assert!(err.0.starts_with("MCP server py"), "{err}");
    assert_eq!(
        add.call(json!({"a": 2, "b": 2}), &cx()).await,
        Ok("4".into()),
        "started again"
    );

    crash
        .call(json!({}), &cx())
        .await
        .expect_err("it died again");
    let err = add
        .call(json!({"a": 3, "b": 3}), &cx())
        .await
        .expect_err("no more restarts");
    assert_eq!(
        err.0,
        "MCP server py stopped and was restarted once already; its tools are unavailable"
    );
}

#[tokio::test]
async fn the_child_process_is_killed_when_the_last_tool_is_dropped() {
    let py = python_or_skip!();
    let (_dir, s) = studio(&py);
    let tools = mcp_tools(&s, &["mcp__py__pid".into(), "mcp__py__add".into()])
        .await
        .expect("tools");
    let pid = tools[0].call(json!({}), &cx()).await.expect("pid");
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists(), "{pid} runs");
    let add = tools[1].clone();
    drop(tools);
    assert_eq!(
        add.call(json!({"a": 1, "b": 2}), &cx()).await,
        Ok("3".into())
    );
    drop(add);
    let gone = async {
        while std::fs::read_to_string(proc_dir.join("stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), gone)
        .await
        .expect("the server process ends once no tool holds it");
}

#[tokio::test]
async fn a_streamable_http_server_s_tools_are_called() {
    let py = python_or_skip!();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let _server = tokio::process::Command::new(&py)
        .arg(script())
        .args(["--http", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python");
    let up = async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), up)
        .await
        .expect("the HTTP MCP server listens");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("agents")).expect("mkdir");
    let file = dir.path().join("concierto.yaml");
    std::fs::write(
        &file,
        format!("agents:\n  mcp_servers:\n    web: {{ url: \"http://127.0.0.1:{port}/mcp\" }}\n"),
    )
    .expect("studio file");
    let s = load_with_env(&file, Vec::new()).unwrap_or_else(|p| panic!("{p}"));
    let tools = mcp_tools(&s, &["mcp__web__add".into()])
        .await
        .expect("tools");
    assert_eq!(tools[0].spec().name, "mcp__web__add");
    assert_eq!(
        tools[0].call(json!({"a": 20, "b": 22}), &cx()).await,
        Ok("42".into())
    );
}

#[tokio::test]
async fn an_rmcp_client_lists_and_calls_the_served_tools() {
    let search = Recorder::ok("library_search", "3 items");
    let read = Recorder::failing("Read", "refused: ../x escapes the content folders");
    let tools: Vec<Arc<dyn Tool>> = vec![Arc::new(search.clone()), Arc::new(read)];
    let mut toolbox = toolbox(tools, 3);
    toolbox.max_answer_bytes = 300;
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve(toolbox, server_end));

    let client = ().serve(client_end).await.expect("handshake");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("concierto")
    );
    let listed = client.peer().list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["library_search", "Read"]);
    assert_eq!(
        listed[0].description.as_deref(),
        Some("The test tool library_search.")
    );
    assert_eq!(
        Value::Object((*listed[0].input_schema).clone())["properties"]["query"]["type"],
        "string"
    );

    let text = |r: &rmcp::model::CallToolResult| {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("")
    };
    let call = |name: &str, args: Value| {
        let Value::Object(m) = args else {
            panic!("object")
        };
        CallToolRequestParams::new(name.to_string()).with_arguments(m)
    };
    let r = client
        .peer()
        .call_tool(call("library_search", json!({"query": "jars"})))
        .await
        .expect("call");
    assert_ne!(r.is_error, Some(true));
    assert_eq!(text(&r), "3 items");
    assert_eq!(search.seen(), [json!({"query": "jars"})]);

    let r = client
        .peer()
        .call_tool(call("Read", json!({"path": "../x"})))
        .await
        .expect("call");
    assert_eq!(r.is_error, Some(true));
    assert_eq!(text(&r), "refused: ../x escapes the content folders");

    let r = client
        .peer()
        .call_tool(call("Bash", json!({})))
        .await
        .expect("call");
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "unknown tool \"Bash\"; the tools are: library_search, Read"
    );

    // The third counted call is the last allowed; the fourth is refused.
    client
        .peer()
        .call_tool(call("library_search", json!({})))
        .await
        .expect("call");
    let r = client
        .peer()
        .call_tool(call("library_search", json!({})))
        .await
        .expect("call");
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "not run: the limit of 3 tool calls per session is reached"
    );

    client.cancel().await.expect("close");
    let served = tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("the server ends when the client leaves")
        .expect("join");
    assert!(served.is_ok(), "{served:?}");
}
