//! A month of the example studio on a controlled clock, end to end (issue 15's
//! done-when): a real nats-server, the services as one `concierto serve`
//! process and every role's builtin worker as one `concierto agent
//! --all-roles` process, all reading the time from `CONCIERTO_CLOCK_FILE`.
//!
//! The studio is a copy of `examples/studio` whose content sources point at
//! local things (folders of sample files, an analytics CSV with one campaign
//! under 0.05 engagement, a processed-feedback folder, the `siteinspire` feed
//! served by this test) and whose two people have tokens; every seed key and
//! value is kept (the demo trigger is left out: it is not the seed's, and it
//! would fire at every instant the test writes).
//!
//! The test walks 28 days from Monday 2027-02-01 00:00 UTC, one fire instant
//! at a time (the earliest `next_fire` of the scheduled triggers, or the end
//! of the hour whose new inspiration waits in a batch window), checks each due
//! trigger fired at that very instant, approves every gate as its reviewer
//! and, before moving on, waits until every run the fires started has finished
//! and the scheduler and tracker have handled every event (the clock stands
//! still meanwhile, so no step times out). On the tenth day the feed serves
//! 200 new items. About three minutes: the scheduler looks at the clock once
//! a second, and the walk has 174 instants.
//! At the end: the seed's three schedules fired exactly as their schedules say,
//! the analytics file's low engagement started `content-optimization`,
//! `daily_output` below target started its catch-up run, every role of the
//! example got a task, both review loops reviewed, the burst made at most
//! `max_runs_per_day` runs and gates, and no run is left unfinished.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use concierto_bus::{Bus, BusExt};
use concierto_core::subjects;
use concierto_e2e::{Sandbox, concierto_bin, eventually, get_run, list_runs};
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use tonic::transport::Channel;

mod month_common;
use month_common::{
    BRAND, CREATIVE, Entries, LOW_CAMPAIGN_DATE, assert_seed_kept, entries, example_roles,
    feed_server, write_studio,
};

/// The seed's scheduled triggers.
const DAILY: &str = "daily_content_generation";
const WEEKLY: &str = "weekly_trend_analysis";
const SIX_HOURLY: &str = "continuous_optimization";
/// The seed's event triggers.
const INSPIRATION: &str = "on_new_inspiration";
const THRESHOLD: &str = "on_performance_threshold";

/// Monday 2027-02-01 00:00 UTC.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0).unwrap()
}
/// How many days the test walks.
const DAYS: i64 = 28;
fn end() -> DateTime<Utc> {
    start() + chrono::Duration::days(DAYS)
}
/// The day (from 0) the feed serves 200 new items.
const BURST_DAY: i64 = 9;
const BURST_ITEMS: usize = 200;
/// Items the feed serves from the start.
const FIRST_ITEMS: usize = 3;

/// Waits: for a fire after the clock moved, for the runs to finish.
const FIRE_WITHIN: Duration = Duration::from_secs(20);
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A trigger's next and last fire.
fn fires_of(t: &v1::Trigger) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let time =
        |ts: Option<&_>| ts.map(|t| DateTime::<Utc>::from(concierto_proto::time::system_time(t)));
    (time(t.next_fire.as_ref()), time(t.last_fire.as_ref()))
}

// ---------------------------------------------------------------------------
// What the test sees on the bus
// ---------------------------------------------------------------------------

/// Run, gate and content events, as they happen.
#[derive(Default)]
struct Seen {
    /// Per run: the sequence and run state of its newest event.
    runs: HashMap<String, (u64, i32)>,
    /// Gates opened (alone or leading a batch) not yet decided by the test.
    to_decide: Vec<v1::Gate>,
    /// Every gate event: (kind, run id, gate id).
    gate_events: Vec<(String, String, String)>,
    /// Items announced per content source.
    ingested: HashMap<String, usize>,
}

impl Seen {
    /// Runs not finished, with their state.
    fn active(&self) -> Vec<(String, v1::RunState)> {
        let mut out: Vec<(String, v1::RunState)> = self
            .runs
            .iter()
            .filter_map(|(id, (_, state))| {
                let s = v1::RunState::try_from(*state).unwrap_or(v1::RunState::Unspecified);
                matches!(
                    s,
                    v1::RunState::Pending | v1::RunState::Running | v1::RunState::WaitingGate
                )
                .then(|| (id.clone(), s))
            })
            .collect();
        out.sort();
        out
    }

    /// Runs a trigger started (every run but the review loops' batch runs).
    fn fired_runs(&self) -> u64 {
        self.runs
            .keys()
            .filter(|id| !id.starts_with("review-batch:"))
            .count() as u64
    }
}

async fn watch(bus: &Arc<dyn Bus>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut runs = bus
        .subscribe_proto::<v1::RunEvent>(subjects::RUN_EVENTS)
        .await
        .unwrap();
    let mut gates = bus
        .subscribe_proto::<v1::Gate>(subjects::GATE_EVENTS)
        .await
        .unwrap();
    let mut items = bus
        .subscribe_proto::<v1::ContentItem>(subjects::CONTENT_INGESTED)
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some((ev, _)) = runs.next().await {
            let mut s = s.lock().unwrap();
            let e = s.runs.entry(ev.run_id.clone()).or_insert((0, 0));
            if ev.seq >= e.0 {
                *e = (ev.seq, ev.run_state);
            }
        }
    });
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some((gate, msg)) = gates.next().await {
            let kind = msg
                .subject
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string();
            let req = gate.request.clone().unwrap_or_default();
            let mut s = s.lock().unwrap();
            s.gate_events
                .push((kind.clone(), req.run_id.clone(), req.gate_id.clone()));
            if kind == "opened" && gate.batch_of.is_empty() {
                s.to_decide.push(gate);
            }
        }
    });
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some((item, _)) = items.next().await {
            *s.lock().unwrap().ingested.entry(item.source).or_default() += 1;
        }
    });
    seen
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Writes the instant every process reads as "now" (atomically: temp file, rename).
fn set_clock(file: &Path, t: DateTime<Utc>) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", rfc(t))).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// The running studio, as the test drives it.
struct Month {
    sb: Sandbox,
    bus: Arc<dyn Bus>,
    admin: AdminServiceClient<Channel>,
    seen: Arc<Mutex<Seen>>,
    clock: PathBuf,
    /// Gates the test decided: (gate id, reviewer).
    decided: Vec<(String, String)>,
    /// Entries the feed serves.
    feed_items: usize,
    /// Stream `EVENTS`, whose consumers say what the scheduler and tracker
    /// have still to handle.
    events: async_nats::jetstream::stream::Stream,
}

impl Month {
    fn fail(&self, what: String) -> ! {
        let logs = ["services", "agents"]
            .iter()
            .map(|n| {
                format!(
                    "----- {n} (last lines) -----\n{}",
                    tail(&self.sb.procs_log(n), 80)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        panic!("{what}\n{logs}");
    }

    async fn triggers(&self) -> Vec<v1::Trigger> {
        for _ in 0..50 {
            match self
                .bus
                .request_proto::<_, v1::ListTriggersResponse>(
                    subjects::SCHEDULER_TRIGGERS,
                    &v1::ListTriggersRequest {},
                    Duration::from_secs(5),
                )
                .await
            {
                Ok(r) => return r.triggers,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        self.fail("the scheduler does not answer scheduler.triggers".into())
    }

    fn authorized<T>(msg: T, token: &str) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        r
    }

    /// Every gate in `state` (all states when unspecified), for `run_id` or all runs.
    async fn gates(&mut self, state: v1::GateState, run_id: &str) -> Vec<v1::Gate> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = v1::ListGatesRequest {
                state: state as i32,
                run_id: run_id.to_string(),
                page_size: 500,
                page_token: token.clone(),
            };
            let page = match self.admin.list_gates(Self::authorized(req, BRAND)).await {
                Ok(p) => p.into_inner(),
                Err(e) => self.fail(format!("ListGates: {e}")),
            };
            out.extend(page.gates);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    /// Approves `gate` as the reviewer it lists.
    async fn approve(&mut self, gate: &v1::Gate) {
        let req = gate.request.clone().unwrap_or_default();
        let reviewer = req.reviewers.first().cloned().unwrap_or_default();
        let token = match reviewer.as_str() {
            "brand_manager" => BRAND,
            "creative_director" => CREATIVE,
            other => self.fail(format!("gate {} lists reviewer {other:?}", req.gate_id)),
        };
        let decide = v1::DecideGateRequest {
            gate_id: req.gate_id.clone(),
            decision: v1::GateDecisionKind::Approve as i32,
            notes: "Approved in the month test.".into(),
        };
        match self
            .admin
            .decide_gate(Self::authorized(decide, token))
            .await
        {
            Ok(_) => self.decided.push((req.gate_id, reviewer)),
            Err(e) => {
                // Decided meanwhile (its batch's decision, or its run ended): fine.
                let get = v1::GetGateRequest {
                    gate_id: req.gate_id.clone(),
                };
                let now = self.admin.get_gate(Self::authorized(get, token)).await;
                let open = now
                    .as_ref()
                    .ok()
                    .and_then(|g| g.get_ref().gate.as_ref())
                    .is_some_and(|g| g.state() == v1::GateState::Open);
                if open {
                    self.fail(format!(
                        "{reviewer} could not approve gate {}: {e}",
                        req.gate_id
                    ));
                }
            }
        }
    }

    /// Approves the gates opened since the last call; with `listed`, also
    /// every open gate the orchestrator lists (an event may come late).
    async fn decide_gates(&mut self, listed: bool) {
        let mut gates = std::mem::take(&mut self.seen.lock().unwrap().to_decide);
        if listed {
            gates.extend(
                self.gates(v1::GateState::Open, "")
                    .await
                    .into_iter()
                    .filter(|g| g.batch_of.is_empty()),
            );
        }
        for g in gates {
            self.approve(&g).await;
        }
    }

    /// Waits until each trigger of `due` fired once more, its last fire at
    /// `at`, and no other scheduled trigger fired or missed a fire.
    async fn fired_on_time(
        &self,
        at: DateTime<Utc>,
        before: &[v1::Trigger],
        due: &[(String, u64)],
    ) {
        let deadline = Instant::now() + FIRE_WITHIN;
        loop {
            let now = self.triggers().await;
            let done = due.iter().all(|(name, fires)| {
                now.iter()
                    .any(|t| &t.name == name && t.fires == fires + 1 && fires_of(t).1 == Some(at))
            });
            if done {
                for t in now.iter().filter(|t| t.kind == "scheduled") {
                    assert_eq!(
                        t.missed,
                        0,
                        "{} missed a fire by {}: {t:?}",
                        t.name,
                        rfc(at)
                    );
                    if !due.iter().any(|(n, _)| n == &t.name) {
                        let was = before.iter().find(|b| b.name == t.name).map(|b| b.fires);
                        assert_eq!(
                            Some(t.fires),
                            was,
                            "{} fired at {} though not due",
                            t.name,
                            rfc(at)
                        );
                    }
                }
                return;
            }
            if Instant::now() > deadline {
                let state: Vec<String> = now
                    .iter()
                    .filter(|t| due.iter().any(|(n, _)| n == &t.name))
                    .map(|t| format!("{} fires {} last {:?}", t.name, t.fires, fires_of(t).1))
                    .collect();
                self.fail(format!(
                    "the scheduler did not fire {due:?} at {} within {FIRE_WITHIN:?}: {state:?}",
                    rfc(at)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Events the scheduler and the tracker have not handled yet, per
    /// durable consumer of stream `EVENTS` (`None`: not known yet).
    async fn backlog(&self) -> Option<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for name in [
            concierto_scheduler::CONTENT_DURABLE,
            concierto_scheduler::METRICS_DURABLE,
            "tracker",
            "tracker-runs",
        ] {
            let info = self.events.consumer_info(name).await.ok()?;
            let left = info.num_pending + info.num_ack_pending as u64;
            if left > 0 {
                out.push((name, left));
            }
        }
        Some(out)
    }

    /// Waits until every run the triggers started so far has started and
    /// finished and the scheduler and tracker have handled every event,
    /// approving gates on the way; fails naming what did not.
    async fn settle(&mut self, at: &str) {
        let deadline = Instant::now() + SETTLE_WITHIN;
        let mut quiet = 0;
        let mut waiting_since: Option<Instant> = None;
        loop {
            let listed = waiting_since.is_some_and(|t| t.elapsed() > Duration::from_secs(1));
            if listed {
                waiting_since = None;
            }
            self.decide_gates(listed).await;
            let fires: u64 = self.triggers().await.iter().map(|t| t.fires).sum();
            let (active, started, items) = {
                let s = self.seen.lock().unwrap();
                let items = s.ingested.get("siteinspire").copied().unwrap_or(0);
                (s.active(), s.fired_runs(), items)
            };
            // The feed is read whole or not yet: a read under way is waited for.
            let read = items == FIRST_ITEMS || items >= self.feed_items;
            let mut backlog = None;
            if active.is_empty() && started >= fires && read {
                backlog = self.backlog().await;
            }
            if backlog.as_ref().is_some_and(Vec::is_empty) {
                quiet += 1;
                if quiet >= 3 {
                    return;
                }
            } else {
                quiet = 0;
            }
            if active.iter().any(|(_, s)| *s == v1::RunState::WaitingGate) {
                waiting_since.get_or_insert_with(Instant::now);
            }
            if Instant::now() > deadline {
                let backlog = self.backlog().await;
                let mut why = format!(
                    "at {at}: not settled after {SETTLE_WITHIN:?} ({started} of {fires} fired runs seen, {items} of {} feed items announced, events not handled: {backlog:?}); runs not finished:\n",
                    self.feed_items
                );
                for (id, state) in &active {
                    why.push_str(&format!("- {id}: {state:?}\n"));
                    if let Some(run) = get_run(&self.bus, id).await {
                        for s in run.steps.iter().filter(|s| {
                            !matches!(
                                s.state(),
                                v1::StepState::Succeeded
                                    | v1::StepState::Skipped
                                    | v1::StepState::Cancelled
                            )
                        }) {
                            why.push_str(&format!(
                                "    step {} ({}): {:?}, attempt {}, {}\n",
                                s.step_id,
                                s.role,
                                s.state(),
                                s.attempt,
                                s.error
                            ));
                        }
                    }
                }
                self.fail(why);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `hour`:00 in Europe/Madrid on every day (or every `weekday`) of the walk,
/// in UTC: what the daily and weekly seed schedules say.
fn madrid(hour: u32, weekday: Option<chrono::Weekday>) -> Vec<DateTime<Utc>> {
    use chrono::Datelike;
    let tz = chrono_tz::Europe::Madrid;
    let mut out = Vec::new();
    let mut day = start().date_naive().pred_opt().unwrap();
    while day <= end().date_naive() {
        if weekday.is_none_or(|w| day.weekday() == w) {
            let local = day.and_hms_opt(hour, 0, 0).unwrap();
            let t = tz
                .from_local_datetime(&local)
                .single()
                .unwrap()
                .with_timezone(&Utc);
            if t > start() && t <= end() {
                out.push(t);
            }
        }
        day = day.succ_opt().unwrap();
    }
    out
}

/// Every multiple of six hours since the Unix epoch in the walk.
fn every_six_hours() -> Vec<DateTime<Utc>> {
    let step = 6 * 3600;
    let first = (start().timestamp().div_euclid(step) + 1) * step;
    (0..)
        .map(|k| Utc.timestamp_opt(first + k * step, 0).unwrap())
        .take_while(|t| *t <= end())
        .collect()
}

/// The window start in an `on_new_inspiration@<window start>` run id.
fn window_of(run_id: &str) -> Option<DateTime<Utc>> {
    let at = run_id.strip_prefix(&format!("{INSPIRATION}@"))?;
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The copy the month runs on is the example studio: every seed key and
/// value kept, only locations, the feed's private-network switch and tokens
/// changed, and it validates.
#[test]
fn the_copy_is_the_example_studio_with_local_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_studio(dir.path(), "http://127.0.0.1:9/feed");
    assert_seed_kept(&file);
    let studio = concierto_core::config::load_with_env(&file, Vec::new()).unwrap();
    let feed = studio
        .content_sources
        .iter()
        .find(|s| s.name == "siteinspire")
        .unwrap();
    assert_eq!(feed.location, "http://127.0.0.1:9/feed");
    assert!(feed.allow_private_networks);
    for s in &studio.content_sources {
        assert!(
            !s.location.starts_with("/content")
                && !s.location.starts_with("/analytics")
                && !s.location.starts_with("/feedback"),
            "{} still points at {}",
            s.name,
            s.location
        );
    }
    for who in ["brand_manager", "creative_director"] {
        assert!(
            studio.reviewers[who].token_sha256.is_some(),
            "{who} has a token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_month_of_the_example_studio_on_a_controlled_clock() {
    let began = Instant::now();
    let feed: Entries = Arc::new(Mutex::new(entries(0..FIRST_ITEMS)));
    let feed_url = feed_server(feed.clone()).await;
    let port = || concierto_testkit::free_port().expect("a free port");
    let (grpc, http, library) = (
        format!("127.0.0.1:{}", port()),
        format!("127.0.0.1:{}", port()),
        format!("127.0.0.1:{}", port()),
    );
    let mut sb = Sandbox::new(&[
        ("CONCIERTO__SERVER__GRPC_ADDR", grpc.as_str()),
        ("CONCIERTO__SERVER__HTTP_ADDR", http.as_str()),
        ("CONCIERTO__SERVER__LIBRARY_ADDR", library.as_str()),
    ]);

    // 1. The example studio, its sources local, validated as a user would.
    let file = write_studio(sb.dir(), &feed_url);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("timezone: \"Europe/Madrid\""), "{text}");
    let out = std::process::Command::new(concierto_bin())
        .args(["validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "concierto validate refused the copy:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_seed_kept(&file);
    sb.use_studio(file);

    // 2. Every process on the clock file, at Monday 00:00 UTC.
    let clock = sb.dir().join("clock");
    set_clock(&clock, start());
    let bus = sb.client().await;
    let seen = watch(&bus).await;
    let clock_env = [("CONCIERTO_CLOCK_FILE", clock.to_str().unwrap())];
    // The ingester last: the scheduler's and tracker's consumers exist before
    // its first announcements.
    sb.spawn_with(
        "services",
        &[
            "serve",
            "orchestrator",
            "scheduler",
            "tracker",
            "publisher",
            "feedback",
            "feedback-router",
            "admin",
            "ingest",
        ],
        &clock_env,
        None,
    );
    sb.spawn_with("agents", &["agent", "--all-roles"], &clock_env, None);
    let admin = eventually(Duration::from_secs(60), "the admin API", || async {
        AdminServiceClient::connect(format!("http://{grpc}"))
            .await
            .ok()
    })
    .await;
    let js = async_nats::jetstream::new(
        async_nats::connect(sb.nats.url())
            .await
            .expect("a JetStream client"),
    );
    let events = js
        .get_stream("CONCIERTO_EVENTS")
        .await
        .expect("stream EVENTS");
    let mut m = Month {
        events,
        sb,
        bus,
        admin,
        seen,
        clock,
        decided: Vec::new(),
        feed_items: FIRST_ITEMS,
    };
    m.triggers().await;

    // What the first reads of the sources start: the analytics file's low
    // engagement crosses the threshold at the record's time.
    let threshold_run = format!("{THRESHOLD}@engagement_rate@{LOW_CAMPAIGN_DATE}T00:00:00Z");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (started, items) = {
            let s = m.seen.lock().unwrap();
            (s.runs.contains_key(&threshold_run), s.ingested.clone())
        };
        if started && items.get("siteinspire").copied().unwrap_or(0) >= FIRST_ITEMS {
            break;
        }
        if Instant::now() > deadline {
            m.fail(format!(
                "the first reads: run {threshold_run} seen: {started}; items announced: {items:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    m.settle("the start").await;

    // 3. The month, one fire instant at a time.
    let mut fired: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut steps = 0;
    let mut now = start();
    let burst_day = start() + chrono::Duration::days(BURST_DAY);
    let mut burst_served = false;
    let mut burst_seen_at: Option<DateTime<Utc>> = None;
    let mut most_batched = 0;
    loop {
        let before = m.triggers().await;
        if let Some(t) = before.iter().find(|t| t.name == INSPIRATION) {
            most_batched = most_batched.max(t.batched);
        }
        // The next scheduled fire, or the end of the hour whose new
        // inspiration waits in a batch window (windows are whole hours, UTC).
        let mut next = before
            .iter()
            .filter(|t| t.kind == "scheduled")
            .filter_map(|t| fires_of(t).0)
            .min();
        let window_end = before
            .iter()
            .any(|t| t.name == INSPIRATION && t.batched > 0)
            .then(|| {
                Utc.timestamp_opt((now.timestamp().div_euclid(3600) + 1) * 3600, 0)
                    .unwrap()
            });
        if let Some(w) = window_end {
            next = next.map(|n| n.min(w)).or(Some(w));
        }
        let Some(next) = next.filter(|n| *n <= end()) else {
            break;
        };
        if !burst_served && next >= burst_day {
            feed.lock()
                .unwrap()
                .extend(entries(FIRST_ITEMS..FIRST_ITEMS + BURST_ITEMS));
            m.feed_items = FIRST_ITEMS + BURST_ITEMS;
            burst_served = true;
        }
        let due: Vec<(String, u64)> = before
            .iter()
            .filter(|t| {
                (t.kind == "scheduled" && fires_of(t).0 == Some(next))
                    || (t.name == INSPIRATION && window_end == Some(next))
            })
            .map(|t| (t.name.clone(), t.fires))
            .collect();
        set_clock(&m.clock, next);
        now = next;
        steps += 1;
        m.fired_on_time(next, &before, &due).await;
        for (name, _) in &due {
            fired.entry(name.clone()).or_default().push(next);
        }
        m.settle(&rfc(next)).await;
        if burst_served && burst_seen_at.is_none() {
            let n = m.seen.lock().unwrap().ingested.get("siteinspire").copied();
            if n >= Some(FIRST_ITEMS + BURST_ITEMS) {
                burst_seen_at = Some(next);
            }
        }
    }
    let walked = began.elapsed();

    // 4. The end: every run finished.
    m.settle("the end").await;
    let runs = list_runs(&m.bus)
        .await
        .expect("the orchestrator lists its runs");
    let unfinished: Vec<String> = runs
        .iter()
        .filter(|r| {
            matches!(
                r.state(),
                v1::RunState::Pending | v1::RunState::Running | v1::RunState::WaitingGate
            )
        })
        .map(|r| format!("{} {:?}", r.run_id, r.state()))
        .collect();
    assert!(
        unfinished.is_empty(),
        "runs left unfinished: {unfinished:?}"
    );
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.state() != v1::RunState::Succeeded)
        .map(|r| format!("{} {:?}: {}", r.run_id, r.state(), r.error))
        .collect();
    assert!(failed.is_empty(), "runs that did not succeed: {failed:#?}");
    // The clock moved only while nothing ran: no step timed out or was retried.
    let retried: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.steps
                .iter()
                .filter(|s| s.attempt > 1)
                .map(move |s| format!("{}/{} attempt {}", r.run_id, s.step_id, s.attempt))
        })
        .collect();
    assert!(
        retried.is_empty(),
        "steps that took more than one attempt: {retried:?}"
    );

    // Every seed schedule fired exactly as its schedule says, each at its instant.
    let expected = [
        (DAILY, madrid(9, None)),
        (WEEKLY, madrid(10, Some(chrono::Weekday::Mon))),
        (SIX_HOURLY, every_six_hours()),
    ];
    let triggers = m.triggers().await;
    for (name, want) in &expected {
        let got = fired.get(*name).cloned().unwrap_or_default();
        assert_eq!(
            got.iter().map(|t| rfc(*t)).collect::<Vec<_>>(),
            want.iter().map(|t| rfc(*t)).collect::<Vec<_>>(),
            "{name} fired at other instants than its schedule's"
        );
        let t = triggers.iter().find(|t| t.name == *name).unwrap();
        assert_eq!(t.fires, want.len() as u64, "{t:?}");
        assert_eq!(t.missed, 0, "{t:?}");
        for at in want {
            let id = format!("{name}@{}", rfc(*at));
            assert!(
                runs.iter().any(|r| r.run_id == id),
                "no run {id} in the orchestrator"
            );
        }
    }
    assert_eq!(
        [28, 4, 112].map(|n| n as usize),
        expected.clone().map(|(_, w)| w.len()),
        "28 days from a Monday: 28 daily, 4 Monday and 112 six-hourly fires"
    );

    // The analytics file's low engagement started content-optimization.
    let run = runs
        .iter()
        .find(|r| r.run_id == threshold_run)
        .expect("the threshold run");
    assert_eq!(run.workflow, "content-optimization");
    assert_eq!(run.trigger, THRESHOLD);
    assert_eq!(run.priority(), v1::Priority::Urgent);
    let threshold_runs: Vec<&str> = runs
        .iter()
        .filter(|r| r.trigger == THRESHOLD)
        .map(|r| r.run_id.as_str())
        .collect();
    assert_eq!(
        threshold_runs,
        [threshold_run.as_str()],
        "one episode, one run"
    );

    // daily_output below its target started the catch-up pipeline.
    let catch_up: Vec<&v1::Run> = runs
        .iter()
        .filter(|r| r.run_id.starts_with("target:daily_output@"))
        .collect();
    assert!(
        !catch_up.is_empty(),
        "no target:daily_output@ run: {:?}",
        runs.iter().map(|r| &r.run_id).collect::<Vec<_>>()
    );
    for r in &catch_up {
        assert_eq!(r.workflow, "daily-content-pipeline", "{}", r.run_id);
    }

    // Every role of the example got at least one task.
    let mut worked: BTreeMap<String, usize> = BTreeMap::new();
    for r in &runs {
        for s in r
            .steps
            .iter()
            .filter(|s| s.state() == v1::StepState::Succeeded)
        {
            *worked.entry(s.role.clone()).or_default() += 1;
        }
    }
    let idle: Vec<String> = example_roles()
        .into_iter()
        .filter(|r| !worked.contains_key(r))
        .collect();
    assert!(
        idle.is_empty(),
        "roles without a task: {idle:?}; tasks done: {worked:?}"
    );

    // Both loops reviewed: creator_to_reviewer at once, experimenter_to_optimizer in batches.
    let reviews: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| s.step_id.contains("/review-") && s.state() == v1::StepState::Succeeded)
        .map(|s| s.role.as_str())
        .collect();
    for role in ["brand-guardian", "test-writer-fixer"] {
        assert!(
            reviews.contains(role),
            "no creator_to_reviewer review by {role}: {reviews:?}"
        );
    }
    let batches: Vec<&v1::Run> = runs
        .iter()
        .filter(|r| {
            r.run_id
                .starts_with("review-batch:experimenter_to_optimizer@")
        })
        .collect();
    assert!(
        !batches.is_empty(),
        "no experimenter_to_optimizer batch review"
    );
    let batch_roles: BTreeSet<&str> = batches
        .iter()
        .flat_map(|r| &r.steps)
        .map(|s| s.role.as_str())
        .collect();
    assert_eq!(
        batch_roles,
        BTreeSet::from(["analytics-reporter", "workflow-optimizer"])
    );
    let diagnose = run
        .steps
        .iter()
        .find(|s| s.step_id == "diagnose")
        .expect("the diagnose step");
    assert!(
        diagnose.review_rounds >= 1 && diagnose.verdict.is_some(),
        "the batch's verdict on the urgent run's diagnosis is recorded: {diagnose:?}"
    );

    // The burst: 200 items, at most max_runs_per_day runs and gates that day.
    let burst_at = burst_seen_at.expect("the 200 new feed items were announced");
    let burst_date: NaiveDate = burst_at.date_naive();
    let that_day: Vec<&v1::Run> = runs
        .iter()
        .filter(|r| window_of(&r.run_id).is_some_and(|w| w.date_naive() == burst_date))
        .collect();
    assert!(!that_day.is_empty(), "no inspiration run on {burst_date}");
    assert!(
        that_day.len() <= 8,
        "{} inspiration runs on {burst_date}",
        that_day.len()
    );
    let mut gates_that_day = 0;
    for r in &that_day {
        assert_eq!(r.workflow, "inspiration-to-concept");
        gates_that_day += m
            .gates(v1::GateState::Unspecified, &r.run_id)
            .await
            .iter()
            .filter(|g| g.batch_of.is_empty())
            .count();
    }
    let opened = m
        .seen
        .lock()
        .unwrap()
        .gate_events
        .iter()
        .filter(|(kind, run, _)| kind == "opened" && that_day.iter().any(|r| &r.run_id == run))
        .count();
    assert!(gates_that_day >= 1, "the burst's runs opened no brand gate");
    assert!(
        gates_that_day <= 8 && opened <= 8,
        "{gates_that_day} gates ({opened} opened events) on {burst_date}"
    );
    let inspiration = triggers.iter().find(|t| t.name == INSPIRATION).unwrap();
    // The 200 items waited in batch windows, none dropped.
    assert!(
        most_batched >= BURST_ITEMS as u32,
        "at most {most_batched} items waited in on_new_inspiration's windows"
    );
    assert_eq!(inspiration.dropped, 0, "{inspiration:?}");
    // Each batch window fired at its end (the test stepped to it).
    let window_fires = fired.get(INSPIRATION).cloned().unwrap_or_default();
    assert_eq!(
        window_fires.len() as u64,
        inspiration.fires,
        "{window_fires:?}"
    );
    for r in runs.iter().filter(|r| r.trigger == INSPIRATION) {
        let w = window_of(&r.run_id).expect("a batch run id");
        assert!(
            window_fires.contains(&(w + chrono::Duration::hours(1))),
            "{} did not fire at its window's end: {window_fires:?}",
            r.run_id
        );
    }
    let per_day = runs.iter().filter_map(|r| window_of(&r.run_id)).fold(
        BTreeMap::<NaiveDate, usize>::new(),
        |mut m, w| {
            *m.entry(w.date_naive()).or_default() += 1;
            m
        },
    );
    assert!(
        per_day.values().all(|n| *n <= 8),
        "inspiration runs per day: {per_day:?}"
    );

    // Every gate was decided by a person it lists, none by the SLA policy.
    let gates = m.gates(v1::GateState::Unspecified, "").await;
    for g in &gates {
        let req = g.request.clone().unwrap_or_default();
        assert_eq!(g.state(), v1::GateState::Approved, "{g:?}");
        let d = g.decisions.last().expect("a decision");
        assert!(!d.automatic && req.reviewers.contains(&d.reviewer), "{g:?}");
    }

    eprintln!(
        "a month in {walked:?} ({:?} in all): {steps} clock steps, {} runs, {} gates ({} decided by the test), inspiration runs per day {per_day:?} (trigger: {} fires, {} dropped, at most {most_batched} items batched), burst seen at {}, catch-up runs {:?}, tasks per role {worked:?}",
        began.elapsed(),
        runs.len(),
        gates.len(),
        m.decided.len(),
        inspiration.fires,
        inspiration.dropped,
        rfc(burst_at),
        catch_up.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
    );
}
