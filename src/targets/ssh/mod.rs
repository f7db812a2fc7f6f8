//! `ssh:[user@]host[:port]`: a credential on an SSH host.
//!
//! The connection is made in `locate` (so one unreachable host fails alone) and kept for `read`,
//! `write` and `remove`. On it, a push is **one exec channel**: the shell conversation of
//! [`crate::targets::conversation`] ([`session`] is its SSH adapter), as the Docker and Kubernetes
//! fast paths run it. `locate` starts it and reads its header (uid, gid, the credential
//! directory and the current auth.json), `read` answers from that header, and `write` carries on
//! in the same shell: the directory is judged here with [`judge_dir`] (created 0700 when missing,
//! tightened, or refused), the bytes go byte-counted on stdin into an exclusive 0600 temp file,
//! which is checked (a private regular file with one link) and moved over auth.json with `mv -f`
//! (one `rename(2)`), then read back in the same shell and its SHA-256 compared here. So a push
//! costs the server what `ssh host 'cat > f'` costs: one session channel, one shell. A command
//! that only reads (`auth status`, `where`, `pull`) ends the script by closing its stdin.
//!
//! The remote home is `--remote-home`, else the `LLMX_HOME` that a non-interactive command sees on
//! the host (`~/.ssh/environment`, `SetEnv`), else the login directory + `/.llmx`; a relative or
//! `~/` path is taken from the login directory (see [`session`]).
//!
//! Refused before anything is written, from the header: a symlinked auth.json (never read through
//! either), a credential directory that is a symbolic link, an auth.json owned by another user;
//! and whatever [`judge_dir`] refuses (another user's directory, one others can write to such as
//! `/tmp`). Temp files an interrupted push left (`.auth.json.llmx-*`) are removed only when older
//! than ten minutes: a younger one may be another write's (another alias of the host, another
//! llmx). The credential travels only on the channel's stdin, never on a command line.
//!
//! **Fallback.** When the shell does not run the script (a restricted account: `ForceCommand
//! internal-sftp`, no `/bin/sh`) or the conversation fails on the way, the target uses the SFTP
//! path of [`sftp`], which keeps the same rules over several round trips. Removing a file is
//! always SFTP (one `unlink(2)` after the checks).

mod session;
pub mod sftp;

use crate::ssh::SshAddress;
use crate::ssh::{Session, SshError, SshOptions};
use crate::targets::conversation::{Header, WriteError};
use crate::targets::{
    DirFacts, DirKind, ErrorKind, Identity, Location, RemoteFile, StepFn, Target, TargetError, judge_dir,
};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sftp::Shell as Commands;
use sha2::{Digest, Sha256};

pub use sftp::TEMP_PREFIX;

/// One SSH host.
pub struct SshTarget {
    addr: SshAddress,
    opts: SshOptions,
    session: Option<Session>,
    /// The conversation `locate` started, kept for `write`.
    open: Option<(session::Shell, Header)>,
    /// What `locate` read, for `read`: the credential directory and its auth.json (or why it is
    /// refused).
    prefetched: Option<(String, Result<Option<RemoteFile>, TargetError>)>,
    /// Set when the conversation did not start on this host: the SFTP path is used, with or
    /// without commands.
    fallback: Option<Commands>,
    /// What the last write did with `--store file` (see [`Target::file_store_set`]).
    file_store_set: Option<bool>,
}

impl SshTarget {
    /// Nothing connects until [`Target::locate`].
    pub fn new(addr: SshAddress, opts: SshOptions) -> SshTarget {
        SshTarget { addr, opts, session: None, open: None, prefetched: None, fallback: None, file_store_set: None }
    }

    fn connected(&self) -> Result<Session, TargetError> {
        self.session.clone().ok_or_else(|| TargetError::new("not connected (locate was not called)"))
    }

    /// Start a conversation for `home` (`None`: the host's own rule); on failure remember that
    /// this host takes the SFTP path. A host that floods the channel's error output fails here:
    /// SFTP would meet the same `~/.ssh/rc`.
    async fn start(
        &mut self,
        session: &Session,
        home: Option<&str>,
        step: StepFn<'_>,
    ) -> Result<Option<(session::Shell, Header)>, TargetError> {
        match session::open(session, home).await {
            Ok(started) => {
                self.fallback = None;
                Ok(Some(started))
            }
            Err(u) if u.hostile => Err(TargetError::new(format!("{}: {}", session.host(), u.why))),
            Err(u) => {
                let why: String = crate::text::printable(u.why.trim()).chars().take(80).collect();
                step(&format!("the shell did not run the conversation ({why}): using SFTP"));
                self.fallback = Some(u.commands);
                Ok(None)
            }
        }
    }
}

/// Unreachable (resolve, connect, timeout); a credential or trust decision needed (refused keys,
/// a host key not known yet); anything else failed.
pub fn error_kind(e: &SshError) -> ErrorKind {
    match e {
        SshError::Resolve { .. } | SshError::Connect { .. } | SshError::Timeout { .. } => ErrorKind::Unreachable,
        SshError::Auth { .. } | SshError::UnknownHost { .. } => ErrorKind::AuthNeeded,
        _ => ErrorKind::Failed,
    }
}

impl From<SshError> for TargetError {
    fn from(e: SshError) -> TargetError {
        let hint = e.hint();
        let t = TargetError::new(e.to_string()).with_kind(error_kind(&e));
        match hint {
            Some(h) => t.with_hint(h),
            None => t,
        }
    }
}

fn refused(host: &str, path: &str, reason: impl Into<String>) -> TargetError {
    SshError::Refused { host: host.to_string(), path: path.to_string(), reason: reason.into() }.into()
}

/// The current auth.json as the header reports it, or why it is not read.
fn current(host: &str, h: &Header) -> Result<Option<RemoteFile>, TargetError> {
    if h.dir_link {
        let link = DirFacts { kind: DirKind::Link, uid: None, mode: 0 };
        return Err(refused(host, &h.home, judge_dir(&h.home, &link, None).err().unwrap_or_default()));
    }
    if h.symlink {
        return Err(refused(host, &auth_path(&h.home), "it is a symbolic link; remove it and push again"));
    }
    if h.unreadable {
        // Never taken for a missing file: it may be another user's (or not a regular file).
        return Err(refused(
            host,
            &auth_path(&h.home),
            "you cannot read it (another user's file, or not a regular file)",
        ));
    }
    Ok(h.current.clone().map(|f| RemoteFile { bytes: f.bytes, uid: Some(f.uid), gid: Some(f.gid), mode: Some(f.mode) }))
}

fn auth_path(home: &str) -> String {
    format!("{}/{}", home.trim_end_matches('/'), crate::home::AUTH_FILE)
}

/// What the header says must not be written: a linked directory or auth.json, another user's
/// auth.json.
fn check_writable(host: &str, h: &Header) -> Result<(), TargetError> {
    if h.symlink {
        return Err(refused(host, &auth_path(&h.home), sftp::SYMLINK_REFUSED));
    }
    current(host, h)?;
    if let Some(f) = &h.current
        && f.uid != h.uid
    {
        return Err(refused(host, &auth_path(&h.home), sftp::foreign_file(f.uid, h.uid)));
    }
    Ok(())
}

impl Target for SshTarget {
    fn label(&self) -> String {
        format!("ssh:{}", self.addr)
    }

    fn file_store_set(&self) -> Option<bool> {
        self.file_store_set
    }

    fn locate<'a>(
        &'a mut self,
        remote_home: Option<&'a str>,
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<Location, TargetError>> {
        async move {
            if self.session.is_none() {
                step("connecting");
                self.session = Some(Session::connect(&self.addr, &self.opts).await?);
            }
            let session = self.connected()?;
            self.open = None;
            self.prefetched = None;
            step("reading through the shell");
            let Some((shell, h)) = self.start(&session, remote_home, step).await? else {
                let commands = self.fallback.unwrap_or(Commands::Unusable);
                return Ok(sftp::locate(&session, remote_home, commands).await?);
            };
            if !h.home.starts_with('/') {
                return Err(TargetError::new(format!(
                    "{}: the remote shell named a credential directory that is not absolute ({})",
                    session.host(),
                    crate::text::printable(&h.home)
                )));
            }
            let loc = Location {
                home: h.home.clone(),
                owner: Some((h.uid, h.gid)),
                store: h.store.clone(),
                file_store: false,
            };
            self.prefetched = Some((h.home.clone(), current(&session.host(), &h)));
            self.open = Some((shell, h));
            Ok(loc)
        }
        .boxed()
    }

    fn read<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
        async move {
            let session = self.connected()?;
            if let Some((home, file)) = self.prefetched.take()
                && home == loc.home
            {
                return file;
            }
            if self.fallback.is_none() {
                // A conversation that only reads: dropped, it closes the script's stdin.
                if let Some((_shell, h)) = self.start(&session, Some(&loc.home), &|_| {}).await? {
                    return current(&session.host(), &h);
                }
            }
            Ok(sftp::read(&session, loc).await?)
        }
        .boxed()
    }

    fn write<'a>(
        &'a mut self,
        loc: &'a Location,
        bytes: &'a [u8],
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        async move {
            let session = self.connected()?;
            let host = session.host();
            self.prefetched = None;
            let open = match self.open.take() {
                Some((shell, h)) if h.home == loc.home => Some((shell, h)),
                _ if self.fallback.is_some() => None,
                _ => {
                    step("starting the remote shell");
                    self.start(&session, Some(&loc.home), step).await?
                }
            };
            let Some((shell, h)) = open else {
                let commands = self.fallback.unwrap_or(Commands::Unusable);
                return Ok(sftp::write(&session, loc, bytes, commands, step).await?);
            };
            check_writable(&host, &h)?;
            step("writing through the shell");
            match shell.write(bytes, loc.file_store).await {
                Ok(written) => {
                    self.file_store_set = written.file_store;
                    let back = written.file;
                    if Sha256::digest(&back.bytes) != Sha256::digest(bytes) {
                        return Err(SshError::Remote {
                            host,
                            what: format!("verifying {}", loc.auth_path()),
                            reason: "the file read back differs from what was written".into(),
                        }
                        .into());
                    }
                    Ok(())
                }
                // The directory is refused: final, nothing was written.
                Err(WriteError::Refused(e)) => Err(TargetError::new(format!("{host}: {}", e.message))),
                // The shell failed on the way (a tool it lacks, the link cut): SFTP may still do
                // it, with its own checks; if it cannot, the shell's reason is the first cause.
                Err(WriteError::Failed(e)) => {
                    let why: String = e.message.chars().take(80).collect();
                    step(&format!("{why}: trying SFTP"));
                    match sftp::write(&session, loc, bytes, Commands::Works, step).await {
                        Ok(()) => Ok(()),
                        Err(_) => Err(TargetError::new(format!("{host}: {}", e.message))),
                    }
                }
            }
        }
        .boxed()
    }

    fn identity(&self) -> Option<Identity> {
        let info = self.session.as_ref()?.info();
        Some(Identity::Ssh { host_key: info.host_key_fingerprint.clone(), user: info.user.clone(), port: info.port })
    }

    fn remove<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
        async move {
            // A conversation still open ends (it writes nothing).
            self.open = None;
            self.prefetched = None;
            let session = self.connected()?;
            Ok(sftp::remove(&session, loc).await?)
        }
        .boxed()
    }
}
