//! The loopback callback server of a browser login (DESIGN.md §3).
//!
//! Paths: `/auth/callback` (wrong state → 400 and keep waiting; missing code → 400; an OAuth
//! `error=` → show it and end the login; success → run the caller's code handler, then 302 to
//! `/success`), `/success` (a page, then the server stops), `POST /cancel` with the login's cancel
//! secret as the body (stops the server: a later login uses it to evict a stale one, see
//! `auth::cancel`; a wrong or missing secret is 403, `GET /cancel` 405, so a web page cannot end
//! a login), anything else 404.
//!
//! With paste-back, lines the user pastes (the address the browser ended on, or the bare code) go
//! through the same state check and the same code handler as a callback request.
//!
//! Like mini-redis, [`serve`] takes an already-bound listener and a shutdown future, so tests bind
//! port 0 and never sleep, and the caller decides what "shutdown" means (timeout, Ctrl-C). The
//! server knows nothing of tokens or files: what a valid code turns into is the caller's closure.

use crate::auth::paste::{self, Pasted};
pub use crate::auth::query::CallbackQuery;
use crate::secret::Secret;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

/// After a successful callback, how long to wait for the browser to fetch `/success` before the
/// server stops anyway (a scripted browser may not follow the redirect).
pub const SUCCESS_GRACE: Duration = Duration::from_secs(3);
/// After the server is told to stop, how long open connections get to finish.
const DRAIN: Duration = Duration::from_secs(2);

/// What turns a valid code into the login's result. Receives the code and when the callback
/// arrived (for timing).
pub type CodeHandler<T, E> = Arc<dyn Fn(String, Instant) -> BoxFuture<'static, Result<T, E>> + Send + Sync>;

/// Things worth telling the user while the server waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerNote {
    /// A callback arrived and was answered 400; the login keeps waiting.
    Rejected { reason: &'static str },
    /// A pasted line was not a usable code; the login keeps waiting.
    PasteRejected { reason: String },
    /// A callback (or pasted code) with the right state arrived; the exchange is starting.
    CallbackReceived,
}

/// How the server ended.
#[derive(Debug)]
pub enum ServerEnd<T, E, S> {
    /// The code handler succeeded.
    Completed(T),
    /// The code handler failed; the error was shown in the browser too.
    Failed(E),
    /// The issuer redirected back with `error=` (e.g. `access_denied`).
    Denied { error: String, description: Option<String> },
    /// Someone requested `/cancel` (typically a newer `llmx login` evicting this one).
    Cancelled,
    /// The caller's shutdown future finished first, with this value.
    Shutdown(S),
}

struct Shared<T, E, S> {
    expected_state: String,
    cancel_secret: Secret,
    on_code: CodeHandler<T, E>,
    on_note: Arc<dyn Fn(ServerNote) + Send + Sync>,
    /// The first terminal outcome wins; later ones are ignored.
    end: Mutex<Option<ServerEnd<T, E, S>>>,
    /// Serialises callbacks, so two browsers racing with the same code exchange it once.
    exchange: tokio::sync::Mutex<()>,
    stop: Notify,
    grace: Duration,
}

impl<T, E, S> Shared<T, E, S> {
    /// Record `end` unless an outcome is already recorded. Returns whether it was recorded.
    fn finish(&self, end: ServerEnd<T, E, S>) -> bool {
        // A poisoned lock means a handler panicked while holding it; the data is a plain Option
        // and still consistent, so keep going with it.
        let mut slot = self.end.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(end);
        true
    }

    fn state(&self) -> Phase {
        match &*self.end.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Phase::Waiting,
            Some(ServerEnd::Completed(_)) => Phase::Succeeded,
            Some(_) => Phase::Over,
        }
    }
}

enum Phase {
    Waiting,
    Succeeded,
    Over,
}

/// Serve until the login ends. `shutdown` is raced against the login; its output is returned as
/// [`ServerEnd::Shutdown`] when it wins. After a success the server waits up to `grace` (normally
/// [`SUCCESS_GRACE`]) for the browser to fetch `/success`. `POST /cancel` must carry
/// `cancel_secret`.
pub async fn serve<T, E, S>(
    listener: TcpListener,
    expected_state: String,
    cancel_secret: Secret,
    on_code: CodeHandler<T, E>,
    on_note: Arc<dyn Fn(ServerNote) + Send + Sync>,
    shutdown: impl Future<Output = S> + Send + 'static,
    grace: Duration,
) -> std::io::Result<ServerEnd<T, E, S>>
where
    T: Send + 'static,
    E: Display + Send + 'static,
    S: Send + 'static,
{
    let secrets = LoginSecrets { state: expected_state, cancel: cancel_secret };
    serve_with_paste(listener, secrets, on_code, on_note, shutdown, grace, None).await
}

/// What only this login knows: the OAuth `state` a callback must carry, and the secret that
/// `POST /cancel` must send.
pub struct LoginSecrets {
    pub state: String,
    pub cancel: Secret,
}

/// [`serve`], also taking pasted lines (paste-back, DESIGN.md §8): each line is the address the
/// browser ended on or a bare code, checked like a callback. A bad line is a
/// [`ServerNote::Rejected`] and the login keeps waiting; it never ends the login.
pub async fn serve_with_paste<T, E, S>(
    listener: TcpListener,
    secrets: LoginSecrets,
    on_code: CodeHandler<T, E>,
    on_note: Arc<dyn Fn(ServerNote) + Send + Sync>,
    shutdown: impl Future<Output = S> + Send + 'static,
    grace: Duration,
    pasted: Option<mpsc::Receiver<String>>,
) -> std::io::Result<ServerEnd<T, E, S>>
where
    T: Send + 'static,
    E: Display + Send + 'static,
    S: Send + 'static,
{
    let shared = Arc::new(Shared {
        expected_state: secrets.state,
        cancel_secret: secrets.cancel,
        on_code,
        on_note,
        end: Mutex::new(None),
        exchange: tokio::sync::Mutex::new(()),
        stop: Notify::new(),
        grace,
    });
    let app = Router::new()
        .route("/auth/callback", get(callback::<T, E, S>))
        .route("/success", get(success::<T, E, S>))
        .route("/cancel", post(cancel::<T, E, S>))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found\n") })
        .with_state(shared.clone());

    let paste_task = pasted.map(|rx| tokio::spawn(read_pasted(shared.clone(), rx)));
    let stopper = shared.clone();
    let stop_signal = async move {
        tokio::select! {
            s = shutdown => { stopper.finish(ServerEnd::Shutdown(s)); }
            () = stopper.stop.notified() => {}
        }
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop_signal.await;
        let _ = stopped_tx.send(());
    });
    let server = server.into_future();
    tokio::pin!(server);
    // Run until the graceful shutdown finishes, but give lingering connections only DRAIN once
    // the stop signal fired: a browser's idle preconnect must not keep the login alive.
    tokio::select! {
        r = &mut server => r?,
        _ = async { let _ = stopped_rx.await; tokio::time::sleep(DRAIN).await } => {}
    }
    if let Some(t) = paste_task {
        t.abort();
    }
    let end = shared.end.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(end.unwrap_or(ServerEnd::Cancelled))
}

/// Take pasted lines until the login ends or the input does.
async fn read_pasted<T, E, S>(sh: Arc<Shared<T, E, S>>, mut rx: mpsc::Receiver<String>)
where
    T: Send + 'static,
    E: Display + Send + 'static,
    S: Send + 'static,
{
    while let Some(line) = rx.recv().await {
        let reject = |reason: String| (sh.on_note)(ServerNote::PasteRejected { reason });
        let code = match paste::parse(&line) {
            Ok(Pasted::Code(code)) => code,
            Ok(Pasted::Callback(q)) => {
                if !q.state.as_deref().is_some_and(|s| constant_time_eq(s.as_bytes(), sh.expected_state.as_bytes())) {
                    reject("the pasted address belongs to another login (state mismatch)".into());
                    continue;
                }
                if let Some(error) = q.error {
                    reject(format!("the pasted address holds an error from the issuer ({error}), not a code"));
                    continue;
                }
                match q.code.filter(|c| !c.is_empty()) {
                    Some(c) => c,
                    None => {
                        reject("the pasted address holds no authorization code".into());
                        continue;
                    }
                }
            }
            Err(reason) => {
                reject(reason.into());
                continue;
            }
        };
        match accept_code(&sh, code, Instant::now(), Source::Pasted).await {
            Accepted::Failed(text) => reject(format!("the pasted code did not work: {text}")),
            Accepted::Succeeded | Accepted::Over => return,
        }
    }
}

/// Where a code came from: a failed callback ends the login (the browser shows why); a pasted
/// code that fails is reported and the login keeps waiting (the user may have pasted the wrong
/// line).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Callback,
    Pasted,
}

/// What happened to a code that passed the state check.
enum Accepted {
    /// The handler succeeded (now, or earlier for a racing duplicate).
    Succeeded,
    /// The login had already ended another way.
    Over,
    /// The handler failed, with this message.
    Failed(String),
}

/// Run the code handler once for the waiting login, and record how it ended.
async fn accept_code<T, E, S>(sh: &Arc<Shared<T, E, S>>, code: String, received: Instant, from: Source) -> Accepted
where
    T: Send + 'static,
    E: Display + Send + 'static,
    S: Send + 'static,
{
    let _guard = sh.exchange.lock().await;
    match sh.state() {
        Phase::Succeeded => return Accepted::Succeeded,
        Phase::Over => return Accepted::Over,
        Phase::Waiting => {}
    }
    (sh.on_note)(ServerNote::CallbackReceived);
    match (sh.on_code)(code, received).await {
        Ok(value) => {
            sh.finish(ServerEnd::Completed(value));
            let stopper = sh.clone();
            tokio::spawn(async move {
                tokio::time::sleep(stopper.grace).await;
                stopper.stop.notify_one();
            });
            Accepted::Succeeded
        }
        Err(e) => {
            let text = e.to_string();
            if from == Source::Callback {
                sh.finish(ServerEnd::Failed(e));
                sh.stop.notify_one();
            }
            Accepted::Failed(text)
        }
    }
}

async fn callback<T, E, S>(State(sh): State<Arc<Shared<T, E, S>>>, RawQuery(query): RawQuery) -> Response
where
    T: Send + 'static,
    E: Display + Send + 'static,
    S: Send + 'static,
{
    let received = Instant::now();
    let q = CallbackQuery::parse(query.as_deref().unwrap_or(""));
    if !q.state.as_deref().is_some_and(|s| constant_time_eq(s.as_bytes(), sh.expected_state.as_bytes())) {
        (sh.on_note)(ServerNote::Rejected { reason: "state mismatch" });
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "State mismatch: this callback does not belong to the login that is waiting. The login is still waiting.",
        );
    }
    if let Some(error) = q.error {
        let description = q.error_description;
        let shown = match &description {
            Some(d) => format!("{error}: {d}"),
            None => error.clone(),
        };
        sh.finish(ServerEnd::Denied { error, description });
        sh.stop.notify_one();
        return page(
            StatusCode::OK,
            "Sign-in failed",
            &format!("The sign-in was not completed ({shown}). You can close this tab."),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        (sh.on_note)(ServerNote::Rejected { reason: "missing authorization code" });
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "Missing authorization code. The login is still waiting.",
        );
    };
    match accept_code(&sh, code, received, Source::Callback).await {
        Accepted::Succeeded => redirect_to_success(),
        Accepted::Over => page(StatusCode::GONE, "Sign-in over", "This login has already ended."),
        Accepted::Failed(text) => {
            page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", &format!("{text}. Run `llmx login` again."))
        }
    }
}

async fn success<T, E, S>(State(sh): State<Arc<Shared<T, E, S>>>) -> Response {
    match sh.state() {
        Phase::Succeeded => {
            sh.stop.notify_one();
            page(
                StatusCode::OK,
                "Signed in to llmx",
                "You are signed in. You can close this tab and return to the terminal.",
            )
        }
        _ => page(StatusCode::NOT_FOUND, "Not signed in", "No sign-in has completed here."),
    }
}

async fn cancel<T, E, S>(State(sh): State<Arc<Shared<T, E, S>>>, body: axum::body::Bytes) -> Response {
    let secret = sh.cancel_secret.expose().as_bytes();
    if secret.is_empty() || !constant_time_eq(body.trim_ascii(), secret) {
        return (StatusCode::FORBIDDEN, "Forbidden\n").into_response();
    }
    sh.finish(ServerEnd::Cancelled);
    sh.stop.notify_one();
    (StatusCode::OK, "Login cancelled\n").into_response()
}

fn redirect_to_success() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/success")]).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A small HTML page (title and message escaped); also the tunnel's relay answers with it.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family: sans-serif; margin: 3em\"><h1>{t}</h1><p>{m}</p></body></html>\n",
        t = html_escape(title),
        m = html_escape(message)
    );
    (status, Html(body)).into_response()
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type End = ServerEnd<String, String, &'static str>;
    const CANCEL: &str = "cancel-secret-of-this-login";

    /// A server on port 0 whose code handler echoes the code (or fails on "bad").
    async fn start(
        grace: Duration,
    ) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<End>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let on_code: CodeHandler<String, String> = Arc::new(|code, _| {
            Box::pin(async move { if code == "bad" { Err("exchange failed".to_string()) } else { Ok(code) } })
        });
        let task = tokio::spawn(serve(
            listener,
            "S1".into(),
            Secret::new(CANCEL),
            on_code,
            Arc::new(|_| {}),
            async move {
                let _ = rx.await;
                "shutdown"
            },
            grace,
        ));
        (base, tx, task)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    async fn get(url: &str) -> (u16, String) {
        let r = client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    #[tokio::test]
    async fn wrong_state_and_missing_code_keep_waiting_then_success() {
        let (base, _tx, task) = start(Duration::from_secs(30)).await;
        assert_eq!(get(&format!("{base}/auth/callback?code=c&state=nope")).await.0, 400);
        assert_eq!(get(&format!("{base}/auth/callback?code=c")).await.0, 400);
        assert_eq!(get(&format!("{base}/auth/callback?state=S1")).await.0, 400);
        assert_eq!(get(&format!("{base}/auth/callback?state=S1&code=")).await.0, 400);
        assert_eq!(get(&format!("{base}/elsewhere")).await.0, 404);
        assert_eq!(get(&format!("{base}/success")).await.0, 404, "no success page before a login");
        let r = client().get(format!("{base}/auth/callback?code=abc&state=S1")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302);
        assert_eq!(r.headers()[header::LOCATION], "/success");
        // A replay after success is sent to the success page, not exchanged again.
        assert_eq!(get(&format!("{base}/auth/callback?code=zzz&state=S1")).await.0, 302);
        let (status, body) = get(&format!("{base}/success")).await;
        assert_eq!(status, 200);
        assert!(body.contains("signed in"), "{body}");
        assert!(matches!(task.await.unwrap().unwrap(), ServerEnd::Completed(c) if c == "abc"));
    }

    #[tokio::test]
    async fn error_parameter_ends_the_login_and_is_escaped() {
        let (base, _tx, task) = start(Duration::from_secs(30)).await;
        let (status, body) =
            get(&format!("{base}/auth/callback?state=S1&error=access_denied&error_description=%3Cb%3Eno%3C/b%3E"))
                .await;
        assert_eq!(status, 200);
        assert!(body.contains("&lt;b&gt;no") && !body.contains("<b>no"), "{body}");
        match task.await.unwrap().unwrap() {
            ServerEnd::Denied { error, description } => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.as_deref(), Some("<b>no</b>"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn failed_exchange_ends_the_login() {
        let (base, _tx, task) = start(Duration::from_secs(30)).await;
        assert_eq!(get(&format!("{base}/auth/callback?state=S1&code=bad")).await.0, 500);
        assert!(matches!(task.await.unwrap().unwrap(), ServerEnd::Failed(e) if e == "exchange failed"));
    }

    #[tokio::test]
    async fn cancel_and_shutdown_stop_the_server() {
        let (base, _tx, task) = start(Duration::from_secs(30)).await;
        let r = client().post(format!("{base}/cancel")).body(CANCEL).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(matches!(task.await.unwrap().unwrap(), ServerEnd::Cancelled));
        let (_base, tx, task) = start(Duration::from_secs(30)).await;
        tx.send(()).unwrap();
        assert!(matches!(task.await.unwrap().unwrap(), ServerEnd::Shutdown("shutdown")));
    }

    /// What a web page can send to `localhost:PORT/cancel`: a GET (link, image, fetch), a form
    /// POST with no, an empty, a guessed or a near-miss secret, other methods. None ends the login.
    #[tokio::test]
    async fn cancel_without_the_login_secret_is_refused_and_the_login_keeps_waiting() {
        let (base, _tx, task) = start(Duration::from_secs(30)).await;
        let url = format!("{base}/cancel");
        let near = format!("{CANCEL}x");
        let short = &CANCEL[..CANCEL.len() - 1];
        let c = client();
        let attempts = [
            (c.get(&url), 405),
            (c.get(format!("{url}?secret={CANCEL}")), 405),
            (c.head(&url), 405),
            (c.put(&url).body(CANCEL), 405),
            (c.post(&url), 403),
            (c.post(&url).body(""), 403),
            (c.post(&url).header("content-type", "application/x-www-form-urlencoded").body("secret=guess"), 403),
            (c.post(&url).body(near.clone()), 403),
            (c.post(&url).body(short.to_string()), 403),
            (c.post(&url).body(CANCEL.to_uppercase()), 403),
        ];
        let n = attempts.len();
        for (i, (req, want)) in attempts.into_iter().enumerate() {
            assert_eq!(req.send().await.unwrap().status().as_u16(), want, "attempt {i} of {n}");
        }
        assert!(!task.is_finished(), "the login still waits");
        assert_eq!(get(&format!("{base}/auth/callback?code=abc&state=S1")).await.0, 302);
        // The browser fetches the success page; the server stops then, not after the grace.
        assert_eq!(get(&format!("{base}/success")).await.0, 200);
        assert!(matches!(task.await.unwrap().unwrap(), ServerEnd::Completed(c) if c == "abc"));
    }

    #[tokio::test]
    async fn success_without_the_success_page_stops_after_grace() {
        let (base, _tx, task) = start(Duration::from_millis(1)).await;
        assert_eq!(get(&format!("{base}/auth/callback?state=S1&code=x")).await.0, 302);
        assert!(matches!(task.await.unwrap().unwrap(), ServerEnd::Completed(_)));
    }

    #[test]
    fn junk_queries_parse_to_something() {
        for junk in ["", "&&&", "=", "code", "code=%", "%ZZ=%ZZ", "state=%ff%fe&code=%00", "a=b=c", "error=%1b%5b31m"] {
            let _ = CallbackQuery::parse(junk);
        }
        assert_eq!(CallbackQuery::parse("error=%1b%5b31mx%0a").error.as_deref(), Some("x"));
        assert_eq!(CallbackQuery::parse("code=a&code=b").code.as_deref(), Some("a"));
    }
}
