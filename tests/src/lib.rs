//! A sandbox for end-to-end tests: a real nats-server (testkit), a data folder,
//! and the `concierto` binary started as separate OS processes with the very
//! commands a deployment runs (`serve scheduler`, `serve orchestrator`,
//! `agent --role R`). Processes are killed when the sandbox is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierto_bus::{Bus, BusError, BusExt, NatsBus, NatsOptions};
use concierto_core::subjects;
use concierto_proto::v1;
use concierto_testkit::{NatsCluster, NatsServer};

/// The `concierto` binary next to the test executable (`target/<profile>/concierto`).
pub fn concierto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCIERTO_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    profile_dir.join("concierto")
}

/// The example studio.
pub fn example_studio() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/studio/concierto.yaml")
}

/// One running `concierto` process.
pub struct Proc {
    name: String,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Its name in the sandbox.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: dies at once, holding whatever it held.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for it to exit; true if it exited by itself.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The arguments it was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A nats-server, a data folder and `concierto` processes.
pub struct Sandbox {
    /// The server.
    pub nats: NatsServer,
    /// A three-node cluster the processes use instead of `nats`
    /// ([`Sandbox::on_cluster`]).
    pub cluster: Option<NatsCluster>,
    dir: tempfile::TempDir,
    studio: PathBuf,
    env: Vec<(String, String)>,
    procs: HashMap<String, Proc>,
}

impl Sandbox {
    /// A sandbox on the example studio. `env` are `CONCIERTO__...` overrides for
    /// every process (e.g. a short `ack_wait`).
    pub fn new(env: &[(&str, &str)]) -> Self {
        let nats = NatsServer::start().expect("nats-server starts");
        let dir = tempfile::tempdir().expect("temp dir");
        Sandbox {
            nats,
            cluster: None,
            dir,
            studio: example_studio(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            procs: HashMap::new(),
        }
    }

    /// A sandbox whose processes and client use a three-node NATS cluster
    /// (every node's URL, comma-separated); `nats` stays idle.
    pub fn on_cluster(env: &[(&str, &str)]) -> Self {
        let mut sb = Self::new(env);
        sb.cluster = Some(NatsCluster::start().expect("the NATS cluster starts"));
        sb
    }

    /// What the processes are given as `--nats`: the cluster's URLs or the server's.
    pub fn nats_url(&self) -> String {
        match &self.cluster {
            Some(c) => c.urls(),
            None => self.nats.url(),
        }
    }

    /// The sandbox's own folder (logs, data, any studio a test writes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the processes spawned from now on with this studio file.
    pub fn use_studio(&mut self, file: PathBuf) {
        self.studio = file;
    }

    /// The data folder services write under.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `concierto <args>` as `name`, with the sandbox's NATS, data and studio.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> &mut Proc {
        self.spawn_with(name, args, &[], None)
    }

    /// Like [`Sandbox::spawn`], with environment variables of its own (after
    /// the sandbox's) and, for `serve`, another data folder.
    pub fn spawn_with(
        &mut self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        data: Option<&Path>,
    ) -> &mut Proc {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--nats".into(),
            self.nats_url(),
            "--file".into(),
            self.studio.display().to_string(),
        ]);
        if args.first() == Some(&"serve") {
            let data = data.map_or_else(|| self.data_dir(), Path::to_path_buf);
            all.extend(["--data".into(), data.display().to_string()]);
        }
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(concierto_bin());
        cmd.args(&all)
            .env("RUST_LOG", "info")
            // Each process its own metrics port (a test's `env` may set one).
            .env("CONCIERTO__SERVER__METRICS_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", concierto_bin().display()));
        let proc = Proc {
            name: name.to_string(),
            args: all,
            child: Some(child),
            log,
        };
        self.procs.insert(name.to_string(), proc);
        self.procs.get_mut(name).expect("just inserted")
    }

    /// A process by name.
    pub fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// What one process logged so far (empty if there is no such process).
    pub fn procs_log(&self, name: &str) -> String {
        self.procs.get(name).map(Proc::log).unwrap_or_default()
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut names: Vec<_> = self.procs.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| format!("----- {n} -----\n{}", self.procs[n].log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A client on the sandbox's NATS with the studio's prefix (on a
    /// cluster, with three copies of what it creates).
    pub async fn client(&self) -> Arc<dyn Bus> {
        let opts = NatsOptions {
            replicas: if self.cluster.is_some() { 3 } else { 1 },
            ..NatsOptions::default()
        };
        Arc::new(
            NatsBus::connect(&self.nats_url(), opts)
                .await
                .expect("client connects"),
        )
    }
}

pub use concierto_testkit::eventually;

/// The roles of the example studio's `system-improvement` workflow (its steps
/// and its failure path), as `concierto agent --role` takes them.
pub const SYSTEM_IMPROVEMENT_ROLES: &str = "performance-benchmarker,test-results-analyzer,backend-architect,studio-orchestrator,workflow-optimizer";

/// A client named `name` on `server`, with the standard streams declared (what
/// each service does when it connects): for tests that run services in process.
pub async fn nats_client(server: &NatsServer, name: &str) -> Arc<dyn Bus> {
    let opts = NatsOptions {
        client_name: name.to_string(),
        ..NatsOptions::default()
    };
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&server.url(), opts)
            .await
            .expect("client connects"),
    );
    concierto_bus::ensure_standard_streams(bus.as_ref(), &concierto_bus::StreamLimits::default())
        .await
        .expect("standard streams");
    bus
}

/// A sled store in `dir/name`.
pub fn sled_store(dir: &tempfile::TempDir, name: &str) -> Arc<dyn concierto_core::store::KvStore> {
    Arc::new(concierto_core::store::SledStore::open(&dir.path().join(name)).expect("store opens"))
}

/// A run from the orchestrator, or `None` if it does not answer or knows no such run.
pub async fn get_run(bus: &Arc<dyn Bus>, run_id: &str) -> Option<v1::Run> {
    let req = v1::GetRunRequest {
        run_id: run_id.to_string(),
    };
    match bus
        .request(
            subjects::ORCHESTRATOR_GET_RUN,
            concierto_bus::encode(&req),
            Duration::from_secs(2),
        )
        .await
    {
        Ok(m) if m.headers.get(subjects::ERROR_HEADER).is_none() => {
            concierto_bus::decode::<v1::GetRunResponse>(&m)
                .ok()
                .and_then(|r| r.run)
        }
        Ok(_) | Err(BusError::NoResponders(_)) | Err(BusError::Timeout { .. }) => None,
        Err(e) => panic!("get run: {e}"),
    }
}

/// All runs (pages followed).
pub async fn list_runs(bus: &Arc<dyn Bus>) -> Option<Vec<v1::Run>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let req = v1::ListRunsRequest {
            page_size: 500,
            page_token: token.clone(),
            ..Default::default()
        };
        let page: v1::ListRunsResponse = bus
            .request_proto(
                subjects::ORCHESTRATOR_LIST_RUNS,
                &req,
                Duration::from_secs(5),
            )
            .await
            .ok()?;
        out.extend(page.runs);
        if page.next_page_token.is_empty() {
            return Some(out);
        }
        token = page.next_page_token;
    }
}

/// `GET /readyz` on a process's metrics port: status and body, or `None`
/// when nothing answers.
pub async fn readyz(port: u16) -> Option<(u16, String)> {
    let resp = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        use std::io::{Read as _, Write as _};
        write!(
            stream,
            "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .await
    .ok()??;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The `system-improvement` run `run_id` of the example studio, its builtin
/// steps sleeping `sleep_ms` each: the no-op workload of the bulk tests.
pub fn system_improvement_run(run_id: &str, sleep_ms: u32) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.to_string(),
        workflow: "system-improvement".into(),
        trigger: "continuous_optimization".into(),
        priority: v1::Priority::Normal as i32,
        params: [("builtin.sleep_ms".to_string(), sleep_ms.to_string())].into(),
        requested_by: "e2e".into(),
        ..Default::default()
    }
}

/// The stored runs whose id starts with `prefix`, when the orchestrator
/// answers, and how many of them succeeded.
pub async fn runs_with_prefix(bus: &Arc<dyn Bus>, prefix: &str) -> Option<(Vec<v1::Run>, usize)> {
    let runs: Vec<v1::Run> = list_runs(bus)
        .await?
        .into_iter()
        .filter(|r| r.run_id.starts_with(prefix))
        .collect();
    let ok = runs
        .iter()
        .filter(|r| r.state() == v1::RunState::Succeeded)
        .count();
    Some((runs, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_improvement_roles_are_the_workflows_roles() {
        let studio = concierto_core::config::load_with_env(&example_studio(), Vec::new())
            .expect("the example studio loads");
        let wf = &studio.workflows["system-improvement"];
        let mut want: Vec<&str> = wf
            .steps
            .iter()
            .chain(wf.on_failure.iter())
            .map(|s| s.role.as_str())
            .collect();
        want.sort();
        want.dedup();
        let mut have: Vec<&str> = SYSTEM_IMPROVEMENT_ROLES.split(',').collect();
        have.sort();
        assert_eq!(have, want);
    }
}
