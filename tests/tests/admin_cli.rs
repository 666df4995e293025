//! The admin client commands end to end: a real nats-server, the services and
//! an agent as separate `concierto` processes, and every step driven only
//! through the `concierto` CLI (`run`, `gate`, `trigger`, `feedback`) with the
//! tokens of the studio's people. Also the commands that need no server
//! (`agents ls`, `token new`).

mod admin_common;

use std::time::{Duration, Instant};

use admin_common::{
    BAD, BRAND, CREATIVE, OPS, TRIGGER, WORKFLOW, cli, cli_at, poll, show, start_studio,
    start_studio_with, stderr, stdout, wait_ready, write_studio_with,
};
use concierto_e2e::concierto_bin;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(out)))
}

#[test]
fn a_gated_run_is_started_approved_by_its_reviewer_and_succeeds_through_the_cli() {
    let (mut sb, addr) = start_studio();
    wait_ready(&sb, &addr);

    // Start as ops (admin): the run id on stdout.
    let out = cli(
        &addr,
        Some(OPS),
        &[
            "run",
            "start",
            WORKFLOW,
            "--id",
            "campaign@1",
            "--param",
            "topic=spring",
        ],
    );
    assert!(out.status.success(), "{}\n{}", show(&out), sb.logs());
    assert_eq!(stdout(&out).trim(), "campaign@1");

    // The run waits at the gate.
    let run = poll(
        &sb,
        Duration::from_secs(60),
        "the run to wait at the gate",
        || {
            let out = cli(&addr, Some(OPS), &["run", "show", "campaign@1", "--json"]);
            if !out.status.success() {
                return None;
            }
            let run = json(&out);
            (run["state"] == "WAITING_GATE").then_some(run)
        },
    );
    assert_eq!(run["workflow"], WORKFLOW);
    assert_eq!(run["requested_by"], "admin:ops");
    let draft = &run["steps"][0];
    assert_eq!(draft["step_id"], "draft", "{run:#}");
    assert_eq!(draft["role"], "content-creator", "{run:#}");
    assert!(
        draft["labels"]
            .as_array()
            .unwrap()
            .contains(&Value::from("campaign_launch")),
        "{run:#}"
    );

    // The table shows the same run and step, output cut to one line.
    let out = cli(&addr, Some(CREATIVE), &["run", "show", "campaign@1"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("WAITING_GATE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("draft ") && l.contains("content-creator")),
        "{text}"
    );
    assert!(
        text.lines().all(|l| l.chars().count() < 300),
        "outputs are cut in the table:\n{text}"
    );

    // `gate ls --json` shows it open, for the creative director.
    let out = cli(
        &addr,
        Some(BRAND),
        &["gate", "ls", "--json", "--state", "open"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let gates = json(&out);
    let gate = gates
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["request"]["run_id"] == "campaign@1")
        .unwrap_or_else(|| panic!("no gate of campaign@1 in {gates:#}"))
        .clone();
    assert_eq!(gate["state"], "OPEN", "{gate:#}");
    assert_eq!(gate["request"]["gate"], "creative_review", "{gate:#}");
    assert_eq!(gate["request"]["reviewers"][0], "creative_director");
    let gate_id = gate["request"]["gate_id"].as_str().unwrap().to_string();

    let out = cli(&addr, Some(OPS), &["gate", "ls"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains(&gate_id) && l.contains("OPEN")),
        "{}",
        show(&out)
    );

    // Not one of its reviewers: refused.
    let out = cli(&addr, Some(BRAND), &["gate", "approve", &gate_id]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: permission denied: "),
        "{}",
        show(&out)
    );

    // Reject and request-changes need notes: a usage error before any call.
    let out = cli(&addr, Some(CREATIVE), &["gate", "reject", &gate_id]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--notes"), "{}", show(&out));

    // Its reviewer approves; the run goes on and succeeds.
    let out = cli(
        &addr,
        Some(CREATIVE),
        &["gate", "approve", &gate_id, "--notes", "lovely"],
    );
    assert!(out.status.success(), "{}\n{}", show(&out), sb.logs());
    assert_eq!(
        stdout(&out).trim(),
        format!("{gate_id}: APPROVED by creative_director")
    );
    let run = poll(&sb, Duration::from_secs(60), "the run to succeed", || {
        let out = cli(&addr, Some(OPS), &["run", "show", "campaign@1", "--json"]);
        let run = json(&out);
        (run["state"] != "WAITING_GATE" && run["state"] != "RUNNING").then_some(run)
    });
    assert_eq!(run["state"], "SUCCEEDED", "{run:#}\n{}", sb.logs());
    let draft = &run["steps"][0];
    assert_eq!(draft["state"], "SUCCEEDED", "{run:#}");
    assert_eq!(draft["usage"]["executor"], "builtin", "{run:#}");
    assert!(
        !draft["output"].as_str().unwrap().is_empty(),
        "--json has the full output: {run:#}"
    );

    let out = cli(&addr, Some(OPS), &["gate", "show", &gate_id]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("APPROVED"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("APPROVE")
            && l.contains("creative_director")
            && l.contains("lovely")),
        "{text}"
    );

    // The run is listed, with filters.
    let out = cli(
        &addr,
        Some(OPS),
        &["run", "ls", "--workflow", WORKFLOW, "--state", "succeeded"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with("RUN "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("campaign@1 ") && l.contains("SUCCEEDED") && l.contains("1/1")),
        "{text}"
    );
    let out = cli(
        &addr,
        Some(OPS),
        &["run", "ls", "--state", "failed", "--json"],
    );
    assert_eq!(json(&out), Value::Array(vec![]), "{}", show(&out));

    // Starting a run needs the admin role.
    let out = cli(&addr, Some(CREATIVE), &["run", "start", WORKFLOW]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: permission denied: "),
        "{}",
        show(&out)
    );

    // A token the studio does not know, and no token at all.
    let out = cli(&addr, Some(BAD), &["run", "ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: unauthenticated: "),
        "{}",
        show(&out)
    );
    assert!(!stderr(&out).contains(BAD), "the token is never printed");
    let out = cli(&addr, None, &["gate", "ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("unauthenticated") && stderr(&out).contains("CONCIERTO_TOKEN"),
        "{}",
        show(&out)
    );

    // An unknown run.
    let out = cli(&addr, Some(OPS), &["run", "show", "no-such-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: not found: "),
        "{}",
        show(&out)
    );

    // Triggers, from the scheduler.
    let out = cli(&addr, Some(BRAND), &["trigger", "ls"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(TRIGGER) && l.contains("scheduled") && l.contains(WORKFLOW)),
        "{text}"
    );
    let out = cli(&addr, Some(BRAND), &["trigger", "ls", "--json"]);
    let triggers = json(&out);
    assert_eq!(triggers[0]["name"], TRIGGER, "{triggers:#}");
    assert!(triggers[0]["next_fire"].is_string(), "{triggers:#}");

    // Feedback: the admin API hands it to the feedback service (stored and
    // listed there like every channel's); without that service it is refused.
    let out = cli(
        &addr,
        Some(BRAND),
        &["feedback", "submit", "--text", "Too early."],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with("concierto: unavailable: ")
            && stderr(&out).contains("feedback service"),
        "{}",
        show(&out)
    );
    let http = format!("127.0.0.1:{}", concierto_testkit::free_port().unwrap());
    sb.spawn_with(
        "feedback",
        &["serve", "feedback"],
        &[("CONCIERTO__SERVER__HTTP_ADDR", http.as_str())],
        None,
    );
    // Feedback from a reviewer: its id on stdout.
    let out = poll(
        &sb,
        Duration::from_secs(30),
        "the feedback service to take feedback",
        || {
            let out = cli(
                &addr,
                Some(BRAND),
                &[
                    "feedback",
                    "submit",
                    "--text",
                    "The launch post needs our palette.",
                    "--subject",
                    "palette",
                    "--run",
                    "campaign@1",
                ],
            );
            out.status.success().then_some(out)
        },
    );
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("api-"), "{}", show(&out));
    // Listed with every other channel's feedback, and shown by id.
    let out = cli(&addr, Some(OPS), &["feedback", "ls", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let list = json(&out);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["feedback"]["feedback_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {list:#}"));
    assert_eq!(entry["feedback"]["author"], "brand_manager", "{entry:#}");
    let out = cli(&addr, Some(BRAND), &["feedback", "show", &id, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let shown = json(&out);
    assert_eq!(
        shown["text"], "The launch post needs our palette.",
        "{shown:#}"
    );
    assert_eq!(shown["channel"], "API", "{shown:#}");
}

#[test]
fn run_watch_prints_each_event_of_a_run_as_a_line() {
    let (sb, addr) = start_studio();
    wait_ready(&sb, &addr);
    // `run watch` prints events from when its subscription is in place, which
    // nothing outside can see: a run started too early (on a loaded machine)
    // goes by unseen. So each try watches a new run id, starts that run after
    // a moment, and gives up on it after a while for the next id.
    let mut lines = Vec::new();
    let mut run = String::new();
    for attempt in 1..=5 {
        run = format!("watched@{attempt}");
        let log = sb.dir().join(format!("watch-{attempt}.out"));
        let mut watch = std::process::Command::new(concierto_bin())
            .args(["run", "watch", &run, "--json"])
            .env("CONCIERTO_SERVER", format!("http://{addr}"))
            .env("CONCIERTO_TOKEN", OPS)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 * attempt));
        let out = cli(&addr, Some(OPS), &["run", "start", WORKFLOW, "--id", &run]);
        assert!(out.status.success(), "{}", show(&out));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && lines.is_empty() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let events: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            if events.iter().any(|e| e["step_state"] == "WAITING_GATE") {
                lines = events;
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = watch.kill();
        let _ = watch.wait();
        if !lines.is_empty() {
            break;
        }
    }
    assert!(
        !lines.is_empty(),
        "no try saw its run reach the gate\n{}",
        sb.logs()
    );
    assert!(
        lines.iter().all(|e| e["run_id"] == run.as_str()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|e| e["step_id"] == "draft" && e["role"] == "content-creator"),
        "{lines:#?}"
    );
}

/// A CA and a certificate for `localhost` and `127.0.0.1` signed by it, as
/// PEM files in `dir`: (CA, certificate, key).
fn make_certs(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn over_tls_the_cli_trusts_the_ca_it_is_given_and_nothing_else() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let (sb, addr) = start_studio_with(|dir| write_studio_with(dir, Some((&cert, &key))));
    let port = addr.rsplit(':').next().unwrap();
    let ca = ca.display().to_string();
    for host in ["localhost", "127.0.0.1"] {
        let server = format!("https://{host}:{port}");
        poll(
            &sb,
            Duration::from_secs(60),
            "the admin API over TLS",
            || {
                cli_at(&server, Some(OPS), &["run", "ls", "--ca", &ca])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
    let server = format!("https://localhost:{port}");
    let out = cli_at(
        &server,
        Some(OPS),
        &["trigger", "ls", "--ca", &ca, "--json"],
    );
    assert!(out.status.success(), "{}", show(&out));

    // Without the CA: the system's roots do not know it.
    let out = cli_at(&server, Some(OPS), &["run", "ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "concierto: unavailable: cannot reach the admin API at {server}: "
        )) && stderr(&out).contains("certificate"),
        "{}",
        show(&out)
    );
    // Plain HTTP/2 against the TLS port: refused, with a hint.
    let out = cli(&addr, Some(OPS), &["run", "ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("https://"), "{}", show(&out));
}

#[test]
fn an_unreachable_server_is_named_in_the_error() {
    let port = concierto_testkit::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let out = cli(&addr, Some(OPS), &["trigger", "ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "concierto: unavailable: cannot reach the admin API at http://{addr}: "
        )),
        "{}",
        show(&out)
    );
    assert!(!stderr(&out).contains(OPS), "the token is never printed");
}

fn example_studio() -> String {
    concierto_e2e::example_studio().display().to_string()
}

#[test]
fn agents_ls_lists_the_example_studios_20_builtin_roles() {
    let out = cli("127.0.0.1:1", None, &["agents", "ls", &example_studio()]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for col in [
        "ROLE",
        "EXECUTOR",
        "MODEL",
        "REPLICAS",
        "FILE",
        "DESCRIPTION",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 20, "{text}");
    for row in &rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "builtin", "{row}");
        assert_eq!(cols[2], "builtin-v1", "{row}");
        assert!(
            cols[4].starts_with("agents/") && cols[4].ends_with(".md"),
            "{row}"
        );
    }
    let creator = rows
        .iter()
        .find(|r| r.starts_with("content-creator "))
        .expect("content-creator listed");
    assert_eq!(
        creator.split_whitespace().nth(3),
        Some("2"),
        "replicas: {creator}"
    );
}

#[test]
fn agents_ls_json_parses_with_every_field() {
    let out = cli(
        "127.0.0.1:1",
        None,
        &["agents", "ls", &example_studio(), "--json"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let roles = json(&out);
    let roles = roles.as_array().unwrap();
    assert_eq!(roles.len(), 20);
    for r in roles {
        assert_eq!(r["executor"], "builtin", "{r}");
        assert_eq!(r["kind"], "builtin", "{r}");
        assert_eq!(r["model"], "builtin-v1", "{r}");
        assert!(r["replicas"].as_u64().unwrap() >= 1, "{r}");
        assert!(!r["description"].as_str().unwrap().is_empty(), "{r}");
    }
    let guardian = roles
        .iter()
        .find(|r| r["role"] == "brand-guardian")
        .unwrap();
    assert_eq!(guardian["file"], "agents/brand-guardian.md");
}

#[test]
fn agents_ls_on_an_invalid_studio_prints_its_problems_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "triggers:\n  scheduled:\n    - x:\n        time: \"Munday 10:00\"\n        workflow: nope\n",
    )
    .unwrap();
    let out = cli(
        "127.0.0.1:1",
        None,
        &["agents", "ls", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("Munday"), "{}", show(&out));
    assert!(stderr(&out).contains("error(s)"), "{}", show(&out));
    assert!(stdout(&out).is_empty(), "{}", show(&out));
}

#[test]
fn token_new_prints_a_token_and_the_sha256_line_for_it() {
    let out = cli("127.0.0.1:1", None, &["token", "new"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token line:\n{text}"));
    assert_eq!(token.len(), 64, "{token}");
    let line = text
        .lines()
        .find(|l| l.starts_with("token_sha256: "))
        .unwrap_or_else(|| panic!("no token_sha256 line:\n{text}"));
    assert_eq!(
        line,
        format!("token_sha256: \"{}\"", concierto_admin::token_sha256(token))
    );
    let again = stdout(&cli("127.0.0.1:1", None, &["token", "new"]));
    assert_ne!(text, again, "every token is new");
}
