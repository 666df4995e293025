//! Folder sources: asset folders (`image_database`, `component_library`) and
//! training data. The walk stays inside the configured root: the root is
//! canonicalised, symbolic links are resolved and skipped (with a warning)
//! when they lead outside it, and hidden files are ignored. A file whose size
//! and modification time are those recorded at its last successful ingest is
//! not read again.
//!
//! What leaves a folder leaves the library: after a complete scan, files
//! ingested before and no longer there have their items removed
//! ([`ContentLibrary::remove_source_keys`](concierto_content::ContentLibrary::remove_source_keys));
//! a training-data file read again drops the records it no longer has.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use concierto_content::{Kind, NewItem};
use concierto_core::config::{ContentSource, SourceKind};
use concierto_core::store::Op;

use crate::error::IngestError;
use crate::ingester::{CycleReport, Ingester, blocking};
use crate::{TREE, training};

/// A file found under a source's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// Its canonical path (inside the root).
    pub path: PathBuf,
    /// Its path relative to the root, `/`-separated.
    pub rel: String,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, ns since the Unix epoch (0 when unknown).
    pub mtime_ns: u128,
}

impl FileEntry {
    fn fingerprint(&self) -> String {
        format!("{}:{}", self.len, self.mtime_ns)
    }
}

/// Lists the files under `root`, sorted by relative path, never leaving the
/// root, and whether that is all of them (false when `max_files` cut the
/// scan short, a folder was too deep or could not be read). Warnings name
/// `source`.
pub(crate) fn walk(
    source: &str,
    root: &Path,
    max_depth: usize,
    max_files: usize,
) -> Result<(Vec<FileEntry>, bool), IngestError> {
    let folder_err = |message: String| IngestError::Folder {
        path: root.display().to_string(),
        message,
    };
    let canon = std::fs::canonicalize(root).map_err(|e| folder_err(e.to_string()))?;
    if !canon.is_dir() {
        return Err(folder_err("not a folder".into()));
    }
    let mut out = Vec::new();
    let mut complete = true;
    let mut visited: HashSet<PathBuf> = HashSet::from([canon.clone()]);
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(canon.clone(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(Result::ok).collect(),
            Err(e) => {
                tracing::warn!(source, dir = %dir.display(), error = %e, "folder unreadable; skipped");
                complete = false;
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == ".." {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(ft) = entry.file_type() else { continue };
            let path = if ft.is_symlink() {
                match std::fs::canonicalize(entry.path()) {
                    Ok(target) if target.starts_with(&canon) => target,
                    Ok(target) => {
                        tracing::warn!(source, path = %rel, target = %target.display(), "symbolic link leaves the source's folder; skipped");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(source, path = %rel, error = %e, "broken symbolic link; skipped");
                        continue;
                    }
                }
            } else {
                entry.path()
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth + 1 > max_depth {
                    tracing::warn!(source, path = %rel, max_depth, "folder nested too deep; skipped");
                    complete = false;
                    continue;
                }
                let Ok(dir_canon) = std::fs::canonicalize(&path) else {
                    continue;
                };
                if dir_canon.starts_with(&canon) && visited.insert(dir_canon.clone()) {
                    stack.push((dir_canon, rel, depth + 1));
                }
            } else if meta.is_file() {
                if out.len() >= max_files {
                    tracing::warn!(
                        source,
                        max_files,
                        "too many files in one scan; the rest wait for the next one"
                    );
                    return Ok((out, false));
                }
                let mtime_ns = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                out.push(FileEntry {
                    path,
                    rel,
                    len: meta.len(),
                    mtime_ns,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((out, complete))
}

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadError {
    /// It has more than the limit's bytes (it may have grown since the walk).
    TooLarge(u64),
    /// It could not be opened or read, or is no longer a regular file.
    Io(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(limit) => write!(
                f,
                "larger than the size limit of {limit} bytes (it grew after the folder was walked); skipped"
            ),
            ReadError::Io(e) => f.write_str(e),
        }
    }
}

/// Reads at most `limit` bytes of a regular file: a file with more (however
/// its size looked when the folder was walked) is [`ReadError::TooLarge`],
/// and no more than `limit + 1` bytes are ever held.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(|e| ReadError::Io(e.to_string()))?;
    let meta = file.metadata().map_err(|e| ReadError::Io(e.to_string()))?;
    if !meta.is_file() {
        return Err(ReadError::Io("no longer a regular file".into()));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    // The size known now (capped) as a capacity hint; the read itself is bounded.
    let hint = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(hint);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

/// What a file in an asset folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssetType {
    Image(&'static str),
    Css,
    Html,
    Tokens,
}

fn extension(rel: &str) -> String {
    rel.rsplit('/')
        .next()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn asset_type(rel: &str) -> Option<AssetType> {
    let lower = rel.to_ascii_lowercase();
    Some(match extension(rel).as_str() {
        "png" => AssetType::Image("image/png"),
        "jpg" | "jpeg" => AssetType::Image("image/jpeg"),
        "gif" => AssetType::Image("image/gif"),
        "webp" => AssetType::Image("image/webp"),
        "svg" => AssetType::Image("image/svg+xml"),
        "css" | "scss" | "less" => AssetType::Css,
        "html" | "htm" => AssetType::Html,
        "json" if lower.ends_with(".tokens.json") || lower.contains("token") => AssetType::Tokens,
        _ => return None,
    })
}

/// Folder names above the file, as tags (at most three).
fn folder_tags(rel: &str) -> Vec<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    parts[..parts.len().saturating_sub(1)]
        .iter()
        .take(3)
        .map(|s| s.to_string())
        .collect()
}

/// The items one file yields.
fn items_of(
    source: &ContentSource,
    file: &FileEntry,
    bytes: Vec<u8>,
) -> Result<Vec<NewItem>, String> {
    if source.kind == SourceKind::TrainingData {
        return training::items(source, &file.rel, &bytes);
    }
    let component = source.kind == SourceKind::ComponentLibrary;
    let Some(t) = asset_type(&file.rel) else {
        return Ok(Vec::new());
    };
    let base =
        |kind: Kind| NewItem::new(kind, &source.name, &file.rel).tags(folder_tags(&file.rel));
    Ok(vec![match t {
        AssetType::Image(mt) => base(Kind::Image).bytes(bytes, Some(mt)),
        AssetType::Css => base(Kind::Component).bytes(bytes, Some("text/css")),
        AssetType::Html => base(if component {
            Kind::Component
        } else {
            Kind::Page
        })
        .bytes(bytes, Some("text/html")),
        AssetType::Tokens => {
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("design tokens are not JSON: {e}"))?;
            let css = training::tokens_css(&json);
            base(Kind::Component)
                .text(String::from_utf8_lossy(&bytes).into_owned())
                .bytes(css.into_bytes(), Some("text/css"))
        }
    }])
}

fn seen_key(source: &str, rel: &str) -> Vec<u8> {
    format!("seen/{source}\u{0}{rel}").into_bytes()
}

fn wanted(source: &ContentSource, rel: &str) -> bool {
    if source.kind == SourceKind::TrainingData {
        training::is_data_file(rel)
    } else {
        asset_type(rel).is_some()
    }
}

/// Scans a folder source once.
pub(crate) async fn run(
    ing: &Ingester,
    source: &ContentSource,
    report: &mut CycleReport,
) -> Result<(), IngestError> {
    let opts = ing.opts().clone();
    let root = PathBuf::from(&source.location);
    let name = source.name.clone();
    let (files, complete) =
        blocking(move || walk(&name, &root, opts.max_depth, opts.max_files)).await?;
    let store = ing.store();
    let mut todo = Vec::new();
    let mut present: HashSet<String> = HashSet::new();
    for f in files {
        if !wanted(source, &f.rel) {
            continue;
        }
        present.insert(f.rel.clone());
        if f.len > opts.max_file_bytes {
            tracing::warn!(source = %source.name, path = %f.rel, size = f.len, limit = opts.max_file_bytes, "file larger than the size limit; skipped");
            report.skipped += 1;
            report.too_large += 1;
            continue;
        }
        let seen = store.get(TREE, &seen_key(&source.name, &f.rel))?;
        if seen.as_deref() == Some(f.fingerprint().as_bytes()) {
            report.unmodified += 1;
            continue;
        }
        todo.push(f);
    }
    // Batches of files bounded by count and bytes, read on a blocking thread.
    let mut rest = todo.into_iter().peekable();
    while rest.peek().is_some() {
        let mut chunk = Vec::new();
        let mut bytes = 0u64;
        while let Some(f) = rest.peek() {
            if !chunk.is_empty() && (chunk.len() >= 64 || bytes + f.len > 64 << 20) {
                break;
            }
            bytes += f.len;
            chunk.extend(rest.next());
        }
        let src = source.clone();
        let limit = opts.max_file_bytes;
        let read = blocking(move || {
            Ok(chunk
                .into_iter()
                .map(|f| {
                    let bytes = read_bounded(&f.path, limit);
                    let too_large = matches!(bytes, Err(ReadError::TooLarge(_)));
                    let items = bytes
                        .map_err(|e| e.to_string())
                        .and_then(|b| items_of(&src, &f, b));
                    (f, items, too_large)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let mut all = Vec::new();
        let mut owners = Vec::new();
        for (i, (f, items, too_large)) in read.iter().enumerate() {
            match items {
                Ok(items) => {
                    owners.extend(std::iter::repeat_n(i, items.len()));
                    all.extend(items.iter().cloned());
                }
                Err(e) => {
                    report.skipped += 1;
                    if *too_large {
                        report.too_large += 1;
                    }
                    tracing::warn!(source = %source.name, path = %f.rel, error = %e, "file skipped");
                }
            }
        }
        let read: Vec<_> = read.into_iter().map(|(f, items, _)| (f, items)).collect();
        let results = ing.store_items_of(source, all, report).await?;
        let mut ok = vec![true; read.len()];
        for (r, owner) in results.iter().zip(&owners) {
            if r.is_err() {
                ok[*owner] = false;
            }
        }
        let ops: Vec<Op> = read
            .iter()
            .enumerate()
            .filter(|(i, (_, items))| ok[*i] && items.is_ok())
            .map(|(_, (f, _))| {
                Op::Put(seen_key(&source.name, &f.rel), f.fingerprint().into_bytes())
            })
            .collect();
        store.apply(TREE, ops)?;
        // A data file read again: its records that are no longer in it go.
        if source.kind == SourceKind::TrainingData {
            let mut stale = Vec::new();
            for (i, (f, items)) in read.iter().enumerate() {
                let Ok(items) = items else { continue };
                if !ok[i] {
                    continue;
                }
                let kept: HashSet<&str> = items.iter().map(|n| n.source_key.as_str()).collect();
                let (library, src, prefix) = (
                    ing.library().clone(),
                    source.name.clone(),
                    format!("{}#", f.rel),
                );
                let had = blocking(move || Ok(library.source_keys(&src, &prefix)?)).await?;
                stale.extend(had.into_iter().filter(|k| !kept.contains(k.as_str())));
            }
            ing.remove_keys(&source.name, stale, report).await?;
        }
    }
    if complete {
        forget_deleted(ing, source, &present, report).await?;
    }
    Ok(())
}

/// Removes the items of files ingested before that a complete scan no longer
/// found.
async fn forget_deleted(
    ing: &Ingester,
    source: &ContentSource,
    present: &HashSet<String>,
    report: &mut CycleReport,
) -> Result<(), IngestError> {
    let store = ing.store();
    let prefix = seen_key(&source.name, "");
    let gone: Vec<(Vec<u8>, String)> = store
        .scan_prefix(TREE, &prefix)?
        .into_iter()
        .map(|(k, _)| {
            let rel = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            (k, rel)
        })
        .filter(|(_, rel)| !present.contains(rel))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::new();
    for (_, rel) in &gone {
        if source.kind == SourceKind::TrainingData {
            let (library, src, prefix) = (
                ing.library().clone(),
                source.name.clone(),
                format!("{rel}#"),
            );
            keys.extend(blocking(move || Ok(library.source_keys(&src, &prefix)?)).await?);
        } else {
            keys.push(rel.clone());
        }
    }
    ing.remove_keys(&source.name, keys, report).await?;
    store.apply(TREE, gone.into_iter().map(|(k, _)| Op::Delete(k)).collect())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_types_come_from_extensions() {
        assert_eq!(asset_type("a/b.PNG"), Some(AssetType::Image("image/png")));
        assert_eq!(asset_type("theme.css"), Some(AssetType::Css));
        assert_eq!(asset_type("colors.tokens.json"), Some(AssetType::Tokens));
        assert_eq!(asset_type("notes.txt"), None);
        assert_eq!(folder_tags("logos/dark/a.png"), vec!["logos", "dark"]);
    }

    #[test]
    fn reads_stop_at_the_limit_whatever_the_walk_saw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.css");
        std::fs::write(&path, vec![b'a'; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        // The file grew past the limit after the walk measured it.
        std::fs::write(&path, vec![b'a'; 101]).unwrap();
        assert_eq!(read_bounded(&path, 100), Err(ReadError::TooLarge(100)));
        assert!(matches!(
            read_bounded(&dir.path().join("gone.css"), 100),
            Err(ReadError::Io(_))
        ));
        assert!(matches!(
            read_bounded(dir.path(), 100),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn a_missing_root_is_a_folder_error() {
        let err = walk("s", Path::new("/definitely/not/here"), 4, 10).unwrap_err();
        assert!(matches!(err, IngestError::Folder { .. }));
    }

    #[cfg(unix)]
    #[test]
    fn the_walk_stays_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.png"), b"x").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/a.css"), b"a{}").unwrap();
        std::fs::write(root.path().join(".hidden.css"), b"a{}").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("sub/a.css"),
            root.path().join("inside.css"),
        )
        .unwrap();
        let (files, complete) = walk("s", root.path(), 8, 100).unwrap();
        assert!(complete);
        let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, vec!["inside.css", "sub/a.css"]);
    }
}
