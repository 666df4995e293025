//! `concierto trigger ls|fire|pause|resume`: the studio's triggers over the
//! admin API.

use clap::Subcommand;
use concierto_proto::v1;
use serde_json::Value;

use crate::admin_cmds::{PriorityArg, priority};
use crate::client::{CliError, ConnArgs};
use crate::output::{self, Table, or_dash, trunc, when};

/// `concierto trigger ...`.
#[derive(Debug, Subcommand)]
pub enum TriggerCmd {
    /// Configured triggers with their next and last fire, and whether paused.
    Ls {
        /// Print the triggers as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fire a trigger now (admin role); prints the run it started.
    Fire {
        /// The trigger's name.
        name: String,
        /// Priority (default: the trigger's).
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
    },
    /// Stop a trigger from firing on its schedule or events until resumed
    /// (admin role); kept across restarts. `trigger fire` still fires it.
    Pause {
        /// The trigger's name.
        name: String,
    },
    /// Let a paused trigger fire again (admin role); fires that fell due while
    /// paused are skipped, its schedule goes on from now.
    Resume {
        /// The trigger's name.
        name: String,
    },
}

/// `concierto trigger ...`.
pub async fn trigger(conn: &ConnArgs, cmd: TriggerCmd) -> Result<(), CliError> {
    let c = conn.connect().await?;
    let z = c.zone;
    match cmd {
        TriggerCmd::Ls { json } => {
            let r = c
                .unary(c.client.clone().list_triggers(v1::ListTriggersRequest {}))
                .await?;
            if json {
                output::print_json(&Value::Array(
                    r.triggers
                        .iter()
                        .map(|t| output::trigger_json(t, z))
                        .collect(),
                ));
            } else if r.triggers.is_empty() {
                println!("no triggers");
            } else {
                let mut t = Table::new(&[
                    "TRIGGER",
                    "KIND",
                    "SPEC",
                    "WORKFLOW",
                    "TIMEZONE",
                    "STATE",
                    "NEXT FIRE",
                    "LAST FIRE",
                    "FIRES",
                    "MISSED",
                ]);
                for tr in &r.triggers {
                    t.row(vec![
                        tr.name.clone(),
                        tr.kind.clone(),
                        trunc(&tr.spec, 40),
                        tr.workflow.clone(),
                        or_dash(&tr.timezone),
                        trigger_state(tr),
                        when(tr.next_fire.as_ref(), z),
                        when(tr.last_fire.as_ref(), z),
                        tr.fires.to_string(),
                        tr.missed.to_string(),
                    ]);
                }
                print!("{}", t.render());
                if r.triggers.iter().any(|t| t.paused) {
                    println!("paused triggers do not fire until `concierto trigger resume <name>`");
                }
            }
        }
        TriggerCmd::Fire { name, priority: p } => {
            let r = c
                .unary(c.client.clone().fire_trigger(v1::FireTriggerRequest {
                    name,
                    priority: priority(p),
                }))
                .await?;
            println!("{}", r.run_id);
        }
        TriggerCmd::Pause { name } => {
            let r = c
                .unary(c.client.clone().pause_trigger(v1::PauseTriggerRequest {
                    name: name.clone(),
                    ..Default::default()
                }))
                .await?;
            let t = r.trigger.unwrap_or_default();
            println!(
                "{name}: paused by {} at {}",
                or_dash(&t.paused_by),
                when(t.paused_at.as_ref(), z)
            );
        }
        TriggerCmd::Resume { name } => {
            let r = c
                .unary(
                    c.client
                        .clone()
                        .resume_trigger(v1::ResumeTriggerRequest { name: name.clone() }),
                )
                .await?;
            let t = r.trigger.unwrap_or_default();
            println!(
                "{name}: resumed; next fire {}",
                when(t.next_fire.as_ref(), z)
            );
        }
    }
    Ok(())
}

/// `PAUSED by <who>` or `active`.
fn trigger_state(t: &v1::Trigger) -> String {
    if t.paused {
        format!("PAUSED by {}", or_dash(&t.paused_by))
    } else {
        "active".to_string()
    }
}
