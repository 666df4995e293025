//! Feedback answered on the channel it came from, across processes on a real
//! nats-server: the orchestrator, the feedback service and the admin API in
//! one `concierto serve` process, the feedback router (`serve
//! feedback-router`) in another, builtin agents in their own processes; a
//! local server speaking Slack's Web API, and a real SMTP server (Python's
//! `aiosmtpd`, tests/python/smtp_sink.py) that is down at first.
//!
//! Four pieces of feedback (a signed Slack event, an inbound email, the web
//! form, `SubmitFeedback` over gRPC) are categorised while the specialists are
//! not running; the router is killed once it has seen them categorised, the
//! specialists answer while it is down, and the restarted router sends each
//! reply exactly once: a Slack thread reply, an email reply (after SMTP comes
//! up: retried from its outbox), the form's status page, `GetFeedback`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use concierto_e2e::{Sandbox, eventually, get_run};
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use serde_json::{Value, json};

const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT: &str = "xoxb-router-test-token";
const EMAIL_TOKEN: &str = "inbound-mail-token-0123456789";
const OPS: &str = "ops-token-replies-0123456789";
const SMTP_USER: &str = "studio-mailer";
const SMTP_PASSWORD: &str = "smtp-secret-never-logged-4711";
/// Feedback the builtin synthesizer files as `brand`.
const BRAND_TEXT: &str =
    "The new banner uses a neon green that is off-brand and the logo looks stretched.";

fn write_studio(dir: &Path, slack_api: &str, smtp_port: u16) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let studio = dir.join("studio");
    std::fs::create_dir_all(&studio).unwrap();
    let file = studio.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
studio:
  name: "Feedback replies test"
  timezone: "UTC"
server:
  feedback:
    slack_api_base: "{slack_api}"
    smtp:
      host: 127.0.0.1
      port: {smtp_port}
      from: "Studio <studio@example.com>"
      username_env: CONCIERTO_SMTP_USER
      password_env: CONCIERTO_SMTP_PASSWORD
      tls: starttls
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
feedback_loops:
  human_to_agent:
    - feedback_capture:
        channels: ["slack", "email", "web_form"]
        processor: feedback-synthesizer
        action: "route_to_specialists"
content_sources:
  training_data:
    - user_feedback:
        source: "{processed}"
        learner: user-researcher
        training_frequency: "continuous"
"#,
            agents = root.join("examples/studio/agents").display(),
            ops = concierto_admin::token_sha256(OPS),
            processed = dir.join("processed").display(),
        ),
    )
    .unwrap();
    file
}

/// The local Slack Web API: records every `chat.postMessage` (its bearer
/// token and JSON body) and answers `{"ok": true}`.
#[derive(Clone, Default)]
struct Slack {
    posts: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn post_message(
    State(s): State<Slack>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    s.posts.lock().unwrap().push((auth, body));
    Json(json!({"ok": true, "channel": "C024BE91L", "ts": "1700000001.000200"}))
}

async fn start_slack() -> (Slack, String) {
    let s = Slack::default();
    let app = axum::Router::new()
        .route("/api/chat.postMessage", axum::routing::post(post_message))
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (s, format!("http://{addr}/api"))
}

/// A Python with aiosmtpd: `CONCIERTO_PYTHON`, else the virtualenv `.ci/run` makes.
fn python() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CONCIERTO_PYTHON") {
        candidates.push(p.into());
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/concierto-venv/bin/python3"));
    }
    candidates.push("python3".into());
    for c in &candidates {
        let ok = Command::new(c)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return c.clone();
        }
    }
    panic!(
        "no Python with aiosmtpd (tried {candidates:?}): run `bash .ci/run` or \
         `pip install -r tests/python/requirements.txt`, or set CONCIERTO_PYTHON"
    )
}

/// The SMTP server, killed on drop.
struct Smtp(Child);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_smtp(port: u16, dir: &Path) -> Smtp {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/smtp_sink.py");
    let log = std::fs::File::create(dir.join("smtp.log")).unwrap();
    let child = Command::new(python())
        .arg(script)
        .args(["127.0.0.1", &port.to_string()])
        .arg(dir.join("mail"))
        .args([SMTP_USER, SMTP_PASSWORD])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("python starts");
    Smtp(child)
}

/// The messages the SMTP server accepted: (raw message, envelope JSON).
fn mails(dir: &Path) -> Vec<(String, Value)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("mail"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    names.sort();
    names
        .into_iter()
        .filter_map(|p| {
            let raw = std::fs::read_to_string(&p).ok()?;
            let meta = std::fs::read_to_string(p.with_extension("json")).ok()?;
            Some((raw, serde_json::from_str(&meta).ok()?))
        })
        .collect()
}

/// An unfolded header of a raw message.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {OPS}").parse().unwrap());
    req
}

type Admin = AdminServiceClient<tonic::transport::Channel>;

async fn reply_of(admin: &mut Admin, id: &str) -> Option<v1::FeedbackReply> {
    let got = admin
        .get_feedback(authed(v1::GetFeedbackRequest {
            feedback_id: id.to_string(),
        }))
        .await
        .ok()?
        .into_inner();
    got.reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_is_answered_on_its_own_channel_once_across_a_router_restart() {
    let http = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let grpc = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    let smtp_port = concierto_testkit::free_port().unwrap();
    let (slack, slack_api) = start_slack().await;
    let mut sb = Sandbox::new(&[
        ("CONCIERTO__SERVER__HTTP_ADDR", http.as_str()),
        ("CONCIERTO__SERVER__GRPC_ADDR", grpc.as_str()),
        ("SLACK_SIGNING_SECRET", SIGNING),
        ("SLACK_BOT_TOKEN", BOT),
        ("CONCIERTO_EMAIL_TOKEN", EMAIL_TOKEN),
        ("CONCIERTO_CSRF_KEY", "csrf-key-for-the-replies-test"),
        ("CONCIERTO_SMTP_USER", SMTP_USER),
        ("CONCIERTO_SMTP_PASSWORD", SMTP_PASSWORD),
    ]);
    let studio = write_studio(sb.dir(), &slack_api, smtp_port);
    sb.use_studio(studio);
    sb.spawn("services", &["serve", "orchestrator", "feedback", "admin"]);
    sb.spawn("router", &["serve", "feedback-router"]);
    // Only the categoriser for now: the specialists come after the router stops.
    sb.spawn(
        "feedback-synthesizer",
        &["agent", "--role", "feedback-synthesizer"],
    );
    let client = sb.client().await;
    let web = reqwest::Client::new();
    let base = format!("http://{http}");
    eventually(Duration::from_secs(30), "the feedback service", || async {
        web.get(format!("{base}/healthz")).send().await.ok()
    })
    .await;
    let mut admin = eventually(Duration::from_secs(30), "the admin API", || async {
        AdminServiceClient::connect(format!("http://{grpc}"))
            .await
            .ok()
    })
    .await;

    // (a) Slack: a signed event, as Slack's Events API sends it.
    let body = json!({
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "EvReply1",
        "event": {
            "type": "app_mention",
            "user": "U2CERLKJA",
            "text": BRAND_TEXT,
            "channel": "C024BE91L",
            "ts": "1700000000.000100"
        }
    })
    .to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = concierto_feedback::slack::sign(SIGNING.as_bytes(), &ts, body.as_bytes());
    let resp = web
        .post(format!("{base}/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", sb.logs());
    let slack_id = "slack-EvReply1".to_string();

    // (b) Email: the raw message, as an inbound-mail webhook posts it.
    let raw = format!(
        "From: Ana Diaz <ana.diaz@example.com>\r\nTo: feedback@studio.example.com\r\n\
         Subject: Landing page colours\r\nMessage-ID: <CAF-reply-1.abcd@mail.example.com>\r\n\
         Date: Mon, 6 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {BRAND_TEXT}\r\n"
    );
    let resp = web
        .post(format!("{base}/email/inbound"))
        .header("authorization", format!("Bearer {EMAIL_TOKEN}"))
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", sb.logs());
    let answer: Value = resp.json().await.unwrap();
    let email_id = answer["feedback_id"].as_str().unwrap().to_string();

    // (c) The web form: its page sets the CSRF cookie and field; the thank-you
    // page links the status page.
    let page = web.get(format!("{base}/feedback")).send().await.unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").unwrap();
    let resp = web
        .post(format!("{base}/feedback"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(form_encode(&[
            ("csrf", csrf),
            ("author", "Bea"),
            ("email", ""),
            ("message", BRAND_TEXT),
        ]))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let thanks = resp.text().await.unwrap();
    let status_path = between(&thanks, "id=\"status-link\" href=\"", "\"")
        .unwrap_or_else(|| panic!("no status link in {thanks}"))
        .to_string();
    let status_url = format!("{base}/{status_path}");
    let page = web.get(&status_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let form_id = between(&page, "id=\"feedback-id\">", "<")
        .unwrap()
        .to_string();
    assert!(page.contains("No reply yet"), "{page}");

    // (d) The admin API.
    let api_id = admin
        .submit_feedback(authed(v1::SubmitFeedbackRequest {
            text: BRAND_TEXT.into(),
            subject: "banner".into(),
            run_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .feedback_id;
    let ids = [&slack_id, &email_id, &form_id, &api_id];

    // Each is categorised (brand) and the router follows it, waiting for the
    // specialists, who are not running yet.
    for id in ids {
        let r = eventually(
            Duration::from_secs(60),
            "the router to see the feedback categorised",
            || async {
                reply_of(&mut admin.clone(), id)
                    .await
                    .filter(|r| r.state == "waiting" && !r.roles.is_empty())
            },
        )
        .await;
        assert_eq!(r.category(), v1::FeedbackCategory::Brand, "{id}: {r:?}");
        assert_eq!(r.roles, ["brand-guardian", "creative-director"], "{id}");
    }
    // The router stops dead; the specialists answer while it is down.
    sb.proc("router").kill();
    for role in ["brand-guardian", "creative-director"] {
        sb.spawn(role, &["agent", "--role", role]);
    }
    let mut answers = Vec::new();
    for id in ids {
        let run = eventually(
            Duration::from_secs(60),
            "the feedback run to end",
            || async {
                get_run(&client, &format!("feedback:{id}"))
                    .await
                    .filter(|r| r.state() == v1::RunState::Succeeded)
            },
        )
        .await;
        let first = run
            .steps
            .iter()
            .find(|s| s.step_id == "respond-brand-guardian")
            .unwrap();
        assert!(!first.output.trim().is_empty());
        answers.push(first.output.trim().to_string());
    }
    assert!(slack.posts.lock().unwrap().is_empty(), "nothing sent yet");

    // The router again: it finds the runs it was following and answers them.
    sb.spawn("router-2", &["serve", "feedback-router"]);

    // (a) A reply in the Slack thread of the original message.
    eventually(Duration::from_secs(60), "the Slack reply", || async {
        (!slack.posts.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    // (c) The status page shows the reply; (d) GetFeedback too.
    for (id, answer) in [(&form_id, &answers[2]), (&api_id, &answers[3])] {
        let r = eventually(Duration::from_secs(30), "the reply to be sent", || async {
            reply_of(&mut admin.clone(), id)
                .await
                .filter(|r| r.state == "sent")
        })
        .await;
        assert_eq!(&r.text, answer, "{id}");
        assert!(r.sent_at.is_some() && r.response_seconds > 0.0, "{r:?}");
        assert_eq!(r.run_id, format!("feedback:{id}"));
    }
    let page = web
        .get(&status_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>Our reply</h2>"), "{page}");
    let shown = between(
        &page,
        "<div id=\"reply\" style=\"white-space:pre-wrap\">",
        "</div>",
    )
    .unwrap();
    // The page escapes HTML; the builtin answers have no markup to escape but quotes.
    assert_eq!(
        shown
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
        answers[2]
    );

    // (b) SMTP is down: the reply waits in the router's outbox, retried.
    let r = eventually(Duration::from_secs(30), "a failed SMTP attempt", || async {
        reply_of(&mut admin.clone(), &email_id)
            .await
            .filter(|r| r.state == "pending" && r.attempts.iter().any(|a| !a.sent))
    })
    .await;
    assert!(r.attempts[0].error.contains("SMTP"), "{r:?}");
    let _smtp = start_smtp(smtp_port, sb.dir());
    let mail = eventually(Duration::from_secs(60), "the email reply", || async {
        mails(sb.dir()).into_iter().next()
    })
    .await;
    let (raw, envelope) = mail;
    assert_eq!(envelope["rcpt_tos"], json!(["ana.diaz@example.com"]));
    assert_eq!(envelope["mail_from"], "studio@example.com");
    // The login came from the environment.
    assert_eq!(envelope["login"], SMTP_USER);
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some("Re: Landing page colours")
    );
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<CAF-reply-1.abcd@mail.example.com>")
    );
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<CAF-reply-1.abcd@mail.example.com>")
    );
    assert!(header(&raw, "To").unwrap().contains("ana.diaz@example.com"));
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    let first_line = answers[1].lines().next().unwrap();
    assert!(
        body.replace("=\r\n", "").contains(first_line) || raw.contains(first_line),
        "body {body:?} lacks {first_line:?}"
    );
    let r = eventually(
        Duration::from_secs(30),
        "the email reply recorded",
        || async {
            reply_of(&mut admin.clone(), &email_id)
                .await
                .filter(|r| r.state == "sent")
        },
    )
    .await;
    assert!(
        r.attempts.len() >= 2 && r.attempts.last().unwrap().sent,
        "{r:?}"
    );

    // Exactly once: another two router ticks (5 s each) send nothing more.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let posts = slack.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "one Slack reply: {posts:#?}");
    let (auth, post) = &posts[0];
    assert_eq!(auth, &format!("Bearer {BOT}"));
    assert_eq!(post["channel"], "C024BE91L");
    assert_eq!(post["thread_ts"], "1700000000.000100");
    assert_eq!(post["text"], answers[0].as_str());
    assert_eq!(mails(sb.dir()).len(), 1, "one email reply");
    let r = reply_of(&mut admin, &slack_id).await.unwrap();
    assert_eq!(r.state, "sent");
    assert_eq!(r.attempts.len(), 1, "{r:?}");

    // (e) One list for every channel.
    let list = admin
        .list_feedback(authed(v1::ListFeedbackRequest::default()))
        .await
        .unwrap()
        .into_inner();
    for (id, channel) in [
        (&slack_id, v1::FeedbackChannel::Slack),
        (&email_id, v1::FeedbackChannel::Email),
        (&form_id, v1::FeedbackChannel::WebForm),
        (&api_id, v1::FeedbackChannel::Api),
    ] {
        let e = list
            .entries
            .iter()
            .find(|e| e.feedback.as_ref().is_some_and(|f| &f.feedback_id == id))
            .unwrap_or_else(|| panic!("{id} not listed: {list:#?}"));
        assert_eq!(e.feedback.as_ref().unwrap().channel(), channel, "{id}");
    }

    // Answered feedback is exported for the user_feedback learner.
    let exported = std::fs::read_dir(sb.dir().join("processed"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(exported, 4, "one JSON file per answered piece of feedback");

    // The SMTP password never reached a log.
    let logs = sb.logs();
    assert!(
        !logs.contains(SMTP_PASSWORD),
        "the SMTP password was logged"
    );
    assert!(!logs.contains(BOT), "the bot token was logged");
}
