//! `concierto bench`: how many workflows a studio runs per second on this
//! machine, how long one takes, and what the nats-server under it gives, all
//! in one run and on one server.
//!
//! ```text
//! nats-server -js (started here, or --nats)
//!   1. floors: async-nats alone (request/reply, JetStream publish + consume)
//!   2. per size N, a fresh data folder and fresh processes of this binary:
//!        serve orchestrator │ serve admin │ agent --role bench-noop
//!      1 run, then --warm-up (1,000) at once to warm them up, not measured,
//!      then a wait (≤ 5 s) until they and the nats-server are idle
//!   (sizes interleaved, --rounds times; each size's median round reported)
//!      N × StartRun over the admin gRPC API (--in-flight at once)
//!      ─▶ `run.event.>` on the bus: each run's terminal event, once per run id
//!      ─▶ workflows/s, steps/s, CPU per workflow (/proc/<pid>/stat)
//!   3. latency: --latency-runs runs one after the other (StartRun → its end)
//! ```
//!
//! The studio is generated in a temporary folder: one workflow of three steps
//! in a row, each done by the `builtin` executor with `builtin.noop` (returns
//! at once, no process spawned), so what is measured is Concierto's own cost:
//! admin API, bus, orchestrator (its store flushed before every publish) and
//! workers. The admin token is random, made for this run. A measurement tool
//! only: nothing here judges the figures.

mod floors;
mod procs;
mod report;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use concierto_bus::{BusExt as _, NatsBus, redact_url};
use concierto_core::subjects;
use concierto_proto::v1;
use futures::StreamExt as _;
use tokio::sync::watch;

use crate::client::{AdminClient, ConnArgs};
use floors::{FloorSizes, rate};
use procs::Proc;
use report::{Setup, table, to_json};

/// The generated workflow.
const WORKFLOW: &str = "bench";
/// Its steps, in order.
const STEPS: [&str; 3] = ["one", "two", "three"];
/// The one role of the generated studio.
const ROLE: &str = "bench-noop";
/// With no new terminal event for this long, the runs not seen ending are
/// asked for over the admin API (an event can be lost to a slow consumer).
const STALL: Duration = Duration::from_secs(10);
/// Longest wait for the services to answer after they start.
const READY: Duration = Duration::from_secs(90);
/// How long a service may take to stop.
const STOP: Duration = Duration::from_secs(15);
/// Longest wait for the services to go idle after the warm-up.
const QUIET_WITHIN: Duration = Duration::from_secs(5);
/// How often the services' CPU is read while waiting for them to go idle.
const QUIET_STEP: Duration = Duration::from_millis(100);
/// The most workflows (or round trips, messages) one measurement does:
/// bounds what the bench keeps in memory per size.
const MAX_SIZE: usize = 1_000_000;

/// `concierto bench`'s flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Use this NATS server (default: start `nats-server -js` on a free port,
    /// its store in a temporary folder; $NATS_SERVER_BIN, else `nats-server`
    /// on PATH).
    #[arg(long)]
    pub nats: Option<String>,
    /// Workflows started at once, per measurement (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "500,2000,10000,20000")]
    pub sizes: Vec<usize>,
    /// Workflows run on the fresh services of every measurement before it
    /// starts, not counted (after one run that shows them all up). A fresh
    /// process's first workflows cost more (its allocator's first pages,
    /// its store's first segments): after 200, the orchestrator's CPU per
    /// workflow at N = 500 was 25–40 % above its figure at 20,000; after
    /// 1,000, 0–45 % (one run each way of the day).
    #[arg(long, default_value_t = 1000)]
    pub warm_up: usize,
    /// Rounds of the throughput measurement: every size once per round,
    /// sizes interleaved; each size's median round is reported.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// Workflows run one after the other for the latency figures (p99 of
    /// 1,000 is the 10th slowest, not the 2nd of 200).
    #[arg(long, default_value_t = 1000)]
    pub latency_runs: usize,
    /// StartRun calls in flight at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Agent processes (each `concierto agent --role bench-noop`).
    #[arg(long, default_value_t = 1)]
    pub agent_processes: usize,
    /// Workers per agent process (`--replicas`).
    #[arg(long, default_value_t = 2)]
    pub agent_replicas: u32,
    /// Tasks one worker runs at once (the role's `max_in_flight`).
    #[arg(long, default_value_t = 64)]
    pub agent_in_flight: u32,
    /// Round trips of the request/reply floors (the sequential floor does a
    /// tenth of them).
    #[arg(long, default_value_t = 20_000)]
    pub floor_requests: usize,
    /// Messages of the JetStream floor.
    #[arg(long, default_value_t = 20_000)]
    pub floor_messages: usize,
    /// Longest wait for one size's workflows to end.
    #[arg(long, default_value = "10m", value_parser = crate::parse_grace)]
    pub timeout: Duration,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One size's figures.
#[derive(Debug, Clone)]
struct Throughput {
    workflows: usize,
    succeeded: usize,
    failed: usize,
    seconds: f64,
    start_calls_per_s: f64,
    /// From the first StartRun call to the first workflow's end.
    first_end_ms: f64,
    cpu_ms_per_workflow: HashMap<&'static str, f64>,
    /// Workflows/s of every round of this size, in the order measured
    /// (this record is the median one).
    round_rates: Vec<f64>,
}

impl Throughput {
    fn per_s(&self) -> f64 {
        rate(self.succeeded, Duration::from_secs_f64(self.seconds))
    }
}

/// Each size's median round (by workflows/s), the rates of all its rounds
/// kept in it; `rounds[r][i]` is round r's measurement of size i.
fn medians(rounds: Vec<Vec<Throughput>>) -> Vec<Throughput> {
    let sizes = rounds.first().map_or(0, Vec::len);
    let mut by_size: Vec<Vec<Throughput>> = (0..sizes).map(|_| Vec::new()).collect();
    for round in rounds {
        for (i, t) in round.into_iter().enumerate() {
            if let Some(v) = by_size.get_mut(i) {
                v.push(t);
            }
        }
    }
    by_size
        .into_iter()
        .filter_map(|mut v| {
            let rates: Vec<f64> = v.iter().map(Throughput::per_s).collect();
            // The worst round's failures stay visible: a failed run in any
            // round is counted, whichever round is the median.
            let failed = v.iter().map(|t| t.failed).max().unwrap_or(0);
            v.sort_by(|a, b| a.per_s().total_cmp(&b.per_s()));
            let mid = v.len().checked_sub(1)? / 2;
            let mut t = v.swap_remove(mid);
            t.round_rates = rates;
            t.failed = failed;
            t.succeeded = t.workflows - failed.min(t.workflows);
            Some(t)
        })
        .collect()
}

/// The latency figures.
#[derive(Debug, Clone)]
struct Latency {
    runs: usize,
    failed: usize,
    workflow_ms: Vec<f64>,
    start_run_ms: Vec<f64>,
}

/// `concierto bench`.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        bail!("--sizes needs one or more whole numbers above 0, such as 500,2000");
    }
    if let Some(n) = args.sizes.iter().find(|n| **n > MAX_SIZE) {
        bail!("--sizes {n} is more than the bench runs at once ({MAX_SIZE}); split it");
    }
    for (flag, n, max) in [
        ("--latency-runs", args.latency_runs, MAX_SIZE),
        ("--rounds", args.rounds, 20),
        ("--warm-up", args.warm_up, MAX_SIZE),
        ("--in-flight", args.in_flight, 4096),
        ("--agent-processes", args.agent_processes, 64),
        ("--agent-replicas", args.agent_replicas as usize, 256),
        ("--agent-in-flight", args.agent_in_flight as usize, 4096),
        ("--floor-requests", args.floor_requests, MAX_SIZE),
        ("--floor-messages", args.floor_messages, MAX_SIZE),
    ] {
        if n > max {
            bail!("{flag} {n} is more than the bench allows ({max})");
        }
    }
    let exe = std::env::current_exe().context("finding this program's own path")?;
    let (clk_tck, clk_source) = procs::clock_ticks();
    let (url, _server) = match &args.nats {
        Some(url) => (url.clone(), None),
        None => {
            let server = tokio::task::spawn_blocking(concierto_testkit::NatsServer::start)
                .await?
                .context("starting nats-server for the bench")?;
            (server.url(), Some(server))
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("concierto-bench-")
        .tempdir()
        .context("creating the bench's temporary folder")?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let port = concierto_testkit::free_port().context("finding a free port for the admin API")?;
    let studio_file = write_studio(dir.path(), &token, port, &args)?;
    let studio = crate::services::load_studio(&studio_file)?;

    note("floors: raw NATS request/reply and JetStream");
    let floors = floors::measure(
        &url,
        FloorSizes {
            sequential: (args.floor_requests / 10).max(1),
            parallel: args.floor_requests.max(1),
            in_flight: 64,
            messages: args.floor_messages.max(1),
        },
    )
    .await?;

    let opts =
        crate::services::nats_options(&studio, "concierto-bench", &url, |v| std::env::var(v).ok())?;
    let bus = NatsBus::connect(&url, opts)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let nonce = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let tracker = Tracker::start(&bus, format!("bench-{nonce}-")).await?;
    let ctx = Ctx {
        args: &args,
        exe: &exe,
        url: &url,
        dir: dir.path(),
        studio_file: &studio_file,
        admin: format!("http://127.0.0.1:{port}"),
        token: &token,
        nonce: &nonce,
        tracker: &tracker,
        clk_tck,
        nats_pid: _server
            .as_ref()
            .and_then(concierto_testkit::NatsServer::pid),
    };

    let rounds = args.rounds.max(1);
    let mut measured = Vec::new();
    for r in 0..rounds {
        let mut round = Vec::new();
        for (i, &n) in args.sizes.iter().enumerate() {
            note(&format!(
                "round {} of {rounds}: {n} workflows at once (fresh services and data folder)",
                r + 1
            ));
            round.push(ctx.throughput(r * args.sizes.len() + i, n).await?);
        }
        measured.push(round);
    }
    let sizes = medians(measured);
    note(&format!(
        "latency: {} workflows one at a time",
        args.latency_runs
    ));
    let latency = ctx.latency().await?;

    let setup = Setup {
        url: redact_url(&url),
        started_here: args.nats.is_none(),
        clk_tck,
        clk_source,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&args, &setup, &floors, &sizes, &latency))?
        );
    } else {
        print!("{}", table(&args, &setup, &floors, &sizes, &latency));
    }
    let unfinished: Vec<String> = sizes
        .iter()
        .filter(|s| s.succeeded < s.workflows)
        .map(|s| format!("{} of {}", s.workflows - s.succeeded, s.workflows))
        .chain((latency.failed > 0).then(|| format!("{} latency runs", latency.failed)))
        .collect();
    if !unfinished.is_empty() {
        bail!(
            "not every workflow succeeded ({}); the figures above count only those that did",
            unfinished.join(", ")
        );
    }
    Ok(())
}

/// A progress line on stderr (the figures go to stdout).
fn note(line: &str) {
    eprintln!("concierto bench: {line}");
}

/// Writes the studio: the admin reviewer `bench` with `token`, the role
/// `bench-noop` (builtin executor) and the three-step workflow.
fn write_studio(dir: &Path, token: &str, port: u16, args: &BenchArgs) -> anyhow::Result<PathBuf> {
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents)?;
    std::fs::write(
        agents.join(format!("{ROLE}.md")),
        format!(
            "---\nname: {ROLE}\ndescription: Does nothing, at once (the bench's builtin.noop work).\n\
             tools: Read\n---\nYou do nothing; the bench measures the studio around you.\n"
        ),
    )?;
    let replicas = (args.agent_processes.max(1) as u64) * u64::from(args.agent_replicas.max(1));
    let mut steps = String::new();
    let mut input = "trigger";
    for step in STEPS {
        steps.push_str(&format!(
            "      - id: {step}\n        role: {ROLE}\n        task: \"Do nothing.\"\n        \
             inputs: [{input}]\n        timeout: \"2 minutes\"\n"
        ));
        input = step;
    }
    let file = dir.join("concierto.yaml");
    std::fs::write(
        &file,
        format!(
            r#"studio:
  name: "Concierto bench"
  timezone: "UTC"
server:
  grpc_addr: "127.0.0.1:{port}"
  metrics_addr: "127.0.0.1:0"
agents:
  default_executor: builtin
  roles:
    {ROLE}: {{ replicas: {replicas}, max_in_flight: {in_flight} }}
reviewers:
  bench:
    name: "Bench"
    roles: [admin]
    token_sha256: "{sha}"
workflows:
  {WORKFLOW}:
    description: "Three no-op steps in a row."
    steps:
{steps}"#,
            in_flight = args.agent_in_flight.max(1),
            sha = concierto_admin::token_sha256(token),
        ),
    )?;
    Ok(file)
}

/// What every measurement needs.
struct Ctx<'a> {
    args: &'a BenchArgs,
    exe: &'a Path,
    url: &'a str,
    dir: &'a Path,
    studio_file: &'a Path,
    admin: String,
    token: &'a str,
    nonce: &'a str,
    tracker: &'a Tracker,
    clk_tck: u64,
    /// The nats-server the bench started (none with `--nats`): its CPU time
    /// is counted too.
    nats_pid: Option<u32>,
}

/// The services of one measurement.
struct Services {
    procs: Vec<(&'static str, Proc)>,
    client: AdminClient,
}

impl Ctx<'_> {
    /// Starts the services on a fresh data folder, waits until a first run
    /// goes through them all.
    async fn start_services(&self, phase: &str) -> anyhow::Result<Services> {
        let data = self.dir.join(format!("data-{phase}"));
        std::fs::create_dir_all(&data)?;
        let common = |cmd: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            v.extend([
                "--nats".into(),
                self.url.to_string(),
                "--file".into(),
                self.studio_file.display().to_string(),
            ]);
            v
        };
        let serve = |service: &str| {
            let mut v = common(&["serve", service]);
            v.extend(["--data".into(), data.display().to_string()]);
            v
        };
        let env = [("RUST_LOG", "warn")];
        let mut procs = vec![
            (
                "orchestrator",
                Proc::spawn(
                    &format!("{phase}-orchestrator"),
                    self.exe,
                    &serve("orchestrator"),
                    &env,
                    self.dir,
                )?,
            ),
            (
                "admin",
                Proc::spawn(
                    &format!("{phase}-admin"),
                    self.exe,
                    &serve("admin"),
                    &env,
                    self.dir,
                )?,
            ),
        ];
        for a in 0..self.args.agent_processes.max(1) {
            let replicas = self.args.agent_replicas.max(1).to_string();
            let id = format!("bench-{phase}-a{a}");
            let args = common(&[
                "agent",
                "--role",
                ROLE,
                "--replicas",
                &replicas,
                "--id",
                &id,
            ]);
            procs.push((
                "agents",
                Proc::spawn(
                    &format!("{phase}-agent{a}"),
                    self.exe,
                    &args,
                    &env,
                    self.dir,
                )?,
            ));
        }
        let client = match self.wait_for_admin().await {
            Ok(c) => c,
            Err(e) => {
                let tails: String = procs
                    .iter()
                    .map(|(_, p)| format!("\n--- {} (last lines)\n{}", p.name(), p.log_tail(15)))
                    .collect();
                bail!("{e:#}{tails}");
            }
        };
        let mut services = Services { procs, client };
        // A first run through every service: the workers are up and consuming.
        let id = format!("bench-{}-warm{phase}-0", self.nonce);
        let deadline = Instant::now() + READY;
        let started = start(&mut services.client, &id).await;
        let client = services.client.clone();
        let ended = match started {
            Ok(()) => {
                let prefix = self.prefix(&format!("warm{phase}"));
                self.tracker
                    .wait(&prefix, 1, deadline, &client, || services.alive())
                    .await
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        match ended {
            Ok(c) if c.succeeded == 1 => {}
            Ok(_) => bail!(
                "the first run of the bench did not succeed{}",
                services.logs()
            ),
            Err(e) => bail!("{e:#}{}", services.logs()),
        }
        // Then a warm-up batch, not measured: connections, consumers, the
        // store's first pages and the allocator's pools are in use before the
        // clock starts (at 500 runs they were a fifth of the time measured).
        let prefix = self.prefix(&format!("warm{phase}b"));
        let warm_up = self.args.warm_up;
        if let Err(e) = start_many(&client, &prefix, warm_up, self.args.in_flight).await {
            bail!("a warm-up StartRun call failed: {e}{}", services.logs());
        }
        match self
            .tracker
            .wait(&prefix, warm_up, deadline, &client, || services.alive())
            .await
        {
            Ok(c) if c.succeeded >= warm_up => {
                self.quiet(&services).await;
                Ok(services)
            }
            Ok(c) => bail!(
                "{} of the bench's {warm_up} warm-up runs did not succeed{}",
                warm_up.saturating_sub(c.succeeded),
                services.logs()
            ),
            Err(e) => bail!("{e:#}{}", services.logs()),
        }
    }

    /// Waits (at most [`QUIET_WITHIN`]) until the services and the
    /// nats-server are idle: what the warm-up left to do (acknowledgements,
    /// the store's background flush, the write-through) is then not counted
    /// in the measurement that follows.
    async fn quiet(&self, s: &Services) {
        let busy = |a: &HashMap<&'static str, u64>, b: &HashMap<&'static str, u64>| -> u64 {
            b.iter()
                .filter(|(kind, _)| **kind != "bench")
                .map(|(kind, t)| t.saturating_sub(a.get(kind).copied().unwrap_or(*t)))
                .sum()
        };
        // Idle: at most 10 ms of CPU, all processes together, in a step.
        let quiet = (self.clk_tck / 100).max(1);
        let deadline = Instant::now() + QUIET_WITHIN;
        let mut last = self.cpu(s);
        let mut idle = 0;
        while idle < 2 && Instant::now() < deadline {
            tokio::time::sleep(QUIET_STEP).await;
            let now = self.cpu(s);
            idle = if busy(&last, &now) <= quiet {
                idle + 1
            } else {
                0
            };
            last = now;
        }
    }

    /// The admin API client, once it answers.
    async fn wait_for_admin(&self) -> anyhow::Result<AdminClient> {
        let conn = ConnArgs {
            server: self.admin.clone(),
            token: Some(self.token.to_string()),
            ca: None,
            file: self.studio_file.to_path_buf(),
            utc: true,
        };
        let deadline = Instant::now() + READY;
        loop {
            let last = match conn.connect().await {
                Ok(c) => {
                    let mut client = c.client;
                    match client.list_runs(v1::ListRunsRequest::default()).await {
                        Ok(_) => return Ok(client),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "the admin API at {} did not answer in {}s: {last}",
                    self.admin,
                    READY.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `bench-<nonce>-<phase>-`.
    fn prefix(&self, phase: &str) -> String {
        format!("bench-{}-{phase}-", self.nonce)
    }

    /// CPU ticks so far per kind of process: the services', the
    /// nats-server's (when started here) and the bench's own (its client
    /// calls and the run-event tally).
    fn cpu(&self, s: &Services) -> HashMap<&'static str, u64> {
        let mut out = s.cpu();
        if let Some(t) = self.nats_pid.and_then(procs::cpu_ticks_of_pid) {
            out.insert("nats", t);
        }
        if let Some(t) = procs::cpu_ticks_of_pid(std::process::id()) {
            out.insert("bench", t);
        }
        out
    }

    /// `n` workflows started at once on fresh services.
    async fn throughput(&self, index: usize, n: usize) -> anyhow::Result<Throughput> {
        let phase = format!("s{index}n{n}");
        let mut s = self.start_services(&phase).await?;
        let prefix = self.prefix(&phase);
        let before = self.cpu(&s);
        let t0 = Instant::now();
        let client = s.client.clone();
        if let Err(e) = start_many(&client, &prefix, n, self.args.in_flight).await {
            s.stop().await;
            bail!("a StartRun call failed: {e}");
        }
        let started = t0.elapsed();
        let deadline = t0 + self.args.timeout;
        let count = match self
            .tracker
            .wait(&prefix, n, deadline, &client, || s.alive())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let logs = s.logs();
                s.stop().await;
                bail!("{e:#}{logs}");
            }
        };
        let after = self.cpu(&s);
        s.stop().await;
        let elapsed = count.last.map_or(t0.elapsed(), |l| l.duration_since(t0));
        let cpu_ms_per_workflow = before
            .iter()
            .map(|(kind, t0)| {
                let t1 = after.get(kind).copied().unwrap_or(*t0);
                let ms = (t1.saturating_sub(*t0)) as f64 * 1000.0 / self.clk_tck as f64;
                (*kind, ms / n as f64)
            })
            .collect();
        Ok(Throughput {
            workflows: n,
            succeeded: count.succeeded,
            failed: n - count.succeeded,
            seconds: elapsed.as_secs_f64(),
            start_calls_per_s: rate(n, started),
            first_end_ms: count
                .first
                .map_or(0.0, |f| f.duration_since(t0).as_secs_f64() * 1000.0),
            cpu_ms_per_workflow,
            round_rates: Vec::new(),
        })
    }

    /// Workflows one at a time: StartRun, then its terminal event.
    async fn latency(&self) -> anyhow::Result<Latency> {
        let phase = "lat";
        let mut s = self.start_services(phase).await?;
        let prefix = self.prefix(phase);
        let mut out = Latency {
            runs: self.args.latency_runs,
            failed: 0,
            workflow_ms: Vec::new(),
            start_run_ms: Vec::new(),
        };
        for i in 0..self.args.latency_runs {
            let id = format!("{prefix}{i}");
            // Counted before the call: a run may end before its StartRun answer arrives.
            let before = self.tracker.count(&prefix);
            let t0 = Instant::now();
            if let Err(e) = start(&mut s.client, &id).await {
                s.stop().await;
                bail!("a StartRun call failed: {e}");
            }
            out.start_run_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            let deadline = t0 + self.args.timeout;
            let client = s.client.clone();
            let c = match self
                .tracker
                .wait(&prefix, i + 1, deadline, &client, || s.alive())
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let logs = s.logs();
                    s.stop().await;
                    bail!("{e:#}{logs}");
                }
            };
            if c.succeeded > before.succeeded {
                let end = c.last.unwrap_or_else(Instant::now);
                out.workflow_ms
                    .push(end.duration_since(t0).as_secs_f64() * 1000.0);
            } else {
                out.failed += 1;
            }
        }
        s.stop().await;
        Ok(out)
    }
}

impl Services {
    /// CPU ticks so far, summed per kind of process.
    fn cpu(&self) -> HashMap<&'static str, u64> {
        let mut out = HashMap::new();
        for (kind, p) in &self.procs {
            *out.entry(*kind).or_insert(0) += p.cpu_ticks().unwrap_or(0);
        }
        out
    }

    /// `Err(why)` when a process has exited.
    fn alive(&mut self) -> Result<(), String> {
        for (_, p) in &mut self.procs {
            if let Some(why) = p.exited() {
                return Err(why);
            }
        }
        Ok(())
    }

    /// The tail of every log, for an error.
    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|(_, p)| format!("\n--- {} (last lines)\n{}", p.name(), p.log_tail(15)))
            .collect()
    }

    /// Stops every process, agents first.
    async fn stop(&mut self) {
        for (_, p) in self.procs.iter_mut().rev() {
            p.stop(STOP).await;
        }
    }
}

/// One StartRun of the bench's workflow, `builtin.noop` for every step.
/// Starts runs `<prefix>0` .. `<prefix><n-1>`, `in_flight` calls at once;
/// the first error stops it.
async fn start_many(
    client: &AdminClient,
    prefix: &str,
    n: usize,
    in_flight: usize,
) -> Result<(), tonic::Status> {
    let mut calls = futures::stream::iter(0..n)
        .map(|i| {
            let (mut client, id) = (client.clone(), format!("{prefix}{i}"));
            async move { start(&mut client, &id).await }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = calls.next().await {
        r?;
    }
    Ok(())
}

async fn start(client: &mut AdminClient, id: &str) -> Result<(), tonic::Status> {
    client
        .start_run(v1::StartRunRequest {
            workflow: WORKFLOW.into(),
            priority: v1::Priority::Normal as i32,
            params: [(
                concierto_agent::builtin::PARAM_NOOP.to_string(),
                "true".to_string(),
            )]
            .into(),
            run_id: id.to_string(),
        })
        .await
        .map(|_| ())
}

/// Runs seen ending under one prefix.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    succeeded: usize,
    failed: usize,
    /// When the first of them was seen.
    first: Option<Instant>,
    /// When the latest of them was seen.
    last: Option<Instant>,
}

/// Counts terminal run events (`run.event.>`, the run's own event in state
/// succeeded, failed or cancelled), once per run id, per id prefix (the id
/// without its last `-<i>`).
struct Tracker {
    state: Arc<Mutex<TrackerState>>,
    changed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct TrackerState {
    ended: HashSet<String>,
    counts: HashMap<String, Count>,
}

impl TrackerState {
    fn record(&mut self, run_id: &str, succeeded: bool, at: Instant) -> bool {
        let Some((prefix, _)) = run_id.rsplit_once('-') else {
            return false;
        };
        if !self.ended.insert(run_id.to_string()) {
            return false;
        }
        let c = self.counts.entry(format!("{prefix}-")).or_default();
        if succeeded {
            c.succeeded += 1;
        } else {
            c.failed += 1;
        }
        c.first.get_or_insert(at);
        c.last = Some(at);
        true
    }
}

fn terminal(state: i32) -> Option<bool> {
    match v1::RunState::try_from(state).ok()? {
        v1::RunState::Succeeded => Some(true),
        v1::RunState::Failed | v1::RunState::Cancelled => Some(false),
        _ => None,
    }
}

impl Tracker {
    /// Subscribes to run events; only run ids starting with `only` count.
    async fn start(bus: &NatsBus, only: String) -> anyhow::Result<Tracker> {
        let mut events = bus
            .subscribe_proto::<v1::RunEvent>(subjects::RUN_EVENTS)
            .await?;
        concierto_bus::Bus::flush(bus).await?;
        let state = Arc::new(Mutex::new(TrackerState::default()));
        let (tx, changed) = watch::channel(0u64);
        let task = {
            let state = state.clone();
            tokio::spawn(async move {
                while let Some((ev, _)) = events.next().await {
                    if !ev.step_id.is_empty() || !ev.run_id.starts_with(&only) {
                        continue;
                    }
                    let Some(ok) = terminal(ev.run_state) else {
                        continue;
                    };
                    let now = Instant::now();
                    let new = state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(&ev.run_id, ok, now);
                    if new {
                        tx.send_modify(|n| *n += 1);
                    }
                }
            })
        };
        Ok(Tracker {
            state,
            changed,
            task,
        })
    }

    fn count(&self, prefix: &str) -> Count {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts
            .get(prefix)
            .copied()
            .unwrap_or_default()
    }

    /// Waits until runs `<prefix>0` to `<prefix>{n-1}` ended or `deadline`
    /// passed (then the count so far); an error when `alive` says a process
    /// exited. When no run ends for [`STALL`], asks `client` for the runs
    /// not seen ending (a run event can be lost to a slow subscriber).
    async fn wait(
        &self,
        prefix: &str,
        n: usize,
        deadline: Instant,
        client: &AdminClient,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> anyhow::Result<Count> {
        let mut rx = self.changed.clone();
        loop {
            rx.borrow_and_update();
            let c = self.count(prefix);
            if c.succeeded + c.failed >= n || Instant::now() >= deadline {
                return Ok(c);
            }
            alive().map_err(|why| anyhow::anyhow!("a service of the bench stopped: {why}"))?;
            let wait = STALL.min(deadline.saturating_duration_since(Instant::now()));
            if tokio::time::timeout(wait, rx.changed()).await.is_err() {
                self.recover(client, prefix, n).await;
            }
        }
    }

    /// Asks the admin API for each run of `prefix` (`<prefix>0` to
    /// `<prefix>{n-1}`) not seen ending, and counts those that did.
    async fn recover(&self, client: &AdminClient, prefix: &str, n: usize) {
        let missing: Vec<String> = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (0..n)
                .map(|i| format!("{prefix}{i}"))
                .filter(|id| !s.ended.contains(id))
                .collect()
        };
        let mut asks = futures::stream::iter(missing)
            .map(|id| {
                let mut c = client.clone();
                async move {
                    let r = c.get_run(v1::GetRunRequest { run_id: id.clone() }).await;
                    (id, r.ok().and_then(|r| r.into_inner().run).map(|r| r.state))
                }
            })
            .buffer_unordered(16);
        while let Some((id, state)) = asks.next().await {
            if let Some(ok) = state.and_then(terminal) {
                self.state.lock().unwrap_or_else(|p| p.into_inner()).record(
                    &id,
                    ok,
                    Instant::now(),
                );
            }
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::report::quantile;
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn each_run_counts_once_under_its_prefix() {
        let mut s = TrackerState::default();
        let t = Instant::now();
        assert!(s.record("bench-ab-s0n5-1", true, t));
        assert!(!s.record("bench-ab-s0n5-1", true, t));
        assert!(s.record("bench-ab-s0n5-2", false, t));
        assert!(!s.record("noprefix", true, t));
        let c = s.counts["bench-ab-s0n5-"];
        assert_eq!((c.succeeded, c.failed), (1, 1));
    }

    #[test]
    fn the_generated_studio_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let args = <BenchCli as clap::Parser>::parse_from(["bench"]).args;
        let file = write_studio(dir.path(), "t0ken", 50051, &args).unwrap();
        let checked = concierto_core::config::check(&file);
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        let studio = checked.studio.unwrap();
        assert_eq!(studio.workflows[WORKFLOW].steps.len(), STEPS.len());
        assert!(studio.roles.contains_key(ROLE));
    }

    #[derive(clap::Parser)]
    struct BenchCli {
        #[command(flatten)]
        args: BenchArgs,
    }
}
