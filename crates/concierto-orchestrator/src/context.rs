//! Standing context for agent roles (`AgentContext` on `context.<role>`): the
//! learners' reports, such as the week's trend report for trend-researcher.
//! The latest of each name per role is kept (store tree [`CONTEXTS`], key
//! `<role>/<name>`) and handed to every task of that role as an input named
//! `context:<name>`, after the step's own inputs.

use concierto_core::store::{Op, StoreError};
use concierto_proto::v1;

use crate::engine::Engine;

/// The store tree of the contexts.
pub(crate) const CONTEXTS: &str = "contexts";
/// Largest context kept, in bytes of content (a longer one is cut at a
/// character boundary and marked).
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Most contexts kept per role; a new name beyond it is refused.
pub const MAX_CONTEXTS_PER_ROLE: usize = 16;

fn at_ms(c: &v1::AgentContext) -> i64 {
    c.at.as_ref()
        .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000))
        .unwrap_or(0)
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("\n…(cut)");
    s
}

impl Engine {
    /// Loads the stored contexts (at start).
    pub(crate) fn recover_contexts(&mut self) -> Result<(), StoreError> {
        for (_, b) in self.store_handle().scan_prefix(CONTEXTS, b"")? {
            match <v1::AgentContext as prost::Message>::decode(b.as_slice()) {
                Ok(c) => {
                    self.contexts
                        .entry(c.role.clone())
                        .or_default()
                        .insert(c.name.clone(), c);
                }
                Err(e) => tracing::error!(error = %e, "a stored context does not decode; skipped"),
            }
        }
        Ok(())
    }

    /// Keeps `c` as its role's latest context of that name, unless a newer one
    /// is kept already. A context for a role the studio does not have, or
    /// without a name, is logged and dropped.
    pub(crate) fn apply_context(&mut self, mut c: v1::AgentContext) -> Result<(), StoreError> {
        if c.name.trim().is_empty() || !self.studio.roles.contains_key(&c.role) {
            tracing::warn!(role = %c.role, name = %c.name, "context for an unknown role or without a name; dropped");
            return Ok(());
        }
        let kept = self.contexts.entry(c.role.clone()).or_default();
        if let Some(old) = kept.get(&c.name) {
            if at_ms(old) > at_ms(&c) {
                return Ok(());
            }
        } else if kept.len() >= MAX_CONTEXTS_PER_ROLE {
            tracing::warn!(role = %c.role, name = %c.name, "the role has {MAX_CONTEXTS_PER_ROLE} contexts already; dropped");
            return Ok(());
        }
        c.content = cut(std::mem::take(&mut c.content), MAX_CONTEXT_BYTES);
        let key = format!("{}/{}", c.role, c.name).into_bytes();
        let body = prost::Message::encode_to_vec(&c);
        tracing::debug!(role = %c.role, name = %c.name, bytes = c.content.len(), "context kept");
        kept.insert(c.name.clone(), c);
        self.store_handle()
            .apply(CONTEXTS, vec![Op::Put(key, body)])
    }

    /// The task inputs a role's contexts add, by name.
    pub(crate) fn context_inputs(&self, role: &str) -> Vec<v1::TaskInput> {
        self.contexts
            .get(role)
            .into_iter()
            .flat_map(|m| m.values())
            .map(|c| v1::TaskInput {
                name: format!("context:{}", c.name),
                content: c.content.clone(),
                content_type: if c.content_type.is_empty() {
                    "text/plain".into()
                } else {
                    c.content_type.clone()
                },
            })
            .collect()
    }
}
