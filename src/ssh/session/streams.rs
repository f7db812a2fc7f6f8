//! The handles on the streams a [`Session`] runs: [`RemoteProcess`] for a command whose output is
//! streamed (and [`ProcessInput`], its stdin alone), [`Forwarding`] for a `direct-tcpip` forward. Both talk to the owner thread through the
//! session's request channel, and dropping either tears its stream down.

use super::{ExecEvent, ForwardStats, Request, Session};
use crate::ssh::SshError;
use tokio::sync::{mpsc as tmpsc, oneshot};

/// A remote process started by [`Session::spawn`]. Dropping it closes the channel.
pub struct RemoteProcess {
    pub(super) id: u64,
    pub(super) session: Session,
    pub(super) events: tmpsc::UnboundedReceiver<ExecEvent>,
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

    /// A handle on the process's stdin alone, for a writer that runs beside the reader of its
    /// output. Writes after the process ended go nowhere.
    pub fn input(&self) -> ProcessInput {
        ProcessInput { id: self.id, session: self.session.clone() }
    }
}

/// The stdin of a [`RemoteProcess`], split from its output (see [`RemoteProcess::input`]). Holding
/// it keeps the connection open, not the process: the process still ends when its
/// [`RemoteProcess`] is dropped.
#[derive(Clone)]
pub struct ProcessInput {
    id: u64,
    session: Session,
}

impl ProcessInput {
    /// Queue `data` for the process's stdin (the owner thread sends it as the channel's window
    /// allows; this never blocks).
    pub fn write(&self, data: Vec<u8>) -> Result<(), SshError> {
        self.session.send(Request::Stdin { id: self.id, data })
    }

    /// Send EOF on stdin once what was written has gone out.
    pub fn close(&self) -> Result<(), SshError> {
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
    pub(super) id: u64,
    pub(super) session: Option<Session>,
    pub(super) done: Option<oneshot::Receiver<Result<ForwardStats, SshError>>>,
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
