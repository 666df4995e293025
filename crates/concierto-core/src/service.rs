//! How a service is started and stopped: every service's `start` returns a
//! [`ServiceHandle`]; inside, it watches a [`StopSignal`] and reports when it has
//! finished (in-flight work done or handed back).

use tokio::sync::{oneshot, watch};

/// Held by whoever started a service.
#[derive(Debug)]
pub struct ServiceHandle {
    name: String,
    stop: watch::Sender<bool>,
    done: oneshot::Receiver<Result<(), String>>,
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
