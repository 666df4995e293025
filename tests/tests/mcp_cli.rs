//! `concierto mcp`: Concierto's own tools served over MCP stdio by the real
//! binary, to a real `rmcp` client, answered by a real orchestrator and tracker
//! over a real nats-server.

use std::time::Duration;

use concierto_e2e::{Sandbox, concierto_bin, eventually, example_studio, list_runs};
use concierto_proto::v1;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

fn call(name: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(m) = args else {
        panic!("arguments are an object")
    };
    CallToolRequestParams::new(name.to_string()).with_arguments(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_lists_and_calls_conciertos_tools_through_the_binary() {
    let mut sb = Sandbox::new(&[]);
    sb.spawn("services", &["serve", "orchestrator", "tracker"]);
    let bus = sb.client().await;
    eventually(Duration::from_secs(30), "the orchestrator answers", || {
        let bus = bus.clone();
        async move { list_runs(&bus).await }
    })
    .await;
    // A run for runs_recent to find (no worker takes its task; it stays open).
    let start = v1::StartRun {
        run_id: "mcp-e2e-1".into(),
        workflow: "market-intelligence".into(),
        trigger: "test".into(),
        priority: v1::Priority::Normal as i32,
        ..Default::default()
    };
    bus.publish_durable(
        concierto_core::subjects::RUN_START,
        concierto_bus::encode(&start).msg_id(start.run_id.clone()),
    )
    .await
    .expect("run started");
    eventually(Duration::from_secs(20), "the run is known", || {
        let bus = bus.clone();
        async move { concierto_e2e::get_run(&bus, "mcp-e2e-1").await.map(|_| ()) }
    })
    .await;

    let mut cmd = tokio::process::Command::new(concierto_bin());
    cmd.args([
        "mcp",
        "--nats",
        &sb.nats.url(),
        "--file",
        &example_studio().display().to_string(),
    ]);
    let (proc, _) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("concierto mcp starts");
    let client = tokio::time::timeout(Duration::from_secs(30), ().serve(proc))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("concierto")
    );
    let tools = client.peer().list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "brand_check",
            "library_search",
            "metrics_get",
            "runs_recent"
        ]
    );

    // Over the bus to the orchestrator.
    let r = client
        .peer()
        .call_tool(call(
            "runs_recent",
            json!({"workflow": "market-intelligence"}),
        ))
        .await
        .expect("runs_recent");
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert!(text(&r).contains("mcp-e2e-1"), "{}", text(&r));

    // Over the bus to the tracker: the example studio's metrics.
    let r = client
        .peer()
        .call_tool(call("metrics_get", json!({"names": ["daily_output"]})))
        .await
        .expect("metrics_get");
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert!(text(&r).contains("daily_output"), "{}", text(&r));

    // The brand rules of the studio.
    let r = client
        .peer()
        .call_tool(call(
            "brand_check",
            json!({"text": "This REVOLUTIONARY product is guaranteed to cure everything!!!"}),
        ))
        .await
        .expect("brand_check");
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert!(text(&r).contains("score"), "{}", text(&r));

    // No ingest service runs: the refusal is what the client sees, not a hang.
    let r = client
        .peer()
        .call_tool(call("library_search", json!({"query": "jars"})))
        .await
        .expect("library_search answers");
    assert_eq!(r.is_error, Some(true), "{}", text(&r));

    client.cancel().await.expect("clean shutdown");
}
