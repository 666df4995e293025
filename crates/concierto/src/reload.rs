//! Live changes of the studio file (DESIGN.md section 5): every `concierto up`
//! and `concierto serve` process reloads its studio without a restart.
//!
//! ```text
//!  SIGHUP ───────────────┐
//!  the file changed ─────┤  (polled every second, applied once it is still
//!   (debounced)          │   for half a second)
//!  studio.reload ────────┤  (the admin `ReloadStudio`; one process answers)
//!                        ▼
//!   read + validate the whole studio ── errors: logged once per version with
//!                        │               file:line, the running studio kept
//!                        ▼ valid and a new version (SHA-256 of the text)
//!   hand it to every running service (ServiceHandle::studio_changed)
//!   and announce it on `studio.changed` with its text
//!                        │
//!  studio.changed ───────┴─▶ other processes: same version → nothing; else
//!                            validate the text against their own folder and
//!                            hand it to their services (not announced again)
//! ```
//!
//! Runs in flight keep the steps they started with (the orchestrator copies
//! them into the run). A service that cannot take a change live (agent
//! workers keep their role files) is named in the log line of the change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use concierto_bus::{Bus, BusExt, decode, encode};
use concierto_core::config::{self, Studio, changes};
use concierto_core::live::LiveStudio;
use concierto_core::service::{ServiceHandle, StopSignal, StudioHook};
use concierto_core::subjects;
use concierto_proto::v1;

/// How often the studio file is looked at.
const POLL: Duration = Duration::from_secs(1);
/// How long the file must stay unchanged before it is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The process's reloader.
pub struct Reloader {
    file: PathBuf,
    live: LiveStudio,
    bus: Arc<dyn Bus>,
    origin: String,
    state: Mutex<State>,
    services: Mutex<Vec<(String, Option<StudioHook>)>>,
    overlay: Mutex<Option<Overlay>>,
}

/// What this process adds to every studio it takes, in memory (`up`'s
/// first-run admin, see [`crate::first_run`]).
pub type Overlay = Arc<dyn Fn(Studio) -> Studio + Send + Sync>;

#[derive(Default)]
struct State {
    /// The version running.
    version: String,
    /// The last version refused (its errors were logged).
    refused: String,
}

impl Reloader {
    /// For the studio loaded from `file`, now `live`.
    pub fn new(file: &Path, live: LiveStudio, bus: Arc<dyn Bus>) -> Arc<Reloader> {
        let version = std::fs::read_to_string(file)
            .map(|t| changes::version(&t))
            .unwrap_or_default();
        Arc::new(Reloader {
            file: file.to_path_buf(),
            live,
            bus,
            origin: crate::leased::holder_id(),
            state: Mutex::new(State {
                version,
                refused: String::new(),
            }),
            services: Mutex::new(Vec::new()),
            overlay: Mutex::new(None),
        })
    }

    /// Every studio taken from now on goes through `overlay` before the
    /// services get it (the studio the process started with is the caller's
    /// to pass through it).
    pub fn set_overlay(&self, overlay: Overlay) {
        *self.overlay.lock().unwrap_or_else(|p| p.into_inner()) = Some(overlay);
    }

    /// The services a change goes to.
    pub fn watch<'a>(&self, handles: impl IntoIterator<Item = &'a ServiceHandle>) {
        let mut s = self.services.lock().unwrap_or_else(|p| p.into_inner());
        for h in handles {
            s.push((h.name().to_string(), h.studio_hook()));
        }
    }

    /// The version running.
    pub fn version(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .version
            .clone()
    }

    /// Validates `text` as the studio file; a valid new version is handed to
    /// every service. `Ok(false)`: already running it.
    async fn take(&self, text: String, reason: &str) -> Result<bool, Vec<String>> {
        let version = changes::version(&text);
        if version == self.version() {
            return Ok(false);
        }
        let file = self.file.clone();
        let checked = tokio::task::spawn_blocking(move || {
            config::check_text_with_env(&file, &text, std::env::vars())
        })
        .await
        .map_err(|e| vec![format!("validating the studio: {e}")])?;
        let Some(studio) = checked.studio else {
            let problems: Vec<String> = checked
                .problems
                .iter()
                .filter(|p| p.severity == config::Severity::Error)
                .map(|p| p.to_string())
                .collect();
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.refused != version {
                st.refused = version;
                tracing::error!(
                    reason,
                    errors = problems.len(),
                    "the changed studio file is not valid; the running studio is kept:\n  {}",
                    problems.join("\n  ")
                );
            }
            return Err(problems);
        };
        let running = self.live.get().server.partitions;
        if studio.server.partitions != running {
            let problem = format!(
                "server.partitions cannot change while the studio runs ({running} → {}): every run id would move to another partition. Stop every orchestrator, then start them with the new count on an empty bus (another subject prefix); the running studio is kept",
                studio.server.partitions
            );
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.refused != version {
                st.refused = version;
                tracing::error!(reason, "{problem}");
            }
            return Err(vec![problem]);
        }
        // Under the lock: two takes at once (the file, the bus) hand their
        // studios over in the order they record their versions, so the
        // version said to run is the one the services have.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.version == version {
            return Ok(false);
        }
        st.version = version.clone();
        let overlay = self
            .overlay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let studio = match overlay {
            Some(f) => f(studio),
            None => studio,
        };
        self.apply(Arc::new(studio), &version, reason);
        Ok(true)
    }

    fn apply(&self, studio: Arc<Studio>, version: &str, reason: &str) {
        self.live.set(studio.clone());
        let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let (mut took, mut kept) = (Vec::new(), Vec::new());
        for (name, hook) in services.iter() {
            match hook {
                Some(h) => {
                    h(studio.clone());
                    took.push(name.as_str());
                }
                None => kept.push(name.as_str()),
            }
        }
        if kept.is_empty() {
            tracing::info!(version, reason, services = %took.join(", "), "studio changed");
        } else {
            tracing::info!(
                version,
                reason,
                services = %took.join(", "),
                restart_to_change = %kept.join(", "),
                "studio changed (the services named in restart_to_change keep the studio they started with)"
            );
        }
    }

    /// Reads and takes the file; announces a new version to the other
    /// processes.
    pub async fn reload_from_file(&self, reason: &str) -> v1::ReloadStudioResponse {
        let text = match tokio::fs::read_to_string(&self.file).await {
            Ok(t) => t,
            Err(e) => {
                return v1::ReloadStudioResponse {
                    changed: false,
                    version: self.version(),
                    problems: vec![format!(
                        "{}: cannot read the studio file: {e}",
                        self.file.display()
                    )],
                };
            }
        };
        match self.take(text.clone(), reason).await {
            Ok(changed) => {
                if changed {
                    self.announce(text, reason).await;
                }
                v1::ReloadStudioResponse {
                    changed,
                    version: self.version(),
                    problems: Vec::new(),
                }
            }
            Err(problems) => v1::ReloadStudioResponse {
                changed: false,
                version: self.version(),
                problems,
            },
        }
    }

    async fn announce(&self, text: String, reason: &str) {
        let msg = v1::StudioChanged {
            version: changes::version(&text),
            text,
            origin: self.origin.clone(),
            reason: reason.to_string(),
        };
        if let Err(e) = self.bus.publish_proto(subjects::STUDIO_CHANGED, &msg).await {
            tracing::warn!(error = %e, "announcing the changed studio failed; other processes take it on their own file change or SIGHUP");
        }
    }

    /// Starts listening for changes (the bus, SIGHUP, the file) until the
    /// returned handle is stopped.
    pub fn start(self: &Arc<Self>) -> ServiceHandle {
        let (handle, control) = ServiceHandle::new("studio-reloader");
        let mut stop = control.signal.clone();
        self.spawn(control.signal.clone());
        tokio::spawn(async move {
            stop.stopped().await;
            control.finished(Ok(()));
        });
        handle
    }

    /// Listens for changes until `stop`: the bus, SIGHUP and the file.
    fn spawn(self: &Arc<Self>, stop: StopSignal) {
        let me = self.clone();
        let mut s1 = stop.clone();
        tokio::spawn(async move {
            let sub = match me.bus.subscribe(subjects::STUDIO_CHANGED).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hear studio changes from other processes");
                    return;
                }
            };
            let mut sub = sub;
            loop {
                let msg = tokio::select! {
                    _ = s1.stopped() => return,
                    m = sub.next() => match m { Some(m) => m, None => return },
                };
                match decode::<v1::StudioChanged>(&msg) {
                    Ok(c) if c.origin == me.origin => {}
                    Ok(c) => {
                        let reason = format!("{} (from {})", c.reason, c.origin);
                        let _ = me.take(c.text, &reason).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a studio.changed message does not decode")
                    }
                }
            }
        });
        let me = self.clone();
        let mut s2 = stop.clone();
        tokio::spawn(async move {
            let mut sub = match me
                .bus
                .queue_subscribe(subjects::STUDIO_RELOAD, "studio-reload")
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot serve studio reload requests");
                    return;
                }
            };
            loop {
                let msg = tokio::select! {
                    _ = s2.stopped() => return,
                    m = sub.next() => match m { Some(m) => m, None => return },
                };
                let who = decode::<v1::ReloadStudioRequest>(&msg)
                    .map(|r| r.requested_by)
                    .unwrap_or_default();
                let out = me.reload_from_file(&format!("ReloadStudio by {who}")).await;
                if let Some(reply) = msg.reply.as_deref()
                    && let Err(e) = me.bus.respond(reply, encode(&out)).await
                {
                    tracing::warn!(error = %e, "answering a studio reload failed");
                }
            }
        });
        #[cfg(unix)]
        {
            let me = self.clone();
            let mut s3 = stop.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut hup = match signal(SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen to SIGHUP; the studio reloads on file changes only");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = s3.stopped() => return,
                        got = hup.recv() => if got.is_none() { return },
                    }
                    me.reload_from_file("SIGHUP").await;
                }
            });
        }
        let me = self.clone();
        let mut s4 = stop;
        tokio::spawn(async move {
            let mut seen = stamp(&me.file).await;
            loop {
                tokio::select! {
                    _ = s4.stopped() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
                let now = stamp(&me.file).await;
                if now == seen {
                    continue;
                }
                // Settled: unchanged for SETTLE (an editor writes in steps).
                let mut last = now;
                loop {
                    tokio::time::sleep(SETTLE).await;
                    let again = stamp(&me.file).await;
                    if again == last {
                        break;
                    }
                    last = again;
                }
                seen = last;
                me.reload_from_file("file changed").await;
            }
        });
    }
}

/// What tells a changed file: modification time and length.
async fn stamp(file: &Path) -> Option<(SystemTime, u64)> {
    let m = tokio::fs::metadata(file).await.ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_bus::EmbeddedBus;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }

    async fn announce(bus: &Arc<dyn Bus>, text: String) {
        let msg = v1::StudioChanged {
            version: changes::version(&text),
            text,
            origin: "someone-else".into(),
            reason: "test".into(),
        };
        bus.publish_proto(subjects::STUDIO_CHANGED, &msg)
            .await
            .unwrap();
    }

    async fn until(what: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_announced_studio_of_aliases_of_aliases_is_refused_and_a_valid_one_taken() {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio");
        copy_dir(&example, dir.path());
        let file = dir.path().join("concierto.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        let studio = Arc::new(config::load_with_env(&file, Vec::new()).unwrap());
        let live = LiveStudio::new(studio.clone());
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("reload-test."));
        let reloader = Reloader::new(&file, live.clone(), bus.clone());
        let handle = reloader.start();
        let running = reloader.version();
        assert_eq!(running, changes::version(&text));
        tokio::time::sleep(Duration::from_millis(200)).await;

        // Nine lines of aliases the YAML loaders would expand to a billion
        // values (every process that takes it runs out of memory): refused.
        let mut bomb = text.clone();
        bomb.push_str("x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let a = format!("*a{}", i - 1);
            bomb.push_str(&format!("x{i}: &a{i} [{}]\n", vec![a; 10].join(", ")));
        }
        announce(&bus, bomb.clone()).await;
        let refused = changes::version(&bomb);
        assert!(
            until(|| reloader.state.lock().unwrap().refused == refused).await,
            "the bomb was not refused in time"
        );
        assert_eq!(reloader.version(), running);
        assert!(Arc::ptr_eq(&live.get(), &studio));

        // A valid change after it is taken.
        let changed = text.replace("target: 10", "target: 12");
        assert_ne!(changed, text);
        announce(&bus, changed.clone()).await;
        assert!(until(|| reloader.version() == changes::version(&changed)).await);
        assert!(!Arc::ptr_eq(&live.get(), &studio));
        handle.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_changed_partition_count_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio");
        copy_dir(&example, dir.path());
        let file = dir.path().join("concierto.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        let studio = Arc::new(config::load_with_env(&file, Vec::new()).unwrap());
        assert_eq!(studio.server.partitions, 1);
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::new("reload-test."));
        let reloader = Reloader::new(&file, LiveStudio::new(studio), bus);
        let changed = match text.find("\nserver:\n") {
            Some(i) => format!(
                "{}\nserver:\n  partitions: 4\n{}",
                &text[..i],
                &text[i + 9..]
            ),
            None => format!("{text}\nserver:\n  partitions: 4\n"),
        };
        let problems = reloader.take(changed, "test").await.unwrap_err();
        assert!(
            problems.len() == 1
                && problems[0]
                    .contains("server.partitions cannot change while the studio runs (1 → 4)"),
            "{problems:?}"
        );
    }
}
