//! `llmx auth sync --owner TARGET`: the owner's full login lives somewhere other than this home
//! (in a cluster: a Secret that no agent mounts), and this home is scratch space (an emptyDir of
//! the CronJob's pod). Around one sync:
//!
//! 1. [`adopt`]: read the owner's copy and make it this home's auth.json (under the lock) — unless
//!    this home already holds a *newer* full login of the same account: an earlier run refreshed
//!    and died before it wrote back (the container restarted; the emptyDir survived). That one is
//!    written back to the owner first.
//! 2. the sync itself (refresh once when due, renew every holder), on this home.
//! 3. [`Owner::write_back`]: when this home's auth.json changed, write it to the owner, only over
//!    the copy read in step 1 (a Secret's `resourceVersion`: compare-and-swap), never a lease or
//!    another account's login.
//!
//! The crash window: between the issuer's answer (the old refresh token is then spent) and the
//! end of step 3, the only copy of the new refresh token is this home's auth.json. A restart of
//! the container in the same pod recovers it (step 1); losing the pod itself in that window loses
//! the lineage (sign in again). docs/kubernetes.md says so.

use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::store::Store;
use crate::push::Outcome;
use crate::targets::{Location, Target, TargetError};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("owner {label}: {}", .error.message)]
    Target { label: String, error: TargetError },
    #[error("owner {label} holds no login (no auth.json there): put the owner's full login there first")]
    Empty { label: String },
    #[error("owner {label} holds {what}, not a full ChatGPT login (one with a refresh token)")]
    NotFull { label: String, what: &'static str },
    #[error("this home holds {what} now, not a full login of the owner's account: not written back to {label}")]
    Refused { label: String, what: &'static str },
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl OwnerError {
    /// The hint of a target's failure.
    pub fn hint(&self) -> Option<&str> {
        match self {
            OwnerError::Target { error, .. } => error.hint.as_deref(),
            _ => None,
        }
    }
}

/// What [`adopt`] did with this home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The owner's copy is now this home's auth.json.
    Seeded,
    /// This home already held the owner's copy.
    Same,
    /// This home held a newer full login of the account (an earlier run that did not finish):
    /// written back to the owner, and kept.
    WroteBack,
}

impl Adopted {
    pub fn as_str(self) -> &'static str {
        match self {
            Adopted::Seeded => "seeded",
            Adopted::Same => "same",
            Adopted::WroteBack => "wrote-back",
        }
    }
}

/// The owner's copy as last read or written.
pub struct Owner {
    target: Box<dyn Target>,
    loc: Location,
    seen: Vec<u8>,
}

/// A full ChatGPT login (a non-empty refresh token), or what it is instead.
fn full(bytes: &[u8]) -> Result<AuthFile, &'static str> {
    let file = AuthFile::parse(Path::new("auth.json"), bytes).map_err(|_| "a file that is not an auth.json")?;
    match &file.tokens {
        None => Err("an API key"),
        Some(t) if t.refresh_token.is_empty() => Err("a lease (no refresh token)"),
        Some(_) => Ok(file),
    }
}

/// Read the owner's copy and make it this home's login (step 1 above).
pub async fn adopt(mut target: Box<dyn Target>, store: &Store) -> Result<(Owner, Adopted), OwnerError> {
    let label = target.label();
    let failed = |error: TargetError| OwnerError::Target { label: label.clone(), error };
    let loc = target.locate(None, &|_| {}).await.map_err(failed)?;
    let theirs = target.read(&loc).await.map_err(failed)?.map(|f| f.bytes);
    let theirs = theirs.ok_or_else(|| OwnerError::Empty { label: label.clone() })?;
    let owner_file = full(&theirs).map_err(|what| OwnerError::NotFull { label: label.clone(), what })?;

    let _lock = AuthLock::acquire(store.dir(), DEFAULT_WAIT)?;
    let mine = store.read()?.map(|(b, _)| b);
    let mut owner = Owner { target, loc, seen: theirs };
    if mine.as_deref() == Some(owner.seen.as_slice()) {
        return Ok((owner, Adopted::Same));
    }
    let newer = mine.as_deref().and_then(|b| full(b).ok()).filter(|f| {
        f.account_id() == owner_file.account_id() && f.last_refresh_time() > owner_file.last_refresh_time()
    });
    if let (Some(_), Some(bytes)) = (newer, mine) {
        owner.put(&bytes).await?;
        return Ok((owner, Adopted::WroteBack));
    }
    store.write(&owner.seen)?;
    Ok((owner, Adopted::Seeded))
}

impl Owner {
    pub fn label(&self) -> String {
        self.target.label()
    }

    /// Write this home's auth.json back to the owner when it changed (step 3 above).
    pub async fn write_back(&mut self, store: &Store) -> Result<Outcome, OwnerError> {
        let _lock = AuthLock::acquire(store.dir(), DEFAULT_WAIT)?;
        let label = self.label();
        let refused = |what| OwnerError::Refused { label: label.clone(), what };
        let mine = store.read()?.map(|(b, _)| b).ok_or_else(|| refused("no login"))?;
        if mine == self.seen {
            return Ok(Outcome::Unchanged);
        }
        let file = full(&mine).map_err(refused)?;
        let theirs = full(&self.seen).ok().and_then(|f| f.account_id());
        if file.account_id() != theirs {
            return Err(refused("another account's login"));
        }
        self.put(&mine).await?;
        Ok(Outcome::Updated)
    }

    async fn put(&mut self, bytes: &[u8]) -> Result<(), OwnerError> {
        let label = self.label();
        self.target.write(&self.loc, bytes, &|_| {}).await.map_err(|error| OwnerError::Target { label, error })?;
        self.seen = bytes.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::full;

    fn file(refresh_token: Option<&str>) -> Vec<u8> {
        let tokens = refresh_token.map(|rt| {
            serde_json::json!({"id_token": "a.e30.c", "access_token": "at", "refresh_token": rt, "account_id": "acc"})
        });
        serde_json::to_vec(&serde_json::json!({"OPENAI_API_KEY": null, "tokens": tokens})).unwrap()
    }

    #[test]
    fn only_a_full_login_is_adopted_or_written_back() {
        assert!(full(&file(Some("rt"))).is_ok());
        assert_eq!(full(&file(Some(""))).err(), Some("a lease (no refresh token)"));
        assert_eq!(full(&file(None)).err(), Some("an API key"));
        assert_eq!(full(b"not json").err(), Some("a file that is not an auth.json"));
    }
}
