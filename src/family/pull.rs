//! `llmx auth pull TARGET`: adopt a holder's copy of the login when it is the same account and
//! fresher (it refreshed on its own, so the local copy's refresh token is dead). Anything else is
//! refused with the reason unless `force`; a missing or invalid file is always refused. The local
//! auth.json is replaced atomically under the home's lock, and the ledger records that the
//! target now holds exactly the local bytes.

use super::ledger::{Entry, Ledger, LedgerError};
use super::{Holder, Local, State, classify, probe};
use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::home::{read_optional, write_private};
use crate::targets::{StepFn, TargetError};
use serde::Serialize;
use std::path::Path;

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
    pub last_refresh: Option<String>,
}

/// Adopt `holder`'s copy into the auth.json at `auth_path`.
pub async fn pull(auth_path: &Path, holder: &mut Holder, force: bool, step: StepFn<'_>) -> Result<Pulled, PullError> {
    let dir = auth_path.parent().unwrap_or(Path::new("."));
    let label = holder.target.label();
    let _lock = AuthLock::acquire(dir, DEFAULT_WAIT)?;
    let local_bytes = read_optional(auth_path).map_err(AuthFileError::from)?;
    let local = match &local_bytes {
        Some(b) => Some(AuthFile::parse(auth_path, b)?),
        None => None,
    };
    let p = probe(holder, step).await.map_err(|source| PullError::Target { target: label.clone(), source })?;
    let path = p.loc.auth_path();
    let remote = p.file.as_ref().map(|f| f.bytes.as_slice());
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
        State::Invalid | State::Unreachable => return Err(refuse(format!("{path} is not a valid auth.json"), None)),
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
    let bytes = p.file.map(|f| f.bytes).unwrap_or_default();
    if adopt {
        write_private(auth_path, &bytes).map_err(AuthFileError::from)?;
    }
    let dir = dir.to_path_buf();
    let route = holder.entry.as_ref().map(|e| e.route.clone()).unwrap_or_default();
    Ledger::update(&dir, |l| {
        let mut entry = Entry::new(&label, p.identity.clone(), &path, &bytes);
        entry.route = route;
        l.upsert(entry)
    })?;
    Ok(Pulled { target: label, path, state, adopted: adopt, last_refresh: theirs.and_then(|f| f.last_refresh) })
}
