//! The SFTP path of the `ssh:` target, for a host whose shell does not run the conversation (a
//! restricted account: `ForceCommand internal-sftp`, a `nologin` or non-POSIX shell without
//! `/bin/sh`) and when the conversation fails on the way (see [`super`]).
//!
//! The remote home is `--remote-home`, else the `LLMX_HOME` that a non-interactive command sees
//! (asked only when commands run at all), else the login directory + `/.llmx`; a relative or `~/`
//! path is taken from the login directory.
//!
//! A write never exposes a partial auth.json: the bytes go to `.auth.json.llmx-<random>` (0600,
//! created exclusively, fsynced) beside it, which is then moved over auth.json. Where commands run,
//! a remote `mv -f` does it (one `rename(2)`; libssh2's SFTP rename will not replace a file), after
//! checking the temp file is still a private regular file with one link. Where they do not (an
//! SFTP-only account), the temp file is checked over SFTP (a regular file, 0600, ours), the old
//! auth.json is unlinked and the temp file renamed in its place: for that instant a reader finds
//! no file, never a partial one. Before that it refuses a symlinked auth.json, an auth.json owned
//! by another user, and a credential directory that [`judge_dir`] refuses, and removes temp files
//! that an interrupted push left behind (only those older than ten minutes: a younger one may be
//! another write's). After it, auth.json is read back (at most [`crate::targets::MAX_READ`]) and
//! its SHA-256 compared. The credential travels only inside the SFTP stream, never on a command
//! line.

use crate::home::AUTH_FILE;
use crate::ssh::{Conn, Session, SshError, shell_quote};
use crate::targets::conversation::PRIVATE_FILE_FN;
use crate::targets::{DirFacts, DirKind, DirVerdict, Location, RemoteFile, STALE_TEMP_AGE, StepFn, judge_dir};
use sha2::{Digest, Sha256};

/// Prefix of the temp files a write creates beside auth.json (the conversation's too, so that
/// either path removes what the other left).
pub const TEMP_PREFIX: &str = ".auth.json.llmx-";
/// What llmx before the shell conversation named them; still removed when old.
const OLD_TEMP_PREFIX: &str = ".auth.json.tmp-";

/// Whether the host runs remote commands at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// Commands run (the conversation failed for another reason): `LLMX_HOME` is asked, and the
    /// move is a checked `mv -f`.
    Works,
    /// No command runs: everything is SFTP.
    Unusable,
}

/// Login directory, uid/gid and (when commands run) `LLMX_HOME` as a non-interactive command
/// sees them.
pub async fn locate(session: &Session, explicit: Option<&str>, shell: Shell) -> Result<Location, SshError> {
    let explicit = explicit.map(str::to_string);
    session.call(move |c| locate_remote(c, explicit.as_deref(), shell)).await
}

/// The current auth.json, refusing a symlink or anything but a regular file.
pub async fn read(session: &Session, loc: &Location) -> Result<Option<RemoteFile>, SshError> {
    let path = loc.auth_path();
    session.call(move |c| read_remote(c, &path)).await
}

/// Replace auth.json with `bytes` (see the module doc), then read it back and compare.
pub async fn write(
    session: &Session,
    loc: &Location,
    bytes: &[u8],
    shell: Shell,
    step: StepFn<'_>,
) -> Result<(), SshError> {
    let home = loc.home.clone();
    let uid = loc.owner.map(|(u, _)| u);
    step("checking the remote directory");
    session.call(move |c| prepare(c, &home, uid)).await?;

    step("uploading");
    let home = loc.home.clone();
    let data = bytes.to_vec();
    let tmp = session.call(move |c| upload(c, &home, &data)).await?;

    let (from, to) = (tmp.clone(), loc.auth_path());
    let moved = session
        .call(move |c| match shell {
            Shell::Works => replace(c, &from, &to),
            Shell::Unusable => replace_over_sftp(c, &from, &to, uid),
        })
        .await;
    if let Err(e) = moved {
        let t = tmp.clone();
        let _ = session.call(move |c| c.unlink(&t)).await;
        return Err(e);
    }

    step("verifying");
    let path = loc.auth_path();
    let expected: [u8; 32] = Sha256::digest(bytes).into();
    session.call(move |c| verify(c, &path, &expected)).await
}

/// Unlink auth.json (SFTP unlink is one `unlink(2)`): refuse a symbolic link, anything but a
/// regular file, and a file owned by another user.
pub async fn remove(session: &Session, loc: &Location) -> Result<bool, SshError> {
    let path = loc.auth_path();
    let uid = loc.owner.map(|(u, _)| u);
    session.call(move |c| remove_remote(c, &path, uid)).await
}

fn remove_remote(c: &mut Conn, path: &str, uid: Option<u32>) -> Result<bool, SshError> {
    let Some(st) = c.lstat(path)? else { return Ok(false) };
    match kind(&st) {
        S_IFREG => {}
        S_IFLNK => return Err(refuse(c, path, "it is a symbolic link; remove it by hand")),
        _ => return Err(refuse(c, path, "it is not a regular file")),
    }
    if let (Some(want), Some(have)) = (uid, st.uid)
        && want != have
    {
        return Err(refuse(c, path, foreign_file(have, want)));
    }
    c.unlink(path)?;
    Ok(true)
}

/// Why an auth.json of another user is not replaced or removed.
pub fn foreign_file(have: u32, want: u32) -> String {
    format!("it belongs to uid {have}, not to you (uid {want})")
}

fn locate_remote(c: &mut Conn, explicit: Option<&str>, shell: Shell) -> Result<Location, SshError> {
    let login = c.realpath(".")?;
    // `echo`, `id` and `printenv` exist in every shell and on every Unix; the marker skips any
    // banner a shell rc file prints.
    let (ids, env_home) = match shell {
        Shell::Unusable => (None, None),
        Shell::Works => match c.exec("echo llmx-probe; id -u; id -g; printenv LLMX_HOME", &[]) {
            Ok(out) => parse_probe(&String::from_utf8_lossy(&out.stdout)),
            Err(e @ SshError::Closed { .. }) => return Err(e),
            Err(_) => (None, None),
        },
    };
    // No answer from a shell: the login directory and its owner will do.
    let ids = match ids {
        Some(ids) => Some(ids),
        None => c.stat(&login)?.and_then(|st| Some((st.uid?, st.gid?))),
    };
    let home = match explicit.map(str::to_string).or(env_home) {
        Some(h) => absolute(&h, &login),
        None => format!("{}/.llmx", login.trim_end_matches('/')),
    };
    Ok(Location { home, owner: ids, store: None, file_store: false })
}

/// `(uid, gid)` and a non-empty `LLMX_HOME` from the probe's output.
fn parse_probe(out: &str) -> (Option<(u32, u32)>, Option<String>) {
    let mut lines = out.lines().skip_while(|l| l.trim() != "llmx-probe").skip(1);
    let uid = lines.next().and_then(|l| l.trim().parse().ok());
    let gid = lines.next().and_then(|l| l.trim().parse().ok());
    let home = lines.next().map(str::to_string).filter(|h| !h.trim().is_empty());
    match (uid, gid) {
        (Some(u), Some(g)) => (Some((u, g)), home),
        _ => (None, None),
    }
}

/// Resolve `~`, `~/x` and relative paths against the login directory (the conversation's
/// preamble does the same on the host).
fn absolute(path: &str, login: &str) -> String {
    let login = login.trim_end_matches('/');
    let p = if path == "~" {
        login.to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{login}/{rest}")
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{login}/{path}")
    };
    match p.trim_end_matches('/') {
        "" => "/".to_string(),
        t => t.to_string(),
    }
}

fn refuse(c: &Conn, path: &str, reason: impl Into<String>) -> SshError {
    SshError::Refused { host: c.host().to_string(), path: path.to_string(), reason: reason.into() }
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

fn kind(st: &ssh2::FileStat) -> u32 {
    st.perm.unwrap_or(0) & S_IFMT
}

fn read_remote(c: &mut Conn, path: &str) -> Result<Option<RemoteFile>, SshError> {
    let Some(st) = c.lstat(path)? else { return Ok(None) };
    match kind(&st) {
        S_IFREG => {}
        S_IFLNK => return Err(refuse(c, path, "it is a symbolic link; remove it and push again")),
        _ => return Err(refuse(c, path, "it is not a regular file")),
    }
    let Some(bytes) = c.read_file(path)? else { return Ok(None) };
    Ok(Some(RemoteFile { bytes, uid: st.uid, gid: st.gid, mode: st.perm.map(|p| p & 0o7777) }))
}

/// Make sure the credential directory exists and passes [`judge_dir`] (not a link, ours, not
/// writable by others; tightened to 0700 when it is only readable by others); refuse an auth.json
/// we must not replace; remove temp files left by an interrupted push.
fn prepare(c: &mut Conn, home: &str, uid: Option<u32>) -> Result<(), SshError> {
    match c.lstat(home)? {
        None => mkdir_all(c, home)?,
        Some(st) => {
            let facts = DirFacts {
                kind: match kind(&st) {
                    S_IFDIR => DirKind::Dir,
                    S_IFLNK => DirKind::Link,
                    _ => DirKind::Other,
                },
                uid: st.uid,
                mode: st.perm.unwrap_or(0) & 0o7777,
            };
            match judge_dir(home, &facts, uid) {
                Ok(DirVerdict::Keep) => {}
                Ok(DirVerdict::Tighten) => c.chmod(home, 0o700)?,
                Err(reason) => return Err(refuse(c, home, reason)),
            }
        }
    }
    let auth = format!("{}/{AUTH_FILE}", home.trim_end_matches('/'));
    if let Some(st) = c.lstat(&auth)? {
        match kind(&st) {
            S_IFREG => {}
            S_IFLNK => return Err(refuse(c, &auth, SYMLINK_REFUSED)),
            _ => return Err(refuse(c, &auth, "it is not a regular file")),
        }
        if let (Some(want), Some(have)) = (uid, st.uid)
            && want != have
        {
            return Err(refuse(c, &auth, foreign_file(have, want)));
        }
    }
    // Only old temp files: a young one belongs to a write still under way (another alias of this
    // host in the same push, or another llmx), which removing it would break.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for name in c.list_dir(home)? {
        if name.starts_with(TEMP_PREFIX) || name.starts_with(OLD_TEMP_PREFIX) {
            let p = format!("{}/{name}", home.trim_end_matches('/'));
            let old =
                c.lstat(&p)?.and_then(|st| st.mtime).is_some_and(|m| now.saturating_sub(m) > STALE_TEMP_AGE.as_secs());
            if old {
                c.unlink(&p)?;
            }
        }
    }
    Ok(())
}

/// Why a symlinked auth.json is not written.
pub const SYMLINK_REFUSED: &str = "it is a symbolic link (writing through it could overwrite another file)";

/// `mkdir -p` with mode 0700 for every directory created.
fn mkdir_all(c: &mut Conn, dir: &str) -> Result<(), SshError> {
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        if c.stat(&path)?.is_none() {
            c.mkdir(&path, 0o700)?;
        }
    }
    Ok(())
}

/// Write `bytes` to a new temp file beside auth.json; its path.
fn upload(c: &mut Conn, home: &str, bytes: &[u8]) -> Result<String, SshError> {
    let tmp = format!("{}/{TEMP_PREFIX}{}", home.trim_end_matches('/'), crate::home::random_suffix());
    if let Err(e) = c.create_file(&tmp, bytes, 0o600) {
        if !matches!(e, SshError::Closed { .. }) {
            let _ = c.unlink(&tmp);
        }
        return Err(e);
    }
    Ok(tmp)
}

/// `mv -f` on the host: rename(2) within one directory, atomic, replaces the old file. Only a temp
/// file that is still a regular file, 0600, ours and with one link is moved (the check the exec
/// conversation makes too).
fn replace(c: &mut Conn, from: &str, to: &str) -> Result<(), SshError> {
    let script = format!(
        "{PRIVATE_FILE_FN}U=$(id -u); private {f} || {{ echo 'the temp file is no longer a private regular file' >&2; \
         exit 3; }}; exec mv -f -- {f} {t}",
        f = shell_quote(from),
        t = shell_quote(to)
    );
    let out = c.exec(&script, &[])?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let reason = if first.is_empty() {
        format!("exit status {}", out.status.code)
    } else {
        crate::text::printable(&first.chars().take(200).collect::<String>())
    };
    Err(SshError::Remote { host: c.host().to_string(), what: format!("moving the new file into place ({to})"), reason })
}

/// The move where no command runs: the temp file checked over SFTP (a regular file, 0600, ours;
/// SFTP does not report the link count), the old auth.json (a regular file of ours, checked by
/// [`prepare`]) unlinked, the temp file renamed in its place. OpenSSH's SFTP rename is a
/// `link(2)` + `unlink(2)`, so it never replaces a file that appeared meanwhile: it fails instead.
fn replace_over_sftp(c: &mut Conn, from: &str, to: &str, uid: Option<u32>) -> Result<(), SshError> {
    let what = format!("moving the new file into place ({to})");
    let private = c.lstat(from)?.is_some_and(|st| {
        kind(&st) == S_IFREG && st.perm.map(|p| p & 0o7777) == Some(0o600) && (uid.is_none() || st.uid == uid)
    });
    if !private {
        let reason = "the temp file is no longer a private regular file".to_string();
        return Err(SshError::Remote { host: c.host().to_string(), what, reason });
    }
    if c.lstat(to)?.is_some() {
        c.unlink(to)?;
    }
    c.rename(from, to)
}

fn verify(c: &mut Conn, path: &str, expected: &[u8; 32]) -> Result<(), SshError> {
    let got = read_remote(c, path)?;
    let ok = got.as_ref().is_some_and(|f| Sha256::digest(&f.bytes).as_slice() == expected);
    if !ok {
        return Err(SshError::Remote {
            host: c.host().to_string(),
            what: format!("verifying {path}"),
            reason: "the file read back differs from what was written".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_skips_banners() {
        assert_eq!(
            parse_probe("welcome!\nllmx-probe\n1001\n1002\n/srv/llmx\n"),
            (Some((1001, 1002)), Some("/srv/llmx".into()))
        );
        assert_eq!(parse_probe("llmx-probe\n1001\n1002\n"), (Some((1001, 1002)), None));
        assert_eq!(parse_probe("This account is currently not available.\n"), (None, None));
    }

    #[test]
    fn relative_homes_resolve_from_the_login_directory() {
        assert_eq!(absolute("~", "/home/u"), "/home/u");
        assert_eq!(absolute("~/x/", "/home/u"), "/home/u/x");
        assert_eq!(absolute("rel", "/home/u/"), "/home/u/rel");
        assert_eq!(absolute("/abs", "/home/u"), "/abs");
        assert_eq!(absolute("/", "/home/u"), "/");
    }
}
