//! Signing in: one module per login method, one path that saves what a method obtained.
//!
//! - [`browser`]: OAuth authorization code + PKCE with a callback server on localhost (DESIGN §3).
//! - [`device`]: a device code entered on the issuer's page, polled for (DESIGN §8).
//! - [`api_key`]: a key read from standard input.
//!
//! Each method ends with an [`Obtained`] credential; [`save`] writes it to auth.json and returns
//! the one [`LoginSucceeded`] shape that `llmx login --json`, `login --with-api-key --json` and
//! the tunnel's report all use. A new method is one new module here plus its `pub mod` line below
//! and a flag in `cli/login.rs` (docs/architecture.md).
//!
//! The library never prints: progress goes to the caller as [`LoginEvent`]s, and the final event
//! is built from the result with [`LoginEvent::outcome`]. The serialised form of these events is
//! the stable `llmx login --json` protocol that `llmx auth tunnel` reads from a remote login, so
//! the type derives `Deserialize` too: a driver parses lines with `serde_json::from_str`.

pub mod api_key;
pub mod browser;
pub mod device;
mod save;

pub use save::save;

use crate::auth::cancel::CancelFileError;
use crate::auth::file::AuthFileError;
use crate::auth::oauth::{OAuthError, TokenSet};
use crate::auth::pkce::RandomError;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The port llmx's OAuth client is registered with.
pub const DEFAULT_PORT: u16 = 1455;
/// How long a login waits for the browser by default.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// What a login method obtained, ready to be saved.
pub enum Obtained {
    /// ChatGPT tokens, with the API key the issuer exchanged for them (best effort).
    ChatGpt { tokens: TokenSet, api_key: Option<Secret>, timing: Option<Timing> },
    /// An API key given by the user.
    ApiKey(Secret),
}

/// For the login benchmark: when the method had what it needed from the user (the callback
/// arrived), and how much of the time after that was spent waiting on the issuer.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub started: Instant,
    pub issuer_time: Duration,
}

/// What a finished login saved, without secrets: the `login_succeeded` event of every method, and
/// the core of the tunnel's report. Every field is always present (`null` when it does not apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginSucceeded {
    /// `chatgpt` or `apikey`.
    pub method: String,
    pub auth_file: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    /// The saved API key, masked (`sk-proj-***12345`), or `null`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Whether auth.json holds an API key (for ChatGPT: whether the key exchange gave one).
    pub api_key_saved: bool,
    /// From the callback request arriving to auth.json being on disk (browser login only).
    #[serde(default)]
    pub callback_to_saved_ms: Option<f64>,
    /// Of that, the time spent waiting for the issuer's token endpoint.
    #[serde(default)]
    pub issuer_ms: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Issuer(OAuthError),
    #[error(
        "port {port} on 127.0.0.1 is in use by another program (it did not stop on /cancel: it is not an llmx login of this LLMX_HOME)"
    )]
    PortBusy { port: u16 },
    #[error(transparent)]
    CancelFile(#[from] CancelFileError),
    #[error(
        "ports {first} and {second} on 127.0.0.1 are both in use by other programs (not llmx logins: they did not stop on /cancel)"
    )]
    PortsBusy { first: u16, second: u16 },
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("the sign-in was refused by the issuer: {}", describe_denial(error, description.as_deref()))]
    Denied { error: String, description: Option<String> },
    #[error("exchanging the authorization code failed: {0}")]
    Exchange(OAuthError),
    #[error("saving the credentials failed: {0}")]
    Save(AuthFileError),
    /// The issuer's tokens must not be saved (an empty token, an id_token that is not a JWT):
    /// nothing was written, the login that was there still works.
    #[error("the issuer's token answer was refused: {reason}; nothing was saved (auth.json is as it was)")]
    InvalidAnswer { reason: String },
    #[error("nobody completed the sign-in within {}", crate::text::format_duration(*after))]
    TimedOut { after: Duration },
    #[error("the login was cancelled (a request to /cancel, typically a newer `llmx login` taking over the port)")]
    Cancelled,
    #[error("the login was interrupted")]
    Interrupted,
    #[error("the callback server failed: {0}")]
    Server(std::io::Error),
    #[error("the issuer does not offer device-code sign-in (it answered 404)")]
    DeviceCodeOff,
    #[error("asking the issuer for a device code failed: {0}")]
    DeviceStart(OAuthError),
    #[error("waiting for the device code to be approved failed: {0}")]
    DevicePoll(OAuthError),
    #[error("the sign-in was declined")]
    Declined,
}

impl LoginError {
    /// A stable machine-readable name for the failure (the `reason` of `login_failed`).
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::Random(_) | LoginError::Server(_) | LoginError::CancelFile(_) => "internal",
            LoginError::Issuer(_) => "config",
            LoginError::PortBusy { .. } | LoginError::PortsBusy { .. } => "port_busy",
            LoginError::Bind { .. } => "bind",
            LoginError::Denied { .. } => "denied",
            LoginError::Exchange(_) => "token_exchange",
            LoginError::Save(_) => "save",
            LoginError::InvalidAnswer { .. } => "token_exchange",
            LoginError::TimedOut { .. } => "timeout",
            LoginError::Cancelled => "cancelled",
            LoginError::Interrupted => "interrupted",
            LoginError::DeviceCodeOff => "device_code_off",
            LoginError::DeviceStart(_) | LoginError::DevicePoll(_) => "issuer",
            LoginError::Declined => "declined",
        }
    }
}

fn describe_denial(error: &str, description: Option<&str>) -> String {
    match description {
        Some(d) => format!("{error} ({d})"),
        None => error.to_string(),
    }
}

/// Progress and outcome of a login; the `llmx login --json` lines. Drivers must ignore events
/// they do not know (new ones may be added); existing fields keep their meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LoginEvent {
    /// A server from an earlier login held the port and was told to stop.
    StaleServerCancelled { port: u16 },
    /// Another program holds the default port `busy`: the login tries `port`, the issuer's other
    /// allowed callback port, instead.
    PortFallback { busy: u16, port: u16 },
    /// The callback server listens; open `authorize_url` in a browser.
    Listening { authorize_url: String, port: u16, redirect_uri: String, timeout_secs: u64 },
    /// Device-code login: enter `user_code` at `verification_url` within `expires_in` seconds.
    DeviceCode { verification_url: String, user_code: String, expires_in: u64 },
    /// The issuer does not offer device code; the login continues as `--no-browser`.
    DeviceCodeUnavailable,
    /// A pasted line was not a usable address or code; the login keeps waiting.
    PasteRejected { reason: String },
    /// A callback was answered 400 and the login keeps waiting.
    CallbackRejected { reason: String },
    /// The browser came back with a code; the exchange is running.
    CallbackReceived,
    /// auth.json was written.
    LoginSucceeded(LoginSucceeded),
    /// The login ended without credentials; `reason` is [`LoginError::reason`].
    LoginFailed { reason: String, error: String },
}

impl LoginEvent {
    /// The final event for a login's result.
    pub fn outcome(result: &Result<LoginSucceeded, LoginError>) -> LoginEvent {
        match result {
            Ok(s) => LoginEvent::LoginSucceeded(s.clone()),
            Err(e) => LoginEvent::LoginFailed { reason: e.reason().into(), error: e.to_string() },
        }
    }
}

/// Milliseconds with microsecond precision, as the `--json` timings are given.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A receiver of login events. Called from the login's tasks; keep it quick.
pub type EventSink = Arc<dyn Fn(LoginEvent) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_json_lines() {
        let e = LoginEvent::Listening {
            authorize_url: "http://i/oauth/authorize?x=1".into(),
            port: 1455,
            redirect_uri: "http://localhost:1455/auth/callback".into(),
            timeout_secs: 600,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.starts_with(r#"{"event":"listening","authorize_url":"#), "{line}");
        assert_eq!(serde_json::from_str::<LoginEvent>(&line).unwrap(), e);
        let f = LoginEvent::outcome(&Err(LoginError::TimedOut { after: Duration::from_secs(600) }));
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"event":"login_failed","reason":"timeout","error":"nobody completed the sign-in within 10 min"}"#
        );
    }
}
