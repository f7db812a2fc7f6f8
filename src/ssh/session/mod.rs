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
//! At most `startups::PER_HOST` connections to one host are being set up (connected, not yet
//! authenticated) at a time, so that many targets on one sshd stay under its `MaxStartups`; a
//! direct connection sshd drops before greeting all the same is tried twice more after a pause.
//!
//! A connection through jump hosts is one such thread per hop: each hop's session carries the
//! next hop's SSH bytes in a `direct-tcpip` forward to one end of a local socket pair, and the next
//! session runs over the other end (libssh2 needs a socket). A `ProxyCommand` gets the other end
//! as its stdin and stdout ([`proxy`]). Jump hosts' sessions are shared within the process by
//! every connection that goes through them (`hops.rs`): one bastion login for a whole fleet.
//!
//! While streams run, the thread sends SSH keepalives and gives the connection up (every stream
//! ends with [`SshError::Closed`], later calls fail within a second) when nothing has come back
//! for the configured number of intervals: a dead network is noticed in bounded time.
//!
//! The connection ends when the last handle (including those inside [`RemoteProcess`] and
//! [`Forwarding`]) is dropped: the thread closes every channel, says goodbye and exits.
#![allow(unsafe_code, reason = "write(2) on the wake-up pipe of the owner thread")]

mod conn;
mod hops;
mod owner;
mod proxy;
mod pump;
mod startups;
mod streams;

use crate::ssh::SshAddress;
use crate::ssh::connect::{self, Destination, MAX_HOPS, Route, Transport};
use crate::ssh::known_hosts::host_port_name;
use crate::ssh::{SshError, SshOptions};
use futures_util::future::BoxFuture;
use owner::Owner;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::{mpsc as tmpsc, oneshot};

pub use conn::{Conn, is_not_found};
pub use hops::{KeepJumpHosts, keep_jump_hosts};
pub use proxy::end_all as end_proxy_commands;
pub use streams::{Forwarding, ProcessInput, RemoteProcess};

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
    /// The connection is known to be lost: [`hops`] hands out a new one instead.
    closed: AtomicBool,
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

enum Request {
    Call(Job),
    Spawn { cmd: String, events: tmpsc::UnboundedSender<ExecEvent>, reply: oneshot::Sender<Result<u64, SshError>> },
    Forward { sock: TcpStream, to: ForwardTo, reply: oneshot::Sender<Result<Forwarding, SshError>> },
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
    /// Resolve `addr` through `~/.ssh/config`, connect (directly, through its jump hosts or its
    /// `ProxyCommand`), verify the host key, authenticate, and start the thread that owns the
    /// connection.
    pub async fn connect(addr: &SshAddress, opts: &SshOptions) -> Result<Session, SshError> {
        let dest = Destination::resolve(addr, opts)?;
        Session::open(dest, opts.clone(), 0).await
    }

    /// Connect to a resolved destination; `depth` jump hosts were followed to get here. Its own
    /// jump host's session is taken from [`hops`] (shared with every other connection through
    /// it) and carries a forward of its own.
    fn open(dest: Destination, opts: SshOptions, depth: usize) -> BoxFuture<'static, Result<Session, SshError>> {
        Box::pin(async move {
            let shown = host_port_name(&dest.host, dest.port);
            let (transport, via): (Transport, Option<Via>) = match &dest.route {
                Route::Direct => (Transport::Tcp, None),
                Route::Jump(chain) => {
                    let Some((last, before)) = chain.split_last() else {
                        return Err(SshError::Connect { addr: shown, reason: "empty ProxyJump chain".into() });
                    };
                    if depth + chain.len() > MAX_HOPS {
                        return Err(SshError::Config {
                            path: opts.ssh_dir()?.join("config"),
                            reason: format!(
                                "more than {MAX_HOPS} jump hosts on the way to {shown} (a ProxyJump loop?)"
                            ),
                        });
                    }
                    // The last hop is reached through the ones before it (as `ssh -J a,b` runs
                    // `ssh -J a -W host:port b`); the first one by its own config.
                    let before = if before.is_empty() { None } else { Some(before.to_vec()) };
                    let hop = Destination::resolve_with(last, &opts, before)?;
                    let key = hops::Key::new(&hop, &opts, depth + 1);
                    let mut retried = false;
                    loop {
                        let previous =
                            hops::session(key.clone(), || Session::open(hop.clone(), opts.clone(), depth + 1)).await?;
                        let (ours, theirs) = UnixStream::pair().map_err(|e| SshError::Connect {
                            addr: shown.clone(),
                            reason: format!("cannot make a socket pair: {e}"),
                        })?;
                        match previous.forward_stream(ours, &dest.host, dest.port).await {
                            Ok(forward) => {
                                break (
                                    Transport::Stream(theirs),
                                    Some(Via::Jump { _forward: forward, _session: previous }),
                                );
                            }
                            // The shared hop's connection died after it was made: make a new one, once.
                            Err(SshError::Closed { .. }) if !retried => {
                                previous.mark_closed();
                                retried = true;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Route::Command(cmd) => {
                    let (child, stream) = proxy::spawn(cmd).map_err(|e| SshError::Connect {
                        addr: shown.clone(),
                        reason: format!("cannot run the ProxyCommand '{cmd}': {e}"),
                    })?;
                    (Transport::Stream(stream), Some(Via::Command(child)))
                }
            };
            // Wait for this host's turn (sshd's MaxStartups), held until authenticated.
            let turn = startups::admit(&dest.host, dest.port).await;
            let retry_dropped = matches!(transport, Transport::Tcp);
            let (ready_tx, ready_rx) = oneshot::channel();
            let name = format!("ssh {shown}");
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                // sshd over its MaxStartups (other clients, or its own lag in counting ours
                // as authenticated) closes a new connection before greeting: by design a
                // passing state, so a direct connection is tried again after a pause.
                let mut established = connect::establish(&dest, &opts, transport);
                if retry_dropped {
                    for pause in startups::RETRY_PAUSES {
                        match &established {
                            Err(e) if connect::dropped_before_greeting(e) => {
                                std::thread::sleep(startups::jittered(pause));
                                established = connect::establish(&dest, &opts, Transport::Tcp);
                            }
                            _ => break,
                        }
                    }
                }
                match established {
                    Ok((sess, fd, fingerprint)) => {
                        let info = SessionInfo {
                            alias: dest.alias.clone(),
                            host: dest.host.clone(),
                            port: dest.port,
                            user: dest.user.clone(),
                            host_key_fingerprint: fingerprint,
                        };
                        let keepalive = (dest.keepalive_interval, dest.keepalive_count);
                        match Owner::new(sess, fd, info, keepalive, via) {
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
                }
            });
            if let Err(e) = spawned {
                return Err(SshError::Connect { addr: shown, reason: format!("cannot start a thread: {e}") });
            }
            let ready =
                ready_rx.await.unwrap_or_else(|_| Err(SshError::Closed { host: shown, during: "connecting".into() }));
            drop(turn);
            ready
        })
    }

    /// Whether the connection is known to be lost (the peer stopped answering, or its socket
    /// failed). A `false` is no promise: the next call may still find it gone.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    fn mark_closed(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }

    pub fn info(&self) -> &SessionInfo {
        &self.shared.info
    }

    /// `host` or `[host]:port`, as messages name the peer.
    pub fn host(&self) -> String {
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
        self.send(Request::Forward { sock: local, to: ForwardTo::Tcp { host: host.to_string(), port }, reply })?;
        rx.await.unwrap_or_else(|_| Err(SshError::Closed { host: self.host(), during: "opening a forward".into() }))
    }

    /// As [`forward`](Session::forward), for one end of a local socket pair (the next hop of a
    /// jump chain speaks SSH over the other end).
    pub async fn forward_stream(&self, local: UnixStream, host: &str, port: u16) -> Result<Forwarding, SshError> {
        // The relay only reads, writes, shuts down and polls the socket, which a Unix socket does
        // as a TCP one does; its peer address is unknown, so the channel names 127.0.0.1:0 as
        // the originator.
        self.forward(TcpStream::from(OwnedFd::from(local)), host, port).await
    }

    /// Connect one end of a local socket pair to the Unix socket `path` on the remote side (a
    /// `direct-streamlocal@openssh.com` channel, what `ssh -L /local.sock:/remote.sock` does):
    /// how a Docker Engine is reached over SSH. An `Err` means the server refused the channel
    /// (no such socket, no permission, or stream-local forwarding disabled in sshd_config).
    pub async fn forward_unix(&self, local: UnixStream, path: &str) -> Result<Forwarding, SshError> {
        let (reply, rx) = oneshot::channel();
        let sock = TcpStream::from(OwnedFd::from(local));
        self.send(Request::Forward { sock, to: ForwardTo::Socket(path.to_string()), reply })?;
        rx.await.unwrap_or_else(|_| Err(SshError::Closed { host: self.host(), during: "opening a forward".into() }))
    }
}

/// Where a forwarded connection goes on the remote side.
enum ForwardTo {
    Tcp { host: String, port: u16 },
    Socket(String),
}

/// What a connection goes through and must outlive it: the jump host's session and the forward
/// that carries it, or the `ProxyCommand`. Dropped by the owner thread after its goodbye.
pub(crate) enum Via {
    Jump { _forward: Forwarding, _session: Session },
    Command(#[allow(dead_code, reason = "held to be dropped: kills the proxy command")] proxy::ProxyChild),
}

fn wake(fd: RawFd) {
    // A full pipe already holds a wake-up; any other failure means the thread is gone, which the
    // request channel reports.
    // SAFETY: writing one byte from a valid buffer to a file descriptor we own.
    let _ = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
}
