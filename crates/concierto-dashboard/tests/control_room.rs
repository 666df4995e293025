//! The control room over real HTTP, a real nats-server and responders on the
//! bus: metric pages (chart points, target line, unit, rollups) against a
//! tracker answering `tracker.metrics.get`; gate decision buttons only for
//! the people who may decide, and a gate named by a prefix redirected to its
//! page; dead letters listed, filtered, inspected (hostile payloads escaped)
//! and replayed by admins only, with CSRF; the session key kept in the data
//! folder, so a second dashboard takes the first one's cookie; and the
//! first-run sign-in link's script.

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::token_sha256;
use concierto_bus::{Bus, NatsBus, NatsOptions, ProtoMessage, ensure_standard_streams};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::subjects;
use concierto_dashboard::{DashboardOptions, DashboardState};
use concierto_proto::v1;
use concierto_testkit::{NatsServer, eventually};

mod common;
use common::{Browser, respond, taken};
use reqwest::StatusCode;
use reqwest::header::LOCATION;

const PATIENCE: Duration = Duration::from_secs(20);
const OPS: &str = "ops-token-control-0123";
const DIRECTOR: &str = "director-token-control-4567";
const BRAND: &str = "brand-token-control-89ab";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Control room"
  timezone: "Europe/Madrid"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  creative_director: {{ name: "Creative Director", token_sha256: "{director}", escalation: [ops] }}
  brand_manager: {{ name: "Brand Manager", token_sha256: "{brand}" }}
workflows:
  launch:
    description: "Write the launch copy."
    steps:
      - id: copy
        role: content-creator
        task: "Write the launch copy."
        labels: [campaign_launch]
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
progress_metrics:
  content_generation:
    - daily_output:
        target: 10
        type: "content_pieces"
        tracker: analytics-reporter
  system_health:
    - feedback_response_time:
        target: "< 2 hours"
        type: "sla"
        tracker: support-responder
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        director = token_sha256(DIRECTOR),
        brand = token_sha256(BRAND),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).expect("write the studio");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("the studio loads"))
}

struct Bed {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    bus: Arc<dyn Bus>,
    base: String,
    handle: ServiceHandle,
}

async fn connect(nats: &NatsServer) -> Arc<dyn Bus> {
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect"),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .expect("streams");
    bus
}

async fn dashboard(
    st: Arc<Studio>,
    bus: Arc<dyn Bus>,
    opts: DashboardOptions,
) -> (ServiceHandle, String) {
    let clock: SharedClock = Arc::new(SystemClock);
    let state = DashboardState::new(st, bus, clock, opts).expect("dashboard state");
    let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
        .await
        .expect("serve");
    (handle, format!("http://{addr}"))
}

async fn start() -> Bed {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = connect(&nats).await;
    let (handle, base) = dashboard(studio(dir.path()), bus.clone(), Default::default()).await;
    Bed {
        _nats: nats,
        _dir: dir,
        bus,
        base,
        handle,
    }
}

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn metric(name: &str, target: &str, unit: &str, series: &[(i64, f64)]) -> v1::Metric {
    v1::Metric {
        name: name.into(),
        group: "content_generation".into(),
        target: target.into(),
        current: series.last().map(|p| p.1).unwrap_or(0.0),
        on_target: false,
        tracker: "analytics-reporter".into(),
        series: series
            .iter()
            .map(|(t, v)| v1::MetricPoint {
                at: ts(*t),
                value: *v,
            })
            .collect(),
        unit: unit.into(),
    }
}

/// Points of the chart, by their `data-value`.
fn chart_values(page: &str) -> Vec<f64> {
    let chart = page
        .split("<svg id=\"metric-chart\"")
        .nth(1)
        .and_then(|s| s.split("</svg>").next())
        .expect("the page has the chart");
    chart
        .split("class=\"point\"")
        .skip(1)
        .filter_map(|s| {
            s.split("data-value=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_pages_chart_the_series_with_units_a_target_line_and_rollups() {
    let bed = start().await;
    let now = chrono::Utc::now().timestamp();
    let day = 86_400;
    // Three days of daily_output: 4 + 3 two days ago, 5 yesterday, 6 now.
    let output = vec![
        (now - 2 * day - 600, 4.0),
        (now - 2 * day, 3.0),
        (now - day, 5.0),
        (now, 6.0),
    ];
    let seen = respond(&bed.bus, subjects::TRACKER_GET_METRICS, {
        let output = output.clone();
        move |q: &v1::GetMetricsRequest| {
            let all = vec![
                metric("daily_output", "10", "", &output),
                metric(
                    "feedback_response_time",
                    "< 2 hours",
                    "s",
                    &[(now - 60, 5400.0), (now, 3600.0)],
                ),
                metric("engagement_rate", "", "ratio", &[]),
            ];
            if q.names.is_empty() {
                return Ok(v1::GetMetricsResponse { metrics: all });
            }
            let picked: Vec<v1::Metric> = all
                .into_iter()
                .filter(|m| q.names.contains(&m.name))
                .collect();
            if picked.is_empty() {
                return Err(format!("not_found: no metric {:?}", q.names));
            }
            Ok(v1::GetMetricsResponse { metrics: picked })
        }
    })
    .await;
    let mut b = Browser::new(&bed.base);
    b.sign_in(DIRECTOR).await;

    // The overview: units beside values, sparklines as lines, links to the pages.
    let (status, _, overview) = b.get("/").await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    assert!(
        overview.contains("href=\"/metrics/daily_output\""),
        "{overview}"
    );
    assert!(overview.contains(">6 pieces</td>"), "{overview}");
    assert!(overview.contains(">1h 00m</td>"), "{overview}");
    let row = overview
        .split("data-metric=\"daily_output\"")
        .nth(1)
        .and_then(|s| s.split("</tr>").next())
        .unwrap_or_default();
    assert!(row.contains("<polyline"), "a line through 4 points: {row}");
    let empty = overview
        .split("data-metric=\"engagement_rate\"")
        .nth(1)
        .and_then(|s| s.split("</tr>").next())
        .unwrap_or_default();
    assert!(empty.contains("no data yet"), "{empty}");

    // The raw chart: every point, the target line at 10, the unit, the zone.
    let (status, _, page) = b.get("/metrics/daily_output").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(chart_values(&page), [4.0, 3.0, 5.0, 6.0], "{page}");
    assert!(page.contains("data-rollup=\"raw\""), "{page}");
    assert!(page.contains("data-unit=\"pieces\""), "{page}");
    assert!(
        page.contains("id=\"metric-target\" data-target=\"10\""),
        "{page}"
    );
    assert!(page.contains("time in Europe/Madrid"), "{page}");
    assert!(page.contains("<polyline class=\"series\""), "{page}");
    assert!(page.contains("class=\"x-tick\""), "{page}");

    // Per day, counts add up within a day of the studio's zone; the tracker is
    // asked for 30 days.
    let (status, _, page) = b.get("/metrics/daily_output?rollup=day").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let days = chart_values(&page);
    assert_eq!(days.iter().sum::<f64>(), 18.0, "{page}");
    assert!(days.len() >= 3 && days.len() <= 4, "{days:?}");
    assert!(days.contains(&5.0) && days.contains(&6.0), "{days:?}");
    let asked: Vec<v1::GetMetricsRequest> = taken(&seen).into_iter().map(|(q, _)| q).collect();
    assert!(
        asked
            .iter()
            .any(|q| q.names == ["daily_output"] && q.window_hours == 30 * 24),
        "{asked:?}"
    );
    for rollup in ["week", "month"] {
        let (status, _, page) = b
            .get(&format!("/metrics/daily_output?rollup={rollup}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            page.contains(&format!("data-rollup=\"{rollup}\"")),
            "{page}"
        );
        let v = chart_values(&page);
        assert_eq!(v.iter().sum::<f64>(), 18.0, "{rollup}: {v:?}");
    }

    // A duration metric: its axis reads durations, its target 2 hours.
    let (_, _, page) = b.get("/metrics/feedback_response_time").await;
    assert!(page.contains("data-unit=\"s\""), "{page}");
    assert!(page.contains("data-target=\"7200\""), "{page}");
    assert!(page.contains(">duration</text>"), "{page}");
    assert!(page.contains(">2h 00m</text>"), "{page}");

    // No data: the chart says so. Unknown metric or rollup: said plainly.
    let (status, _, page) = b.get("/metrics/engagement_rate").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("no data yet"), "{page}");
    let (status, _, page) = b.get("/metrics/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    let (status, _, page) = b.get("/metrics/daily_output?rollup=%3Cb%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(!page.contains("<b>"), "{page}");
    bed.handle.stop().await.expect("stop");
}

fn gate(id: &str, escalated: bool) -> v1::Gate {
    let now = chrono::Utc::now().timestamp();
    v1::Gate {
        request: Some(v1::GateRequest {
            gate_id: id.into(),
            gate: "creative_review".into(),
            run_id: "manual:launch@2026-03-01T09:00:00Z".into(),
            step_id: "copy".into(),
            label: "campaign_launch".into(),
            reviewers: vec!["creative_director".into()],
            summary: "Launch copy".into(),
            content: "A <b>long</b> draft ".repeat(200),
            opened_at: ts(now - 60),
            due_at: ts(now + 3600),
            round: 1,
        }),
        state: v1::GateState::Open as i32,
        escalated,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_buttons_are_shown_to_those_who_may_decide_and_a_prefix_redirects() {
    let bed = start().await;
    const ID: &str = "manual:launch@2026-03-01T09:00:00Z/copy/creative_review/1";
    const ESCALATED: &str = "manual:launch@2026-03-02T09:00:00Z/copy/creative_review/1";
    respond(
        &bed.bus,
        subjects::ORCHESTRATOR_GET_GATE,
        |q: &v1::GetGateRequest| {
            // The orchestrator resolves a unique prefix or a run id.
            let id = match q.gate_id.as_str() {
                x if ID.starts_with(x) && x.len() >= 8 => ID,
                ESCALATED => ESCALATED,
                other => return Err(format!("not_found: no gate {other:?}")),
            };
            Ok(v1::GetGateResponse {
                gate: Some(gate(id, id == ESCALATED)),
            })
        },
    )
    .await;
    let path = format!(
        "/gates/{}",
        ID.replace(':', "%3A")
            .replace('/', "%2F")
            .replace('@', "%40")
    );

    let mut director = Browser::new(&bed.base);
    director.sign_in(DIRECTOR).await;
    let (status, _, page) = director.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for b in ["approve", "reject", "request_changes"] {
        assert!(
            page.contains(&format!("data-decision=\"{b}\"")),
            "{b}: {page}"
        );
    }
    assert!(page.contains("data-gate-decide="), "{page}");
    assert!(
        page.contains("&lt;b&gt;long&lt;/b&gt;"),
        "the draft is escaped"
    );
    // Times in the studio's zone.
    assert!(page.contains(" CET<") || page.contains(" CEST<"), "{page}");

    let mut brand = Browser::new(&bed.base);
    brand.sign_in(BRAND).await;
    let (status, _, page) = brand.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        !page.contains("data-decision="),
        "no buttons for others: {page}"
    );
    assert!(
        page.contains("data-deciders=\"creative_director\""),
        "{page}"
    );
    assert!(
        page.contains("Creative Director (creative_director)"),
        "{page}"
    );

    // Once escalated, the reviewers' escalation contact (ops) may decide too.
    let mut ops = Browser::new(&bed.base);
    ops.sign_in(OPS).await;
    let (_, _, page) = ops.get(&path).await;
    assert!(!page.contains("data-decision="), "{page}");
    let escalated = format!(
        "/gates/{}",
        ESCALATED
            .replace(':', "%3A")
            .replace('/', "%2F")
            .replace('@', "%40")
    );
    let (status, _, page) = ops.get(&escalated).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("data-decision=\"approve\""), "{page}");
    assert!(!page.contains("data-deciders"), "{page}");

    // A unique prefix is sent to the gate's own page.
    let (status, headers, _) = director.get("/gates/manual%3Alaunch%402026-03-01").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], path.as_str());
    let (status, _, page) = director.get("/gates/nothing-like-it").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
    bed.handle.stop().await.expect("stop");
}

/// Stores a dead letter as the bus does (on `dlq.<subject>`).
async fn dead_letter(bus: &Arc<dyn Bus>, letter: &v1::DeadLetter) {
    bus.publish_durable(
        &format!("dlq.{}", letter.subject),
        concierto_bus::encode(letter),
    )
    .await
    .expect("dead-lettered");
}

fn enc<M: ProtoMessage>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_inspected_and_replayed_by_admins_only() {
    let bed = start().await;
    let task = v1::Task {
        task_id: "t-1".into(),
        run_id: "r-1".into(),
        role: "content-creator".into(),
        instruction: "Write <script>alert('x')</script> copy".into(),
        ..Default::default()
    };
    dead_letter(
        &bed.bus,
        &v1::DeadLetter {
            subject: "task.content-creator".into(),
            reason: "max_deliver exhausted <img src=x onerror=alert(1)>".into(),
            payload: enc(&task),
            deliveries: 5,
            consumer: "worker-content-creator".into(),
            dead_lettered_at: ts(chrono::Utc::now().timestamp()),
            ..Default::default()
        },
    )
    .await;
    dead_letter(
        &bed.bus,
        &v1::DeadLetter {
            subject: "run.start".into(),
            reason: "does not decode".into(),
            payload: b"\x00\xff<script>evil()</script>".repeat(5000),
            deliveries: 1,
            ..Default::default()
        },
    )
    .await;

    let mut brand = Browser::new(&bed.base);
    brand.sign_in(BRAND).await;
    let (status, _, list) = eventually(PATIENCE, "both letters listed", || {
        let base = bed.base.clone();
        let cookies = brand.cookie_header();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{base}/dead-letters"))
                .header("cookie", cookies)
                .send()
                .await
                .ok()?;
            let (status, headers) = (r.status(), r.headers().clone());
            let body = r.text().await.ok()?;
            (body.matches("data-dead-letter=\"").count() == 2).then_some((status, headers, body))
        }
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(list.contains("href=\"/dead-letters\""), "nav link: {list}");
    assert!(
        list.contains("data-subject=\"task.content-creator\""),
        "{list}"
    );
    assert!(!list.contains("<img src=x"), "{list}");
    assert!(list.contains("&lt;img src=x"), "{list}");
    let seqs: Vec<String> = list
        .split("data-dead-letter=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect();
    let (task_seq, start_seq) = (seqs[0].clone(), seqs[1].clone());

    // Filtered by subject prefix; paged.
    let (_, _, only) = brand.get("/dead-letters?subject=run.").await;
    assert_eq!(only.matches("data-dead-letter=\"").count(), 1, "{only}");
    assert!(only.contains("data-subject=\"run.start\""), "{only}");

    // Inspected: the task decoded (and escaped); the garbage bounded and escaped.
    let (status, _, page) = brand.get(&format!("/dead-letters/{task_seq}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("data-decoded=\"concierto.v1.Task\""),
        "{page}"
    );
    assert!(page.contains("&lt;script&gt;alert("), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("worker-content-creator"), "{page}");
    assert!(
        !page.contains("id=\"replay\""),
        "no Replay for a reviewer: {page}"
    );
    let (status, _, page) = brand.get(&format!("/dead-letters/{start_seq}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("does not decode as concierto.v1.StartRun"),
        "{page}"
    );
    assert!(!page.contains("<script>evil"), "escaped");
    assert!(page.len() < 64 * 1024, "bounded: {} bytes", page.len());
    let (status, _, _) = brand.get("/dead-letters/not-a-number").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A reviewer's replay is refused, with or without the form token.
    let csrf = Browser::csrf_of(&page);
    let (status, _, body) = brand
        .post_form(
            &format!("/dead-letters/{task_seq}/replay"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // An admin sees Replay; without the form token it is refused; with it the
    // task goes back on its subject and the letter is gone.
    let mut ops = Browser::new(&bed.base);
    ops.sign_in(OPS).await;
    let (_, _, page) = ops.get(&format!("/dead-letters/{task_seq}")).await;
    assert!(
        page.contains(&format!("data-replay=\"{task_seq}\"")),
        "{page}"
    );
    let (status, _, _) = ops
        .post_form(&format!("/dead-letters/{task_seq}/replay"), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut tasks = bed
        .bus
        .subscribe("task.content-creator")
        .await
        .expect("subscribe");
    bed.bus.flush().await.expect("flush");
    let csrf = Browser::csrf_of(&page);
    let (status, headers, body) = ops
        .post_form(
            &format!("/dead-letters/{task_seq}/replay"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let to = headers[LOCATION].to_str().expect("text").to_string();
    assert_eq!(to, format!("/dead-letters?replayed={task_seq}"));
    let again = tokio::time::timeout(PATIENCE, tasks.next())
        .await
        .expect("the task comes back")
        .expect("a message");
    assert_eq!(again.payload.as_ref(), enc(&task).as_slice());
    let (_, _, list) = ops.get(&to).await;
    assert!(
        list.contains(&format!("data-replayed=\"{task_seq}\"")),
        "{list}"
    );
    assert!(
        !list.contains(&format!("data-dead-letter=\"{task_seq}\"")),
        "{list}"
    );
    assert!(
        list.contains(&format!("data-dead-letter=\"{start_seq}\"")),
        "{list}"
    );
    let (status, _, _) = ops.get(&format!("/dead-letters/{task_seq}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bed.handle.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_key_is_kept_in_the_data_folder_so_a_new_dashboard_takes_old_cookies() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let st = studio(dir.path());
    let bus = connect(&nats).await;
    let data = dir.path().join("data").join("dashboard");
    let opts = || DashboardOptions {
        data_dir: Some(data.clone()),
        ..Default::default()
    };
    let (first, base) = dashboard(st.clone(), bus.clone(), opts()).await;
    let mut b = Browser::new(&base);
    b.sign_in(DIRECTOR).await;
    assert_eq!(b.get("/gates").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let key = std::fs::read_to_string(data.join("session.key")).expect("the key file");
    assert_eq!(key.trim().len(), 64, "32 bytes in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("session.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    first.stop().await.expect("stop");

    // A restart: the same key, so the same cookie opens a session.
    let (second, base) = dashboard(st.clone(), bus.clone(), opts()).await;
    let mut again = Browser::new(&base);
    again.cookies = b.cookies.clone();
    let (status, _, page) = again.get("/gates").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(
        page.contains("data-reviewer=\"creative_director\""),
        "{page}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("session.key")).expect("key"),
        key,
        "the key is not made again"
    );
    second.stop().await.expect("stop");

    // Without the folder, a key of its own: the old cookie is not taken.
    let (third, base) = dashboard(st, bus, DashboardOptions::default()).await;
    let mut other = Browser::new(&base);
    other.cookies = b.cookies.clone();
    let (status, headers, _) = other.get("/gates").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[LOCATION]
            .to_str()
            .unwrap_or_default()
            .starts_with("/login"),
        "{headers:?}"
    );
    third.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_page_signs_in_from_a_first_run_link_without_sending_the_token() {
    let bed = start().await;
    let mut b = Browser::new(&bed.base);
    let (_, _, login) = b.get("/login").await;
    // The form the script submits: its CSRF field, the token field, and the
    // way back to the overview.
    assert!(
        login.contains("id=\"login-form\" data-login-form"),
        "{login}"
    );
    assert!(login.contains("name=\"csrf\""), "{login}");
    assert!(login.contains("name=\"next\" value=\"/\""), "{login}");
    let (status, _, js) = b.get("/assets/dashboard.js").await;
    assert_eq!(status, StatusCode::OK);
    // The script reads the fragment, clears it, fills the field and submits.
    for needle in [
        "form[data-login-form]",
        "location.hash",
        "get('token')",
        "history.replaceState",
        "requestSubmit",
    ] {
        assert!(js.contains(needle), "{needle}");
    }
    bed.handle.stop().await.expect("stop");
}
