//! [`Conn`]: the connection as a [`Session::call`](super::Session::call) sees it, with the
//! session in blocking mode: helpers for exec with captured output and for SFTP, and the mapping of
//! libssh2 errors to [`SshError`].

use super::{ExecOutput, ExitStatus};
use crate::ssh::MAX_READ;
use crate::ssh::{SshError, posix_command};
use std::io::{Read, Write};
use std::path::Path;

/// The connection as seen from inside a [`Session::call`](super::Session::call): blocking helpers.
pub struct Conn {
    pub(super) sess: ssh2::Session,
    pub(super) sftp: Option<ssh2::Sftp>,
    pub(super) host: String,
    /// The session's socket, to wait on while reading two streams at once.
    pub(super) sock: std::os::fd::RawFd,
}

impl Conn {
    /// `host` or `[host]:port`, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// An error about `what` on this host, from a libssh2 error.
    pub fn error(&self, what: impl Into<String>, e: &ssh2::Error) -> SshError {
        let what = what.into();
        match e.code() {
            // LIBSSH2_ERROR_SOCKET_SEND, _SOCKET_DISCONNECT, _SOCKET_RECV: the peer is gone.
            ssh2::ErrorCode::Session(-7) | ssh2::ErrorCode::Session(-13) | ssh2::ErrorCode::Session(-43) => {
                SshError::Closed { host: self.host.clone(), during: what }
            }
            ssh2::ErrorCode::Session(-9) => {
                SshError::Remote { host: self.host.clone(), what, reason: "timed out".into() }
            }
            _ => SshError::Remote { host: self.host.clone(), what, reason: e.message().to_string() },
        }
    }

    pub(super) fn io_error(&self, what: &str, e: std::io::Error) -> SshError {
        // ssh2 turns LIBSSH2_ERROR_TIMEOUT into TimedOut and every other session error into
        // `Other` with libssh2's message, which names a lost connection as such.
        let reason = if e.kind() == std::io::ErrorKind::TimedOut { "timed out".to_string() } else { e.to_string() };
        SshError::Remote { host: self.host.clone(), what: what.into(), reason }
    }

    /// Run `cmd` (a POSIX shell command line, run by `/bin/sh` whatever the login shell: see
    /// [`posix_command`]), write `stdin` to it, and collect stdout, stderr (each at most
    /// [`MAX_READ`], an error past that) and the exit status.
    pub fn exec(&mut self, cmd: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        let what = "running a remote command";
        let mut ch = self.sess.channel_session().map_err(|e| self.error(what, &e))?;
        ch.exec(&posix_command(cmd)).map_err(|e| self.error(what, &e))?;
        if !stdin.is_empty() {
            ch.write_all(stdin).map_err(|e| self.io_error(what, e))?;
        }
        ch.send_eof().map_err(|e| self.error(what, &e))?;
        let (stdout, stderr) = self.read_both(&mut ch, what)?;
        ch.wait_close().map_err(|e| self.error(what, &e))?;
        let code = ch.exit_status().map_err(|e| self.error(what, &e))?;
        let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
        Ok(ExecOutput { status: ExitStatus { code, signal }, stdout, stderr })
    }

    /// Stdout and stderr of `ch` to their ends, read side by side (a command that fills one
    /// while we wait on the other must not stall), each at most [`MAX_READ`].
    fn read_both(&mut self, ch: &mut ssh2::Channel, what: &str) -> Result<(Vec<u8>, Vec<u8>), SshError> {
        self.sess.set_blocking(false);
        let r = self.read_both_nonblocking(ch, what);
        self.sess.set_blocking(true);
        r
    }

    fn read_both_nonblocking(&self, ch: &mut ssh2::Channel, what: &str) -> Result<(Vec<u8>, Vec<u8>), SshError> {
        // One deadline for the whole command, not per chunk: output trickling in a byte at a
        // time must not keep us here past the I/O timeout.
        let deadline = match self.sess.timeout() {
            0 => None,
            t => Some(std::time::Instant::now() + std::time::Duration::from_millis(u64::from(t))),
        };
        let timed_out = || SshError::Remote { host: self.host.clone(), what: what.into(), reason: "timed out".into() };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut out_done, mut err_done) = (false, false);
        let mut buf = [0u8; 32 * 1024];
        while !(out_done && err_done) {
            let mut moved = false;
            for (done, acc, stderr) in [(&mut out_done, &mut out, false), (&mut err_done, &mut err, true)] {
                if *done {
                    continue;
                }
                let r = if stderr { ch.stderr().read(&mut buf) } else { ch.read(&mut buf) };
                match r {
                    Ok(0) => *done = true,
                    Ok(n) => acc.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(self.io_error(what, e)),
                }
                moved = true;
                if acc.len() > MAX_READ {
                    let name = if stderr { "error output" } else { "output" };
                    return Err(self.too_large(what, name));
                }
            }
            let left_ms = match deadline {
                None => -1,
                Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                    Some(left) => i32::try_from(left.as_millis()).unwrap_or(i32::MAX),
                    None => return Err(timed_out()),
                },
            };
            if !moved {
                let mut fd = libc::pollfd { fd: self.sock, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, for the socket this session owns.
                if unsafe { libc::poll(&mut fd, 1, left_ms) } == 0 {
                    return Err(timed_out());
                }
            }
        }
        Ok((out, err))
    }

    fn too_large(&self, what: &str, name: &str) -> SshError {
        SshError::Remote {
            host: self.host.clone(),
            what: what.to_string(),
            reason: format!("its {name} is larger than {} KiB", MAX_READ / 1024),
        }
    }

    /// Everything `r` gives, or an error as soon as it passes [`MAX_READ`].
    fn read_capped(&self, r: &mut impl Read, what: &str, name: &str) -> Result<Vec<u8>, SshError> {
        let mut buf = Vec::new();
        r.take(MAX_READ as u64 + 1).read_to_end(&mut buf).map_err(|e| self.io_error(what, e))?;
        if buf.len() > MAX_READ {
            return Err(self.too_large(what, name));
        }
        Ok(buf)
    }

    /// The SFTP subsystem, started on first use.
    pub fn sftp(&mut self) -> Result<&ssh2::Sftp, SshError> {
        if self.sftp.is_none() {
            let s = self.sess.sftp().map_err(|e| self.error("starting SFTP", &e))?;
            self.sftp = Some(s);
        }
        // Set just above when it was missing.
        self.sftp.as_ref().ok_or_else(|| SshError::Closed { host: self.host.clone(), during: "starting SFTP".into() })
    }

    /// `lstat`: `None` when nothing is there.
    pub fn lstat(&mut self, path: &str) -> Result<Option<ssh2::FileStat>, SshError> {
        self.stat_with(path, false)
    }

    /// `stat` (follows symlinks): `None` when nothing is there.
    pub fn stat(&mut self, path: &str) -> Result<Option<ssh2::FileStat>, SshError> {
        self.stat_with(path, true)
    }

    fn stat_with(&mut self, path: &str, follow: bool) -> Result<Option<ssh2::FileStat>, SshError> {
        let sftp = self.sftp()?;
        let r = if follow { sftp.stat(Path::new(path)) } else { sftp.lstat(Path::new(path)) };
        match r {
            Ok(st) => Ok(Some(st)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(format!("{} {path}", if follow { "stat" } else { "lstat" }), &e)),
        }
    }

    /// The whole content of a file, at most [`MAX_READ`] bytes (an error past that): `None` when
    /// it does not exist.
    pub fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, SshError> {
        let r = self.sftp()?.open(Path::new(path));
        let mut f = match r {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.error(format!("opening {path}"), &e)),
        };
        Ok(Some(self.read_capped(&mut f, &format!("reading {path}"), "content")?))
    }

    /// Create `path` (which must not exist) with `mode`, write `bytes`, fsync, close, and set the
    /// mode again (the remote umask may have narrowed it).
    pub fn create_file(&mut self, path: &str, bytes: &[u8], mode: i32) -> Result<(), SshError> {
        use ssh2::{OpenFlags, OpenType};
        let what = format!("writing {path}");
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
        let r = self.sftp()?.open_mode(Path::new(path), flags, mode, OpenType::File);
        let mut f = r.map_err(|e| self.error(what.clone(), &e))?;
        // In pieces: libssh2 turns everything it is given into queued packets at once.
        for piece in bytes.chunks(1 << 20) {
            f.write_all(piece).map_err(|e| self.io_error(&what, e))?;
        }
        match f.fsync() {
            Ok(()) => {}
            // LIBSSH2_FX_OP_UNSUPPORTED: a server without fsync@openssh.com; close still flushes.
            Err(e) if e.code() == ssh2::ErrorCode::SFTP(8) => {}
            Err(e) => return Err(self.error(what, &e)),
        }
        let perm =
            ssh2::FileStat { size: None, uid: None, gid: None, perm: Some(mode as u32), atime: None, mtime: None };
        f.setstat(perm).map_err(|e| self.error(what.clone(), &e))?;
        f.close().map_err(|e| self.error(what, &e))
    }

    pub fn mkdir(&mut self, path: &str, mode: i32) -> Result<(), SshError> {
        let r = self.sftp()?.mkdir(Path::new(path), mode);
        r.map_err(|e| self.error(format!("creating {path}"), &e))
    }

    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<(), SshError> {
        let st = ssh2::FileStat { size: None, uid: None, gid: None, perm: Some(mode), atime: None, mtime: None };
        let r = self.sftp()?.setstat(Path::new(path), st);
        r.map_err(|e| self.error(format!("chmod {path}"), &e))
    }

    pub fn unlink(&mut self, path: &str) -> Result<(), SshError> {
        let r = self.sftp()?.unlink(Path::new(path));
        r.map_err(|e| self.error(format!("removing {path}"), &e))
    }

    /// SFTP rename. OpenSSH's server refuses to replace an existing file (it links, then
    /// unlinks the old name), whatever flags are sent.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), SshError> {
        let r = self.sftp()?.rename(Path::new(from), Path::new(to), None);
        r.map_err(|e| self.error(format!("renaming {from} to {to}"), &e))
    }

    /// Names in a directory (without `.` and `..`).
    pub fn list_dir(&mut self, path: &str) -> Result<Vec<String>, SshError> {
        let r = self.sftp()?.readdir(Path::new(path));
        let entries = r.map_err(|e| self.error(format!("listing {path}"), &e))?;
        Ok(entries
            .into_iter()
            .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n != "." && n != "..")
            .collect())
    }

    /// The absolute form of `path` (`"."` is the login directory).
    pub fn realpath(&mut self, path: &str) -> Result<String, SshError> {
        let r = self.sftp()?.realpath(Path::new(path));
        let p = r.map_err(|e| self.error(format!("resolving {path}"), &e))?;
        Ok(p.to_string_lossy().into_owned())
    }
}

/// SFTP "no such file" / "no such path".
pub fn is_not_found(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::SFTP(2) | ssh2::ErrorCode::SFTP(10))
}
