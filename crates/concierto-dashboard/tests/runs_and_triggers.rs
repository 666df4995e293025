//! The dashboard as a control room, over real HTTP and a real nats-server,
//! with the orchestrator and the scheduler played on the bus by responders
//! that record what they are asked: step outputs as sanitised Markdown, the
//! run actions (start, cancel, retry) for admins only and with a form token,
//! the runs list's filters and paging passed through, short ids redirected,
//! and the triggers page with fire, pause and resume.

mod common;

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::token_sha256;
use concierto_bus::{Bus, BusExt, NatsBus, NatsOptions, ensure_standard_streams};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::service::ServiceHandle;
use concierto_core::subjects;
use concierto_dashboard::{DashboardOptions, DashboardState};
use concierto_proto::v1;
use concierto_testkit::NatsServer;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

use common::{Browser, respond, taken};

const OPS: &str = "ops-token-control-0123";
const DIRECTOR: &str = "director-token-control-4567";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Control test"
  timezone: "Europe/Madrid"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  creative_director: {{ name: "Creative Director", token_sha256: "{director}" }}
workflows:
  launch:
    description: "Write the launch copy, then announce it."
    steps:
      - id: copy
        role: content-creator
        task: "Write the campaign launch copy."
        inputs: [trigger]
      - id: announce
        role: studio-orchestrator
        task: "Announce the launch to the team."
        inputs: [copy]
triggers:
  scheduled:
    - morning_launch:
        time: "09:00"
        workflow: "launch"
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        director = token_sha256(DIRECTOR),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).expect("write the studio");
    Arc::new(config::load_with_env(&path, Vec::new()).expect("the test studio loads"))
}

struct Room {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    bus: Arc<dyn Bus>,
    base: String,
    handle: ServiceHandle,
}

/// nats-server and the dashboard on it; no orchestrator or scheduler (the
/// tests play them).
async fn start() -> Room {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("temp dir");
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect"),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .expect("streams");
    let clock: SharedClock = Arc::new(SystemClock);
    let state = DashboardState::new(
        st,
        bus.clone(),
        clock,
        DashboardOptions {
            request_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .expect("dashboard state");
    let (handle, addr) = concierto_dashboard::serve(state, "127.0.0.1:0")
        .await
        .expect("serve");
    Room {
        _nats: nats,
        _dir: dir,
        bus,
        base: format!("http://{addr}"),
        handle,
    }
}

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// 2026-03-10 08:00:00 UTC (09:00 in Madrid).
const T0: i64 = 1_773_129_600;

fn failed_run(id: &str) -> v1::Run {
    v1::Run {
        run_id: id.into(),
        workflow: "launch".into(),
        trigger: "morning_launch".into(),
        state: v1::RunState::Failed as i32,
        created_at: ts(T0),
        updated_at: ts(T0 + 90),
        requested_by: "scheduler".into(),
        error: "step announce failed".into(),
        params: [("brief".to_string(), "Spring **launch** brief".to_string())].into(),
        steps: vec![
            v1::RunStep {
                step_id: "copy".into(),
                role: "content-creator".into(),
                state: v1::StepState::Succeeded as i32,
                attempt: 1,
                output: "# Copy\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n\
[click](javascript:alert(3)) ![remote](https://evil.example/x.png) \
![board](/library/api/items/abc/blob)\n\n```css\nbody { color: red }\n```\n"
                    .into(),
                review_rounds: 2,
                verdict: Some(v1::Verdict {
                    pass: true,
                    score: 0.85,
                    notes: "Good *tone*.".into(),
                    reasons: vec!["on brand".into()],
                }),
                started_at: ts(T0),
                finished_at: ts(T0 + 60),
                tool_calls: vec![v1::ToolCall {
                    name: "library_search".into(),
                    arguments: "{\"query\":\"<b>spring</b>\"}".into(),
                    answer_bytes: 512,
                    latency_ms: 40,
                    error: String::new(),
                }],
                ..Default::default()
            },
            v1::RunStep {
                step_id: "announce".into(),
                role: "studio-orchestrator".into(),
                state: v1::StepState::Failed as i32,
                attempt: 3,
                // Far more than is rendered (under NATS's 1 MB message
                // limit), and a nesting bomb at its start.
                output: ">".repeat(10_000) + " deep\n\n" + &"lorem ipsum ".repeat(50_000),
                error: "provider refused".into(),
                started_at: ts(T0 + 60),
                finished_at: ts(T0 + 90),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_outputs_are_sanitised_markdown_with_tool_calls_and_review() {
    let room = start().await;
    let run = failed_run("launch-1");
    let got = {
        let run = run.clone();
        respond(
            &room.bus,
            subjects::ORCHESTRATOR_GET_RUN,
            move |_: &v1::GetRunRequest| {
                Ok(v1::GetRunResponse {
                    run: Some(run.clone()),
                })
            },
        )
        .await
    };
    respond(
        &room.bus,
        subjects::ORCHESTRATOR_LIST_GATES,
        |_: &v1::ListGatesRequest| Ok(v1::ListGatesResponse::default()),
    )
    .await;
    let mut b = Browser::new(&room.base);
    b.sign_in(DIRECTOR).await;
    let (status, _, page) = b.get("/runs/launch-1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(taken(&got)[0].0.run_id, "launch-1");

    let copy = page
        .split("data-step-output=\"copy\">")
        .nth(1)
        .and_then(|s| s.split("</div>").next())
        .expect("the copy step's output block");
    assert!(copy.contains("<h1>Copy</h1>"), "{copy}");
    assert!(copy.contains("<pre><code>body { color: red }"), "{copy}");
    assert!(
        copy.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{copy}"
    );
    assert!(
        copy.contains("<img src=\"/library/api/items/abc/blob\" alt=\"board\">"),
        "{copy}"
    );
    for bad in [
        "<script",
        "javascript:",
        "evil.example",
        "<img src=\"x\"",
        "style=",
    ] {
        assert!(!copy.contains(bad), "{bad} in {copy}");
    }
    // The megabyte is cut and says so; the bomb is flattened.
    assert!(
        page.contains("data-step-output=\"announce\""),
        "the failed step's output"
    );
    assert!(
        page.contains("Showing the first 128 KB of 595 KB"),
        "the cut is said"
    );
    let deepest = page.matches("<blockquote>").count();
    assert!(deepest <= 16, "{deepest} nested quotes");
    assert!(page.len() < 600 * 1024, "the page is {} bytes", page.len());
    // The brief as the trigger's input; tool calls; the review.
    assert!(
        page.contains("<strong>launch</strong>"),
        "the brief as Markdown"
    );
    assert!(page.contains("<code>library_search</code>"), "{page}");
    assert!(page.contains("{&quot;query&quot;:&quot;&lt;b&gt;spring&lt;/b&gt;&quot;}"));
    assert!(page.contains("2 review rounds · last verdict <strong>pass</strong> · score 0.85"));
    assert!(page.contains("<em>tone</em>") && page.contains("on brand"));
    assert!(
        page.contains("href=\"#step-copy\""),
        "announce's input links to copy"
    );
    assert!(
        page.contains("href=\"#run-params\""),
        "copy's trigger input links to the brief"
    );
    // Times in the studio's zone, labelled.
    assert!(page.contains(">2026-03-10 09:00:00 CET</time>"), "{page}");
    // A reviewer who is not an admin sees no action.
    assert!(!page.contains("id=\"retry-failed\""));
    assert!(!page.contains("id=\"cancel\""));

    room.handle.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_actions_are_for_admins_with_a_form_token_and_send_the_right_requests() {
    let room = start().await;
    let live = v1::Run {
        run_id: "launch-2".into(),
        workflow: "launch".into(),
        state: v1::RunState::Running as i32,
        created_at: ts(T0),
        ..Default::default()
    };
    let failed = failed_run("launch-1x");
    let gets = respond(
        &room.bus,
        subjects::ORCHESTRATOR_GET_RUN,
        move |q: &v1::GetRunRequest| match q.run_id.as_str() {
            "launch-" => Err("invalid_argument: launch- is the start of 2 runs".into()),
            "launch-1x" => Ok(v1::GetRunResponse {
                run: Some(failed.clone()),
            }),
            "launch-2" | "launch-2a" => Ok(v1::GetRunResponse {
                run: Some(live.clone()),
            }),
            _ => Err(format!("not_found: no run {:?}", q.run_id)),
        },
    )
    .await;
    respond(
        &room.bus,
        subjects::ORCHESTRATOR_LIST_GATES,
        |_: &v1::ListGatesRequest| Ok(v1::ListGatesResponse::default()),
    )
    .await;
    respond(
        &room.bus,
        subjects::ORCHESTRATOR_LIST_RUNS,
        |_: &v1::ListRunsRequest| Ok(v1::ListRunsResponse::default()),
    )
    .await;
    let cancels = respond(
        &room.bus,
        subjects::ORCHESTRATOR_CANCEL_RUN,
        |q: &v1::CancelRunRequest| {
            Ok(v1::CancelRunResponse {
                run: Some(v1::Run {
                    run_id: q.run_id.clone(),
                    ..Default::default()
                }),
            })
        },
    )
    .await;
    let retries = respond(
        &room.bus,
        subjects::ORCHESTRATOR_RETRY_RUN,
        |q: &v1::RetryRunRequest| {
            if q.run_id == "launch-2" {
                Err(
                    "failed_precondition: run launch-2 is running; only an ended run is retried"
                        .into(),
                )
            } else {
                Ok(v1::RetryRunResponse {
                    run_id: format!("{}~retry1", q.run_id),
                })
            }
        },
    )
    .await;
    let mut starts = room
        .bus
        .subscribe_proto::<v1::StartRun>(subjects::RUN_START)
        .await
        .expect("subscribe run.start");

    let mut director = Browser::new(&room.base);
    director.sign_in(DIRECTOR).await;
    let mut ops = Browser::new(&room.base);
    ops.sign_in(OPS).await;

    // A reviewer who is not an admin: no start form, and a post is refused.
    let (_, _, runs) = director.get("/runs").await;
    assert!(!runs.contains("id=\"start-run\""), "{runs}");
    let csrf = Browser::csrf_of(&runs);
    for (path, form) in [
        (
            "/runs",
            vec![("csrf", csrf.as_str()), ("workflow", "launch")],
        ),
        ("/runs/launch-2/cancel", vec![("csrf", csrf.as_str())]),
        (
            "/runs/launch-1x/retry",
            vec![("csrf", csrf.as_str()), ("from", "failed")],
        ),
    ] {
        let (status, _, body) = director.post_form(path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.contains("needs the admin role"), "{body}");
    }

    // An admin sees the form; without the form token, refused.
    let (_, _, runs) = ops.get("/runs").await;
    for id in [
        "id=\"start-run\"",
        "id=\"start-workflow\"",
        "id=\"start-brief\"",
        "id=\"start-submit\"",
    ] {
        assert!(runs.contains(id), "{id} in {runs}");
    }
    let csrf = Browser::csrf_of(&runs);
    let (status, _, body) = ops.post_form("/runs", &[("workflow", "launch")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = ops
        .post_form("/runs", &[("csrf", "1.2.3"), ("workflow", "launch")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Bad input is refused with the reason.
    let (status, _, body) = ops
        .post_form("/runs", &[("csrf", &csrf), ("workflow", "nope")])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("No workflow"), "{body}");
    let (status, _, body) = ops
        .post_form(
            "/runs",
            &[
                ("csrf", &csrf),
                ("workflow", "launch"),
                ("params", "no value"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Started: the durable run.start, requested by the dashboard, with the brief.
    let (status, headers, body) = ops
        .post_form(
            "/runs",
            &[
                ("csrf", &csrf),
                ("workflow", "launch"),
                ("priority", "urgent"),
                ("brief", "Spring *launch*"),
                ("params", "audience=makers\n"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (start, _) = tokio::time::timeout(Duration::from_secs(10), starts.next())
        .await
        .expect("run.start in time")
        .expect("a run.start");
    assert_eq!(start.workflow, "launch");
    assert_eq!(start.requested_by, "dashboard:ops");
    assert_eq!(start.priority, v1::Priority::Urgent as i32);
    assert_eq!(start.params["brief"], "Spring *launch*");
    assert_eq!(start.params["audience"], "makers");
    assert!(
        start.run_id.starts_with("manual:launch@"),
        "{}",
        start.run_id
    );
    let to = headers[LOCATION].to_str().expect("text").to_string();
    assert!(
        to.starts_with("/runs/manual%3Alaunch%40") && to.ends_with("?started=1"),
        "{to}"
    );
    // Not known yet: the page says it is on its way, and waits for its events.
    let (status, _, page) = ops.get(&to).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{page}");
    assert!(page.contains("id=\"run-pending\""), "{page}");
    assert!(
        page.contains(&format!("data-run=\"{}\"", start.run_id)),
        "{page}"
    );

    // A live run: Cancel (no Retry); cancelled with the reviewer named.
    let (_, _, page) = ops.get("/runs/launch-2").await;
    assert!(page.contains("id=\"cancel\""), "{page}");
    assert!(!page.contains("id=\"retry-failed\""), "{page}");
    let (status, _, _) = ops.post_form("/runs/launch-2/cancel", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no form token");
    let (status, headers, body) = ops
        .post_form("/runs/launch-2/cancel", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[LOCATION], "/runs/launch-2");
    let c = taken(&cancels);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0.run_id, "launch-2");
    assert!(
        c[0].0.reason.contains("by ops on the dashboard"),
        "{:?}",
        c[0].0
    );
    assert_eq!(c[0].1.as_deref(), Some("ops"));

    // A failed run: both retries; each sends its request as the reviewer
    // and shows the new run.
    let (_, _, page) = ops.get("/runs/launch-1x").await;
    assert!(
        page.contains("id=\"retry-failed\"") && page.contains("id=\"retry-start\""),
        "{page}"
    );
    assert!(!page.contains("id=\"cancel\""), "{page}");
    for (from, from_start) in [("failed", false), ("start", true)] {
        let (status, headers, body) = ops
            .post_form("/runs/launch-1x/retry", &[("csrf", &csrf), ("from", from)])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(headers[LOCATION], "/runs/launch-1x~retry1?started=1");
        let (q, who) = taken(&retries).pop().expect("a retry request");
        assert_eq!((q.run_id.as_str(), q.from_start), ("launch-1x", from_start));
        assert_eq!(who.as_deref(), Some("ops"));
    }
    // The orchestrator's refusal is shown with its status.
    let (status, _, body) = ops
        .post_form(
            "/runs/launch-2/retry",
            &[("csrf", &csrf), ("from", "failed")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("only an ended run is retried"), "{body}");
    let (status, _, _) = ops
        .post_form(
            "/runs/launch-1x/retry",
            &[("csrf", &csrf), ("from", "middle")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Short ids: a unique prefix redirects to the run; an ambiguous one says so.
    let (status, headers, _) = ops.get("/runs/launch-2a").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/runs/launch-2");
    let (status, _, body) = ops.get("/runs/launch-").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("the start of 2 runs"), "{body}");
    assert!(taken(&gets).iter().any(|(q, _)| q.run_id == "launch-2a"));

    room.handle.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_passes_filters_search_and_pages_through() {
    let room = start().await;
    let lists = respond(
        &room.bus,
        subjects::ORCHESTRATOR_LIST_RUNS,
        |q: &v1::ListRunsRequest| {
            let run = |id: &str, state: v1::RunState| v1::Run {
                run_id: id.into(),
                workflow: "launch".into(),
                trigger: "morning_launch".into(),
                state: state as i32,
                created_at: ts(T0),
                ..Default::default()
            };
            Ok(if q.page_token.is_empty() {
                v1::ListRunsResponse {
                    runs: vec![
                        run("launch-9", v1::RunState::Running),
                        run("launch-8", v1::RunState::Failed),
                    ],
                    next_page_token: "tok-2".into(),
                }
            } else {
                v1::ListRunsResponse {
                    runs: vec![run("launch-7", v1::RunState::Succeeded)],
                    next_page_token: String::new(),
                }
            })
        },
    )
    .await;
    let mut b = Browser::new(&room.base);
    b.sign_in(DIRECTOR).await;

    // The first page: every row names its run, its state cell is marked, it
    // takes live updates, and the next page keeps the filters.
    let (status, _, page) = b
        .get("/runs?state=failed&workflow=launch&trigger=morning_launch&from=2026-03-10&to=2026-03-11&q=spring+sale")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (q, _) = taken(&lists).pop().expect("a list request");
    assert_eq!(q.state, v1::RunState::Failed as i32);
    assert_eq!(
        (q.workflow.as_str(), q.trigger.as_str()),
        ("launch", "morning_launch")
    );
    assert_eq!(q.query, "spring sale");
    assert_eq!(q.page_token, "");
    // Days in Madrid: from 2026-03-10 00:00 CET to the end of 2026-03-11.
    assert_eq!(q.since.map(|t| t.seconds), Some(T0 - 9 * 3600));
    assert_eq!(q.until.map(|t| t.seconds), Some(T0 - 9 * 3600 + 2 * 86_400));
    assert!(page.contains("<tr data-run=\"launch-9\""), "{page}");
    assert!(
        page.contains("<td class=\"run-state\" data-state=\"running\">"),
        "{page}"
    );
    assert!(page.contains("id=\"runs\" data-live=\"run\""), "{page}");
    assert!(page.contains("data-first-page=\"true\""), "{page}");
    assert!(
        page.contains("<option value=\"failed\" selected>"),
        "{page}"
    );
    assert!(page.contains("value=\"spring sale\""), "{page}");
    let next = page
        .split("id=\"runs-next\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("a next link")
        .replace("&amp;", "&");
    assert_eq!(
        next,
        "/runs?state=failed&workflow=launch&trigger=morning_launch&from=2026-03-10&to=2026-03-11&q=spring+sale&page=tok-2"
    );

    // The next page: the token passed on, no live reload (rows update in place).
    let (status, _, page) = b.get(&next).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (q, _) = taken(&lists).pop().expect("a list request");
    assert_eq!(q.page_token, "tok-2");
    assert_eq!(q.query, "spring sale");
    assert!(page.contains("data-run=\"launch-7\""), "{page}");
    assert!(page.contains("data-first-page=\"false\""), "{page}");
    assert!(!page.contains("id=\"runs\" data-live"), "{page}");
    assert!(page.contains("id=\"runs-first\""), "{page}");

    // A bad filter is said, and nothing is asked.
    let before = taken(&lists).len();
    let (status, _, page) = b.get("/runs?from=10%2F03%2F2026").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("is not a date (YYYY-MM-DD)"), "{page}");
    assert_eq!(taken(&lists).len(), before);

    room.handle.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_are_listed_in_the_studio_zone_and_fired_paused_and_resumed_by_admins() {
    let room = start().await;
    let trigger = |paused: bool| v1::Trigger {
        name: "morning_launch".into(),
        kind: "scheduled".into(),
        spec: "09:00".into(),
        workflow: "launch".into(),
        timezone: "Europe/Madrid".into(),
        next_fire: ts(T0 + 86_400),
        last_fire: ts(T0),
        fires: 12,
        missed: 1,
        paused,
        paused_by: if paused { "ops".into() } else { String::new() },
        paused_at: if paused { ts(T0 + 3600) } else { None },
        ..Default::default()
    };
    let paused_now = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lists = {
        let paused_now = paused_now.clone();
        respond(
            &room.bus,
            subjects::SCHEDULER_TRIGGERS,
            move |_: &v1::ListTriggersRequest| {
                Ok(v1::ListTriggersResponse {
                    triggers: vec![trigger(
                        paused_now.load(std::sync::atomic::Ordering::SeqCst),
                    )],
                })
            },
        )
        .await
    };
    let pauses = {
        let paused_now = paused_now.clone();
        respond(
            &room.bus,
            subjects::SCHEDULER_PAUSE,
            move |q: &v1::PauseTriggerRequest| {
                if q.name != "morning_launch" {
                    return Err(format!("not_found: no trigger {:?}", q.name));
                }
                paused_now.store(q.paused, std::sync::atomic::Ordering::SeqCst);
                Ok(v1::PauseTriggerResponse {
                    trigger: Some(trigger(q.paused)),
                })
            },
        )
        .await
    };
    let fires = respond(
        &room.bus,
        subjects::SCHEDULER_FIRE,
        |q: &v1::FireTriggerRequest| {
            Ok(v1::FireTriggerResponse {
                run_id: format!("{}@now", q.name),
            })
        },
    )
    .await;

    let mut director = Browser::new(&room.base);
    director.sign_in(DIRECTOR).await;
    let (status, _, page) = director.get("/triggers").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("href=\"/triggers\" aria-current=\"page\""),
        "in the nav"
    );
    assert!(
        page.contains("<tr data-trigger=\"morning_launch\" data-paused=\"false\">"),
        "{page}"
    );
    assert!(
        page.contains(">2026-03-11 09:00:00 CET</time>"),
        "next fire in Madrid: {page}"
    );
    assert!(
        page.contains(">2026-03-10 09:00:00 CET</time>"),
        "last fire: {page}"
    );
    assert!(
        page.contains("<td class=\"num\">12</td><td class=\"num\">1</td>"),
        "{page}"
    );
    assert!(
        !page.contains("data-action=\"fire\""),
        "no buttons for a reviewer"
    );
    let csrf = Browser::csrf_of(&page);
    let (status, _, _) = director
        .post_form(
            "/triggers/morning_launch/pause",
            &[("csrf", &csrf), ("paused", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = director
        .post_form("/triggers/morning_launch/fire", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(taken(&pauses).is_empty() && taken(&fires).is_empty());

    let mut ops = Browser::new(&room.base);
    ops.sign_in(OPS).await;
    let (_, _, page) = ops.get("/triggers").await;
    for b in ["data-action=\"fire\"", "data-action=\"pause\""] {
        assert!(page.contains(b), "{b} in {page}");
    }
    let csrf = Browser::csrf_of(&page);
    let (status, _, _) = ops
        .post_form("/triggers/morning_launch/pause", &[("paused", "true")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no form token");

    // Pause: the request names the reviewer; the page shows who and since when.
    let (status, headers, body) = ops
        .post_form(
            "/triggers/morning_launch/pause",
            &[("csrf", &csrf), ("paused", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let to = headers[LOCATION].to_str().expect("text").to_string();
    assert_eq!(to, "/triggers?done=paused&trigger=morning_launch");
    let (q, who) = taken(&pauses).pop().expect("a pause request");
    assert_eq!(
        (q.name.as_str(), q.paused, q.requested_by.as_str()),
        ("morning_launch", true, "ops")
    );
    assert_eq!(who.as_deref(), Some("ops"));
    let (_, _, page) = ops.get(&to).await;
    assert!(page.contains("id=\"trigger-done\""), "{page}");
    assert!(page.contains("data-paused=\"true\""), "{page}");
    assert!(page.contains("paused</span> by ops since <time"), "{page}");
    assert!(page.contains(">2026-03-10 10:00:00 CET</time>"), "{page}");
    assert!(page.contains("data-action=\"resume\""), "{page}");

    // Resume.
    let (status, _, _) = ops
        .post_form(
            "/triggers/morning_launch/pause",
            &[("csrf", &csrf), ("paused", "false")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (q, _) = taken(&pauses).pop().expect("a resume request");
    assert!(!q.paused);
    let (_, _, page) = ops.get("/triggers").await;
    assert!(page.contains("data-paused=\"false\""), "{page}");

    // Fire now: the run it started is shown.
    let (status, headers, _) = ops
        .post_form("/triggers/morning_launch/fire", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/runs/morning_launch%40now?started=1");
    let (q, who) = taken(&fires).pop().expect("a fire request");
    assert_eq!(
        (q.name.as_str(), who.as_deref()),
        ("morning_launch", Some("ops"))
    );

    // A refusal is shown with its status; a bad value is refused.
    let (status, _, body) = ops
        .post_form(
            "/triggers/nope/pause",
            &[("csrf", &csrf), ("paused", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("No trigger"), "{body}");
    let (status, _, _) = ops
        .post_form(
            "/triggers/morning_launch/pause",
            &[("csrf", &csrf), ("paused", "maybe")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(taken(&lists).len() >= 4);

    room.handle.stop().await.expect("stop");
}
