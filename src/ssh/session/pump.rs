//! The streams the owner thread pumps in non-blocking mode, and one pump of each: a remote process
//! (stdin in; stdout, stderr and the exit status out as [`ExecEvent`]s) and a `direct-tcpip`
//! forward (bytes both ways between the local socket and the channel, then the half-closes).

use super::{ExecEvent, ForwardStats};
use crate::ssh::SshError;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use tokio::sync::{mpsc as tmpsc, oneshot};

pub(super) const EAGAIN: ssh2::ErrorCode = ssh2::ErrorCode::Session(-37);

pub(super) struct Stream {
    pub(super) ch: ssh2::Channel,
    pub(super) kind: Kind,
}

pub(super) enum Kind {
    Exec(ExecState),
    Forward(ForwardState),
}

pub(super) struct ExecState {
    pub(super) events: tmpsc::UnboundedSender<ExecEvent>,
    /// Queued for stdin. A deque: a large input (a credential file of megabytes) goes out a
    /// packet at a time, and taking each packet off the front of a `Vec` would copy the rest.
    pub(super) stdin: VecDeque<u8>,
    pub(super) stdin_eof: bool,
    pub(super) eof_sent: bool,
    pub(super) out_done: bool,
    pub(super) err_done: bool,
    pub(super) closed: bool,
}

pub(super) struct ForwardState {
    pub(super) sock: TcpStream,
    pub(super) to_remote: Vec<u8>,
    pub(super) to_local: Vec<u8>,
    pub(super) local_eof: bool,
    pub(super) eof_sent: bool,
    pub(super) remote_eof: bool,
    pub(super) local_shut: bool,
    pub(super) stats: ForwardStats,
    pub(super) target: String,
    pub(super) done: Option<oneshot::Sender<Result<ForwardStats, SshError>>>,
}

/// What one pump of a stream did.
pub(super) enum Pumped {
    Idle,
    Moved,
    Finished,
}

pub(super) fn describe(s: &Stream) -> String {
    match &s.kind {
        Kind::Exec(_) => "a remote command".to_string(),
        Kind::Forward(st) => format!("the forward to {}", st.target),
    }
}

pub(super) enum PumpError {
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

pub(super) fn pump_exec(ch: &mut ssh2::Channel, st: &mut ExecState) -> Result<Pumped, PumpError> {
    let mut moved = false;
    if !st.stdin.is_empty()
        && let Some(n) = again_io(ch.write(st.stdin.as_slices().0))?
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

pub(super) fn pump_forward(ch: &mut ssh2::Channel, st: &mut ForwardState) -> Result<Pumped, PumpError> {
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
