//! The key sessions are sealed and CSRF tokens signed with, when none is given
//! ([`DashboardOptions::csrf_key`] from `CONCIERTO_CSRF_KEY`): made once into
//! `<data_dir>/session.key` (32 random bytes in hex, mode 0600, written to a
//! temporary file and linked into place, so two dashboards starting at once
//! agree on one key) and read again at every start, so a restart signs nobody
//! out. Without a data folder either, a random key per process, with one
//! warning.
//!
//! ```text
//!  csrf_key given ──▶ it
//!  else data_dir  ──▶ <data_dir>/session.key (read, or made once; random
//!                     per process, warned, when it cannot be written)
//!  else           ──▶ random per process (warned once)
//! ```
//!
//! [`DashboardOptions::csrf_key`]: crate::DashboardOptions::csrf_key

use std::io::Write as _;
use std::path::{Path, PathBuf};

use concierto_feedback::Secret;

use crate::DashboardError;

/// The key file's name in the data folder.
pub const FILE: &str = "session.key";
/// Bytes of a key made here.
const KEY_BYTES: usize = 32;
/// Largest key file read (a key is 64 hex digits).
const MAX_FILE: u64 = 4096;

/// Where the key came from, for the one line logged at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Given in the options (the environment).
    Given,
    /// Read from this file.
    Read(PathBuf),
    /// Made now into this file.
    Made(PathBuf),
    /// Random, for this process only.
    Random,
    /// Random, for this process only, because no key could be made in the
    /// data folder (e.g. a read-only root filesystem without a volume there).
    Unwritable(String),
}

/// The key to use: `given`, else the one in `data_dir` (made when missing),
/// else a random one.
pub fn resolve(
    given: Option<&Secret>,
    data_dir: Option<&Path>,
) -> Result<(Secret, KeySource), DashboardError> {
    if let Some(k) = given {
        return Ok((k.clone(), KeySource::Given));
    }
    let Some(dir) = data_dir else {
        return Ok((Secret::random(), KeySource::Random));
    };
    let path = dir.join(FILE);
    if let Some(k) = read(&path)? {
        return Ok((k, KeySource::Read(path)));
    }
    // A folder that cannot be written is no reason not to serve: sign-ins
    // then end with the process, as without a folder, and the log says why.
    match make(dir, &path) {
        Ok(made) => Ok(made),
        Err(e) => Ok((Secret::random(), KeySource::Unwritable(e.to_string()))),
    }
}

fn key_error(path: &Path, what: impl std::fmt::Display) -> DashboardError {
    DashboardError::SessionKey {
        path: path.to_path_buf(),
        message: what.to_string(),
    }
}

/// The key in `path`, `None` when there is no such file.
fn read(path: &Path) -> Result<Option<Secret>, DashboardError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(key_error(path, e)),
    };
    if meta.len() > MAX_FILE {
        return Err(key_error(
            path,
            format!(
                "is {} bytes, not a key: remove it (everyone signs in again) or set CONCIERTO_CSRF_KEY",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    let key = hex::decode(text.trim()).map_err(|_| {
        key_error(
            path,
            "does not hold a key in hex: remove it (everyone signs in again) or set CONCIERTO_CSRF_KEY",
        )
    })?;
    if key.len() < 16 {
        return Err(key_error(
            path,
            "holds fewer than 16 bytes: remove it (everyone signs in again) or set CONCIERTO_CSRF_KEY",
        ));
    }
    Ok(Some(Secret::new(key)))
}

/// Makes a key into `path`; when another process made one first, reads theirs.
fn make(dir: &Path, path: &Path) -> Result<(Secret, KeySource), DashboardError> {
    std::fs::create_dir_all(dir).map_err(|e| key_error(dir, e))?;
    let key: [u8; KEY_BYTES] = rand::random();
    let tmp = dir.join(format!(
        ".{FILE}.{}.{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let written = write_private(&tmp, format!("{}\n", hex::encode(key)).as_bytes());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(key_error(&tmp, e));
    }
    // A link never replaces a file: of two dashboards starting at once, the
    // second finds the first one's key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((
            Secret::new(key.to_vec()),
            KeySource::Made(path.to_path_buf()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(path)? {
            Some(k) => Ok((k, KeySource::Read(path.to_path_buf()))),
            None => Err(key_error(
                path,
                "vanished while it was being made; start again",
            )),
        },
        Err(e) => Err(key_error(path, e)),
    }
}

/// Writes `bytes` to a new file only its owner may read, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("dashboard");
        let (a, how) = resolve(None, Some(&data)).expect("made");
        assert_eq!(how, KeySource::Made(data.join(FILE)));
        assert_eq!(a.len(), KEY_BYTES);
        let (b, how) = resolve(None, Some(&data)).expect("read");
        assert_eq!(how, KeySource::Read(data.join(FILE)));
        assert_eq!(a.expose(), b.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(data.join(FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&data)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(FILE)]);
    }

    #[test]
    fn a_given_key_wins_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let given = Secret::new(*b"0123456789abcdef0123");
        let (k, how) = resolve(Some(&given), Some(dir.path())).expect("given");
        assert_eq!(how, KeySource::Given);
        assert_eq!(k.expose(), given.expose());
        assert!(!dir.path().join(FILE).exists());
        let (_, how) = resolve(None, None).expect("random");
        assert_eq!(how, KeySource::Random);
    }

    #[test]
    fn a_bad_key_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["not hex at all", "abcd", &"0".repeat(10_000)] {
            std::fs::write(dir.path().join(FILE), bad).expect("write");
            let e = resolve(None, Some(dir.path())).expect_err("refused");
            assert!(e.to_string().contains("remove it"), "{e}");
        }
    }

    #[test]
    fn a_data_folder_that_cannot_be_written_gives_a_random_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where the folder should be: nothing can be made under it
        // (as on a read-only root filesystem with no volume mounted).
        let blocker = dir.path().join("not-a-folder");
        std::fs::write(&blocker, "x").expect("write");
        let (_, how) = resolve(None, Some(&blocker.join("dashboard"))).expect("serves anyway");
        assert!(matches!(how, KeySource::Unwritable(_)), "{how:?}");
    }
}
