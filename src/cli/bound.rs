//! Which account's login judges a place in the ledger, in a home with several accounts
//! (DESIGN.md §11): the account the entry was pushed with (`push --account`), else the account
//! whose id it records, else the active one. `auth where`, `pull`, `remove` and `sync` compare
//! each holder with that login, so a copy of account B is "same" for B, not "other-account"
//! because A happens to be active. `--account LABEL` makes one login judge every holder.

use crate::cli::{Ctx, Failure};
use llmx::accounts::Accounts;
use llmx::auth::file::AuthFile;
use llmx::family::Holder;
use llmx::family::ledger::{Entry, Ledger};
use std::path::PathBuf;

/// The accounts of a home and where each one's login is now.
pub struct Binding {
    accounts: Accounts,
    active: Option<String>,
    live: PathBuf,
    /// Every label with the account id its login names.
    ids: Vec<(String, Option<String>)>,
}

impl Binding {
    /// `None` in a home without accounts, or when `--account` picks the one login for all.
    pub fn load(ctx: &Ctx) -> Result<Option<Binding>, Failure> {
        if ctx.account.is_some() { Ok(None) } else { Binding::of_home(ctx) }
    }

    /// The home's accounts whatever `--account` says; `None` without accounts.
    pub fn of_home(ctx: &Ctx) -> Result<Option<Binding>, Failure> {
        let accounts = ctx.accounts()?;
        if !accounts.exist() {
            return Ok(None);
        }
        let active = accounts.adopt(false)?;
        let live = ctx.home.auth_path();
        let mut b = Binding { accounts, active, live, ids: Vec::new() };
        let labels = b.accounts.labels()?;
        let mut ids = Vec::new();
        for l in labels {
            let id = ctx.store_at(&b.path_of(&l))?.load().ok().flatten().and_then(|f| f.account_id());
            ids.push((l, id));
        }
        b.ids = ids;
        Ok(Some(b))
    }

    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(|(l, _)| l.as_str())
    }

    /// The account's auth.json: the live one for the active account.
    pub fn path_of(&self, label: &str) -> PathBuf {
        if self.active.as_deref() == Some(label) { self.live.clone() } else { self.accounts.account_path(label) }
    }

    /// The ledger entries that belong to account `label`.
    pub fn entries_of(&self, ledger: &Ledger, label: &str) -> Vec<Entry> {
        ledger.entries.iter().filter(|e| self.owner_of(e).as_deref() == Some(label)).cloned().collect()
    }

    /// The account an entry belongs to: its recorded label, else the account with its account
    /// id (when that is not the active one's), else the active one. Entries from before
    /// accounts have no label.
    pub fn owner_of(&self, e: &Entry) -> Option<String> {
        if let Some(l) = &e.account {
            return Some(l.clone());
        }
        let active_id = self.ids.iter().find(|(l, _)| Some(l) == self.active.as_ref()).and_then(|(_, id)| id.clone());
        if e.account_id.is_some()
            && e.account_id != active_id
            && let Some((l, _)) = self.ids.iter().find(|(_, id)| id.is_some() && *id == e.account_id)
        {
            return Some(l.clone());
        }
        self.active.clone()
    }
}

/// The logins that judge `holders`, one per holder, read once per account; `None` when one
/// login judges them all (no accounts, or `--account`).
pub struct Judges {
    files: Vec<Option<(AuthFile, Vec<u8>)>>,
    /// Per holder: its index into `files`.
    of: Vec<usize>,
}

impl Judges {
    pub fn for_holders(ctx: &Ctx, holders: &[Holder]) -> Result<Option<Judges>, Failure> {
        let Some(b) = Binding::load(ctx)? else { return Ok(None) };
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut of = Vec::new();
        for h in holders {
            let label = h.entry.as_ref().and_then(|e| b.owner_of(e)).or_else(|| b.active.clone());
            let path = label.map(|l| b.path_of(&l)).unwrap_or_else(|| b.live.clone());
            let i = paths.iter().position(|p| *p == path).unwrap_or_else(|| {
                paths.push(path);
                paths.len() - 1
            });
            of.push(i);
        }
        let mut files = Vec::new();
        for p in &paths {
            let store = ctx.store_at(p)?;
            files.push(match store.read()? {
                None => None,
                Some((b, place)) => Some((store.parse(&b, place)?, b)),
            });
        }
        Ok(Some(Judges { files, of }))
    }

    /// One judge per holder, as the family commands take them.
    pub fn each(&self) -> Vec<Option<(&AuthFile, &[u8])>> {
        self.of.iter().map(|i| self.files[*i].as_ref().map(|(f, b)| (f, b.as_slice()))).collect()
    }
}
