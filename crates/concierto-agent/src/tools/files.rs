//! `Read`, `Grep` and `Glob`: read-only access to the folders a role may
//! read — the `location` of each folder source (`image_database`,
//! `component_library`, `training_data`) whose `role` is this role, and the
//! studio's brand folder (`<base_dir>/brand`).
//!
//! A path is relative to one of those roots or absolute inside one. It is
//! checked twice: as written (`..` resolved without touching the disk) and
//! after the file system resolved it (symbolic links), so `../`, an absolute
//! path elsewhere and a link pointing out are all refused with
//! "refused: <path> is outside the folders this role may read: …". Walks do
//! not follow symbolic links and skip hidden entries (`.git`).
//!
//! Limits: `Read` reads at most [`MAX_READ_BYTES`] of a file (the rest is
//! said, `offset`/`limit` pick lines) and refuses binary files; `Grep` looks
//! at most at [`MAX_WALK_FILES`] files and [`MAX_GREP_BYTES`] in all, a
//! pattern of at most [`MAX_PATTERN_BYTES`], and answers at most
//! [`MAX_MATCHES`] lines; `Glob` answers at most [`MAX_GLOB_RESULTS`] paths.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use concierto_core::config::{SourceKind, Studio};
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::args::{self, schema};
use super::{Tool, ToolCx, ToolError, ToolSpec};
use crate::builtin::BRAND_DIR;

/// Most bytes of one file `Read` (and `Grep`) reads.
pub const MAX_READ_BYTES: u64 = 1 << 20;
/// Lines `Read` answers unless `limit` says otherwise.
pub const DEFAULT_READ_LINES: u64 = 2000;
/// Longest line `Read` and `Grep` show (longer ones are cut).
pub const MAX_LINE_CHARS: usize = 2000;
/// Most files one walk (`Grep`, `Glob`) looks at.
pub const MAX_WALK_FILES: usize = 5000;
/// Most bytes `Grep` reads in all.
pub const MAX_GREP_BYTES: u64 = 32 << 20;
/// Longest `Grep` or `Glob` pattern.
pub const MAX_PATTERN_BYTES: usize = 1000;
/// Most matching lines `Grep` answers.
pub const MAX_MATCHES: usize = 200;
/// Most paths `Glob` answers.
pub const MAX_GLOB_RESULTS: usize = 500;
/// Deepest folder nesting walked.
pub const MAX_DEPTH: usize = 32;
/// Longest path accepted.
const MAX_PATH_BYTES: usize = 4096;

/// The folders one role may read, resolved (folders that do not exist are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

impl Roots {
    /// These folders (each resolved; those that do not exist are left out).
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut roots: Vec<PathBuf> = dirs
            .into_iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .filter(|d| d.is_dir())
            .collect();
        roots.sort();
        roots.dedup();
        Roots { roots }
    }

    /// The folders `role` may read in `studio`: its folder sources'
    /// locations (absolute, relative to the working directory as the
    /// ingester reads them, or else to the studio file's folder) and the
    /// brand folder.
    pub fn for_role(studio: &Studio, role: &str) -> Self {
        let mut dirs = Vec::new();
        for s in studio.content_sources.iter().filter(|s| {
            s.role == role
                && matches!(
                    s.kind,
                    SourceKind::ImageDatabase
                        | SourceKind::ComponentLibrary
                        | SourceKind::TrainingData
                )
        }) {
            let p = PathBuf::from(&s.location);
            if p.is_absolute() || p.is_dir() {
                dirs.push(p);
            } else {
                dirs.push(studio.base_dir.join(p));
            }
        }
        dirs.push(studio.base_dir.join(BRAND_DIR));
        Roots::new(dirs)
    }

    /// The folders, resolved.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.roots
    }

    fn list(&self) -> String {
        if self.roots.is_empty() {
            return "(none: this role reads no folder)".into();
        }
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn refused(&self, path: &str) -> ToolError {
        ToolError::new(format!(
            "refused: {path} is outside the folders this role may read: {}",
            self.list()
        ))
    }

    fn inside(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
    }

    /// `path` resolved inside a root (it must exist), or why not.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ToolError> {
        if path.trim().is_empty() {
            return Err(ToolError::new("the path is empty"));
        }
        if path.len() > MAX_PATH_BYTES || path.contains('\0') {
            return Err(ToolError::new("the path is too long or not text"));
        }
        let given = Path::new(path);
        let candidates: Vec<PathBuf> = if given.is_absolute() {
            vec![lexical(given)]
        } else {
            self.roots.iter().map(|r| lexical(&r.join(given))).collect()
        };
        let mut missing = false;
        for c in candidates.iter().filter(|c| self.inside(c)) {
            match std::fs::canonicalize(c) {
                Ok(real) if self.inside(&real) => return Ok(real),
                Ok(_) => return Err(self.refused(path)),
                Err(_) => missing = true,
            }
        }
        if missing {
            Err(ToolError::new(format!(
                "no such file or folder: {path} (in {})",
                self.list()
            )))
        } else {
            Err(self.refused(path))
        }
    }
}

/// `p` with `.` and `..` resolved as text (never above the root).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The first `max` bytes of `path`, and its size.
fn read_head(path: &Path, max: u64) -> Result<(Vec<u8>, u64), std::io::Error> {
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok((buf, size))
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.iter().take(8192).any(|&b| b == 0)
}

fn short_line(line: &str) -> String {
    if line.chars().count() <= MAX_LINE_CHARS {
        return line.to_string();
    }
    let mut s: String = line.chars().take(MAX_LINE_CHARS).collect();
    s.push_str(" […]");
    s
}

/// Files (not folders) under `start` (or `start` itself when a file), in
/// order, without following links or entering hidden folders; at most
/// `max` (true when stopped there).
fn walk(start: &Path, max: usize) -> (Vec<PathBuf>, bool) {
    if start.is_file() {
        return (vec![start.to_path_buf()], false);
    }
    let mut out = Vec::new();
    let mut stack = vec![(start.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        let mut files = Vec::new();
        for e in entries {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            } else if ft.is_file() {
                files.push(e.path());
            }
        }
        files.reverse();
        for f in files {
            if out.len() >= max {
                return (out, true);
            }
            out.push(f);
        }
    }
    (out, false)
}

/// A glob (`*`, `?`, `**`, `{a,b}`, `[abc]`) as an anchored regex over `/`-separated paths.
pub fn glob_regex(glob: &str) -> Result<Regex, ToolError> {
    if glob.len() > MAX_PATTERN_BYTES {
        return Err(ToolError::new(format!(
            "the pattern is over {MAX_PATTERN_BYTES} bytes"
        )));
    }
    let mut re = String::from("^");
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    let mut braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            ',' if braces > 0 => re.push('|'),
            '[' => match chars[i..].iter().position(|&x| x == ']') {
                Some(end) if end > 1 => {
                    let class: String = chars[i + 1..i + end].iter().collect();
                    let class = class.replace('\\', "\\\\").replacen('!', "^", 1);
                    re.push('[');
                    re.push_str(&class);
                    re.push(']');
                    i += end + 1;
                    continue;
                }
                _ => re.push_str("\\["),
            },
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    if braces > 0 {
        return Err(ToolError::new(format!(
            "unclosed {{ in the pattern {glob:?}"
        )));
    }
    re.push('$');
    RegexBuilder::new(&re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ToolError::new(format!("bad pattern {glob:?}: {e}")))
}

/// `file` relative to `base`, with `/` separators.
fn relative(file: &Path, base: &Path) -> String {
    let rel = file.strip_prefix(base).unwrap_or(file);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `Read` {file_path, offset?, limit?}.
#[derive(Debug, Clone)]
pub struct ReadTool {
    roots: Roots,
}

impl ReadTool {
    /// Reading inside `roots`.
    pub fn new(roots: Roots) -> Self {
        ReadTool { roots }
    }

    fn read(&self, args: &Value) -> Result<String, ToolError> {
        let m = args::object(args)?;
        let path = args::text(m, "file_path", MAX_PATH_BYTES)?;
        let offset = args::opt_count(m, "offset", 1, u64::from(u32::MAX))?.unwrap_or(1);
        let limit = args::opt_count(m, "limit", 1, 100_000)?.unwrap_or(DEFAULT_READ_LINES);
        let real = self.roots.resolve(path)?;
        if real.is_dir() {
            return Err(ToolError::new(format!(
                "{path} is a folder: use Glob to list it"
            )));
        }
        let (bytes, size) = read_head(&real, MAX_READ_BYTES)
            .map_err(|e| ToolError::new(format!("cannot read {path}: {e}")))?;
        if is_binary(&bytes) {
            return Err(ToolError::new(format!(
                "{path} is a binary file ({size} bytes); only text files are read"
            )));
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut out = String::new();
        let mut shown = 0u64;
        let mut total = 0u64;
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            total = n;
            if n < offset || shown >= limit {
                continue;
            }
            out.push_str(&format!("{n:>6}\t{}\n", short_line(line)));
            shown += 1;
        }
        if shown == 0 && total > 0 {
            out.push_str(&format!(
                "(nothing from line {offset}: the file has {total} lines)\n"
            ));
        } else if total == 0 {
            out.push_str("(the file is empty)\n");
        }
        if size > MAX_READ_BYTES {
            out.push_str(&format!(
                "[the file is {size} bytes; only its first {MAX_READ_BYTES} bytes were read]\n"
            ));
        } else if offset + shown <= total {
            out.push_str(&format!(
                "[lines {offset} to {} of {total}; pass offset and limit for more]\n",
                offset + shown - 1
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl Tool for ReadTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "Read".into(),
            description: format!(
                "Read a text file from the folders this role may read ({}). Lines come numbered. \
                 Paths are relative to one of those folders or absolute inside one.",
                self.roots.list()
            ),
            input_schema: schema(
                &[
                    ("file_path", "string", "The file to read."),
                    ("offset", "integer", "First line to show (1-based)."),
                    ("limit", "integer", "Most lines to show (default 2000)."),
                ],
                &["file_path"],
            ),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read(&args))
            .await
            .map_err(|e| ToolError::new(format!("Read failed: {e}")))?
    }
}

/// `Grep` {pattern, path?, glob?}.
#[derive(Debug, Clone)]
pub struct GrepTool {
    roots: Roots,
}

impl GrepTool {
    /// Searching inside `roots`.
    pub fn new(roots: Roots) -> Self {
        GrepTool { roots }
    }

    fn grep(&self, args: &Value) -> Result<String, ToolError> {
        let m = args::object(args)?;
        let pattern = args::text(m, "pattern", MAX_PATTERN_BYTES)?;
        let re = RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| ToolError::new(format!("bad regular expression: {e}")))?;
        let filter = args::opt_text(m, "glob", MAX_PATTERN_BYTES)?
            .map(glob_regex)
            .transpose()?;
        let starts: Vec<PathBuf> = match args::opt_text(m, "path", MAX_PATH_BYTES)? {
            Some(p) => vec![self.roots.resolve(p)?],
            None => self.roots.dirs().to_vec(),
        };
        let mut out = String::new();
        let (mut matches, mut files, mut bytes) = (0usize, 0usize, 0u64);
        let mut stopped: Option<String> = None;
        'walk: for start in &starts {
            let (list, capped) = walk(start, MAX_WALK_FILES.saturating_sub(files));
            if capped {
                stopped = Some(format!("looked at the first {MAX_WALK_FILES} files only"));
            }
            for f in list {
                let rel = relative(&f, start);
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(g) = &filter
                    && !g.is_match(&rel)
                    && !g.is_match(&name)
                {
                    continue;
                }
                files += 1;
                if bytes >= MAX_GREP_BYTES {
                    stopped = Some(format!("read {MAX_GREP_BYTES} bytes in all; stopped"));
                    break 'walk;
                }
                let Ok((data, _)) = read_head(&f, MAX_READ_BYTES.min(MAX_GREP_BYTES - bytes))
                else {
                    continue;
                };
                bytes += data.len() as u64;
                if is_binary(&data) {
                    continue;
                }
                let text = String::from_utf8_lossy(&data);
                for (i, line) in text.lines().enumerate() {
                    if re.is_match(line) {
                        if matches >= MAX_MATCHES {
                            stopped = Some(format!("showing the first {MAX_MATCHES} matches"));
                            break 'walk;
                        }
                        matches += 1;
                        out.push_str(&format!(
                            "{}:{}: {}\n",
                            f.display(),
                            i + 1,
                            short_line(line)
                        ));
                    }
                }
            }
        }
        if matches == 0 {
            out.push_str(&format!("no match in {files} files\n"));
        }
        if let Some(s) = stopped {
            out.push_str(&format!("[{s}]\n"));
        }
        Ok(out)
    }
}

#[async_trait]
impl Tool for GrepTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "Grep".into(),
            description: format!(
                "Search text files in the folders this role may read ({}) for a regular \
                 expression; answers path:line: text.",
                self.roots.list()
            ),
            input_schema: schema(
                &[
                    (
                        "pattern",
                        "string",
                        "A regular expression (Rust regex syntax).",
                    ),
                    (
                        "path",
                        "string",
                        "A file or folder to search (default: all of them).",
                    ),
                    (
                        "glob",
                        "string",
                        "Only files matching this glob, e.g. *.md.",
                    ),
                ],
                &["pattern"],
            ),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.grep(&args))
            .await
            .map_err(|e| ToolError::new(format!("Grep failed: {e}")))?
    }
}

/// `Glob` {pattern, path?}.
#[derive(Debug, Clone)]
pub struct GlobTool {
    roots: Roots,
}

impl GlobTool {
    /// Listing inside `roots`.
    pub fn new(roots: Roots) -> Self {
        GlobTool { roots }
    }

    fn glob(&self, args: &Value) -> Result<String, ToolError> {
        let m = args::object(args)?;
        let pattern = args::text(m, "pattern", MAX_PATTERN_BYTES)?;
        let re = glob_regex(pattern)?;
        let starts: Vec<PathBuf> = match args::opt_text(m, "path", MAX_PATH_BYTES)? {
            Some(p) => vec![self.roots.resolve(p)?],
            None => self.roots.dirs().to_vec(),
        };
        let mut found = Vec::new();
        let mut note = None;
        for start in &starts {
            let (list, capped) = walk(start, MAX_WALK_FILES);
            if capped {
                note = Some(format!(
                    "looked at the first {MAX_WALK_FILES} files of {}",
                    start.display()
                ));
            }
            for f in list {
                if re.is_match(&relative(&f, start)) {
                    found.push(f.display().to_string());
                }
            }
        }
        found.sort();
        let total = found.len();
        found.truncate(MAX_GLOB_RESULTS);
        let mut out = if total == 0 {
            "no file matches\n".to_string()
        } else {
            found.join("\n") + "\n"
        };
        if total > MAX_GLOB_RESULTS {
            out.push_str(&format!(
                "[{total} files match; the first {MAX_GLOB_RESULTS} shown]\n"
            ));
        }
        if let Some(n) = note {
            out.push_str(&format!("[{n}]\n"));
        }
        Ok(out)
    }
}

#[async_trait]
impl Tool for GlobTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "Glob".into(),
            description: format!(
                "List files matching a glob (*, **, ?, {{a,b}}) in the folders this role may read ({}).",
                self.roots.list()
            ),
            input_schema: schema(
                &[
                    (
                        "pattern",
                        "string",
                        "A glob such as **/*.md, relative to the folder.",
                    ),
                    (
                        "path",
                        "string",
                        "The folder to look in (default: all of them).",
                    ),
                ],
                &["pattern"],
            ),
        }
    }

    async fn call(&self, args: Value, _cx: &ToolCx) -> Result<String, ToolError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.glob(&args))
            .await
            .map_err(|e| ToolError::new(format!("Glob failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_translate() {
        let re = glob_regex("**/*.md").unwrap();
        assert!(re.is_match("a.md") && re.is_match("x/y/a.md") && !re.is_match("a.mdx"));
        let re = glob_regex("*.{png,jpg}").unwrap();
        assert!(re.is_match("a.png") && re.is_match("b.jpg") && !re.is_match("d/a.png"));
        assert!(glob_regex("{a,b").is_err());
        assert_eq!(
            lexical(Path::new("/a/b/../../../etc")),
            PathBuf::from("/etc")
        );
    }
}
