//! The device-code endpoints of the test issuer (OpenAI's own shape, not RFC 8628), and a page
//! where a "person" approves or declines a code:
//!
//! - `POST /api/accounts/deviceauth/usercode`, JSON `{"client_id"}` → `{"device_auth_id",
//!   "user_code", "interval"}` with `interval` a string of seconds, as the real issuer sends it
//!   (or 404 when device code is switched off, [`Issuer::set_device_code`]).
//! - `POST /api/accounts/deviceauth/token`, JSON `{"device_auth_id","user_code"}` → 403 while
//!   pending; 401 `authorization_declined` when declined; 410 when expired; when approved, an
//!   authorization code for the redirect URI `{issuer}/deviceauth/callback` with the PKCE pair
//!   the issuer made for it: `{"authorization_code","code_challenge","code_verifier"}`.
//! - `GET /codex/device` a page with a form; `POST /codex/device`, form `user_code` and
//!   `action=approve|decline`: what the person does in the browser.

use super::{Grant, Issuer, lock, nonce, s256};
use axum::Form;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Where a code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Pending,
    Approved,
    Declined,
    Expired,
}

struct Code {
    user_code: String,
    state: DeviceState,
}

/// The device-code state of an issuer.
pub(crate) struct DeviceStore {
    enabled: bool,
    /// Sent as a string, as the real issuer does; a test may send a number instead.
    interval: Value,
    codes: HashMap<String, Code>,
    pub(crate) usercodes_issued: u32,
    pub(crate) polls: u32,
    /// How long each token poll takes to be answered (a slow or stalling issuer).
    poll_delay: std::time::Duration,
    /// The user code to hand out instead of a random one (hostile text, for display tests).
    user_code: Option<String>,
}

impl Default for DeviceStore {
    fn default() -> Self {
        DeviceStore {
            enabled: true,
            interval: json!("1"),
            codes: HashMap::new(),
            usercodes_issued: 0,
            polls: 0,
            poll_delay: std::time::Duration::ZERO,
            user_code: None,
        }
    }
}

impl Issuer {
    /// Switch the device-code endpoints on or off (off: the usercode request gets 404).
    pub fn set_device_code(&self, enabled: bool) {
        lock(&self.inner.device).enabled = enabled;
    }

    /// The `interval` the usercode answer carries, as JSON (the real issuer sends a string).
    pub fn set_device_interval(&self, interval: Value) {
        lock(&self.inner.device).interval = interval;
    }

    /// Hand out `code` as the user code (`None`: random ones, as the real issuer does).
    pub fn set_device_user_code(&self, code: Option<String>) {
        lock(&self.inner.device).user_code = code;
    }

    /// Answer every token poll only after `delay` (an issuer that stalls a poll).
    pub fn set_device_poll_delay(&self, delay: std::time::Duration) {
        lock(&self.inner.device).poll_delay = delay;
    }

    /// Approve, decline or expire the code the user was shown, as the person at the page would;
    /// false when no such code was issued.
    pub fn set_device_state(&self, user_code: &str, state: DeviceState) -> bool {
        let mut d = lock(&self.inner.device);
        match d.codes.values_mut().find(|c| c.user_code == user_code) {
            Some(c) => {
                c.state = state;
                true
            }
            None => false,
        }
    }

    /// (usercodes issued, token polls answered).
    pub fn device_counts(&self) -> (u32, u32) {
        let d = lock(&self.inner.device);
        (d.usercodes_issued, d.polls)
    }
}

fn json_body(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body).ok().filter(Value::is_object)
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": code}}))).into_response()
}

pub(crate) async fn usercode(State(issuer): State<Issuer>, body: Bytes) -> Response {
    let Some(req) = json_body(&body) else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let mut d = lock(&issuer.inner.device);
    if !d.enabled {
        return (StatusCode::NOT_FOUND, "Not found\n").into_response();
    }
    if req.get("client_id").and_then(Value::as_str) != Some(issuer.config().client_id.as_str()) {
        return error(StatusCode::BAD_REQUEST, "invalid_client");
    }
    let device_auth_id = format!("deviceauth_{}", nonce());
    let raw = nonce().to_uppercase().replace(['-', '_'], "X");
    let user_code = d.user_code.clone().unwrap_or_else(|| format!("{}-{}", &raw[..4], &raw[4..8]));
    d.codes.insert(device_auth_id.clone(), Code { user_code: user_code.clone(), state: DeviceState::Pending });
    d.usercodes_issued += 1;
    axum::Json(json!({"device_auth_id": device_auth_id, "user_code": user_code, "interval": d.interval}))
        .into_response()
}

pub(crate) async fn token(State(issuer): State<Issuer>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(req) = json_body(&body) else { return error(StatusCode::BAD_REQUEST, "invalid_request") };
    let get = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (id, user_code) = (get("device_auth_id"), get("user_code"));
    let delay = lock(&issuer.inner.device).poll_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let state = {
        let mut d = lock(&issuer.inner.device);
        d.polls += 1;
        match d.codes.get(&id) {
            Some(c) if c.user_code == user_code => c.state,
            _ => return error(StatusCode::NOT_FOUND, "deviceauth_not_found"),
        }
    };
    match state {
        DeviceState::Pending => error(StatusCode::FORBIDDEN, "deviceauth_authorization_pending"),
        DeviceState::Declined => error(StatusCode::UNAUTHORIZED, "authorization_declined"),
        DeviceState::Expired => error(StatusCode::GONE, "deviceauth_expired"),
        DeviceState::Approved => {
            lock(&issuer.inner.device).codes.remove(&id);
            // The redirect URI the code is bound to: this issuer's own callback path, under the
            // address the client reached it by.
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let verifier = format!("{}{}{}", nonce(), nonce(), nonce());
            let challenge = s256(&verifier);
            let code = format!("ac_{}", nonce());
            let grant = Grant {
                client_id: issuer.config().client_id,
                redirect_uri: format!("http://{host}/deviceauth/callback"),
                challenge: challenge.clone(),
            };
            let mut store = lock(&issuer.inner.store);
            store.stats.authorizations += 1;
            store.codes.insert(code.clone(), grant);
            axum::Json(json!({"authorization_code": code, "code_challenge": challenge, "code_verifier": verifier}))
                .into_response()
        }
    }
}

pub(crate) async fn page() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Enter code</title><form method=post>\
         <input name=user_code><button name=action value=approve>Continue</button>\
         <button name=action value=decline>Cancel</button></form>\n",
    )
}

pub(crate) async fn decide(State(issuer): State<Issuer>, Form(form): Form<HashMap<String, String>>) -> Response {
    let code = form.get("user_code").map(String::as_str).unwrap_or("").trim().to_uppercase();
    let state = match form.get("action").map(String::as_str) {
        Some("decline") => DeviceState::Declined,
        _ => DeviceState::Approved,
    };
    if issuer.set_device_state(&code, state) {
        (StatusCode::OK, "Done. You can return to your terminal.\n").into_response()
    } else {
        (StatusCode::NOT_FOUND, "No such code.\n").into_response()
    }
}
