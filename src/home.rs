//! The llmx home (`$LLMX_HOME`, else `~/.llmx`), secure directories and atomic 0600 writes.
//!
//! Every credential write in the project goes through [`write_private`]: a temp file created
//! 0600 in the same directory, written, fsynced, renamed over the target, then the directory
//! fsynced. A crash or a full disk leaves either the old file or the new one, never a torn one.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the credential file inside the home.
pub const AUTH_FILE: &str = "auth.json";
/// Name of the settings file inside the home.
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find a home directory; set LLMX_HOME")]
    NoHome,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl HomeError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        HomeError::Io { path: path.to_path_buf(), source }
    }
}

/// Where llmx keeps `auth.json` and `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `$LLMX_HOME` when set and non-empty, else `~/.llmx`.
    pub fn from_env() -> Result<Home, HomeError> {
        Home::resolve(std::env::var_os("LLMX_HOME"), dirs::home_dir())
    }

    /// The resolution rule with its inputs injected (tests, remote homes).
    pub fn resolve(llmx_home: Option<OsString>, user_home: Option<PathBuf>) -> Result<Home, HomeError> {
        match llmx_home {
            Some(v) if !v.is_empty() => Ok(Home { dir: PathBuf::from(v) }),
            _ => user_home.map(|h| Home { dir: h.join(".llmx") }).ok_or(HomeError::NoHome),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn auth_path(&self) -> PathBuf {
        self.dir.join(AUTH_FILE)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
}

/// Create `dir` (and parents) if missing, and make sure the directory itself is 0700.
///
/// The mode is enforced on every call, not only on creation, but only on a directory this user
/// owns and that is not sticky: `LLMX_HOME=/tmp` must not chmod `/tmp`.
pub fn ensure_private_dir(dir: &Path) -> Result<(), HomeError> {
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| HomeError::io(dir, e))?;
    }
    let meta = fs::metadata(dir).map_err(|e| HomeError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(HomeError::io(dir, io::Error::other("not a directory")));
    }
    // SAFETY: geteuid takes nothing and cannot fail.
    #[allow(unsafe_code, reason = "geteuid: std has no safe wrapper")]
    let euid = unsafe { libc::geteuid() };
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.uid() == euid && !sticky && meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| HomeError::io(dir, e))?;
    }
    Ok(())
}

/// Atomically replace `path` with `bytes`, mode 0600, its directory 0700.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), random_suffix()));
    let result = write_then_rename(&tmp, path, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| HomeError::io(path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    // The umask may have narrowed the mode further; never widened, but be explicit.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
}

/// A write prepared before the bytes exist: the temp file is created (0600, in the target's
/// directory) first, which proves the directory is writable, then [`PendingWrite::commit`]
/// fills it and renames it over the target. A refresh prepares one *before* it calls the issuer
/// (DESIGN.md §9 "never burn a login"): an answer that cannot be saved is never asked for.
/// Dropping an uncommitted one removes its temp file.
#[derive(Debug)]
pub struct PendingWrite {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl PendingWrite {
    pub fn create(path: &Path) -> Result<PendingWrite, HomeError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        ensure_private_dir(dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), random_suffix()));
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp);
        let file = file.map_err(|e| HomeError::io(path, e))?;
        Ok(PendingWrite { path: path.to_path_buf(), tmp, file: Some(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes`, fsync, rename over the target, fsync the directory.
    pub fn commit(mut self, bytes: &[u8]) -> Result<(), HomeError> {
        let Some(mut f) = self.file.take() else {
            return Err(HomeError::io(&self.path, io::Error::other("used twice")));
        };
        let result = (|| {
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&self.tmp, &self.path)
        })();
        result.map_err(|e| HomeError::io(&self.path, e))?;
        if let Some(d) = self.path.parent().and_then(|d| File::open(d).ok()) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        // Committed: the temp name no longer exists; otherwise remove what we created.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// A random hex string for temp file names (here and on push targets).
pub fn random_suffix() -> String {
    let mut b = [0u8; 6];
    // getrandom only fails when the OS has no entropy source at all; a time-based name is an
    // acceptable fallback for a temp file name (create_new still refuses a collision).
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return format!("{:x}", t.as_nanos());
    }
    hex::encode(b)
}

/// Read a file that may be missing: `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, HomeError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HomeError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llmx_home_wins_when_non_empty() {
        let h = Home::resolve(Some("/x/y".into()), Some("/home/u".into())).unwrap();
        assert_eq!(h.dir(), Path::new("/x/y"));
        let h = Home::resolve(Some("".into()), Some("/home/u".into())).unwrap();
        assert_eq!(h.dir(), Path::new("/home/u/.llmx"));
        assert!(Home::resolve(None, None).is_err());
    }

    #[test]
    fn write_private_enforces_modes_on_every_write() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("h");
        let file = dir.join("auth.json");
        write_private(&file, b"one").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        write_private(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
