//! How a service is started and stopped: every service's `start` returns a
//! [`ServiceHandle`]; inside, it watches a [`StopSignal`] and reports when it has
//! finished (in-flight work done or handed back).
//!
//! A service that can take a changed studio without a restart says so with
//! [`ServiceHandle::on_studio_change`]: the process calls the hook with every
//! new validated studio (`concierto serve` reloads on SIGHUP, on a change of
//! the file and on `studio.changed` from the bus). The hook only hands the
//! studio over (typically an actor message); it must not block.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use crate::config::Studio;

/// Called with each new studio; see [`ServiceHandle::on_studio_change`].
pub type StudioHook = Arc<dyn Fn(Arc<Studio>) + Send + Sync>;

/// Held by whoever started a service.
pub struct ServiceHandle {
    name: String,
    stop: watch::Sender<bool>,
    done: oneshot::Receiver<Result<(), String>>,
    on_studio: Option<StudioHook>,
}

impl fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("name", &self.name)
            .field("live_studio", &self.on_studio.is_some())
            .finish()
    }
}

/// Held by the service: tells it to stop, and it tells back when it has.
#[derive(Debug)]
pub struct ServiceControl {
    /// Becomes true when the service must stop.
    pub signal: StopSignal,
    done: oneshot::Sender<Result<(), String>>,
}

/// A cloneable "stop now" signal.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// True once a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until a stop is asked for (or the handle is dropped).
    pub async fn stopped(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

impl ServiceHandle {
    /// A handle and the control the service keeps.
    pub fn new(name: impl Into<String>) -> (ServiceHandle, ServiceControl) {
        let (stop, rx) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        (
            ServiceHandle {
                name: name.into(),
                stop,
                done,
                on_studio: None,
            },
            ServiceControl {
                signal: StopSignal(rx),
                done: done_tx,
            },
        )
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Says the service takes a changed studio live: `hook` is called with
    /// every new validated studio.
    pub fn on_studio_change(mut self, hook: impl Fn(Arc<Studio>) + Send + Sync + 'static) -> Self {
        self.on_studio = Some(Arc::new(hook));
        self
    }

    /// [`Self::on_studio_change`] with a hook already shared.
    pub fn with_studio_hook(mut self, hook: StudioHook) -> Self {
        self.on_studio = Some(hook);
        self
    }

    /// Hands a new studio to the service. False when it keeps the studio it
    /// started with (a restart picks the change up).
    pub fn studio_changed(&self, studio: &Arc<Studio>) -> bool {
        match &self.on_studio {
            Some(hook) => {
                hook(studio.clone());
                true
            }
            None => false,
        }
    }

    /// The hook given with [`Self::on_studio_change`], to call later
    /// (a supervisor forwards changes to the service it runs).
    pub fn studio_hook(&self) -> Option<StudioHook> {
        self.on_studio.clone()
    }

    /// True when the service takes a changed studio live.
    pub fn takes_studio_changes(&self) -> bool {
        self.on_studio.is_some()
    }

    /// Asks the service to stop and waits until it has.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the service ends on its own.
    pub async fn wait(self) -> Result<(), String> {
        match self.done.await {
            Ok(r) => r,
            Err(_) => Err(format!("service {} ended without reporting", self.name)),
        }
    }
}

impl ServiceControl {
    /// Reports that the service has finished.
    pub fn finished(self, result: Result<(), String>) {
        let _ = self.done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_reaches_the_service_and_waits_for_it() {
        let (handle, control) = ServiceHandle::new("demo");
        let mut signal = control.signal.clone();
        let task = tokio::spawn(async move {
            signal.stopped().await;
            control.finished(Ok(()));
        });
        assert_eq!(handle.name(), "demo");
        handle.stop().await.unwrap();
        task.await.unwrap();
    }
}
