//! `llmx logout` across the family (DESIGN.md §9). Revoking a ChatGPT login's refresh token
//! signs out every copy of the lineage, so when the ledger knows other copies of this account,
//! logout refuses unless told which way to go: [`Scope::Everywhere`] removes those copies first,
//! then revokes and deletes the local file; [`Scope::Local`] deletes only the local file and
//! revokes nothing (the copies keep working). Machines that signed in on their own (kind `own`,
//! from `auth tunnel`) are not copies: they are never removed, but a revoke is account-wide
//! (DESIGN.md §10), so [`signed_in_separately`] names them for the warning given before it.

use super::lease::Kind;
use super::ledger::{Ledger, LedgerError};
use super::{Holder, holders_from_ledger};
use crate::auth::file::AuthFile;
use crate::auth::logout::{LoggedOut, LogoutError};
use crate::auth::oauth::OAuthClient;
use crate::push::{EventFn, TargetReport};
use crate::targets::resolve::ResolveOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Revoke and delete, refusing while other copies are known.
    Default,
    Everywhere,
    Local,
}

#[derive(Debug, thiserror::Error)]
pub enum FamilyLogoutError {
    #[error("{} other cop{} of this login {} known ({}): revoking it would sign {} out too",
        targets.len(), if targets.len() == 1 { "y" } else { "ies" }, if targets.len() == 1 { "is" } else { "are" },
        targets.join(", "), if targets.len() == 1 { "it" } else { "them" })]
    LiveCopies { targets: Vec<String> },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Logout(#[from] LogoutError),
}

/// What logout did.
#[derive(Debug, Clone)]
pub struct FamilyLoggedOut {
    pub local: LoggedOut,
    /// The copies removed first (`--everywhere`).
    pub remote: Vec<TargetReport>,
    /// A plain logout went on without the ledger, which could not be read: why. Copies it may
    /// list were neither checked nor removed.
    pub ledger_unreadable: Option<String>,
    /// When the revoked login's access token expires (Unix time): until then, a copy that was
    /// not removed keeps working, as access tokens are not revoked.
    pub access_expires_at: Option<i64>,
}

/// The ledger entries holding a copy of this account's login, leases included (the copies a
/// revocation would kill or leave without renewal); not the machines signed in on their own.
pub fn live_copies(ledger: &Ledger, local: &AuthFile) -> Vec<usize> {
    let account = local.account_id();
    if local.tokens.is_none() {
        return Vec::new();
    }
    ledger
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind() != Kind::Own)
        .filter(|(_, e)| account.is_none() || e.account_id.is_none() || e.account_id == account)
        .map(|(i, _)| i)
        .collect()
}

/// The machines the ledger knows signed in on their own with this account (`auth tunnel`): a
/// revoke signs them out too, as users of the provider report.
pub fn signed_in_separately(ledger: &Ledger, local: &AuthFile) -> Vec<String> {
    let account = local.account_id();
    ledger
        .entries
        .iter()
        .filter(|e| e.kind() == Kind::Own && (account.is_none() || e.account_id == account))
        .map(|e| e.target.clone())
        .collect()
}

pub async fn logout(
    store: &crate::auth::store::Store,
    client: &OAuthClient,
    scope: Scope,
    resolve: &ResolveOptions,
    jobs: Option<usize>,
    dry_run: bool,
    on_event: EventFn<'_>,
) -> Result<FamilyLoggedOut, FamilyLogoutError> {
    let dir = store.dir();
    if scope == Scope::Local {
        let local = crate::auth::logout::logout(store, None).await?;
        return Ok(FamilyLoggedOut { local, remote: Vec::new(), ledger_unreadable: None, access_expires_at: None });
    }
    // A login that cannot be read or parsed holds no lineage to protect; nor does an API key.
    let bytes = store.read().ok().flatten().map(|(b, _)| b);
    let file = bytes.as_deref().and_then(|b| AuthFile::parse(store.path(), b).ok()).filter(|f| f.tokens.is_some());
    let access_expires_at = file.as_ref().and_then(super::lease::access_expiry);
    let mut remote = Vec::new();
    let mut ledger_unreadable = None;
    if let (Some(file), Some(bytes)) = (&file, &bytes) {
        // A plain logout is not held up by a ledger it cannot read (it says so); --everywhere
        // cannot reach copies it cannot list.
        let ledger = match Ledger::load(dir) {
            Ok(l) => l,
            Err(LedgerError::Corrupt { reason, .. }) if scope == Scope::Default => {
                ledger_unreadable = Some(reason);
                Ledger::default()
            }
            Err(e) => return Err(e.into()),
        };
        let live = live_copies(&ledger, file);
        if !live.is_empty() {
            if scope == Scope::Default {
                let targets = live.iter().map(|i| ledger.entries[*i].target.clone()).collect();
                return Err(FamilyLogoutError::LiveCopies { targets });
            }
            let keep = Ledger { entries: live.iter().map(|i| ledger.entries[*i].clone()).collect(), ..ledger.clone() };
            let mut holders: Vec<Holder> = holders_from_ledger(&keep, resolve).await;
            remote =
                super::remove::remove(dir, Some((file, bytes)), None, &mut holders, false, dry_run, jobs, on_event)
                    .await?;
        }
    }
    if dry_run {
        // Every copy was reached and judged; nothing was removed, revoked or deleted.
        let local =
            LoggedOut { removed: false, revocation: crate::auth::logout::Revocation::NotAttempted, recovered: None };
        return Ok(FamilyLoggedOut { local, remote, ledger_unreadable, access_expires_at });
    }
    let local = crate::auth::logout::logout(store, Some(client)).await?;
    Ok(FamilyLoggedOut { local, remote, ledger_unreadable, access_expires_at })
}
