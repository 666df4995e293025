//! A changed studio reaches a running studio without a restart: the
//! orchestrator routes the next feedback by the new `feedback_capture.routing`,
//! and the router (started with `start_live`) reports the new specialist on
//! `feedback.routed.<category>`, answers with its reply and exports the
//! answered feedback to the new `user_feedback` folder. Real nats-server,
//! orchestrator, feedback service and agent workers (a scripted executor: the
//! categoriser names a category only, so the studio's table decides).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concierto_agent::{Executor, Outcome, WorkerOptions, start_worker};
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::roles::RoleDef;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1;
use concierto_router::{RouterOptions, start_live};
use concierto_testkit::{NatsServer, eventually};

const PATIENCE: Duration = Duration::from_secs(30);

/// The categoriser answers "brand" without naming roles; a specialist signs
/// its reply with its role.
struct Scripted;

#[async_trait]
impl Executor for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn execute(&self, role: &RoleDef, _task: &v1::Task) -> Outcome {
        if role.name == "feedback-synthesizer" {
            Outcome::succeeded(
                r#"{"category": "brand", "summary": "the banner colour"}"#,
                "application/json",
            )
        } else {
            Outcome::succeeded(format!("{} answers: thank you", role.name), "text/plain")
        }
    }
}

fn studio(dir: &Path, brand_role: &str, export: &Path) -> Arc<Studio> {
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio: {{ name: live, timezone: UTC }}
agents:
  paths: ["{agents}"]
feedback_loops:
  human_to_agent:
    - feedback_capture:
        channels: ["slack", "email", "web_form"]
        processor: feedback-synthesizer
        action: "route_to_specialists"
        routing:
          brand: ["{brand_role}"]
          other: ["studio-orchestrator"]
content_sources:
  training_data:
    - user_feedback:
        source: "{export}"
        learner: user-researcher
        training_frequency: "continuous"
"#,
        agents = agents.display(),
        export = export.display(),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

/// The router's options for a studio: its `user_feedback` folder.
fn options_for(studio: &Studio) -> RouterOptions {
    RouterOptions {
        tick: Duration::from_millis(100),
        export_dir: studio
            .content_sources
            .iter()
            .find(|s| s.name == "user_feedback")
            .map(|s| PathBuf::from(&s.location)),
        ..RouterOptions::default()
    }
}

async fn reply(bus: &dyn Bus, id: &str) -> Option<v1::FeedbackReply> {
    bus.request_proto::<_, v1::FeedbackReply>(
        subjects::FEEDBACK_REPLY_GET,
        &v1::GetFeedbackRequest {
            feedback_id: id.to_string(),
        },
        Duration::from_secs(2),
    )
    .await
    .ok()
    .filter(|r| r.state == "sent")
}

async fn routed_roles(
    sub: &mut concierto_bus::TypedSubscription<v1::RoutedFeedback>,
    id: &str,
) -> Vec<String> {
    loop {
        let (r, _) = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .expect("routed feedback in time")
            .expect("the subscription is open");
        if r.feedback.as_ref().is_some_and(|f| f.feedback_id == id) {
            return r.roles;
        }
    }
}

#[actix_rt::test]
async fn a_changed_routing_table_routes_the_next_feedback_to_the_new_specialist() {
    let nats = NatsServer::start().expect("nats-server");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (e1, e2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let before = studio(d1.path(), "brand-guardian", e1.path());
    let after = studio(d2.path(), "creative-director", e2.path());
    let clock: SharedClock = Arc::new(SystemClock);

    let orch = concierto_orchestrator::start(
        before.clone(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()) as Arc<dyn KvStore>,
        clock.clone(),
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let feedback = concierto_feedback::start(
        "127.0.0.1:0".parse().unwrap(),
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()) as Arc<dyn KvStore>,
        clock.clone(),
        concierto_feedback::FeedbackOptions::default(),
    )
    .await
    .unwrap();
    let mut workers = Vec::new();
    for role in [
        "feedback-synthesizer",
        "brand-guardian",
        "creative-director",
    ] {
        workers.push(
            start_worker(
                before.roles[role].clone(),
                Arc::new(Scripted),
                bus.clone(),
                WorkerOptions {
                    worker_id: "t".into(),
                    fetch_wait: Duration::from_millis(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
    }
    let router = start_live(
        bus.clone(),
        Arc::new(SledStore::temporary().unwrap()) as Arc<dyn KvStore>,
        clock.clone(),
        options_for(&before),
        options_for,
    )
    .await
    .unwrap();
    assert!(router.takes_studio_changes());
    let mut routed = bus
        .subscribe_proto::<v1::RoutedFeedback>(&subjects::feedback_routed("brand"))
        .await
        .unwrap();
    bus.flush().await.unwrap();

    let submit = |text: &str| v1::Feedback {
        text: text.to_string(),
        channel: v1::FeedbackChannel::Api as i32,
        ..Default::default()
    };

    // As started: brand feedback goes to the brand guardian.
    let first = concierto_feedback::accept(&feedback.state, submit("The banner is off-brand."))
        .await
        .unwrap()
        .feedback_id;
    assert_eq!(routed_roles(&mut routed, &first).await, ["brand-guardian"]);
    let r = eventually(PATIENCE, "the first reply", || reply(bus.as_ref(), &first)).await;
    assert_eq!(r.text, "brand-guardian answers: thank you");
    eventually(PATIENCE, "the first export", || async {
        std::fs::read_dir(e1.path()).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
    })
    .await;

    // The routing table (and the user_feedback folder) change; no restart.
    assert!(orch.studio_changed(&after));
    assert!(router.studio_changed(&after));

    let second = concierto_feedback::accept(&feedback.state, submit("The logo colour drifts."))
        .await
        .unwrap()
        .feedback_id;
    assert_eq!(
        routed_roles(&mut routed, &second).await,
        ["creative-director"]
    );
    let r = eventually(PATIENCE, "the second reply", || {
        reply(bus.as_ref(), &second)
    })
    .await;
    assert_eq!(r.text, "creative-director answers: thank you");
    assert_eq!(r.roles, ["creative-director"]);
    let exported = eventually(PATIENCE, "the second export", || async {
        std::fs::read_dir(e2.path()).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
    })
    .await;
    let text = std::fs::read_to_string(exported.path()).unwrap();
    assert!(text.contains("creative-director answers"), "{text}");
    let in_old: Vec<_> = std::fs::read_dir(e1.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .collect();
    assert_eq!(
        in_old.len(),
        1,
        "the old folder keeps only the first answer"
    );

    router.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    feedback.stop().await.unwrap();
    orch.stop().await.unwrap();
}
