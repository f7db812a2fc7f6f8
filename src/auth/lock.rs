//! The cross-process lock around every read-modify-write of auth.json (DESIGN.md §9):
//! `$LLMX_HOME/auth.json.lock`, an advisory `flock` held for as long as the [`AuthLock`] lives.
//!
//! Login, refresh, pull, sync and logout take it, then (re-)read auth.json, decide, and write; so
//! two `llmx` processes never refresh the same login at once (the second one re-reads and finds
//! the first one's result). The lock file itself holds nothing and is never removed: removing it
//! would let two processes lock two different files. On a read-only home the existing lock file
//! is opened read-only (flock works on any open file), so a refresh can still find out, under the
//! lock, that it could not save anything, before it calls the issuer.

use crate::home::{HomeError, ensure_private_dir};
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the lock file inside the home.
pub const LOCK_FILE: &str = "auth.json.lock";

/// How long [`AuthLock::acquire`] waits for another process before it gives up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: cannot open the lock file: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{}: another llmx process has held the lock for over {}s", path.display(), waited.as_secs())]
    Busy { path: PathBuf, waited: Duration },
    #[error(transparent)]
    Home(#[from] HomeError),
}

/// The held lock; dropping it releases it (closing the file releases the flock).
#[derive(Debug)]
pub struct AuthLock {
    _file: File,
    path: PathBuf,
}

impl AuthLock {
    /// Lock the home `dir` (created 0700 when missing), waiting up to `wait`.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<AuthLock, LockError> {
        AuthLock::acquire_file(&dir.join(LOCK_FILE), wait)
    }

    /// Lock an arbitrary lock file (the ledger has its own), waiting up to `wait`.
    pub fn acquire_file(path: &Path, wait: Duration) -> Result<AuthLock, LockError> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            ensure_private_dir(dir)?;
        }
        let open_err = |source| LockError::Open { path: path.to_path_buf(), source };
        let file = match OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path) {
            Ok(f) => f,
            // A read-only home: an existing lock file still locks.
            Err(e) if e.raw_os_error() == Some(libc::EROFS) || e.kind() == io::ErrorKind::PermissionDenied => {
                File::open(path).map_err(|_| open_err(e))?
            }
            Err(e) => return Err(open_err(e)),
        };
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(AuthLock { _file: file, path: path.to_path_buf() }),
                Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Busy { path: path.to_path_buf(), waited: started.elapsed() });
                }
                Err(TryLockError::Error(e)) => return Err(open_err(e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let t = tempfile::tempdir().unwrap();
        let first = AuthLock::acquire(t.path(), DEFAULT_WAIT).unwrap();
        let e = AuthLock::acquire(t.path(), Duration::from_millis(60)).unwrap_err();
        assert!(matches!(e, LockError::Busy { .. }), "{e}");
        assert!(e.to_string().contains("auth.json.lock"), "{e}");
        drop(first);
        AuthLock::acquire(t.path(), Duration::from_millis(60)).unwrap();
    }
}
