//! `concierto deploy compose|k8s` on the example studio: the files in
//! `deploy/generated/` are what the binary writes (regenerate them with
//! `UPDATE_DEPLOY=1 cargo nextest run -p concierto-e2e --test deploy_generated`
//! after `cargo build -p concierto`), the output is the same on every run, and
//! it deploys what the studio says: one service / Deployment per agent role
//! (its replica count from `agents.roles`), each role's autoscaler targets that
//! role's Deployment alone and reads that role's own queue (its durable
//! consumer on the tasks stream), every folder a content source reads is
//! mounted where the studio names it, the demo trigger is off, and the
//! dashboard reaches the content library at the ingest service. The NATS
//! cluster's configuration passes `nats-server -t`. (`.ci/deploy-check`
//! validates the files against Kubernetes' schemas and docker-compose.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use concierto_core::config::{self, SourceKind, Studio};
use concierto_e2e::concierto_bin;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn studio() -> Studio {
    config::load_with_env(
        &repo().join("examples/studio/concierto.yaml"),
        Vec::<(String, String)>::new(),
    )
    .expect("the example studio loads")
}

/// What `concierto deploy <args> --out <dir>` writes: file name → text.
fn generate(args: &[&str]) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(concierto_bin())
        .current_dir(repo())
        .arg("deploy")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("concierto runs");
    assert!(
        status.status.success(),
        "concierto deploy {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The variants committed under deploy/generated/: folder → arguments.
fn variants() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "compose",
            vec![
                "compose",
                "examples/studio/concierto.yaml",
                "--studio-path",
                "../../../examples/studio",
            ],
        ),
        ("k8s", vec!["k8s", "examples/studio/concierto.yaml"]),
        (
            "k8s-hpa",
            vec![
                "k8s",
                "examples/studio/concierto.yaml",
                "--autoscale",
                "hpa",
            ],
        ),
    ]
}

fn docs(files: &BTreeMap<String, String>) -> Vec<Yaml> {
    files
        .iter()
        .filter(|(n, _)| n.ends_with(".yaml") || n.ends_with(".yml"))
        .flat_map(|(n, t)| YamlLoader::load_from_str(t).unwrap_or_else(|e| panic!("{n}: {e}")))
        .filter(|d| !d.is_null())
        .collect()
}

fn s(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter().filter(|d| s(&d["kind"]) == kind).collect()
}

fn named<'a>(docs: &'a [Yaml], k: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| s(&d["kind"]) == k && s(&d["metadata"]["name"]) == name)
        .unwrap_or_else(|| panic!("no {k} {name}"))
}

/// The container paths of the folders the studio's content sources read.
fn source_folders(studio: &Studio) -> Vec<String> {
    studio
        .content_sources
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                SourceKind::ImageDatabase | SourceKind::ComponentLibrary | SourceKind::TrainingData
            )
        })
        .map(|c| {
            let rel = Path::new(&c.location)
                .strip_prefix(&studio.base_dir)
                .expect("the example's folders are beside its file");
            format!("/etc/concierto/{}", rel.display())
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

fn mounted(mounts: &[String], folder: &str) -> bool {
    mounts
        .iter()
        .any(|m| m != "/etc/concierto" && (folder == m || folder.starts_with(&format!("{m}/"))))
}

#[test]
fn deploy_generated_holds_what_the_binary_writes_and_the_output_is_stable() {
    let update = std::env::var_os("UPDATE_DEPLOY").is_some();
    for (dir, args) in variants() {
        let now = generate(&args);
        assert_eq!(now, generate(&args), "{dir}: two runs differ");
        let path = repo().join("deploy/generated").join(dir);
        if update {
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            for (name, text) in &now {
                std::fs::write(path.join(name), text).unwrap();
            }
            continue;
        }
        let committed: BTreeMap<String, String> = std::fs::read_dir(&path)
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
                .collect()
            })
            .unwrap_or_default();
        let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&now),
            "deploy/generated/{dir}: files"
        );
        for (name, text) in &now {
            assert!(
                committed[name] == *text,
                "deploy/generated/{dir}/{name} is stale: UPDATE_DEPLOY=1 cargo nextest run -p concierto-e2e --test deploy_generated"
            );
        }
    }
}

#[test]
fn k8s_gives_each_role_its_own_deployment_scaled_on_its_own_queue() {
    let studio = studio();
    let files = generate(&["k8s", "examples/studio/concierto.yaml"]);
    let docs = docs(&files);
    let deployments: BTreeMap<String, &Yaml> = kind(&docs, "Deployment")
        .into_iter()
        .filter_map(|d| {
            let args: Vec<String> = d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_vec()
                .unwrap()
                .iter()
                .map(s)
                .collect();
            (args[0] == "agent").then(|| {
                assert_eq!(args.len(), 3, "{args:?}: one role per Deployment");
                assert_eq!(args[1], "--role");
                (args[2].clone(), d)
            })
        })
        .collect();
    let roles: BTreeSet<String> = studio.roles.keys().cloned().collect();
    assert_eq!(
        deployments.keys().cloned().collect::<BTreeSet<_>>(),
        roles,
        "one Deployment per role"
    );
    for (role, d) in &deployments {
        let want = studio
            .agents
            .roles
            .get(role)
            .and_then(|r| r.replicas)
            .unwrap_or(1);
        assert_eq!(
            d["spec"]["replicas"].as_i64(),
            Some(i64::from(want)),
            "{role}"
        );
    }
    assert_eq!(
        deployments["content-creator"]["spec"]["replicas"].as_i64(),
        Some(2),
        "the example's content-creator replicas"
    );

    let scalers = kind(&docs, "ScaledObject");
    assert_eq!(scalers.len(), roles.len(), "one ScaledObject per role");
    let mut targets = BTreeSet::new();
    for so in scalers {
        let target = s(&so["spec"]["scaleTargetRef"]["name"]);
        let trigger = &so["spec"]["triggers"][0];
        assert_eq!(s(&trigger["type"]), "nats-jetstream");
        let consumer = s(&trigger["metadata"]["consumer"]);
        // The role whose queue this is: its workers' durable consumer.
        let role = roles
            .iter()
            .find(|r| {
                concierto_agent::consumer_spec(r, &concierto_agent::WorkerOptions::default())
                    .durable
                    == consumer
            })
            .unwrap_or_else(|| panic!("{target}: consumer {consumer} is no role's"));
        let own = named(&docs, "Deployment", &target);
        let args = &own["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(s(&args[2]), *role, "{target} scales on {role}'s queue");
        assert_eq!(s(&trigger["metadata"]["stream"]), "CONCIERTO_TASKS");
        assert!(
            s(&trigger["metadata"]["natsServerMonitoringEndpoint"]).ends_with(":8222"),
            "{target}"
        );
        assert!(
            s(&trigger["metadata"]["lagThreshold"])
                .parse::<u32>()
                .unwrap()
                >= 1
        );
        assert!(targets.insert(target.clone()), "{target} has two scalers");
    }

    // The HPA alternative: each on its own role's utilization.
    let hpa = docs_of(&generate(&[
        "k8s",
        "examples/studio/concierto.yaml",
        "--autoscale",
        "hpa",
    ]));
    let hpas = kind(&hpa, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), roles.len());
    for h in hpas {
        let target = s(&h["spec"]["scaleTargetRef"]["name"]);
        let metric = &h["spec"]["metrics"][0]["external"]["metric"];
        assert_eq!(s(&metric["name"]), "concierto_role_utilization");
        let role = s(&metric["selector"]["matchLabels"]["role"]);
        let args = &named(&hpa, "Deployment", &target)["spec"]["template"]["spec"]["containers"][0]
            ["args"];
        assert_eq!(s(&args[2]), role, "{target}");
    }
    assert!(kind(&hpa, "ScaledObject").is_empty());
}

fn docs_of(files: &BTreeMap<String, String>) -> Vec<Yaml> {
    docs(files)
}

#[test]
fn k8s_mounts_every_source_folder_turns_the_demo_off_and_reaches_the_library() {
    let studio = studio();
    let docs = docs(&generate(&["k8s", "examples/studio/concierto.yaml"]));
    let folders = source_folders(&studio);
    assert!(folders.len() >= 4, "{folders:?}");
    let mounts = |name: &str, k: &str| -> Vec<String> {
        named(&docs, k, name)["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|m| s(&m["mountPath"]))
            .collect()
    };
    for (name, k) in [
        ("ingest", "StatefulSet"),
        ("feedback-router", "StatefulSet"),
        ("agent-visual-storyteller", "Deployment"),
    ] {
        let m = mounts(name, k);
        for f in &folders {
            assert!(mounted(&m, f), "{name}: {f} is not mounted: {m:?}");
        }
    }
    assert_eq!(kind(&docs, "PersistentVolumeClaim").len(), 1);

    // The environment every container gets: the demo off, the library's peer address.
    let env: Vec<(String, String)> = named(&docs, "ConfigMap", "concierto-env")["data"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| (s(k), s(v)))
        .collect();
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(get("CONCIERTO__DEMO_TRIGGERS").as_deref(), Some("off"));
    assert_eq!(
        get("CONCIERTO__SERVER__LIBRARY_URL").as_deref(),
        Some("http://ingest:8081")
    );
    let ingest = named(&docs, "Service", "ingest");
    assert!(
        ingest["spec"]["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|p| p["port"].as_i64() == Some(8081))
    );
    let with_env = config::load_with_env(&repo().join("examples/studio/concierto.yaml"), env)
        .expect("the studio loads with the deploy environment");
    assert!(
        !with_env.triggers.iter().any(|t| t.name == "studio_demo"),
        "the demo trigger fires in the cluster"
    );
    assert!(!studio.triggers.is_empty());

    // The studio, its role files and brand folder as ConfigMaps.
    let studio_cm = named(&docs, "ConfigMap", "concierto-studio");
    assert!(!studio_cm["data"]["concierto.yaml"].is_badvalue());
    let agents = named(&docs, "ConfigMap", "concierto-studio-agents");
    assert_eq!(agents["data"].as_hash().unwrap().len(), studio.roles.len());
    let brand = named(&docs, "ConfigMap", "concierto-studio-brand");
    assert!(!brand["data"]["rules.yaml"].is_badvalue());

    // NATS: three servers in a cluster.
    let nats = named(&docs, "StatefulSet", "nats");
    assert_eq!(nats["spec"]["replicas"].as_i64(), Some(3));
}

#[test]
fn compose_gives_each_role_a_service_and_mounts_every_source_folder() {
    let studio = studio();
    let files = generate(&[
        "compose",
        "examples/studio/concierto.yaml",
        "--studio-path",
        "../../../examples/studio",
    ]);
    let doc = &YamlLoader::load_from_str(&files["docker-compose.yml"]).unwrap()[0];
    let services = doc["services"].as_hash().unwrap();
    let mut roles = BTreeSet::new();
    for (name, svc) in services {
        let name = s(name);
        if name == "nats" {
            continue;
        }
        let cmd: Vec<String> = svc["command"].as_vec().unwrap().iter().map(s).collect();
        let env = &svc["environment"];
        assert_eq!(s(&env["CONCIERTO__DEMO_TRIGGERS"]), "off", "{name}");
        assert_eq!(
            s(&env["CONCIERTO__SERVER__LIBRARY_URL"]),
            "http://ingest:8081",
            "{name}"
        );
        let mounts: Vec<String> = svc["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|v| {
                // HOST:CONTAINER[:ro], HOST possibly `${VAR:-default}`.
                let v = s(v);
                let v = v.strip_suffix(":ro").unwrap_or(&v);
                v.rsplit(':').next().unwrap().to_string()
            })
            .collect();
        if cmd[0] == "agent" {
            assert_eq!(cmd.len(), 3, "{name}: {cmd:?}");
            assert_eq!(name, format!("agent-{}", cmd[2]));
            let want = studio
                .agents
                .roles
                .get(&cmd[2])
                .and_then(|r| r.replicas)
                .unwrap_or(1);
            assert_eq!(
                svc["deploy"]["replicas"].as_i64(),
                Some(i64::from(want)),
                "{name}"
            );
            roles.insert(cmd[2].clone());
        }
        if cmd[0] == "agent" || cmd[1] == "ingest" || cmd[1] == "feedback-router" {
            for f in source_folders(&studio) {
                assert!(
                    mounted(&mounts, &f),
                    "{name}: {f} is not mounted: {mounts:?}"
                );
            }
        }
    }
    assert_eq!(
        roles,
        studio.roles.keys().cloned().collect::<BTreeSet<_>>(),
        "a service per role"
    );
    assert!(files["nats.conf"].contains("jetstream"));
}

#[test]
fn the_generated_nats_cluster_configuration_passes_nats_server_t() {
    let files = generate(&["k8s", "examples/studio/concierto.yaml"]);
    let docs = docs(&files);
    let cm = named(&docs, "ConfigMap", "nats-config");
    let dir = tempfile::tempdir().unwrap();
    for key in ["nats.conf", "cluster.conf"] {
        std::fs::write(dir.path().join(key), s(&cm["data"][key])).unwrap();
    }
    let bin = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("nats-server"))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    let conf = std::fs::read_to_string(dir.path().join("nats.conf")).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(dir.path().join("cluster.conf"))
        .arg("-t")
        .env("POD_NAME", "nats-0");
    for v in conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("password: $"))
    {
        cmd.env(v, "pdeploygeneratedplaceholder");
    }
    let out = cmd.output().expect("nats-server runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
