//! Loading a studio: the YAML file (plus `CONCIERTO__SECTION__KEY` environment
//! overrides) through the `config` crate, then one pass over the merged tree
//! that parses every grammar, checks every reference, and reports every
//! problem with its file, line and key path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::model::*;
use super::problem::{Problem, Problems, Severity};
use super::spans::{Spans, child, item};
use super::walk::{Walker, describe};
use crate::grammar::{
    CycleTime, Improvement, Predicate, Schedule, Target, parse_duration, parse_timezone,
};
use crate::roles::{RoleDef, parse_role, role_files};

/// What checking a studio found: the studio when it has no errors, and every
/// problem (warnings too), errors first.
#[derive(Debug)]
pub struct Checked {
    /// The studio, when there are no errors.
    pub studio: Option<Studio>,
    /// Every problem.
    pub problems: Vec<Problem>,
}

/// Loads a studio, failing with every problem when there is any error.
/// Warnings of a valid studio are logged.
pub fn load(path: &Path) -> Result<Studio, Problems> {
    load_with_env(path, std::env::vars())
}

/// [`load`] with explicit environment variables (for tests).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Studio, Problems> {
    let checked = check_with_env(path, env);
    match checked.studio {
        Some(studio) => {
            for p in &checked.problems {
                tracing::warn!("{p}");
            }
            Ok(studio)
        }
        None => Err(Problems(checked.problems)),
    }
}

/// Checks a studio and returns every problem.
pub fn check(path: &Path) -> Checked {
    check_with_env(path, std::env::vars())
}

/// The environment variable that picks `agents.default_executor`
/// (`CONCIERTO_EXECUTOR=claude`), so one switch moves every role without an
/// executor of its own to a real model.
pub const EXECUTOR_SWITCH: &str = "CONCIERTO_EXECUTOR";

/// [`check`] with explicit environment variables.
pub fn check_with_env(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Checked {
    let fail = |p: Problem| Checked {
        studio: None,
        problems: vec![p],
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return fail(Problem::error(
                path,
                None,
                "",
                format!("cannot read the studio file: {e}"),
            ));
        }
    };
    check_text_with_env(path, &text, env)
}

/// [`check_with_env`] of `text` as if it were the file at `path` (relative
/// paths and role files resolve against `path`'s folder): a studio announced
/// on the bus, or a change before it is written.
pub fn check_text_with_env(
    path: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Checked {
    let fail = |p: Problem| Checked {
        studio: None,
        problems: vec![p],
    };
    let spans = match Spans::index(text) {
        Ok(s) => s,
        Err(e) => {
            return fail(Problem::error(
                path,
                Some(e.line),
                "",
                format!("not valid YAML (column {}): {}", e.col, e.message),
            ));
        }
    };
    if !spans.duplicates.is_empty() {
        return Checked {
            studio: None,
            problems: spans
                .duplicates
                .iter()
                .map(|(key, line)| {
                    Problem::error(
                        path,
                        Some(*line),
                        key.as_str(),
                        "this key appears twice in the same map; keep one",
                    )
                })
                .collect(),
        };
    }
    let mut env: indexmap::IndexMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("CONCIERTO__") || k == EXECUTOR_SWITCH)
        .collect();
    // The one switch: `CONCIERTO_EXECUTOR=claude` is
    // `CONCIERTO__AGENTS__DEFAULT_EXECUTOR=claude` (the longer form wins).
    if let Some(exec) = env.shift_remove(EXECUTOR_SWITCH)
        && !exec.trim().is_empty()
    {
        env.entry("CONCIERTO__AGENTS__DEFAULT_EXECUTOR".into())
            .or_insert_with(|| exec.trim().to_string());
    }
    let merged = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .add_source(
            config::Environment::with_prefix("CONCIERTO")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .and_then(|c| c.try_deserialize::<Value>());
    let tree = match merged {
        Ok(t) => t,
        Err(e) => return fail(Problem::error(path, None, "", format!("cannot load: {e}"))),
    };
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut w = Walker {
        file: path,
        spans: &spans,
        problems: Vec::new(),
    };
    let studio = build(&mut w, &tree, path, &base_dir);
    let mut problems = w.problems;
    problems.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| (a.file != path).cmp(&(b.file != path)))
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.line.cmp(&b.line))
    });
    let ok = !problems.iter().any(|p| p.severity == Severity::Error);
    Checked {
        studio: ok.then_some(studio),
        problems,
    }
}

const TOP: &[&str] = &[
    "studio",
    "server",
    "agents",
    "reviewers",
    "workflows",
    "triggers",
    "demo_triggers",
    "feedback_loops",
    "content_sources",
    "progress_metrics",
    "publishers",
];

fn build(w: &mut Walker<'_>, tree: &Value, file: &Path, base_dir: &Path) -> Studio {
    let empty = Map::new();
    let root = w.map(Some(tree), "").unwrap_or(&empty);
    w.known_keys(root, "", TOP);
    let studio = studio_section(w, root.get("studio"));
    let server = server_section(w, root.get("server"), base_dir);
    let agents = agents_section(w, root.get("agents"), base_dir);
    let roles = load_roles(w, &agents);
    let reviewers = reviewers_section(w, root.get("reviewers"));
    let feedback_loops = feedback_loops_section(w, root.get("feedback_loops"));
    let mut paths = Paths::default();
    let mut workflows = workflows_section(w, root.get("workflows"), &mut paths);
    super::review::attach(
        w,
        &mut workflows,
        &feedback_loops.agent_to_agent,
        &paths.steps,
    );
    let mut triggers = Vec::new();
    for section in ["triggers", "demo_triggers"] {
        let v = root.get(section);
        // `demo_triggers: off` (a deploy sets CONCIERTO__DEMO_TRIGGERS=off):
        // the example's demo triggers stay in the file but never fire.
        if section == "demo_triggers" && demo_off(v) {
            continue;
        }
        triggers.extend(triggers_section(
            w,
            section,
            v,
            studio.timezone,
            &workflows,
            &mut paths,
        ));
    }
    let content_sources = content_sources_section(w, root.get("content_sources"), base_dir);
    let progress_metrics = progress_metrics_section(w, root.get("progress_metrics"));
    let slack = super::deliverables::SlackDefaults {
        token_env: &server.feedback.slack_bot_token_env,
        api_base: &server.feedback.slack_api_base,
    };
    let publishing = super::deliverables::publishing_section(w, root, &workflows, base_dir, slack);
    let s = Studio {
        publishing,
        file: file.to_path_buf(),
        base_dir: base_dir.to_path_buf(),
        studio,
        server,
        triggers,
        feedback_loops,
        content_sources,
        progress_metrics,
        workflows,
        agents,
        roles,
        reviewers,
    };
    check_references(w, &s, &paths);
    let mcp_names: Vec<String> = s.agents.mcp_servers.keys().cloned().collect();
    super::tools::check_role_tools(&mut w.problems, &s.roles, Some(&mcp_names));
    s
}

/// Key paths of the triggers and steps kept in the studio, in order, so that
/// later checks name the right entry even when an earlier one was dropped.
#[derive(Default)]
struct Paths {
    /// Of each of `Studio::triggers`, e.g. `triggers.scheduled[2].name`.
    triggers: Vec<String>,
    /// Of each step of each workflow, e.g. `workflows.wf.steps[1]`.
    steps: IndexMap<String, Vec<String>>,
}

fn studio_section(w: &mut Walker<'_>, v: Option<&Value>) -> StudioSection {
    let mut out = StudioSection {
        name: "Concierto Studio".into(),
        timezone: chrono_tz::UTC,
    };
    let Some(m) = w.map(v, "studio") else {
        return out;
    };
    w.known_keys(m, "studio", &["name", "timezone"]);
    if let Some(n) = w.opt_string(m, "name", "studio") {
        out.name = n;
    }
    if let Some(tz) = w.opt_string(m, "timezone", "studio") {
        match parse_timezone(&tz) {
            Ok(tz) => out.timezone = tz,
            Err(e) => w.error("studio.timezone", format!("bad time zone: {e}")),
        }
    }
    out
}

/// A `true`/`false` key (also the text `"true"`/`"false"`, as environment
/// overrides give), or `default` when absent.
fn flag(w: &mut Walker<'_>, m: &Map<String, Value>, key: &str, path: &str, default: bool) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            w.error(
                &child(path, key),
                format!("must be true or false, found {}", describe(other)),
            );
            default
        }
    }
}

/// `demo_triggers: off` (or `false`): the section is left out.
fn demo_off(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => matches!(s.trim(), "off" | "false"),
        _ => false,
    }
}

/// `server.library_url`: where peers reach the content library, or the
/// default derived from `library_addr` (an all-interfaces bind address is
/// reached on loopback in the same host).
fn library_url(w: &mut Walker<'_>, m: &Map<String, Value>, library_addr: &str) -> String {
    if let Some(url) = w.opt_string(m, "library_url", "server") {
        let url = url.trim().trim_end_matches('/').to_string();
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if host.is_some_and(|h| !h.is_empty() && !h.contains('/')) {
            return url;
        }
        w.error(
            "server.library_url",
            format!("{url:?} is not an http:// or https:// base URL such as http://ingest:8081 (where other services reach the content library)"),
        );
    }
    match library_addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() && a.is_ipv4() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        _ => format!("http://{library_addr}"),
    }
}

fn server_section(w: &mut Walker<'_>, v: Option<&Value>, base_dir: &Path) -> ServerSection {
    let p = "server";
    let mut out = ServerSection {
        data_dir: PathBuf::from("./data"),
        nats_url: "nats://127.0.0.1:4222".into(),
        subject_prefix: "concierto.".into(),
        grpc_addr: "127.0.0.1:50051".into(),
        http_addr: "127.0.0.1:8080".into(),
        library_addr: "127.0.0.1:8081".into(),
        library_url: String::new(),
        library_public: false,
        dashboard_addr: "127.0.0.1:8082".into(),
        dashboard_secure_cookies: false,
        metrics_addr: "127.0.0.1:9464".into(),
        otlp_endpoint: String::new(),
        log_format: LogFormat::Text,
        bus: BusSection {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 0,
            max_msgs: 0,
            auth: BusAuth::default(),
            tls: None,
            replicas: 1,
        },
        tls: None,
        feedback: FeedbackIntake::default(),
        retention: Some(super::retention::DEFAULT_RETENTION),
        partitions: 1,
    };
    let Some(m) = w.map(v, p) else {
        return out;
    };
    w.known_keys(
        m,
        p,
        &[
            "data_dir",
            "nats_url",
            "subject_prefix",
            "grpc_addr",
            "http_addr",
            "library_addr",
            "library_url",
            "library_public",
            "dashboard_addr",
            "dashboard_secure_cookies",
            "metrics_addr",
            "otlp_endpoint",
            "log_format",
            "bus",
            "tls",
            "feedback",
            "retention",
            "partitions",
        ],
    );
    out.retention = super::retention::read(w, m, p);
    out.partitions = super::partitions::read(w, m, p);
    if let Some(t) = w.map(m.get("tls"), "server.tls") {
        let tp = "server.tls";
        w.known_keys(t, tp, &["cert", "key"]);
        let cert = w.string(t, "cert", tp);
        let key = w.string(t, "key", tp);
        if let (Some(cert), Some(key)) = (cert, key) {
            let tls = TlsSection {
                cert: base_dir.join(cert),
                key: base_dir.join(key),
            };
            for (k, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !path.is_file() {
                    w.error(
                        &child(tp, k),
                        format!(
                            "{} is not a file (a PEM file, relative to the studio file)",
                            path.display()
                        ),
                    );
                }
            }
            out.tls = Some(tls);
        }
    }
    if let Some(f) = w.map(m.get("feedback"), "server.feedback") {
        let fp = "server.feedback";
        w.known_keys(
            f,
            fp,
            &[
                "slack_signing_secret_env",
                "email_token_env",
                "csrf_key_env",
                "max_body_bytes",
                "slack_bot_token_env",
                "slack_api_base",
                "form_max_body_bytes",
                "form_per_client_per_minute",
                "form_per_minute",
                "smtp",
            ],
        );
        out.feedback.smtp = super::feedback_router::smtp(w, f, fp);
        for (k, slot) in [
            (
                "slack_signing_secret_env",
                &mut out.feedback.slack_signing_secret_env,
            ),
            ("email_token_env", &mut out.feedback.email_token_env),
            ("csrf_key_env", &mut out.feedback.csrf_key_env),
            ("slack_bot_token_env", &mut out.feedback.slack_bot_token_env),
        ] {
            if let Some(v) = w.opt_string(f, k, fp) {
                if v.is_empty()
                    || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || v.starts_with(|c: char| c.is_ascii_digit())
                {
                    w.error(&child(fp, k), "is not an environment variable name (letters, digits and `_`): name the variable that holds the secret, never the secret (the value is not repeated here)");
                } else {
                    *slot = v;
                }
            }
        }
        let max = w.count(f, "max_body_bytes", fp, out.feedback.max_body_bytes);
        if max == 0 {
            w.error(&child(fp, "max_body_bytes"), "must be at least 1");
        } else {
            out.feedback.max_body_bytes = max;
        }
        // The web form: open to anyone, so its own smaller limits.
        let max = w.count(
            f,
            "form_max_body_bytes",
            fp,
            out.feedback.form_max_body_bytes,
        );
        if max < 1024 {
            w.error(
                &child(fp, "form_max_body_bytes"),
                format!("must be at least 1024 (bytes), found {max}"),
            );
        } else {
            if f.contains_key("form_max_body_bytes") && max > out.feedback.max_body_bytes {
                w.warning(
                    &child(fp, "form_max_body_bytes"),
                    "is more than max_body_bytes, which applies to the form too",
                );
            }
            out.feedback.form_max_body_bytes = max;
        }
        for (k, slot) in [
            (
                "form_per_client_per_minute",
                &mut out.feedback.form_per_client_per_minute,
            ),
            ("form_per_minute", &mut out.feedback.form_per_minute),
        ] {
            let n = w.count(f, k, fp, u64::from(*slot));
            match u32::try_from(n) {
                Ok(n) if n >= 1 => *slot = n,
                _ => w.error(
                    &child(fp, k),
                    format!(
                        "must be a number of posts per minute from 1 to {}",
                        u32::MAX
                    ),
                ),
            }
        }
        if let Some(url) = w.opt_string(f, "slack_api_base", fp) {
            let url = url.trim().trim_end_matches('/').to_string();
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if host.is_none_or(str::is_empty) {
                w.error(
                    &child(fp, "slack_api_base"),
                    format!("{url:?} is not an http:// or https:// URL (Slack's is https://slack.com/api)"),
                );
            } else {
                out.feedback.slack_api_base = url;
            }
        }
    }
    if let Some(s) = w.opt_string(m, "data_dir", p) {
        out.data_dir = PathBuf::from(s);
    }
    if let Some(s) = w.opt_string(m, "nats_url", p) {
        if nats_url_has_credentials(&s) {
            w.warning(
                "server.nats_url",
                "carries credentials (user, password or token before `@`): keep secrets out of the studio file; use server.bus.user with the password in CONCIERTO_NATS_PASSWORD (or `--nats`/CONCIERTO_NATS_URL from the environment)",
            );
        }
        out.nats_url = s;
    }
    if let Some(s) = w.opt_string(m, "subject_prefix", p) {
        let ok = s.is_empty()
            || (s.ends_with('.')
                && s.trim_end_matches('.').split('.').all(|t| {
                    !t.is_empty()
                        && t.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                }));
        if ok {
            out.subject_prefix = s;
        } else {
            w.error(
                "server.subject_prefix",
                format!("{s:?} must be empty or dot-separated tokens of letters, digits, `-`, `_` ending in `.` (e.g. `concierto.`)"),
            );
        }
    }
    for (key, slot) in [
        ("grpc_addr", &mut out.grpc_addr),
        ("http_addr", &mut out.http_addr),
        ("library_addr", &mut out.library_addr),
        ("dashboard_addr", &mut out.dashboard_addr),
        ("metrics_addr", &mut out.metrics_addr),
    ] {
        if let Some(s) = w.opt_string(m, key, p) {
            let off = key == "metrics_addr" && s.is_empty();
            if !off && s.parse::<std::net::SocketAddr>().is_err() {
                w.error(
                    &child(p, key),
                    format!("{s:?} is not an address such as 127.0.0.1:8080"),
                );
            }
            *slot = s;
        }
    }
    out.library_url = library_url(w, m, &out.library_addr);
    out.library_public = flag(w, m, "library_public", p, false);
    out.dashboard_secure_cookies = flag(w, m, "dashboard_secure_cookies", p, false);
    if let Some(s) = w.opt_string(m, "otlp_endpoint", p) {
        let s = s.trim().to_string();
        if !(s.is_empty() || s.starts_with("http://") || s.starts_with("https://")) {
            w.error(
                "server.otlp_endpoint",
                format!("{s:?} is not an http:// or https:// URL (an OTLP gRPC endpoint such as http://jaeger:4317)"),
            );
        } else {
            out.otlp_endpoint = s;
        }
    }
    if let Some(s) = w.opt_string(m, "log_format", p) {
        match s.as_str() {
            "text" => out.log_format = LogFormat::Text,
            "json" => out.log_format = LogFormat::Json,
            other => w.error(
                "server.log_format",
                format!("{other:?} is not a log format: `text` or `json`"),
            ),
        }
    }
    if let Some(b) = w.map(m.get("bus"), "server.bus") {
        let bp = "server.bus";
        w.known_keys(
            b,
            bp,
            &[
                "ack_wait",
                "max_deliver",
                "duplicate_window",
                "max_age",
                "max_bytes",
                "max_msgs",
                "user",
                "password_env",
                "token_env",
                "creds_file",
                "nkey_seed_env",
                "nkey_seed_file",
                "tls",
                "replicas",
            ],
        );
        let d = out.bus.clone();
        out.bus = BusSection {
            ack_wait: w.duration(b, "ack_wait", bp, d.ack_wait),
            max_deliver: w.count(b, "max_deliver", bp, d.max_deliver),
            duplicate_window: w.duration(b, "duplicate_window", bp, d.duplicate_window),
            max_age: w.duration(b, "max_age", bp, d.max_age),
            max_bytes: w.count(b, "max_bytes", bp, d.max_bytes),
            max_msgs: w.count(b, "max_msgs", bp, d.max_msgs),
            auth: bus_auth(w, b, bp, base_dir),
            tls: bus_tls(w, b.get("tls"), base_dir),
            replicas: usize::try_from(w.count(b, "replicas", bp, d.replicas as u64)).unwrap_or(1),
        };
        if !(1..=5).contains(&out.bus.replicas) {
            w.error(
                "server.bus.replicas",
                "must be from 1 to 5 (JetStream keeps at most 5 copies; 3 on a 3-node cluster)",
            );
            out.bus.replicas = 1;
        }
        if out.bus.max_deliver == 0 {
            w.error("server.bus.max_deliver", "must be at least 1");
        }
        if out.bus.ack_wait.is_zero() {
            w.error("server.bus.ack_wait", "must be longer than zero");
        }
    }
    out
}

/// True when a NATS URL (or a comma-separated list of them) carries a user,
/// password or token before `@`.
fn nats_url_has_credentials(urls: &str) -> bool {
    urls.split(',').any(|u| {
        let rest = u.trim().split_once("://").map_or(u.trim(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        authority.contains('@')
    })
}

/// `server.bus` credentials: names of variables and files, checked here; the
/// secrets themselves are read when a process connects.
fn bus_auth(w: &mut Walker<'_>, b: &Map<String, Value>, bp: &str, base_dir: &Path) -> BusAuth {
    let mut out = BusAuth::default();
    if let Some(user) = w.opt_string(b, "user", bp) {
        if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            w.error(
                &child(bp, "user"),
                format!("{user:?} is not a NATS user name (no spaces; the password goes in the variable `password_env` names)"),
            );
        } else {
            out.user = Some(user);
        }
    }
    for (k, slot) in [
        ("password_env", &mut out.password_env),
        ("token_env", &mut out.token_env),
        ("nkey_seed_env", &mut out.nkey_seed_env),
    ] {
        if let Some(v) = w.opt_string(b, k, bp) {
            if is_env_var_name(&v) {
                *slot = v;
            } else {
                w.error(&child(bp, k), "is not an environment variable name (letters, digits and `_`): name the variable that holds the secret, never the secret (the value is not repeated here)");
            }
        }
    }
    for (k, slot) in [
        ("creds_file", &mut out.creds_file),
        ("nkey_seed_file", &mut out.nkey_seed_file),
    ] {
        if let Some(v) = w.opt_string(b, k, bp) {
            let path = base_dir.join(v);
            if !path.is_file() {
                w.error(
                    &child(bp, k),
                    format!(
                        "{} is not a file (a mounted secret; relative paths are taken from the studio file's folder)",
                        path.display()
                    ),
                );
            }
            *slot = Some(path);
        }
    }
    // One way to log in: the keys given in the file (or its overrides).
    let given = |k: &str| b.get(k).is_some_and(|v| !v.is_null());
    let ways: Vec<(&str, &str)> = [
        ("user", "user"),
        ("password_env", "user"),
        ("token_env", "token"),
        ("creds_file", "creds"),
        ("nkey_seed_env", "nkey"),
        ("nkey_seed_file", "nkey"),
    ]
    .into_iter()
    .filter(|(k, _)| given(k))
    .collect();
    if let Some((first, way)) = ways.first()
        && let Some((other, _)) = ways.iter().find(|(_, w2)| w2 != way)
    {
        w.error(
            &child(bp, other),
            format!("`{first}` and `{other}` are two ways to log in to NATS: keep one (a user with a password, a token, a credentials file, or an nkey seed)"),
        );
    }
    if given("nkey_seed_env") && given("nkey_seed_file") {
        w.error(
            &child(bp, "nkey_seed_file"),
            "`nkey_seed_env` and `nkey_seed_file` both name the nkey seed: keep one",
        );
    }
    out
}

/// `server.bus.tls`: PEM files relative to the studio file; `cert` and `key`
/// together; `required` (default true).
fn bus_tls(w: &mut Walker<'_>, v: Option<&Value>, base_dir: &Path) -> Option<BusTls> {
    let tp = "server.bus.tls";
    let t = w.map(v, tp)?;
    w.known_keys(t, tp, &["ca", "cert", "key", "required"]);
    let file = |w: &mut Walker<'_>, k: &str| {
        let path = base_dir.join(w.opt_string(t, k, tp)?);
        if !path.is_file() {
            w.error(
                &child(tp, k),
                format!(
                    "{} is not a file (a PEM file, relative to the studio file)",
                    path.display()
                ),
            );
        }
        Some(path)
    };
    let tls = BusTls {
        ca: file(w, "ca"),
        cert: file(w, "cert"),
        key: file(w, "key"),
        required: match t.get("required") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                w.error(
                    &child(tp, "required"),
                    format!("must be true or false, found {}", describe(other)),
                );
                true
            }
        },
    };
    match (&tls.cert, &tls.key) {
        (Some(_), None) => w.error(
            tp,
            "`cert` needs its `key` (the client certificate's private key)",
        ),
        (None, Some(_)) => w.error(tp, "`key` needs its `cert` (the client certificate)"),
        _ => {}
    }
    Some(tls)
}

fn agents_section(w: &mut Walker<'_>, v: Option<&Value>, base_dir: &Path) -> AgentsSection {
    let p = "agents";
    let mut out = AgentsSection {
        paths: vec![base_dir.join("agents")],
        default_executor: "builtin".into(),
        executors: IndexMap::new(),
        roles: IndexMap::new(),
        budget: Default::default(),
        budget_owner: Vec::new(),
        tools: Default::default(),
        mcp_servers: IndexMap::new(),
    };
    out.executors.insert("builtin".into(), builtin_executor());
    let Some(m) = w.map(v, p) else {
        return out;
    };
    w.known_keys(
        m,
        p,
        &[
            "paths",
            "default_executor",
            "executors",
            "roles",
            "budget",
            "budget_owner",
            "tools",
            "mcp_servers",
        ],
    );
    out.mcp_servers = super::mcp::mcp_servers(w, m.get("mcp_servers"), "agents.mcp_servers");
    out.tools = super::tools::tools(w, m.get("tools"), "agents.tools");
    out.budget = super::budget::budget(w, m.get("budget"), "agents.budget");
    if m.contains_key("budget_owner") {
        out.budget_owner = w.strings(m, "budget_owner", p, false);
    }
    if m.contains_key("paths") {
        out.paths = w
            .strings(m, "paths", p, false)
            .into_iter()
            .map(|s| base_dir.join(s))
            .collect();
    }
    if let Some(s) = w.opt_string(m, "default_executor", p) {
        out.default_executor = s;
    }
    if let Some(execs) = w.map(m.get("executors"), "agents.executors") {
        for (name, v) in execs {
            let ep = child("agents.executors", name);
            let Some(e) = w.map(Some(v), &ep) else {
                continue;
            };
            if let Some(def) = executor_def(w, name, e, &ep, base_dir) {
                out.executors.insert(name.clone(), def);
            }
        }
    }
    if let Some(roles) = w.map(m.get("roles"), "agents.roles") {
        for (name, v) in roles {
            let rp = child("agents.roles", name);
            let Some(r) = w.map(Some(v), &rp) else {
                continue;
            };
            w.known_keys(r, &rp, &["executor", "replicas", "max_in_flight", "budget"]);
            let replicas = r
                .contains_key("replicas")
                .then(|| w.count(r, "replicas", &rp, 1));
            let max_in_flight = r
                .contains_key("max_in_flight")
                .then(|| w.count(r, "max_in_flight", &rp, 1));
            for (key, n) in [("replicas", replicas), ("max_in_flight", max_in_flight)] {
                if n == Some(0) {
                    w.error(&child(&rp, key), "must be at least 1");
                }
            }
            out.roles.insert(
                name.clone(),
                RoleSettings {
                    executor: w.opt_string(r, "executor", &rp),
                    replicas: replicas.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                    max_in_flight: max_in_flight.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                    budget: super::budget::budget(w, r.get("budget"), &child(&rp, "budget")),
                },
            );
        }
    }
    out
}

fn builtin_executor() -> ExecutorDef {
    ExecutorDef::new("builtin", ExecutorKind::Builtin)
}

/// Keys of `agents.executors.<name>`.
const EXECUTOR_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "model",
    "api_key_env",
    "command",
    "timeout",
    "max_tokens",
    "max_retries",
    "max_output_bytes",
    "prices",
    "env",
    "working_dir",
];

/// The keys each kind uses (besides `kind`); the others are ignored with a
/// warning.
fn executor_keys_of(kind: ExecutorKind) -> &'static [&'static str] {
    match kind {
        ExecutorKind::Builtin => &[],
        ExecutorKind::OpenAi | ExecutorKind::Anthropic => &[
            "base_url",
            "model",
            "api_key_env",
            "timeout",
            "max_tokens",
            "max_retries",
            "prices",
        ],
        ExecutorKind::Command => &[
            "model",
            "command",
            "timeout",
            "max_output_bytes",
            "prices",
            "env",
            "working_dir",
        ],
    }
}

/// True for a name such as `OPENAI_API_KEY`: a letter or `_`, then letters,
/// digits and `_`.
fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One `agents.executors.<name>` map, or `None` when its kind is missing or
/// unknown (the problem is recorded).
fn executor_def(
    w: &mut Walker<'_>,
    name: &str,
    e: &Map<String, Value>,
    ep: &str,
    base_dir: &Path,
) -> Option<ExecutorDef> {
    w.known_keys(e, ep, EXECUTOR_KEYS);
    let kind = match w.string(e, "kind", ep).as_deref() {
        Some("builtin") => Some(ExecutorKind::Builtin),
        Some("openai") => Some(ExecutorKind::OpenAi),
        Some("anthropic") => Some(ExecutorKind::Anthropic),
        Some("command") => Some(ExecutorKind::Command),
        Some(other) => {
            w.error(
                &child(ep, "kind"),
                format!(
                    "unknown executor kind {other:?}; expected builtin, openai, anthropic or command"
                ),
            );
            None
        }
        None => None,
    };
    let is_command = kind == Some(ExecutorKind::Command);
    let command = w.strings(e, "command", ep, is_command);
    if is_command
        && e.get("command").is_some_and(|v| !v.is_null())
        && command.first().is_none_or(|p| p.trim().is_empty())
    {
        w.error(
            &child(ep, "command"),
            "must name the program to run, then its arguments, e.g. [\"./bin/agent\", \"--json\"]",
        );
    }
    // Never echo the value: a key pasted here by mistake must not reach a log.
    let api_key_env = w.opt_string(e, "api_key_env", ep);
    if let Some(var) = &api_key_env
        && !is_env_var_name(var)
    {
        w.error(
            &child(ep, "api_key_env"),
            "names the environment variable that holds the key (letters, digits and `_`, \
             e.g. OPENAI_API_KEY), never the key itself",
        );
    }
    let base_url = w.opt_string(e, "base_url", ep);
    if let Some(url) = &base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        w.error(
            &child(ep, "base_url"),
            format!("{url:?} is not an http:// or https:// URL"),
        );
    }
    let model = w
        .opt_string(e, "model", ep)
        .filter(|m| !m.trim().is_empty());
    let mut def = ExecutorDef::new(name, kind?);
    let kind = def.kind;
    for k in e.keys() {
        if k != "kind"
            && EXECUTOR_KEYS.contains(&k.as_str())
            && !executor_keys_of(kind).contains(&k.as_str())
        {
            w.warning(
                &child(ep, k),
                format!(
                    "`{k}` is not used by {} executors; it is ignored",
                    kind.as_str()
                ),
            );
        }
    }
    def.timeout = w.duration(e, "timeout", ep, def.timeout);
    if def.timeout.is_zero() {
        w.error(&child(ep, "timeout"), "must be longer than zero");
    }
    let small = |w: &mut Walker<'_>, key: &str, default: u32| -> u32 {
        let n = w.count(e, key, ep, u64::from(default));
        u32::try_from(n).unwrap_or_else(|_| {
            w.error(&child(ep, key), format!("must be at most {}", u32::MAX));
            default
        })
    };
    if e.contains_key("max_tokens") {
        let n = small(w, "max_tokens", 1);
        if n == 0 {
            w.error(&child(ep, "max_tokens"), "must be at least 1");
        }
        def.max_tokens = Some(n);
    }
    def.max_retries = small(w, "max_retries", def.max_retries);
    def.max_output_bytes = w.count(e, "max_output_bytes", ep, def.max_output_bytes);
    if def.max_output_bytes == 0 {
        w.error(&child(ep, "max_output_bytes"), "must be at least 1");
    }
    def.prices = prices(w, e.get("prices"), &child(ep, "prices"));
    let envp = child(ep, "env");
    let not_a_name =
        "is not an environment variable name (letters, digits and `_`, not starting with a digit)";
    if matches!(e.get("env"), Some(Value::Array(_) | Value::String(_))) {
        // `env: [NAME, ...]`: passed on from the agent's own environment.
        for (i, name) in w.strings(e, "env", ep, false).into_iter().enumerate() {
            if !is_env_var_name(&name) {
                w.error(&item(&envp, i), not_a_name);
            } else if !def.pass_env.contains(&name) {
                def.pass_env.push(name);
            }
        }
    } else if let Some(env) = w.map(e.get("env"), &envp) {
        for key in env.keys() {
            if !is_env_var_name(key) {
                w.error(&child(&envp, key), not_a_name);
            }
            if env.get(key).is_some_and(Value::is_null) {
                // `NAME: ~`: passed on, like a listed name.
                def.pass_env.push(key.clone());
            } else if let Some(value) = w.opt_string(env, key, &envp) {
                def.env.insert(key.clone(), value);
            }
        }
    }
    if let Some(dir) = w.opt_string(e, "working_dir", ep) {
        let joined = base_dir.join(&dir);
        let abs = std::path::absolute(&joined).unwrap_or(joined);
        if !abs.is_dir() {
            w.warning(
                &child(ep, "working_dir"),
                format!("{} is not a folder (yet)", abs.display()),
            );
        }
        def.working_dir = Some(abs);
    }
    if let Some(url) = base_url {
        def.base_url = Some(url);
    }
    def.model = model;
    def.api_key_env = api_key_env;
    def.command = command;
    Some(def)
}

/// `prices: { input_per_mtok, output_per_mtok }`, both required, in US dollars
/// per million tokens.
fn prices(w: &mut Walker<'_>, v: Option<&Value>, p: &str) -> Option<Prices> {
    let m = w.map(v, p)?;
    w.known_keys(m, p, &["input_per_mtok", "output_per_mtok"]);
    let price = |w: &mut Walker<'_>, key: &str| -> Option<f64> {
        if !m.contains_key(key) {
            w.error(
                p,
                format!("`{key}` is required (US dollars per million tokens)"),
            );
            return None;
        }
        let n = w.number(m, key, p)?;
        if !n.is_finite() || n < 0.0 {
            w.error(
                &child(p, key),
                format!("must be a price ≥ 0 in US dollars per million tokens, found {n}"),
            );
            return None;
        }
        Some(n)
    };
    let input = price(w, "input_per_mtok");
    let output = price(w, "output_per_mtok");
    Some(Prices {
        input_per_mtok: input?,
        output_per_mtok: output?,
    })
}

fn load_roles(w: &mut Walker<'_>, agents: &AgentsSection) -> IndexMap<String, RoleDef> {
    let mut roles: IndexMap<String, RoleDef> = IndexMap::new();
    for (i, dir) in agents.paths.iter().enumerate() {
        let files = match role_files(dir) {
            Ok(f) => f,
            Err(e) => {
                w.error(
                    &item("agents.paths", i),
                    format!("cannot read role folder {}: {e}", dir.display()),
                );
                continue;
            }
        };
        for f in files {
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) => {
                    w.problems
                        .push(Problem::error(&f, None, "", format!("cannot read: {e}")));
                    continue;
                }
            };
            match parse_role(&f, &text) {
                Ok(role) => {
                    if let Some(first) = roles.get(&role.name) {
                        w.problems.push(Problem::error(
                            &role.file,
                            Some(role.line),
                            "name",
                            format!(
                                "role {:?} is also defined in {}",
                                role.name,
                                first.file.display()
                            ),
                        ));
                    } else {
                        roles.insert(role.name.clone(), role);
                    }
                }
                Err(problems) => w.problems.extend(problems),
            }
        }
    }
    roles
}

fn reviewers_section(w: &mut Walker<'_>, v: Option<&Value>) -> IndexMap<String, Reviewer> {
    let mut out = IndexMap::new();
    let Some(m) = w.map(v, "reviewers") else {
        return out;
    };
    for (id, v) in m {
        let p = child("reviewers", id);
        let Some(r) = w.map(Some(v), &p) else {
            continue;
        };
        w.known_keys(
            r,
            &p,
            &[
                "name",
                "email",
                "slack",
                "token_sha256",
                "escalation",
                "roles",
            ],
        );
        let roles = if r.contains_key("roles") {
            let roles = w.strings(r, "roles", &p, false);
            for (i, role) in roles.iter().enumerate() {
                if !["reviewer", "admin", "metrics"].contains(&role.as_str()) {
                    w.error(
                        &item(&child(&p, "roles"), i),
                        format!("unknown role {role:?}; expected reviewer, admin or metrics"),
                    );
                }
            }
            roles
        } else {
            vec!["reviewer".to_string()]
        };
        let token = w.opt_string(r, "token_sha256", &p);
        if let Some(t) = &token
            && (t.len() != 64 || !t.chars().all(|c| c.is_ascii_hexdigit()))
        {
            w.error(
                &child(&p, "token_sha256"),
                "must be the 64-hex-digit SHA-256 of the token (`printf %s TOKEN | sha256sum`), never the token",
            );
        }
        out.insert(
            id.clone(),
            Reviewer {
                id: id.clone(),
                name: w.opt_string(r, "name", &p).unwrap_or_else(|| id.clone()),
                email: w.opt_string(r, "email", &p),
                slack: w.opt_string(r, "slack", &p),
                token_sha256: token,
                escalation: w.strings(r, "escalation", &p, false),
                roles,
            },
        );
    }
    out
}

fn priority(w: &mut Walker<'_>, m: &Map<String, Value>, path: &str) -> Option<Priority> {
    match w.opt_string(m, "priority", path).as_deref() {
        None => None,
        Some("normal") => Some(Priority::Normal),
        Some("urgent") => Some(Priority::Urgent),
        Some(other) => {
            w.error(
                &child(path, "priority"),
                format!("unknown priority {other:?}; expected normal or urgent"),
            );
            None
        }
    }
}

fn workflows_section(
    w: &mut Walker<'_>,
    v: Option<&Value>,
    paths: &mut Paths,
) -> IndexMap<String, Workflow> {
    let mut out = IndexMap::new();
    let Some(m) = w.map(v, "workflows") else {
        return out;
    };
    for (name, v) in m {
        let p = child("workflows", name);
        let Some(wf) = w.map(Some(v), &p) else {
            continue;
        };
        w.known_keys(
            wf,
            &p,
            &[
                "description",
                "priority",
                "steps",
                "on_failure",
                "deliverables",
            ],
        );
        let mut steps = Vec::new();
        let sp = child(&p, "steps");
        match wf.get("steps") {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, s) in items.iter().enumerate() {
                    let ip = item(&sp, i);
                    if let Some(step) = step(w, Some(s), &ip, true) {
                        steps.push((step, ip));
                    }
                }
            }
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                w.error(&p, "a workflow needs at least one step under `steps`")
            }
            Some(other) => w.error(
                &sp,
                format!("must be a list of steps, found {}", describe(other)),
            ),
        }
        let mut seen: Vec<String> = Vec::new();
        for (s, ip) in &steps {
            if seen.contains(&s.id) {
                w.error(
                    &child(ip, "id"),
                    format!("step id {:?} is used twice in this workflow", s.id),
                );
            }
            for (k, input) in s.inputs.iter().enumerate() {
                if input != "trigger" && !seen.contains(input) {
                    w.error(
                        &item(&child(ip, "inputs"), k),
                        format!("input {input:?} is neither `trigger` nor an earlier step of this workflow"),
                    );
                }
            }
            seen.push(s.id.clone());
        }
        let on_failure = wf
            .get("on_failure")
            .and_then(|f| step(w, Some(f), &child(&p, "on_failure"), false));
        paths.steps.insert(
            name.clone(),
            steps.iter().map(|(_, ip)| ip.clone()).collect(),
        );
        out.insert(
            name.clone(),
            Workflow {
                name: name.clone(),
                description: w.opt_string(wf, "description", &p).unwrap_or_default(),
                priority: priority(w, wf, &p).unwrap_or(Priority::Normal),
                steps: steps.into_iter().map(|(s, _)| s).collect(),
                on_failure,
            },
        );
    }
    out
}

fn step(w: &mut Walker<'_>, v: Option<&Value>, p: &str, needs_id: bool) -> Option<Step> {
    let m = w.map(v, p)?;
    w.known_keys(
        m,
        p,
        &[
            "id", "role", "task", "inputs", "timeout", "retries", "review", "labels", "context",
        ],
    );
    let id = if needs_id {
        w.string(m, "id", p)
    } else {
        Some(
            w.opt_string(m, "id", p)
                .unwrap_or_else(|| "on-failure".into()),
        )
    };
    let role = w.string(m, "role", p);
    let task = w.string(m, "task", p);
    let inputs = w.strings(m, "inputs", p, false);
    let timeout = w.duration(m, "timeout", p, Duration::from_secs(600));
    let retries = w.count(m, "retries", p, 2);
    let review = w.opt_string(m, "review", p);
    let labels = w.strings(m, "labels", p, false);
    let context = super::context::step_context(w, m.get("context"), &child(p, "context"));
    Some(Step {
        id: id?,
        role: role?,
        task: task?,
        inputs,
        timeout,
        retries: u32::try_from(retries).unwrap_or(u32::MAX),
        review,
        labels,
        context,
    })
}

fn workflow_ref(
    w: &mut Walker<'_>,
    t: &Map<String, Value>,
    p: &str,
    workflows: &IndexMap<String, Workflow>,
) -> Option<String> {
    let name = w.string(t, "workflow", p)?;
    if !workflows.contains_key(&name) {
        let hint = closest(&name, workflows.keys().map(String::as_str))
            .map(|c| format!(" (did you mean {c:?}?)"))
            .unwrap_or_default();
        w.error(
            &child(p, "workflow"),
            format!("unknown workflow {name:?}{hint}: define it under `workflows`"),
        );
    }
    Some(name)
}

fn triggers_section(
    w: &mut Walker<'_>,
    section: &str,
    v: Option<&Value>,
    studio_tz: chrono_tz::Tz,
    workflows: &IndexMap<String, Workflow>,
    paths: &mut Paths,
) -> Vec<Trigger> {
    let mut out = Vec::new();
    let Some(m) = w.map(v, section) else {
        return out;
    };
    w.known_keys(m, section, &["scheduled", "event_based"]);
    for (name, v, p) in w.named_list(m.get("scheduled"), &child(section, "scheduled")) {
        let Some(t) = w.map(Some(v), &p) else {
            continue;
        };
        w.known_keys(
            t,
            &p,
            &[
                "time",
                "cron",
                "interval",
                "timezone",
                "misfire",
                "agents",
                "workflow",
                "priority",
                "batch",
                "max_runs_per_day",
            ],
        );
        let flood = super::flood::parse(w, t, &p, true, false);
        let forms: Vec<&str> = ["time", "cron", "interval"]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .collect();
        let when = match forms.as_slice() {
            [one] => {
                let text = w.opt_string(t, one, &p).unwrap_or_default();
                let kp = child(&p, one);
                if *one == "interval" {
                    match parse_duration(&text) {
                        Ok(d) if d.is_zero() => {
                            w.error(&kp, "an interval must be longer than zero");
                            None
                        }
                        Ok(d) => Some(When::Interval(d)),
                        Err(e) => {
                            w.error(&kp, format!("bad interval: {e}"));
                            None
                        }
                    }
                } else {
                    match Schedule::parse(&text) {
                        Ok(s) => Some(When::Schedule(s)),
                        Err(e) => {
                            w.error(&kp, format!("bad schedule: {e}"));
                            None
                        }
                    }
                }
            }
            [] => {
                w.error(
                    &p,
                    "a scheduled trigger needs one of `time`, `cron` or `interval`",
                );
                None
            }
            _ => {
                w.error(&p, format!("give only one of {}", forms.join(", ")));
                None
            }
        };
        let timezone = match w.opt_string(t, "timezone", &p) {
            None => studio_tz,
            Some(s) => parse_timezone(&s).unwrap_or_else(|e| {
                w.error(&child(&p, "timezone"), format!("bad time zone: {e}"));
                studio_tz
            }),
        };
        let misfire = misfire(w, t, &p);
        let agents = w.strings(t, "agents", &p, false);
        let workflow = workflow_ref(w, t, &p, workflows);
        let priority = priority(w, t, &p);
        if let (Some(when), Some(workflow)) = (when, workflow) {
            paths.triggers.push(p.clone());
            out.push(Trigger {
                name,
                kind: TriggerKind::Scheduled {
                    when,
                    timezone,
                    misfire,
                },
                agents,
                workflow,
                priority,
                flood,
            });
        }
    }
    for (name, v, p) in w.named_list(m.get("event_based"), &child(section, "event_based")) {
        let Some(t) = w.map(Some(v), &p) else {
            continue;
        };
        w.known_keys(
            t,
            &p,
            &[
                "source",
                "metric",
                "agents",
                "workflow",
                "priority",
                "batch",
                "max_runs_per_day",
            ],
        );
        let flood = super::flood::parse(w, t, &p, false, t.contains_key("source"));
        let filter = match (t.contains_key("source"), t.contains_key("metric")) {
            (true, false) => Some(EventFilter::NewContent {
                sources: w.strings(t, "source", &p, true),
            }),
            (false, true) => {
                let text = w.opt_string(t, "metric", &p).unwrap_or_default();
                match Predicate::parse(&text) {
                    Ok(pred) => Some(EventFilter::Threshold(pred)),
                    Err(e) => {
                        w.error(&child(&p, "metric"), format!("bad predicate: {e}"));
                        None
                    }
                }
            }
            (true, true) => {
                w.error(
                    &p,
                    "give either `source` (new content) or `metric` (a threshold), not both",
                );
                None
            }
            (false, false) => {
                w.error(
                    &p,
                    "an event trigger needs `source: [...]` (new content) or `metric: \"name < value\"` (a threshold)",
                );
                None
            }
        };
        let agents = w.strings(t, "agents", &p, false);
        let workflow = workflow_ref(w, t, &p, workflows);
        let priority = priority(w, t, &p);
        if let (Some(filter), Some(workflow)) = (filter, workflow) {
            paths.triggers.push(p.clone());
            out.push(Trigger {
                name,
                kind: TriggerKind::Event(filter),
                agents,
                workflow,
                priority,
                flood,
            });
        }
    }
    out
}

fn misfire(w: &mut Walker<'_>, t: &Map<String, Value>, p: &str) -> Misfire {
    let mp = child(p, "misfire");
    match t.get("misfire") {
        None | Some(Value::Null) => Misfire::FireOnce,
        Some(Value::String(s)) => match s.as_str() {
            "skip" => Misfire::Skip,
            "fire_once" => Misfire::FireOnce,
            "fire_all" => Misfire::FireAll(10),
            other => {
                w.error(
                    &mp,
                    format!("unknown misfire policy {other:?}; expected skip, fire_once, fire_all or {{fire_all: N}}"),
                );
                Misfire::FireOnce
            }
        },
        Some(Value::Object(o)) if o.len() == 1 && o.contains_key("fire_all") => {
            let n = w.count(o, "fire_all", &mp, 10);
            Misfire::FireAll(u32::try_from(n).unwrap_or(u32::MAX))
        }
        Some(other) => {
            w.error(
                &mp,
                format!(
                    "must be skip, fire_once, fire_all or {{fire_all: N}}, found {}",
                    describe(other)
                ),
            );
            Misfire::FireOnce
        }
    }
}

fn feedback_loops_section(w: &mut Walker<'_>, v: Option<&Value>) -> FeedbackLoops {
    let mut out = FeedbackLoops::default();
    let Some(m) = w.map(v, "feedback_loops") else {
        return out;
    };
    w.known_keys(
        m,
        "feedback_loops",
        &["agent_to_agent", "agent_to_human", "human_to_agent"],
    );
    for (name, v, p) in w.named_list(m.get("agent_to_agent"), "feedback_loops.agent_to_agent") {
        let Some(l) = w.map(Some(v), &p) else {
            continue;
        };
        w.known_keys(
            l,
            &p,
            &[
                "producer",
                "reviewer",
                "cycle_time",
                "max_rounds",
                "pass_mark",
                "on_exhausted",
            ],
        );
        let cycle_time = match w.opt_string(l, "cycle_time", &p) {
            None => CycleTime::Immediate,
            Some(s) => CycleTime::parse(&s).unwrap_or_else(|e| {
                w.error(&child(&p, "cycle_time"), format!("bad cycle time: {e}"));
                CycleTime::Immediate
            }),
        };
        let pass_mark = w.number(l, "pass_mark", &p);
        if let Some(x) = pass_mark
            && !(0.0..=1.0).contains(&x)
        {
            w.error(&child(&p, "pass_mark"), "must be between 0 and 1");
        }
        let on_exhausted = match w.opt_string(l, "on_exhausted", &p).as_deref() {
            None | Some("fail") => Exhausted::Fail,
            Some("escalate") => Exhausted::Escalate,
            Some(other) => {
                w.error(
                    &child(&p, "on_exhausted"),
                    format!("unknown action {other:?}; expected fail or escalate"),
                );
                Exhausted::Fail
            }
        };
        let max_rounds = w.count(l, "max_rounds", &p, 3);
        if max_rounds == 0 {
            w.error(&child(&p, "max_rounds"), "must be at least 1");
        }
        out.agent_to_agent.push(ReviewLoop {
            name,
            producers: w.strings(l, "producer", &p, true),
            reviewers: w.strings(l, "reviewer", &p, true),
            cycle_time,
            max_rounds: u32::try_from(max_rounds).unwrap_or(u32::MAX),
            pass_mark,
            on_exhausted,
        });
    }
    for (group, v, gp) in w.named_list(m.get("agent_to_human"), "feedback_loops.agent_to_human") {
        if group != "quality_gates" {
            w.error(
                &gp,
                format!("unknown agent_to_human entry `{group}`; expected quality_gates"),
            );
            continue;
        }
        for (name, v, p) in w.named_list(Some(v), &gp) {
            let Some(g) = w.map(Some(v), &p) else {
                continue;
            };
            w.known_keys(
                g,
                &p,
                &[
                    "threshold",
                    "reviewers",
                    "sla",
                    "remind_before",
                    "on_breach",
                    "escalate_to",
                    super::gate_batch::KEY,
                ],
            );
            let threshold = w.string(g, "threshold", &p);
            let reviewers = w.strings(g, "reviewers", &p, true);
            let sla = match w.string(g, "sla", &p) {
                Some(s) => parse_duration(&s).unwrap_or_else(|e| {
                    w.error(&child(&p, "sla"), format!("bad SLA: {e}"));
                    Duration::ZERO
                }),
                None => Duration::ZERO,
            };
            let remind_before = if g.contains_key("remind_before") {
                let rp = child(&p, "remind_before");
                w.strings(g, "remind_before", &p, false)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| match parse_duration(s) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            w.error(&item(&rp, i), format!("bad duration: {e}"));
                            None
                        }
                    })
                    .collect()
            } else {
                vec![sla / 2, sla / 10]
            };
            let on_breach = match w.opt_string(g, "on_breach", &p).as_deref() {
                None | Some("hold") => BreachAction::Hold,
                Some("approve") => BreachAction::Approve,
                Some("reject") => BreachAction::Reject,
                Some(other) => {
                    w.error(
                        &child(&p, "on_breach"),
                        format!("unknown action {other:?}; expected hold, approve or reject"),
                    );
                    BreachAction::Hold
                }
            };
            let escalate_to = w.strings(g, "escalate_to", &p, false);
            let batch = super::gate_batch::parse(w, g, &p, sla);
            if let Some(threshold) = threshold {
                out.quality_gates.push(QualityGate {
                    name,
                    threshold,
                    reviewers,
                    sla,
                    remind_before,
                    on_breach,
                    escalate_to,
                    batch,
                });
            }
        }
    }
    for (name, v, p) in w.named_list(m.get("human_to_agent"), "feedback_loops.human_to_agent") {
        let Some(f) = w.map(Some(v), &p) else {
            continue;
        };
        w.known_keys(f, &p, &["channels", "processor", "action", "routing"]);
        let routing = super::keys::parse_routing(w, f, &p);
        let channels = w.strings(f, "channels", &p, true);
        let cp = child(&p, "channels");
        for (i, c) in channels.iter().enumerate() {
            if !["slack", "email", "web_form", "api"].contains(&c.as_str()) {
                w.error(
                    &item(&cp, i),
                    format!("unknown channel {c:?}; expected slack, email, web_form or api"),
                );
            }
        }
        let processor = w.string(f, "processor", &p);
        let action = w
            .opt_string(f, "action", &p)
            .unwrap_or_else(|| "route_to_specialists".into());
        if action != "route_to_specialists" {
            w.error(
                &child(&p, "action"),
                format!("unknown action {action:?}; expected route_to_specialists"),
            );
        }
        if let Some(processor) = processor {
            out.human_to_agent.push(FeedbackCapture {
                name,
                channels,
                processor,
                action,
                routing,
            });
        }
    }
    out
}

fn refresh(w: &mut Walker<'_>, text: &str, path: &str) -> Refresh {
    match text {
        "on_update" => Refresh::OnUpdate,
        "continuous" => Refresh::Continuous,
        "hourly" => Refresh::Every(Duration::from_secs(3600)),
        "daily" => Refresh::Every(Duration::from_secs(86_400)),
        "weekly" => Refresh::Every(Duration::from_secs(7 * 86_400)),
        "monthly" => Refresh::Every(Duration::from_secs(30 * 86_400)),
        other => match parse_duration(other) {
            Ok(d) if !d.is_zero() => Refresh::Every(d),
            _ => {
                w.error(
                    path,
                    format!("{other:?} is not a frequency: use on_update, continuous, hourly, daily, weekly, monthly or a duration such as \"6 hours\""),
                );
                Refresh::Every(Duration::from_secs(86_400))
            }
        },
    }
}

fn content_sources_section(
    w: &mut Walker<'_>,
    v: Option<&Value>,
    base_dir: &Path,
) -> Vec<ContentSource> {
    let mut out = Vec::new();
    let Some(m) = w.map(v, "content_sources") else {
        return out;
    };
    w.known_keys(
        m,
        "content_sources",
        &["curated_databases", "external_inspiration", "training_data"],
    );
    for group in ["curated_databases", "external_inspiration", "training_data"] {
        let gp = child("content_sources", group);
        for (name, v, p) in w.named_list(m.get(group), &gp) {
            // A nested group: `- twitter_accounts: [ - FigsFromPlums: {...} ]`.
            if v.is_array() {
                let sub = format!("{group}.{name}");
                for (name, v, p) in w.named_list(Some(v), &p) {
                    if let Some(s) = source(w, name, v, &p, &sub, base_dir) {
                        out.push(s);
                    }
                }
            } else if let Some(s) = source(w, name, v, &p, group, base_dir) {
                out.push(s);
            }
        }
    }
    out
}

fn source(
    w: &mut Walker<'_>,
    name: String,
    v: &Value,
    p: &str,
    group: &str,
    base_dir: &Path,
) -> Option<ContentSource> {
    let s = w.map(Some(v), p)?;
    let training = group == "training_data";
    let enabled = flag(w, s, "enabled", p, true);
    if training {
        w.known_keys(
            s,
            p,
            &["source", "learner", "training_frequency", "type", "enabled"],
        );
        let location = w
            .string(s, "source", p)
            .map(|l| folder_location(w, &l, base_dir, &child(p, "source"), enabled));
        let role = w.string(s, "learner", p);
        let freq = w
            .opt_string(s, "training_frequency", p)
            .unwrap_or_else(|| "weekly".into());
        let refresh = refresh(w, &freq, &child(p, "training_frequency"));
        return Some(ContentSource {
            name,
            group: group.to_string(),
            kind: SourceKind::TrainingData,
            location: location?,
            role: role?,
            refresh,
            extract: Vec::new(),
            allow_hosts: Vec::new(),
            allow_private_networks: false,
            enabled,
        });
    }
    w.known_keys(
        s,
        p,
        &[
            "type",
            "path",
            "url",
            "handle",
            "indexer",
            "processor",
            "refresh",
            "frequency",
            "extractor",
            "extract",
            "allow_hosts",
            "allow_private_networks",
            "enabled",
        ],
    );
    let kind = match w.string(s, "type", p).as_deref() {
        Some("image_database") => Some(SourceKind::ImageDatabase),
        Some("component_library") => Some(SourceKind::ComponentLibrary),
        Some("web_scraper") => Some(SourceKind::WebScraper),
        Some("twitter_stream") => Some(SourceKind::TwitterStream),
        Some(other) => {
            w.error(
                &child(p, "type"),
                format!("unknown source type {other:?}; expected image_database, component_library, web_scraper or twitter_stream"),
            );
            None
        }
        None => None,
    };
    let location_key = match kind {
        Some(SourceKind::ImageDatabase | SourceKind::ComponentLibrary) => "path",
        Some(SourceKind::WebScraper) => "url",
        _ => "handle",
    };
    let mut location = w.string(s, location_key, p);
    if location_key == "path" {
        location =
            location.map(|l| folder_location(w, &l, base_dir, &child(p, location_key), enabled));
    }
    if let (Some(SourceKind::WebScraper), Some(url)) = (kind, &location)
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        w.error(&child(p, "url"), format!("{url:?} is not an http(s) URL"));
    }
    let role_key = if s.contains_key("indexer") {
        "indexer"
    } else {
        "processor"
    };
    let role = w.string(s, role_key, p);
    let refresh_key = if s.contains_key("refresh") {
        "refresh"
    } else {
        "frequency"
    };
    let refresh = match w.opt_string(s, refresh_key, p) {
        Some(text) => refresh(w, &text, &child(p, refresh_key)),
        None => Refresh::Every(Duration::from_secs(86_400)),
    };
    let extract_key = if s.contains_key("extractor") {
        "extractor"
    } else {
        "extract"
    };
    let extract = w.strings(s, extract_key, p, false);
    let mut allow_hosts = Vec::new();
    if s.contains_key("allow_hosts") {
        let key = child(p, "allow_hosts");
        if kind != Some(SourceKind::WebScraper) {
            w.error(
                &key,
                "only a web_scraper source fetches pages: allow_hosts does not apply",
            );
        }
        for h in w.strings(s, "allow_hosts", p, false) {
            let host = h.trim().to_ascii_lowercase();
            let ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !host.starts_with('.')
                && !host.ends_with('.');
            if ok {
                allow_hosts.push(host);
            } else {
                w.error(
                    &key,
                    format!(
                        "{h:?} is not a host name such as cdn.example.com (no scheme, port or path)"
                    ),
                );
            }
        }
    }
    let allow_private_networks = flag(w, s, "allow_private_networks", p, false);
    if s.contains_key("allow_private_networks") && kind != Some(SourceKind::WebScraper) {
        w.error(
            &child(p, "allow_private_networks"),
            "only a web_scraper source fetches pages: allow_private_networks does not apply",
        );
    }
    Some(ContentSource {
        name,
        group: group.to_string(),
        kind: kind?,
        location: location?,
        role: role?,
        refresh,
        extract,
        allow_hosts,
        allow_private_networks,
        enabled,
    })
}

/// A folder source's `path`/`source`: relative to the studio file's folder
/// (an absolute path stays as written). A folder that does not exist is a
/// warning, not an error: the ingester looks for it every few seconds and
/// reads it once it appears.
fn folder_location(
    w: &mut Walker<'_>,
    written: &str,
    base_dir: &Path,
    key: &str,
    enabled: bool,
) -> String {
    let resolved = base_dir.join(written);
    if enabled && !resolved.is_dir() {
        w.warning(
            key,
            format!(
                "folder {} does not exist (yet): the source reads nothing until it is created                  (relative paths are taken from the studio file's folder)",
                resolved.display()
            ),
        );
    }
    resolved.to_string_lossy().into_owned()
}

fn progress_metrics_section(w: &mut Walker<'_>, v: Option<&Value>) -> Vec<MetricDef> {
    let mut out = Vec::new();
    let Some(m) = w.map(v, "progress_metrics") else {
        return out;
    };
    for (group, list) in m {
        let gp = child("progress_metrics", group);
        for (name, v, p) in w.named_list(Some(list), &gp) {
            let Some(x) = w.map(Some(v), &p) else {
                continue;
            };
            w.known_keys(
                x,
                &p,
                &[
                    "target",
                    "improvement_target",
                    "type",
                    "tracker",
                    "on_off_target",
                ],
            );
            let on_off_target = super::targets::parse(w, x, &p);
            let goal = match (x.get("target"), x.get("improvement_target")) {
                (Some(t), None) => {
                    let tp = child(&p, "target");
                    match t {
                        Value::Number(n) => {
                            let text = n.to_string();
                            match n.as_f64().map(Target::from_number) {
                                Some(Ok(t)) => Some((Goal::Target(t), text)),
                                _ => {
                                    w.error(&tp, format!("bad target {text}"));
                                    None
                                }
                            }
                        }
                        Value::String(s) => match Target::parse(s) {
                            Ok(t) => Some((Goal::Target(t), s.clone())),
                            Err(e) => {
                                w.error(&tp, format!("bad target: {e}"));
                                None
                            }
                        },
                        other => {
                            w.error(
                                &tp,
                                format!(
                                    "must be a number or text such as \"< 2 hours\", found {}",
                                    describe(other)
                                ),
                            );
                            None
                        }
                    }
                }
                (None, Some(_)) => {
                    let text = w
                        .opt_string(x, "improvement_target", &p)
                        .unwrap_or_default();
                    match Improvement::parse(&text) {
                        Ok(i) => Some((Goal::Improvement(i), text)),
                        Err(e) => {
                            w.error(
                                &child(&p, "improvement_target"),
                                format!("bad improvement target: {e}"),
                            );
                            None
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    w.error(&p, "give either `target` or `improvement_target`, not both");
                    None
                }
                (None, None) => {
                    w.error(&p, "a metric needs `target` or `improvement_target`");
                    None
                }
            };
            let kind = w.opt_string(x, "type", &p);
            let tracker = w.string(x, "tracker", &p);
            if let (Some((goal, goal_text)), Some(tracker)) = (goal, tracker) {
                out.push(MetricDef {
                    name,
                    group: group.clone(),
                    goal,
                    goal_text,
                    kind,
                    tracker,
                    on_off_target,
                });
            }
        }
    }
    out
}

/// Cross-section checks: every role, workflow, reviewer, loop and executor that
/// is named exists; names are unique.
fn check_references(w: &mut Walker<'_>, s: &Studio, paths: &Paths) {
    super::budget::check(w, s);
    super::keys::check(w, s, &paths.triggers);
    super::trigger_agents::check(w, s, &paths.triggers);
    let known_roles = |name: &str| s.roles.contains_key(name);
    let role_ref = |w: &mut Walker<'_>, path: String, name: &str| {
        if !known_roles(name) {
            let hint = closest(name, s.roles.keys().map(String::as_str))
                .map(|c| format!(" (did you mean {c:?}?)"))
                .unwrap_or_default();
            w.error(
                &path,
                format!(
                    "unknown role {name:?}{hint}: no role file in the agents folders defines it"
                ),
            );
        }
    };

    // Triggers.
    let mut trigger_names = HashSet::new();
    for (ti, t) in s.triggers.iter().enumerate() {
        let p = paths.triggers.get(ti).cloned().unwrap_or_else(|| {
            let list = match t.kind {
                TriggerKind::Scheduled { .. } => "triggers.scheduled",
                TriggerKind::Event(_) => "triggers.event_based",
            };
            child(list, &t.name)
        });
        if !trigger_names.insert(t.name.clone()) {
            w.error(&p, format!("trigger name {:?} is used twice", t.name));
        }
        for (i, a) in t.agents.iter().enumerate() {
            role_ref(w, item(&child(&p, "agents"), i), a);
        }
        if let TriggerKind::Event(EventFilter::NewContent { sources }) = &t.kind {
            for (i, src) in sources.iter().enumerate() {
                let produced = s.content_sources.iter().any(|c| {
                    &c.name == src
                        || (c.kind == SourceKind::TwitterStream && (src == "twitter" || src == "x"))
                });
                if !produced {
                    w.warning(
                        &item(&child(&p, "source"), i),
                        format!("no configured content source is named {src:?} or is of that platform; this trigger will not fire for it until one is added"),
                    );
                }
            }
        }
    }

    // Workflows.
    let loop_names: Vec<&str> = s
        .feedback_loops
        .agent_to_agent
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    for (name, wf) in &s.workflows {
        let p = child("workflows", name);
        for (i, st) in wf.steps.iter().enumerate() {
            let sp = paths
                .steps
                .get(name)
                .and_then(|ps| ps.get(i))
                .cloned()
                .unwrap_or_else(|| item(&child(&p, "steps"), i));
            role_ref(w, child(&sp, "role"), &st.role);
            super::context::check_refs(w, &sp, &st.context, &s.workflows);
            if let Some(r) = &st.review {
                match s.feedback_loops.agent_to_agent.iter().find(|l| &l.name == r) {
                    None => w.error(
                        &child(&sp, "review"),
                        format!("unknown review loop {r:?}; expected one of feedback_loops.agent_to_agent: {}", loop_names.join(", ")),
                    ),
                    Some(l) if !l.producers.contains(&st.role) => w.warning(
                        &child(&sp, "review"),
                        format!("role {:?} is not a producer of loop {r:?}", st.role),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Some(f) = &wf.on_failure {
            role_ref(w, child(&child(&p, "on_failure"), "role"), &f.role);
        }
    }

    // Feedback loops.
    let mut seen = HashSet::new();
    for (i, l) in s.feedback_loops.agent_to_agent.iter().enumerate() {
        let p = child(&item("feedback_loops.agent_to_agent", i), &l.name);
        if !seen.insert(l.name.clone()) {
            w.error(&p, format!("loop name {:?} is used twice", l.name));
        }
        for (key, list) in [("producer", &l.producers), ("reviewer", &l.reviewers)] {
            for (j, r) in list.iter().enumerate() {
                role_ref(w, item(&child(&p, key), j), r);
            }
        }
    }
    let mut seen = HashSet::new();
    for g in &s.feedback_loops.quality_gates {
        let p = format!("feedback_loops.agent_to_human[0].quality_gates.{}", g.name);
        let p = find_named(
            w.spans,
            "feedback_loops.agent_to_human",
            "quality_gates",
            &g.name,
        )
        .unwrap_or(p);
        if !seen.insert(g.name.clone()) {
            w.error(&p, format!("gate name {:?} is used twice", g.name));
        }
        for (j, r) in g.reviewers.iter().chain(g.escalate_to.iter()).enumerate() {
            if !s.reviewers.contains_key(r) {
                let key = if j < g.reviewers.len() {
                    item(&child(&p, "reviewers"), j)
                } else {
                    item(&child(&p, "escalate_to"), j - g.reviewers.len())
                };
                w.error(
                    &key,
                    format!("unknown reviewer {r:?}: add them under `reviewers`"),
                );
            }
        }
    }
    for (i, f) in s.feedback_loops.human_to_agent.iter().enumerate() {
        let p = child(&item("feedback_loops.human_to_agent", i), &f.name);
        role_ref(w, child(&p, "processor"), &f.processor);
    }

    // Reviewers' escalation contacts.
    for (id, r) in &s.reviewers {
        for (i, e) in r.escalation.iter().enumerate() {
            if !s.reviewers.contains_key(e) {
                w.error(
                    &item(&child(&child("reviewers", id), "escalation"), i),
                    format!("unknown reviewer {e:?}"),
                );
            }
        }
    }

    // Content sources and metrics.
    let mut seen = HashSet::new();
    for c in &s.content_sources {
        let p = find_source(w.spans, c).unwrap_or_else(|| format!("content_sources.{}", c.group));
        if !seen.insert(c.name.clone()) {
            w.error(&p, format!("source name {:?} is used twice", c.name));
        }
        let key = match c.kind {
            SourceKind::TrainingData => "learner",
            SourceKind::ImageDatabase | SourceKind::ComponentLibrary
                if w.spans.line(&child(&p, "indexer")) != w.spans.line(&p) =>
            {
                "indexer"
            }
            _ => "processor",
        };
        role_ref(w, child(&p, key), &c.role);
    }
    let mut seen = HashSet::new();
    for m in &s.progress_metrics {
        let p = find_named(w.spans, "progress_metrics", &m.group, &m.name)
            .unwrap_or_else(|| child("progress_metrics", &m.group));
        if !seen.insert(m.name.clone()) {
            w.error(&p, format!("metric name {:?} is used twice", m.name));
        }
        role_ref(w, child(&p, "tracker"), &m.tracker);
        super::targets::check(w, &p, m, s);
    }

    // Agents section.
    let executor_ref = |w: &mut Walker<'_>, path: String, name: &str| {
        if !s.agents.executors.contains_key(name) {
            w.error(
                &path,
                format!(
                    "unknown executor {name:?}; define it under agents.executors (known: {})",
                    s.agents
                        .executors
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    };
    executor_ref(
        w,
        "agents.default_executor".into(),
        &s.agents.default_executor,
    );
    for (name, r) in &s.agents.roles {
        let p = child("agents.roles", name);
        role_ref(w, p.clone(), name);
        if let Some(e) = &r.executor {
            executor_ref(w, child(&p, "executor"), e);
        }
    }
    for role in s.roles.values() {
        if let Some(e) = &role.executor
            && !s.agents.executors.contains_key(e)
        {
            w.problems.push(Problem::error(
                &role.file,
                None,
                "executor",
                format!(
                    "unknown executor {e:?}; define it under agents.executors in {}",
                    s.file.display()
                ),
            ));
        }
    }
}

/// Path of the entry `name` in a list of one-key maps `list_path[i].name`, or
/// in a nested group `parent[i].group[j].name`.
fn find_named(spans: &Spans, parent: &str, group: &str, name: &str) -> Option<String> {
    for i in 0..64 {
        let direct = child(&item(&child(parent, group), i), name);
        if spans.has(&direct) {
            return Some(direct);
        }
        for j in 0..64 {
            let p = child(&item(&child(&item(parent, i), group), j), name);
            if spans.has(&p) {
                return Some(p);
            }
        }
    }
    None
}

fn find_source(spans: &Spans, c: &ContentSource) -> Option<String> {
    let (group, sub) = match c.group.split_once('.') {
        Some((g, s)) => (g, Some(s)),
        None => (c.group.as_str(), None),
    };
    let gp = child("content_sources", group);
    for i in 0..256 {
        let p = match sub {
            None => child(&item(&gp, i), &c.name),
            Some(sub) => {
                let mut found = None;
                for j in 0..256 {
                    let p = child(&item(&child(&item(&gp, i), sub), j), &c.name);
                    if spans.has(&p) {
                        found = Some(p);
                        break;
                    }
                }
                match found {
                    Some(p) => p,
                    None => continue,
                }
            }
        };
        if spans.has(&p) {
            return Some(p);
        }
    }
    None
}

/// The candidate nearest to `name` by edit distance, if it is close.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a studio whose `agents.executors` is `executors` (YAML indented
    /// under it), with no role files.
    fn check_executors(executors: &str) -> (tempfile::TempDir, Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
        let text = format!("agents:\n  paths: []\n  executors:\n{executors}");
        let file = dir.path().join("concierto.yaml");
        std::fs::write(&file, text).expect("write");
        let checked = check_with_env(&file, Vec::new());
        (dir, checked)
    }

    fn errors(c: &Checked) -> Vec<String> {
        c.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(ToString::to_string)
            .collect()
    }

    fn executor<'a>(c: &'a Checked, name: &str) -> &'a ExecutorDef {
        let studio = c.studio.as_ref().unwrap_or_else(|| {
            panic!("the studio should load: {:?}", errors(c));
        });
        &studio.agents.executors[name]
    }

    fn check_text(text: &str) -> (tempfile::TempDir, Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("concierto.yaml");
        let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
        std::fs::write(
            &file,
            format!("agents:\n  paths: [\"{}\"]\n{text}", agents.display()),
        )
        .expect("write");
        let checked = check_with_env(&file, Vec::new());
        (dir, checked)
    }

    #[test]
    fn allow_hosts_and_observability_keys() {
        let (_d, c) = check_text(
            "server:
  metrics_addr: \"\"
  otlp_endpoint: http://jaeger:4317
  log_format: json
content_sources:
  external_inspiration:
    - gallery:
        type: web_scraper
        url: https://gallery.example/feed
        processor: studio-orchestrator
        allow_hosts: [CDN.gallery.example, images.example.net]
",
        );
        let studio = c
            .studio
            .as_ref()
            .unwrap_or_else(|| panic!("loads: {:?}", errors(&c)));
        assert_eq!(
            studio.content_sources[0].allow_hosts,
            ["cdn.gallery.example", "images.example.net"]
        );
        assert_eq!(studio.server.metrics_addr, "");
        assert_eq!(studio.server.otlp_endpoint, "http://jaeger:4317");
        assert_eq!(studio.server.log_format, LogFormat::Json);

        let (_d, c) = check_text(
            "server:
  metrics_addr: nowhere
  otlp_endpoint: jaeger:4317
  log_format: xml
content_sources:
  external_inspiration:
    - gallery:
        type: web_scraper
        url: https://gallery.example/feed
        processor: studio-orchestrator
        allow_hosts: [\"https://cdn.example/x\"]
  curated_databases:
    - assets: { type: image_database, path: /tmp, indexer: studio-orchestrator, allow_hosts: [a.example] }
",
        );
        let e = errors(&c).join("\n");
        for needle in [
            "server.metrics_addr",
            "server.otlp_endpoint",
            "server.log_format",
            "allow_hosts: \"https://cdn.example/x\" is not a host name",
            "allow_hosts does not apply",
        ] {
            assert!(e.contains(needle), "{needle} in {e}");
        }
    }

    #[test]
    fn library_public_secure_cookies_and_private_networks_are_checked() {
        let (_d, c) = check_text("server: { library_public: true }\n");
        let studio = c.studio.as_ref().expect("loads");
        assert!(studio.server.library_public);
        assert!(!studio.server.dashboard_secure_cookies);
        let (_d, c) = check_text(
            "content_sources:
  external_inspiration:
    - lan:
        type: web_scraper
        url: http://10.0.0.5/feed
        processor: studio-orchestrator
        allow_private_networks: true
",
        );
        let studio = c.studio.as_ref().expect("loads");
        assert!(studio.content_sources[0].allow_private_networks);
        assert!(
            !studio.server.library_public,
            "reads need a token by default"
        );

        let (_d, c) = check_text(
            "server:
  library_public: yes please
  dashboard_secure_cookies: 1
content_sources:
  curated_databases:
    - assets: { type: image_database, path: /tmp, indexer: studio-orchestrator, allow_private_networks: true }
",
        );
        let e = errors(&c).join("\n");
        for needle in [
            "concierto.yaml:4: error: server.library_public: must be true or false",
            "concierto.yaml:5: error: server.dashboard_secure_cookies: must be true or false",
            "concierto.yaml:8: error: content_sources.curated_databases[0].assets.allow_private_networks: only a web_scraper source",
        ] {
            assert!(e.contains(needle), "{needle} in {e}");
        }
    }

    #[test]
    fn executor_keys_parse_with_their_defaults() {
        let (dir, c) = check_executors(
            "    gpt:
      kind: openai
      model: gpt-4o-mini
      api_key_env: OPENAI_API_KEY
      max_tokens: 800
      max_retries: 5
      timeout: 30 seconds
      prices: { input_per_mtok: 0.15, output_per_mtok: 0.6 }
    claude: { kind: anthropic, model: claude-sonnet-4-5, api_key_env: ANTHROPIC_API_KEY }
    local: { kind: openai, base_url: \"http://127.0.0.1:11434/v1\", model: llama3.1 }
    tool:
      kind: command
      command: [\"./scripts/agent.sh\", \"--json\"]
      max_output_bytes: 4096
      working_dir: scripts
      env: { AGENT_MODE: fast, Depth: 3 }
    plain: { kind: command, command: agent }
",
        );
        assert!(errors(&c).is_empty(), "{:?}", errors(&c));
        let gpt = executor(&c, "gpt");
        assert_eq!(gpt.kind, ExecutorKind::OpenAi);
        assert_eq!(gpt.base_url.as_deref(), Some("https://api.openai.com/v1"));
        assert_eq!(gpt.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(gpt.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(gpt.max_tokens, Some(800));
        assert_eq!(gpt.max_retries, 5);
        assert_eq!(gpt.timeout, Duration::from_secs(30));
        let prices = gpt.prices.expect("prices");
        assert_eq!(prices.input_per_mtok, 0.15);
        assert_eq!(prices.output_per_mtok, 0.6);
        assert!((prices.cost_usd(1_000_000, 2_000_000) - 1.35).abs() < 1e-9);

        let claude = executor(&c, "claude");
        assert_eq!(
            claude.base_url.as_deref(),
            Some("https://api.anthropic.com")
        );
        assert_eq!(claude.max_tokens, Some(4096));
        assert_eq!(claude.max_retries, 3);
        assert_eq!(claude.timeout, Duration::from_secs(120));
        assert_eq!(claude.prices, None);

        let local = executor(&c, "local");
        assert_eq!(local.base_url.as_deref(), Some("http://127.0.0.1:11434/v1"));
        assert_eq!(local.api_key_env, None);
        assert_eq!(local.max_tokens, None);

        let tool = executor(&c, "tool");
        assert_eq!(tool.command, ["./scripts/agent.sh", "--json"]);
        assert_eq!(tool.max_output_bytes, 4096);
        assert_eq!(tool.timeout, Duration::from_secs(300));
        assert_eq!(tool.base_url, None);
        let wd = tool.working_dir.as_ref().expect("working_dir");
        assert!(wd.is_absolute(), "{}", wd.display());
        assert_eq!(
            wd.canonicalize().expect("canonical"),
            dir.path()
                .join("scripts")
                .canonicalize()
                .expect("canonical")
        );
        assert_eq!(
            tool.env.iter().collect::<Vec<_>>(),
            [
                (&"AGENT_MODE".to_string(), &"fast".to_string()),
                (&"Depth".to_string(), &"3".to_string())
            ]
        );
        let plain = executor(&c, "plain");
        assert_eq!(plain.command, ["agent"]);
        assert_eq!(plain.max_output_bytes, 1024 * 1024);
        assert_eq!(plain.working_dir, None);
        assert!(executor(&c, "builtin").kind == ExecutorKind::Builtin);
    }

    #[test]
    fn keys_of_another_kind_are_warned_about() {
        let (_dir, c) = check_executors(
            "    gpt: { kind: openai, model: m, max_output_bytes: 10, command: [x] }\n",
        );
        assert!(errors(&c).is_empty(), "{:?}", errors(&c));
        let warnings: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        for key in ["max_output_bytes", "command"] {
            assert!(
                warnings.iter().any(|w| w.contains(&format!(
                    "agents.executors.gpt.{key}: `{key}` is not used by openai executors"
                ))),
                "{warnings:?}"
            );
        }
    }

    #[test]
    fn bad_prices_are_errors_with_their_key_and_line() {
        let (_dir, c) = check_executors(
            "    a:
      kind: openai
      model: m
      prices: { input_per_mtok: -1, output_per_mtok: cheap }
    b:
      kind: anthropic
      model: m
      prices: { input_per_mtok: 3, per_call: 1 }
    c: { kind: openai, model: m, prices: 5 }
",
        );
        assert!(c.studio.is_none());
        let e = errors(&c);
        let has = |needle: &str| e.iter().any(|p| p.contains(needle));
        assert!(
            has(":7: error: agents.executors.a.prices.input_per_mtok: must be a price ≥ 0"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.a.prices.output_per_mtok: must be a number, found text"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.b.prices: `output_per_mtok` is required"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.b.prices.per_call: unknown key `per_call`"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.c.prices: must be a map of keys, found a number"),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let (_dir, c) = check_executors(
            "    a: { kind: openai, model: m, temperature: 0.2 }
    b: { kind: openai, model: m, api_key_env: \"sk-live-123 456\" }
    c: { kind: openai, model: m, base_url: \"api.example.com\" }
    d: { kind: anthropic, model: m, max_tokens: 0, max_retries: -1 }
    e: { kind: command, command: [x], max_output_bytes: 0, timeout: 0s }
    f: { kind: command, command: [x], env: { \"1BAD\": x, OK: [1] } }
",
        );
        assert!(c.studio.is_none());
        let e = errors(&c);
        let has = |needle: &str| e.iter().any(|p| p.contains(needle));
        assert!(
            has(
                "agents.executors.a.temperature: unknown key `temperature`; expected one of: kind, base_url"
            ),
            "{e:?}"
        );
        assert!(
            has("agents.executors.b.api_key_env: names the environment variable"),
            "{e:?}"
        );
        assert!(
            !e.iter().any(|p| p.contains("sk-live")),
            "the value of api_key_env is never echoed: {e:?}"
        );
        assert!(
            has(
                "agents.executors.c.base_url: \"api.example.com\" is not an http:// or https:// URL"
            ),
            "{e:?}"
        );
        assert!(
            has("agents.executors.d.max_tokens: must be at least 1"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.d.max_retries: must be a whole number ≥ 0"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.e.max_output_bytes: must be at least 1"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.e.timeout: must be longer than zero"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.f.env.1BAD: is not an environment variable name"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.f.env.OK: must be text, found a list"),
            "{e:?}"
        );
    }

    #[test]
    fn a_command_executor_needs_a_command() {
        let (_dir, c) = check_executors(
            "    a: { kind: command }
    b: { kind: command, command: [] }
    c: { kind: command, command: \"\" }
",
        );
        assert!(c.studio.is_none());
        let e = errors(&c);
        let has = |needle: &str| e.iter().any(|p| p.contains(needle));
        assert!(has("agents.executors.a: `command` is required"), "{e:?}");
        assert!(
            has("agents.executors.b.command: must name the program to run"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.c.command: must name the program to run"),
            "{e:?}"
        );
    }

    #[test]
    fn a_command_env_list_names_what_is_passed_on_from_the_agent() {
        let (_dir, c) = check_executors(
            "    a: { kind: command, command: [x], env: [HTTP_PROXY, LANGUAGE, HTTP_PROXY] }
    b: { kind: command, command: [x], env: { MODE: fast, PASSED: ~ } }
",
        );
        let a = executor(&c, "a");
        assert_eq!(a.pass_env, ["HTTP_PROXY", "LANGUAGE"]);
        assert!(a.env.is_empty());
        let b = executor(&c, "b");
        assert_eq!(b.pass_env, ["PASSED"]);
        assert_eq!(b.env.get("MODE").map(String::as_str), Some("fast"));

        let (_dir, c) = check_executors(
            "    c:\n      kind: command\n      command: [x]\n      env: [OK, \"2BAD\", 3]\n",
        );
        assert!(c.studio.is_none());
        let e = errors(&c);
        let has = |needle: &str| e.iter().any(|p| p.contains(needle));
        assert!(
            has(":7: error: agents.executors.c.env[1]: is not an environment variable name"),
            "{e:?}"
        );
        assert!(
            has("agents.executors.c.env[2]: must be text, found a number"),
            "{e:?}"
        );
    }

    /// Checks a studio whose `server.feedback` is `feedback` (YAML indented
    /// under it).
    fn check_feedback(feedback: &str) -> Checked {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("agents:\n  paths: []\nserver:\n  feedback:\n{feedback}");
        let file = dir.path().join("concierto.yaml");
        std::fs::write(&file, text).expect("write");
        check_with_env(&file, Vec::new())
    }

    #[test]
    fn feedback_slack_notifier_keys_parse_with_their_defaults() {
        let defaults = check_feedback("    max_body_bytes: 2048\n");
        assert!(errors(&defaults).is_empty(), "{:?}", errors(&defaults));
        let f = &defaults.studio.as_ref().expect("studio").server.feedback;
        assert_eq!(f.slack_bot_token_env, "SLACK_BOT_TOKEN");
        assert_eq!(f.slack_api_base, "https://slack.com/api");

        let set = check_feedback(
            "    slack_bot_token_env: STUDIO_SLACK_BOT\n    slack_api_base: \"http://127.0.0.1:9/api/\"\n",
        );
        assert!(errors(&set).is_empty(), "{:?}", errors(&set));
        let f = &set.studio.as_ref().expect("studio").server.feedback;
        assert_eq!(f.slack_bot_token_env, "STUDIO_SLACK_BOT");
        assert_eq!(
            f.slack_api_base, "http://127.0.0.1:9/api",
            "the trailing / is dropped"
        );

        let bad = check_feedback(
            "    slack_bot_token_env: \"xoxb-1234-secret\"\n    slack_api_base: slack.com/api\n",
        );
        let e = errors(&bad);
        assert!(
            e.iter()
                .any(|p| p.contains("server.feedback.slack_bot_token_env")
                    && p.contains("not an environment variable name")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|p| p.contains("server.feedback.slack_api_base")
                    && p.contains("not an http:// or https:// URL")),
            "{e:?}"
        );
    }

    #[test]
    fn feedback_form_limits_parse_with_their_defaults() {
        let defaults = check_feedback("    max_body_bytes: 2048\n");
        assert!(
            !defaults
                .problems
                .iter()
                .any(|p| p.to_string().contains("form_")),
            "no warning about a key that is not there: {:?}",
            defaults.problems
        );
        let f = &defaults.studio.as_ref().expect("studio").server.feedback;
        assert_eq!(
            (
                f.form_max_body_bytes,
                f.form_per_client_per_minute,
                f.form_per_minute
            ),
            (64 * 1024, 10, 60)
        );
        let set = check_feedback(
            "    form_max_body_bytes: 16384\n    form_per_client_per_minute: 3\n    form_per_minute: 30\n",
        );
        assert!(errors(&set).is_empty(), "{:?}", errors(&set));
        let f = &set.studio.as_ref().expect("studio").server.feedback;
        assert_eq!(
            (
                f.form_max_body_bytes,
                f.form_per_client_per_minute,
                f.form_per_minute
            ),
            (16384, 3, 30)
        );
        let bad = check_feedback(
            "    form_max_body_bytes: 100\n    form_per_client_per_minute: 0\n    form_per_minute: lots\n",
        );
        let e = errors(&bad);
        let has = |needle: &str| e.iter().any(|p| p.contains(needle));
        assert!(
            has(":5: error: server.feedback.form_max_body_bytes: must be at least 1024"),
            "{e:?}"
        );
        assert!(
            has(
                ":6: error: server.feedback.form_per_client_per_minute: must be a number of posts per minute"
            ),
            "{e:?}"
        );
        assert!(
            has(":7: error: server.feedback.form_per_minute: must be a whole number"),
            "{e:?}"
        );
    }

    /// Checks a studio whose `server.bus` is `bus` (YAML indented under it),
    /// with `pem` written beside the studio file.
    fn check_bus(bus: &str) -> (tempfile::TempDir, Checked) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), "pem").expect("write");
        std::fs::write(dir.path().join("nats.creds"), "creds").expect("write");
        let text = format!("agents:\n  paths: []\nserver:\n  bus:\n{bus}");
        let file = dir.path().join("concierto.yaml");
        std::fs::write(&file, text).expect("write");
        let checked = check_with_env(&file, Vec::new());
        (dir, checked)
    }

    #[test]
    fn bus_credentials_and_tls_keys_parse_with_their_defaults() {
        let (_d, c) = check_bus("    max_deliver: 3\n");
        assert!(errors(&c).is_empty(), "{:?}", errors(&c));
        let b = &c.studio.as_ref().expect("studio").server.bus;
        assert_eq!(b.auth, BusAuth::default());
        assert_eq!(b.auth.password_env, "CONCIERTO_NATS_PASSWORD");
        assert_eq!(b.auth.token_env, "CONCIERTO_NATS_TOKEN");
        assert_eq!(b.auth.nkey_seed_env, "CONCIERTO_NATS_NKEY_SEED");
        assert!(b.tls.is_none());

        let (d, c) = check_bus(
            "    user: orchestrator\n    password_env: ORCH_NATS_PASSWORD\n    tls: { ca: ca.pem }\n",
        );
        assert!(errors(&c).is_empty(), "{:?}", errors(&c));
        let b = &c.studio.as_ref().expect("studio").server.bus;
        assert_eq!(b.auth.user.as_deref(), Some("orchestrator"));
        assert_eq!(b.auth.password_env, "ORCH_NATS_PASSWORD");
        let tls = b.tls.as_ref().expect("tls");
        assert_eq!(tls.ca.as_deref(), Some(d.path().join("ca.pem").as_path()));
        assert!(tls.required, "required by default once tls is given");
        assert!(tls.cert.is_none() && tls.key.is_none());

        let (d, c) = check_bus("    creds_file: nats.creds\n    tls: { required: false }\n");
        assert!(errors(&c).is_empty(), "{:?}", errors(&c));
        let b = &c.studio.as_ref().expect("studio").server.bus;
        assert_eq!(
            b.auth.creds_file.as_deref(),
            Some(d.path().join("nats.creds").as_path())
        );
        assert!(!b.tls.as_ref().expect("tls").required);
    }

    #[test]
    fn bad_bus_credentials_and_tls_are_errors_with_their_key_and_line() {
        let (_d, c) = check_bus(
            "    user: \"my user\"\n    password_env: \"s3cr3t-pa55!\"\n    token_env: NATS_TOKEN\n    creds_file: missing.creds\n    tls:\n      cert: ca.pem\n      required: maybe\n      verify: yes\n",
        );
        let e = errors(&c);
        let has = |key: &str, what: &str| {
            assert!(
                e.iter().any(|p| p.contains(key) && p.contains(what)),
                "no {key}: {what} in {e:?}"
            );
        };
        has(
            "concierto.yaml:5: error: server.bus.user",
            "not a NATS user name",
        );
        has(
            "concierto.yaml:6: error: server.bus.password_env",
            "not an environment variable name",
        );
        has("server.bus.token_env", "two ways to log in to NATS");
        has("server.bus.creds_file", "missing.creds is not a file");
        has("server.bus.tls.required", "must be true or false");
        has("server.bus.tls.verify", "unknown key `verify`");
        has("server.bus.tls", "`cert` needs its `key`");
        assert!(
            !e.iter().any(|p| p.contains("s3cr3t-pa55!")),
            "a secret put where a variable name goes is not repeated: {e:?}"
        );

        let (_d, c) = check_bus("    nkey_seed_env: SEED\n    nkey_seed_file: nats.creds\n");
        let e = errors(&c);
        assert!(
            e.iter()
                .any(|p| p.contains("server.bus.nkey_seed_file") && p.contains("keep one")),
            "{e:?}"
        );
    }

    #[test]
    fn a_nats_url_with_credentials_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("concierto.yaml");
        std::fs::write(
            &file,
            "agents:\n  paths: []\nserver:\n  nats_url: \"nats://admin:hunter2@nats:4222\"\n",
        )
        .expect("write");
        let c = check_with_env(&file, Vec::new());
        let warned: Vec<String> = c
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .map(ToString::to_string)
            .collect();
        assert!(
            warned
                .iter()
                .any(|p| p.contains("server.nats_url") && p.contains("carries credentials")),
            "{warned:?}"
        );
        assert!(!warned.iter().any(|p| p.contains("hunter2")), "{warned:?}");
        assert!(nats_url_has_credentials("nats://a:4222,tls://tok@b:4222"));
        assert!(!nats_url_has_credentials(
            "nats://nats:4222,nats://other:4222/x@y"
        ));
    }
}
