//! NATS security as shipped: a real nats-server started with
//! `deploy/nats/nats.conf` (one user per service, their permissions), the
//! passwords generated for the test and given in its environment as compose's
//! `.env` or the `concierto-nats` Secret would.
//!
//! - Nobody gets in without a user, and a wrong password is refused with an
//!   error that names the user and shows no secret.
//! - Each service's user may do what that service does (declare the streams,
//!   consume its streams, publish its subjects) and nothing more: an agent
//!   (or the ingest service) cannot start a run nor decide a gate, whatever
//!   identity header it forges — checked on the state of a real orchestrator
//!   logged in as `orchestrator`, through the real admin API logged in as
//!   `admin`; no service may delete or purge a stream, and only the stateful
//!   services may change one's settings.
//! - `server.bus.tls`: a client with the CA (and a client certificate when the
//!   server verifies clients) connects over TLS; without them it is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_agent::{BuiltinExecutor, WorkerOptions, start_worker};
use concierto_bus::{
    Bus, BusError, BusExt, ConsumerSpec, NatsAuth, NatsBus, NatsOptions, NatsTls, Outgoing,
    StreamLimits, encode, ensure_standard_streams, standard_streams,
};
use concierto_core::clock::{SharedClock, SystemClock};
use concierto_core::config::{self, Studio};
use concierto_core::store::{KvStore, SledStore};
use concierto_core::subjects;
use concierto_orchestrator::OrchestratorOptions;
use concierto_proto::v1::{self, admin_service_client::AdminServiceClient};
use concierto_testkit::{NatsServer, eventually};
use tonic::transport::Channel;
use tonic::{Code, Request};

const PATIENCE: Duration = Duration::from_secs(30);
const OPS: &str = "ops-token-0123";
const DIRECTOR: &str = "director-token-4567";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh random-ish password per variable of `deploy/nats/nats.conf`
/// (`password: $VARIABLE` lines).
fn passwords() -> BTreeMap<String, String> {
    use std::hash::{BuildHasher, Hasher};
    let conf = std::fs::read_to_string(repo().join("deploy/nats/nats.conf")).unwrap();
    let vars: Vec<String> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("password: $"))
        .map(str::to_string)
        .collect();
    for user in [
        "ADMIN",
        "DASHBOARD",
        "ORCHESTRATOR",
        "SCHEDULER",
        "AGENT",
        "FEEDBACK",
        "INGEST",
        "TRACKER",
        "PUBLISHER",
    ] {
        let var = format!("CONCIERTO_NATS_{user}_PASSWORD");
        assert!(vars.contains(&var), "nats.conf has no user for {var}");
    }
    vars.into_iter()
        .map(|v| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(v.as_bytes());
            let a = h.finish();
            h.write_u64(a);
            // nats-server reads the value as configuration: start with a letter.
            (v, format!("p{a:016x}{:016x}", h.finish()))
        })
        .collect()
}

/// nats-server with the shipped configuration.
fn shipped_server() -> (NatsServer, BTreeMap<String, String>) {
    let pw = passwords();
    let server = NatsServer::start_with_config(&repo().join("deploy/nats/nats.conf"), pw.clone())
        .expect("nats-server starts with deploy/nats/nats.conf");
    (server, pw)
}

fn password_of(pw: &BTreeMap<String, String>, user: &str) -> String {
    pw[&format!("CONCIERTO_NATS_{}_PASSWORD", user.to_uppercase())].clone()
}

/// Connects as `user`, the way `concierto serve`/`agent` do with
/// CONCIERTO_NATS_USER and CONCIERTO_NATS_PASSWORD.
async fn login(url: &str, user: &str, password: &str) -> Result<NatsBus, BusError> {
    NatsBus::connect(
        url,
        NatsOptions {
            client_name: format!("test-{user}"),
            auth: NatsAuth::UserPassword {
                user: user.into(),
                password: password.into(),
            },
            ..Default::default()
        },
    )
    .await
}

async fn login_as(nats: &NatsServer, pw: &BTreeMap<String, String>, user: &str) -> Arc<dyn Bus> {
    Arc::new(
        login(&nats.url(), user, &password_of(pw, user))
            .await
            .unwrap_or_else(|e| panic!("{user} logs in: {e}")),
    )
}

#[tokio::test]
async fn nobody_gets_in_without_the_right_password_and_errors_show_no_secret() {
    let (nats, pw) = shipped_server();

    let anonymous = NatsBus::connect(&nats.url(), NatsOptions::default())
        .await
        .expect_err("an anonymous client is refused");
    assert!(
        matches!(&anonymous, BusError::Refused(m) if m.contains("without credentials")),
        "{anonymous}"
    );

    let wrong = login(&nats.url(), "orchestrator", "not-the-password")
        .await
        .expect_err("a wrong password is refused");
    let text = wrong.to_string();
    assert!(matches!(wrong, BusError::Refused(_)), "{text}");
    assert!(
        text.contains(
            "NATS refused the credentials for user orchestrator (authorization violation)"
        ),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");

    let stranger = login(&nats.url(), "mallory", &password_of(&pw, "admin"))
        .await
        .expect_err("a user nats.conf does not know is refused");
    assert!(stranger.to_string().contains("user mallory"), "{stranger}");

    // Credentials in the URL are used, and never shown.
    let in_url = format!("nats://orchestrator:wrong-in-url@127.0.0.1:{}", nats.port());
    let e = NatsBus::connect(&in_url, NatsOptions::default())
        .await
        .expect_err("a wrong password in the URL is refused");
    assert!(!e.to_string().contains("wrong-in-url"), "{e}");
    let right_in_url = format!(
        "nats://orchestrator:{}@127.0.0.1:{}",
        password_of(&pw, "orchestrator"),
        nats.port()
    );
    NatsBus::connect(&right_in_url, NatsOptions::default())
        .await
        .expect("the orchestrator's credentials in the URL are accepted");

    // Every service's user logs in.
    for user in [
        "admin",
        "dashboard",
        "orchestrator",
        "scheduler",
        "agent",
        "feedback",
        "ingest",
        "tracker",
        "publisher",
    ] {
        login(&nats.url(), user, &password_of(&pw, user))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
    }
}

#[tokio::test]
async fn services_declare_streams_but_only_stateful_ones_change_them_and_none_deletes_or_purges() {
    let (nats, pw) = shipped_server();
    let limits = StreamLimits::default();
    // Whoever starts first creates the streams: here an agent (create, no update).
    let agent = login_as(&nats, &pw, "agent").await;
    ensure_standard_streams(agent.as_ref(), &limits)
        .await
        .expect("an agent may create the standard streams");
    // Every service then declares them at start; nothing to change, nothing written.
    for user in [
        "admin",
        "dashboard",
        "orchestrator",
        "scheduler",
        "feedback",
        "ingest",
        "tracker",
        "publisher",
        "agent",
    ] {
        let bus = login_as(&nats, &pw, user).await;
        ensure_standard_streams(bus.as_ref(), &limits)
            .await
            .unwrap_or_else(|e| panic!("{user} declares the standard streams: {e}"));
    }

    // New limits: an agent may not apply them (an update can empty a stream);
    // the orchestrator may.
    let longer = StreamLimits {
        max_age: Duration::from_secs(8 * 24 * 3600),
        ..StreamLimits::default()
    };
    let tasks = standard_streams(&longer)
        .into_iter()
        .find(|s| s.name == "TASKS")
        .unwrap();
    let refused = agent
        .ensure_stream(&tasks)
        .await
        .expect_err("an agent may not change a stream's settings");
    assert!(refused.to_string().contains("CONCIERTO_TASKS"), "{refused}");
    let orchestrator = login_as(&nats, &pw, "orchestrator").await;
    orchestrator
        .ensure_stream(&tasks)
        .await
        .expect("the orchestrator may");

    // Work on the queue and a role's consumer, then try to destroy them as
    // each service (a refused JetStream request gets no answer: short waits).
    orchestrator
        .publish_durable("task.content-creator", Outgoing::new(b"a task".to_vec()))
        .await
        .unwrap();
    agent
        .consumer(
            "TASKS",
            &ConsumerSpec::new("content-creator", "task.content-creator"),
        )
        .await
        .expect("an agent makes its role's consumer");
    let js_of = |bus: NatsBus| {
        let mut js = async_nats::jetstream::new(bus.client().clone());
        js.set_timeout(Duration::from_millis(700));
        js
    };
    for user in ["agent", "admin", "dashboard", "orchestrator", "tracker"] {
        let js = js_of(
            login(&nats.url(), user, &password_of(&pw, user))
                .await
                .unwrap(),
        );
        assert!(
            js.delete_stream("CONCIERTO_TASKS").await.is_err(),
            "{user} deleted a stream"
        );
        let stream = js.get_stream("CONCIERTO_TASKS").await.unwrap();
        assert!(stream.purge().await.is_err(), "{user} purged a stream");
        assert!(
            stream.delete_consumer("content-creator").await.is_err(),
            "{user} deleted a consumer"
        );
        assert!(
            stream.delete_message(1).await.is_err(),
            "{user} deleted a queued task"
        );
    }
    let check = js_of(
        login(&nats.url(), "agent", &password_of(&pw, "agent"))
            .await
            .unwrap(),
    );
    let mut stream = check.get_stream("CONCIERTO_TASKS").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(
        info.config.max_age, longer.max_age,
        "the orchestrator's update"
    );
    assert_eq!(info.state.messages, 1, "the queue is intact");
    stream
        .consumer_info("content-creator")
        .await
        .expect("the role's consumer is intact");
}

fn studio(dir: &Path) -> Arc<Studio> {
    let agents = repo().join("examples/studio/agents");
    let yaml = format!(
        r#"
studio:
  name: "Bus security test"
  timezone: "UTC"
agents:
  paths: ["{agents}"]
reviewers:
  ops: {{ name: "Ops", token_sha256: "{ops}", roles: [admin] }}
  creative_director: {{ name: "Creative Director", token_sha256: "{director}" }}
workflows:
  launch:
    description: "Write the launch copy, then announce it."
    steps:
      - id: copy
        role: content-creator
        task: "Write the campaign launch copy."
        inputs: [trigger]
        labels: [campaign_launch]
      - id: announce
        role: studio-orchestrator
        task: "Announce the launch to the team."
        inputs: [copy]
feedback_loops:
  agent_to_human:
    - quality_gates:
        - creative_review:
            threshold: "campaign_launch"
            reviewers: ["creative_director"]
            sla: "24 hours"
"#,
        agents = agents.display(),
        ops = token_sha256(OPS),
        director = token_sha256(DIRECTOR),
    );
    let path = dir.join("concierto.yaml");
    std::fs::write(&path, yaml).unwrap();
    Arc::new(config::load_with_env(&path, Vec::new()).expect("test studio loads"))
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

async fn get_run(c: &mut AdminServiceClient<Channel>, id: &str) -> Result<v1::Run, tonic::Status> {
    c.get_run(with_token(OPS, v1::GetRunRequest { run_id: id.into() }))
        .await
        .map(|r| r.into_inner().run.unwrap_or_default())
}

async fn gate_of(c: &mut AdminServiceClient<Channel>, run: &str) -> Option<v1::Gate> {
    c.list_gates(with_token(
        DIRECTOR,
        v1::ListGatesRequest {
            run_id: run.into(),
            ..Default::default()
        },
    ))
    .await
    .ok()?
    .into_inner()
    .gates
    .into_iter()
    .next()
}

fn gate_id(g: &v1::Gate) -> String {
    g.request
        .as_ref()
        .map(|r| r.gate_id.clone())
        .unwrap_or_default()
}

/// A run start as the scheduler or the admin API would publish it.
fn start_run(run_id: &str) -> v1::StartRun {
    v1::StartRun {
        run_id: run_id.into(),
        workflow: "launch".into(),
        requested_by: "admin:ops".into(),
        ..Default::default()
    }
}

/// A gate decision as the admin API sends it, with a forged identity.
async fn decide_as(
    bus: &dyn Bus,
    gate_id: &str,
    reviewer: &str,
) -> Result<v1::DecideGateResponse, tonic::Status> {
    concierto_admin::ask_service::<_, v1::DecideGateResponse>(
        bus,
        "orchestrator",
        subjects::ORCHESTRATOR_DECIDE_GATE,
        &v1::DecideGateRequest {
            gate_id: gate_id.into(),
            decision: v1::GateDecisionKind::Approve as i32,
            notes: String::new(),
        },
        Some(reviewer),
        Duration::from_secs(3),
    )
    .await
}

#[actix_rt::test]
async fn agents_cannot_start_runs_nor_decide_gates_the_admin_and_dashboard_users_can() {
    let (nats, pw) = shipped_server();
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let clock: SharedClock = Arc::new(SystemClock);

    // The orchestrator as `orchestrator`.
    let orchestrator_bus = login_as(&nats, &pw, "orchestrator").await;
    ensure_standard_streams(orchestrator_bus.as_ref(), &StreamLimits::default())
        .await
        .unwrap();
    let store: Arc<dyn KvStore> = Arc::new(SledStore::temporary().unwrap());
    let orch = concierto_orchestrator::start(
        st.clone(),
        orchestrator_bus.clone(),
        store,
        clock,
        OrchestratorOptions {
            tick: Duration::from_millis(50),
            fetch_wait: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Builtin workers as `agent`: the agent's permissions suffice for real work.
    let agent_bus = login_as(&nats, &pw, "agent").await;
    let mut workers = Vec::new();
    for role in ["content-creator", "studio-orchestrator"] {
        workers.push(
            start_worker(
                st.roles[role].clone(),
                Arc::new(BuiltinExecutor::default()),
                agent_bus.clone(),
                WorkerOptions {
                    worker_id: "w".into(),
                    fetch_wait: Duration::from_millis(100),
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
    }
    // The admin API as `admin`.
    let admin_bus = login_as(&nats, &pw, "admin").await;
    let (admin, addr) = concierto_admin::start(st.clone(), admin_bus, AdminOptions::loopback())
        .await
        .unwrap();
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // Intruders: an agent's and the ingest service's credentials.
    let intruder = login_as(&nats, &pw, "agent").await;
    let ingest = login_as(&nats, &pw, "ingest").await;

    // 1. Neither may start a run: the durable publish gets no acknowledgement,
    //    a plain publish is dropped by the server.
    let forged = intruder
        .publish_durable_proto(
            subjects::RUN_START,
            &start_run("forged-by-agent"),
            "forged-by-agent",
        )
        .await;
    assert!(forged.is_err(), "an agent started a run: {forged:?}");
    ingest
        .publish(subjects::RUN_START, encode(&start_run("forged-by-ingest")))
        .await
        .unwrap();
    ingest.flush().await.unwrap();

    // 2. The admin user may: a run, through the admin API, that opens a gate.
    let run_id = c
        .start_run(with_token(
            OPS,
            v1::StartRunRequest {
                workflow: "launch".into(),
                run_id: "launch-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("the admin API starts a run")
        .into_inner()
        .run_id;
    let gate = eventually(PATIENCE, "the launch's gate to open", || {
        let mut c = c.clone();
        let run_id = run_id.clone();
        async move {
            gate_of(&mut c, &run_id)
                .await
                .filter(|g| g.state() == v1::GateState::Open)
        }
    })
    .await;

    // 3. Neither may decide it, whoever they claim to be: the request is
    //    dropped by the server (no answer), the gate stays open.
    for (who, bus) in [("agent", &intruder), ("ingest", &ingest)] {
        let r = decide_as(bus.as_ref(), &gate_id(&gate), "creative_director").await;
        let status = r.expect_err(&format!("{who} decided a gate"));
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable),
            "{who}: {status:?}"
        );
    }

    // The real state, after the intruders had time: no forged runs, the gate
    // open, the run waiting for it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for forged in ["forged-by-agent", "forged-by-ingest"] {
        let r = get_run(&mut c, forged).await;
        assert_eq!(
            r.as_ref().map_err(tonic::Status::code).err(),
            Some(Code::NotFound),
            "{forged}: {r:?}"
        );
    }
    let still = gate_of(&mut c, &run_id).await.expect("the gate");
    assert_eq!(still.state(), v1::GateState::Open, "{still:?}");
    assert_eq!(
        get_run(&mut c, &run_id).await.unwrap().state(),
        v1::RunState::WaitingGate
    );

    // 4. The reviewer decides through the admin API (as `admin`): approved,
    //    and the run goes on to the end.
    let decided = c
        .decide_gate(with_token(
            DIRECTOR,
            v1::DecideGateRequest {
                gate_id: gate_id(&gate),
                decision: v1::GateDecisionKind::Approve as i32,
                notes: "Ship it.".into(),
            },
        ))
        .await
        .expect("the reviewer decides through the admin API")
        .into_inner()
        .gate
        .unwrap();
    assert_eq!(decided.state(), v1::GateState::Approved);
    eventually(PATIENCE, "the approved run to succeed", || {
        let mut c = c.clone();
        let run_id = run_id.clone();
        async move {
            get_run(&mut c, &run_id)
                .await
                .ok()
                .filter(|r| r.state() == v1::RunState::Succeeded)
        }
    })
    .await;

    // 5. The dashboard's user may decide too (as the signed-in reviewer).
    c.start_run(with_token(
        OPS,
        v1::StartRunRequest {
            workflow: "launch".into(),
            run_id: "launch-2".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let gate2 = eventually(PATIENCE, "the second gate to open", || {
        let mut c = c.clone();
        async move {
            gate_of(&mut c, "launch-2")
                .await
                .filter(|g| g.state() == v1::GateState::Open)
        }
    })
    .await;
    let dashboard = login_as(&nats, &pw, "dashboard").await;
    let by_dashboard = decide_as(dashboard.as_ref(), &gate_id(&gate2), "creative_director")
        .await
        .expect("the dashboard's user decides a gate");
    assert_eq!(by_dashboard.gate.unwrap().state(), v1::GateState::Approved);

    admin.stop().await.unwrap();
    for w in workers {
        w.stop().await.unwrap();
    }
    orch.stop().await.unwrap();
}

/// A CA, a server certificate for `localhost`/`127.0.0.1` and a client
/// certificate, both signed by it, as PEM files in `dir`.
struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["concierto-orchestrator".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let certs = Certs {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    std::fs::write(&certs.ca, ca_cert.pem()).unwrap();
    std::fs::write(&certs.server_cert, server.pem()).unwrap();
    std::fs::write(&certs.server_key, server_key.serialize_pem()).unwrap();
    std::fs::write(&certs.client_cert, client.pem()).unwrap();
    std::fs::write(&certs.client_key, client_key.serialize_pem()).unwrap();
    certs
}

#[tokio::test]
async fn over_tls_a_client_with_the_ca_and_its_certificate_connects_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let conf = dir.path().join("nats-tls.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream: enabled\n\
             tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 2\n}}\n\
             authorization {{ users = [ {{ user: orchestrator, password: $TLS_TEST_PASSWORD }} ] }}\n",
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with_config(
        &conf,
        [("TLS_TEST_PASSWORD".to_string(), "tls-pw-0123".to_string())],
    )
    .expect("nats-server with TLS");
    let auth = NatsAuth::UserPassword {
        user: "orchestrator".into(),
        password: "tls-pw-0123".into(),
    };
    let with = |tls: NatsTls| NatsOptions {
        auth: auth.clone(),
        tls: Some(tls),
        ..Default::default()
    };
    let full = NatsTls {
        ca: Some(certs.ca.clone()),
        client_cert: Some((certs.client_cert.clone(), certs.client_key.clone())),
        required: true,
    };

    // With the CA and the client certificate: connected, and the bus works.
    let bus = NatsBus::connect(&nats.url(), with(full.clone()))
        .await
        .expect("connects over TLS");
    let mut sub = bus.subscribe("tls.check").await.unwrap();
    bus.publish("tls.check", Outgoing::new(b"over tls".to_vec()))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub))
        .await
        .expect("a message in time")
        .expect("the subscription is open");
    assert_eq!(&got.payload[..], b"over tls");

    // The server's certificate is not trusted without the CA.
    let e = NatsBus::connect(
        &nats.url(),
        with(NatsTls {
            ca: None,
            ..full.clone()
        }),
    )
    .await
    .expect_err("a server certificate from an unknown CA is refused");
    assert!(e.to_string().contains("TLS"), "{e}");

    // The server verifies clients: no client certificate, no connection.
    NatsBus::connect(
        &nats.url(),
        with(NatsTls {
            client_cert: None,
            ..full.clone()
        }),
    )
    .await
    .expect_err("a client without a certificate is refused");

    // Without TLS configured at all, the server (which requires it) is not reached.
    NatsBus::connect(
        &nats.url(),
        NatsOptions {
            auth,
            ..Default::default()
        },
    )
    .await
    .expect_err("a client without the CA does not get in");
}

#[test]
fn a_service_with_a_wrong_password_exits_naming_its_user_and_no_secret() {
    let (nats, pw) = shipped_server();
    let data = tempfile::tempdir().unwrap();
    let run = |user: &str, password: &str| {
        std::process::Command::new(concierto_e2e::concierto_bin())
            .args(["serve", "orchestrator", "--nats", &nats.url()])
            .arg("--data")
            .arg(data.path())
            .env("CONCIERTO_STUDIO", concierto_e2e::example_studio())
            .env("CONCIERTO__SERVER__METRICS_ADDR", "")
            .env("CONCIERTO_NATS_USER", user)
            .env("CONCIERTO_NATS_PASSWORD", password)
            .env_remove("CONCIERTO_NATS_TOKEN")
            .env_remove("CONCIERTO_NATS_NKEY_SEED")
            .output()
            .unwrap()
    };
    let out = run("orchestrator", "pWrongPassword123");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "NATS refused the credentials for user orchestrator (authorization violation)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("pWrongPassword123"), "{stderr}");
    // The same command with the right password gets past the login: it is
    // still running (serving) after a moment.
    let mut child = std::process::Command::new(concierto_e2e::concierto_bin())
        .args(["serve", "orchestrator", "--nats", &nats.url()])
        .arg("--data")
        .arg(data.path())
        .env("CONCIERTO_STUDIO", concierto_e2e::example_studio())
        .env("CONCIERTO__SERVER__METRICS_ADDR", "")
        .env("CONCIERTO_NATS_USER", "orchestrator")
        .env("CONCIERTO_NATS_PASSWORD", password_of(&pw, "orchestrator"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let still = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still.is_none(), "the orchestrator stopped: {still:?}");
}

#[tokio::test]
async fn only_the_orchestrator_publishes_deliverables_and_the_publisher_takes_them() {
    let (nats, pw) = shipped_server();
    let orchestrator = login_as(&nats, &pw, "orchestrator").await;
    ensure_standard_streams(orchestrator.as_ref(), &StreamLimits::default())
        .await
        .unwrap();
    let d = v1::Deliverable {
        id: "r1/draft".into(),
        run_id: "r1".into(),
        workflow: "daily".into(),
        ..Default::default()
    };
    // An agent may not forge one.
    let agent = login_as(&nats, &pw, "agent").await;
    let forged = agent
        .publish_durable_proto(&subjects::deliverable("daily"), &d, "forged")
        .await;
    assert!(
        forged.is_err(),
        "an agent published a deliverable: {forged:?}"
    );
    orchestrator
        .publish_durable_proto(&subjects::deliverable("daily"), &d, &d.id)
        .await
        .expect("the orchestrator publishes deliverables");
    // The publisher takes them from its consumer and may ask library.put
    // (answered here by the ingest user).
    let publisher = login_as(&nats, &pw, "publisher").await;
    let consumer = publisher
        .consumer(
            "DELIVERABLES",
            &concierto_bus::ConsumerSpec::new("publisher", subjects::DELIVERABLES),
        )
        .await
        .expect("the publisher's consumer");
    let got = consumer
        .fetch_proto::<v1::Deliverable>(10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.id, "r1/draft");
    let ingest = login_as(&nats, &pw, "ingest").await;
    let mut sub = ingest.subscribe(subjects::LIBRARY_PUT).await.unwrap();
    ingest.flush().await.unwrap();
    let answer = tokio::spawn(async move {
        let m = sub.next().await.expect("a library.put request");
        ingest
            .respond(
                m.reply.as_deref().unwrap(),
                encode(&v1::ContentItem::default()),
            )
            .await
            .unwrap();
        // Out before this connection is dropped.
        ingest.flush().await.unwrap();
    });
    // The server may not route to the new subscription at once: a request that
    // finds no responder is not delivered, so asking again is safe.
    let mut asked = None;
    for _ in 0..50 {
        match publisher
            .request(subjects::LIBRARY_PUT, encode(&d), Duration::from_secs(5))
            .await
        {
            Err(concierto_bus::BusError::NoResponders(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => {
                asked = Some(other);
                break;
            }
        }
    }
    asked
        .expect("the ingest user's subscription is routed")
        .expect("the publisher may ask library.put and the ingest user may answer");
    answer.await.unwrap();
}

#[tokio::test]
async fn the_feedback_service_reads_failed_runs_with_its_own_consumer_only() {
    let (nats, pw) = shipped_server();
    let orchestrator = login_as(&nats, &pw, "orchestrator").await;
    ensure_standard_streams(orchestrator.as_ref(), &StreamLimits::default())
        .await
        .unwrap();
    let failed = v1::RunFailed {
        run_id: "r9".into(),
        workflow: "daily".into(),
        ..Default::default()
    };
    orchestrator
        .publish_durable_proto(subjects::RUN_FAILED, &failed, "r9")
        .await
        .expect("the orchestrator publishes failed runs");
    // As concierto_feedback::failure_notify creates it.
    let feedback = login_as(&nats, &pw, "feedback").await;
    let mut spec = ConsumerSpec::new(
        concierto_feedback::failure_notify::DURABLE,
        subjects::RUN_FAILED,
    );
    spec.max_deliver = 5;
    let consumer = feedback
        .consumer(concierto_feedback::failure_notify::STREAM, &spec)
        .await
        .expect("the feedback service's consumer of event.run.failed");
    let got = consumer
        .fetch_proto::<v1::RunFailed>(10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let (ev, delivery) = got.into_iter().next().unwrap();
    assert_eq!(ev.run_id, "r9");
    delivery.ack().await.expect("acks");
    // No other consumer of EVENTS (it would read every run's events).
    let other = feedback
        .consumer(
            "EVENTS",
            &ConsumerSpec::new("feedback-other", "run.event.>"),
        )
        .await;
    assert!(other.is_err(), "feedback made another consumer: {other:?}");
}
