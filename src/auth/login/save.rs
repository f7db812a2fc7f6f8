//! The one path that saves a login: whatever a method obtained becomes auth.json (replacing the
//! whole file, as llmx does) and the [`LoginSucceeded`] report, without secrets. Every login
//! writes `auth_mode`, so the file means the same to the llmx fork and to current Codex CLIs.

use super::{LoginError, LoginSucceeded, Obtained, millis};
use crate::auth::claims::IdClaims;
use crate::auth::file::{AuthFile, AuthFileError, AuthMode, Tokens, now_rfc3339};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::home::HomeError;
use std::path::Path;

/// Write `obtained` to `path` atomically (0600), under the home's lock (a concurrent refresh
/// must not write the old login back over the new one), and say what was saved.
pub fn save(path: &Path, obtained: Obtained) -> Result<LoginSucceeded, LoginError> {
    let auth_file = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    let _lock = AuthLock::acquire(dir, DEFAULT_WAIT).map_err(|e| match e {
        LockError::Home(h) => LoginError::Save(h.into()),
        other => LoginError::Save(AuthFileError::Home(HomeError::io(path, std::io::Error::other(other.to_string())))),
    })?;
    match obtained {
        Obtained::ApiKey(key) => {
            let mut file = AuthFile::with_api_key(key.clone());
            file.set_auth_mode(AuthMode::ApiKey);
            file.save(path).map_err(LoginError::Save)?;
            Ok(LoginSucceeded {
                method: "apikey".into(),
                auth_file,
                email: None,
                plan: None,
                account_id: None,
                api_key: Some(key.mask()),
                api_key_saved: true,
                callback_to_saved_ms: None,
                issuer_ms: None,
            })
        }
        Obtained::ChatGpt { tokens, api_key, timing } => {
            let claims = IdClaims::parse(tokens.id_token.expose()).unwrap_or_default();
            let masked = api_key.as_ref().map(|k| k.mask());
            let mut file = AuthFile {
                openai_api_key: api_key,
                tokens: Some(Tokens {
                    id_token: tokens.id_token,
                    access_token: tokens.access_token,
                    refresh_token: tokens.refresh_token,
                    account_id: claims.account_id.clone(),
                    extra: Default::default(),
                }),
                last_refresh: Some(now_rfc3339()),
                extra: Default::default(),
            };
            file.set_auth_mode(AuthMode::ChatGpt);
            file.save(path).map_err(LoginError::Save)?;
            Ok(LoginSucceeded {
                method: "chatgpt".into(),
                auth_file,
                email: claims.email,
                plan: claims.plan,
                account_id: claims.account_id,
                api_key_saved: masked.is_some(),
                api_key: masked,
                callback_to_saved_ms: timing.map(|t| millis(t.started.elapsed())),
                issuer_ms: timing.map(|t| millis(t.issuer_time)),
            })
        }
    }
}
