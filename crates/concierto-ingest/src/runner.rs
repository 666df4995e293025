//! One runner per source: reads it when due on the injected clock (its last
//! read is kept in the store, key `last/<source>`), and for `on_update`
//! folders also when the notify watcher reports a change (after a short
//! quiet period). A source that could not be read is tried again after
//! `retry_after`; a rate-limited one after its window resets; a folder that
//! does not exist is looked for at every tick and read as soon as it appears.
//! A failure is logged as a warning once per cause (with what to do), then at
//! debug until the source reads again.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use concierto_core::config::{ContentSource, Refresh, SourceKind};
use concierto_core::service::StopSignal;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::TREE;
use crate::error::IngestError;
use crate::ingester::Ingester;

fn is_folder(kind: SourceKind) -> bool {
    matches!(
        kind,
        SourceKind::ImageDatabase | SourceKind::ComponentLibrary | SourceKind::TrainingData
    )
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

struct Watch {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<()>,
}

fn watch(path: &str) -> Result<Watch, notify::Error> {
    let (tx, events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&PathBuf::from(path), RecursiveMode::Recursive)?;
    Ok(Watch {
        _watcher: watcher,
        events,
    })
}

/// Reads `source` on its refresh until `stop`.
pub(crate) async fn run(ing: Ingester, source: ContentSource, mut stop: StopSignal) {
    let opts = ing.opts().clone();
    let watched = source.refresh == Refresh::OnUpdate && is_folder(source.kind);
    let every = match source.refresh {
        Refresh::Every(d) => d,
        Refresh::Continuous => opts.continuous_every,
        Refresh::OnUpdate if watched => opts.on_update_rescan,
        Refresh::OnUpdate => opts.continuous_every,
    };
    let store = ing.store();
    let last_key = format!("last/{}", source.name).into_bytes();
    let last: Option<DateTime<Utc>> = store
        .get(TREE, &last_key)
        .ok()
        .flatten()
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .and_then(|b| Utc.timestamp_millis_opt(i64::from_be_bytes(b)).single());
    let now = ing.clock().now();
    let mut due = match last {
        Some(l) if !watched => (l + chrono(every)).min(now + chrono(every)),
        _ => now,
    };
    tracing::debug!(source = %source.name, kind = source.kind.as_str(), refresh = ?source.refresh, next = %due.to_rfc3339(), "ingest runner started");
    let mut watcher: Option<Watch> = None;
    // The last failure warned about (warned once, then at debug).
    let mut warned: Option<String> = None;
    // The source's folder did not exist at the last read: looked for at every tick.
    let mut missing = false;
    loop {
        let now = ing.clock().now();
        if missing && is_folder(source.kind) && std::path::Path::new(&source.location).is_dir() {
            tracing::info!(source = %source.name, path = %source.location, "the folder is there now; reading it");
            missing = false;
            due = now;
        }
        if now >= due {
            if watched && watcher.is_none() && std::path::Path::new(&source.location).is_dir() {
                match watch(&source.location) {
                    Ok(w) => watcher = Some(w),
                    Err(e) => once(
                        &mut warned,
                        format!("watch: {e}"),
                        || tracing::warn!(source = %source.name, path = %source.location, error = %e, "cannot watch the folder; it is scanned on its refresh instead"),
                        || tracing::debug!(source = %source.name, error = %e, "cannot watch the folder"),
                    ),
                }
            }
            due = match ing.run_once(&source).await {
                Ok(report) => {
                    if report.new + report.changed + report.skipped > 0 {
                        tracing::info!(source = %source.name, new = report.new, changed = report.changed, unchanged = report.unchanged, skipped = report.skipped, "source read");
                    }
                    if warned.take().is_some() {
                        tracing::info!(source = %source.name, "source read again");
                    }
                    let _ = store.put(TREE, &last_key, &now.timestamp_millis().to_be_bytes());
                    now + chrono(every)
                }
                Err(IngestError::RateLimited { until }) => {
                    tracing::info!(source = %source.name, until = %until.to_rfc3339(), "rate limited; reading again after the reset");
                    until.max(now + chrono(opts.tick))
                }
                Err(e) => {
                    missing =
                        is_folder(source.kind) && !std::path::Path::new(&source.location).exists();
                    let text = e.to_string();
                    once(
                        &mut warned,
                        text.clone(),
                        || tracing::warn!(source = %source.name, error = %text, "source could not be read; tried again later (this warning is not repeated for the same cause)"),
                        || tracing::debug!(source = %source.name, error = %text, "source could not be read"),
                    );
                    now + chrono(opts.retry_after.min(every))
                }
            };
        }
        let changed = async {
            match watcher.as_mut() {
                Some(w) => w.events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.stopped() => break,
            ev = changed => match ev {
                Some(()) => {
                    // Let a burst of changes settle, then read once.
                    tokio::time::sleep(opts.debounce).await;
                    if let Some(w) = watcher.as_mut() {
                        while w.events.try_recv().is_ok() {}
                    }
                    due = ing.clock().now();
                }
                None => watcher = None,
            },
            _ = tokio::time::sleep(opts.tick) => {}
        }
    }
    tracing::debug!(source = %source.name, "ingest runner stopped");
}

/// Calls `first` when `cause` is not the one last warned about (and keeps
/// it), else `again`.
fn once(warned: &mut Option<String>, cause: String, first: impl FnOnce(), again: impl FnOnce()) {
    if warned.as_deref() == Some(cause.as_str()) {
        again();
    } else {
        first();
        *warned = Some(cause);
    }
}
