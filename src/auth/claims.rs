//! Claims read from JWTs for display: email, plan and account from the id_token, expiry from the
//! access token. The signature is not checked; nothing here is used for a security decision.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The claim namespace OpenAI uses for ChatGPT details.
pub const AUTH_CLAIMS: &str = "https://api.openai.com/auth";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimsError {
    #[error("not a JWT (expected three dot-separated parts)")]
    Shape,
    #[error("JWT payload is not base64url")]
    Base64,
    #[error("JWT payload is not a JSON object")]
    Json,
}

/// What `status` shows of an id_token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdClaims {
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    pub expires_at: Option<i64>,
}

impl IdClaims {
    pub fn parse(jwt: &str) -> Result<IdClaims, ClaimsError> {
        let payload = payload(jwt)?;
        let auth = payload.get(AUTH_CLAIMS);
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        Ok(IdClaims {
            email: s(payload.get("email")),
            plan: s(auth.and_then(|a| a.get("chatgpt_plan_type"))),
            account_id: s(auth.and_then(|a| a.get("chatgpt_account_id"))),
            expires_at: payload.get("exp").and_then(Value::as_i64),
        })
    }
}

/// The `exp` claim of a token, if it is a JWT that has one (access tokens usually are).
pub fn expiry(token: &str) -> Option<i64> {
    payload(token).ok()?.get("exp").and_then(Value::as_i64)
}

fn payload(jwt: &str) -> Result<serde_json::Map<String, Value>, ClaimsError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 || parts[1].is_empty() {
        return Err(ClaimsError::Shape);
    }
    let raw = URL_SAFE_NO_PAD.decode(parts[1].trim_end_matches('=')).map_err(|_| ClaimsError::Base64)?;
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ClaimsError::Json),
    }
}

/// An unsigned JWT with `claims` as payload, for unit tests (integration tests and the test issuer
/// have their own: `llmx_test_issuer::jwt`).
#[cfg(test)]
pub(crate) fn test_jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.sig")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_openai_claims() {
        let jwt = test_jwt(
            &json!({"email": "u@x.io", "exp": 5, AUTH_CLAIMS: {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc-1"}}),
        );
        let c = IdClaims::parse(&jwt).unwrap();
        assert_eq!(c.email.as_deref(), Some("u@x.io"));
        assert_eq!(c.plan.as_deref(), Some("pro"));
        assert_eq!(c.account_id.as_deref(), Some("acc-1"));
        assert_eq!(expiry(&jwt), Some(5));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for g in
            ["", ".", "..", "a.b", "a.b.c.d", "a.!!!.c", "a.bm90anNvbg.c", "a.W10.c", "\u{1F600}.\u{1F600}.x", "a.=.b"]
        {
            assert!(IdClaims::parse(g).is_err(), "{g}");
        }
    }
}
