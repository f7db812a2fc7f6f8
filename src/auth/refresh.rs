//! Refreshing a ChatGPT login (DESIGN.md §3): trade the stored refresh token for new tokens,
//! replace the ones the issuer returned, set `last_refresh`, keep every other key.
//!
//! auth.json is written only after the issuer answered with tokens; on any failure the file is
//! left byte for byte as it was. A permanent failure (the refresh token was expired, reused or
//! invalidated) means the user has to log in again; anything else may succeed later.

use crate::auth::claims::{IdClaims, expiry};
use crate::auth::file::{AuthFile, AuthFileError, now_rfc3339};
use crate::auth::oauth::{OAuthClient, RefreshError};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// llmx refreshes when the last refresh is older than this...
pub const REFRESH_AFTER: Duration = Duration::days(8);
/// ...or when the access token expires within this.
pub const EXPIRY_MARGIN: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum RefreshFailure {
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error("{} holds no ChatGPT login to refresh", path.display())]
    NoTokens { path: PathBuf },
    #[error(transparent)]
    Issuer(#[from] RefreshError),
}

impl RefreshFailure {
    /// True when only a new login can fix it.
    pub fn is_permanent(&self) -> bool {
        matches!(self, RefreshFailure::Issuer(RefreshError::Permanent { .. }))
    }
}

/// What a successful refresh left in auth.json, without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub email: Option<String>,
    pub last_refresh: String,
    /// Unix time of the new access token's `exp`, when it is a JWT.
    pub access_token_expires_at: Option<i64>,
    /// Whether the issuer rotated the refresh token.
    pub refresh_token_rotated: bool,
}

/// Whether llmx would refresh this login now: `last_refresh` older than 8 days (or missing), or
/// the access token expiring within 5 minutes.
pub fn needs_refresh(file: &AuthFile, now: OffsetDateTime) -> bool {
    let Some(tokens) = &file.tokens else { return false };
    let stale = file.last_refresh_time().is_none_or(|t| now - t > REFRESH_AFTER);
    let margin = EXPIRY_MARGIN.whole_seconds();
    let expiring = expiry(tokens.access_token.expose()).is_some_and(|exp| exp - now.unix_timestamp() < margin);
    stale || expiring
}

/// Refresh the login stored at `path` using `client`.
pub async fn refresh(path: &Path, client: &OAuthClient) -> Result<Refreshed, RefreshFailure> {
    let mut file = AuthFile::load(path)?.ok_or_else(|| RefreshFailure::NoTokens { path: path.to_path_buf() })?;
    let Some(tokens) = file.tokens.as_mut() else {
        return Err(RefreshFailure::NoTokens { path: path.to_path_buf() });
    };
    let new = client.refresh(&tokens.refresh_token).await?;
    let rotated = new.refresh_token.as_ref().is_some_and(|r| *r != tokens.refresh_token);
    if let Some(id) = new.id_token {
        if tokens.account_id.is_none() {
            tokens.account_id = IdClaims::parse(id.expose()).ok().and_then(|c| c.account_id);
        }
        tokens.id_token = id;
    }
    if let Some(a) = new.access_token {
        tokens.access_token = a;
    }
    if let Some(r) = new.refresh_token {
        tokens.refresh_token = r;
    }
    let email = IdClaims::parse(tokens.id_token.expose()).ok().and_then(|c| c.email);
    let access_token_expires_at = expiry(tokens.access_token.expose());
    let last_refresh = now_rfc3339();
    file.last_refresh = Some(last_refresh.clone());
    file.save(path)?;
    Ok(Refreshed { email, last_refresh, access_token_expires_at, refresh_token_rotated: rotated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::test_jwt;
    use crate::auth::file::Tokens;
    use crate::secret::Secret;
    use time::macros::datetime;

    fn file(last_refresh: Option<&str>, access_exp: Option<i64>) -> AuthFile {
        let access = match access_exp {
            Some(exp) => test_jwt(&serde_json::json!({ "exp": exp })),
            None => "opaque".into(),
        };
        AuthFile {
            openai_api_key: None,
            tokens: Some(Tokens {
                id_token: Secret::new(test_jwt(&serde_json::json!({}))),
                access_token: Secret::new(access),
                refresh_token: Secret::new("r"),
                account_id: None,
                extra: Default::default(),
            }),
            last_refresh: last_refresh.map(str::to_string),
            extra: Default::default(),
        }
    }

    #[test]
    fn refresh_rule() {
        let now = datetime!(2025-08-10 12:00 UTC);
        let t = now.unix_timestamp();
        assert!(!needs_refresh(&file(Some("2025-08-09T12:00:00Z"), Some(t + 3600)), now));
        assert!(needs_refresh(&file(Some("2025-08-01T11:00:00Z"), Some(t + 3600)), now), "9 days old");
        assert!(needs_refresh(&file(Some("2025-08-09T12:00:00Z"), Some(t + 60)), now), "expires in 1 min");
        assert!(needs_refresh(&file(None, None), now), "never refreshed");
        assert!(!needs_refresh(&file(Some("2025-08-09T12:00:00Z"), None), now), "opaque token, fresh");
        assert!(!needs_refresh(&AuthFile::with_api_key(Secret::new("k")), now), "API key: nothing to refresh");
    }
}
