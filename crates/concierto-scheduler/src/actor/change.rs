//! The actor's side of a studio change ([`crate::reload`] says what a trigger keeps):
//! fires due under the old table are handled first, as a tick would; then the new
//! table replaces it, the states of the triggers added are read from the store, and
//! the states the change moved (a cursor set to the change instant, a removed
//! trigger's paused state dropped) are written.
//!
//! The handler is atomic like the firing ones: no fire is planned on a table that is
//! being replaced.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use concierto_core::config::{Studio, Trigger};
use concierto_core::store::KvStore;

use super::{Core, SchedulerActor};
use crate::batch::{self, Windows};
use crate::reload::{self, Fate, HeldBatch, TriggerChanges};
use crate::state::{TriggerState, load_state, save_state_async};

/// A new validated studio to take live.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StudioChanged(pub Arc<Studio>);

impl Handler<StudioChanged> for SchedulerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: StudioChanged, _: &mut Self::Context) -> Self::Result {
        let before = self.tick().unwrap_or_else(|| Box::pin(fut::ready(())));
        let studio = msg.0;
        AtomicResponse::new(Box::pin(
            before.then(move |(), act, _| act.take_studio(studio)),
        ))
    }
}

/// The stored state and batch windows of an added trigger (by its index in the new
/// table).
type Loaded = Vec<(usize, TriggerState, Windows)>;

/// Reads what the store holds for the added triggers; an unreadable state or window
/// list is logged and started afresh.
fn load_added(store: &dyn KvStore, added: Vec<(usize, String, bool)>) -> Loaded {
    added
        .into_iter()
        .map(|(index, name, batched)| {
            let state = load_state(store, &name).unwrap_or_else(|e| {
                tracing::error!(trigger = %name, error = %e, "an added trigger's stored state is unreadable; it starts afresh");
                TriggerState::default()
            });
            let windows = if batched {
                batch::load_windows(store, &name).unwrap_or_else(|e| {
                    tracing::error!(trigger = %name, error = %e, "an added trigger's batch windows are unreadable; it starts with none");
                    Windows::new()
                })
            } else {
                Windows::new()
            };
            (index, state, windows)
        })
        .collect()
}

impl SchedulerActor {
    /// Reads the added triggers' state, swaps the table, writes the states moved.
    fn take_studio(&mut self, studio: Arc<Studio>) -> ResponseActFuture<Self, ()> {
        let triggers = reload::all_triggers(&studio);
        let (fates, changes) = reload::diff(&self.core.triggers, &triggers);
        let added: Vec<(usize, String, bool)> = fates
            .iter()
            .zip(&triggers)
            .enumerate()
            .filter(|(_, (fate, _))| **fate == Fate::Added)
            .map(|(i, (_, t))| (i, t.name.clone(), t.flood.batch.is_some()))
            .collect();
        let store = self.core.store.clone();
        let read = {
            let store = store.clone();
            async move {
                tokio::task::spawn_blocking(move || load_added(store.as_ref(), added))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "reading the added triggers' state did not finish; they start afresh");
                        Vec::new()
                    })
            }
        };
        Box::pin(fut::wrap_future::<_, Self>(read).then(move |loaded, act, _| {
            let now = act.core.clock.now();
            let moved = act.swap(studio, triggers, &fates, &changes, loaded, now);
            fut::wrap_future(async move {
                for (name, state) in moved {
                    if let Err(e) = save_state_async(store.clone(), name.clone(), state).await {
                        tracing::error!(trigger = %name, error = %e, "could not record a trigger's state after a studio change; a restart before its next fire may fire it on its old cursor");
                    }
                }
            })
        }))
    }

    /// Puts the new table in place at `now`; returns the states to write (the ones
    /// the change moved).
    fn swap(
        &mut self,
        studio: Arc<Studio>,
        triggers: Vec<Trigger>,
        fates: &[Fate],
        changes: &TriggerChanges,
        loaded: Loaded,
        now: DateTime<Utc>,
    ) -> Vec<(String, TriggerState)> {
        let today = now.date_naive();
        let mut loaded: HashMap<usize, (TriggerState, Windows)> =
            loaded.into_iter().map(|(i, s, w)| (i, (s, w))).collect();
        let n = triggers.len();
        let (mut states, mut windows) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut caps, mut batches) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut moved = Vec::new();
        for (index, (trigger, fate)) in triggers.iter().zip(fates).enumerate() {
            let (state, open, cap, held) = match fate.old() {
                Some(o) => {
                    let old = &self.core.triggers[o];
                    let open = std::mem::take(&mut self.windows[o]);
                    let held = reload::batch_changed(
                        std::mem::take(&mut self.batches[o]),
                        open.keys(),
                        old,
                        trigger,
                        now,
                    );
                    let cap = reload::held_cap(self.caps[o], old, trigger, today);
                    (self.states[o].clone(), open, cap, held)
                }
                None => {
                    let (state, open) = loaded.remove(&index).unwrap_or_default();
                    (state, open, None, HeldBatch::default())
                }
            };
            let carried = reload::carried_state(state.clone(), *fate, trigger, now);
            if carried != state {
                moved.push((trigger.name.clone(), carried.clone()));
            }
            states.push(carried);
            windows.push(open);
            caps.push(cap);
            batches.push(held);
        }
        for name in &changes.removed {
            if let Some(o) = self.core.triggers.iter().position(|t| &t.name == name) {
                let items: u32 = self.windows[o].values().sum();
                if items > 0 {
                    tracing::warn!(trigger = %name, items, "a removed trigger had items batched: they stay in the store and fire if a trigger of that name comes back");
                }
                // A removed trigger drops its paused state (the rest of it is kept).
                if self.states[o].paused.is_some() {
                    tracing::info!(trigger = %name, "a removed trigger was paused: its paused state is dropped");
                    let mut kept = self.states[o].clone();
                    kept.paused = None;
                    moved.push((name.clone(), kept));
                }
            }
        }
        let old = &self.core;
        self.core = Arc::new(Core {
            studio,
            triggers,
            bus: old.bus.clone(),
            store: old.store.clone(),
            clock: old.clock.clone(),
            instance: old.instance.clone(),
            tick: old.tick,
            misfire_grace: old.misfire_grace,
        });
        self.next = vec![None; n];
        self.states = states;
        self.windows = windows;
        self.caps = caps;
        self.batches = batches;
        for index in 0..n {
            self.refresh_next(index);
        }
        tracing::info!(
            instance = %self.core.instance,
            added = ?changes.added,
            removed = ?changes.removed,
            changed = ?changes.changed,
            "studio changed: triggers {changes}"
        );
        moved
    }
}
