//! The browser login (DESIGN.md §3): bind the callback port (evicting a stale llmx login
//! server), build the authorize URL, serve the callback, exchange the code and try the API-key
//! exchange; the result is saved through [`super::save`] before the browser is sent to `/success`.
//! Pasted lines (paste-back) reach the same state check and exchange through the server.

use super::{EventSink, LoginError, LoginEvent, LoginSucceeded, Obtained, Timing, save};
use crate::auth::cancel::{self, CancelFile};
use crate::auth::oauth::OAuthClient;
use crate::auth::pkce::{Pkce, new_state};
use crate::auth::server::{self, CodeHandler, ServerEnd, ServerNote};
use crate::secret::Secret;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Eviction of a stale server: retry the bind this often, this many times (DESIGN.md §3).
const BIND_RETRY_EVERY: Duration = Duration::from_millis(200);
const BIND_RETRIES: u32 = 10;
/// The issuer's second allowed redirect port (DESIGN.md §3).
pub const FALLBACK_PORT: u16 = 1457;

/// What a login needs. `port` 0 asks the OS for a free port (only useful with an issuer that
/// accepts any loopback redirect URI, such as the test issuer).
#[derive(Debug, Clone)]
pub struct LoginOptions {
    pub issuer: String,
    pub client_id: String,
    pub port: u16,
    /// Fall back to [`FALLBACK_PORT`] when `port` is the default one and another program holds
    /// it (not when the user, or the tunnel, named the port).
    pub port_fallback: bool,
    pub timeout: Duration,
    /// Where the login is saved.
    pub store: crate::auth::store::Store,
}

enum Stop {
    TimedOut,
    Interrupted,
}

/// Run a browser login. `interrupt` ends it early (the CLI passes Ctrl-C). `pasted` carries lines
/// the user pastes (paste-back): the address the browser ended on, or the bare code.
pub async fn run(
    opts: LoginOptions,
    events: EventSink,
    interrupt: impl Future<Output = ()> + Send + 'static,
    pasted: Option<mpsc::Receiver<String>>,
) -> Result<LoginSucceeded, LoginError> {
    let client = OAuthClient::new(&opts.issuer, &opts.client_id).map_err(LoginError::Issuer)?;
    let pkce = Pkce::generate()?;
    let state = new_state()?;
    let home = opts.store.dir().to_path_buf();
    let listener = bind_with_fallback(opts.port, opts.port_fallback, &home, &events).await?;
    let port = listener.local_addr().map_err(LoginError::Server)?.port();
    // Removed again when this function returns (the guard lives to the end of it).
    let cancel_file = CancelFile::create(&home, port)?;
    let redirect_uri = format!("http://localhost:{port}/auth/callback");
    let authorize_url = client.authorize_url(&redirect_uri, &pkce, &state);

    let on_code: CodeHandler<LoginSucceeded, LoginError> = {
        let (client, redirect_uri, verifier, path) =
            (client.clone(), redirect_uri.clone(), pkce.verifier.clone(), opts.store.clone());
        Arc::new(move |code, received| {
            let (client, redirect_uri, verifier, path) =
                (client.clone(), redirect_uri.clone(), verifier.clone(), path.clone());
            Box::pin(async move { save(&path, exchange(&client, &code, &redirect_uri, &verifier, received).await?) })
        })
    };
    let note_sink = events.clone();
    let on_note = Arc::new(move |note: ServerNote| {
        note_sink(match note {
            ServerNote::Rejected { reason } => LoginEvent::CallbackRejected { reason: reason.into() },
            ServerNote::PasteRejected { reason } => LoginEvent::PasteRejected { reason },
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
    let secrets = server::LoginSecrets { state, cancel: cancel_file.secret().clone() };
    match server::serve_with_paste(listener, secrets, on_code, on_note, stop, server::SUCCESS_GRACE, pasted)
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

/// Exchange the code and try for an API key: what the browser method obtains.
async fn exchange(
    client: &OAuthClient,
    code: &str,
    redirect_uri: &str,
    verifier: &Secret,
    received: Instant,
) -> Result<Obtained, LoginError> {
    let tokens = client.exchange_code(code, redirect_uri, verifier).await.map_err(LoginError::Exchange)?;
    // Best effort: an issuer that does not hand out API keys still gives a working login.
    let api_key = client.exchange_api_key(&tokens.id_token).await.ok();
    let timing = Timing { started: received, issuer_time: client.issuer_time() };
    Ok(Obtained::ChatGpt { tokens, api_key, timing: Some(timing) })
}

/// Bind the callback port; with `fallback`, a default port held by another program falls back to
/// [`FALLBACK_PORT`], the issuer's second allowed redirect port, before giving up naming both.
async fn bind_with_fallback(
    port: u16,
    fallback: bool,
    home: &Path,
    events: &EventSink,
) -> Result<TcpListener, LoginError> {
    match bind_callback_port(port, home, events).await {
        Err(LoginError::PortBusy { .. }) if fallback && port == super::DEFAULT_PORT => {
            events(LoginEvent::PortFallback { busy: port, port: FALLBACK_PORT });
            match bind_callback_port(FALLBACK_PORT, home, events).await {
                Err(LoginError::PortBusy { .. }) => Err(LoginError::PortsBusy { first: port, second: FALLBACK_PORT }),
                other => other,
            }
        }
        other => other,
    }
}

/// Bind 127.0.0.1:`port`. When it is busy, ask whoever holds it to `/cancel` with the secret a
/// stale llmx login of this home left (`auth::cancel`; it stops), then retry every 200 ms, 10
/// times, before giving up naming the port.
pub async fn bind_callback_port(port: u16, home: &Path, events: &EventSink) -> Result<TcpListener, LoginError> {
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
