//! The first-run admin of `concierto up`: a studio whose reviewers have no
//! token would lock its one user out of the dashboard and the CLI, so `up`
//! (never `serve`) makes a local admin for it.
//!
//! ```text
//!  no reviewer with a token_sha256 in the studio file
//!     │
//!     ├─ <data>/first-run/admin.sha256 missing (or --new-token)
//!     │     a new token (as `concierto token new`), its SHA-256 written there
//!     │     (0600, temp file + rename), the token printed ONCE on stdout:
//!     │     the dashboard's sign-in link (`/login#token=...`) and the CLI's
//!     │     environment; never logged
//!     └─ present: the stored hash is used, a one-line hint printed
//!
//!  the studio in memory (never the file), at start and on every reload:
//!     reviewers.local-admin { name "Studio owner", roles [admin], token_sha256 }
//!     and local-admin among every quality gate's reviewers
//! ```
//!
//! When the studio file gives any reviewer a token, first-run mode is off:
//! no local admin (also when a reload adds the first token).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use concierto_core::config::{Reviewer, Studio};

/// The local admin's reviewer id.
pub const LOCAL_ADMIN: &str = "local-admin";
/// Where, under the data folder, the local admin's token hash is kept.
pub const HASH_FILE: &str = "first-run/admin.sha256";

/// The first-run admin of this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRun {
    /// SHA-256 (hex) of the local admin's token.
    pub hash: String,
    /// The token, when it was made by this start (to print once).
    pub new_token: Option<String>,
    /// The file the hash is kept in.
    pub file: PathBuf,
}

/// Whether the studio file gives any reviewer a token (first-run mode off).
pub fn file_has_tokens(studio: &Studio) -> bool {
    // Every reviewer counts, `local-admin` too: a file that names one with a
    // token of its own is a file that gives tokens (its entry is never replaced).
    studio.reviewers.values().any(|r| r.token_sha256.is_some())
}

/// The first-run admin for `studio` with its data under `data_dir`: `None`
/// when the studio file gives a reviewer a token; else the stored hash, or a
/// new token (also when `rotate`) whose hash is stored first.
pub fn prepare(studio: &Studio, data_dir: &Path, rotate: bool) -> anyhow::Result<Option<FirstRun>> {
    if file_has_tokens(studio) {
        tracing::info!("first-run mode is off: the studio file gives reviewers their tokens");
        return Ok(None);
    }
    let file = data_dir.join(HASH_FILE);
    if !rotate && let Some(hash) = read_hash(&file)? {
        return Ok(Some(FirstRun {
            hash,
            new_token: None,
            file,
        }));
    }
    let token = crate::local_cmds::new_token();
    let hash = concierto_admin::token_sha256(&token);
    write_private(&file, format!("{hash}\n").as_bytes()).with_context(|| {
        format!(
            "storing the first-run admin's token hash in {}",
            file.display()
        )
    })?;
    tracing::info!(file = %file.display(), "first-run admin token made (printed on stdout, not logged)");
    Ok(Some(FirstRun {
        hash,
        new_token: Some(token),
        file,
    }))
}

/// The stored hash, if the file holds one (64 hex characters); a file with
/// anything else is treated as absent (a new token replaces it).
fn read_hash(file: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    // Bounded: a hash is 64 characters.
    let text = String::from_utf8_lossy(&text[..text.len().min(256)])
        .trim()
        .to_ascii_lowercase();
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(Some(text))
    } else {
        tracing::warn!(file = %file.display(), "the first-run token hash is not a SHA-256; a new token is made");
        Ok(None)
    }
}

/// Writes `bytes` to `file` atomically (a temp file beside it, then a
/// rename), readable by its owner only.
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("admin"),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, file)
}

/// `studio` with the local admin (hash `hash`) among its reviewers and every
/// quality gate's, unless its file gives a reviewer a token.
pub fn overlay(mut studio: Studio, hash: &str) -> Studio {
    // A token other than this overlay's own (a studio overlaid already) means
    // the file gives tokens: no local admin.
    let other_token = studio.reviewers.iter().any(|(id, r)| {
        r.token_sha256
            .as_deref()
            .is_some_and(|t| id != LOCAL_ADMIN || t != hash)
    });
    if other_token {
        return studio;
    }
    studio.reviewers.insert(
        LOCAL_ADMIN.to_string(),
        Reviewer {
            id: LOCAL_ADMIN.to_string(),
            name: "Studio owner".to_string(),
            token_sha256: Some(hash.to_string()),
            roles: vec!["admin".to_string()],
            ..Default::default()
        },
    );
    for gate in &mut studio.feedback_loops.quality_gates {
        if !gate.reviewers.iter().any(|r| r == LOCAL_ADMIN) {
            gate.reviewers.push(LOCAL_ADMIN.to_string());
        }
    }
    studio
}

/// The overlay of `first_run` as a function of a studio (for the reloader).
pub fn overlay_fn(first_run: &FirstRun) -> Arc<dyn Fn(Studio) -> Studio + Send + Sync> {
    let hash = first_run.hash.clone();
    Arc::new(move |s| overlay(s, &hash))
}

/// `http://` + a listening address a browser on this machine reaches (an
/// unspecified address becomes 127.0.0.1).
fn http_base(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Ok(a) => format!("http://{a}"),
        Err(_) => format!("http://{addr}"),
    }
}

/// What `up` prints on stdout about the first-run admin: the sign-in link
/// and the CLI's environment for a new token, else a one-line hint.
pub fn message(first_run: &FirstRun, studio: &Studio) -> String {
    match &first_run.new_token {
        Some(token) => format!(
            "Signed-in link (first run): {}/login#token={token}\n\
             CLI: export CONCIERTO_SERVER={} CONCIERTO_TOKEN={token}\n\
             (shown once; its hash is kept in {}; `concierto up --new-token` makes a new one)",
            http_base(&studio.server.dashboard_addr),
            http_base(&studio.server.grpc_addr),
            first_run.file.display(),
        ),
        None => format!(
            "First-run admin: the token made on the first start still signs you in \
             (its hash is in {}); `concierto up --new-token` makes a new one and prints its link.",
            first_run.file.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Studio {
        concierto_core::config::load_with_env(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/concierto.yaml"),
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn the_token_is_made_once_stored_private_and_rotated_on_request() {
        let studio = example();
        let data = tempfile::tempdir().unwrap();
        let first = prepare(&studio, data.path(), false).unwrap().unwrap();
        let token = first.new_token.clone().unwrap();
        assert_eq!(first.hash, concierto_admin::token_sha256(&token));
        let stored = std::fs::read_to_string(data.path().join(HASH_FILE)).unwrap();
        assert_eq!(stored.trim(), first.hash);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(data.path().join(HASH_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = prepare(&studio, data.path(), false).unwrap().unwrap();
        assert_eq!(
            (again.hash.as_str(), again.new_token.as_deref()),
            (first.hash.as_str(), None)
        );
        let rotated = prepare(&studio, data.path(), true).unwrap().unwrap();
        assert_ne!(rotated.hash, first.hash);
        assert!(rotated.new_token.is_some());
        // Garbage in the file: a new token, not a crash.
        std::fs::write(data.path().join(HASH_FILE), vec![b'x'; 100_000]).unwrap();
        let fresh = prepare(&studio, data.path(), false).unwrap().unwrap();
        assert!(fresh.new_token.is_some());
    }

    #[test]
    fn the_overlay_adds_the_admin_to_every_gate_unless_the_file_has_tokens() {
        let studio = example();
        let gates = studio.feedback_loops.quality_gates.len();
        assert!(gates > 0);
        let s = overlay(studio.clone(), "ab");
        let admin = &s.reviewers[LOCAL_ADMIN];
        assert_eq!(admin.roles, ["admin"]);
        assert_eq!(admin.token_sha256.as_deref(), Some("ab"));
        assert!(
            s.feedback_loops.quality_gates.iter().all(|g| g
                .reviewers
                .iter()
                .filter(|r| *r == LOCAL_ADMIN)
                .count()
                == 1)
        );
        // Applied again (a reload of the same studio): still once.
        let twice = overlay(s, "ab");
        assert!(
            twice.feedback_loops.quality_gates.iter().all(|g| g
                .reviewers
                .iter()
                .filter(|r| *r == LOCAL_ADMIN)
                .count()
                == 1)
        );

        // A file's own `local-admin` with its own token is left alone.
        let mut own = studio.clone();
        own.reviewers.insert(
            LOCAL_ADMIN.to_string(),
            Reviewer {
                id: LOCAL_ADMIN.to_string(),
                token_sha256: Some("mine".into()),
                roles: vec!["reviewer".into()],
                ..Default::default()
            },
        );
        let kept = overlay(own, "ab");
        assert_eq!(
            kept.reviewers[LOCAL_ADMIN].token_sha256.as_deref(),
            Some("mine")
        );
        assert_eq!(kept.reviewers[LOCAL_ADMIN].roles, ["reviewer"]);

        let mut with_token = studio;
        if let Some(r) = with_token.reviewers.values_mut().next() {
            r.token_sha256 = Some("cd".into());
        }
        let s = overlay(with_token, "ab");
        assert!(!s.reviewers.contains_key(LOCAL_ADMIN));
        let data = tempfile::tempdir().unwrap();
        assert_eq!(prepare(&s, data.path(), false).unwrap(), None);
        assert!(!data.path().join(HASH_FILE).exists());
    }

    #[test]
    fn the_link_points_at_the_dashboard_a_browser_here_reaches() {
        let mut studio = example();
        studio.server.dashboard_addr = "0.0.0.0:9082".into();
        let fr = FirstRun {
            hash: "h".into(),
            new_token: Some("t0k".into()),
            file: PathBuf::from("data/first-run/admin.sha256"),
        };
        let m = message(&fr, &studio);
        assert!(
            m.starts_with("Signed-in link (first run): http://127.0.0.1:9082/login#token=t0k\n"),
            "{m}"
        );
        assert!(
            m.contains("CLI: export CONCIERTO_SERVER=http://127.0.0.1:50051 CONCIERTO_TOKEN=t0k"),
            "{m}"
        );
        let hint = message(
            &FirstRun {
                new_token: None,
                ..fr
            },
            &studio,
        );
        assert!(
            !hint.contains("t0k") && hint.contains("--new-token"),
            "{hint}"
        );
    }
}
