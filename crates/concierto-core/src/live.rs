//! [`LiveStudio`]: the studio a running service reads per request or event,
//! swapped whole when the process hands it a changed one (see
//! [`crate::service::ServiceHandle::on_studio_change`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Studio;

/// The current studio, shared by clones: [`LiveStudio::get`] is what the next
/// request or event uses, [`LiveStudio::set`] replaces it (never blocks for
/// long: the lock only guards an `Arc` swap).
#[derive(Debug, Clone)]
pub struct LiveStudio(Arc<RwLock<Arc<Studio>>>);

impl LiveStudio {
    /// Starts with `studio`.
    pub fn new(studio: Arc<Studio>) -> Self {
        LiveStudio(Arc::new(RwLock::new(studio)))
    }

    /// The studio now.
    pub fn get(&self) -> Arc<Studio> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the studio; later [`Self::get`]s see `studio`.
    pub fn set(&self, studio: Arc<Studio>) {
        match self.0.write() {
            Ok(mut g) => *g = studio,
            Err(poisoned) => *poisoned.into_inner() = studio,
        }
    }
}

/// Keys a running service keeps as it started with (a listening address): a
/// changed value is logged once at warn, naming the key and the restart it
/// needs (`server.http_addr changed: restart the feedback service to use it`).
#[derive(Debug)]
pub struct NeedsRestart {
    service: String,
    warned: Mutex<HashMap<String, String>>,
}

impl NeedsRestart {
    /// For the service `service` (as the warning names it).
    pub fn new(service: impl Into<String>) -> Self {
        NeedsRestart {
            service: service.into(),
            warned: Mutex::new(HashMap::new()),
        }
    }

    /// `key` was `started` when the service started and is `now` in the new
    /// studio: warns when they differ, once per key and new value. True when
    /// the value differs (whether or not it warned this time).
    pub fn check(&self, key: &str, started: &str, now: &str) -> bool {
        let mut warned = match self.warned.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if started == now {
            warned.remove(key);
            return false;
        }
        if warned.get(key).map(String::as_str) != Some(now) {
            tracing::warn!(
                key,
                was = started,
                now,
                "{key} changed: restart the {} service to use it",
                self.service
            );
            warned.insert(key.to_string(), now.to_string());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Arc<Studio> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        Arc::new(crate::config::load(&path).expect("the example studio loads"))
    }

    #[test]
    fn a_clone_sees_the_studio_set_through_another() {
        let first = example();
        let live = LiveStudio::new(first.clone());
        let other = live.clone();
        assert!(Arc::ptr_eq(&live.get(), &first));
        let second = example();
        other.set(second.clone());
        assert!(Arc::ptr_eq(&live.get(), &second));
        assert!(!Arc::ptr_eq(&live.get(), &first));
    }

    #[test]
    fn a_key_needing_a_restart_is_reported_while_it_differs() {
        let keys = NeedsRestart::new("feedback");
        assert!(!keys.check("server.http_addr", "127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(keys.check("server.http_addr", "127.0.0.1:8080", "127.0.0.1:9090"));
        assert!(keys.check("server.http_addr", "127.0.0.1:8080", "127.0.0.1:9090"));
        assert!(!keys.check("server.http_addr", "127.0.0.1:8080", "127.0.0.1:8080"));
    }
}
