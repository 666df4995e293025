//! `concierto up` on a fresh clone: the first-run admin token (printed once,
//! stored hashed under the data folder, kept across restarts, off when the
//! studio file gives a reviewer a token), and a log that reads as one line
//! per run change with no warning repeated.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use concierto_e2e::{concierto_bin, example_studio};
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "data" {
                copy_dir(&e.path(), &dest);
            }
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The example studio (with its sample content) copied into `dir/studio`.
fn studio_copy(dir: &Path) -> PathBuf {
    copy_dir(example_studio().parent().unwrap(), &dir.join("studio"));
    dir.join("studio/concierto.yaml")
}

fn port() -> String {
    format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap())
}

struct Up {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    grpc: String,
}

impl Up {
    fn start(dir: &Path, name: &str, file: &Path, env: &[(&str, String)]) -> Up {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let grpc = port();
        let mut cmd = Command::new(concierto_bin());
        for (key, _) in std::env::vars() {
            if key.starts_with("CONCIERTO") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("up")
            .arg(file)
            .arg("--data")
            .arg(dir.join("data"))
            .env("RUST_LOG", "info")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("X_BEARER_TOKEN")
            .env("CONCIERTO__SERVER__GRPC_ADDR", &grpc)
            .env("CONCIERTO__SERVER__HTTP_ADDR", port())
            .env("CONCIERTO__SERVER__LIBRARY_ADDR", port())
            .env("CONCIERTO__SERVER__METRICS_ADDR", port())
            .env("CONCIERTO__SERVER__DASHBOARD_ADDR", port());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .expect("concierto up starts");
        Up {
            child,
            out,
            err,
            grpc,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until stdout has the executor table and what follows it.
    async fn until_stdout(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.stdout();
            if f(&out) {
                return out;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "up exited before {what}:\n{out}\n{}",
                self.stderr()
            );
            assert!(
                Instant::now() < deadline,
                "no {what} within 60 s:\n{out}\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ctrl-C, and waits for the process to end.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stderr()
    }

    async fn admin(&self) -> AdminServiceClient<tonic::transport::Channel> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match AdminServiceClient::connect(format!("http://{}", self.grpc)).await {
                Ok(c) => return c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "admin API: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn list_runs(
    admin: &mut AdminServiceClient<tonic::transport::Channel>,
    token: &str,
) -> Result<v1::ListRunsResponse, tonic::Status> {
    admin
        .list_runs(authed(v1::ListRunsRequest::default(), token))
        .await
        .map(|r| r.into_inner())
}

const READY: &str = "roles and their executors";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_prints_a_token_once_that_works_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = studio_copy(dir.path());

    // First start on a fresh data folder: the link and the CLI line, once.
    let mut up = Up::start(dir.path(), "first", &file, &[]);
    let out = up
        .until_stdout("the first-run link", |o| o.contains("CLI: export"))
        .await;
    let link = out
        .lines()
        .find(|l| l.starts_with("Signed-in link (first run): http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no link:\n{out}"));
    let token = link
        .split_once("/login#token=")
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_else(|| panic!("no #token= in {link}"));
    assert_eq!(token.len(), 64, "{link}");
    assert_eq!(
        out.matches(&token).count(),
        2,
        "the link and the CLI line:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "CLI: export CONCIERTO_SERVER=http://{} CONCIERTO_TOKEN={token}",
            up.grpc
        )),
        "{out}"
    );
    let hash = std::fs::read_to_string(dir.path().join("data/first-run/admin.sha256")).unwrap();
    assert_eq!(hash.trim(), concierto_admin::token_sha256(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("data/first-run/admin.sha256"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The token works: reads, and an admin-only StartRun.
    let mut admin = up.admin().await;
    list_runs(&mut admin, &token).await.expect("ListRuns");
    let started = admin
        .start_run(authed(
            v1::StartRunRequest {
                workflow: "daily-content-pipeline".into(),
                run_id: "first-run-check".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("an admin may start a run")
        .into_inner();
    assert_eq!(started.run_id, "first-run-check");
    let err = list_runs(&mut admin, "not-the-token").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let log = up.stop();
    assert!(!log.contains(&token), "the token is never logged:\n{log}");

    // Second start on the same data folder: no token printed, the old one works.
    let mut up = Up::start(dir.path(), "second", &file, &[]);
    let out = up
        .until_stdout("the first-run hint", |o| o.contains("--new-token"))
        .await;
    assert!(!out.contains(&token) && !out.contains("#token="), "{out}");
    let mut admin = up.admin().await;
    let runs = list_runs(&mut admin, &token)
        .await
        .expect("the old token works");
    assert!(
        runs.runs.iter().any(|r| r.run_id == "first-run-check"),
        "{:?}",
        runs.runs.iter().map(|r| &r.run_id).collect::<Vec<_>>()
    );
    up.stop();

    // A reviewer with a token in the studio file: no local admin.
    let mut up = Up::start(
        dir.path(),
        "third",
        &file,
        &[(
            "CONCIERTO__REVIEWERS__BRAND_MANAGER__TOKEN_SHA256",
            concierto_admin::token_sha256("brand-manager-token-0123"),
        )],
    );
    let out = up
        .until_stdout("the executor table", |o| o.contains(READY))
        .await;
    let mut admin = up.admin().await;
    list_runs(&mut admin, "brand-manager-token-0123")
        .await
        .expect("the file's reviewer signs in");
    let err = list_runs(&mut admin, &token).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let out = up.stdout() + &out;
    assert!(
        !out.contains("first run") && !out.contains("First-run"),
        "{out}"
    );
    let log = up.stop();
    assert!(log.contains("first-run mode is off"), "{log}");
}

/// The fields of a log line after its level and target, without the time.
fn message(line: &str) -> String {
    let line = line.split_once("Z ").map(|(_, rest)| rest).unwrap_or(line);
    line.trim().to_string()
}

/// At the default level `up` says one line per run change: of a finished run
/// of the demo pipeline, "run started", "review round decided" (the brand
/// review's score) and "run succeeded" — at most 4 lines naming the run
/// (one spare, e.g. a step retried). No warning says the same twice, and
/// every line is short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_logs_a_line_per_run_change_and_no_warning_twice() {
    const PER_RUN: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let file = studio_copy(dir.path());
    let up = Up::start(dir.path(), "logs", &file, &[("NO_COLOR", "1".into())]);
    // The demo trigger starts a run every 30 s: wait for two to finish.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let log = up.stderr();
        if log.matches("run succeeded").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two runs did not finish:\n{log}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A few seconds more: what follows a run (deliverables, learners).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = up.stop();
    let lines: Vec<&str> = log.lines().collect();

    let finished: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("run succeeded"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("run=")))
        .map(str::to_string)
        .collect();
    assert!(finished.len() >= 2, "{log}");
    for run in &finished {
        let about: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains(" INFO ") && l.contains(run.as_str()))
            .collect();
        assert!(
            about.len() <= PER_RUN,
            "{} info lines about {run} (at most {PER_RUN}):\n{}",
            about.len(),
            about
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    let mut seen = std::collections::HashSet::new();
    for w in lines.iter().filter(|l| l.contains(" WARN ")) {
        assert!(seen.insert(message(w)), "a warning repeats: {w}\n{log}");
    }
    // Short lines: no field dumps (the longest info line of the example is
    // the review round with its notes cut).
    for l in lines.iter().filter(|l| l.contains(" INFO ")) {
        assert!(l.chars().count() <= 400, "a long line: {l}");
    }
    eprintln!(
        "{} lines, {} warnings, {} runs finished",
        lines.len(),
        seen.len(),
        finished.len()
    );
}
