//! The admin API from another gRPC stack: Python stubs generated at test time
//! with grpcio-tools from `proto/concierto/v1/*.proto`, and
//! `tests/python/admin_client.py` driving a real `concierto serve orchestrator
//! scheduler admin` over NATS: runs, gates, a bad token, server reflection and
//! the health check.
//!
//! Needs Python 3 with grpcio-tools, grpcio-reflection and
//! grpcio-health-checking (`tests/python/requirements.txt`; `.ci/run` installs
//! them into `~/.cache/concierto-venv`). Without them the test fails and says
//! so: it never skips.

mod admin_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use admin_common::{CREATIVE, OPS, WORKFLOW, show, start_studio, stdout, wait_ready};
use serde_json::Value;

const MODULES: &str = "import grpc_tools, grpc_reflection, grpc_health";

/// The first Python that has the packages: `CONCIERTO_PYTHON`, `python3` on
/// `PATH`, then the virtualenv `.ci/run` makes. Fails the test, saying what to
/// install, when none has them.
fn python() -> PathBuf {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CONCIERTO_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push("python3".into());
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/concierto-venv/bin/python3"));
    }
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", MODULES])
            .output()
            .map(|o| o.status.success());
        match ok {
            Ok(true) => return c,
            Ok(false) => tried.push(format!("{} (packages missing)", c.display())),
            Err(e) => tried.push(format!("{} ({e})", c.display())),
        }
    }
    panic!(
        "no Python with grpcio-tools, grpcio-reflection and grpcio-health-checking; tried: {}.\n\
         Run `bash .ci/run` (it installs them into ~/.cache/concierto-venv), or \
         `pip install -r tests/python/requirements.txt` \
         (grpcio-tools grpcio-reflection grpcio-health-checking), \
         or point CONCIERTO_PYTHON at a python3 that has them.",
        tried.join(", ")
    )
}

/// `python -m grpc_tools.protoc` over every `proto/concierto/v1/*.proto` into `out`.
fn generate_stubs(python: &Path, out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let protos: Vec<String> = std::fs::read_dir(root.join("proto/concierto/v1"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".proto")
                .then(|| format!("concierto/v1/{name}"))
        })
        .collect();
    assert!(
        protos.iter().any(|p| p.ends_with("/admin.proto")),
        "{protos:?}"
    );
    std::fs::create_dir_all(out).unwrap();
    let protoc = Command::new(python)
        .current_dir(root.join("proto"))
        .args(["-m", "grpc_tools.protoc", "-I", "."])
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&protos)
        .output()
        .unwrap();
    assert!(protoc.status.success(), "protoc: {}", show(&protoc));
    assert!(out.join("concierto/v1/admin_pb2_grpc.py").is_file());
}

#[test]
fn a_python_grpc_client_lists_starts_and_gets_runs_and_sees_reflection_and_health() {
    let python = python();
    let (sb, addr) = start_studio();
    let stubs = sb.dir().join("stubs");
    generate_stubs(&python, &stubs);
    wait_ready(&sb, &addr);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/admin_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&addr)
        .arg(OPS)
        .arg(&stubs)
        .args(["--workflow", WORKFLOW, "--reviewer-token", CREATIVE])
        .output()
        .unwrap();
    let text = stdout(&out);
    let summary: Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary\n{}\n{}", show(&out), sb.logs()));
    assert!(
        out.status.success() && summary["ok"] == true,
        "{summary:#}\n{}\n{}",
        show(&out),
        sb.logs()
    );
    assert_eq!(summary["mismatches"], Value::Array(vec![]));
    assert_eq!(summary["run_workflow"], WORKFLOW);
    assert_eq!(summary["run_requested_by"], "admin:ops");
    assert!(
        summary["run_id"]
            .as_str()
            .unwrap()
            .starts_with("manual:campaign@"),
        "{summary:#}"
    );
    assert_eq!(summary["bad_token"], "UNAUTHENTICATED");
    assert_eq!(summary["no_token"], "UNAUTHENTICATED");
    assert_eq!(summary["reviewer_start"], "PERMISSION_DENIED");
    let services: Vec<&str> = summary["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        services.contains(&"concierto.v1.AdminService"),
        "{services:?}"
    );
    assert!(services.contains(&"grpc.health.v1.Health"), "{services:?}");
    assert!(
        services.contains(&"grpc.reflection.v1alpha.ServerReflection")
            || services.contains(&"grpc.reflection.v1.ServerReflection"),
        "{services:?}"
    );
    assert_eq!(summary["admin_methods"], 23, "every rpc of admin.proto");
    assert_eq!(summary["health"], "SERVING");
    assert_eq!(summary["admin_health"], "SERVING");
}
