//! `llmx auth pull TARGET`: adopt a holder's copy of the login when it is the same account and
//! fresher (it refreshed on its own, so the local copy's refresh token is dead) — on the issuer's
//! word, not the holder's (see [`super::adopt`]). Anything else is refused with the reason unless
//! `force`; a missing or invalid file, and a lease, are always refused. The local auth.json is
//! replaced atomically under the home's lock, and the ledger records what the target now holds.

use super::ledger::{Entry, Ledger, LedgerError};
use super::{Holder, Local, State, classify, probe};
use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::oauth::OAuthClient;
use crate::auth::store::Store;
use crate::targets::{StepFn, TargetError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{target}: {reason}")]
    Refused { target: String, reason: String, hint: Option<String> },
    #[error("{target}: {source}")]
    Target { target: String, source: TargetError },
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What a pull did. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pulled {
    pub target: String,
    pub path: String,
    /// The holder's state before the pull.
    pub state: State,
    /// False when the local copy already was the target's.
    pub adopted: bool,
    /// The holder's refresh token was refreshed here and the issuer named this account.
    pub verified_by_issuer: bool,
    /// The account (and email) of the login now here.
    pub account_id: Option<String>,
    pub email: Option<String>,
    /// The renewed login could not be written back to the holder (its copy is then retired).
    pub write_back_error: Option<String>,
    pub last_refresh: Option<String>,
}

/// Adopt `holder`'s copy into this home's login in `store`. A fresher full copy of this account
/// is adopted on the issuer's word ([`super::adopt`]): its refresh token is refreshed here, and
/// the renewed login is written back to the holder (whose own copy that refresh retired). With
/// `force` the holder's bytes are taken as they are (the user's explicit choice). The holder is
/// read before the home's lock is taken; the lock covers only the local read-decide-write.
pub async fn pull(
    store: &Store,
    holder: &mut Holder,
    force: bool,
    client: &OAuthClient,
    step: StepFn<'_>,
) -> Result<Pulled, PullError> {
    let dir = store.dir();
    let label = holder.target.label();
    let p = probe(holder, step).await.map_err(|source| PullError::Target { target: label.clone(), source })?;
    let path = p.loc.auth_path();
    let remote = p.file.as_ref().map(|f| f.bytes.as_slice());
    let lock = AuthLock::acquire(dir, DEFAULT_WAIT)?;
    let local_bytes = store.read()?.map(|(b, _)| b);
    let local = match &local_bytes {
        Some(b) => Some(AuthFile::parse(store.path(), b)?),
        None => None,
    };
    let lease = local.as_ref().and_then(Local::lease_bytes);
    let pair = local.as_ref().zip(local_bytes.as_deref()).map(|(f, b)| Local::new(f, b, lease.as_deref()));
    let (state, theirs) = classify(pair, remote, &path, super::lease::DEFAULT_WINDOW);
    let refuse = |reason: String, hint: Option<&str>| PullError::Refused {
        target: label.clone(),
        reason,
        hint: hint.map(str::to_string),
    };
    let lr = |f: Option<&AuthFile>| f.and_then(|f| f.last_refresh.clone()).unwrap_or_else(|| "never".into());
    if theirs.as_ref().is_some_and(super::lease::is_lease) {
        // A lease holder is never a source: it holds no refresh token, and what it holds came
        // from here (or from whoever can write there).
        return Err(refuse(
            "it holds a lease (an access-only copy, no refresh token): there is nothing to adopt".into(),
            Some("leases are renewed from here with `llmx auth sync`"),
        ));
    }
    let adopt = match state {
        State::Same => false,
        State::Fresher => true,
        State::Missing => return Err(refuse(format!("{path} does not exist"), None)),
        State::Invalid | State::Unreachable | State::Replaced => {
            return Err(refuse(format!("{path} is not a valid auth.json"), None));
        }
        _ if force => true,
        State::Older | State::Expiring | State::Expired => {
            return Err(refuse(
                format!(
                    "its copy is not fresher than this machine's (last refresh {} there, {} here)",
                    lr(theirs.as_ref()),
                    lr(local.as_ref())
                ),
                Some("add --force to take it anyway, or push this machine's copy with `llmx auth sync`"),
            ));
        }
        State::OtherAccount => {
            return Err(refuse(
                "it holds a login of another account".into(),
                Some("add --force to replace this machine's login with it"),
            ));
        }
        State::ApiKey => {
            return Err(refuse("it holds an API key, not this login".into(), Some("add --force to take the API key")));
        }
    };
    let their_bytes = p.file.as_ref().map(|f| f.bytes.clone()).unwrap_or_default();
    let verified = adopt && state == State::Fresher && !force;
    let (bytes, write_back) = match (verified, &local, &theirs) {
        (true, Some(local), Some(theirs)) => match super::adopt::adopt(store, local, theirs, client).await {
            Ok(new) => (new.to_bytes(), true),
            Err(why) => {
                return Err(refuse(
                    format!("its fresher copy was not adopted: {}", why.reason),
                    Some(
                        "if that machine signed in on its own, leave it; `llmx auth where` shows what each place holds",
                    ),
                ));
            }
        },
        _ => {
            if adopt {
                store.write(&their_bytes)?;
            }
            (their_bytes.clone(), false)
        }
    };
    drop(lock);
    // The issuer rotated the holder's refresh token: give it the renewed login back.
    let mut written_back = None;
    if write_back {
        step("writing the renewed login back");
        written_back = Some(holder.target.write(&p.loc, &bytes, step).await.map_err(|e| e.message));
    }
    let recorded = if written_back.as_ref().is_some_and(Result::is_err) { &their_bytes } else { &bytes };
    let dir = dir.to_path_buf();
    let route = holder.entry.as_ref().map(|e| e.route.clone()).unwrap_or_default();
    Ledger::update(&dir, |l| {
        let mut entry = Entry::new(&label, p.identity.clone(), &path, recorded);
        entry.route = route;
        l.upsert(entry)
    })?;
    let file = AuthFile::parse(store.path(), &bytes).ok();
    Ok(Pulled {
        target: label,
        path,
        state,
        adopted: adopt,
        verified_by_issuer: verified,
        account_id: file.as_ref().and_then(AuthFile::account_id),
        email: file.as_ref().and_then(AuthFile::email),
        write_back_error: written_back.and_then(Result::err),
        last_refresh: file.and_then(|f| f.last_refresh),
    })
}
