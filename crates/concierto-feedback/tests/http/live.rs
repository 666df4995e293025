//! A changed studio reaches the running feedback service
//! (`ServiceHandle::studio_changed`): a channel taken out of
//! `feedback_capture.channels` answers 404 naming the key at the next request,
//! and gate notifications go to a reviewer's new Slack id; over a real
//! nats-server, real sockets and a mock of Slack's Web API.

use std::sync::Arc;

use concierto_bus::{BusExt, NatsBus, NatsOptions, StreamLimits, ensure_standard_streams};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects::gate_event;
use concierto_feedback::channels::channels_of;
use concierto_feedback::{FeedbackOptions, GateNotifications, Secret, start};
use concierto_testkit::NatsServer;

use crate::common::{EMAIL_TOKEN, clock, options};
use crate::notify::{SlackMock, fast, gate};

const TOKEN: &str = "xoxb-live-studio-token";

fn studio(dir: &std::path::Path, channels: &str, ana_slack: &str) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio: {{ name: live, timezone: UTC }}
agents:
  paths: ["{agents}"]
reviewers:
  ana: {{ name: "Ana Ruiz", slack: "{ana_slack}" }}
feedback_loops:
  human_to_agent:
    - feedback_capture:
        channels: [{channels}]
        processor: feedback-synthesizer
        action: "route_to_specialists"
"#,
        agents = agents.display()
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).expect("write the studio");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

#[tokio::test]
async fn a_channel_taken_out_of_the_studio_answers_404_and_notifications_follow_the_reviewers() {
    let nats = NatsServer::start().expect("nats-server");
    let bus = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect"),
    );
    ensure_standard_streams(bus.as_ref(), &StreamLimits::default())
        .await
        .expect("streams");
    let slack = SlackMock::start(Vec::new()).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let before = studio(d1.path(), r#""slack", "email", "web_form""#, "U0ANA");
    let after = studio(d2.path(), r#""slack", "email""#, "U0ANA2");

    let mut notifications =
        GateNotifications::from_studio(&before, Some(Secret::from(TOKEN)), &slack.base);
    notifications.retry = fast();
    let opts = FeedbackOptions {
        channels: channels_of(&before),
        gate_notifications: notifications,
        ..options()
    };
    let store = Arc::new(SledStore::temporary().expect("store"));
    let server = start(
        "127.0.0.1:0".parse().expect("addr"),
        bus.clone(),
        store as Arc<dyn KvStore>,
        Arc::new(clock()),
        opts,
    )
    .await
    .expect("start")
    .taking_studio_changes(before);
    assert!(server.handle.takes_studio_changes());
    let base = format!("http://{}", server.local_addr);
    let http = reqwest::Client::new();
    let form = || http.get(format!("{base}/feedback")).send();
    let email = || {
        http.post(format!("{base}/email/inbound"))
            .header("Authorization", format!("Bearer {EMAIL_TOKEN}"))
            .header("Content-Type", "message/rfc822")
            .body("From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
            .send()
    };

    // As started: the web form is on, and Ana is told on her first Slack id.
    assert_eq!(form().await.expect("send").status(), 200);
    bus.publish_proto(&gate_event("opened"), &gate("run-1/a/g/1", &["ana"]))
        .await
        .expect("publish");
    let seen = slack.wait_for(1).await;
    assert_eq!(seen[0].channel, "U0ANA");

    // The studio drops the web form and Ana has a new Slack id; no restart.
    assert!(server.handle.studio_changed(&after));

    let refused = form().await.expect("send");
    assert_eq!(refused.status(), 404);
    let text = refused.text().await.expect("body");
    assert!(
        text.contains("the web_form feedback channel is off")
            && text.contains("feedback_capture.channels"),
        "{text}"
    );
    assert_eq!(email().await.expect("send").status(), 202);
    assert_eq!(
        server.state.channels(),
        Some(vec!["slack".into(), "email".into()])
    );

    bus.publish_proto(&gate_event("opened"), &gate("run-2/a/g/1", &["ana"]))
        .await
        .expect("publish");
    let seen = slack.wait_for(2).await;
    assert_eq!(seen[1].channel, "U0ANA2");
    assert!(seen[1].text.contains("run-2/a/g/1"), "{}", seen[1].text);

    server.stop().await.expect("stops");
}
