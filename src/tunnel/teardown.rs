//! Teardown, on every path out of the wait: a remote login still running is asked to stop with
//! `POST /cancel` through the tunnel, carrying the cancel secret that login wrote in its home
//! (`auth::cancel`; read over SSH, never put in a command line), then signalled by pid (INT, then
//! KILL) if it lingers — all of it within [`TEARDOWN_LIMIT`], so a dead network cannot hold it up;
//! then its channel is closed, forwarding stops and the local port is released. A container's
//! login is stopped by closing its stdin (it runs with `--end-on-stdin-eof`), which needs no
//! shell in the container; callbacks still waiting in the relay are answered. It says what
//! became of the remote login ([`RemoteEnd`]) so that the report never claims a cancellation that
//! did not happen.

use super::relay::Answer;
use super::{Link, Tunnel, TunnelEvent};
use crate::auth::cancel;
use crate::secret::Secret;
use std::time::Duration;

/// After `/cancel`, how long the remote login gets to stop on its own (its server drains open
/// connections for up to 2 s).
const CANCEL_WAIT: Duration = Duration::from_secs(3);
/// After each signal, how long to wait for the remote process to go.
const SIGNAL_WAIT: Duration = Duration::from_secs(2);
/// The most the remote part of the teardown may take.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(6);

/// What became of the remote login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RemoteEnd {
    /// It had ended by itself before the teardown.
    Ended,
    /// The teardown stopped it (and saw it go).
    Stopped,
    /// It may still be running: why it could not be stopped.
    Unknown(String),
}

/// What ends a remote login the teardown could not stop.
fn stops_by_itself(link: &Link) -> &'static str {
    match link {
        Link::Ssh(_) => "it stops by itself when the host closes the SSH session",
        Link::Container(_) => "it stops by itself when the engine closes its input, or at its own timeout",
    }
}

impl RemoteEnd {
    /// For "interrupted; …".
    pub(super) fn describe(&self) -> String {
        match self {
            RemoteEnd::Ended => "the remote login had already ended".into(),
            RemoteEnd::Stopped => "the remote login was cancelled".into(),
            RemoteEnd::Unknown(why) => format!("the remote login could not be cancelled ({why})"),
        }
    }
}

impl Tunnel {
    /// Stop the remote login if it still runs, close its channel, stop forwarding and release the
    /// local port. Every step is bounded; what cannot be done is reported as a warning.
    pub(super) async fn teardown(&mut self) -> RemoteEnd {
        let end = if self.remote.lost {
            RemoteEnd::Unknown("the connection was lost".into())
        } else if self.remote.ended {
            RemoteEnd::Ended
        } else {
            match tokio::time::timeout(TEARDOWN_LIMIT, self.stop_remote()).await {
                Ok(true) => RemoteEnd::Stopped,
                Ok(false) => RemoteEnd::Unknown("it did not stop".into()),
                Err(_) => RemoteEnd::Unknown(format!("no answer from the host within {} s", TEARDOWN_LIMIT.as_secs())),
            }
        };
        if let RemoteEnd::Unknown(why) = &end {
            let pid = self.remote.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            (self.events)(TunnelEvent::Warning {
                message: format!(
                    "the remote llmx login{pid} on {} may still be running ({why}); {}",
                    self.host,
                    stops_by_itself(&self.link)
                ),
            });
        }
        drop(self.remote.proc.take());
        if let Some(f) = self.forwarder.take() {
            f.stop().await;
        }
        for reply in self.pending.drain(..) {
            let _ = reply.send(Answer::Failed("the tunnel ended".into()));
        }
        self.relayed.0 = None;
        self.relayed.1.close();
        if let Some(r) = self.relay.take() {
            r.stop().await;
        }
        self.listener = None;
        while let Ok(f) = self.failures.1.try_recv() {
            self.forward_failed(f);
        }
        end
    }

    /// `/cancel` through the tunnel, then INT and KILL by pid; whether the login was seen to end.
    async fn stop_remote(&mut self) -> bool {
        let session = match &self.link {
            Link::Ssh(session) => session.clone(),
            Link::Container(_) => {
                self.remote.close_input().await;
                self.remote.wait_end(CANCEL_WAIT).await;
                return self.remote.ended && !self.remote.lost;
            }
        };
        // Through our own listener, hence the tunnel, to the remote callback server; when it
        // acknowledges, the login stops by itself.
        if self.forwarder.is_some()
            && let Some(secret) = remote_cancel_secret(&session, self.port).await
            && cancel::request_cancel(self.port, &secret).await
        {
            self.remote.wait_end(CANCEL_WAIT).await;
        }
        if !self.remote.ended
            && let Some(pid) = self.remote.pid
        {
            for sig in ["INT", "KILL"] {
                let cmd = format!("kill -{sig} {pid} 2>/dev/null");
                let _ = tokio::time::timeout(SIGNAL_WAIT, session.call(move |c| c.exec(&cmd, b""))).await;
                if self.remote.wait_end(SIGNAL_WAIT).await {
                    break;
                }
            }
        }
        self.remote.ended && !self.remote.lost
    }
}

/// The remote login's cancel secret, from its home as that login resolved it (`LLMX_HOME`
/// when set and non-empty, else `~/.llmx`, in the same environment the login was started in).
async fn remote_cancel_secret(session: &crate::ssh::Session, port: u16) -> Option<Secret> {
    let name = cancel::cancel_path(std::path::Path::new(""), port);
    let cmd = format!("cat \"${{LLMX_HOME:-$HOME/.llmx}}\"/'{}' 2>/dev/null", name.display());
    let out = session.call(move |c| c.exec(&cmd, b"")).await.ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.code == 0 && !text.is_empty() && text.len() <= 256).then(|| Secret::new(text))
}
