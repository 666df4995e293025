//! Test support shared by every crate's tests and benchmarks.
//!
//! [`NatsServer`] starts a real `nats-server` with JetStream on a free port, its
//! store in a temporary directory, waits until it accepts clients, and kills it
//! and removes the store when dropped. [`NatsCluster`] starts three of them
//! routed to each other, for tests of a node's death.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod cluster;
pub use cluster::{CLUSTER_SIZE, NatsCluster};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// No nats-server binary was found.
    #[error(
        "nats-server not found (looked at $NATS_SERVER_BIN, PATH and /usr/sbin/nats-server); \
         install it: `apt-get install nats-server` on Debian/Ubuntu, `brew install nats-server` on macOS"
    )]
    NoBinary,
    /// The operating system refused something.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// The server did not accept clients in time.
    #[error("nats-server on port {port} was not ready after {waited:?}; its log: {log}")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The tail of its log.
        log: String,
    },
}

/// A running `nats-server` with JetStream, stopped and cleaned up on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// A configuration file (`-c`) and the environment its `$VARIABLES` come from.
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl NatsServer {
    /// Starts a server on a free loopback port with JetStream and a fresh store.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_inner(None)
    }

    /// Starts a server with a configuration file (`nats-server -c`), e.g.
    /// `deploy/nats/nats.conf`, its `$VARIABLES` taken from `env`. The
    /// address, the client port (a free one), the monitoring port (a free one)
    /// and the JetStream store (a fresh folder) are given on the command line
    /// and win over the file's; the file must turn JetStream on
    /// (`jetstream: enabled`) without a `store_dir`.
    pub fn start_with_config(
        config: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, TestkitError> {
        Self::start_inner(Some((config.to_path_buf(), env.into_iter().collect())))
    }

    fn start_inner(config: Option<(PathBuf, Vec<(String, String)>)>) -> Result<Self, TestkitError> {
        let bin = find_binary().ok_or(TestkitError::NoBinary)?;
        let dir = tempfile::Builder::new()
            .prefix("concierto-nats-")
            .tempdir()
            .map_err(|e| TestkitError::Io("creating the store directory", e))?;
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            bin,
            config,
        };
        let mut last = None;
        // A free port can be taken between our probe and the server's bind: retry.
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(TestkitError::NoBinary))
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id while it runs (`None` once killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) without removing its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store, as after a crash.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), TestkitError> {
        let log_path = self.dir.path().join("nats-server.log");
        let err_path = self.dir.path().join("nats-server.stderr");
        let store = self.dir.path().join("jetstream");
        let mut cmd = Command::new(&self.bin);
        if let Some((config, env)) = &self.config {
            cmd.arg("-c")
                .arg(config)
                .arg("-m")
                .arg(free_port()?.to_string())
                .envs(env.iter().map(|(k, v)| (k, v)));
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .arg("-l")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Errors before logging starts (a bad configuration file) go here.
            .stderr(
                std::fs::File::create(&err_path)
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .map_err(|e| TestkitError::Io("spawning nats-server", e))?;
        self.child = Some(child);
        let waited = Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_status)) = child.try_wait()
            {
                break;
            }
            if jetstream_ready(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default()
            + &std::fs::read_to_string(&err_path).unwrap_or_default();
        let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join(" | ");
        Err(TestkitError::NotReady {
            port: self.port,
            waited,
            log: tail,
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the server's INFO line and checks that JetStream is on.
fn jetstream_ready(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && line.starts_with("INFO")
        && line.contains("\"jetstream\":true")
}

/// A loopback port nobody listens on right now.
///
/// Taken at random below the kernel's ephemeral range (32768 and up on
/// Linux), where no outgoing connection is given a local port, so a port
/// handed out here is not taken by some client socket before the server that
/// is meant to bind it does (a kernel-chosen port could be, and a service
/// under test would then stop at start). Never the same port twice in one
/// process. Falls back to a kernel-chosen port when none of the tries binds.
pub fn free_port() -> Result<u16, TestkitError> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_767;
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(given.len());
        let span = u64::from(HIGH - LOW) + 1;
        let port = LOW + u16::try_from(h.finish() % span).unwrap_or(0);
        if given.contains(&port) {
            continue;
        }
        // Free on every interface (a listener on 127.0.0.1 refuses this too),
        // as some services bind 0.0.0.0. The probe closes at the end of the
        // statement.
        let free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
        if free {
            given.push(port);
            return Ok(port);
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestkitError::Io("binding a probe socket", e))?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestkitError::Io("reading the probe socket's port", e))?;
    given.push(port);
    Ok(port)
}

/// A small real file system (tmpfs of a few MiB) that a test can fill to
/// make the disk full under a service and free again: the same `ENOSPC` a
/// full volume gives. Mounting needs root (CI runs as root);
/// [`SmallDisk::mount`] says so when it cannot. Unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` on a new temporary folder.
    pub fn mount(bytes: u64) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("concierto-disk-")
            .tempdir()
            .map_err(|e| TestkitError::Io("creating the mount point", e))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| TestkitError::Io("running mount (a small disk needs root)", e))?;
        if !out.status.success() {
            return Err(TestkitError::Io(
                "mounting a tmpfs (a small disk needs root)",
                std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            ));
        }
        Ok(SmallDisk { dir, mounted: true })
    }

    /// The mounted folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of the disk with a file (`filler` under the mount),
    /// so that the next write needing space fails with `ENOSPC`.
    pub fn fill(&self) -> Result<(), TestkitError> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.filler())
            .map_err(|e| TestkitError::Io("creating the filler", e))?;
        let block = vec![0xA5u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(TestkitError::Io("filling the disk", e)),
            }
        }
        // Whatever fits less than a block.
        let mut small = vec![0xA5u8; 512];
        while let Ok(n) = f.write(&small) {
            if n == 0 {
                break;
            }
            small.truncate(n.max(1));
        }
        Ok(())
    }

    /// Removes the filler: the disk has room again.
    pub fn free(&self) -> Result<(), TestkitError> {
        match std::fs::remove_file(self.filler()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TestkitError::Io("removing the filler", e)),
        }
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Polls `f` every 50 ms until it gives `Some`, or panics after `within`
/// naming `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nats-server");
        sbin.is_file().then_some(sbin)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!((20_000..32_768).contains(&p), "{p}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }

    use super::*;

    #[test]
    fn starts_with_jetstream_and_stops_on_drop() {
        let server = NatsServer::start().expect("nats-server starts");
        let port = server.port();
        assert!(jetstream_ready(port));
        let store = server.store_dir().to_path_buf();
        drop(server);
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        assert!(!store.exists(), "store removed on drop");
    }

    #[test]
    fn two_servers_get_two_ports() {
        let a = NatsServer::start().expect("first");
        let b = NatsServer::start().expect("second");
        assert_ne!(a.port(), b.port());
    }
}
