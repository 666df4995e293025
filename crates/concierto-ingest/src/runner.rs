//! One actor per source ([`SourceActor`]): reads it when due on the injected
//! clock (its last read is kept in the store, key `last/<source>`), and for
//! `on_update` folders also when the notify watcher reports a change (after a
//! short quiet period). A source that could not be read is tried again after
//! `retry_after`; a rate-limited one after its window resets; a folder that
//! does not exist is looked for at every tick and read as soon as it appears.
//! A failure is logged as a warning once per cause (with what to do), then at
//! debug until the source reads again.
//!
//! Each read runs in its own tokio task (the actor waits for it, taking no
//! other message meanwhile): a read that panics ends the actor, which tells
//! the [`IngestSupervisor`](crate::supervisor::IngestSupervisor); it starts
//! the source again after its backoff.

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{ContentSource, Refresh, SourceKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::TREE;
use crate::error::IngestError;
use crate::ingester::{CycleReport, Ingester};
use crate::supervisor::{Reporter, Stop, panic_text};

fn is_folder(kind: SourceKind) -> bool {
    matches!(
        kind,
        SourceKind::ImageDatabase | SourceKind::ComponentLibrary | SourceKind::TrainingData
    )
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Starts watching `path`; its changes come as items of the returned stream.
fn watch(
    path: &str,
) -> Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<()>), notify::Error> {
    let (tx, events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&PathBuf::from(path), RecursiveMode::Recursive)?;
    Ok((watcher, events))
}

/// A change seen by the folder's watcher.
struct FolderChanged;

/// Reads one source on its refresh until stopped.
pub(crate) struct SourceActor {
    ing: Ingester,
    source: ContentSource,
    reporter: Reporter,
    /// An `on_update` folder: a watcher besides the refresh.
    watched: bool,
    every: Duration,
    last_key: Vec<u8>,
    due: DateTime<Utc>,
    watcher: Option<notify::RecommendedWatcher>,
    /// A change was seen; the read waits for the quiet period.
    settling: bool,
    /// The last failure warned about (warned once, then at debug).
    warned: Option<String>,
    /// The source's folder did not exist at the last read: looked for at every tick.
    missing: bool,
}

impl SourceActor {
    pub(crate) fn new(ing: Ingester, source: ContentSource, reporter: Reporter) -> Self {
        let opts = ing.opts();
        let watched = source.refresh == Refresh::OnUpdate && is_folder(source.kind);
        let every = match source.refresh {
            Refresh::Every(d) => d,
            Refresh::Continuous => opts.continuous_every,
            Refresh::OnUpdate if watched => opts.on_update_rescan,
            Refresh::OnUpdate => opts.continuous_every,
        };
        let last_key = format!("last/{}", source.name).into_bytes();
        let last: Option<DateTime<Utc>> = ing
            .store()
            .get(TREE, &last_key)
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .and_then(|b| Utc.timestamp_millis_opt(i64::from_be_bytes(b)).single());
        let now = ing.clock().now();
        let due = match last {
            Some(l) if !watched => (l + chrono(every)).min(now + chrono(every)),
            _ => now,
        };
        SourceActor {
            ing,
            source,
            reporter,
            watched,
            every,
            last_key,
            due,
            watcher: None,
            settling: false,
            warned: None,
            missing: false,
        }
    }

    /// Reads the source when it is due (and no read is under way).
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if ctx.waiting() || ctx.state() != ActorState::Running {
            return;
        }
        let now = self.ing.clock().now();
        let kind = self.source.kind;
        let location = self.source.location.clone();
        if self.missing && is_folder(kind) && std::path::Path::new(&location).is_dir() {
            tracing::info!(source = %self.source.name, path = %location, "the folder is there now; reading it");
            self.missing = false;
            self.due = now;
        }
        if now < self.due {
            return;
        }
        if self.watched && self.watcher.is_none() && std::path::Path::new(&location).is_dir() {
            match watch(&location) {
                Ok((w, events)) => {
                    self.watcher = Some(w);
                    let changes = futures::stream::unfold(events, |mut rx| async move {
                        rx.recv().await.map(|()| (FolderChanged, rx))
                    });
                    ctx.add_stream(changes);
                }
                Err(e) => {
                    let name = self.source.name.clone();
                    once(
                        &mut self.warned,
                        format!("watch: {e}"),
                        || tracing::warn!(source = %name, path = %location, error = %e, "cannot watch the folder; it is scanned on its refresh instead"),
                        || tracing::debug!(source = %name, error = %e, "cannot watch the folder"),
                    )
                }
            }
        }
        let (ing, source) = (self.ing.clone(), self.source.clone());
        let hook = self.ing.opts().before_read.clone();
        let read = tokio::spawn(async move {
            if let Some(hook) = hook {
                hook.call(&source.name);
            }
            ing.run_once(&source).await
        });
        ctx.wait(
            fut::wrap_future::<_, Self>(read).map(move |result, act, ctx| match result {
                Ok(result) => act.after_read(result, now),
                Err(e) => {
                    act.reporter.panicked(panic_text(e));
                    ctx.stop();
                }
            }),
        );
    }

    /// Schedules the next read after one that started at `now`.
    fn after_read(&mut self, result: Result<CycleReport, IngestError>, now: DateTime<Utc>) {
        let name = self.source.name.clone();
        let opts = self.ing.opts();
        self.due = match result {
            Ok(report) => {
                if report.new + report.changed + report.skipped > 0 {
                    tracing::info!(source = %name, new = report.new, changed = report.changed, unchanged = report.unchanged, skipped = report.skipped, "source read");
                }
                if self.warned.take().is_some() {
                    tracing::info!(source = %name, "source read again");
                }
                let _ = self.ing.store().put(
                    TREE,
                    &self.last_key,
                    &now.timestamp_millis().to_be_bytes(),
                );
                now + chrono(self.every)
            }
            Err(IngestError::RateLimited { until }) => {
                tracing::info!(source = %name, until = %until.to_rfc3339(), "rate limited; reading again after the reset");
                until.max(now + chrono(opts.tick))
            }
            Err(e) => {
                self.missing = is_folder(self.source.kind)
                    && !std::path::Path::new(&self.source.location).exists();
                let text = e.to_string();
                once(
                    &mut self.warned,
                    text.clone(),
                    || tracing::warn!(source = %name, error = %text, "source could not be read; tried again later (this warning is not repeated for the same cause)"),
                    || tracing::debug!(source = %name, error = %text, "source could not be read"),
                );
                now + chrono(opts.retry_after.min(self.every))
            }
        };
    }
}

impl Actor for SourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(source = %self.source.name, kind = self.source.kind.as_str(), refresh = ?self.source.refresh, next = %self.due.to_rfc3339(), "ingest source started");
        ctx.run_interval(self.ing.opts().tick, |act, ctx| act.poll(ctx));
        self.poll(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::debug!(source = %self.source.name, "ingest source stopped");
    }
}

impl StreamHandler<FolderChanged> for SourceActor {
    fn handle(&mut self, _: FolderChanged, ctx: &mut Self::Context) {
        // Let a burst of changes settle, then read once.
        if self.settling {
            return;
        }
        self.settling = true;
        ctx.run_later(self.ing.opts().debounce, |act, ctx| {
            act.settling = false;
            act.due = act.ing.clock().now();
            act.poll(ctx);
        });
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The watcher is gone (not the actor): it is made again at the next read.
        self.watcher = None;
    }
}

impl Handler<Stop> for SourceActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Calls `first` when `cause` is not the one last warned about (and keeps
/// it), else `again`.
pub(crate) fn once(
    warned: &mut Option<String>,
    cause: String,
    first: impl FnOnce(),
    again: impl FnOnce(),
) {
    if warned.as_deref() == Some(cause.as_str()) {
        again();
    } else {
        first();
        *warned = Some(cause);
    }
}
