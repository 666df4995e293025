//! `concierto studio reload`: apply the studio file to every running service
//! without a restart, over the admin API (role `admin`).

use clap::Subcommand;
use serde_json::json;

use crate::client::{CliError, ConnArgs};
use concierto_proto::v1;

/// The running studio.
#[derive(Debug, Subcommand)]
pub enum StudioCmd {
    /// Reread the studio file on the server, validate it and apply it to
    /// every running service; a file with errors is refused with them (exit
    /// status 1) and the running studio is kept. (SIGHUP to a process and
    /// saving the file do the same.)
    Reload {
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `studio` command.
pub async fn studio(conn: &ConnArgs, cmd: StudioCmd) -> Result<(), CliError> {
    let c = conn.connect().await?;
    match cmd {
        StudioCmd::Reload { json } => {
            let r = c
                .unary(
                    c.client
                        .clone()
                        .reload_studio(v1::ReloadStudioRequest::default()),
                )
                .await?;
            if json {
                crate::output::print_json(&json!({
                    "changed": r.changed,
                    "version": r.version,
                    "problems": r.problems,
                }));
            } else if !r.problems.is_empty() {
                eprintln!(
                    "the studio file was refused; version {} keeps running:",
                    r.version
                );
                for p in &r.problems {
                    eprintln!("  {p}");
                }
            } else if r.changed {
                println!(
                    "studio version {} applied to every running service",
                    r.version
                );
            } else {
                println!("no change: version {} is running", r.version);
            }
            if r.problems.is_empty() {
                Ok(())
            } else {
                Err(CliError::Other(format!(
                    "{} problem(s) in the studio file",
                    r.problems.len()
                )))
            }
        }
    }
}
