//! The client side of the issuer's OAuth endpoints (DESIGN.md §3): the authorize URL, the code
//! exchange (form-encoded), the best-effort API-key token exchange, the refresh (JSON body), and
//! the device-code endpoints (§8).
//!
//! Every request goes to the issuer's own endpoints only: redirects are never followed (a 307/308
//! would re-send the code and verifier, or the refresh token, to wherever it points; a 3xx is an
//! error naming the status), and an answer's body is read up to [`MAX_BODY_BYTES`], no further.
//!
//! Refresh failures are classified from the structured JSON error body — `error.code`, else
//! `error` when it is a string, else a top-level `code` — never by matching error text.

use crate::auth::pkce::Pkce;
use crate::secret::Secret;
use serde::Deserialize;
use std::time::{Duration, Instant};
use url::Url;

/// The scopes a browser login asks for.
pub const LOGIN_SCOPE: &str = "openid profile email offline_access";
/// The scopes a refresh asks for.
pub const REFRESH_SCOPE: &str = "openid profile email";
/// Refresh-error codes that mean "this login is over: sign in again".
pub const PERMANENT_REFRESH_CODES: [&str; 3] =
    ["refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated"];

/// The largest issuer answer read (token answers are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A failure talking to the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid issuer URL {issuer:?}: {reason}")]
    Issuer { issuer: String, reason: String },
    #[error("cannot reach the issuer at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the issuer answered {status}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status { status: u16, code: Option<String> },
    #[error("the issuer's answer is not the expected JSON: {0}")]
    Body(String),
    #[error(
        "the issuer answered {status} (a redirect to {location}); llmx does not follow redirects of the token endpoint"
    )]
    Redirect { status: u16, location: String },
    #[error("the issuer's answer is larger than {} KiB; not read", MAX_BODY_BYTES / 1024)]
    TooLarge,
}

/// Why a refresh failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The issuer rejected the refresh token for good (expired, reused, invalidated).
    #[error("the issuer rejected the refresh token ({code}); this login is no longer valid")]
    Permanent { code: String },
    /// Anything else: network, 5xx, an unexpected answer. The stored tokens may still work.
    #[error("{0}")]
    Transient(OAuthError),
}

/// Tokens returned by the code exchange; all three are required.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSet {
    pub id_token: Secret,
    pub access_token: Secret,
    pub refresh_token: Secret,
}

/// Tokens returned by a refresh; each one is optional and replaces the stored one when present.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RefreshedTokens {
    pub id_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct ExchangedKey {
    access_token: Secret,
}

/// A client for one issuer and client id. Cheap to clone (reqwest's client is an `Arc`).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    issuer: Url,
    client_id: String,
    /// Time spent waiting for the issuer, summed over calls (for the login benchmark).
    timing: std::sync::Arc<std::sync::Mutex<Duration>>,
}

impl OAuthClient {
    pub fn new(issuer: &str, client_id: &str) -> Result<OAuthClient, OAuthError> {
        let bad = |reason: String| OAuthError::Issuer { issuer: issuer.to_string(), reason };
        let url = issuer_base(issuer)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("llmx/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(OAuthClient { http, issuer: url, client_id: client_id.to_string(), timing: Default::default() })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn endpoint(&self, path: &str) -> Url {
        // `path` is one of our constant relative paths; joining it to an http(s) base cannot fail.
        self.issuer.join(path).unwrap_or_else(|_| self.issuer.clone())
    }

    /// The URL the user opens to sign in.
    pub fn authorize_url(&self, redirect_uri: &str, pkce: &Pkce, state: &str) -> String {
        let mut url = self.endpoint("oauth/authorize");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", LOGIN_SCOPE)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("id_token_add_organizations", "true")
            .append_pair("llmx_cli_simplified_flow", "true")
            .append_pair("state", state)
            .append_pair("originator", "llmx_cli_rs");
        url.into()
    }

    /// Exchange an authorization code for tokens (form-encoded POST).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &Secret,
    ) -> Result<TokenSet, OAuthError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", verifier.expose()),
        ];
        let (status, body) = self.post(self.http.post(self.endpoint("oauth/token")).form(&form)).await?;
        parse_success(status, &body)
    }

    /// Trade an id_token for an API key. Callers treat a failure as "no API key".
    pub async fn exchange_api_key(&self, id_token: &Secret) -> Result<Secret, OAuthError> {
        let form = [
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_id", &self.client_id),
            ("requested_token", "openai-api-key"),
            ("subject_token", id_token.expose()),
            ("subject_token_type", ID_TOKEN_TYPE),
        ];
        let (status, body) = self.post(self.http.post(self.endpoint("oauth/token")).form(&form)).await?;
        parse_success::<ExchangedKey>(status, &body).map(|k| k.access_token)
    }

    /// Refresh (JSON body). A 401 with a permanent code is [`RefreshError::Permanent`].
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<RefreshedTokens, RefreshError> {
        let body = serde_json::json!({
            "client_id": self.client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose(),
            "scope": REFRESH_SCOPE,
        });
        let req = self.http.post(self.endpoint("oauth/token")).json(&body);
        let (status, body) = self.post(req).await.map_err(RefreshError::Transient)?;
        if status == 401
            && let Some(code) = error_code(&body)
            && PERMANENT_REFRESH_CODES.contains(&code.as_str())
        {
            return Err(RefreshError::Permanent { code });
        }
        parse_success(status, &body).map_err(RefreshError::Transient)
    }

    /// Revoke a refresh token (DESIGN.md §9): POST `{issuer}/oauth/revoke`, JSON
    /// `{"token","token_type_hint":"refresh_token","client_id"}`, within 10 seconds. Callers treat
    /// it as best effort.
    pub async fn revoke(&self, refresh_token: &Secret) -> Result<(), OAuthError> {
        let body = serde_json::json!({
            "token": refresh_token.expose(),
            "token_type_hint": "refresh_token",
            "client_id": self.client_id,
        });
        let url = self.endpoint("oauth/revoke");
        let req = self.http.post(url.clone()).timeout(Duration::from_secs(10)).json(&body);
        let resp =
            req.send().await.map_err(|e| OAuthError::Unreachable { url: url.to_string(), reason: error_chain(&e) })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(OAuthError::Status { status, code: error_code(&body) });
        }
        Ok(())
    }

    /// Total time spent waiting on the issuer by this client (and its clones) so far.
    pub fn issuer_time(&self) -> Duration {
        self.timing.lock().map(|d| *d).unwrap_or_default()
    }

    async fn post(&self, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), OAuthError> {
        let started = Instant::now();
        // The endpoint that was asked, without any query (which never holds a secret here anyway).
        let unreachable = |e: reqwest::Error| OAuthError::Unreachable {
            url: e.url().map_or_else(|| self.issuer.to_string(), |u| u[..url::Position::AfterPath].to_string()),
            reason: error_chain(&e.without_url()),
        };
        let result = async {
            let mut resp = req.send().await.map_err(unreachable)?;
            let status = resp.status().as_u16();
            if resp.status().is_redirection() {
                let location = resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok());
                let location = crate::text::printable(location.unwrap_or("nowhere"));
                return Err(OAuthError::Redirect { status, location });
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(OAuthError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        }
        .await;
        if let Ok(mut t) = self.timing.lock() {
            *t += started.elapsed();
        }
        result
    }
}

/// The issuer as a base URL that relative endpoint paths join under (a trailing `/` added).
fn issuer_base(issuer: &str) -> Result<Url, OAuthError> {
    let bad = |reason: String| OAuthError::Issuer { issuer: issuer.to_string(), reason };
    let mut url = Url::parse(issuer).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad("expected an http(s) URL".into()));
    }
    // Join relative paths under the issuer's path, whether or not it ends with '/'.
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// Whether `url` is an authorize URL of `issuer`: the same origin (scheme, host, port) and the
/// path `{issuer}/oauth/authorize`, with no user info. Returns the URL as `url` serialises it
/// (controls percent-encoded), which is the form to show and open.
pub fn check_authorize_url(url: &str, issuer: &str) -> Option<String> {
    check_issuer_url(url, issuer, "oauth/authorize")
}

/// Whether `url` is the device-code verification page of `issuer` (`{issuer}/codex/device`), by
/// the same rule as [`check_authorize_url`]; returns the URL as `url` serialises it.
pub fn check_device_url(url: &str, issuer: &str) -> Option<String> {
    check_issuer_url(url, issuer, "codex/device")
}

fn check_issuer_url(url: &str, issuer: &str, endpoint: &str) -> Option<String> {
    let want = issuer_base(issuer).ok()?.join(endpoint).ok()?;
    let got = Url::parse(url).ok()?;
    let same = got.origin() == want.origin()
        && got.scheme() == want.scheme()
        && got.path() == want.path()
        && got.username().is_empty()
        && got.password().is_none();
    same.then(|| got.to_string())
}

/// A 2xx body parsed as `T`; any other status is an [`OAuthError::Status`] with its error code.
fn parse_success<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, OAuthError> {
    if !(200..300).contains(&status) {
        return Err(OAuthError::Status { status, code: error_code(body) });
    }
    // serde_json's message can quote a value ("invalid type: string \"...\""): keep only what
    // kind of error it is and where, never the issuer's text.
    serde_json::from_slice(body).map_err(|e| OAuthError::Body(crate::text::json_error_summary(&e)))
}

/// The OAuth error code of an error body: `error.code`, else `error` when a string, else `code`.
pub fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_str).map(str::to_string);
    match v.get("error") {
        Some(serde_json::Value::Object(e)) => text(e.get("code")),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .or_else(|| text(v.get("code")))
}

/// The device-code endpoints (DESIGN.md §8): OpenAI's own, not RFC 8628. Both take JSON.
impl OAuthClient {
    /// `POST {issuer}/api/accounts/deviceauth/usercode`; `Ok(None)` when the issuer answers 404
    /// (device code is switched off for this issuer or workspace).
    pub async fn device_usercode(&self) -> Result<Option<DeviceCode>, OAuthError> {
        let body = serde_json::json!({ "client_id": self.client_id });
        let url = self.endpoint("api/accounts/deviceauth/usercode");
        let (status, body) = self.post(self.http.post(url).json(&body)).await?;
        if status == 404 {
            return Ok(None);
        }
        parse_success(status, &body).map(Some)
    }

    /// One poll of `POST {issuer}/api/accounts/deviceauth/token`.
    pub async fn device_poll(&self, code: &DeviceCode) -> Result<DevicePoll, OAuthError> {
        let body = serde_json::json!({ "device_auth_id": code.device_auth_id, "user_code": code.user_code });
        let url = self.endpoint("api/accounts/deviceauth/token");
        let (status, body) = self.post(self.http.post(url).json(&body)).await?;
        match status {
            403 | 404 => Ok(DevicePoll::Pending),
            _ => parse_success(status, &body).map(DevicePoll::Approved),
        }
    }

    /// Where the user enters the code: `{issuer}/codex/device`.
    pub fn device_verification_url(&self) -> String {
        self.endpoint("codex/device").to_string()
    }

    /// The redirect URI the device flow's code is exchanged with: `{issuer}/deviceauth/callback`.
    pub fn device_redirect_uri(&self) -> String {
        self.endpoint("deviceauth/callback").to_string()
    }
}

/// The issuer's answer to a usercode request. `interval` is a string of seconds on the wire;
/// a number is accepted too.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCode {
    pub device_auth_id: String,
    #[serde(alias = "usercode")]
    pub user_code: String,
    #[serde(default, deserialize_with = "seconds")]
    pub interval: Option<u64>,
}

/// One poll's answer.
#[derive(Debug)]
pub enum DevicePoll {
    /// The user has not finished yet (403 or 404).
    Pending,
    /// Approved: an authorization code to exchange with this PKCE verifier.
    Approved(DeviceGrant),
}

/// What an approved device code hands back: a normal authorization code and its PKCE pair.
#[derive(Debug, Deserialize)]
pub struct DeviceGrant {
    pub authorization_code: Secret,
    pub code_verifier: Secret,
    #[serde(default)]
    pub code_challenge: Option<String>,
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Number(u64),
    }
    Ok(match Option::<Wire>::deserialize(d)? {
        Some(Wire::Number(n)) => Some(n),
        Some(Wire::Text(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// "error: cause: cause" for a reqwest error, whose top-level message alone is often vague.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_reads_three_shapes() {
        assert_eq!(
            error_code(br#"{"error":{"code":"refresh_token_reused","message":"x"}}"#).as_deref(),
            Some("refresh_token_reused")
        );
        assert_eq!(error_code(br#"{"error":"refresh_token_expired"}"#).as_deref(), Some("refresh_token_expired"));
        assert_eq!(
            error_code(br#"{"code":"refresh_token_invalidated"}"#).as_deref(),
            Some("refresh_token_invalidated")
        );
        assert_eq!(error_code(br#"{"error":{"message":"refresh_token_reused"},"code":"c"}"#).as_deref(), Some("c"));
        // Text that merely mentions a code is not a code.
        assert_eq!(error_code(br#"{"error":{"message":"refresh_token_reused"}}"#), None);
        for junk in [&b""[..], b"[]", b"null", b"{", b"\xff\xfe", br#"{"error":5}"#, br#"{"error":{"code":7}}"#] {
            assert_eq!(error_code(junk), None);
        }
    }

    #[test]
    fn authorize_url_has_every_parameter() {
        let c = OAuthClient::new("http://127.0.0.1:9/base", "cid").unwrap();
        let pkce = Pkce { verifier: Secret::new("v"), challenge: "ch".into() };
        let url = Url::parse(&c.authorize_url("http://localhost:1455/auth/callback", &pkce, "st")).unwrap();
        assert_eq!(url.path(), "/base/oauth/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let want = [
            ("response_type", "code"),
            ("client_id", "cid"),
            ("redirect_uri", "http://localhost:1455/auth/callback"),
            ("scope", "openid profile email offline_access"),
            ("code_challenge", "ch"),
            ("code_challenge_method", "S256"),
            ("id_token_add_organizations", "true"),
            ("llmx_cli_simplified_flow", "true"),
            ("state", "st"),
            ("originator", "llmx_cli_rs"),
        ];
        assert_eq!(q.len(), want.len());
        for (k, v) in want {
            assert_eq!(q.get(k).map(String::as_str), Some(v), "{k}");
        }
    }

    /// What a tunnel peer could send as "the" sign-in URL: only the configured issuer's
    /// `{issuer}/oauth/authorize` passes, and it comes back serialised (controls encoded).
    #[test]
    fn only_the_configured_issuers_authorize_endpoint_is_accepted() {
        let issuer = "https://auth.example.com/base";
        let ok = "https://auth.example.com/base/oauth/authorize?state=s&client_id=c";
        assert_eq!(check_authorize_url(ok, issuer).as_deref(), Some(ok));
        assert!(
            check_authorize_url("https://auth.example.com/base/oauth/authorize", "https://auth.example.com/base/")
                .is_some()
        );
        let fixed =
            check_authorize_url("https://auth.example.com/base/oauth/authorize?x=\u{1b}[2J\nURL: y", issuer).unwrap();
        assert!(!crate::text::has_terminal_controls(&fixed) && !fixed.contains('\n'), "{fixed}");
        for bad in [
            "https://evil.example/base/oauth/authorize",
            "https://auth.example.com.evil.example/base/oauth/authorize",
            "http://auth.example.com/base/oauth/authorize",
            "https://auth.example.com:8443/base/oauth/authorize",
            "https://auth.example.com/base/oauth/authorize/../../evil",
            "https://auth.example.com/oauth/authorize",
            "https://auth.example.com/base/oauth/authorizeX",
            "https://user:pw@auth.example.com/base/oauth/authorize",
            "https://auth.example.com@evil.example/base/oauth/authorize",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "\u{1b}]52;c;ZXZpbA==\u{7}",
            "",
        ] {
            assert!(check_authorize_url(bad, issuer).is_none(), "{bad}");
        }
    }

    #[test]
    fn device_code_interval_is_a_string_or_a_number() {
        let parse = |b: &[u8]| parse_success::<DeviceCode>(200, b);
        assert_eq!(parse(br#"{"device_auth_id":"d","user_code":"AB-CD","interval":"7"}"#).unwrap().interval, Some(7));
        assert_eq!(parse(br#"{"device_auth_id":"d","usercode":"AB-CD","interval":3}"#).unwrap().interval, Some(3));
        let c = parse(br#"{"device_auth_id":"d","user_code":"X"}"#).unwrap();
        assert_eq!((c.user_code.as_str(), c.interval), ("X", None));
        assert_eq!(parse(br#"{"device_auth_id":"d","user_code":"X","interval":"soon"}"#).unwrap().interval, None);
        assert!(parse(br#"{"user_code":"X"}"#).is_err());
        let c = OAuthClient::new("http://127.0.0.1:9/base", "cid").unwrap();
        assert_eq!(c.device_verification_url(), "http://127.0.0.1:9/base/codex/device");
        assert_eq!(c.device_redirect_uri(), "http://127.0.0.1:9/base/deviceauth/callback");
    }

    #[test]
    fn bad_issuers_are_errors() {
        for bad in ["", "nota url", "ftp://x", "mailto:a@b"] {
            assert!(OAuthClient::new(bad, "c").is_err(), "{bad}");
        }
    }

    #[test]
    fn token_bodies_parse_or_error() {
        let ok = br#"{"id_token":"i","access_token":"a","refresh_token":"r","extra":1}"#;
        assert!(parse_success::<TokenSet>(200, ok).is_ok());
        assert!(matches!(parse_success::<TokenSet>(200, b"{}"), Err(OAuthError::Body(_))));
        assert!(matches!(parse_success::<TokenSet>(200, b"<html>"), Err(OAuthError::Body(_))));
        let r: RefreshedTokens = parse_success(200, br#"{"access_token":"a"}"#).unwrap();
        assert!(r.id_token.is_none() && r.refresh_token.is_none());
        let e = parse_success::<TokenSet>(400, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert_eq!(e.to_string(), "the issuer answered 400 (invalid_grant)");
    }
}
