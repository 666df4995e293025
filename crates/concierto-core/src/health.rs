//! Process-wide health: conditions that make a process not ready (`/readyz`
//! answers 503 while any holds) and the count of store errors, for the
//! telemetry server to show. A service sets a condition under its own key while
//! it lasts (its store failing, waiting as a standby for a lease) and clears it
//! when it is over.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static CONDITIONS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static STORE_ERRORS: AtomicU64 = AtomicU64::new(0);

fn with<T>(f: impl FnOnce(&mut BTreeMap<String, String>) -> T) -> T {
    match CONDITIONS.lock() {
        Ok(mut c) => f(&mut c),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Marks the process not ready because of `key` (e.g. `orchestrator.store`),
/// saying why. Setting it again replaces the reason.
pub fn set_unready(key: &str, reason: impl Into<String>) {
    let reason = reason.into();
    with(|c| c.insert(key.to_string(), reason));
}

/// The condition `key` is over.
pub fn clear(key: &str) {
    with(|c| c.remove(key));
}

/// Every condition that holds now, by key.
pub fn conditions() -> Vec<(String, String)> {
    with(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Counts one failed store operation (`concierto_store_errors_total`).
pub fn store_error() {
    STORE_ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// Store operations that failed since the process started.
pub fn store_errors_total() -> u64 {
    STORE_ERRORS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_set_replaced_and_cleared() {
        set_unready("test.health.a", "disk full");
        set_unready("test.health.a", "disk still full");
        assert!(
            conditions()
                .iter()
                .any(|(k, v)| k == "test.health.a" && v == "disk still full")
        );
        clear("test.health.a");
        assert!(!conditions().iter().any(|(k, _)| k == "test.health.a"));
        let before = store_errors_total();
        store_error();
        assert!(store_errors_total() > before);
    }
}
