//! Following the remote login until it ends, whichever way it runs: its pid and events become
//! [`TunnelEvent`]s, forwarding (SSH) or the relay (container) starts when it listens, a device
//! code is shown once its page is the configured issuer's, relayed callbacks go to its stdin and
//! get its answer, and the wait ends with its result, its exit, a lost connection, the timeout or
//! the interrupt.

use super::forward::Forwarder;
use super::relay::{Answer, Relay, Relayed};
use super::remote_login::{Lost, Msg};
use super::{Link, Tunnel, TunnelError, TunnelEvent, TunnelSuccess};
use crate::auth::login::LoginEvent;
use crate::auth::oauth::{check_authorize_url, check_device_url};
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
                    Msg::Lost(Lost::Ssh(e)) => {
                        return result.unwrap_or(Err(TunnelError::Ssh(match e {
                            SshError::Closed { during, .. } => SshError::Closed { host: self.host.clone(), during },
                            e => e,
                        })));
                    }
                    Msg::Lost(Lost::Engine(message)) => {
                        return result.unwrap_or(Err(TunnelError::Container {
                            target: self.host.clone(),
                            message: format!("the login's exec failed: {}", printable(&message)),
                            hint: None,
                        }));
                    }
                },
                Some(f) = self.failures.1.recv() => self.forward_failed(f),
                Some(r) = self.relayed.1.recv() => self.relay_callback(r).await,
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
                if self.device {
                    // A device login fell back to the browser (no device code at the issuer).
                    return Err(TunnelError::DeviceCodeOff { host: self.host.clone() });
                }
                if let Some(listener) = self.listener.take() {
                    match &self.link {
                        Link::Ssh(session) => {
                            self.forwarder =
                                Some(Forwarder::start(listener, session.clone(), self.port, self.failures.0.clone()));
                        }
                        Link::Container(_) => {
                            if let Some(tx) = self.relayed.0.take() {
                                self.relay = Some(Relay::start(listener, self.port, tx));
                            }
                        }
                    }
                }
                (self.events)(TunnelEvent::Listening { authorize_url, port });
            }
            LoginEvent::DeviceCode { verification_url, user_code, expires_in } if self.device => {
                // Only the configured issuer's page is opened or shown; the code is the remote's
                // text, so made printable.
                let Some(verification_url) = check_device_url(&verification_url, &self.issuer) else {
                    return Err(TunnelError::BadVerificationUrl {
                        host: self.host.clone(),
                        issuer: printable(&self.issuer),
                        url: printable(&verification_url),
                    });
                };
                (self.events)(TunnelEvent::DeviceCode {
                    verification_url,
                    user_code: printable(&user_code),
                    expires_in,
                });
            }
            LoginEvent::DeviceCodeUnavailable if self.device => {
                return Err(TunnelError::DeviceCodeOff { host: self.host.clone() });
            }
            LoginEvent::PasteRejected { reason } if !self.pending.is_empty() => {
                let reason = printable(&reason);
                if let Some(reply) = self.pending.pop_front() {
                    let _ = reply.send(Answer::Rejected(reason.clone()));
                }
                (self.events)(TunnelEvent::CallbackRejected { reason });
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
                self.answer_all(&Answer::Succeeded);
            }
            LoginEvent::LoginFailed { reason, error } => {
                self.answer_all(&Answer::Failed(printable(&error)));
                *result = Some(Err(TunnelError::RemoteLoginFailed {
                    host: self.host.clone(),
                    reason: printable(&reason),
                    error: printable(&error),
                }));
            }
            LoginEvent::StaleServerCancelled { port } => (self.events)(TunnelEvent::Warning {
                message: format!("stopped an earlier llmx login that was waiting on port {port} on {}", self.host),
            }),
            // Device-code events of a browser login do not occur; the tunnel gives a port, so the
            // login never falls back to another.
            LoginEvent::DeviceCode { .. } | LoginEvent::DeviceCodeUnavailable | LoginEvent::PortFallback { .. } => {}
        }
        Ok(())
    }

    /// A callback from the relay: to the container login's stdin as a paste-back line; its answer
    /// follows from the login's next events.
    async fn relay_callback(&mut self, r: Relayed) {
        if self.remote.send_line(&r.line).await {
            self.pending.push_back(r.reply);
        } else {
            let _ = r.reply.send(Answer::Failed("the container's login no longer reads its input".into()));
        }
    }

    fn answer_all(&mut self, answer: &Answer) {
        for reply in self.pending.drain(..) {
            let _ = reply.send(answer.clone());
        }
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
