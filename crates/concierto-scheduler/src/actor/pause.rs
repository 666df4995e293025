//! The actor's side of a pause or a resume (`scheduler.pause`).
//!
//! A paused trigger does not fire: the tick skips it (its misfire cursor stays where
//! the pause found it), its batch windows wait, and the events that would fire it are
//! acknowledged without a run. A fire by hand still starts a run. The paused state
//! (who, when) is part of the trigger's stored state, written and flushed before the
//! answer, so it survives a restart and a fail-over to another instance on the same
//! store.
//!
//! A resume clears it and handles the trigger's due fires at once, as a tick would:
//! the fires missed while it was paused follow its `misfire` policy, as after a restart
//! (`skip` none, `fire_once` the latest, `fire_all: N` the latest N), so a long pause
//! never ends in a burst.
//!
//! Pausing a paused trigger, or resuming one that is not paused, changes nothing and
//! answers with the trigger as it is.

use actix::prelude::*;
use concierto_proto::v1;

use super::SchedulerActor;
use crate::SchedulerError;
use crate::state::{Paused, save_state_async};

/// Who a pause is recorded for when the request names nobody.
const UNKNOWN_REQUESTER: &str = "unknown";

/// Pause (`paused`) or resume the trigger `name` for `by`; answers with the trigger as
/// `scheduler.triggers` lists it afterwards.
#[derive(Message)]
#[rtype(result = "Result<v1::Trigger, SchedulerError>")]
pub(crate) struct SetPaused {
    pub name: String,
    pub paused: bool,
    pub by: String,
}

impl Handler<SetPaused> for SchedulerActor {
    type Result = AtomicResponse<Self, Result<v1::Trigger, SchedulerError>>;

    fn handle(&mut self, msg: SetPaused, _: &mut Self::Context) -> Self::Result {
        let Some(index) = self.index_of(&msg.name) else {
            let known = self
                .core
                .triggers
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return AtomicResponse::new(Box::pin(fut::ready(Err(
                SchedulerError::UnknownTrigger {
                    name: msg.name,
                    known,
                },
            ))));
        };
        let current = &self.states[index];
        if current.paused.is_some() == msg.paused {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(self.view(index)))));
        }
        let mut state = current.clone();
        if !msg.paused && state.cursor.is_some() {
            // Fires that fell due while paused are skipped, not caught up: a
            // pause is how a person says "not these runs" (neither counted
            // missed nor warned about, whatever the misfire policy).
            state.cursor = Some(self.core.clock.now());
        }
        state.paused = msg.paused.then(|| Paused {
            by: if msg.by.trim().is_empty() {
                UNKNOWN_REQUESTER.to_string()
            } else {
                msg.by.clone()
            },
            at: self.core.clock.now(),
        });
        let store = self.core.store.clone();
        let name = msg.name;
        let saved = save_state_async(store, name.clone(), state.clone());
        AtomicResponse::new(Box::pin(fut::wrap_future::<_, Self>(saved).then(
            move |saved, act, _| {
                if let Err(e) = saved {
                    tracing::error!(trigger = %name, error = %e, paused = msg.paused, "could not record a pause or resume; nothing changed");
                    return Box::pin(fut::ready(Err(e)))
                        as ResponseActFuture<Self, Result<v1::Trigger, SchedulerError>>;
                }
                // The trigger table may not have changed meanwhile (the handler is
                // atomic), so `index` still names it.
                act.states[index] = state;
                act.refresh_next(index);
                if msg.paused {
                    tracing::info!(trigger = %name, by = %msg.by, "trigger paused");
                    return Box::pin(fut::ready(Ok(act.view(index))));
                }
                tracing::info!(trigger = %name, by = %msg.by, "trigger resumed; fires due while it was paused are skipped");
                // Anything else due now (the cursor moved past the pause).
                match act.tick() {
                    Some(due) => Box::pin(due.map(move |(), act, _| Ok(act.view(index)))),
                    None => Box::pin(fut::ready(Ok(act.view(index)))),
                }
            },
        )))
    }
}
