//! [`Outbox`]: publishes the feedback that was stored but not published (the bus
//! was down or slow when it came in), at start-up and then every
//! `outbox_every`. Re-publishing is safe: the message id is the feedback id, so
//! the stream stores a repeat once.

use std::time::Duration;

use concierto_core::service::ServiceHandle;
use concierto_core::store::Op;

use crate::FeedbackState;
use crate::error::FeedbackError;
use crate::intake::{self, FEEDBACK_TREE, OUTBOX_TREE};

/// What one pass of the outbox did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxPass {
    /// Records published in this pass.
    pub published: usize,
    /// Outbox entries without a record, removed (left by a crash between the two
    /// writes of an intake that was never answered).
    pub orphans: usize,
    /// Records still waiting (the bus failed again; the pass stopped there).
    pub left: usize,
}

/// Re-publishes stored feedback that is not on the bus yet.
#[derive(Debug, Clone)]
pub struct Outbox {
    state: FeedbackState,
}

impl Outbox {
    /// An outbox over `state`'s store and bus.
    pub fn new(state: FeedbackState) -> Self {
        Outbox { state }
    }

    /// Publishes every pending record, oldest id first, and stops at the first
    /// publish that fails (the bus is likely down; the next pass resumes).
    pub async fn run_once(&self) -> Result<OutboxPass, FeedbackError> {
        let store = self.state.store().clone();
        let ids = intake::blocking(store, intake::pending).await?;
        let mut pass = OutboxPass::default();
        for (i, id) in ids.iter().enumerate() {
            let store = self.state.store().clone();
            let key = id.clone();
            let record = intake::blocking(store, move |s| intake::get(s, &key)).await?;
            let Some(fb) = record else {
                if self.remove_orphan(id).await? {
                    pass.orphans += 1;
                }
                continue;
            };
            match intake::publish(&self.state, &fb).await {
                Ok(_) => {
                    intake::mark_published(&self.state, id).await?;
                    tracing::info!(feedback_id = %id, "outbox published feedback");
                    pass.published += 1;
                }
                Err(e) => {
                    pass.left = ids.len() - i;
                    tracing::warn!(feedback_id = %id, error = %e, waiting = pass.left, "outbox could not publish; retrying later");
                    break;
                }
            }
        }
        Ok(pass)
    }

    /// Removes an outbox entry whose record is missing, checked again under the
    /// intake lock (an intake writes its entry first, then its record).
    async fn remove_orphan(&self, id: &str) -> Result<bool, FeedbackError> {
        let _guard = self.state.accept_lock().lock().await;
        let key = id.as_bytes().to_vec();
        let removed = intake::blocking(self.state.store().clone(), move |s| {
            if s.get(FEEDBACK_TREE, &key)?.is_some() {
                return Ok(false);
            }
            s.apply(OUTBOX_TREE, vec![Op::Delete(key)])?;
            Ok(true)
        })
        .await?;
        if removed {
            tracing::warn!(feedback_id = %id, "removed an outbox entry without a record");
        }
        Ok(removed)
    }

    /// Runs a pass now and then every `every` until stopped; stop it with
    /// [`ServiceHandle::stop`] (the pass in hand finishes first).
    pub fn start(self, every: Duration) -> ServiceHandle {
        let (handle, control) = ServiceHandle::new("feedback-outbox");
        let mut signal = control.signal.clone();
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    Ok(pass) if pass.published > 0 || pass.left > 0 || pass.orphans > 0 => {
                        tracing::debug!(?pass, "outbox pass");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox pass failed"),
                }
                tokio::select! {
                    _ = signal.stopped() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
            control.finished(Ok(()));
        });
        handle
    }
}
