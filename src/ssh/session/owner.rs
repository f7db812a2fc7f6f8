//! [`Owner`]: the thread that owns one `ssh2::Session` and all its channels. It serves the
//! requests of the [`Session`] handles (one-shot calls in blocking mode, new streams, stdin,
//! closes), pumps the streams (see [`super::pump`]) in non-blocking mode, `poll`s when nothing
//! moves, and says goodbye when the last handle is gone.
#![allow(unsafe_code, reason = "pipe2(2), read(2) and poll(2) drive the session thread: std has no poll")]

use super::pump::{
    EAGAIN, ExecState, ForwardState, Kind, PumpError, Pumped, Stream, describe, pump_exec, pump_forward,
};
use super::{
    Conn, ExecEvent, ExitStatus, ForwardStats, ForwardTo, Forwarding, Request, Session, SessionInfo, Shared, Via,
};
use crate::ssh::known_hosts::host_port_name;
use crate::ssh::{SshError, posix_command};
use std::collections::HashMap;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long the goodbye may take when the last handle goes.
const CLOSE_TIMEOUT_MS: u32 = 2000;
/// Once the peer is known lost, how long any further blocking call may wait.
const LOST_TIMEOUT_MS: u32 = 1000;

/// The thread's state.
pub(super) struct Owner {
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
    /// Keepalive interval (zero: none) and how long silence may last before the connection is
    /// given up.
    keepalive: Duration,
    silence_limit: Duration,
    /// When the peer last sent anything (or a call was answered).
    last_heard: Instant,
    /// The peer stopped answering: every stream was ended.
    lost: bool,
    /// The jump host or proxy command this connection runs through: dropped after the goodbye.
    via: Option<Via>,
}

impl Owner {
    pub(super) fn new(
        sess: ssh2::Session,
        sock: RawFd,
        info: SessionInfo,
        (keepalive, count): (Duration, u32),
        via: Option<Via>,
    ) -> Result<(Owner, Session), SshError> {
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
        let shared = Arc::new(Shared { tx, wake: wake_tx, info, closed: Default::default() });
        let weak = Arc::downgrade(&shared);
        let conn = Conn { sess: sess.clone(), sftp: None, host, sock };
        if !keepalive.is_zero() {
            // want_reply: the server must answer, which is what tells a live peer from a dead one.
            sess.set_keepalive(true, u32::try_from(keepalive.as_secs().max(1)).unwrap_or(u32::MAX));
        }
        sess.set_blocking(false);
        let owner = Owner {
            sess,
            sock,
            wake_rx,
            rx,
            conn,
            streams: HashMap::new(),
            closing: Vec::new(),
            next_id: 1,
            weak,
            keepalive,
            // One interval more than the count: libssh2 schedules keepalives in whole seconds.
            silence_limit: keepalive.saturating_mul(count.max(1).saturating_add(1)),
            last_heard: Instant::now(),
            lost: false,
            via,
        };
        Ok((owner, Session { shared }))
    }

    pub(super) fn run(mut self) {
        loop {
            self.drain_wake();
            loop {
                match self.rx.try_recv() {
                    Ok(r) => {
                        self.handle(r);
                        self.last_heard = Instant::now();
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.shutdown(),
                }
            }
            if self.pump_all() || self.has_pending() {
                continue;
            }
            self.check_alive();
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
                    ch.exec(&posix_command(&cmd)).map_err(|e| o.conn.error(what, &e))?;
                    Ok(ch)
                });
                match r {
                    Ok(ch) => {
                        let id = self.add(
                            ch,
                            Kind::Exec(ExecState {
                                events,
                                stdin: std::collections::VecDeque::new(),
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
            Request::Forward { sock, to, reply } => {
                let target = match &to {
                    ForwardTo::Tcp { host, port } => format!("{host}:{port}"),
                    ForwardTo::Socket(path) => path.clone(),
                };
                let r = self.blocking(|o| {
                    let opened = match &to {
                        ForwardTo::Tcp { host, port } => {
                            let (src, src_port) = match sock.peer_addr() {
                                Ok(a) => (a.ip().to_string(), a.port()),
                                Err(_) => ("127.0.0.1".to_string(), 0),
                            };
                            o.sess.channel_direct_tcpip(host, *port, Some((&src, src_port)))
                        }
                        ForwardTo::Socket(path) => o.sess.channel_direct_streamlocal(path, None),
                    };
                    opened.map_err(|e| o.conn.error(format!("forwarding to {target} on the remote side"), &e))
                });
                let ch = match r {
                    Ok(ch) => ch,
                    Err(e) => {
                        self.note(&e);
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
                    st.stdin.extend(data);
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

    /// A lost connection, seen in an error: say so on the handles ([`Session::is_closed`]).
    fn note(&self, e: &SshError) {
        if matches!(e, SshError::Closed { .. }) {
            self.mark_closed();
        }
    }

    fn mark_closed(&self) {
        if let Some(shared) = self.weak.upgrade() {
            shared.closed.store(true, std::sync::atomic::Ordering::Relaxed);
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
        if let Some(e) = &error {
            self.note(e);
        }
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

    /// With streams running: send a keepalive when one is due, and give the connection up when
    /// the peer has been silent for too long (a dead network never says so by itself).
    fn check_alive(&mut self) {
        if self.keepalive.is_zero() || self.lost || self.streams.is_empty() {
            self.last_heard = Instant::now();
            return;
        }
        let _ = self.sess.keepalive_send();
        if self.last_heard.elapsed() <= self.silence_limit {
            return;
        }
        self.lost = true;
        self.mark_closed();
        // Calls queued behind this one must not each wait the full I/O timeout.
        self.sess.set_timeout(LOST_TIMEOUT_MS);
        let during = format!("waiting: no answer from the host for {} s", self.silence_limit.as_secs());
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.streams.remove(&id) {
                let e = SshError::Closed { host: self.conn.host.clone(), during: during.clone() };
                self.finish(s, Some(e));
            }
        }
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
        if fds.get(1).is_some_and(|f| f.revents & libc::POLLIN != 0) {
            self.last_heard = Instant::now();
        }
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
        // Only now may the way to the host go (the goodbye travelled over it).
        drop(self.via.take());
    }
}
