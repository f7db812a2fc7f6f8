//! One SSH connection, owned by one thread.
//!
//! libssh2 serialises every call on a session, and a blocking read on one channel stalls every
//! other channel. So a dedicated thread owns the `ssh2::Session` and all its channels, and async
//! code talks to it through [`Session`], a cheap cloneable handle that sends requests over a
//! channel and wakes the thread through a pipe. The thread runs:
//!
//! - **one-shot calls** ([`Session::call`]): a closure run on the thread with the session in
//!   blocking mode (bounded by the I/O timeout), given a [`Conn`] with exec and SFTP helpers. A
//!   whole sequence (stat, upload, rename) costs one hop to the thread.
//! - **streams**, pumped in non-blocking mode between calls: remote processes with their output
//!   streamed as it comes ([`Session::spawn`]) and `direct-tcpip` forwards of local TCP
//!   connections ([`Session::forward`]). The loop `poll`s the SSH socket, the wake pipe and the
//!   forwarded sockets, and only sleeps after a pass that moved nothing while libssh2 holds no
//!   queued data for any channel.
//!
//! The connection ends when the last handle (including those inside [`RemoteProcess`] and
//! [`Forwarding`]) is dropped: the thread closes every channel, says goodbye and exits.

use crate::ssh::connect::{self, Destination};
use crate::ssh::known_hosts::host_port_name;
use crate::ssh::{SshError, SshOptions};
use crate::target::SshAddress;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, mpsc};
use tokio::sync::{mpsc as tmpsc, oneshot};

/// What we know about the connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The name the user gave (possibly an `~/.ssh/config` alias).
    pub alias: String,
    /// `HostName` after the config, and the port.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `SHA256:…` of the verified host key.
    pub host_key_fingerprint: String,
}

/// A handle on a connection. Clone it freely; the connection lives while any clone does.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    tx: mpsc::Sender<Request>,
    /// Write end of the wake pipe; closing it (when the last handle goes) wakes the thread too.
    wake: OwnedFd,
    info: SessionInfo,
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

enum Request {
    Call(Job),
    Spawn { cmd: String, events: tmpsc::UnboundedSender<ExecEvent>, reply: oneshot::Sender<Result<u64, SshError>> },
    Forward { sock: TcpStream, host: String, port: u16, reply: oneshot::Sender<Result<Forwarding, SshError>> },
    Stdin { id: u64, data: Vec<u8> },
    CloseStdin { id: u64 },
    Close { id: u64 },
}

/// Output of a remote command run to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How a remote command ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub signal: Option<String>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }
}

/// What a streamed remote process reports, in order; `Exit` or `Error` comes last.
#[derive(Debug)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitStatus),
    Error(SshError),
}

/// Bytes moved by a finished forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    pub to_remote: u64,
    pub to_local: u64,
}

impl Session {
    /// Resolve `addr` through `~/.ssh/config`, connect, verify the host key, authenticate, and
    /// start the thread that owns the connection.
    pub async fn connect(addr: &SshAddress, opts: &SshOptions) -> Result<Session, SshError> {
        let dest = Destination::resolve(addr, opts)?;
        let opts = opts.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let name = format!("ssh {}", host_port_name(&dest.host, dest.port));
        let spawned = std::thread::Builder::new().name(name).spawn(move || match connect::establish(&dest, &opts) {
            Ok((sess, fd, fingerprint)) => {
                let info = SessionInfo {
                    alias: dest.alias.clone(),
                    host: dest.host.clone(),
                    port: dest.port,
                    user: dest.user.clone(),
                    host_key_fingerprint: fingerprint,
                };
                match Owner::new(sess, fd, info) {
                    Ok((owner, handle)) => {
                        if ready_tx.send(Ok(handle)).is_ok() {
                            owner.run();
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        });
        if let Err(e) = spawned {
            return Err(SshError::Connect { addr: addr.to_string(), reason: format!("cannot start a thread: {e}") });
        }
        ready_rx.await.unwrap_or_else(|_| Err(SshError::Closed { host: addr.to_string(), during: "connecting".into() }))
    }

    pub fn info(&self) -> &SessionInfo {
        &self.shared.info
    }

    fn host(&self) -> String {
        host_port_name(&self.shared.info.host, self.shared.info.port)
    }

    fn send(&self, r: Request) -> Result<(), SshError> {
        self.shared
            .tx
            .send(r)
            .map_err(|_| SshError::Closed { host: self.host(), during: "sending a request".into() })?;
        wake(self.shared.wake.as_raw_fd());
        Ok(())
    }

    /// Run `f` on the connection's thread, with the session in blocking mode. Keep it short: the
    /// streams of this connection wait while it runs.
    pub async fn call<T, F>(&self, f: F) -> Result<T, SshError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, SshError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Call(Box::new(move |c: &mut Conn| {
            let _ = tx.send(f(c));
        })))?;
        rx.await.unwrap_or_else(|_| Err(SshError::Closed { host: self.host(), during: "a remote call".into() }))
    }

    /// Run `cmd` (a shell command line: quote its arguments with [`crate::ssh::shell_quote`]),
    /// feed it `stdin`, and collect its output. For commands with modest output.
    pub async fn exec(&self, cmd: &str, stdin: Vec<u8>) -> Result<ExecOutput, SshError> {
        let cmd = cmd.to_string();
        self.call(move |c| c.exec(&cmd, &stdin)).await
    }

    /// Start `cmd` and stream its output as [`ExecEvent`]s.
    pub async fn spawn(&self, cmd: &str) -> Result<RemoteProcess, SshError> {
        let (events_tx, events) = tmpsc::unbounded_channel();
        let (reply, rx) = oneshot::channel();
        self.send(Request::Spawn { cmd: cmd.to_string(), events: events_tx, reply })?;
        let id = rx
            .await
            .unwrap_or_else(|_| Err(SshError::Closed { host: self.host(), during: "starting a command".into() }))?;
        Ok(RemoteProcess { id, session: self.clone(), events })
    }

    /// Forward the local connection `local` to `host:port` as seen from the remote side (a
    /// `direct-tcpip` channel, what `ssh -L` does). Returns once the remote side accepted the
    /// channel; an `Err` here means it refused (nothing listening there, forwarding disabled).
    pub async fn forward(&self, local: TcpStream, host: &str, port: u16) -> Result<Forwarding, SshError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Forward { sock: local, host: host.to_string(), port, reply })?;
        rx.await.unwrap_or_else(|_| Err(SshError::Closed { host: self.host(), during: "opening a forward".into() }))
    }
}

/// A remote process started by [`Session::spawn`]. Dropping it closes the channel.
pub struct RemoteProcess {
    id: u64,
    session: Session,
    events: tmpsc::UnboundedReceiver<ExecEvent>,
}

impl RemoteProcess {
    /// The next event; `None` after the last one.
    pub async fn next(&mut self) -> Option<ExecEvent> {
        self.events.recv().await
    }

    pub fn write_stdin(&self, data: Vec<u8>) -> Result<(), SshError> {
        self.session.send(Request::Stdin { id: self.id, data })
    }

    /// Send EOF on stdin once what was written has gone out.
    pub fn close_stdin(&self) -> Result<(), SshError> {
        self.session.send(Request::CloseStdin { id: self.id })
    }
}

impl Drop for RemoteProcess {
    fn drop(&mut self) {
        let _ = self.session.send(Request::Close { id: self.id });
    }
}

/// A running forward. [`Forwarding::finished`] waits for both sides to close; dropping it before
/// then tears the forward down.
pub struct Forwarding {
    id: u64,
    session: Option<Session>,
    done: Option<oneshot::Receiver<Result<ForwardStats, SshError>>>,
}

impl Forwarding {
    pub async fn finished(mut self) -> Result<ForwardStats, SshError> {
        let host = self.session.as_ref().map(|s| s.host()).unwrap_or_default();
        let rx = self.done.take();
        let r = match rx {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(SshError::Closed { host, during: "a forward".into() })),
            None => Err(SshError::Closed { host, during: "a forward".into() }),
        };
        self.session = None; // finished: nothing to close on drop
        r
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(s) = &self.session {
            let _ = s.send(Request::Close { id: self.id });
        }
    }
}

fn wake(fd: RawFd) {
    // A full pipe already holds a wake-up; any other failure means the thread is gone, which the
    // request channel reports.
    // SAFETY: writing one byte from a valid buffer to a file descriptor we own.
    let _ = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
}

/// The connection as seen from inside a [`Session::call`]: blocking helpers.
pub struct Conn {
    sess: ssh2::Session,
    sftp: Option<ssh2::Sftp>,
    host: String,
}

impl Conn {
    /// The underlying session, for what the helpers do not cover.
    pub fn raw(&self) -> &ssh2::Session {
        &self.sess
    }

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

    fn io_error(&self, what: &str, e: std::io::Error) -> SshError {
        // ssh2 turns LIBSSH2_ERROR_TIMEOUT into TimedOut and every other session error into
        // `Other` with libssh2's message, which names a lost connection as such.
        let reason = if e.kind() == std::io::ErrorKind::TimedOut { "timed out".to_string() } else { e.to_string() };
        SshError::Remote { host: self.host.clone(), what: what.into(), reason }
    }

    /// Run `cmd`, write `stdin` to it, and collect stdout, stderr and the exit status.
    pub fn exec(&mut self, cmd: &str, stdin: &[u8]) -> Result<ExecOutput, SshError> {
        let what = "running a remote command";
        let mut ch = self.sess.channel_session().map_err(|e| self.error(what, &e))?;
        ch.exec(cmd).map_err(|e| self.error(what, &e))?;
        if !stdin.is_empty() {
            ch.write_all(stdin).map_err(|e| self.io_error(what, e))?;
        }
        ch.send_eof().map_err(|e| self.error(what, &e))?;
        let mut stdout = Vec::new();
        ch.read_to_end(&mut stdout).map_err(|e| self.io_error(what, e))?;
        let mut stderr = Vec::new();
        ch.stderr().read_to_end(&mut stderr).map_err(|e| self.io_error(what, e))?;
        ch.wait_close().map_err(|e| self.error(what, &e))?;
        let code = ch.exit_status().map_err(|e| self.error(what, &e))?;
        let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
        Ok(ExecOutput { status: ExitStatus { code, signal }, stdout, stderr })
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

    /// The whole content of a file: `None` when it does not exist.
    pub fn read_file(&mut self, path: &str) -> Result<Option<Vec<u8>>, SshError> {
        let r = self.sftp()?.open(Path::new(path));
        let mut f = match r {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.error(format!("opening {path}"), &e)),
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| self.io_error(&format!("reading {path}"), e))?;
        Ok(Some(buf))
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

/// How long the goodbye may take when the last handle goes.
const CLOSE_TIMEOUT_MS: u32 = 2000;

const EAGAIN: ssh2::ErrorCode = ssh2::ErrorCode::Session(-37);

/// The thread's state.
struct Owner {
    sess: ssh2::Session,
    sock: RawFd,
    wake_rx: OwnedFd,
    rx: mpsc::Receiver<Request>,
    conn: Conn,
    streams: HashMap<u64, Stream>,
    /// Channels we closed whose peer has not answered yet.
    closing: Vec<ssh2::Channel>,
    next_id: u64,
    weak: std::sync::Weak<Shared>,
}

struct Stream {
    ch: ssh2::Channel,
    kind: Kind,
}

enum Kind {
    Exec(ExecState),
    Forward(ForwardState),
}

struct ExecState {
    events: tmpsc::UnboundedSender<ExecEvent>,
    stdin: Vec<u8>,
    stdin_eof: bool,
    eof_sent: bool,
    out_done: bool,
    err_done: bool,
    closed: bool,
}

struct ForwardState {
    sock: TcpStream,
    to_remote: Vec<u8>,
    to_local: Vec<u8>,
    local_eof: bool,
    eof_sent: bool,
    remote_eof: bool,
    local_shut: bool,
    stats: ForwardStats,
    target: String,
    done: Option<oneshot::Sender<Result<ForwardStats, SshError>>>,
}

/// What one pump of a stream did.
enum Pumped {
    Idle,
    Moved,
    Finished,
}

impl Owner {
    fn new(sess: ssh2::Session, sock: RawFd, info: SessionInfo) -> Result<(Owner, Session), SshError> {
        let host = host_port_name(&info.host, info.port);
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 fills the two-element array we pass.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(SshError::Remote { host, what: "creating a pipe".into(), reason: e.to_string() });
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (wake_rx, wake_tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared { tx, wake: wake_tx, info });
        let weak = Arc::downgrade(&shared);
        let conn = Conn { sess: sess.clone(), sftp: None, host };
        sess.set_blocking(false);
        let owner =
            Owner { sess, sock, wake_rx, rx, conn, streams: HashMap::new(), closing: Vec::new(), next_id: 1, weak };
        Ok((owner, Session { shared }))
    }

    fn run(mut self) {
        loop {
            self.drain_wake();
            loop {
                match self.rx.try_recv() {
                    Ok(r) => self.handle(r),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.shutdown(),
                }
            }
            if self.pump_all() || self.has_pending() {
                continue;
            }
            self.wait();
        }
    }

    fn drain_wake(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a local buffer of the given length from a descriptor we own.
        while unsafe { libc::read(self.wake_rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// Run `f` with the session in blocking mode, then go back to non-blocking.
    fn blocking<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.sess.set_blocking(true);
        let r = f(self);
        self.sess.set_blocking(false);
        r
    }

    fn handle(&mut self, r: Request) {
        match r {
            Request::Call(job) => self.blocking(|o| job(&mut o.conn)),
            Request::Spawn { cmd, events, reply } => {
                let r = self.blocking(|o| {
                    let what = "starting a remote command";
                    let mut ch = o.sess.channel_session().map_err(|e| o.conn.error(what, &e))?;
                    ch.exec(&cmd).map_err(|e| o.conn.error(what, &e))?;
                    Ok(ch)
                });
                match r {
                    Ok(ch) => {
                        let id = self.add(
                            ch,
                            Kind::Exec(ExecState {
                                events,
                                stdin: Vec::new(),
                                stdin_eof: false,
                                eof_sent: false,
                                out_done: false,
                                err_done: false,
                                closed: false,
                            }),
                        );
                        let _ = reply.send(Ok(id));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Request::Forward { sock, host, port, reply } => {
                let target = format!("{host}:{port}");
                let r = self.blocking(|o| {
                    let (src, src_port) = match sock.peer_addr() {
                        Ok(a) => (a.ip().to_string(), a.port()),
                        Err(_) => ("127.0.0.1".to_string(), 0),
                    };
                    o.sess
                        .channel_direct_tcpip(&host, port, Some((&src, src_port)))
                        .map_err(|e| o.conn.error(format!("forwarding to {target} on the remote side"), &e))
                });
                let ch = match r {
                    Ok(ch) => ch,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = sock.set_nonblocking(true) {
                    let _ = reply.send(Err(SshError::Remote {
                        host: self.conn.host.clone(),
                        what: "forwarding".into(),
                        reason: e.to_string(),
                    }));
                    return;
                }
                let (done_tx, done_rx) = oneshot::channel();
                let id = self.add(
                    ch,
                    Kind::Forward(ForwardState {
                        sock,
                        to_remote: Vec::new(),
                        to_local: Vec::new(),
                        local_eof: false,
                        eof_sent: false,
                        remote_eof: false,
                        local_shut: false,
                        stats: ForwardStats::default(),
                        target,
                        done: Some(done_tx),
                    }),
                );
                let session = self.weak.upgrade().map(|shared| Session { shared });
                let _ = reply.send(Ok(Forwarding { id, session, done: Some(done_rx) }));
            }
            Request::Stdin { id, data } => {
                if let Some(Stream { kind: Kind::Exec(st), .. }) = self.streams.get_mut(&id) {
                    st.stdin.extend_from_slice(&data);
                }
            }
            Request::CloseStdin { id } => {
                if let Some(Stream { kind: Kind::Exec(st), .. }) = self.streams.get_mut(&id) {
                    st.stdin_eof = true;
                }
            }
            Request::Close { id } => {
                if let Some(s) = self.streams.remove(&id) {
                    self.finish(s, None);
                }
            }
        }
    }

    fn add(&mut self, ch: ssh2::Channel, kind: Kind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.streams.insert(id, Stream { ch, kind });
        id
    }

    /// Close a stream's channel and report its end. Our close goes out at once; the peer's answer
    /// may take as long as the remote process lives, so the channel waits in `closing` meanwhile
    /// instead of holding up the other streams.
    fn finish(&mut self, mut s: Stream, error: Option<SshError>) {
        if matches!(s.ch.close(), Err(e) if e.code() == EAGAIN) {
            self.closing.push(s.ch.clone());
        }
        match s.kind {
            Kind::Exec(st) => {
                let event = match error {
                    Some(e) => ExecEvent::Error(e),
                    None if st.closed => {
                        let code = s.ch.exit_status().unwrap_or(-1);
                        let signal = s.ch.exit_signal().ok().and_then(|x| x.exit_signal);
                        ExecEvent::Exit(ExitStatus { code, signal })
                    }
                    None => ExecEvent::Error(SshError::Remote {
                        host: self.conn.host.clone(),
                        what: "a remote command".into(),
                        reason: "closed before it finished".into(),
                    }),
                };
                let _ = st.events.send(event);
            }
            Kind::Forward(mut st) => {
                let _ = st.sock.shutdown(Shutdown::Both);
                if let Some(done) = st.done.take() {
                    let _ = done.send(match error {
                        Some(e) => Err(e),
                        None => Ok(st.stats),
                    });
                }
            }
        }
    }

    /// One pass over every stream; `true` when anything moved.
    fn pump_all(&mut self) -> bool {
        let mut moved = false;
        self.closing.retain_mut(|ch| matches!(ch.close(), Err(e) if e.code() == EAGAIN));
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            let r = match &mut s.kind {
                Kind::Exec(st) => pump_exec(&mut s.ch, st),
                Kind::Forward(st) => pump_forward(&mut s.ch, st),
            };
            match r {
                Ok(Pumped::Idle) => {}
                Ok(Pumped::Moved) => moved = true,
                Ok(Pumped::Finished) => {
                    moved = true;
                    if let Some(s) = self.streams.remove(&id) {
                        self.finish(s, None);
                    }
                }
                Err(e) => {
                    moved = true;
                    if let Some(s) = self.streams.remove(&id) {
                        let err = match e {
                            PumpError::Ssh(e) => self.conn.error(describe(&s), &e),
                            PumpError::Channel(e) => self.conn.io_error(&describe(&s), e),
                            PumpError::Local(e) => SshError::Remote {
                                host: self.conn.host.clone(),
                                what: describe(&s),
                                reason: format!("local connection: {e}"),
                            },
                        };
                        self.finish(s, Some(err));
                    }
                }
            }
        }
        moved
    }

    /// Whether libssh2 already holds data or an end for a channel (read from the socket while
    /// serving another one): then `poll` would not wake us for it.
    fn has_pending(&mut self) -> bool {
        self.streams.values_mut().any(|s| match &mut s.kind {
            Kind::Exec(st) if st.out_done && st.err_done => {
                if !st.closed && s.ch.wait_close().is_ok() {
                    st.closed = true;
                }
                st.closed
            }
            Kind::Exec(_) => s.ch.read_window().available > 0 || s.ch.eof(),
            Kind::Forward(st) => {
                st.to_local.is_empty() && !st.remote_eof && (s.ch.read_window().available > 0 || s.ch.eof())
            }
        })
    }

    fn wait(&mut self) {
        let mut fds = vec![libc::pollfd { fd: self.wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        let mut timeout = -1;
        if !self.streams.is_empty() || !self.closing.is_empty() {
            let mut ev = libc::POLLIN;
            if matches!(self.sess.block_directions(), ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both) {
                ev |= libc::POLLOUT;
            }
            fds.push(libc::pollfd { fd: self.sock, events: ev, revents: 0 });
            for s in self.streams.values() {
                if let Kind::Forward(st) = &s.kind {
                    let mut ev = 0;
                    if st.to_remote.is_empty() && !st.local_eof {
                        ev |= libc::POLLIN;
                    }
                    if !st.to_local.is_empty() {
                        ev |= libc::POLLOUT;
                    }
                    fds.push(libc::pollfd { fd: st.sock.as_raw_fd(), events: ev, revents: 0 });
                }
            }
            // A safety net only: everything that matters wakes the poll.
            timeout = 250;
        }
        // SAFETY: `fds` is a valid array of pollfd of the length given.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    }

    fn shutdown(mut self) {
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.streams.remove(&id) {
                self.finish(s, None);
            }
        }
        self.conn.sftp = None;
        self.closing.clear();
        self.sess.set_timeout(CLOSE_TIMEOUT_MS);
        self.blocking(|o| {
            let _ = o.sess.disconnect(None, "llmx: done", None);
        });
    }
}

fn describe(s: &Stream) -> String {
    match &s.kind {
        Kind::Exec(_) => "a remote command".to_string(),
        Kind::Forward(st) => format!("the forward to {}", st.target),
    }
}

enum PumpError {
    Ssh(ssh2::Error),
    /// A channel read or write seen through `std::io`.
    Channel(std::io::Error),
    Local(std::io::Error),
}

/// `Ok(None)` when libssh2 would block.
fn again<T>(r: Result<T, ssh2::Error>) -> Result<Option<T>, PumpError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code() == EAGAIN => Ok(None),
        Err(e) => Err(PumpError::Ssh(e)),
    }
}

/// The same for libssh2 calls seen through `std::io`.
fn again_io<T>(r: std::io::Result<T>) -> Result<Option<T>, PumpError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(PumpError::Channel(e)),
    }
}

const CHUNK: usize = 32 * 1024;

fn pump_exec(ch: &mut ssh2::Channel, st: &mut ExecState) -> Result<Pumped, PumpError> {
    let mut moved = false;
    if !st.stdin.is_empty()
        && let Some(n) = again_io(ch.write(&st.stdin))?
    {
        st.stdin.drain(..n);
        moved = true;
    }
    if st.stdin.is_empty() && st.stdin_eof && !st.eof_sent && again(ch.send_eof())?.is_some() {
        st.eof_sent = true;
        moved = true;
    }
    let mut buf = [0u8; CHUNK];
    while !st.out_done {
        match again_io(ch.read(&mut buf))? {
            Some(0) => st.out_done = true,
            Some(n) => {
                let _ = st.events.send(ExecEvent::Stdout(buf[..n].to_vec()));
            }
            None => break,
        }
        moved = true;
    }
    while !st.err_done {
        match again_io(ch.stderr().read(&mut buf))? {
            Some(0) => st.err_done = true,
            Some(n) => {
                let _ = st.events.send(ExecEvent::Stderr(buf[..n].to_vec()));
            }
            None => break,
        }
        moved = true;
    }
    if st.out_done && st.err_done && !st.closed && again(ch.wait_close())?.is_some() {
        st.closed = true;
    }
    if st.closed {
        return Ok(Pumped::Finished);
    }
    Ok(if moved { Pumped::Moved } else { Pumped::Idle })
}

fn pump_forward(ch: &mut ssh2::Channel, st: &mut ForwardState) -> Result<Pumped, PumpError> {
    let mut moved = false;
    let mut buf = [0u8; CHUNK];
    // local -> remote
    if st.to_remote.is_empty() && !st.local_eof {
        match st.sock.read(&mut buf) {
            Ok(0) => st.local_eof = true,
            Ok(n) => st.to_remote.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PumpError::Local(e)),
        }
        moved |= st.local_eof || !st.to_remote.is_empty();
    }
    if !st.to_remote.is_empty() {
        match again_io(ch.write(&st.to_remote)) {
            Ok(Some(n)) => {
                st.to_remote.drain(..n);
                st.stats.to_remote += n as u64;
                moved = true;
            }
            Ok(None) => {}
            // The remote end already closed: what the local side still sends has nowhere to go.
            Err(_) if st.remote_eof => {
                st.to_remote.clear();
                st.local_eof = true;
                st.eof_sent = true;
            }
            Err(e) => return Err(e),
        }
    }
    if st.to_remote.is_empty() && st.local_eof && !st.eof_sent {
        match again(ch.send_eof()) {
            Ok(Some(())) => st.eof_sent = true,
            Ok(None) => {}
            Err(_) if st.remote_eof => st.eof_sent = true,
            Err(e) => return Err(e),
        }
        moved |= st.eof_sent;
    }
    // remote -> local
    if st.to_local.is_empty() && !st.remote_eof {
        match again_io(ch.read(&mut buf))? {
            Some(0) => st.remote_eof = true,
            Some(n) => st.to_local.extend_from_slice(&buf[..n]),
            None => {}
        }
        moved |= st.remote_eof || !st.to_local.is_empty();
    }
    if !st.to_local.is_empty() {
        match st.sock.write(&st.to_local) {
            Ok(n) => {
                st.to_local.drain(..n);
                st.stats.to_local += n as u64;
                moved = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PumpError::Local(e)),
        }
    }
    if st.to_local.is_empty() && st.remote_eof && !st.local_shut {
        let _ = st.sock.shutdown(Shutdown::Write);
        st.local_shut = true;
        moved = true;
    }
    if st.remote_eof && st.to_local.is_empty() && st.eof_sent {
        return Ok(Pumped::Finished);
    }
    Ok(if moved { Pumped::Moved } else { Pumped::Idle })
}
