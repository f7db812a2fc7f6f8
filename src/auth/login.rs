//! A browser login from start to saved file (DESIGN.md §3): bind the callback port (evicting a
//! stale llmx login server), build the authorize URL, serve the callback, exchange the code,
//! try the API-key exchange, and write auth.json.
//!
//! The library never prints: progress goes to the caller as [`LoginEvent`]s, and the final event
//! is built from the result with [`LoginEvent::outcome`]. The serialised form of these events is
//! the stable `llmx login --json` protocol that `llmx auth tunnel` reads from a remote login, so
//! the type derives `Deserialize` too: a driver parses lines with `serde_json::from_str`.

use crate::auth::cancel::{self, CancelFile, CancelFileError};
use crate::auth::claims::IdClaims;
use crate::auth::file::{AuthFile, AuthFileError, Tokens, now_rfc3339};
use crate::auth::oauth::{OAuthClient, OAuthError};
use crate::auth::pkce::{Pkce, RandomError, new_state};
use crate::auth::server::{self, CodeHandler, ServerEnd, ServerNote};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The port llmx's OAuth client is registered with.
pub const DEFAULT_PORT: u16 = 1455;
/// How long a login waits for the browser by default.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// Eviction of a stale server: retry the bind this often, this many times (DESIGN.md §3).
const BIND_RETRY_EVERY: Duration = Duration::from_millis(200);
const BIND_RETRIES: u32 = 10;

/// What a login needs. `port` 0 asks the OS for a free port (only useful with an issuer that
/// accepts any loopback redirect URI, such as the test issuer).
#[derive(Debug, Clone)]
pub struct LoginOptions {
    pub issuer: String,
    pub client_id: String,
    pub port: u16,
    pub timeout: Duration,
    pub auth_path: PathBuf,
}

/// What a finished login saved, without secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginSuccess {
    pub auth_file: PathBuf,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    /// Whether the API-key exchange gave a key (it is best effort).
    pub api_key_saved: bool,
    /// From the callback request arriving to auth.json being on disk.
    pub callback_to_saved: Duration,
    /// Of that, the time spent waiting for the issuer's token endpoint.
    pub issuer_time: Duration,
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
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("the sign-in was refused by the issuer: {}", describe_denial(error, description.as_deref()))]
    Denied { error: String, description: Option<String> },
    #[error("exchanging the authorization code failed: {0}")]
    Exchange(OAuthError),
    #[error("saving the credentials failed: {0}")]
    Save(AuthFileError),
    #[error("nobody completed the sign-in within {}", crate::text::format_duration(*after))]
    TimedOut { after: Duration },
    #[error("the login was cancelled (a request to /cancel, typically a newer `llmx login` taking over the port)")]
    Cancelled,
    #[error("the login was interrupted")]
    Interrupted,
    #[error("the callback server failed: {0}")]
    Server(std::io::Error),
}

impl LoginError {
    /// A stable machine-readable name for the failure (the `reason` of `login_failed`).
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::Random(_) | LoginError::Server(_) | LoginError::CancelFile(_) => "internal",
            LoginError::Issuer(_) => "config",
            LoginError::PortBusy { .. } => "port_busy",
            LoginError::Bind { .. } => "bind",
            LoginError::Denied { .. } => "denied",
            LoginError::Exchange(_) => "token_exchange",
            LoginError::Save(_) => "save",
            LoginError::TimedOut { .. } => "timeout",
            LoginError::Cancelled => "cancelled",
            LoginError::Interrupted => "interrupted",
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
    /// The callback server listens; open `authorize_url` in a browser.
    Listening { authorize_url: String, port: u16, redirect_uri: String, timeout_secs: u64 },
    /// A callback was answered 400 and the login keeps waiting.
    CallbackRejected { reason: String },
    /// The browser came back with a code; the exchange is running.
    CallbackReceived,
    /// auth.json was written.
    LoginSucceeded {
        method: String,
        auth_file: String,
        email: Option<String>,
        plan: Option<String>,
        account_id: Option<String>,
        api_key_saved: bool,
        callback_to_saved_ms: f64,
        issuer_ms: f64,
    },
    /// The login ended without credentials; `reason` is [`LoginError::reason`].
    LoginFailed { reason: String, error: String },
}

impl LoginEvent {
    /// The final event for a login's result.
    pub fn outcome(result: &Result<LoginSuccess, LoginError>) -> LoginEvent {
        match result {
            Ok(s) => LoginEvent::LoginSucceeded {
                method: "chatgpt".into(),
                auth_file: s.auth_file.display().to_string(),
                email: s.email.clone(),
                plan: s.plan.clone(),
                account_id: s.account_id.clone(),
                api_key_saved: s.api_key_saved,
                callback_to_saved_ms: millis(s.callback_to_saved),
                issuer_ms: millis(s.issuer_time),
            },
            Err(e) => LoginEvent::LoginFailed { reason: e.reason().into(), error: e.to_string() },
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A receiver of login events. Called from the login's tasks; keep it quick.
pub type EventSink = Arc<dyn Fn(LoginEvent) + Send + Sync>;

enum Stop {
    TimedOut,
    Interrupted,
}

/// Run a browser login. `interrupt` ends it early (the CLI passes Ctrl-C).
pub async fn login(
    opts: LoginOptions,
    events: EventSink,
    interrupt: impl Future<Output = ()> + Send + 'static,
) -> Result<LoginSuccess, LoginError> {
    let client = OAuthClient::new(&opts.issuer, &opts.client_id).map_err(LoginError::Issuer)?;
    let pkce = Pkce::generate()?;
    let state = new_state()?;
    let home = opts.auth_path.parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
    let listener = bind_callback_port(opts.port, &home, &events).await?;
    let port = listener.local_addr().map_err(LoginError::Server)?.port();
    // Removed again when this function returns (the guard lives to the end of it).
    let cancel_file = CancelFile::create(&home, port)?;
    let redirect_uri = format!("http://localhost:{port}/auth/callback");
    let authorize_url = client.authorize_url(&redirect_uri, &pkce, &state);

    let on_code: CodeHandler<LoginSuccess, LoginError> = {
        let (client, redirect_uri, verifier, path) =
            (client.clone(), redirect_uri.clone(), pkce.verifier.clone(), opts.auth_path.clone());
        Arc::new(move |code, received| {
            let (client, redirect_uri, verifier, path) =
                (client.clone(), redirect_uri.clone(), verifier.clone(), path.clone());
            Box::pin(async move { complete(&client, &code, &redirect_uri, &verifier, path, received).await })
        })
    };
    let note_sink = events.clone();
    let on_note = Arc::new(move |note: ServerNote| {
        note_sink(match note {
            ServerNote::Rejected { reason } => LoginEvent::CallbackRejected { reason: reason.into() },
            ServerNote::CallbackReceived => LoginEvent::CallbackReceived,
        })
    });
    let timeout = opts.timeout;
    let stop = async move {
        tokio::select! {
            () = tokio::time::sleep(timeout) => Stop::TimedOut,
            () = interrupt => Stop::Interrupted,
        }
    };
    events(LoginEvent::Listening { authorize_url, port, redirect_uri, timeout_secs: timeout.as_secs() });
    let cancel_secret = cancel_file.secret().clone();
    match server::serve(listener, state, cancel_secret, on_code, on_note, stop, server::SUCCESS_GRACE)
        .await
        .map_err(LoginError::Server)?
    {
        ServerEnd::Completed(s) => Ok(s),
        ServerEnd::Failed(e) => Err(e),
        ServerEnd::Denied { error, description } => Err(LoginError::Denied { error, description }),
        ServerEnd::Cancelled => Err(LoginError::Cancelled),
        ServerEnd::Shutdown(Stop::TimedOut) => Err(LoginError::TimedOut { after: timeout }),
        ServerEnd::Shutdown(Stop::Interrupted) => Err(LoginError::Interrupted),
    }
}

/// Exchange the code, try for an API key, write auth.json (replacing the whole file).
async fn complete(
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &Secret,
    path: PathBuf,
    received: Instant,
) -> Result<LoginSuccess, LoginError> {
    let tokens = client.exchange_code(code, redirect_uri, verifier).await.map_err(LoginError::Exchange)?;
    // Best effort: an issuer that does not hand out API keys still gives a working login.
    let api_key = client.exchange_api_key(&tokens.id_token).await.ok();
    let claims = IdClaims::parse(tokens.id_token.expose()).unwrap_or_default();
    let file = AuthFile {
        openai_api_key: api_key.clone(),
        tokens: Some(Tokens {
            id_token: tokens.id_token,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            account_id: claims.account_id.clone(),
            extra: Default::default(),
        }),
        last_refresh: Some(now_rfc3339()),
        extra: Default::default(),
    };
    file.save(&path).map_err(LoginError::Save)?;
    Ok(LoginSuccess {
        auth_file: path,
        email: claims.email,
        plan: claims.plan,
        account_id: claims.account_id,
        api_key_saved: api_key.is_some(),
        callback_to_saved: received.elapsed(),
        issuer_time: client.issuer_time(),
    })
}

/// Bind 127.0.0.1:`port`. When it is busy, ask whoever holds it to `/cancel` with the secret a
/// stale llmx login of this home left (`auth::cancel`; it stops), then retry every 200 ms, 10
/// times, before giving up naming the port.
pub async fn bind_callback_port(
    port: u16,
    home: &std::path::Path,
    events: &EventSink,
) -> Result<TcpListener, LoginError> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        Err(source) => return Err(LoginError::Bind { port, source }),
    }
    if let Some(secret) = cancel::read_secret(home, port)
        && cancel::request_cancel(port, &secret).await
    {
        events(LoginEvent::StaleServerCancelled { port });
    }
    for _ in 0..BIND_RETRIES {
        tokio::time::sleep(BIND_RETRY_EVERY).await;
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(source) => return Err(LoginError::Bind { port, source }),
        }
    }
    Err(LoginError::PortBusy { port })
}

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
