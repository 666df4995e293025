//! `concierto`: the one binary of Concierto.
//!
//! - `validate FILE`: check a studio, every problem with file, line and key.
//! - `up`: every service in one process on the embedded bus.
//! - `serve <service>... --nats URL`: chosen services against NATS.
//! - `agent --role R --nats URL`: workers for one role against NATS (`--role`
//!   repeated, or `--all-roles --except R`, for several roles in one process).
//! - `probe URL`: one HTTP GET, exit status 0 on 2xx (the image's health check).
//! - `run`, `gate`, `feedback`, `trigger`: the admin API (gRPC) from the command
//!   line, with `--server`, `--token` and `--ca` (or `CONCIERTO_SERVER`,
//!   `CONCIERTO_TOKEN`, `CONCIERTO_CA`).
//! - `agents ls [FILE]`: a studio's roles and how they run; `token new`: a token
//!   for a person and its `token_sha256` line.
//! - `bench`: workflows per second, latency and the NATS floors, measured on
//!   one nats-server with the services as separate processes.
//! - `deploy compose|k8s FILE`: deployment files with a service per agent role.
//! - `completions SHELL`: a completion script for bash, zsh, fish, powershell
//!   or elvish.

/// mimalloc, not glibc's malloc: a busy orchestrator spent a third of its CPU
/// in glibc's allocator (`malloc_consolidate`, `_int_free`), most of it on
/// the store's nodes and the runs' JSON.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_cmds;
mod bench;
mod client;
mod deploy;
mod dlq_cmds;
mod first_run;
mod leased;
mod local_cmds;
mod metrics_ports;
mod observability;
mod output;
mod probe;
mod reload;
mod router_opts;
mod run_list;
mod services;
mod studio_cmds;
mod trigger_cmds;

use std::path::PathBuf;
use std::process::ExitCode;

use admin_cmds::{FeedbackCmd, GateCmd, RunCmd, TriggerCmd};
use clap::{Parser, Subcommand};
use client::{CliError, ConnArgs};
use concierto_core::config::{self, Severity};
use local_cmds::{AgentsCmd, TokenCmd};

/// Concierto runs a studio of AI agents on its own: triggers start workflows,
/// workflows hand tasks to agent roles, reviewers check the work.
#[derive(Debug, Parser)]
#[command(name = "concierto", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a studio file and its role files; report every problem with file,
    /// line and key. Exit status 0 only when there is no error.
    Validate {
        /// The studio file.
        #[arg(default_value = "examples/studio/concierto.yaml")]
        file: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Also print, for every key of the seed's four blocks, what it does at run time.
        #[arg(long)]
        explain: bool,
    },
    /// Run every service of the studio in one process on the embedded bus, with
    /// data under the studio's data folder; Ctrl-C stops it cleanly.
    Up {
        /// The studio file.
        #[arg(default_value = "examples/studio/concierto.yaml")]
        file: PathBuf,
        /// Run on this NATS server instead of the embedded bus (the same services,
        /// one process; other processes and tools can share the bus).
        #[arg(long)]
        nats: Option<String>,
        /// Where services keep their data (default: the studio's `server.data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Log lines as JSON.
        #[arg(long)]
        log_json: bool,
        /// How long a stop (SIGTERM, Ctrl-C) may take: past it, the process names
        /// what did not stop or flush and exits with status 1. A second signal exits
        /// at once.
        #[arg(long, default_value = "8s", value_parser = parse_grace, env = "CONCIERTO_GRACE")]
        grace: std::time::Duration,
        /// When no reviewer of the studio file has a token: make a new
        /// first-run admin token (the old one stops working) and print its
        /// sign-in link.
        #[arg(long)]
        new_token: bool,
    },
    /// Run chosen services (scheduler, orchestrator, admin, feedback, ingest, dashboard) against NATS.
    Serve {
        /// Services to run.
        #[arg(required = true)]
        services: Vec<String>,
        /// NATS URL (default: the studio's `server.nats_url`).
        #[arg(long, env = "CONCIERTO_NATS_URL")]
        nats: Option<String>,
        /// The studio file.
        #[arg(
            long,
            default_value = "examples/studio/concierto.yaml",
            env = "CONCIERTO_STUDIO"
        )]
        file: PathBuf,
        /// Where services keep their data (default: the studio's `server.data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Log lines as JSON.
        #[arg(long)]
        log_json: bool,
        /// How long a stop (SIGTERM, Ctrl-C) may take: past it, the process names
        /// what did not stop or flush and exits with status 1. A second signal exits
        /// at once.
        #[arg(long, default_value = "8s", value_parser = parse_grace, env = "CONCIERTO_GRACE")]
        grace: std::time::Duration,
    },
    /// Run workers for agent roles against NATS; SIGTERM drains them.
    Agent {
        /// A role (repeat, or separate with commas, for several).
        #[arg(long, value_delimiter = ',', required_unless_present = "all_roles")]
        role: Vec<String>,
        /// Every role of the studio (less those named by `--except`).
        #[arg(long, conflicts_with = "role")]
        all_roles: bool,
        /// With `--all-roles`: roles left to other processes (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', requires = "all_roles")]
        except: Vec<String>,
        /// Workers per role in this process.
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Worker id prefix (default: the process id).
        #[arg(long)]
        id: Option<String>,
        /// NATS URL (default: the studio's `server.nats_url`).
        #[arg(long, env = "CONCIERTO_NATS_URL")]
        nats: Option<String>,
        /// The studio file.
        #[arg(
            long,
            default_value = "examples/studio/concierto.yaml",
            env = "CONCIERTO_STUDIO"
        )]
        file: PathBuf,
        /// Log lines as JSON.
        #[arg(long)]
        log_json: bool,
        /// How long a stop (SIGTERM, Ctrl-C) may take: past it, the process names
        /// what did not stop or flush and exits with status 1. A second signal exits
        /// at once.
        #[arg(long, default_value = "8s", value_parser = parse_grace, env = "CONCIERTO_GRACE")]
        grace: std::time::Duration,
    },
    /// Runs: list, show, start, cancel, watch (admin API).
    Run {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: RunCmd,
    },
    /// Quality gates: list, show, approve, reject, request changes, watch (admin API).
    Gate {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: GateCmd,
    },
    /// Feedback from people: submit, list (admin API).
    Feedback {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: FeedbackCmd,
    },
    /// Triggers: list, fire now (admin API).
    Trigger {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: TriggerCmd,
    },
    /// Dead letters: list, replay (admin API).
    Dlq {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: dlq_cmds::DlqCmd,
    },
    /// The running studio: reload its file without a restart (admin API).
    Studio {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        cmd: studio_cmds::StudioCmd,
    },
    /// A studio's agent roles and how they run (no server needed).
    Agents {
        #[command(subcommand)]
        cmd: AgentsCmd,
    },
    /// Admin API tokens (no server needed).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Serve Concierto's own tools (library_search, metrics_get, runs_recent,
    /// brand_check) as a Model Context Protocol server on stdin/stdout, for an
    /// MCP-capable agent CLI run by a `command` executor. Logs go to stderr.
    Mcp {
        /// NATS URL (default: the studio's `server.nats_url`).
        #[arg(long, env = "CONCIERTO_NATS_URL")]
        nats: Option<String>,
        /// The studio file.
        #[arg(
            long,
            default_value = "examples/studio/concierto.yaml",
            env = "CONCIERTO_STUDIO"
        )]
        file: PathBuf,
    },
    /// Measure the studio: raw NATS floors, then workflows per second for
    /// each `--sizes` (started at once over the admin API), then one workflow's
    /// latency; the services run as separate processes of this binary on a
    /// generated three-step no-op studio. Prints a table, or JSON with `--json`.
    Bench(bench::BenchArgs),
    /// Deployment files for a studio: `deploy compose FILE` or `deploy k8s
    /// FILE` (one service / Deployment per agent role, with its autoscaler).
    Deploy {
        #[command(subcommand)]
        cmd: deploy::DeployCmd,
    },
    /// Print a shell completion script: `concierto completions bash >
    /// ~/.local/share/bash-completion/completions/concierto` (zsh: a file
    /// `_concierto` on `$fpath`; fish: `~/.config/fish/completions/concierto.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// GET an http:// URL; exit status 0 on a 2xx answer, 1 otherwise (the
    /// container health check: `concierto probe http://127.0.0.1:9464/readyz`).
    Probe {
        /// The URL (plain http://).
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
}

/// `--grace`: a duration such as `8s`, `30 seconds` or `1m`.
fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    concierto_core::grammar::parse_duration(s).map_err(|e| e.to_string())
}

fn init_logs(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate {
            file,
            strict,
            explain,
        } => {
            init_logs("warn", false);
            let code = validate(&file, strict);
            if explain && code == ExitCode::SUCCESS {
                match config::explain::explain_file(&file, chrono::Utc::now()) {
                    Ok(lines) => {
                        for line in lines {
                            println!("{line}");
                        }
                    }
                    Err(problems) => {
                        println!("{problems}");
                        return ExitCode::from(1);
                    }
                }
            }
            code
        }
        Command::Up {
            file,
            nats,
            data,
            log_json,
            grace,
            new_token,
        } => {
            // Logs, traces and metrics start once the studio is read (its `server` section).
            run(async move { services::up(&file, nats, data, log_json, grace, new_token).await })
        }
        Command::Serve {
            services: names,
            nats,
            file,
            data,
            log_json,
            grace,
        } => run(async move { services::serve(&file, &names, nats, data, log_json, grace).await }),
        Command::Agent {
            role,
            all_roles,
            except,
            replicas,
            id,
            nats,
            file,
            log_json,
            grace,
        } => {
            let roles = if all_roles {
                services::AgentRoles::AllExcept(except)
            } else {
                services::AgentRoles::Named(role)
            };
            run(
                async move { services::agent(&file, &roles, replicas, id, nats, log_json, grace).await },
            )
        }
        Command::Run { conn, cmd } => client_command(admin_cmds::run(&conn, cmd)),
        Command::Gate { conn, cmd } => client_command(admin_cmds::gate(&conn, cmd)),
        Command::Feedback { conn, cmd } => client_command(admin_cmds::feedback(&conn, cmd)),
        Command::Trigger { conn, cmd } => client_command(admin_cmds::trigger(&conn, cmd)),
        Command::Dlq { conn, cmd } => client_command(dlq_cmds::dlq(&conn, cmd)),
        Command::Studio { conn, cmd } => client_command(studio_cmds::studio(&conn, cmd)),
        Command::Agents { cmd } => finish(local_cmds::agents(cmd)),
        Command::Token { cmd } => finish(local_cmds::token(cmd)),
        Command::Deploy { cmd } => finish(deploy::deploy(cmd)),
        Command::Bench(args) => {
            init_logs("warn", false);
            run(async move { bench::bench(args).await })
        }
        Command::Mcp { nats, file } => run(async move { services::mcp(&file, nats).await }),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails
            // (a closed pipe).
            let mut script = Vec::new();
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "concierto", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("concierto: completions: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Probe { url, timeout } => {
            let timeout = std::time::Duration::try_from_secs_f64(timeout)
                .unwrap_or(std::time::Duration::from_secs(3));
            match probe::probe(&url, timeout) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("concierto: probe {url}: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Runs a client command on a small tokio runtime (no actors here).
fn client_command(fut: impl std::future::Future<Output = Result<(), CliError>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concierto: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    finish(rt.block_on(fut))
}

/// `concierto: <error>` on stderr and its exit status.
fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concierto: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs `fut` inside an actix System on a multi-threaded tokio runtime (actors
/// need the System; tonic, axum and async-nats need tokio).
fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concierto: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let system = actix::System::with_tokio_rt(move || rt);
    match system.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concierto: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn validate(file: &std::path::Path, strict: bool) -> ExitCode {
    let checked = config::check(file);
    let mut errors = 0;
    let mut warnings = 0;
    for p in &checked.problems {
        match p.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
        }
        println!("{p}");
    }
    let failed = errors > 0 || (strict && warnings > 0);
    match (&checked.studio, failed) {
        (Some(s), false) => {
            println!(
                "{}: ok — {} roles, {} triggers, {} workflows, {} review loops, {} quality gates, {} content sources, {} metrics{}",
                file.display(),
                s.roles.len(),
                s.triggers.len(),
                s.workflows.len(),
                s.feedback_loops.agent_to_agent.len(),
                s.feedback_loops.quality_gates.len(),
                s.content_sources.len(),
                s.progress_metrics.len(),
                if warnings > 0 {
                    format!(", {warnings} warning(s)")
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        _ => {
            println!(
                "{}: {errors} error(s), {warnings} warning(s)",
                file.display()
            );
            ExitCode::from(1)
        }
    }
}
