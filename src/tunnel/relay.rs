//! The callback relay of `llmx auth tunnel docker:NAME`: 127.0.0.1:PORT here answers the
//! browser's `GET /auth/callback?…` by handing the address, as one paste-back line, to the
//! container's waiting `llmx login` (over the exec's stdin, see [`super::wait`]), and answers the
//! browser with what that login made of it: a redirect to `/success` here, or its reason. The code
//! is checked (state) and exchanged (PKCE verifier) only inside the container; nothing here keeps
//! it. Any other path is a 404.
//!
//! The container's login ends as soon as it has saved the login, before the browser follows the
//! redirect; so after a success the relay keeps serving until the browser has fetched
//! `/success` (at most [`SUCCESS_GRACE`], as `llmx login`'s own server does), else the browser
//! would find the port closed on a loaded machine.

use crate::auth::server::{SUCCESS_GRACE, page};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// The longest callback query relayed (the container login reads lines of up to 16 KiB).
const MAX_QUERY: usize = 8 * 1024;
/// How long open browser connections may delay the relay's stop.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A callback for the container's login, and where its answer goes.
pub(super) struct Relayed {
    pub(super) line: String,
    pub(super) reply: oneshot::Sender<Answer>,
}

/// What the container's login made of a relayed callback.
#[derive(Debug, Clone)]
pub(super) enum Answer {
    Succeeded,
    /// Refused (wrong state, an `error=`, no code); the login keeps waiting.
    Rejected(String),
    /// The login ended without credentials.
    Failed(String),
}

struct Shared {
    port: u16,
    relay: mpsc::Sender<Relayed>,
    succeeded: AtomicBool,
    /// The browser fetched `/success` after a success.
    shown: AtomicBool,
    shown_now: Notify,
}

/// The relay's server; stopping it drops the listener.
pub(super) struct Relay {
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Relay {
    pub(super) fn start(listener: TcpListener, port: u16, relay: mpsc::Sender<Relayed>) -> Relay {
        let shared = Arc::new(Shared {
            port,
            relay,
            succeeded: AtomicBool::new(false),
            shown: AtomicBool::new(false),
            shown_now: Notify::new(),
        });
        let app = Router::new()
            .route("/auth/callback", get(callback))
            .route("/success", get(success))
            .fallback(|| async { page(StatusCode::NOT_FOUND, "Not found", "Not found.") })
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Relay { shared, stop, task }
    }

    /// Stop serving; after a success, not before the browser has fetched `/success` (or
    /// [`SUCCESS_GRACE`] has passed).
    pub(super) async fn stop(self) {
        let sh = &self.shared;
        if sh.succeeded.load(Ordering::SeqCst) && !sh.shown.load(Ordering::SeqCst) {
            // `notify_one` keeps a permit when nobody waits yet, so a fetch just before this
            // wait is not missed.
            let _ = tokio::time::timeout(SUCCESS_GRACE, sh.shown_now.notified()).await;
        }
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn callback(State(sh): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY || query.contains(['\r', '\n']) {
        return page(StatusCode::BAD_REQUEST, "Sign-in failed", "This callback is not one llmx can use.");
    }
    let (reply, answer) = oneshot::channel();
    let line = format!("http://localhost:{}/auth/callback?{query}", sh.port);
    if sh.relay.send(Relayed { line, reply }).await.is_err() {
        return page(StatusCode::GONE, "Sign-in over", "The container's login has already ended.");
    }
    match answer.await {
        Ok(Answer::Succeeded) => {
            sh.succeeded.store(true, Ordering::SeqCst);
            (StatusCode::FOUND, [(header::LOCATION, "/success")]).into_response()
        }
        Ok(Answer::Rejected(reason)) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!("The container's login refused this callback: {reason}. It is still waiting."),
        ),
        Ok(Answer::Failed(error)) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            &format!("The container's login failed: {error}. Run `llmx auth tunnel` again."),
        ),
        Err(_) => page(StatusCode::GONE, "Sign-in over", "The container's login ended without an answer."),
    }
}

async fn success(State(sh): State<Arc<Shared>>) -> Response {
    if sh.succeeded.load(Ordering::SeqCst) {
        sh.shown.store(true, Ordering::SeqCst);
        sh.shown_now.notify_one();
        page(
            StatusCode::OK,
            "Signed in to llmx",
            "The container is signed in. You can close this tab and return to the terminal.",
        )
    } else {
        page(StatusCode::NOT_FOUND, "Not signed in", "No sign-in has completed here.")
    }
}
