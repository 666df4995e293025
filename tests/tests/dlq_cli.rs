//! `concierto dlq ls` and `dlq replay` against the services as separate
//! processes: a run start the bus gave up on is listed with its reason, a
//! reviewer may not replay it, an admin does, and the run then waits at its
//! gate like any other.

mod admin_common;

use std::time::Duration;

use admin_common::{BRAND, OPS, WORKFLOW, cli, poll, show, start_studio, stdout, wait_ready};
use concierto_bus::dead_letter_for;
use concierto_core::subjects;
use concierto_proto::v1;
use serde_json::Value;

#[test]
fn a_dead_lettered_run_start_is_listed_and_replayed_through_the_cli() {
    let (sb, addr) = start_studio();
    wait_ready(&sb, &addr);

    // A run start dead-lettered as a consumer gives one up (max_deliver).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bus = sb.client().await;
        let start = v1::StartRun {
            run_id: "campaign@dead".into(),
            workflow: WORKFLOW.into(),
            trigger: "manual".into(),
            requested_by: "test".into(),
            ..Default::default()
        };
        let mut headers = concierto_bus::Headers::new();
        headers.insert(concierto_bus::MSG_ID, "campaign@dead");
        let original = concierto_bus::Message {
            subject: subjects::RUN_START.into(),
            reply: None,
            headers,
            payload: prost::Message::encode_to_vec(&start).into(),
        };
        let letter = dead_letter_for(
            &original,
            "max_deliver exhausted: delivered 10 times".into(),
            11,
            "orchestrator",
            "concierto.v1.StartRun",
        );
        bus.dead_letters().dead_letter(letter).await.unwrap();
    });

    let out = poll(
        &sb,
        Duration::from_secs(20),
        "the dead letter to be listed",
        || {
            let out = cli(
                &addr,
                Some(BRAND),
                &["dlq", "ls", "--json", "--subject", "run."],
            );
            let v: Value = serde_json::from_str(&stdout(&out)).ok()?;
            (v.as_array().is_some_and(|a| a.len() == 1)).then_some(v)
        },
    );
    let seq = out[0]["sequence"].as_u64().unwrap();
    assert_eq!(out[0]["subject"], "run.start");
    assert!(out[0]["reason"].as_str().unwrap().contains("max_deliver"));
    let table = cli(&addr, Some(BRAND), &["dlq", "ls"]);
    assert!(stdout(&table).contains("run.start"), "{}", show(&table));

    let denied = cli(&addr, Some(BRAND), &["dlq", "replay", &seq.to_string()]);
    assert!(!denied.status.success(), "{}", show(&denied));
    let ok = cli(&addr, Some(OPS), &["dlq", "replay", &seq.to_string()]);
    assert!(ok.status.success(), "{}\n{}", show(&ok), sb.logs());
    assert!(
        stdout(&ok).contains("published again on run.start"),
        "{}",
        show(&ok)
    );

    poll(
        &sb,
        Duration::from_secs(60),
        "the replayed run to wait at its gate",
        || {
            let out = cli(
                &addr,
                Some(OPS),
                &["run", "show", "campaign@dead", "--json"],
            );
            let run: Value = serde_json::from_str(&stdout(&out)).ok()?;
            (run["state"] == "WAITING_GATE").then_some(())
        },
    );
    let empty = cli(&addr, Some(OPS), &["dlq", "ls"]);
    assert!(
        stdout(&empty).contains("no dead letters"),
        "{}",
        show(&empty)
    );
}
