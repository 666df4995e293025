//! The deploy files describe a system that starts. Each test reads one of them —
//! `docker-compose.yml` (with the image's `ENV` from `deploy/Dockerfile`) or the
//! kustomize base in `deploy/k8s/base` — and starts every Concierto container it
//! gives as a local process: the very command (`ENTRYPOINT` + `command`/`args`)
//! and environment, with only the NATS URL (a real nats-server), the listening
//! ports (free local ones), and the container paths (the studio mount, each
//! replica's own data volume, under a per-process root folder) put in their
//! local place; ConfigMap volumes get the kubelet's layout (`..data` links).
//! The operator's admin token (what the admin-tokens Secret holds) is added.
//! NATS is a real nats-server with `deploy/nats/nats.conf` (one user per
//! service, their permissions), its passwords generated for the test and given
//! as an `.env` file (compose) or the `concierto-nats` Secret (k8s) would.
//!
//! Peer addresses (`http://<container>:<port>`, e.g. the dashboard's
//! `server.library_url` `http://ingest:8081`) point at that container's local
//! port, as the cluster's DNS would; a shared volume (the source folders' PVC)
//! is one folder for every pod, holding what the operator copies in (the
//! example studio's content).
//!
//! Then, over the admin API of the `admin` container: a run of the example
//! studio's daily pipeline with a slow builtin step; SIGTERM to the
//! content-creator replica holding one of its tasks (it must finish that task,
//! then exit 0); a rolling restart of the orchestrator (SIGTERM, exit 0, the same
//! command on the same volume); the run must still succeed. Every container's
//! health check (compose) or readiness/liveness probe (k8s, HTTP and gRPC) must
//! pass; the dashboard's `/library` (signed in) must show the gallery the
//! ingest container serves; SIGTERM must stop every process with status 0.
//!
//! Containers whose service this build does not have yet (`serve` says "not
//! built yet") and a build that serves no metrics/health endpoint at all are
//! reported on stderr and left out; once they exist they are checked.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concierto_e2e::concierto_bin;
use concierto_testkit::NatsServer;
use yaml_rust2::{Yaml, YamlLoader};

/// The operator's admin token (the admin-tokens Secret / the studio's `token_sha256`).
const TOKEN: &str = "deploy-test-token-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------- the files

/// Where a container path comes from.
#[derive(Debug, Clone)]
enum Source {
    /// A host folder (compose bind mount).
    Host(PathBuf),
    /// Files of a ConfigMap (kustomize generator): key → file on the host.
    ConfigMap(Vec<(String, PathBuf)>),
    /// A volume of the replica's own (named volume, PVC, emptyDir).
    Own,
    /// A folder of a volume every pod shares (a PersistentVolumeClaim named
    /// in the pod's volumes): claim, subPath.
    Shared(String, String),
}

/// A probe the files give a container.
#[derive(Debug, Clone)]
enum Probe {
    /// A command run in the container (compose healthcheck `CMD`).
    Exec(Vec<String>),
    /// HTTP GET of `path` on container port `port`, 2xx expected.
    Http { path: String, port: u16 },
    /// grpc.health.v1 Check on container port `port`, SERVING expected.
    Grpc { port: u16 },
}

/// One container, as the deploy file gives it.
#[derive(Debug, Clone)]
struct Container {
    name: String,
    /// ENTRYPOINT + command/args: `concierto ...`.
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    mounts: Vec<(String, Source)>,
    replicas: u32,
    probes: Vec<Probe>,
}

fn load_yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Resolves YAML merge keys (`<<: *anchor`); aliases are already copies.
fn merge_keys(y: Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            let mut merged = Vec::new();
            for (k, v) in h {
                if k.as_str() == Some("<<") {
                    merged.push(merge_keys(v));
                } else {
                    out.insert(k, merge_keys(v));
                }
            }
            for m in merged {
                if let Yaml::Hash(m) = m {
                    for (k, v) in m {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a.iter().map(scalar).collect(),
        Yaml::BadValue => Vec::new(),
        other => vec![scalar(other)],
    }
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The NATS passwords of `deploy/nats/nats.conf` (its `password: $VARIABLE`
/// lines), generated once per test process: what an operator's `.env` file
/// (compose) or the `concierto-nats` Secret (k8s) holds.
fn nats_passwords() -> &'static BTreeMap<String, String> {
    static PASSWORDS: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    PASSWORDS.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let conf = std::fs::read_to_string(repo().join("deploy/nats/nats.conf")).unwrap();
        let vars: Vec<String> = conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("password: $"))
            .map(str::to_string)
            .collect();
        assert!(vars.len() >= 8, "one password per service user: {vars:?}");
        vars.into_iter()
            .map(|v| {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write(v.as_bytes());
                // nats-server reads the value as configuration: start with a letter.
                let pw = format!("p{:016x}{:016x}", h.finish(), std::process::id());
                (v, pw)
            })
            .collect()
    })
}

/// Compose interpolation with only the NATS passwords set (the `.env` file):
/// `${X:-default}` → X or default, `${X:?message}` → X (required), `${X}` → X or "".
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closed ${...}") + i;
        let inner = &rest[i + 2..end];
        let (name, default, required) = match inner.split_once(":-") {
            Some((n, d)) => (n, d, false),
            None => match inner.split_once(":?") {
                Some((n, _)) => (n, "", true),
                None => (inner, "", false),
            },
        };
        match nats_passwords().get(name) {
            Some(v) => out.push_str(v),
            None => {
                assert!(!required, "compose requires {name}, which no .env gives");
                out.push_str(default);
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `deploy/Dockerfile`: its ENTRYPOINT (JSON form), and its ENV (`K=V` pairs,
/// continued lines).
fn dockerfile() -> (Vec<String>, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let runtime = joined
        .rsplit_once("\nFROM ")
        .map(|(_, r)| r)
        .expect("a runtime stage");
    let mut entrypoint = Vec::new();
    let mut env = BTreeMap::new();
    for line in runtime.lines() {
        if let Some(e) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = e
                .trim()
                .trim_matches(['[', ']'])
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect();
        }
        if let Some(e) = line.strip_prefix("ENV ") {
            for kv in e.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("ENV K=V");
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    assert_eq!(entrypoint, ["concierto"], "the image's ENTRYPOINT");
    (entrypoint, env)
}

/// The Concierto containers of `docker-compose.yml` (NATS, Jaeger and Prometheus
/// are other images).
fn compose_containers() -> Vec<Container> {
    let (entrypoint, image_env) = dockerfile();
    let doc = merge_keys(load_yaml(&repo().join("docker-compose.yml")).remove(0));
    let mut out = Vec::new();
    for (name, svc) in doc["services"].as_hash().expect("services") {
        let name = scalar(name);
        let image = interpolate(&scalar(&svc["image"]));
        if !image.starts_with("concierto") {
            continue;
        }
        assert_eq!(
            scalar(&svc["build"]["dockerfile"]),
            "deploy/Dockerfile",
            "{name}"
        );
        let mut argv = entrypoint.clone();
        argv.extend(strings(&svc["command"]).iter().map(|s| interpolate(s)));
        let mut env = image_env.clone();
        for (k, v) in svc["environment"].as_hash().expect("environment map") {
            env.insert(scalar(k), interpolate(&scalar(v)));
        }
        let mut mounts = Vec::new();
        for v in strings(&svc["volumes"]) {
            let v = interpolate(&v);
            let parts: Vec<&str> = v.split(':').collect();
            let (src, dst) = (parts[0], parts[1].to_string());
            let source = if src.starts_with('.') || src.starts_with('/') {
                Source::Host(repo().join(src))
            } else {
                Source::Own
            };
            mounts.push((dst, source));
        }
        let replicas = match &svc["deploy"]["replicas"] {
            Yaml::Integer(n) => u32::try_from(*n).unwrap(),
            _ => 1,
        };
        let test = strings(&svc["healthcheck"]["test"]);
        assert_eq!(test.first().map(String::as_str), Some("CMD"), "{name}");
        out.push(Container {
            name,
            argv,
            env,
            mounts,
            replicas,
            probes: vec![Probe::Exec(test[1..].to_vec())],
        });
    }
    out
}

/// `KEY=VALUE` lines of a kustomize `envs` file (comments and blanks skipped).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Generators of a kustomization: name → (files as key → path, envs pairs).
type Generated = HashMap<String, (Vec<(String, PathBuf)>, Vec<(String, String)>)>;

fn generators(dir: &Path, k: &Yaml, out: &mut Generated) {
    for key in ["configMapGenerator", "secretGenerator"] {
        for g in k[key].as_vec().into_iter().flatten() {
            let entry = out.entry(scalar(&g["name"])).or_default();
            for f in strings(&g["files"]) {
                let base = Path::new(&f)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                entry.0.push((base, dir.join(&f)));
            }
            for e in strings(&g["envs"]) {
                entry.1.extend(env_file(&dir.join(e)));
            }
        }
    }
}

/// The Concierto containers of the kustomize base, its generated ConfigMaps and
/// Secrets resolved from their files.
fn k8s_containers() -> Vec<Container> {
    let base = repo().join("deploy/k8s/base");
    let kust = load_yaml(&base.join("kustomization.yaml")).remove(0);
    let mut generated = Generated::new();
    generators(&base, &kust, &mut generated);
    let mut docs = Vec::new();
    for r in strings(&kust["resources"]) {
        let p = base.join(&r);
        if p.is_dir() {
            let k = load_yaml(&p.join("kustomization.yaml")).remove(0);
            generators(&p, &k, &mut generated);
        } else {
            docs.extend(load_yaml(&p));
        }
    }
    let mut out = Vec::new();
    for d in &docs {
        let kind = scalar(&d["kind"]);
        if kind != "Deployment" && kind != "StatefulSet" {
            continue;
        }
        let spec = &d["spec"];
        let pod = &spec["template"]["spec"];
        let claims: Vec<String> = spec["volumeClaimTemplates"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|c| scalar(&c["metadata"]["name"]))
            .collect();
        for c in pod["containers"].as_vec().expect("containers") {
            if scalar(&c["image"]) != "concierto" {
                continue;
            }
            let name = scalar(&d["metadata"]["name"]);
            assert_eq!(
                c["command"],
                Yaml::BadValue,
                "{name}: the image's ENTRYPOINT runs"
            );
            let mut argv = vec!["concierto".to_string()];
            argv.extend(strings(&c["args"]));
            let mut env = BTreeMap::new();
            for from in c["envFrom"].as_vec().into_iter().flatten() {
                let r = if from["configMapRef"].is_badvalue() {
                    &from["secretRef"]
                } else {
                    &from["configMapRef"]
                };
                let (_, pairs) = generated
                    .get(&scalar(&r["name"]))
                    .unwrap_or_else(|| panic!("{name}: no generator for {:?}", r["name"]));
                env.extend(pairs.iter().cloned());
            }
            for e in c["env"].as_vec().into_iter().flatten() {
                let from = &e["valueFrom"];
                let value = if from.is_badvalue() {
                    scalar(&e["value"])
                } else {
                    // A key of a generated Secret or ConfigMap, as the kubelet reads it.
                    let r = if from["secretKeyRef"].is_badvalue() {
                        &from["configMapKeyRef"]
                    } else {
                        &from["secretKeyRef"]
                    };
                    let (_, pairs) = generated
                        .get(&scalar(&r["name"]))
                        .unwrap_or_else(|| panic!("{name}: no generator for {:?}", r["name"]));
                    let key = scalar(&r["key"]);
                    pairs
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| panic!("{name}: no key {key} in {:?}", r["name"]))
                };
                env.insert(scalar(&e["name"]), value);
            }
            let volumes: HashMap<String, &Yaml> = pod["volumes"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|v| (scalar(&v["name"]), v))
                .collect();
            let mut mounts = Vec::new();
            for m in c["volumeMounts"].as_vec().into_iter().flatten() {
                let vname = scalar(&m["name"]);
                let path = scalar(&m["mountPath"]);
                let source = if claims.contains(&vname) {
                    Source::Own
                } else {
                    let v = volumes
                        .get(&vname)
                        .unwrap_or_else(|| panic!("{name}: no volume {vname}"));
                    if !v["persistentVolumeClaim"].is_badvalue() {
                        Source::Shared(
                            scalar(&v["persistentVolumeClaim"]["claimName"]),
                            scalar(&m["subPath"]),
                        )
                    } else if !v["configMap"].is_badvalue() {
                        let cm = scalar(&v["configMap"]["name"]);
                        let (files, _) = generated
                            .get(&cm)
                            .unwrap_or_else(|| panic!("{name}: no ConfigMap {cm}"));
                        Source::ConfigMap(files.clone())
                    } else {
                        assert!(!v["emptyDir"].is_badvalue(), "{name}: volume {vname}");
                        Source::Own
                    }
                };
                mounts.push((path, source));
            }
            let ports: HashMap<String, u16> = c["ports"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        scalar(&p["name"]),
                        u16::try_from(p["containerPort"].as_i64().unwrap()).unwrap(),
                    )
                })
                .collect();
            let port = |p: &Yaml| match p {
                Yaml::Integer(n) => u16::try_from(*n).unwrap(),
                other => ports[&scalar(other)],
            };
            let mut probes = Vec::new();
            for key in ["readinessProbe", "livenessProbe"] {
                let p = &c[key];
                assert!(!p.is_badvalue(), "{name}: {key}");
                if !p["httpGet"].is_badvalue() {
                    probes.push(Probe::Http {
                        path: scalar(&p["httpGet"]["path"]),
                        port: port(&p["httpGet"]["port"]),
                    });
                } else {
                    probes.push(Probe::Grpc {
                        port: port(&p["grpc"]["port"]),
                    });
                }
            }
            let replicas = spec["replicas"]
                .as_i64()
                .map_or(1, |n| u32::try_from(n).unwrap());
            out.push(Container {
                name,
                argv,
                env,
                mounts,
                replicas,
                probes,
            });
        }
    }
    out
}

// ------------------------------------------------------------ as processes

/// Copies a folder (the example studio's sample content) recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Points each replica's `http://<container>:<port>` values (a peer's
/// address, e.g. `CONCIERTO__SERVER__LIBRARY_URL=http://ingest:8081`) at the
/// local port of that container's first replica, as the cluster's DNS would.
fn resolve_peers(replicas: &mut [Replica]) {
    let ports: HashMap<String, HashMap<u16, u16>> = replicas
        .iter()
        .rev()
        .map(|r| (r.container.name.clone(), r.ports.clone()))
        .collect();
    for r in replicas.iter_mut() {
        for v in r.env.values_mut() {
            let Some(rest) = v.strip_prefix("http://") else {
                continue;
            };
            let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
            let Some(peer) = ports.get(host) else {
                continue;
            };
            let port: u16 = port
                .trim_end_matches('/')
                .parse()
                .expect("a peer URL with a port");
            let local = peer
                .get(&port)
                .unwrap_or_else(|| panic!("{}: {v}: {host} listens on no port {port}", r.name));
            *v = format!("http://127.0.0.1:{local}");
        }
    }
}

/// One replica of a container, as a local process.
struct Replica {
    name: String,
    container: Container,
    root: PathBuf,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    /// container port → local port
    ports: HashMap<u16, u16>,
    child: Option<Child>,
    log: PathBuf,
}

impl Replica {
    /// The container's root folder with its mounts: bind mounts as links, ConfigMaps
    /// as the kubelet writes them, volumes of its own as empty folders.
    fn new(dir: &Path, name: String, c: &Container, nats: &str) -> Self {
        let root = dir.join(&name).join("root");
        let mut mounts = c.mounts.clone();
        mounts.sort_by_key(|(p, _)| p.len());
        for (path, source) in &mounts {
            let at = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            match source {
                Source::Host(host) => {
                    let host = host.canonicalize().unwrap();
                    // A folder of a bind mount bound again (writable): already there.
                    if at.canonicalize().ok().as_ref() != Some(&host) {
                        std::os::unix::fs::symlink(host, &at).unwrap()
                    }
                }
                Source::Shared(claim, sub) => {
                    // What the operator copies into the volume first (deploy/k8s/base/sources.yaml):
                    // the example studio's folder of that name.
                    let shared = dir.join("shared").join(claim).join(sub);
                    if !shared.exists() {
                        copy_dir(&repo().join("examples/studio").join(sub), &shared);
                    }
                    std::os::unix::fs::symlink(&shared, &at).unwrap()
                }
                Source::Own => std::fs::create_dir_all(&at).unwrap(),
                Source::ConfigMap(files) => {
                    let stamp = at.join("..2026_01_01_00_00_00.000000001");
                    std::fs::create_dir_all(&stamp).unwrap();
                    for (key, host) in files {
                        std::fs::copy(host, stamp.join(key)).unwrap();
                        std::os::unix::fs::symlink(Path::new("..data").join(key), at.join(key))
                            .unwrap();
                    }
                    std::os::unix::fs::symlink(stamp.file_name().unwrap(), at.join("..data"))
                        .unwrap();
                }
            }
        }
        // A container path is a path under the replica's root (its mounts, or
        // the image's own file system, never shared between replicas).
        let local_path = |v: &str| -> Option<String> {
            v.starts_with('/')
                .then(|| root.join(v.trim_start_matches('/')).display().to_string())
        };
        let mut ports = HashMap::new();
        let mut env = BTreeMap::new();
        for (k, v) in &c.env {
            let local = if v.starts_with("nats://") {
                nats.to_string()
            } else if let Some(p) = v.strip_prefix("0.0.0.0:") {
                let container: u16 = p.parse().unwrap();
                let free = concierto_testkit::free_port().unwrap();
                ports.insert(container, free);
                format!("127.0.0.1:{free}")
            } else if let Some(l) = local_path(v) {
                l
            } else {
                v.clone()
            };
            env.insert(k.clone(), local);
        }
        // Its NATS user's password: compose interpolated it from the `.env`
        // file; the k8s Secret `concierto-nats` holds it once the operator
        // filled it (empty in the base).
        let user = env
            .get("CONCIERTO_NATS_USER")
            .cloned()
            .unwrap_or_else(|| panic!("{name}: no CONCIERTO_NATS_USER (its NATS user)"));
        let var = format!(
            "CONCIERTO_NATS_{}_PASSWORD",
            user.to_uppercase().replace('-', "_")
        );
        let password = nats_passwords()
            .get(&var)
            .unwrap_or_else(|| panic!("{name}: NATS user {user} is not in deploy/nats/nats.conf"));
        let given = env.entry("CONCIERTO_NATS_PASSWORD".into()).or_default();
        if given.is_empty() {
            given.clone_from(password);
        }
        assert_eq!(given, password, "{name}: CONCIERTO_NATS_PASSWORD is {var}");
        // What the admin-tokens Secret holds for the operator.
        env.insert(
            "CONCIERTO__REVIEWERS__CREATIVE_DIRECTOR__TOKEN_SHA256".into(),
            concierto_admin::token_sha256(TOKEN),
        );
        env.insert(
            "CONCIERTO__REVIEWERS__CREATIVE_DIRECTOR__ROLES".into(),
            "admin".into(),
        );
        let argv = c
            .argv
            .iter()
            .map(|a| local_path(a).unwrap_or_else(|| a.clone()))
            .collect();
        let log = dir.join(format!("{name}.log"));
        Replica {
            name,
            container: c.clone(),
            root,
            argv,
            env,
            ports,
            child: None,
            log,
        }
    }

    fn start(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        assert_eq!(self.argv[0], "concierto");
        let child = Command::new(concierto_bin())
            .args(&self.argv[1..])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            // Task starts and ends, read below, are logged at debug.
            .env("RUST_LOG", "info,concierto_agent::worker=debug")
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", concierto_bin().display()));
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn local(&self, container_port: u16) -> u16 {
        *self.ports.get(&container_port).unwrap_or_else(|| {
            panic!(
                "{}: no listener on container port {container_port}",
                self.name
            )
        })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGTERM; the exit status within `within` (None: still running, killed).
    fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_ref()?;
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        self.wait_exit(within)
    }

    /// Waits up to `within` for it to exit, sending nothing (a second SIGTERM
    /// would cut its stop short); kills it after.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = c.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `concierto <args>` as the admin client against `server`.
fn client(server: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(concierto_bin())
        .args(args)
        .args(["--server", server, "--token", TOKEN])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A field of a log line in text (`k=v`) or JSON (`"k":"v"`) form.
fn field(line: &str, key: &str) -> Option<String> {
    for pat in [format!("{key}="), format!("\"{key}\":\"")] {
        if let Some(i) = line.find(&pat) {
            let v: String = line[i + pat.len()..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
                .collect();
            return Some(v);
        }
    }
    None
}

async fn grpc_serving(port: u16) -> bool {
    let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
    else {
        return false;
    };
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    matches!(
        h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await,
        Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}

/// Runs a probe of `r` once: Ok, or why not.
async fn probe(r: &Replica, p: &Probe) -> Result<(), String> {
    let http = |port: u16, path: &str| -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}{path}", r.local(port));
        let out = Command::new(concierto_bin())
            .args(["probe", &url])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    match p {
        Probe::Exec(argv) => {
            // `concierto probe http://127.0.0.1:PORT/PATH` in the container.
            assert_eq!(argv[..2], ["concierto", "probe"], "{}: {argv:?}", r.name);
            let url = argv[2]
                .strip_prefix("http://127.0.0.1:")
                .expect("a local URL");
            let (port, path) = url.split_once('/').expect("a path");
            http(port.parse().unwrap(), &format!("/{path}"))
        }
        Probe::Http { path, port } => http(*port, path),
        Probe::Grpc { port } => {
            if grpc_serving(r.local(*port)).await {
                Ok(())
            } else {
                Err("gRPC health is not SERVING".into())
            }
        }
    }
}

/// Whether anything listens on the replica's metrics port.
fn logs(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|r| {
            let log = r.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!(
                "----- {} ({}) -----\n{}",
                r.name,
                r.argv.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Percent-encodes a form value.
fn form_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in to the dashboard at `base` with the operator's token (cookies
/// kept by hand) and GETs `/library`: its status and page.
async fn library_page(base: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: Vec<String> = Vec::new();
    let keep = |cookies: &mut Vec<String>, r: &reqwest::Response| {
        for c in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_string();
            let name = pair.split('=').next().unwrap().to_string();
            cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            cookies.push(pair);
        }
    };
    let Ok(login) = http.get(format!("{base}/login")).send().await else {
        return (0, "the dashboard does not answer".into());
    };
    keep(&mut cookies, &login);
    let page = login.text().await.unwrap_or_default();
    let Some(csrf) = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
    else {
        return (0, format!("no sign-in form: {page}"));
    };
    let form = format!(
        "csrf={}&token={}&next=%2Flibrary",
        form_value(csrf),
        form_value(TOKEN)
    );
    let signed = http
        .post(format!("{base}/login"))
        .header("cookie", cookies.join("; "))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    keep(&mut cookies, &signed);
    if signed.status() != reqwest::StatusCode::SEE_OTHER {
        return (
            signed.status().as_u16(),
            signed.text().await.unwrap_or_default(),
        );
    }
    let r = http
        .get(format!("{base}/library"))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn run_cluster(what: &str, containers: Vec<Container>) {
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "orchestrator",
        "scheduler",
        "admin",
        "feedback",
        "ingest",
        "agents",
        "content-creator",
    ] {
        assert!(
            names.contains(&expected),
            "{what}: no {expected} container in {names:?}"
        );
    }
    let cc = containers
        .iter()
        .find(|c| c.name == "content-creator")
        .unwrap();
    assert!(
        cc.replicas >= 3,
        "{what}: content-creator runs {} replicas",
        cc.replicas
    );

    let nats = NatsServer::start_with_config(
        &repo().join("deploy/nats/nats.conf"),
        nats_passwords().clone(),
    )
    .expect("nats-server starts with deploy/nats/nats.conf");
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> = Vec::new();
    for c in &containers {
        for i in 0..c.replicas {
            let name = if c.replicas > 1 {
                format!("{}-{i}", c.name)
            } else {
                c.name.clone()
            };
            replicas.push(Replica::new(dir.path(), name, c, &nats.url()));
        }
    }
    resolve_peers(&mut replicas);
    for r in &mut replicas {
        r.start();
    }
    // The demo trigger is off in a cluster: only the runs started here run.
    for r in &replicas {
        assert_eq!(
            r.env.get("CONCIERTO__DEMO_TRIGGERS").map(String::as_str),
            Some("off"),
            "{what}: {} runs the example's 30-second demo trigger",
            r.name
        );
    }
    // Data folders are never shared between replicas.
    let data: Vec<&String> = replicas
        .iter()
        .filter_map(|r| r.env.get("CONCIERTO__SERVER__DATA_DIR"))
        .collect();
    let mut unique = data.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        data.len(),
        "{what}: shared data folders: {data:?}"
    );

    // Every service the files name is built: none may stop at start.
    std::thread::sleep(Duration::from_secs(2));
    for r in &mut replicas {
        assert!(
            r.exited().is_none(),
            "{what}: {} stopped at start:\n{}",
            r.name,
            r.log()
        );
    }

    let admin = replicas
        .iter()
        .find(|r| r.container.name == "admin")
        .unwrap();
    let server = format!("http://127.0.0.1:{}", admin.local(50051));
    let admin_grpc = admin.local(50051);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !grpc_serving(admin_grpc).await {
        for r in &mut replicas {
            assert!(
                r.exited().is_none(),
                "{what}: {} exited:\n{}",
                r.name,
                r.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what}: admin not serving:\n{}",
            logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The content library's gallery, through the dashboard's own container:
    // it reaches the library at its peer address (server.library_url).
    if let Some(dash) = replicas.iter().find(|r| r.container.name == "dashboard") {
        let base = format!("http://127.0.0.1:{}", dash.local(8082));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, page) = library_page(&base).await;
            if status == 200 && page.contains("class=\"item\"") {
                let items = page.matches("class=\"item\"").count();
                eprintln!(
                    "{what}: the dashboard's /library shows {items} items from the ingest container"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: GET /library through the dashboard: {status}\n{page}\n{}",
                logs(&replicas)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // A run of the example studio, each step slow enough to be caught in flight.
    let (ok, out) = client(
        &server,
        &[
            "run",
            "start",
            "daily-content-pipeline",
            "--param",
            "builtin.sleep_ms=2500",
        ],
    );
    assert!(ok, "{what}: run start: {out}\n{}", logs(&replicas));
    let run_id = out.trim().to_string();

    // SIGTERM to the content-creator replica holding this run's draft: it
    // finishes the task, then exits 0.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (idx, task_id) = loop {
        let held = replicas.iter().enumerate().find_map(|(i, r)| {
            (r.container.name == "content-creator").then_some(())?;
            r.log()
                .lines()
                .find(|l| l.contains("task started") && l.contains(&run_id))
                .and_then(|l| field(l, "task_id"))
                .map(|t| (i, t))
        });
        if let Some(h) = held {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no content-creator took a task of {run_id}:\n{}",
            logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = &mut replicas[idx];
    let status = victim.terminate(Duration::from_secs(60));
    let log = victim.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: {} on SIGTERM: {status:?}\n{log}",
        victim.name
    );
    let finished = log.lines().any(|l| {
        l.contains("task finished") && field(l, "task_id").as_deref() == Some(task_id.as_str())
    });
    assert!(
        finished,
        "{what}: {} stopped without finishing {task_id}:\n{log}",
        victim.name
    );
    eprintln!(
        "{what}: {} drained {task_id} on SIGTERM and exited 0",
        victim.name
    );

    // A rolling restart of the orchestrator: SIGTERM, exit 0, the same command
    // on the same volume.
    let orch = replicas
        .iter_mut()
        .find(|r| r.container.name == "orchestrator")
        .unwrap();
    let status = orch.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: orchestrator on SIGTERM: {status:?}\n{}",
        orch.log()
    );
    orch.start();

    // The run finishes, every step succeeded.
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let (ok, out) = client(&server, &["run", "show", &run_id, "--json"]);
        if ok {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            match v["state"].as_str() {
                Some("SUCCEEDED") => break v,
                Some("FAILED") | Some("CANCELLED") => panic!("{what}: {out}\n{}", logs(&replicas)),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {run_id} did not finish: {out}\n{}",
            logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let steps = run["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["step_id"] == "draft-content" && s["state"] == "SUCCEEDED"),
        "{run}"
    );

    // Health: every container's health check / probes pass.
    // (The content-creator replica stopped above is gone, as after a scale-down.)
    replicas.retain(|r| r.child.is_some());
    let mut checked = 0;
    for r in &replicas {
        for p in &r.container.probes {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match probe(r, p).await {
                    Ok(()) => break,
                    Err(e) => assert!(
                        Instant::now() < deadline,
                        "{what}: {} probe {p:?}: {e}\n{}",
                        r.name,
                        r.log()
                    ),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            checked += 1;
        }
    }
    eprintln!(
        "{what}: {checked} health checks passed on {} processes",
        replicas.len()
    );

    // SIGTERM to everything: each exits 0.
    let mut failed = Vec::new();
    for r in &mut replicas {
        if let Some(c) = &r.child {
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
        }
    }
    for r in &mut replicas {
        let status = r.wait_exit(Duration::from_secs(60));
        if !status.is_some_and(|s| s.success()) {
            failed.push(format!("{}: {status:?}", r.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{what}: not a clean stop: {failed:?}\n{}",
        logs(&replicas)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_compose_commands_run_the_example_studio_and_stop_cleanly() {
    run_cluster("docker-compose.yml", compose_containers()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_commands_run_the_example_studio_and_stop_cleanly() {
    run_cluster("deploy/k8s/base", k8s_containers()).await;
}

#[test]
fn the_studio_configmap_holds_every_role_file() {
    let k = load_yaml(&repo().join("examples/studio/kustomization.yaml")).remove(0);
    let mut g = Generated::new();
    generators(&repo().join("examples/studio"), &k, &mut g);
    let listed: Vec<String> = g["concierto-studio-agents"]
        .0
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo().join("examples/studio/agents"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    on_disk.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(
        listed_sorted, on_disk,
        "examples/studio/kustomization.yaml must list every role file"
    );
    let brand: Vec<&str> = g["concierto-studio-brand"]
        .0
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(brand.contains(&"rules.yaml"), "{brand:?}");
}
