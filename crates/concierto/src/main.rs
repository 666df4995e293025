//! `concierto`: the one binary of Concierto.
//!
//! - `validate FILE`: check a studio, every problem with file, line and key.
//! - `up`: every service in one process on the embedded bus.
//! - `serve <service>... --nats URL`: chosen services against NATS.
//! - `agent --role R --nats URL`: workers for one role against NATS.
//!
//! The admin client commands come with the admin API.

mod services;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use concierto_core::config::{self, Severity};

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
    },
    /// Run every service of the studio in one process on the embedded bus, with
    /// data under the studio's data folder; Ctrl-C stops it cleanly.
    Up {
        /// The studio file.
        #[arg(default_value = "examples/studio/concierto.yaml")]
        file: PathBuf,
        /// Where services keep their data (default: the studio's `server.data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Log lines as JSON.
        #[arg(long)]
        log_json: bool,
    },
    /// Run chosen services (scheduler, orchestrator) against NATS.
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
    },
    /// Run workers for one agent role against NATS; SIGTERM drains them.
    Agent {
        /// The role.
        #[arg(long)]
        role: String,
        /// Workers in this process.
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
    },
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
        Command::Validate { file, strict } => {
            init_logs("warn", false);
            validate(&file, strict)
        }
        Command::Up {
            file,
            data,
            log_json,
        } => {
            init_logs("info", log_json);
            run(async move { services::up(&file, data).await })
        }
        Command::Serve {
            services: names,
            nats,
            file,
            data,
            log_json,
        } => {
            init_logs("info", log_json);
            run(async move { services::serve(&file, &names, nats, data).await })
        }
        Command::Agent {
            role,
            replicas,
            id,
            nats,
            file,
            log_json,
        } => {
            init_logs("info", log_json);
            run(async move { services::agent(&file, &role, replicas, id, nats).await })
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
