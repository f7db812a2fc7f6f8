//! Following the remote login until it ends: its pid and events become [`TunnelEvent`]s, forwarding
//! starts when it listens, and the wait ends with its result, its exit, a lost connection, the
//! timeout or the interrupt.

use super::forward::Forwarder;
use super::remote_login::Msg;
use super::{Tunnel, TunnelError, TunnelEvent, TunnelSuccess};
use crate::auth::login::LoginEvent;
use crate::ssh::{ExitStatus, SshError};
use crate::text::printable;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Tunnel {
    /// Follow the remote login until it ends, the timeout passes or the interrupt comes.
    pub(super) async fn wait(
        &mut self,
        cancel: &CancellationToken,
        timeout: Duration,
    ) -> Result<TunnelSuccess, TunnelError> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut result: Option<Result<TunnelSuccess, TunnelError>> = None;
        loop {
            tokio::select! {
                m = self.remote.next() => match m {
                    Msg::Pid(pid) => (self.events)(TunnelEvent::RemoteStarted { llmx: self.llmx.clone(), pid }),
                    Msg::Event(ev) => self.on_login_event(ev, &mut result)?,
                    Msg::Exit(status) => {
                        return result.unwrap_or_else(|| Err(self.exited_without_result(&status)));
                    }
                    Msg::LineTooLong => return Err(TunnelError::LineTooLong { host: self.host.clone() }),
                    Msg::Lost(e) => {
                        return result.unwrap_or(Err(TunnelError::Ssh(match e {
                            SshError::Closed { during, .. } => SshError::Closed { host: self.host.clone(), during },
                            e => e,
                        })));
                    }
                },
                Some(f) = self.failures.1.recv() => self.forward_failed(f),
                () = &mut deadline => return result.unwrap_or(Err(TunnelError::TimedOut { after: timeout })),
                () = cancel.cancelled() => {
                    // `run` fills in what became of the remote login once teardown knows.
                    return result.unwrap_or(Err(TunnelError::Interrupted { remote: String::new() }));
                }
            }
        }
    }

    fn on_login_event(
        &mut self,
        ev: LoginEvent,
        result: &mut Option<Result<TunnelSuccess, TunnelError>>,
    ) -> Result<(), TunnelError> {
        match ev {
            LoginEvent::Listening { authorize_url, port, .. } => {
                if port != self.port {
                    return Err(TunnelError::PortMismatch { host: self.host.clone(), local: self.port, remote: port });
                }
                let ok = url::Url::parse(&authorize_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(TunnelError::BadAuthorizeUrl {
                        host: self.host.clone(),
                        url: printable(&authorize_url),
                    });
                }
                if let Some(listener) = self.listener.take() {
                    self.forwarder =
                        Some(Forwarder::start(listener, self.session.clone(), self.port, self.failures.0.clone()));
                }
                (self.events)(TunnelEvent::Listening { authorize_url, port });
            }
            LoginEvent::CallbackRejected { reason } => {
                (self.events)(TunnelEvent::CallbackRejected { reason: printable(&reason) })
            }
            LoginEvent::CallbackReceived => (self.events)(TunnelEvent::CallbackReceived),
            LoginEvent::LoginSucceeded {
                auth_file,
                email,
                plan,
                account_id,
                api_key_saved,
                callback_to_saved_ms,
                issuer_ms,
                ..
            } => {
                *result = Some(Ok(TunnelSuccess {
                    host: self.host.clone(),
                    auth_file,
                    email,
                    plan,
                    account_id,
                    api_key_saved,
                    callback_to_saved_ms,
                    issuer_ms,
                    status: None,
                    forward_failures: 0,
                }));
            }
            LoginEvent::LoginFailed { reason, error } => {
                *result = Some(Err(TunnelError::RemoteLoginFailed {
                    host: self.host.clone(),
                    reason: printable(&reason),
                    error: printable(&error),
                }));
            }
            LoginEvent::StaleServerCancelled { port } => (self.events)(TunnelEvent::Warning {
                message: format!("stopped an earlier llmx login that was waiting on port {port} on {}", self.host),
            }),
        }
        Ok(())
    }

    fn exited_without_result(&self, status: &ExitStatus) -> TunnelError {
        let status = match (&status.signal, status.code) {
            (Some(sig), _) => format!("killed by SIG{sig}"),
            (None, 127) => "127: command not found".to_string(),
            (None, code) => format!("exit code {code}"),
        };
        let tail = self.remote.stderr_tail();
        TunnelError::RemoteExited {
            host: self.host.clone(),
            llmx: self.llmx.clone(),
            status,
            detail: if tail.is_empty() { String::new() } else { format!(": {tail}") },
        }
    }

    pub(super) fn forward_failed(&mut self, error: String) {
        self.forward_failures += 1;
        (self.events)(TunnelEvent::ForwardFailed { error });
    }
}
