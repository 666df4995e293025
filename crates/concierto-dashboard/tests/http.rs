//! The dashboard over real HTTP (reqwest, cookies handled by hand so each
//! header is checked): a real nats-server, the orchestrator and builtin agent
//! workers on it, the dashboard on a real socket. Sign-in, the redirect to
//! the login page, CSRF refusals, a gate decision refused for someone who is
//! not its reviewer and accepted for its reviewer, live events, the content
//! library down, and services not running.

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::token_sha256;
use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{Bus, BusExt, EmbeddedBus, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{ManualClock, SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_dashboard::{DashboardOptions, DashboardState};
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};

mod common;
use common::Browser;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

const PATIENCE: Duration = Duration::from_secs(30);
const OPS: &str = "ops-token-dash-0123";
const DIRECTOR: &str = "director-token-dash-4567";
const BRAND: &str = "brand-token-dash-89ab";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Dashboard test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  creative_director: {{ name: "Creative Director", token_sha256: "{director}" }}
  brand_manager: {{ name: "Brand Manager", token_sha256: "{brand}" }}
workflows:
  launch:
    description: "Write the launch copy, then announce it."
    steps:
      - id: copy
        role: content-creator
        task: "Write the campaign launch copy for the handmade packaging line."
        inputs: [trigger]
        labels: [campaign_launch]
      - id: announce
        role: studio-orchestrator
        task: "Announce the launch to the team."
        inputs: [copy]
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        director = token_sha256(DIRECTOR),
        brand = token_sha256(BRAND),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

struct Studio1 {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    bus: Arc<dyn Bus>,
    clock: Arc<ManualClock>,
    base: String,
    services: Vec<ServiceHandle>,
}

impl Studio1 {
    async fn stop(self) {
        for h in self.services.into_iter().rev() {
            h.stop().await.unwrap();
        }
    }
}

/// nats-server, orchestrator, builtin workers, and the dashboard (its clock
/// controlled; the library at an address nobody listens on).
async fn start() -> Studio1 {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let system: SharedClock = Arc::new(SystemClock);
    let mut services = vec![
        concierto_orchestrator::start(
            st.clone(),
            bus.clone(),
            store,
            system,
            OrchestratorOptions {
                tick: Duration::from_millis(50),
                fetch_wait: Duration::from_millis(100),
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    ];
    for role in ["content-creator", "studio-orchestrator"] {
        services.push(
            start_worker(
                st.roles[role].clone(),
                Arc::new(BuiltinExecutor::default()),
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
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let nobody = concierto_testkit::free_port().unwrap();
    let state = DashboardState::new(
        st,
        bus.clone(),
        clock.clone(),
        DashboardOptions {
            library_url: format!("http://127.0.0.1:{nobody}"),
            library_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap();
    let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
        .await
        .unwrap();
    services.push(handle);
    Studio1 {
        _nats: nats,
        _dir: dir,
        bus,
        clock,
        base: format!("http://{addr}"),
        services,
    }
}

#[actix_rt::test]
async fn sign_in_sessions_redirects_and_csrf() {
    let s = start().await;
    let mut b = Browser::new(&s.base);

    // No session needed for the health check.
    let (status, _, body) = b.get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    // Pages send the browser to sign in, keeping where it was going.
    for page in [
        "/",
        "/agents",
        "/queue",
        "/runs",
        "/triggers",
        "/gates",
        "/feedback",
        "/library",
        "/deliverables",
    ] {
        let (status, headers, _) = b.get(page).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        let to = headers[LOCATION].to_str().unwrap();
        assert!(to.starts_with("/login?next=%2F"), "{page} → {to}");
    }
    // Scripts and posts get 401.
    assert_eq!(b.get("/events").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b.get("/library/api/items").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.post_form("/gates/g/decide", &[("decision", "approve")])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // The login page sets the form cookie (HttpOnly, SameSite=Strict).
    let (status, headers, login) = b.get("/login?next=%2Fruns").await;
    assert_eq!(status, StatusCode::OK);
    let set: Vec<&str> = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        set.iter()
            .any(|c| c.starts_with("concierto_dashboard_csrf=")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Strict")),
        "{set:?}"
    );
    let csrf = Browser::csrf_of(&login);
    assert!(login.contains("value=\"/runs\""), "the way back is kept");
    // A way back with a tab or newline (browsers drop them: `/\t/evil` is
    // `//evil`) is not kept.
    let (_, _, odd) = b.get("/login?next=%2F%09%2Fevil.example").await;
    assert!(!odd.contains("evil.example"), "{odd}");

    // A post without the form token, or with another one, is refused.
    let (status, _, body) = b
        .post_form("/login", &[("token", DIRECTOR), ("next", "/")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("missing form token"), "{body}");
    let (status, _, body) = b
        .post_form("/login", &[("csrf", "1.2.3"), ("token", DIRECTOR)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("does not match its cookie"), "{body}");
    assert!(!b.cookies.contains_key("concierto_dashboard_session"));

    // An unknown token is refused with the reason on the page.
    let (status, _, body) = b
        .post_form(
            "/login",
            &[("csrf", &csrf), ("token", "nope"), ("next", "/runs")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Unknown token"), "{body}");

    // The director's token opens a session: a random id, not the token.
    let (status, headers, _) = b
        .post_form(
            "/login",
            &[("csrf", &csrf), ("token", DIRECTOR), ("next", "/runs")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/runs");
    let session = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("concierto_dashboard_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(!session.contains(DIRECTOR) && !session.contains(&token_sha256(DIRECTOR)));

    let (status, _, runs) = b.get("/runs").await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert!(runs.contains("Creative Director"), "the reviewer is named");
    assert!(runs.contains("No run yet."), "{runs}");

    // A form post carries the token: without it, refused; with it, done.
    let (status, _, body) = b.post_form("/logout", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let csrf = Browser::csrf_of(&runs);
    let (status, headers, _) = b.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/login");
    assert_eq!(b.get("/runs").await.0, StatusCode::SEE_OTHER);

    // A session ends after its lifetime (12 hours by default).
    b.sign_in(BRAND).await;
    assert_eq!(b.get("/gates").await.0, StatusCode::OK);
    s.clock.advance(Duration::from_secs(12 * 3600 + 1));
    let (status, headers, _) = b.get("/gates").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[LOCATION].to_str().unwrap().starts_with("/login"));

    s.stop().await;
}

/// Reads the SSE stream until an event named `name` whose data contains `needle`.
async fn sse_until(resp: &mut reqwest::Response, name: &str, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event with {needle} in time:\n{seen}"))
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(ev) = seen
            .split("\n\n")
            .find(|e| e.contains(&format!("event: {name}\n")) && e.contains(needle))
        {
            return ev.to_string();
        }
    }
}

#[actix_rt::test]
async fn gates_are_decided_from_the_page_by_their_reviewer_only_and_the_run_goes_on() {
    let s = start().await;
    let mut director = Browser::new(&s.base);
    director.sign_in(DIRECTOR).await;
    let mut brand = Browser::new(&s.base);
    brand.sign_in(BRAND).await;

    // Live events, as the pages' script reads them.
    let mut events = director
        .http
        .get(format!("{}/events", s.base))
        .header("cookie", director.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    sse_until(&mut events, "hello", "{}").await;

    let start = v1::StartRun {
        run_id: "launch-1".into(),
        workflow: "launch".into(),
        fire_time: Some(concierto_proto::time::now()),
        requested_by: "test".into(),
        ..Default::default()
    };
    s.bus
        .publish_durable_proto(subjects::RUN_START, &start, "launch-1")
        .await
        .unwrap();
    let opened = sse_until(&mut events, "gate", "\"GATE_STATE_OPEN\"").await;
    assert!(opened.contains("\"run_id\":\"launch-1\""), "{opened}");
    let gate_id = opened
        .split("\"gate_id\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();

    // The gates page lists it with its SLA countdown; its page has the draft.
    let (status, _, gates) = director.get("/gates").await;
    assert_eq!(status, StatusCode::OK, "{gates}");
    assert!(gates.contains("creative_review"), "{gates}");
    assert!(gates.contains("class=\"countdown\" data-due=\""), "{gates}");
    assert!(gates.contains("yours"), "the director's gate is marked");
    assert!(
        gates.contains(&format!("data-gate=\"{gate_id}\"")),
        "{gates}"
    );
    let gate_path = gates
        .split("class=\"gate-link\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to the gate")
        .to_string();
    let (status, _, page) = brand.get(&gate_path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"draft\""), "{page}");
    // Not one of its reviewers: no buttons, only who may decide.
    assert!(!page.contains("id=\"approve\""), "{page}");
    assert!(
        page.contains("data-deciders=\"creative_director\""),
        "{page}"
    );

    // The brand manager is not a reviewer of it: the orchestrator refuses,
    // and the page says so.
    let csrf = Browser::csrf_of(&page);
    let (status, _, refused) = brand
        .post_form(
            &format!("{gate_path}/decide"),
            &[("csrf", &csrf), ("decision", "approve"), ("notes", "")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused.contains("id=\"refusal\""), "{refused}");
    assert!(refused.contains("brand_manager"), "{refused}");
    assert!(
        refused.contains("data-state=\"open\""),
        "still open: {refused}"
    );

    // Without the form token even the director is refused.
    let (status, _, body) = director
        .post_form(&format!("{gate_path}/decide"), &[("decision", "approve")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // The director approves; the run finishes.
    let (_, _, page) = director.get(&gate_path).await;
    let csrf = Browser::csrf_of(&page);
    let (status, headers, body) = director
        .post_form(
            &format!("{gate_path}/decide"),
            &[
                ("csrf", &csrf),
                ("decision", "approve"),
                ("notes", "Lovely."),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let to = headers[LOCATION].to_str().unwrap().to_string();
    assert!(to.ends_with("?decided=approve"), "{to}");
    let (_, _, after) = director.get(&to).await;
    assert!(after.contains("data-state=\"approved\""), "{after}");
    assert!(after.contains("Lovely."), "{after}");
    sse_until(&mut events, "gate", "\"GATE_STATE_APPROVED\"").await;
    sse_until(&mut events, "run", "\"RUN_STATE_SUCCEEDED\"").await;

    // The run's page: its timeline with both steps and the gate wait.
    let run = eventually(PATIENCE, "the run page to show the finished run", || {
        let mut d = Browser {
            http: director.http.clone(),
            base: director.base.clone(),
            cookies: director.cookies.clone(),
        };
        async move {
            let (_, _, page) = d.get("/runs/launch-1").await;
            page.contains("data-state=\"succeeded\"").then_some(page)
        }
    })
    .await;
    for row in [
        "data-step=\"copy\"",
        "data-step=\"announce\"",
        "data-step=\"gate creative_review\"",
    ] {
        assert!(run.contains(row), "{row} in {run}");
    }
    assert!(run.contains("approved by creative_director"), "{run}");
    let (_, _, runs) = director.get("/runs").await;
    assert!(runs.contains("href=\"/runs/launch-1\""), "{runs}");

    s.stop().await;
}

#[actix_rt::test]
async fn the_library_down_and_services_not_running_are_said_plainly() {
    let s = start().await;
    let mut b = Browser::new(&s.base);
    b.sign_in(OPS).await;

    // Nobody listens at the library's address.
    let (status, _, page) = b.get("/library").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(
        page.contains("The content library is not running at http://127.0.0.1:"),
        "{page}"
    );
    assert!(page.contains("concierto serve ingest"), "{page}");
    let r = b
        .http
        .get(format!("{}/library/api/items?q=x", s.base))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let err: serde_json::Value = r.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("content library is not running"),
        "{err}"
    );
    // Paths that would leave the library's `/api/`, encoded or not, are refused
    // before anything is sent.
    for path in [
        "%2e%2e/healthz",
        ".%2E/healthz",
        "..%5Chealthz",
        "items/%2e%2e/%2e%2e/x",
    ] {
        // Sent as written: an HTTP client library would resolve the dots first.
        let status = raw_get(&s.base, &format!("/library/api/{path}"), &b.cookie_header()).await;
        assert_eq!(status, 400, "{path}");
    }
    // A write through the proxy needs the form token first.
    let r = b
        .http
        .post(format!("{}/library/api/collections", s.base))
        .header("cookie", b.cookie_header())
        .header("content-type", "application/json")
        .body("{\"name\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // No tracker, feedback service or scheduler runs here.
    let (status, _, page) = b.get("/agents").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("The tracker is not running"), "{page}");
    let (status, _, page) = b.get("/queue").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("The tracker is not running"), "{page}");
    let (status, _, page) = b.get("/feedback").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        page.contains("The feedback service is not running"),
        "{page}"
    );
    let (status, _, page) = b.get("/").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the overview still shows the targets"
    );
    assert!(page.contains("The tracker is not running"), "{page}");
    let (status, _, page) = b.get("/triggers").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("The scheduler is not running"), "{page}");
    s.stop().await;

    // A dashboard on a bus where nothing answers at all.
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("concierto."));
    let dir = tempfile::tempdir().unwrap();
    let state = DashboardState::new(
        studio(dir.path()),
        bus,
        Arc::new(SystemClock),
        DashboardOptions::default(),
    )
    .unwrap();
    let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
        .await
        .unwrap();
    let mut b = Browser::new(&format!("http://{addr}"));
    b.sign_in(OPS).await;
    for page in ["/runs", "/gates", "/runs/x", "/gates/y"] {
        let (status, _, body) = b.get(page).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(
            body.contains("The orchestrator is not running"),
            "{page}: {body}"
        );
    }
    handle.stop().await.unwrap();
}

/// The status of a GET sent byte for byte as given (no URL normalisation).
async fn raw_get(base: &str, path: &str, cookie: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    tcp.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer}"))
}

/// Sessions are sealed cookies: every replica with the key takes one (as does
/// the same dashboard after a restart), another key or a changed byte does
/// not, and a sign-out on one replica ends the session on the others.
#[actix_rt::test]
async fn a_session_opens_on_every_replica_with_its_key_and_a_sign_out_ends_it_everywhere() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let shared = b"one-key-for-every-dashboard-replica".to_vec();
    let other = b"a-key-some-other-dashboard-has-0".to_vec();
    let mut handles = Vec::new();
    let mut bases = Vec::new();
    for key in [shared.clone(), shared, other] {
        let bus: Arc<dyn Bus> = Arc::new(
            NatsBus::connect(&nats.url(), NatsOptions::default())
                .await
                .unwrap(),
        );
        let state = DashboardState::new(
            st.clone(),
            bus,
            clock.clone(),
            DashboardOptions {
                csrf_key: Some(concierto_feedback::Secret::new(key)),
                ..Default::default()
            },
        )
        .unwrap();
        let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
            .await
            .unwrap();
        handles.push(handle);
        bases.push(format!("http://{addr}"));
    }
    const SESSION: &str = "concierto_dashboard_session";

    let mut a = Browser::new(&bases[0]);
    a.sign_in(DIRECTOR).await;
    let sealed = a.cookies[SESSION].clone();
    assert!(
        !sealed.contains(DIRECTOR),
        "the token is not readable in the cookie"
    );

    // The other replica with the key: signed in, and its forms take the token.
    let mut b = Browser::new(&bases[1]);
    b.cookies = a.cookies.clone();
    // (No orchestrator runs here: the page says so with 503, signed in.)
    let (status, _, runs) = b.get("/runs").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{runs}");
    assert!(
        runs.contains("data-reviewer=\"creative_director\""),
        "{runs}"
    );

    // A replica with another key, or a cookie with one character changed: not.
    let mut c = Browser::new(&bases[2]);
    c.cookies = a.cookies.clone();
    assert_eq!(c.get("/runs").await.0, StatusCode::SEE_OTHER);
    let mut forged = Browser::new(&bases[0]);
    forged.cookies = a.cookies.clone();
    let mut bytes = sealed.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    forged
        .cookies
        .insert(SESSION.into(), String::from_utf8(bytes).unwrap());
    assert_eq!(forged.get("/runs").await.0, StatusCode::SEE_OTHER);

    // Signing out on A: A refuses a copy of the cookie at once, B soon after.
    let (_, _, page) = a.get("/runs").await;
    let csrf = Browser::csrf_of(&page);
    let (status, _, _) = a.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(!a.cookies.contains_key(SESSION), "the cookie is cleared");
    let mut copy = Browser::new(&bases[0]);
    copy.cookies = b.cookies.clone();
    assert_eq!(copy.get("/runs").await.0, StatusCode::SEE_OTHER);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Browser::new(&bases[1]);
        again.cookies = b.cookies.clone();
        if again.get("/runs").await.0 == StatusCode::SEE_OTHER {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica B still takes a signed-out session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Signing in again gives a new session, good on both.
    b.cookies.remove(SESSION);
    b.sign_in(DIRECTOR).await;
    assert_eq!(b.get("/gates").await.0, StatusCode::SERVICE_UNAVAILABLE);

    for h in handles.into_iter().rev() {
        h.stop().await.unwrap();
    }
}
