//! Refreshing a ChatGPT login (DESIGN.md §3, §9): trade the stored refresh token for new tokens,
//! replace the ones the issuer returned, set `last_refresh`, keep every other key.
//!
//! The discipline, so that a refresh never burns a login:
//! - **Lock, then re-read.** [`refresh_home`] takes the home's [`AuthLock`] and reads auth.json
//!   again under it; when another process refreshed since the caller looked (the file changed
//!   and its `last_refresh` is newer), it reports [`RefreshOutcome::AlreadyRefreshed`] and does
//!   not call the issuer.
//! - **Prove the save first.** The temp file of the new auth.json is created before the issuer
//!   is called ([`PendingWrite`]); a home that cannot be written is an error that spent nothing.
//! - **Validate the answer.** An access token and an id_token must be present and non-empty, the
//!   id_token a decodable JWT of the same account; otherwise nothing is replaced — except when
//!   the issuer has already rotated the refresh token (the old one is spent): then what it
//!   returned that is usable is kept (the new refresh token, and the access token when it is
//!   not empty) with the old id_token, so the login survives, and
//!   [`RefreshFailure::PartlySaved`] says exactly that.
//! - **Never lose an accepted answer.** If the issuer accepted and the save still fails, the new
//!   file is written to `auth.json.recovered` beside it (0600), and the error says how to restore.

use crate::auth::claims::{IdClaims, expiry};
use crate::auth::file::{AuthFile, AuthFileError, now_rfc3339};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::oauth::{OAuthClient, RefreshError, RefreshedTokens};
use crate::auth::store::Store;
use crate::config::CredentialsStore;
use crate::home::{HomeError, PendingWrite, write_private};
use crate::secret::Secret;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

/// llmx refreshes when the last refresh is older than this...
pub const REFRESH_AFTER: Duration = Duration::days(8);
/// ...or when the access token expires within this.
pub const EXPIRY_MARGIN: Duration = Duration::minutes(5);
/// Name of the file a refresh that could not be saved leaves its tokens in, beside auth.json.
pub const RECOVERY_FILE: &str = "auth.json.recovered";

#[derive(Debug, thiserror::Error)]
pub enum RefreshFailure {
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{} holds no ChatGPT login to refresh", path.display())]
    NoTokens { path: PathBuf },
    /// The login at `path` became the live one (`live`) while waiting for its lock (an account
    /// made active meanwhile): nothing was refreshed; refresh the live file instead.
    #[error("{} became the active login ({}) while waiting; nothing was refreshed", path.display(), live.display())]
    Moved { path: PathBuf, live: PathBuf },
    #[error(transparent)]
    Issuer(#[from] RefreshError),
    /// The new file could not even be prepared: the issuer was not called.
    #[error("cannot write the refreshed login ({source}); the issuer was not called and the login still works")]
    CannotSave { source: HomeError },
    /// The issuer answered with tokens that must not be saved.
    #[error("the issuer's refresh answer was refused: {reason}; auth.json was left unchanged")]
    InvalidAnswer { reason: String },
    /// The answer was malformed but the issuer had already rotated the refresh token: the new
    /// refresh token (and access token, when usable) were saved with the old id_token.
    #[error(
        "the issuer's refresh answer was malformed ({reason}), but it had already replaced the refresh token: \
         the new refresh token{} {} saved with the previous id_token, so the login still works",
        if *access_saved { " and access token" } else { "" },
        if *access_saved { "were" } else { "was" }
    )]
    PartlySaved { reason: String, access_saved: bool },
    /// What [`refresh_file`] returns for such an answer: the file to save instead (with the
    /// reason); [`refresh_and_save`] saves it and reports [`RefreshFailure::PartlySaved`].
    #[error("the issuer's refresh answer was malformed ({reason}); the usable part is not saved yet")]
    Salvage { reason: String, file: Box<AuthFile>, access_saved: bool },
    /// The issuer accepted the refresh but the new auth.json could not be saved.
    #[error("the refresh succeeded but {} could not be written ({source}){}", path.display(),
        recovery.as_ref().map(|r| format!("; the new login is in {}", r.display())).unwrap_or_default())]
    NotSaved { path: PathBuf, source: AuthFileError, recovery: Option<PathBuf> },
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

/// When [`refresh_home`] calls the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Now (`llmx auth refresh`), unless another process refreshed meanwhile.
    Always,
    /// By llmx's rule ([`needs_refresh`]).
    IfNeeded,
    /// When the access token expires within this (`auth push`: [`EXPIRY_MARGIN`]).
    ExpiresWithin(Duration),
}

/// What [`refresh_home`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed(Refreshed),
    /// Another process refreshed while this one waited for the lock; the issuer was not called.
    AlreadyRefreshed(Refreshed),
    /// The rule said no.
    NotNeeded,
}

/// Whether llmx would refresh this login now: the access token expiring within 5 minutes, or
/// `last_refresh` older than 8 days (or missing).
pub fn needs_refresh(file: &AuthFile, now: OffsetDateTime) -> bool {
    if file.tokens.is_none() {
        return false;
    }
    let stale = file.last_refresh_time().is_none_or(|t| now - t > REFRESH_AFTER);
    stale || expires_within(file, EXPIRY_MARGIN, now)
}

/// Whether the access token of a ChatGPT login expires within `margin` of `now` (an opaque
/// token, whose expiry is unknown, does not).
pub fn expires_within(file: &AuthFile, margin: Duration, now: OffsetDateTime) -> bool {
    let Some(tokens) = &file.tokens else { return false };
    expiry(tokens.access_token.expose()).is_some_and(|exp| exp - now.unix_timestamp() < margin.whole_seconds())
}

/// Refresh the login in `store` (locked, re-read, proven writable, validated). `live`: the
/// store the agent reads, when `store` is another one (a non-active account's, DESIGN.md §11);
/// see [`check_not_live`].
pub async fn refresh_home(
    store: &Store,
    client: &OAuthClient,
    when: When,
    live: Option<&Store>,
) -> Result<RefreshOutcome, RefreshFailure> {
    let before = store.read()?;
    let _lock = AuthLock::acquire(store.dir(), DEFAULT_WAIT)?;
    let read = store.read()?;
    let no_tokens = || RefreshFailure::NoTokens { path: store.path().to_path_buf() };
    let (bytes, place) = read.as_ref().ok_or_else(no_tokens)?;
    let file = store.parse(bytes, *place)?;
    if file.tokens.is_none() {
        return Err(no_tokens());
    }
    check_not_live(store, &file, live)?;
    if let Some((before, before_place)) = before.as_ref()
        && before != bytes
        && let Ok(old) = store.parse(before, *before_place)
        && old.tokens.is_some()
        && file.last_refresh_time() > old.last_refresh_time()
    {
        return Ok(RefreshOutcome::AlreadyRefreshed(describe(&file, false)));
    }
    let now = OffsetDateTime::now_utc();
    let due = match when {
        When::Always => true,
        When::IfNeeded => needs_refresh(&file, now),
        When::ExpiresWithin(margin) => expires_within(&file, margin, now),
    };
    if !due {
        return Ok(RefreshOutcome::NotNeeded);
    }
    let (_, r) = refresh_and_save(&file, store, client).await?;
    Ok(RefreshOutcome::Refreshed(r))
}

/// Under the lock of a login kept outside the live store (`store`, a non-active account's), with
/// `file` as read there: a `live` store holding the same account means it was made active while
/// this waited for the lock, so the live login is the one to refresh ([`RefreshFailure::Moved`]).
/// Refreshing the copy left behind would rotate the refresh token the live login still holds.
/// (An activation waits for this lock, so once past this check none can happen until the lock
/// is released.)
pub fn check_not_live(store: &Store, file: &AuthFile, live: Option<&Store>) -> Result<(), RefreshFailure> {
    let Some(live) = live.filter(|l| l.path() != store.path()) else { return Ok(()) };
    let Ok(Some(current)) = live.load() else { return Ok(()) };
    // The same rule that tells which account is active (accounts::identity).
    let identity = current.chatgpt_identity();
    if identity.is_some() && identity == file.chatgpt_identity() {
        Err(RefreshFailure::Moved { path: store.path().to_path_buf(), live: live.path().to_path_buf() })
    } else {
        Ok(())
    }
}

/// Refresh `file` (which may come from another holder) and save the result in `store`. The
/// caller holds the home's lock. For the file store the temp file is created before the issuer
/// is called (the keyring answered the read just before); a result no store takes is left in
/// the recovery file beside auth.json.
pub async fn refresh_and_save(
    file: &AuthFile,
    store: &Store,
    client: &OAuthClient,
) -> Result<(AuthFile, Refreshed), RefreshFailure> {
    let path = store.path();
    let pending = match store.mode() {
        CredentialsStore::File => {
            Some(PendingWrite::create(path).map_err(|source| RefreshFailure::CannotSave { source })?)
        }
        CredentialsStore::Keyring | CredentialsStore::Auto => None,
    };
    let save = |pending: Option<PendingWrite>, new: &AuthFile| {
        let bytes = new.to_bytes();
        let written = match pending {
            Some(p) => p.commit(&bytes).map_err(AuthFileError::from),
            None => store.write(&bytes).map(drop),
        };
        written.map_err(|source| {
            let recovery = path.with_file_name(RECOVERY_FILE);
            let recovery = write_private(&recovery, &bytes).ok().map(|()| recovery);
            RefreshFailure::NotSaved { path: path.to_path_buf(), source, recovery }
        })
    };
    match refresh_file(file, client).await {
        Ok((new, r)) => {
            save(pending, &new)?;
            Ok((new, r))
        }
        Err(RefreshFailure::Salvage { reason, file, access_saved }) => {
            save(pending, &file)?;
            Err(RefreshFailure::PartlySaved { reason, access_saved })
        }
        Err(e) => Err(e),
    }
}

/// Call the issuer and build the refreshed file; nothing is written. A malformed answer that
/// rotated the refresh token is [`RefreshFailure::Salvage`], carrying the file to save instead.
pub async fn refresh_file(file: &AuthFile, client: &OAuthClient) -> Result<(AuthFile, Refreshed), RefreshFailure> {
    let mut file = file.clone();
    let Some(tokens) = file.tokens.as_mut() else {
        return Err(RefreshFailure::NoTokens { path: PathBuf::from(crate::home::AUTH_FILE) });
    };
    let new = client.refresh(&tokens.refresh_token).await?;
    let expected = tokens.account_id.clone().or_else(|| IdClaims::parse(tokens.id_token.expose()).ok()?.account_id);
    let (id, access) = match validate(&new, expected.as_deref()) {
        Ok(v) => v,
        Err(Invalid { reason, salvageable }) => {
            let rotated = new.refresh_token.as_ref().filter(|r| !r.is_empty() && **r != tokens.refresh_token);
            let Some(rotated) = rotated.filter(|_| salvageable) else {
                return Err(RefreshFailure::InvalidAnswer { reason });
            };
            // The old refresh token is spent: keep the new one (and a usable access token),
            // and the id_token we had, which still names this account.
            tokens.refresh_token = rotated.clone();
            let access = new.access_token.clone().filter(|t| !t.expose().trim().is_empty());
            let access_saved = access.is_some();
            if let Some(a) = access {
                tokens.access_token = a;
            }
            return Err(RefreshFailure::Salvage { reason, file: Box::new(file), access_saved });
        }
    };
    let rotated = new.refresh_token.as_ref().is_some_and(|r| *r != tokens.refresh_token);
    if tokens.account_id.is_none() {
        tokens.account_id = IdClaims::parse(id.expose()).ok().and_then(|c| c.account_id);
    }
    tokens.id_token = id;
    tokens.access_token = access;
    if let Some(r) = new.refresh_token {
        tokens.refresh_token = r;
    }
    file.last_refresh = Some(now_rfc3339());
    let r = describe(&file, rotated);
    Ok((file, r))
}

/// Why an answer was refused; `salvageable`: the rest of it may be kept when the refresh token
/// was rotated (not when the id_token names another account: then nothing in it is ours).
struct Invalid {
    reason: String,
    salvageable: bool,
}

/// The answer must carry a non-empty access token and an id_token that is a JWT of the expected
/// account; a refresh token, when sent, must not be empty. The reason never quotes a token.
fn validate(new: &RefreshedTokens, account: Option<&str>) -> Result<(Secret, Secret), Invalid> {
    let bad = |reason: &str| Invalid { reason: reason.to_string(), salvageable: true };
    let id = new.id_token.clone().filter(|t| !t.is_empty()).ok_or_else(|| bad("it has no id_token"))?;
    let access = new
        .access_token
        .clone()
        .filter(|t| !t.expose().trim().is_empty())
        .ok_or_else(|| bad("it has no access token"))?;
    if new.refresh_token.as_ref().is_some_and(Secret::is_empty) {
        return Err(bad("its refresh token is empty"));
    }
    let claims = IdClaims::parse(id.expose()).map_err(|e| bad(&format!("its id_token is {e}")))?;
    if let (Some(want), Some(got)) = (account, claims.account_id.as_deref())
        && want != got
    {
        return Err(Invalid { reason: format!("its id_token is for account {got}, not {want}"), salvageable: false });
    }
    Ok((id, access))
}

fn describe(file: &AuthFile, rotated: bool) -> Refreshed {
    let tokens = file.tokens.as_ref();
    Refreshed {
        email: tokens.and_then(|t| IdClaims::parse(t.id_token.expose()).ok()).and_then(|c| c.email),
        last_refresh: file.last_refresh.clone().unwrap_or_default(),
        access_token_expires_at: tokens.and_then(|t| expiry(t.access_token.expose())),
        refresh_token_rotated: rotated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{AUTH_CLAIMS, test_jwt};
    use crate::auth::file::Tokens;
    use crate::secret::Secret;
    use time::macros::datetime;

    fn of_account(account: &str) -> AuthFile {
        let id = test_jwt(
            &serde_json::json!({ AUTH_CLAIMS: {"chatgpt_account_id": account}, "email": format!("{account}@x") }),
        );
        let text = serde_json::json!({"OPENAI_API_KEY": null,
            "tokens": {"id_token": id, "access_token": "a", "refresh_token": "r", "account_id": account}});
        AuthFile::parse(std::path::Path::new("auth.json"), text.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn an_account_made_live_while_waiting_for_its_lock_is_not_refreshed_where_it_was() {
        let t = tempfile::tempdir().unwrap();
        let store = |p: std::path::PathBuf| Store::new(CredentialsStore::File, &p);
        let (live, kept) = (store(t.path().join("auth.json")), store(t.path().join("accounts/b/auth.json")));
        let b = of_account("acc-b");
        live.write(&of_account("acc-a").to_bytes()).unwrap();
        assert!(check_not_live(&kept, &b, Some(&live)).is_ok(), "another account is live");
        assert!(check_not_live(&live, &b, Some(&live)).is_ok(), "the live file itself");
        assert!(check_not_live(&kept, &b, None).is_ok());
        live.write(&b.to_bytes()).unwrap();
        match check_not_live(&kept, &b, Some(&live)) {
            Err(RefreshFailure::Moved { live: l, .. }) => assert_eq!(l, live.path()),
            other => panic!("{other:?}"),
        }
    }

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

    #[test]
    fn answers_without_tokens_or_with_a_broken_id_token_are_refused() {
        let id =
            |acc: &str| Some(Secret::new(test_jwt(&serde_json::json!({ AUTH_CLAIMS: {"chatgpt_account_id": acc} }))));
        let ok = RefreshedTokens { id_token: id("a"), access_token: Some(Secret::new("at")), refresh_token: None };
        assert!(validate(&ok, Some("a")).is_ok());
        let cases = [
            RefreshedTokens { access_token: Some(Secret::new("")), ..ok.clone() },
            RefreshedTokens { access_token: None, ..ok.clone() },
            RefreshedTokens { id_token: Some(Secret::new("not-a-jwt")), ..ok.clone() },
            RefreshedTokens { id_token: None, ..ok.clone() },
            RefreshedTokens { refresh_token: Some(Secret::new("")), ..ok.clone() },
            RefreshedTokens { id_token: id("b"), ..ok.clone() },
        ];
        for c in cases {
            assert!(validate(&c, Some("a")).is_err());
        }
    }
}
