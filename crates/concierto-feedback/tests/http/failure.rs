//! Failed-run notices over a real nats-server and a mock of Slack's Web API: a
//! `RunFailed` on `event.run.failed` reaches each escalation contact of the
//! studio once — through a Slack outage (redelivered), a republished event and
//! a restart of the service.

use std::sync::Arc;

use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, StreamLimits, ensure_standard_streams};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_feedback::{FeedbackOptions, GateNotifications, Secret, start};
use concierto_proto::v1;
use concierto_testkit::NatsServer;

use crate::common::{clock, options};
use crate::notify::{Answer, SlackMock, fast};

const TOKEN: &str = "xoxb-failed-run-token";

/// Ana and Bo name escalation contacts: Bo, Cy (no Slack id) and Dee.
fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio: {{ name: failures, timezone: UTC }}
agents:
  paths: ["{agents}"]
reviewers:
  ana: {{ name: "Ana Ruiz", slack: "U0ANA", escalation: [bo, cy] }}
  bo: {{ name: "Bo Chen", slack: "U0BO", escalation: [dee] }}
  cy: {{ name: "Cy Park" }}
  dee: {{ name: "Dee Lopez", slack: "U0DEE" }}
"#,
        agents = agents.display()
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).expect("write the studio");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn failed(run_id: &str) -> v1::RunFailed {
    v1::RunFailed {
        run_id: run_id.into(),
        workflow: "daily-content".into(),
        trigger: "daily".into(),
        step_id: "draft".into(),
        role: "content-creator".into(),
        error: "the model answered 529 five times".into(),
        at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
    }
}

async fn publish(bus: &NatsBus, run_id: &str, msg_id: &str) {
    bus.publish_durable_proto(subjects::RUN_FAILED, &failed(run_id), msg_id)
        .await
        .expect("publish");
}

#[tokio::test]
async fn a_failed_run_is_told_to_each_escalation_contact_once() {
    let nats = NatsServer::start().expect("nats-server");
    let bus = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect"),
    );
    ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
        .await
        .expect("streams");
    // Slack fails Bo's first message three times (every try of it).
    let slack = SlackMock::start(vec![Answer::ServerError; 3]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut notifications =
        GateNotifications::from_studio(&studio(dir.path()), Some(Secret::from(TOKEN)), &slack.base);
    assert_eq!(notifications.failure_contacts, ["bo", "cy", "dee"]);
    notifications.retry = fast();
    let opts = || FeedbackOptions {
        gate_notifications: notifications.clone(),
        ..options()
    };
    let store = Arc::new(SledStore::temporary().expect("store"));
    let serve = || {
        start(
            "127.0.0.1:0".parse().expect("addr"),
            bus.clone() as Arc<dyn Bus>,
            store.clone() as Arc<dyn KvStore>,
            Arc::new(clock()),
            opts(),
        )
    };
    let server = serve().await.expect("start");

    // Bo's message fails (3 tries), Dee's goes out; the notice comes back
    // (redeliver_after) and only Bo is told. Cy has no Slack id.
    publish(&bus, "r-1", "r-1").await;
    let seen = slack.wait_for(5).await;
    let channels: Vec<&str> = seen.iter().map(|s| s.channel.as_str()).collect();
    assert_eq!(channels, ["U0BO", "U0BO", "U0BO", "U0DEE", "U0BO"]);
    let text = &seen[3].text;
    assert!(
        text.starts_with(
            "Run `r-1` of workflow `daily-content`, started by trigger `daily` failed at step `draft` \
             (content-creator) at 2023-11-14T22:13:20Z: the model answered 529 five times\n"
        ),
        "{text}"
    );
    assert!(text.contains("`concierto run retry r-1`"), "{text}");
    assert_eq!(seen[4].text, *text);

    // The same run published again (past the stream's duplicate window): nobody
    // is told twice; the next run is told to both.
    publish(&bus, "r-1", "r-1-republished").await;
    publish(&bus, "r-2", "r-2").await;
    let seen = slack.wait_for(7).await;
    assert_eq!(seen.len(), 7, "{seen:#?}");
    for s in &seen[5..] {
        assert!(s.text.starts_with("Run `r-2`"), "{}", s.text);
    }
    let mut last: Vec<&str> = seen[5..].iter().map(|s| s.channel.as_str()).collect();
    last.sort();
    assert_eq!(last, ["U0BO", "U0DEE"]);
    server.stop().await.expect("stops");

    // After a restart (same store, same durable consumer): still once.
    let server = serve().await.expect("restart");
    publish(&bus, "r-1", "r-1-after-restart").await;
    publish(&bus, "r-3", "r-3").await;
    let seen = slack.wait_for(9).await;
    assert_eq!(seen.len(), 9, "{seen:#?}");
    for s in &seen[7..] {
        assert!(s.text.starts_with("Run `r-3`"), "{}", s.text);
    }
    server.stop().await.expect("stops");
}
