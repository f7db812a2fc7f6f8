//! The one path that saves a login: whatever a method obtained becomes auth.json (replacing the
//! whole file, as llmx does) and the [`LoginSucceeded`] report, without secrets. Every login
//! writes `auth_mode`, so the file means the same to the llmx fork and to current Codex CLIs.

use super::{LoginError, LoginSucceeded, Obtained, millis};
use crate::auth::claims::IdClaims;
use crate::auth::file::{AuthFile, AuthFileError, AuthMode, Tokens, now_rfc3339};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::store::Store;
use crate::home::HomeError;

/// Write `obtained` to `store` (auth.json atomically 0600, or the keyring entry), under the home's lock (a concurrent refresh
/// must not write the old login back over the new one), and say what was saved. Tokens that
/// cannot work (see [`check_tokens`]) are refused before anything is touched.
pub fn save(store: &Store, obtained: Obtained) -> Result<LoginSucceeded, LoginError> {
    if let Obtained::ChatGpt { tokens, .. } = &obtained {
        check_tokens(tokens.id_token.expose(), tokens.access_token.expose(), tokens.refresh_token.expose())
            .map_err(|reason| LoginError::InvalidAnswer { reason })?;
    }
    let path = store.path();
    let dir = store.dir();
    let _lock = AuthLock::acquire(dir, DEFAULT_WAIT).map_err(|e| match e {
        LockError::Home(h) => LoginError::Save(h.into()),
        other => LoginError::Save(AuthFileError::Home(HomeError::io(path, std::io::Error::other(other.to_string())))),
    })?;
    match obtained {
        Obtained::ApiKey(key) => {
            let mut file = AuthFile::with_api_key(key.clone());
            file.set_auth_mode(AuthMode::ApiKey);
            let place = store.save(&file).map_err(LoginError::Save)?;
            Ok(LoginSucceeded {
                method: "apikey".into(),
                auth_file: store.name_of(place),
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
            let place = store.save(&file).map_err(LoginError::Save)?;
            Ok(LoginSucceeded {
                method: "chatgpt".into(),
                auth_file: store.name_of(place),
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

/// What a login must have got from the issuer before it replaces anything: a non-empty access
/// token and refresh token, and an id_token that is a JWT (its claims say whose login it is).
/// The reason never quotes a token.
pub fn check_tokens(id_token: &str, access_token: &str, refresh_token: &str) -> Result<(), String> {
    if id_token.is_empty() {
        return Err("its id_token is empty".into());
    }
    if access_token.trim().is_empty() {
        return Err("its access token is empty".into());
    }
    if refresh_token.trim().is_empty() {
        return Err("its refresh token is empty".into());
    }
    IdClaims::parse(id_token).map_err(|e| format!("its id_token is {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::test_jwt;

    #[test]
    fn empty_or_non_jwt_tokens_are_refused_before_saving() {
        let id = test_jwt(&serde_json::json!({"email": "a@b"}));
        assert!(check_tokens(&id, "at", "rt").is_ok());
        for (i, a, r) in [
            ("", "at", "rt"),
            (&*id, "", "rt"),
            (&*id, "at", ""),
            (&*id, " ", "rt"),
            ("not-a-jwt", "at", "rt"),
            ("a.b.c", "at", "rt"),
        ] {
            let e = check_tokens(i, a, r).unwrap_err();
            assert!(!e.contains("not-a-jwt") && !e.contains("at\""), "{e}");
        }
    }
}
