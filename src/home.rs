//! The llmx home (`$LLMX_HOME`, else `~/.llmx`), secure directories and atomic 0600 writes.
//!
//! Every credential write in the project goes through [`write_private`]: a temp file created
//! 0600 in the same directory, written, fsynced, renamed over the target, then the directory
//! fsynced. A crash or a full disk leaves either the old file or the new one, never a torn one;
//! a temp file a crash left behind is removed by the next write (and by `llmx logout`):
//! [`clean_stale_temps`].
//!
//! Every read of a file in the home goes through [`read_optional`]: opened non-blocking (a FIFO
//! cannot hang us), a regular file only (checked on the open file, so a symlink to `/dev/zero` or
//! a device is refused), at most [`MAX_FILE_BYTES`].
#![allow(unsafe_code, reason = "geteuid(2) and kill(pid, 0): std has no safe wrappers")]

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the credential file inside the home.
pub const AUTH_FILE: &str = "auth.json";
/// Name of the settings file inside the home.
pub const CONFIG_FILE: &str = "config.toml";
/// The largest file llmx reads from the home (auth.json, config.toml): far above any real one.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// A temp file of [`write_private`] whose writer is still alive is left alone unless it is older
/// than this (a live pid may be a reused one).
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find a home directory; set LLMX_HOME")]
    NoHome,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Found before anything is done that would have to be recorded there.
    #[error("LLMX_HOME {} is not writable ({source})", dir.display())]
    NotWritable { dir: PathBuf, source: io::Error },
    /// The home is not private (as OpenSSH refuses a `~/.ssh` others can write): another user
    /// could read the login, plant one, or plant a link where llmx writes.
    #[error("refusing to use {}: {reason}", dir.display())]
    NotPrivate { dir: PathBuf, reason: String },
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

    /// Refuse a home that is not this user's own, or that others can write to (a shared or
    /// sticky directory such as `/tmp`), as OpenSSH refuses such a `~/.ssh`: another user's
    /// auth.json would be used as ours, or a lock file or link planted there followed. A missing
    /// home is fine (it is created 0700); a home of ours that others can only read is tightened
    /// on the next write.
    pub fn check_private(&self) -> Result<(), HomeError> {
        let meta = match fs::metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HomeError::io(&self.dir, e)),
        };
        let refuse = |reason: String| Err(HomeError::NotPrivate { dir: self.dir.clone(), reason });
        if !meta.is_dir() {
            return refuse("it is not a directory".into());
        }
        let euid = effective_uid();
        if meta.uid() != euid {
            return refuse(format!("it belongs to uid {}, not to you (uid {euid})", meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            let what = if meta.mode() & 0o1000 != 0 { ", a shared sticky directory such as /tmp" } else { "" };
            return refuse(format!("other users can write to it (mode {:04o}{what})", meta.mode() & 0o7777));
        }
        Ok(())
    }

    pub fn auth_path(&self) -> PathBuf {
        self.dir.join(AUTH_FILE)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
}

/// Remove `path`; `Ok(false)` when there was none.
pub fn remove_optional(path: &Path) -> Result<bool, HomeError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(HomeError::io(path, e)),
    }
}

/// Whether llmx can write in the home `dir` (created 0700 when missing): a temp file is created
/// there and removed, as every atomic write does first. Commands that will have to record
/// something there (a login's auth.json, a push's ledger) check this before they ask the issuer
/// for anything, open a port or write to a target.
pub fn check_writable(dir: &Path) -> Result<(), HomeError> {
    let not_writable = |e: HomeError| match e {
        HomeError::Io { source, .. } => HomeError::NotWritable { dir: dir.to_path_buf(), source },
        e => e,
    };
    ensure_private_dir(dir).map_err(not_writable)?;
    PendingWrite::create(&dir.join(".write-check")).map(drop).map_err(not_writable)
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
    let euid = effective_uid();
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
    clean_stale_temps(dir, &name);
    let tmp = dir.join(format!("{}{}-{}", temp_prefix(&name), std::process::id(), random_suffix()));
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

/// `.{name}.tmp-`: how every temp file of [`write_private`] for `name` starts (then pid-random).
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Remove the temp files a crashed [`write_private`] of `name` left in `dir`: only names of our
/// own pattern (`.{name}.tmp-PID-HEX`), only regular files (a symlink is not followed, nor
/// removed), only files this user owns, and only when their writer is gone (no process PID) or
/// the file is older than 10 minutes. Best effort: returns how many it removed, never fails.
pub fn clean_stale_temps(dir: &Path, name: &str) -> usize {
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let euid = effective_uid();
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let Some((pid, hex)) = rest.split_once('-') else { continue };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        // symlink_metadata: the entry itself, never what a symlink points to.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else { continue };
        if !meta.file_type().is_file() || meta.uid() != euid {
            continue;
        }
        let old = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age > STALE_TEMP_AGE);
        if (old || !process_alive(pid)) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether a process `pid` exists (signal 0 probes without sending anything).
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission; no signal is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A write prepared before the bytes exist: the temp file is created (0600, in the target's
/// directory) and filled with [`PendingWrite::reserve_for`] zero bytes (fsynced), which proves
/// the directory is writable *and* that the disk has room, then [`PendingWrite::commit`]
/// overwrites it in place (the blocks are already allocated) and renames it over the target. A
/// refresh prepares one *before* it calls the issuer (DESIGN.md §9 "never burn a login"): an
/// answer that cannot be saved, on a read-only home or a full disk, is never asked for.
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
        let mut file = file.map_err(|e| HomeError::io(path, e))?;
        // From here on, dropping `pending` removes the temp file (also when the reservation fails).
        let reserve = PendingWrite::reserve_for(path);
        let reserved = file.write_all(&vec![0u8; reserve]).and_then(|()| file.sync_data());
        let pending = PendingWrite { path: path.to_path_buf(), tmp, file: Some(file) };
        reserved.map_err(|e| HomeError::io(path, e))?;
        Ok(pending)
    }

    /// How many bytes to reserve for the new content of `path`: twice what is there now, at
    /// least 64 KiB (a refreshed login is about the size of the old one), at most the largest file
    /// llmx reads back.
    pub fn reserve_for(path: &Path) -> usize {
        let now = fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
        usize::try_from(now.saturating_mul(2).clamp(64 * 1024, MAX_FILE_BYTES)).unwrap_or(64 * 1024)
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
            // Over the reserved bytes: no new block is needed for what fits in them.
            f.seek(io::SeekFrom::Start(0))?;
            f.write_all(bytes)?;
            f.set_len(bytes.len() as u64)?;
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

/// Read a file that may be missing: `Ok(None)` when it does not exist. Opened non-blocking, so
/// a FIFO in its place cannot hang the read; refused unless the opened file is a regular file
/// (a symlink to `/dev/zero`, a device, a directory); refused past [`MAX_FILE_BYTES`].
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, HomeError> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HomeError::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| HomeError::io(path, e))?;
    if !meta.file_type().is_file() {
        let what = if meta.is_dir() { "a directory" } else { "a FIFO, socket or device" };
        return Err(HomeError::io(path, io::Error::other(format!("not a regular file (it is {what})"))));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize);
    (&file).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| HomeError::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(HomeError::io(
            path,
            io::Error::other(format!("larger than {} MiB; not read", MAX_FILE_BYTES / (1024 * 1024))),
        ));
    }
    Ok(Some(bytes))
}

/// This process's effective user id (the owner of what it creates).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
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

    #[test]
    fn stale_temps_of_our_pattern_only_are_removed_on_the_next_write() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("h");
        let file = dir.join("auth.json");
        write_private(&file, b"one").unwrap();
        let dead = "4194999"; // above any pid_max: no such process
        let me = std::process::id();
        let stale = [format!(".auth.json.tmp-{dead}-abc123"), format!(".auth.json.tmp-{dead}-0")];
        for n in &stale {
            fs::write(dir.join(n), b"credential").unwrap();
        }
        // Kept: a live writer's temp, other names, a symlink and a directory of our pattern.
        let outside = t.path().join("outside");
        fs::write(&outside, b"keep").unwrap();
        let kept = [
            format!(".auth.json.tmp-{me}-live"),
            ".auth.json.tmp-x-1".to_string(),
            format!(".auth.json.tmp-{dead}-"),
            format!(".config.toml.tmp-{dead}-1"),
            "auth.json.tmp-4194999-1".to_string(),
        ];
        for n in &kept {
            fs::write(dir.join(n), b"x").unwrap();
        }
        std::os::unix::fs::symlink(&outside, dir.join(format!(".auth.json.tmp-{dead}-link"))).unwrap();
        fs::create_dir(dir.join(format!(".auth.json.tmp-{dead}-dir"))).unwrap();
        write_private(&file, b"two").unwrap();
        for n in &stale {
            assert!(!dir.join(n).exists(), "{n} removed");
        }
        for n in &kept {
            assert!(dir.join(n).exists(), "{n} kept");
        }
        assert!(fs::symlink_metadata(dir.join(format!(".auth.json.tmp-{dead}-link"))).is_ok());
        assert_eq!(fs::read(&outside).unwrap(), b"keep", "a symlink is never followed");
        assert!(dir.join(format!(".auth.json.tmp-{dead}-dir")).is_dir());
        assert_eq!(fs::read(&file).unwrap(), b"two");
    }

    #[test]
    fn read_optional_refuses_fifos_devices_and_huge_files_without_hanging() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a path we own, with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let zero = t.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let big = t.path().join("big");
        fs::File::create(&big).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
        let dir = t.path().join("dir");
        fs::create_dir(&dir).unwrap();
        for (p, want) in [
            (&fifo, "not a regular file"),
            (&zero, "not a regular file"),
            (&big, "larger than 4 MiB"),
            (&dir, "directory"),
        ] {
            let e = read_optional(p).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", p.display());
        }
        let exact = t.path().join("exact");
        fs::File::create(&exact).unwrap().set_len(MAX_FILE_BYTES).unwrap();
        assert_eq!(read_optional(&exact).unwrap().unwrap().len() as u64, MAX_FILE_BYTES);
        assert!(read_optional(&t.path().join("missing")).unwrap().is_none());
    }
}
