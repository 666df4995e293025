//! [`NatsCluster`]: three `nats-server -js` processes on loopback routed to
//! each other, for tests of what a node's death does (streams with replicas,
//! clients that reconnect, leases that move).
//!
//! Each node has its own client, cluster (route) and monitoring port and its
//! own store folder, so a node can be SIGKILLed ([`NatsCluster::kill`]) and
//! started again on the same ports with the same store
//! ([`NatsCluster::restart`]), as after a crash. [`NatsCluster::wait_ready`]
//! returns once every running node sees a JetStream meta leader, which is when
//! streams can be created.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestkitError, find_binary, free_port, jetstream_ready};

/// How many nodes a [`NatsCluster`] has.
pub const CLUSTER_SIZE: usize = 3;

/// One node of a [`NatsCluster`].
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three routed `nats-server -js` processes, stopped and cleaned up on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    bin: PathBuf,
    /// Holds every node's folder; removed on drop.
    _root: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three nodes on free loopback ports, each with a fresh store, and
    /// waits until JetStream has a meta leader.
    pub fn start() -> Result<Self, TestkitError> {
        let bin = find_binary().ok_or(TestkitError::NoBinary)?;
        let root = tempfile::Builder::new()
            .prefix("concierto-nats-cluster-")
            .tempdir()
            .map_err(|e| TestkitError::Io("creating the cluster's directory", e))?;
        let mut nodes = Vec::with_capacity(CLUSTER_SIZE);
        for i in 0..CLUSTER_SIZE {
            let dir = root.path().join(format!("n{i}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| TestkitError::Io("creating a node's directory", e))?;
            nodes.push(Node {
                name: format!("n{i}"),
                client_port: free_port()?,
                cluster_port: free_port()?,
                monitor_port: free_port()?,
                dir,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            nodes,
            bin,
            _root: root,
        };
        for i in 0..CLUSTER_SIZE {
            cluster.spawn(i)?;
        }
        for i in 0..CLUSTER_SIZE {
            cluster.wait_accepting(i)?;
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-joined (`nats://127.0.0.1:a,nats://127.0.0.1:b,...`):
    /// what a client (or `server.nats_url`) is given.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Node `i`'s server name (`n0`, `n1`, `n2`), as JetStream names peers.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i`'s monitoring port (`/jsz`, `/varz`, ...).
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.nodes[i].monitor_port
    }

    /// Node `i`'s folder: its store (`jetstream/`) and its log (`nats-server.log`).
    pub fn dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }

    /// Whether node `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Kills node `i` with SIGKILL (no goodbye to its peers or clients),
    /// keeping its store.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on the same ports with the same store, as after a
    /// crash, and waits until it accepts clients (not until it caught up: call
    /// [`NatsCluster::wait_ready`] for the meta leader).
    pub fn restart(&mut self, i: usize) -> Result<(), TestkitError> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_accepting(i)
    }

    /// Waits until every running node reports a running JetStream meta leader
    /// (its monitoring endpoint `/jsz` names one) and accepts clients with
    /// JetStream on.
    pub fn wait_ready(&self, within: Duration) -> Result<(), TestkitError> {
        let deadline = Instant::now() + within;
        loop {
            // A leader that is running: a node may name a dead one until it
            // notices.
            let running: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.name.as_str())
                .collect();
            let ready = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                jetstream_ready(n.client_port)
                    && meta_leader(n.monitor_port).is_some_and(|l| running.contains(&l.as_str()))
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let i = self
                    .nodes
                    .iter()
                    .position(|n| n.child.is_some())
                    .unwrap_or(0);
                return Err(self.not_ready(i, within));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The JetStream meta leader as node `i` sees it (a server name), if any.
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        meta_leader(self.nodes[i].monitor_port)
    }

    fn spawn(&mut self, i: usize) -> Result<(), TestkitError> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let err_path = node.dir.join("nats-server.stderr");
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(node.client_port.to_string())
            .args(["-n", &node.name, "--cluster_name", "concierto-test"])
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", node.cluster_port))
            .arg("--routes")
            .arg(routes.join(","))
            .arg("-m")
            .arg(node.monitor_port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(node.dir.join("jetstream"))
            .arg("-l")
            .arg(node.dir.join("nats-server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&err_path)
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .map_err(|e| TestkitError::Io("spawning nats-server", e))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers clients (its INFO line); JetStream itself
    /// needs the meta leader ([`NatsCluster::wait_ready`]).
    fn wait_accepting(&mut self, i: usize) -> Result<(), TestkitError> {
        let waited = Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        while Instant::now() < deadline {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                break;
            }
            if accepting(self.nodes[i].client_port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let err = self.not_ready(i, waited);
        self.kill(i);
        Err(err)
    }

    fn not_ready(&self, i: usize, waited: Duration) -> TestkitError {
        let node = &self.nodes[i];
        let log = std::fs::read_to_string(node.dir.join("nats-server.log")).unwrap_or_default()
            + &std::fs::read_to_string(node.dir.join("nats-server.stderr")).unwrap_or_default();
        let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join(" | ");
        TestkitError::NotReady {
            port: node.client_port,
            waited,
            log: tail,
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // `_root` is removed after this, with every node's store.
    }
}

/// Whether a server on `port` sends its INFO line.
fn accepting(port: u16) -> bool {
    use std::io::{BufRead, BufReader};
    let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO")
}

/// The meta leader named by `/jsz` on the monitoring port, if any.
fn meta_leader(port: u16) -> Option<String> {
    let body = http_get(port, "/jsz")?;
    // `"meta_cluster": {"name": ..., "leader": "n1", ...}`: no JSON parser in
    // the testkit, and the field is a plain string.
    let cluster = &body[body.find("\"meta_cluster\"")?..];
    let after = &cluster[cluster.find("\"leader\"")? + "\"leader\"".len()..];
    let start = after.find('"')? + 1;
    let len = after[start..].find('"')?;
    let leader = &after[start..start + len];
    (!leader.is_empty()).then(|| leader.to_string())
}

/// The body of `GET path` on a loopback HTTP port, bounded to 1 MiB and 1 s.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then(|| head.contains(" 200 "))
        .filter(|ok| *ok)
        .map(|_| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_elect_a_meta_leader_and_one_comes_back_after_a_kill() {
        let mut cluster = NatsCluster::start().expect("the cluster starts");
        assert_eq!(cluster.urls().split(',').count(), CLUSTER_SIZE);
        let leader = cluster.meta_leader(0).expect("a meta leader");
        assert!(
            (0..CLUSTER_SIZE).any(|i| cluster.name(i) == leader),
            "{leader}"
        );
        // The leader dies: the two others elect another.
        let dead = (0..CLUSTER_SIZE)
            .find(|i| cluster.name(*i) == leader)
            .unwrap_or(0);
        cluster.kill(dead);
        assert!(!cluster.is_running(dead));
        cluster
            .wait_ready(Duration::from_secs(30))
            .expect("a new meta leader");
        let other = (dead + 1) % CLUSTER_SIZE;
        assert_ne!(cluster.meta_leader(other).as_deref(), Some(leader.as_str()));
        cluster.restart(dead).expect("the node comes back");
        cluster
            .wait_ready(Duration::from_secs(30))
            .expect("the node sees the leader");
        assert!(cluster.meta_leader(dead).is_some());
    }
}
