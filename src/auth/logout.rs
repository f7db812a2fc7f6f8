//! Logging out (DESIGN.md §9): under the home's lock, revoke a ChatGPT login's refresh token at
//! the issuer (best effort, 10 s), then remove auth.json and any temp copy of it a crashed write
//! left in the home, and the `auth.json.recovered` a refresh that could not be saved left (a live
//! login too: its refresh token is revoked the same way). Idempotent: a home with nothing to
//! remove is not an error. Whether other copies of the login must go first is the caller's
//! decision (`family::logout` asks the ledger); this module knows no transport.

use crate::auth::file::AuthFileError;
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::oauth::OAuthClient;
use crate::auth::store::{KeyringError, Store};
use crate::home::HomeError;

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// What happened to the refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The issuer confirmed.
    Revoked,
    /// Not asked: an API key, no file, `--local`, or an unreadable file.
    NotAttempted,
    /// The issuer could not be reached or refused; the reason (no secrets).
    Failed(String),
}

/// What [`logout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOut {
    pub removed: bool,
    pub revocation: Revocation,
    /// `Some`: an `auth.json.recovered` was there and is removed; what became of its refresh
    /// token.
    pub recovered: Option<Revocation>,
}

/// Remove the login from `store` (auth.json, the keyring entry, or both), first revoking its
/// refresh token with `revoke_with` when it holds a ChatGPT login (`None`: delete only).
pub async fn logout(store: &Store, revoke_with: Option<&OAuthClient>) -> Result<LoggedOut, LogoutError> {
    let dir = store.dir();
    let _lock = AuthLock::acquire(dir, DEFAULT_WAIT)?;
    let revocation = revoke(store, revoke_with).await?;
    let removed = store.remove().map_err(|e| match e {
        AuthFileError::Home(h) => LogoutError::Home(h),
        AuthFileError::Keyring(k) => LogoutError::Keyring(k),
        AuthFileError::Corrupt { path, reason } => {
            LogoutError::Home(HomeError::io(&path, std::io::Error::other(reason)))
        }
    })?;
    // Temp copies a crashed write left behind hold the credential too.
    crate::home::clean_stale_temps(dir, crate::home::AUTH_FILE);
    // So does the file a refresh that could not be saved left (it is not a stale temp: it is
    // kept for the user to restore, until they log out).
    let recovery = dir.join(crate::auth::refresh::RECOVERY_FILE);
    let recovered = match std::fs::symlink_metadata(&recovery) {
        Ok(m) if m.file_type().is_file() => {
            let r = revoke(&Store::file(&recovery), revoke_with).await.unwrap_or(Revocation::NotAttempted);
            crate::home::remove_optional(&recovery)?;
            Some(r)
        }
        _ => None,
    };
    Ok(LoggedOut { removed, revocation, recovered })
}

/// Revoke the refresh token of the ChatGPT login in `store` with `client` (when given).
async fn revoke(store: &Store, client: Option<&OAuthClient>) -> Result<Revocation, LogoutError> {
    Ok(match (client, store.load()) {
        (Some(client), Ok(Some(file))) => match &file.tokens {
            Some(t) => match client.revoke(&t.refresh_token).await {
                Ok(()) => Revocation::Revoked,
                Err(e) => Revocation::Failed(e.to_string()),
            },
            None => Revocation::NotAttempted,
        },
        // A corrupt file is removed all the same: logging out must always be possible.
        (_, Err(AuthFileError::Corrupt { .. })) | (_, Ok(_)) | (None, _) => Revocation::NotAttempted,
        (_, Err(AuthFileError::Home(e))) => return Err(e.into()),
        (_, Err(AuthFileError::Keyring(e))) => return Err(e.into()),
    })
}
