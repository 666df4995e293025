//! Commands that need no server: `agents ls` (the roles a studio defines and
//! how they run) and `token new` (a token for a person, and the line the studio
//! file gets).

use std::path::Path;

use clap::Subcommand;
use concierto_core::config::{self, ExecutorKind, Severity, Studio};
use serde_json::{Value, json};

use crate::client::CliError;
use crate::output::{self, Table, trunc};

/// `concierto agents ...`.
#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Every role of a studio: executor, model, replicas, role file, description.
    Ls {
        /// The studio file.
        #[arg(default_value = "examples/studio/concierto.yaml")]
        file: std::path::PathBuf,
        /// Print the roles as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `concierto token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Print a new random token and the `token_sha256` line for the studio file.
    New,
}

/// How one role runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRow {
    /// The role.
    pub role: String,
    /// The configured executor's name.
    pub executor: String,
    /// Its kind (`builtin`, `openai`, `anthropic`, `command`).
    pub kind: String,
    /// The model it uses for the role (empty when none).
    pub model: String,
    /// Worker replicas (`agents.roles.<r>.replicas`, default 1).
    pub replicas: u32,
    /// The role file, relative to the studio's folder when inside it.
    pub file: String,
    /// The role's description.
    pub description: String,
}

/// The executor name a studio gives `role`: `agents.roles.<role>.executor`, else
/// the role file's `executor`, else `agents.default_executor`. The same order as
/// `concierto_agent::executor_for`, which does not expose the name alone.
/// Every role of `studio`, in the order the role files define them.
pub fn role_rows(studio: &Studio) -> Vec<RoleRow> {
    studio
        .roles
        .iter()
        .map(|(name, def)| {
            let executor = concierto_agent::executor_name(studio, name);
            let exec_def = concierto_agent::executor_def(studio, &executor);
            let (kind, model) = match &exec_def {
                Some(d) if d.kind == ExecutorKind::Builtin => (
                    d.kind.as_str().to_string(),
                    concierto_agent::builtin::BUILTIN_MODEL.to_string(),
                ),
                Some(d) => (
                    d.kind.as_str().to_string(),
                    concierto_agent::model_for(d, def),
                ),
                None => ("?".to_string(), String::new()),
            };
            let file = def
                .file
                .strip_prefix(&studio.base_dir)
                .unwrap_or(&def.file)
                .display()
                .to_string();
            RoleRow {
                role: name.clone(),
                executor,
                kind,
                model,
                replicas: studio
                    .agents
                    .roles
                    .get(name)
                    .and_then(|s| s.replicas)
                    .unwrap_or(1),
                file,
                description: def.description.clone(),
            }
        })
        .collect()
}

fn role_json(r: &RoleRow) -> Value {
    json!({
        "role": r.role,
        "executor": r.executor,
        "kind": r.kind,
        "model": r.model,
        "replicas": r.replicas,
        "file": r.file,
        "description": r.description,
    })
}

/// Loads a studio; on errors prints every problem (as `validate` does) and fails.
fn load(file: &Path) -> Result<Studio, CliError> {
    let checked = config::check(file);
    match checked.studio {
        Some(s)
            if checked
                .problems
                .iter()
                .all(|p| p.severity != Severity::Error) =>
        {
            Ok(s)
        }
        _ => {
            let errors = checked
                .problems
                .iter()
                .filter(|p| p.severity == Severity::Error)
                .count();
            for p in &checked.problems {
                eprintln!("{p}");
            }
            Err(CliError::Other(format!(
                "{}: {errors} error(s); run `concierto validate {}`",
                file.display(),
                file.display()
            )))
        }
    }
}

/// `concierto agents ...`.
pub fn agents(cmd: AgentsCmd) -> Result<(), CliError> {
    match cmd {
        AgentsCmd::Ls { file, json } => {
            let studio = load(&file)?;
            let rows = role_rows(&studio);
            if json {
                output::print_json(&Value::Array(rows.iter().map(role_json).collect()));
                return Ok(());
            }
            let mut t = Table::new(&[
                "ROLE",
                "EXECUTOR",
                "MODEL",
                "REPLICAS",
                "FILE",
                "DESCRIPTION",
            ]);
            for r in &rows {
                let executor = if r.executor == r.kind {
                    r.executor.clone()
                } else {
                    format!("{} ({})", r.executor, r.kind)
                };
                t.row(vec![
                    r.role.clone(),
                    executor,
                    output::or_dash(&r.model),
                    r.replicas.to_string(),
                    r.file.clone(),
                    trunc(&r.description, 60),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
    }
}

/// A new token: 32 random bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// `concierto token ...`.
pub fn token(cmd: TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::New => {
            let token = new_token();
            println!("token: {token}");
            eprintln!(
                "# give the token to the person; put the next line under their entry in `reviewers`:"
            );
            println!(
                "token_sha256: \"{}\"",
                concierto_admin::token_sha256(&token)
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_characters_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
