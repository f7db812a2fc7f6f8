//! Teardown, on every path out of the wait: a remote login still running is asked to stop with
//! `GET /cancel` through the tunnel, then signalled by pid (INT, then KILL) if it lingers; then its
//! channel is closed, forwarding stops and the local port is released.

use super::{Tunnel, TunnelEvent};
use crate::auth::login;
use std::time::Duration;

/// After `/cancel`, how long the remote login gets to stop on its own (its server drains open
/// connections for up to 2 s).
const CANCEL_WAIT: Duration = Duration::from_secs(3);
/// After each signal, how long to wait for the remote process to go.
const SIGNAL_WAIT: Duration = Duration::from_secs(2);

impl Tunnel {
    /// Stop the remote login if it still runs, close its channel, stop forwarding and release the
    /// local port. Every step is bounded; what cannot be done is reported as a warning.
    pub(super) async fn teardown(&mut self) {
        if !self.remote.ended {
            // Through our own listener, hence the tunnel, to the remote callback server; when it
            // acknowledges, the login stops by itself.
            if self.forwarder.is_some() && login::browser::cancel_stale_server(self.port).await {
                self.remote.wait_end(CANCEL_WAIT).await;
            }
            if !self.remote.ended
                && let Some(pid) = self.remote.pid
            {
                for sig in ["INT", "KILL"] {
                    let cmd = format!("kill -{sig} {pid} 2>/dev/null");
                    let _ = self.session.call(move |c| c.exec(&cmd, b"")).await;
                    if self.remote.wait_end(SIGNAL_WAIT).await {
                        break;
                    }
                }
            }
            if !self.remote.ended {
                let pid = self.remote.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                (self.events)(TunnelEvent::Warning {
                    message: format!(
                        "the remote llmx login{pid} on {} did not stop; it may still be running",
                        self.host
                    ),
                });
            }
        }
        drop(self.remote.proc.take());
        if let Some(f) = self.forwarder.take() {
            f.stop().await;
        }
        self.listener = None;
        while let Ok(f) = self.failures.1.try_recv() {
            self.forward_failed(f);
        }
    }
}
