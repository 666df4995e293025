//! Services of which only one instance may be active per studio (the
//! scheduler, tracker, ingester and publisher: two would split or repeat the
//! work): each runs under a lease on the bus (`concierto_bus::lease`). The
//! orchestrator leases its partitions itself (`concierto_orchestrator::partitions`).
//! A process that does not get the lease waits as a standby, says so in its
//! log and on `/readyz` (503), and starts the service the moment the lease is
//! its own; a holder that loses its lease stops the service at once and goes
//! back to standby. A clean stop releases the lease so a standby takes over
//! without waiting for the ttl.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use concierto_bus::Bus;
use concierto_bus::lease::{self, Holder, Lease, LeaseOptions, LeaseStore};
use concierto_core::config::Studio;
use concierto_core::service::{ServiceHandle, StopSignal, StudioHook};

/// The services that run under a lease.
pub const LEASED: &[&str] = &["scheduler", "tracker", "ingest", "publisher"];

/// This process's holder id: host name and process id.
pub(crate) fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

fn health_key(service: &str) -> String {
    format!("{service}.lease")
}

fn standing_by(service: &str, who: &Holder) {
    let why = match who {
        Holder::Held(h) => format!("standby: the {service} lease is held by {h}"),
        Holder::Free => format!("standby: waiting for the {service} lease"),
    };
    tracing::warn!(service, "{why}; this instance starts when it is free");
    concierto_core::health::set_unready(&health_key(service), why);
}

/// Runs the service `start` starts only while this process holds its lease.
/// When the lease is free now, the service is started before this returns
/// (so a start error fails the caller, as without a lease); else it waits in
/// the background as a standby.
pub async fn leased<F, Fut>(
    bus: &Arc<dyn Bus>,
    service: &'static str,
    opts: LeaseOptions,
    mut start: F,
) -> anyhow::Result<ServiceHandle>
where
    F: FnMut() -> Fut + 'static,
    Fut: Future<Output = anyhow::Result<ServiceHandle>> + 'static,
{
    let store = bus
        .leases()
        .await
        .with_context(|| format!("opening the lease bucket for {service}"))?;
    let holder = holder_id();
    // The lease at once when it is free (or released by a clean stop).
    let first = tokio::time::timeout(
        opts.ttl / 6,
        lease::acquire(store.clone(), service, &holder, opts, |_| {}),
    )
    .await;
    let active = match first {
        Ok(Ok(lease)) => {
            tracing::info!(service, %holder, "lease taken: this instance is active");
            let inner = match start().await {
                Ok(h) => h,
                Err(e) => {
                    lease.release().await;
                    return Err(e);
                }
            };
            Some((lease, inner))
        }
        Ok(Err(e)) => {
            return Err(
                anyhow::Error::new(e).context(format!("reading the {service} lease on the bus"))
            );
        }
        Err(_) => None,
    };
    let (handle, control) = ServiceHandle::new(service);
    // A changed studio goes to the instance running now (none on a standby:
    // it starts with the process's current studio when it takes the lease).
    let slot: Arc<std::sync::Mutex<Forward>> = Arc::default();
    let to_active = slot.clone();
    let handle = handle.on_studio_change(move |studio| {
        let hook = {
            let mut f = to_active.lock().unwrap_or_else(|p| p.into_inner());
            f.handed = f.handed.wrapping_add(1);
            f.last = Some(studio.clone());
            f.hook.clone()
        };
        if let Some(hook) = hook {
            hook(studio);
        }
    });
    let signal = control.signal.clone();
    actix::spawn(async move {
        let result = supervise(
            store, service, holder, opts, active, signal, &mut start, &slot,
        )
        .await;
        concierto_core::health::clear(&health_key(service));
        control.finished(result);
    });
    Ok(handle)
}

/// Where the leased service's changed studios go.
#[derive(Default)]
struct Forward {
    /// The running instance's hook (none while standing by or starting).
    hook: Option<StudioHook>,
    /// The last studio handed over, and how many were.
    last: Option<Arc<Studio>>,
    handed: u64,
}

/// `hook` is the running instance's from now on; a studio handed over since
/// `handed` was counted (while it started, with nobody to take it) goes to
/// it now.
fn forward_to(slot: &std::sync::Mutex<Forward>, hook: Option<StudioHook>, handed: u64) {
    let missed = {
        let mut f = slot.lock().unwrap_or_else(|p| p.into_inner());
        f.hook = hook.clone();
        if f.handed == handed {
            None
        } else {
            f.last.clone()
        }
    };
    if let (Some(hook), Some(studio)) = (hook, missed) {
        hook(studio);
    }
}

fn handed(slot: &std::sync::Mutex<Forward>) -> u64 {
    slot.lock().unwrap_or_else(|p| p.into_inner()).handed
}

#[allow(clippy::too_many_arguments)]
async fn supervise<F, Fut>(
    store: Arc<dyn LeaseStore>,
    service: &'static str,
    holder: String,
    opts: LeaseOptions,
    mut active: Option<(Lease, ServiceHandle)>,
    mut signal: StopSignal,
    start: &mut F,
    slot: &std::sync::Mutex<Forward>,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<ServiceHandle>>,
{
    let mut retry = Duration::from_secs(1);
    // The first instance started before the slot existed: every studio
    // handed over so far came after its start.
    let mut since = 0;
    loop {
        let (mut lease, inner) = match active.take() {
            Some(a) => a,
            None => {
                standing_by(service, &Holder::Free);
                let acquired = tokio::select! {
                    _ = signal.stopped() => return Ok(()),
                    l = lease::acquire(store.clone(), service, &holder, opts, |who| standing_by(service, who)) => l,
                };
                let lease = match acquired {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(service, error = %e, "the lease bucket cannot be read; trying again");
                        tokio::select! {
                            _ = signal.stopped() => return Ok(()),
                            _ = tokio::time::sleep(retry) => {}
                        }
                        continue;
                    }
                };
                concierto_core::health::clear(&health_key(service));
                tracing::info!(service, %holder, "lease taken: this instance is active");
                since = handed(slot);
                match start().await {
                    Ok(inner) => {
                        retry = Duration::from_secs(1);
                        (lease, inner)
                    }
                    Err(e) => {
                        tracing::error!(service, error = %format!("{e:#}"), ?retry, "the service did not start; releasing the lease and trying again");
                        concierto_core::health::set_unready(
                            &health_key(service),
                            format!("{service} did not start: {e:#}"),
                        );
                        lease.release().await;
                        tokio::select! {
                            _ = signal.stopped() => return Ok(()),
                            _ = tokio::time::sleep(retry) => {}
                        }
                        retry = (retry * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
        };
        forward_to(slot, inner.studio_hook(), since);
        let outcome = tokio::select! {
            _ = signal.stopped() => None,
            _ = lease.lost() => Some(()),
        };
        forward_to(slot, None, handed(slot));
        match outcome {
            None => {
                let result = inner.stop().await;
                lease.release().await;
                return result;
            }
            Some(()) => {
                tracing::error!(
                    service,
                    "the lease is lost: stopping this instance's {service} at once and standing by"
                );
                concierto_core::health::set_unready(
                    &health_key(service),
                    format!("standby: the {service} lease was lost"),
                );
                if let Err(e) = inner.stop().await {
                    tracing::error!(service, error = %e, "stopped with an error after losing the lease");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_bus::EmbeddedBus;

    fn studio() -> Arc<Studio> {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        Arc::new(
            concierto_core::config::load_with_env(&file, Vec::new()).expect("the example loads"),
        )
    }

    #[test]
    fn a_studio_changed_while_the_active_instance_starts_reaches_it() {
        actix::System::new().block_on(async {
            let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("leased-test."));
            let got: Arc<std::sync::Mutex<Vec<Arc<Studio>>>> = Arc::default();
            let to_inner = got.clone();
            let outer = leased(&bus, "orchestrator", LeaseOptions::default(), move || {
                let to_inner = to_inner.clone();
                async move {
                    let (h, control) = ServiceHandle::new("inner");
                    tokio::spawn(async move {
                        let mut stop = control.signal.clone();
                        stop.stopped().await;
                        control.finished(Ok(()));
                    });
                    Ok(h.on_studio_change(move |s| {
                        to_inner.lock().unwrap().push(s);
                    }))
                }
            })
            .await
            .unwrap();
            // At once, before the supervisor hands it the running instance.
            let changed = studio();
            outer.studio_changed(&changed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            {
                let got = got.lock().unwrap();
                assert_eq!(got.len(), 1, "the change reached the instance once");
                assert!(Arc::ptr_eq(&got[0], &changed));
            }
            // Later changes go straight through, once each.
            let again = studio();
            outer.studio_changed(&again);
            assert_eq!(got.lock().unwrap().len(), 2);
            outer.stop().await.unwrap();
        });
    }
}
