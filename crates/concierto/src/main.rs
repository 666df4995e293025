//! `concierto`: the one binary of Concierto.
//!
//! Today it validates a studio (`concierto validate FILE`). Running the studio
//! (`up`, `serve`, `agent`) and the admin client commands come with their issues;
//! until then those commands say so and exit with status 2.

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
    /// Run every service of the studio in one process (not built yet).
    Up {
        /// The studio file.
        #[arg(default_value = "examples/studio/concierto.yaml")]
        file: PathBuf,
    },
    /// Run chosen services against NATS (not built yet).
    Serve {
        /// Services to run.
        services: Vec<String>,
        /// NATS URL.
        #[arg(long, env = "CONCIERTO_NATS_URL")]
        nats: Option<String>,
    },
    /// Run a worker for one agent role (not built yet).
    Agent {
        /// The role.
        #[arg(long)]
        role: String,
        /// NATS URL.
        #[arg(long, env = "CONCIERTO_NATS_URL")]
        nats: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file, strict } => validate(&file, strict),
        Command::Up { .. } => not_built("up"),
        Command::Serve { .. } => not_built("serve"),
        Command::Agent { .. } => not_built("agent"),
    }
}

fn not_built(command: &str) -> ExitCode {
    eprintln!(
        "concierto {command}: not built yet. The scheduler, orchestrator and agent workers land \
         with the autonomous-loop issue; today `concierto validate FILE` checks a studio."
    );
    ExitCode::from(2)
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
