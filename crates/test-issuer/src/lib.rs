//! A test double of the real OAuth issuer (`auth.openai.com`), speaking the same protocol as far
//! as llmx uses it. It is a real HTTP server used in process by llmx's integration tests, and as
//! the `llmx-test-issuer` binary by `scripts/demo` and `scripts/bench-*`; it is not a production
//! issuer: it approves everyone, signs nothing (JWTs carry `alg: none`) and keeps its state in
//! memory. It is its own crate so that it is never installed with llmx, and it does not depend on
//! llmx: the PKCE check and the JWTs here are written independently of llmx's, so that a bug in
//! llmx's cannot hide by being on both sides of the conversation.
//!
//! - `GET /oauth/authorize` auto-approves: 302 to `redirect_uri` with `code` and `state`, or with
//!   `error=access_denied` when [`Issuer::set_deny`] is on or the query carries
//!   `llmx_test_error=access_denied` (a knob for scripts).
//! - `POST /oauth/token`, form-encoded `authorization_code`: checks the PKCE verifier against the
//!   challenge, the redirect URI and the client id; each code works once.
//! - `POST /oauth/token`, form-encoded token exchange (`requested_token=openai-api-key`): returns
//!   an API key for an id_token it issued.
//! - `POST /oauth/token`, JSON `refresh_token` grant: rotates the refresh token; a used one gets
//!   401 `{"error":{"code":"refresh_token_reused"}}` like the real issuer.
//!
//! - The device-code endpoints and a page to approve or decline a code: see [`device`].
//! - Hostile answers for tests ([`Issuer::set_token_answer`]): every `/oauth/token` request gets
//!   a [`TokenAnswer`] instead — a redirect, a raw body, or real tokens padded past any cap.
//! - `POST /oauth/revoke`, JSON: revokes a refresh token (counted in [`IssuerStats::revocations`]).
//! - Knobs: [`Issuer::set_refresh_answer`] makes an accepted refresh answer with an empty or
//!   non-JWT token; [`Issuer::set_delay`] slows every token answer (concurrent-refresh tests).
//!
//! id_tokens carry `email` and, under `https://api.openai.com/auth`, `chatgpt_plan_type` and
//! `chatgpt_account_id`; access tokens are JWTs with `exp`. Every token response waits for the
//! configured delay first, so benchmarks can tell the issuer's time from llmx's.

mod device;

pub use device::DeviceState;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// The OAuth client id the issuer accepts by default: the public id of the Codex CLI, which is
/// also llmx's default (`llmx::config::DEFAULT_CLIENT_ID`; repeated here, not imported).
pub const DEFAULT_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// The claim namespace OpenAI uses for ChatGPT details (plan, account id) in its JWTs.
pub const AUTH_CLAIMS: &str = "https://api.openai.com/auth";

/// An unsigned JWT (`alg: none`) with `claims` as its payload, shaped like the issuer's tokens:
/// what the issuer hands out, and what tests write into auth.json fixtures.
pub fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.sig")
}

/// The PKCE `S256` code challenge of `verifier` (RFC 7636 §4.2): base64url without padding of its
/// SHA-256.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Who signs in and how the issuer behaves.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub client_id: String,
    pub email: String,
    pub plan: String,
    pub account_id: String,
    /// Added before every `/oauth/token` answer.
    pub delay: Duration,
    /// Lifetime of issued access tokens (`exp` = now + this).
    pub access_token_ttl: Duration,
    /// Answer every authorize request with `error=access_denied`.
    pub deny: bool,
    /// Whether the API-key token exchange succeeds (it is best effort in llmx).
    pub api_keys: bool,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            client_id: DEFAULT_CLIENT_ID.to_string(),
            email: "dev@example.com".into(),
            plan: "plus".into(),
            account_id: "acc-test-0001".into(),
            delay: Duration::ZERO,
            access_token_ttl: Duration::from_secs(3600),
            deny: false,
            api_keys: true,
        }
    }
}

/// How the token endpoint misbehaves, when a test asks it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    /// `status` (a 3xx) with `Location: location`.
    Redirect { status: u16, location: String },
    /// Exactly this status, content type and body.
    Raw { status: u16, content_type: String, body: Vec<u8> },
    /// A real, valid token answer with a `padding` field of `bytes` bytes added.
    Padded { bytes: usize },
}

/// Counters a test can check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IssuerStats {
    pub authorizations: u32,
    pub code_exchanges: u32,
    pub api_key_exchanges: u32,
    pub refreshes: u32,
    pub rejected_token_requests: u32,
    /// `POST /oauth/revoke` requests that revoked a refresh token this issuer handed out.
    pub revocations: u32,
}

/// How the issuer answers a refresh that it accepts (the refresh token is used up either way):
/// a test of "never burn a login" needs answers that a careful client must refuse to save.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RefreshAnswer {
    /// Three fresh tokens, as the real issuer does.
    #[default]
    Normal,
    /// The access token is the empty string.
    EmptyAccessToken,
    /// The id_token is not a JWT.
    NonJwtIdToken,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
}

#[derive(Default)]
struct Store {
    codes: HashMap<String, Grant>,
    live_refresh: HashSet<String>,
    used_refresh: HashSet<String>,
    id_tokens: HashSet<String>,
    stats: IssuerStats,
    /// When set, refresh requests get this status with a non-permanent error body.
    refresh_failure: Option<u16>,
    /// When set, every token request gets this answer (see [`TokenAnswer`]).
    token_answer: Option<TokenAnswer>,
    /// Token requests received, whatever their answer.
    token_requests: u32,
    refresh_answer: RefreshAnswer,
    revoked: HashSet<String>,
}

struct Inner {
    config: Mutex<IssuerConfig>,
    store: Mutex<Store>,
    device: Mutex<device::DeviceStore>,
}

/// A handle on the issuer's state; clones share it. Serve it with [`Issuer::serve`] or
/// [`Issuer::spawn`].
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

/// An issuer running on a tokio task; dropping it does not stop it, [`RunningIssuer::stop`] does.
pub struct RunningIssuer {
    pub issuer: Issuer,
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningIssuer {
    /// `http://ADDR:PORT`, the value for `-c auth_issuer=...`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait until the port is closed.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Handlers never panic while holding these locks except on a bug; the data stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Issuer {
    pub fn new(config: IssuerConfig) -> Issuer {
        Issuer {
            inner: Arc::new(Inner {
                config: Mutex::new(config),
                store: Mutex::new(Store::default()),
                device: Mutex::new(Default::default()),
            }),
        }
    }

    pub fn set_deny(&self, deny: bool) {
        lock(&self.inner.config).deny = deny;
    }

    pub fn set_delay(&self, delay: Duration) {
        lock(&self.inner.config).delay = delay;
    }

    /// Make refresh requests fail with `status` (a transient failure), or succeed again (`None`).
    pub fn set_refresh_failure(&self, status: Option<u16>) {
        lock(&self.inner.store).refresh_failure = status;
    }

    /// Answer every `/oauth/token` request with `answer` (`None`: behave again).
    pub fn set_token_answer(&self, answer: Option<TokenAnswer>) {
        lock(&self.inner.store).token_answer = answer;
    }

    /// How many `/oauth/token` requests arrived, however they were answered.
    pub fn token_requests(&self) -> u32 {
        lock(&self.inner.store).token_requests
    }

    /// Answer accepted refreshes with `answer` (see [`RefreshAnswer`]).
    pub fn set_refresh_answer(&self, answer: RefreshAnswer) {
        lock(&self.inner.store).refresh_answer = answer;
    }

    /// Whether `refresh_token` was revoked through `POST /oauth/revoke`.
    pub fn is_revoked(&self, refresh_token: &str) -> bool {
        lock(&self.inner.store).revoked.contains(refresh_token)
    }

    pub fn stats(&self) -> IssuerStats {
        lock(&self.inner.store).stats
    }

    /// Serve on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/", get(|| async { "llmx test issuer (a test double; see crates/test-issuer)\n" }))
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token))
            .route("/api/accounts/deviceauth/usercode", post(device::usercode))
            .route("/api/accounts/deviceauth/token", post(device::token))
            .route("/codex/device", get(device::page).post(device::decide))
            .route("/oauth/revoke", post(revoke))
            .fallback(|| async { (StatusCode::NOT_FOUND, "Not found\n") })
            .with_state(self);
        axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future().await
    }

    /// Serve on `listener` in a tokio task.
    pub fn spawn(self, listener: TcpListener) -> std::io::Result<RunningIssuer> {
        let addr = listener.local_addr()?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(RunningIssuer { issuer: self, addr, stop, task })
    }

    /// Bind `127.0.0.1:0` and [`spawn`](Issuer::spawn): the usual way to start one in a test.
    pub async fn start(config: IssuerConfig) -> std::io::Result<RunningIssuer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Issuer::new(config).spawn(listener)
    }

    fn config(&self) -> IssuerConfig {
        lock(&self.inner.config).clone()
    }

    fn issue_tokens(&self, store: &mut Store) -> Value {
        let c = self.config();
        let now = unix_now();
        let auth = json!({
            "chatgpt_plan_type": c.plan,
            "chatgpt_account_id": c.account_id,
            "chatgpt_user_id": "user-test-0001",
        });
        let id_token = jwt(&json!({
            "iss": "llmx-test-issuer",
            "aud": c.client_id,
            "sub": "user-test-0001",
            "email": c.email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
            "jti": nonce(),
            AUTH_CLAIMS: auth,
        }));
        let access_token = jwt(&json!({
            "iss": "llmx-test-issuer",
            "aud": ["https://api.openai.com/v1"],
            "sub": "user-test-0001",
            "scp": ["openid", "profile", "email", "offline_access"],
            "iat": now,
            "exp": now + c.access_token_ttl.as_secs() as i64,
            "jti": nonce(),
            AUTH_CLAIMS: auth,
        }));
        let refresh_token = format!("rt_{}", nonce());
        store.live_refresh.insert(refresh_token.clone());
        store.id_tokens.insert(id_token.clone());
        json!({
            "id_token": id_token,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": c.access_token_ttl.as_secs(),
        })
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// 18 random bytes, base64url: codes, refresh tokens and `jti`s.
fn nonce() -> String {
    let mut bytes = [0u8; 18];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => URL_SAFE_NO_PAD.encode(bytes),
        // A test double: when the OS has no randomness, a time-based value still makes tokens
        // unique enough for tests.
        Err(_) => format!("t{}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()),
    }
}

fn query_map(raw: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

fn bad_request(text: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{text}\n")).into_response()
}

async fn authorize(State(issuer): State<Issuer>, RawQuery(q): RawQuery) -> Response {
    let q = query_map(q.as_deref().unwrap_or(""));
    let c = issuer.config();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let Ok(redirect) = url::Url::parse(get("redirect_uri")) else {
        return bad_request("redirect_uri is missing or not a URL");
    };
    if redirect.scheme() != "http" || !matches!(redirect.host_str(), Some("localhost" | "127.0.0.1")) {
        return bad_request("redirect_uri must be http://localhost:PORT/...");
    }
    if get("client_id") != c.client_id {
        return bad_request("unknown client_id");
    }
    if get("response_type") != "code" || get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return bad_request("expected response_type=code and an S256 code_challenge");
    }
    let state = get("state").to_string();
    let mut target = redirect.clone();
    if c.deny || get("llmx_test_error") == "access_denied" {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied the request")
            .append_pair("state", &state);
    } else {
        let code = format!("ac_{}", nonce());
        let mut store = lock(&issuer.inner.store);
        store.stats.authorizations += 1;
        store.codes.insert(
            code.clone(),
            Grant {
                client_id: c.client_id.clone(),
                redirect_uri: redirect.to_string(),
                challenge: get("code_challenge").to_string(),
            },
        );
        target.query_pairs_mut().append_pair("code", &code).append_pair("state", &state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

/// A refused token request: the status and the OAuth error body.
type Rejection = (StatusCode, Value);

fn oauth_error(status: StatusCode, body: Value) -> Rejection {
    (status, body)
}

async fn token(State(issuer): State<Issuer>, headers: HeaderMap, body: Bytes) -> Response {
    let delay = issuer.config().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = {
        let mut store = lock(&issuer.inner.store);
        store.token_requests += 1;
        store.token_answer.clone()
    };
    if let Some(answer) = answer {
        return hostile_answer(&issuer, answer);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let response = if content_type.starts_with("application/json") {
        refresh_grant(&issuer, &body)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let form = query_map(&String::from_utf8_lossy(&body));
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => code_grant(&issuer, &form),
            Some("urn:ietf:params:oauth:grant-type:token-exchange") => api_key_exchange(&issuer, &form),
            _ => Err(oauth_error(StatusCode::BAD_REQUEST, json!({"error": "unsupported_grant_type"}))),
        }
    } else {
        Err(oauth_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "unsupported content type"}),
        ))
    };
    match response {
        Ok(body) => axum::Json(body).into_response(),
        Err((status, body)) => {
            lock(&issuer.inner.store).stats.rejected_token_requests += 1;
            (status, axum::Json(body)).into_response()
        }
    }
}

fn hostile_answer(issuer: &Issuer, answer: TokenAnswer) -> Response {
    let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match answer {
        TokenAnswer::Redirect { status: s, location } => (status(s), [(header::LOCATION, location)]).into_response(),
        TokenAnswer::Raw { status: s, content_type, body } => {
            (status(s), [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        TokenAnswer::Padded { bytes } => {
            let mut tokens = issuer.issue_tokens(&mut lock(&issuer.inner.store));
            tokens["padding"] = Value::String("x".repeat(bytes));
            axum::Json(tokens).into_response()
        }
    }
}

fn invalid_grant(why: &str) -> Rejection {
    oauth_error(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant", "error_description": why}))
}

fn code_grant(issuer: &Issuer, form: &HashMap<String, String>) -> Result<Value, Rejection> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut store = lock(&issuer.inner.store);
    // Removed before any check: a code is single use even when the attempt is wrong.
    let grant = store.codes.remove(get("code")).ok_or_else(|| invalid_grant("unknown or already used code"))?;
    if get("client_id") != grant.client_id {
        return Err(oauth_error(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"})));
    }
    if get("redirect_uri") != grant.redirect_uri {
        return Err(invalid_grant("redirect_uri does not match the authorization request"));
    }
    if s256(get("code_verifier")) != grant.challenge {
        return Err(invalid_grant("code_verifier does not match the code_challenge"));
    }
    store.stats.code_exchanges += 1;
    Ok(issuer.issue_tokens(&mut store))
}

fn api_key_exchange(issuer: &Issuer, form: &HashMap<String, String>) -> Result<Value, Rejection> {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let c = issuer.config();
    if !c.api_keys {
        return Err(oauth_error(
            StatusCode::FORBIDDEN,
            json!({"error": "access_denied", "error_description": "no API key for this account"}),
        ));
    }
    if get("client_id") != c.client_id
        || get("requested_token") != "openai-api-key"
        || get("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token"
    {
        return Err(oauth_error(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"})));
    }
    let mut store = lock(&issuer.inner.store);
    if !store.id_tokens.contains(get("subject_token")) {
        return Err(invalid_grant("unknown subject_token"));
    }
    store.stats.api_key_exchanges += 1;
    let key = format!("sk-test-{}", nonce());
    Ok(json!({"access_token": key, "token_type": "bearer", "issued_token_type": "openai-api-key"}))
}

fn refresh_grant(issuer: &Issuer, body: &[u8]) -> Result<Value, Rejection> {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Err(oauth_error(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"})));
    };
    let get = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("");
    if get("grant_type") != "refresh_token" || get("client_id") != issuer.config().client_id || get("scope").is_empty()
    {
        return Err(oauth_error(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"})));
    }
    let mut store = lock(&issuer.inner.store);
    if let Some(status) = store.refresh_failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(oauth_error(status, json!({"error": {"code": "server_error", "message": "try again later"}})));
    }
    let token = get("refresh_token");
    if store.live_refresh.remove(token) {
        store.used_refresh.insert(token.to_string());
        store.stats.refreshes += 1;
        let mut answer = issuer.issue_tokens(&mut store);
        match store.refresh_answer {
            RefreshAnswer::Normal => {}
            RefreshAnswer::EmptyAccessToken => answer["access_token"] = json!(""),
            RefreshAnswer::NonJwtIdToken => answer["id_token"] = json!("not-a-jwt"),
        }
        return Ok(answer);
    }
    let code = if store.used_refresh.contains(token) { "refresh_token_reused" } else { "refresh_token_invalidated" };
    Err(oauth_error(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"code": code, "message": "Your refresh token can no longer be used. Please sign in again.", "type": "invalid_request_error"}}),
    ))
}

/// `POST /oauth/revoke`, JSON `{"token","token_type_hint":"refresh_token","client_id"}`: the
/// refresh token stops working (a later refresh with it gets `refresh_token_invalidated`). As
/// RFC 7009 says, an unknown token is not an error (200), but only a known one is counted.
async fn revoke(State(issuer): State<Issuer>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let req = serde_json::from_slice::<Value>(&body).ok().filter(|_| content_type.starts_with("application/json"));
    let Some(req) = req else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response();
    };
    let get = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("");
    if get("client_id") != issuer.config().client_id || get("token_type_hint") != "refresh_token" {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response();
    }
    let token = get("token").to_string();
    let mut store = lock(&issuer.inner.store);
    if store.live_refresh.remove(&token) || store.used_refresh.contains(&token) {
        store.stats.revocations += 1;
        store.revoked.insert(token);
    }
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn jwt_is_three_base64url_parts_with_the_claims_in_the_middle() {
        let token = jwt(&json!({"email": "a@b.c", AUTH_CLAIMS: {"chatgpt_plan_type": "pro"}}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "none");
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["email"], "a@b.c");
        assert_eq!(claims[AUTH_CLAIMS]["chatgpt_plan_type"], "pro");
    }
}
