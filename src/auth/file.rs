//! The `auth.json` model, byte-compatible with llmx/Codex (DESIGN.md §1).
//!
//! Reading and writing go through [`crate::auth::store::Store`] (auth.json or the keyring).
//! Reading validates the shape and the id_token, so a corrupt file is an error naming the file,
//! never "logged out". Keys this tool does not know are kept and written back.

use crate::auth::claims::{ClaimsError, IdClaims};
use crate::home::HomeError;
use crate::secret::Secret;
use crate::text::json_error_summary;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("{}: not a valid auth.json: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The keyring the configured store names failed or did not answer in time.
    #[error(transparent)]
    Keyring(#[from] crate::auth::store::keyring::KeyringError),
}

/// The OAuth tokens of a ChatGPT login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub id_token: Secret,
    pub access_token: Secret,
    pub refresh_token: Secret,
    /// Always written, `null` when unknown.
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The whole file. Field order matches what llmx writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthFile {
    /// Always written, `null` when absent.
    #[serde(rename = "OPENAI_API_KEY", default)]
    pub openai_api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// RFC 3339; kept as text so a file round-trips byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl AuthFile {
    /// What an API-key login writes: `{"OPENAI_API_KEY": "<key>"}`.
    pub fn with_api_key(key: Secret) -> AuthFile {
        AuthFile { openai_api_key: Some(key), tokens: None, last_refresh: None, extra: Default::default() }
    }

    /// Parse and validate bytes that claim to be an auth.json. `origin` names them in errors.
    pub fn parse(origin: &Path, bytes: &[u8]) -> Result<AuthFile, AuthFileError> {
        let corrupt = |reason: String| AuthFileError::Corrupt { path: origin.to_path_buf(), reason };
        // Errors never quote the file: serde_json's messages can contain a value (a key, a token
        // in the wrong place), so only the kind of error and where it is are kept.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| corrupt(json_error_summary(&e)))?;
        if !value.is_object() {
            return Err(corrupt("expected a JSON object".into()));
        }
        let file: AuthFile = serde_json::from_value(value).map_err(|e| corrupt(shape_error(bytes, &e)))?;
        if let Some(t) = &file.tokens {
            IdClaims::parse(t.id_token.expose()).map_err(|e: ClaimsError| corrupt(format!("tokens.id_token: {e}")))?;
        }
        if let Some(lr) = &file.last_refresh {
            OffsetDateTime::parse(lr, &Rfc3339).map_err(|_| corrupt("last_refresh is not an RFC 3339 time".into()))?;
        }
        Ok(file)
    }

    /// The exact bytes llmx would write: pretty JSON with 2-space indent.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, options and JSON maps into a Vec cannot fail.
        serde_json::to_vec_pretty(self).expect("auth.json serialises")
    }

    /// `last_refresh` parsed, when present and valid.
    pub fn last_refresh_time(&self) -> Option<OffsetDateTime> {
        self.last_refresh.as_deref().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    }

    /// The ChatGPT account this login is for: `tokens.account_id`, else the id_token's claim.
    pub fn account_id(&self) -> Option<String> {
        let t = self.tokens.as_ref()?;
        t.account_id.clone().or_else(|| IdClaims::parse(t.id_token.expose()).ok()?.account_id)
    }

    /// The email claim of the id_token.
    pub fn email(&self) -> Option<String> {
        IdClaims::parse(self.tokens.as_ref()?.id_token.expose()).ok()?.email
    }

    /// Who a ChatGPT login is, without a secret: its account id and email (`None` for a file
    /// without ChatGPT tokens). Two logins with the same identity are the same account's: what
    /// matches a live auth.json to its account (DESIGN.md §11).
    pub fn chatgpt_identity(&self) -> Option<(Option<String>, Option<String>)> {
        self.tokens.as_ref().map(|_| (self.account_id(), self.email()))
    }

    /// The non-empty API key stored in the file.
    pub fn api_key(&self) -> Option<&Secret> {
        self.openai_api_key.as_ref().filter(|k| !k.is_empty())
    }

    /// The `auth_mode` the file declares (current Codex CLIs write it; DESIGN.md §1): which of
    /// its credentials the file is for. `None` when absent or not one of the two known modes.
    pub fn auth_mode(&self) -> Option<AuthMode> {
        match self.extra.get(AUTH_MODE_KEY).and_then(serde_json::Value::as_str) {
            Some("apikey") => Some(AuthMode::ApiKey),
            Some("chatgpt") => Some(AuthMode::ChatGpt),
            _ => None,
        }
    }

    /// Declare which credential the file is for; every login writes it.
    pub fn set_auth_mode(&mut self, mode: AuthMode) {
        let text = match mode {
            AuthMode::ApiKey => "apikey",
            AuthMode::ChatGpt => "chatgpt",
        };
        self.extra.insert(AUTH_MODE_KEY.into(), text.into());
    }
}

const AUTH_MODE_KEY: &str = "auth_mode";

/// The two values of `auth_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    ApiKey,
    ChatGpt,
}

/// Which key has the wrong shape, without its value. `from_value` has no position, so the typed
/// parse is redone on the bytes for one (same input, same error, now with line and column).
fn shape_error(bytes: &[u8], e: &serde_json::Error) -> String {
    match serde_json::from_slice::<AuthFile>(bytes) {
        Err(positioned) => json_error_summary(&positioned),
        Ok(_) => json_error_summary(e),
    }
}

/// Now as RFC 3339 UTC with microseconds (`2025-08-06T20:41:36.232376Z`), the form llmx writes
/// to `last_refresh`.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let micros = now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now);
    micros.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::test_jwt;

    fn sample() -> String {
        let id = test_jwt(&serde_json::json!({"email": "a@b.c"}));
        format!(
            "{{\n  \"OPENAI_API_KEY\": null,\n  \"tokens\": {{\n    \"id_token\": \"{id}\",\n    \"access_token\": \"at\",\n    \"refresh_token\": \"rt\",\n    \"account_id\": \"acc\"\n  }},\n  \"last_refresh\": \"2025-08-06T20:41:36.232376Z\",\n  \"future_key\": {{\n    \"x\": 1\n  }}\n}}"
        )
    }

    #[test]
    fn round_trips_llmx_format_byte_for_byte() {
        let text = sample();
        let f = AuthFile::parse(Path::new("auth.json"), text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(f.to_bytes()).unwrap(), text);
    }

    #[test]
    fn last_refresh_is_written_with_microseconds() {
        let t = now_rfc3339();
        let frac = t.split('.').nth(1).unwrap_or("Z");
        assert!(frac.len() <= 7 && frac.ends_with('Z'), "{t}");
        assert!(OffsetDateTime::parse(&t, &Rfc3339).is_ok());
    }

    #[test]
    fn api_key_login_shape() {
        let f = AuthFile::with_api_key(Secret::new("sk-1"));
        assert_eq!(String::from_utf8(f.to_bytes()).unwrap(), "{\n  \"OPENAI_API_KEY\": \"sk-1\"\n}");
    }

    #[test]
    fn account_id_always_written() {
        let id = test_jwt(&serde_json::json!({}));
        let text = format!(r#"{{"tokens":{{"id_token":"{id}","access_token":"a","refresh_token":"r"}}}}"#);
        let f = AuthFile::parse(Path::new("auth.json"), text.as_bytes()).unwrap();
        let out = String::from_utf8(f.to_bytes()).unwrap();
        assert!(out.contains("\"account_id\": null"), "{out}");
        assert!(out.contains("\"OPENAI_API_KEY\": null"), "{out}");
    }

    #[test]
    fn corrupt_inputs_are_errors_naming_the_file() {
        for bad in [
            "",
            "[]",
            "{",
            "{\"tokens\": 5}",
            "{\"OPENAI_API_KEY\": 3}",
            "{\"last_refresh\": \"yesterday\"}",
            "{\"tokens\":{\"id_token\":\"x\",\"access_token\":\"a\",\"refresh_token\":\"r\"}}",
        ] {
            let e = AuthFile::parse(Path::new("/h/auth.json"), bad.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("/h/auth.json: "), "{bad}: {e}");
        }
    }

    /// Values in the wrong place, in every shape serde could quote: none may appear in the error.
    #[test]
    fn shape_errors_never_echo_values_from_the_file() {
        const V: &str = "sk-LEAKED-secret-value-123";
        let id = test_jwt(&serde_json::json!({}));
        for bad in [
            format!(r#"{{"tokens": "{V}"}}"#),
            format!(r#"{{"tokens": ["{V}"]}}"#),
            format!(r#"{{"OPENAI_API_KEY": ["{V}"]}}"#),
            format!(r#"{{"OPENAI_API_KEY": {{"{V}": 1}}}}"#),
            format!(r#"{{"last_refresh": "{V}"}}"#),
            format!(r#"{{"last_refresh": ["{V}"]}}"#),
            format!(r#"{{"tokens": {{"id_token": "{id}", "access_token": ["{V}"], "refresh_token": "r"}}}}"#),
            format!(r#"{{"tokens": {{"id_token": "{V}", "access_token": "a", "refresh_token": "r"}}}}"#),
            format!(
                r#"{{"tokens": {{"id_token": "{id}", "access_token": "a", "refresh_token": "r", "account_id": ["{V}"]}}}}"#
            ),
            format!(r#"{{"tokens": {{"id_token": "{id}", "access_token": "a"}}, "x": "{V}"}}"#),
            format!(r#"{{"OPENAI_API_KEY": "{V}" "#),
            format!(r#"{{"OPENAI_API_KEY": "{V}", }}"#),
            format!("{{\"{V}\" 1}}"),
            format!(r#"["{V}"]"#),
            format!(r#""{V}""#),
        ] {
            let e = AuthFile::parse(Path::new("/h/auth.json"), bad.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("/h/auth.json: not a valid auth.json: "), "{bad}: {e}");
            assert!(!e.contains("LEAKED"), "the error quotes the file: {e}");
        }
    }
}
