//! `concierto dlq ls|replay`: what the bus gave up on, over the admin API.

use clap::Subcommand;
use concierto_proto::v1;
use serde_json::{Value, json};

use crate::client::{CliError, ConnArgs};
use crate::output::{self, Table, Zone, trunc, when};

/// Dead letters: list, replay.
#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Dead letters, oldest first (every page followed).
    Ls {
        /// Only letters whose original subject starts with this (e.g. `run.start`, `task.`).
        #[arg(long, default_value = "")]
        subject: String,
        /// Print them as JSON (payloads base64).
        #[arg(long)]
        json: bool,
    },
    /// Publish a dead letter's message again on its subject and remove the
    /// letter (admin role).
    Replay {
        /// The letter's sequence (first column of `dlq ls`).
        sequence: u64,
    },
}

fn letter_json(e: &v1::DeadLetterEntry, z: Zone) -> Value {
    use base64::Engine as _;
    let l = e.letter.clone().unwrap_or_default();
    json!({
        "sequence": e.sequence,
        "subject": l.subject,
        "reason": l.reason,
        "deliveries": l.deliveries,
        "consumer": l.consumer,
        "expected_type": l.expected_type,
        "headers": l.headers,
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&l.payload),
        "dead_lettered_at": output::rfc3339(l.dead_lettered_at.as_ref(), z),
    })
}

/// Runs a `dlq` command.
pub async fn dlq(conn: &ConnArgs, cmd: DlqCmd) -> Result<(), CliError> {
    let c = conn.connect().await?;
    let z = c.zone;
    match cmd {
        DlqCmd::Ls { subject, json } => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let r = c
                    .unary(
                        c.client
                            .clone()
                            .list_dead_letters(v1::ListDeadLettersRequest {
                                subject_prefix: subject.clone(),
                                page_size: 200,
                                page_token: token.clone(),
                            }),
                    )
                    .await?;
                all.extend(r.dead_letters);
                if r.next_page_token.is_empty() || all.len() >= 10_000 {
                    break;
                }
                token = r.next_page_token;
            }
            if json {
                output::print_json(&Value::Array(
                    all.iter().map(|e| letter_json(e, z)).collect(),
                ));
            } else if all.is_empty() {
                println!("no dead letters");
            } else {
                let mut t = Table::new(&["SEQ", "SUBJECT", "DELIVERIES", "WHEN", "REASON"]);
                for e in &all {
                    let l = e.letter.clone().unwrap_or_default();
                    t.row(vec![
                        e.sequence.to_string(),
                        l.subject,
                        l.deliveries.to_string(),
                        when(l.dead_lettered_at.as_ref(), z),
                        trunc(&l.reason, 80),
                    ]);
                }
                print!("{}", t.render());
            }
        }
        DlqCmd::Replay { sequence } => {
            let r = c
                .unary(
                    c.client
                        .clone()
                        .replay_dead_letter(v1::ReplayDeadLetterRequest { sequence }),
                )
                .await?;
            if r.stream.is_empty() {
                println!("dead letter {sequence} published again on {}", r.subject);
            } else {
                println!(
                    "dead letter {sequence} published again on {} (stored in {})",
                    r.subject, r.stream
                );
            }
        }
    }
    Ok(())
}
