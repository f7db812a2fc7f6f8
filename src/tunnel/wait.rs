//! Following the remote login until it ends: its pid and events become [`TunnelEvent`]s, forwarding
//! starts when it listens, and the wait ends with its result, its exit, a lost connection, the
//! timeout or the interrupt.

use super::forward::Forwarder;
use super::remote_login::Msg;
use super::{Tunnel, TunnelError, TunnelEvent, TunnelSuccess};
use crate::auth::login::LoginEvent;
use crate::auth::oauth::check_authorize_url;
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
                // Only the configured issuer's authorize endpoint is opened or shown, in the form
                // `url` serialises it (a raw newline or control in the remote's text is encoded).
                let Some(authorize_url) = check_authorize_url(&authorize_url, &self.issuer) else {
                    return Err(TunnelError::BadAuthorizeUrl {
                        host: self.host.clone(),
                        issuer: printable(&self.issuer),
                        url: printable(&authorize_url),
                    });
                };
                if let Some(listener) = self.listener.take() {
                    self.forwarder =
                        Some(Forwarder::start(listener, self.session.clone(), self.port, self.failures.0.clone()));
                }
                (self.events)(TunnelEvent::Listening { authorize_url, port });
            }
            LoginEvent::CallbackRejected { reason } | LoginEvent::PasteRejected { reason } => {
                (self.events)(TunnelEvent::CallbackRejected { reason: printable(&reason) })
            }
            LoginEvent::CallbackReceived => (self.events)(TunnelEvent::CallbackReceived),
            LoginEvent::LoginSucceeded(mut login) => {
                // From the other machine: shown on this terminal, so made printable.
                for field in [&mut login.email, &mut login.plan, &mut login.account_id, &mut login.api_key] {
                    *field = field.as_deref().map(printable);
                }
                login.auth_file = printable(&login.auth_file);
                login.method = printable(&login.method);
                *result = Some(Ok(TunnelSuccess { host: self.host.clone(), login, status: None, forward_failures: 0 }));
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
            // The tunnel runs the browser login; device-code events do not occur there.
            LoginEvent::DeviceCode { .. } | LoginEvent::DeviceCodeUnavailable => {}
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
