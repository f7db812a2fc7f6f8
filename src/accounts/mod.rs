//! Several accounts per home (DESIGN.md §11), between `cli/` and `auth/`: `auth/` stays
//! single-login and knows nothing of labels; an account here is a named home-like store.
//!
//! Layout: `$LLMX_HOME/accounts/<label>/auth.json` (dirs 0700, files 0600, each file
//! byte-compatible); `$LLMX_HOME/auth.json` stays the *active* login, the file the agent reads.
//! Which account is active is recorded nowhere: it is the account whose identity (ChatGPT:
//! account id + email; API key: the key) the live file has, so a file the agent (or a plain
//! `llmx login`, or `codex login`) rewrote is still matched.
//!
//! The live file is always the truth for the active account: the copy in its account directory
//! may be older (the agent refreshed since). Every operation here starts with [`Accounts::adopt`]:
//! under the home's lock it writes the live file back to its account (or registers it as a new
//! account, labelled by [`label::default_for`]), so a refresh the agent made is never lost,
//! also not by a switch. An existing single-account home has no `accounts/` directory and stays
//! as it is until the first `login --as` or `auth switch`, which registers its login first.
//!
//! Locks: the home's (`auth.json.lock`) is taken before an account's (`accounts/L/auth.json.lock`);
//! a refresh of a non-active account takes only its own, so two accounts never wait for each other.

pub mod label;

use crate::auth::claims::{IdClaims, expiry};
use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::status::format_unix;
use crate::auth::store::Store;
use crate::config::CredentialsStore;
use crate::home::{Home, HomeError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// The directory of accounts inside the home.
pub const ACCOUNTS_DIR: &str = "accounts";

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Label(#[from] label::LabelError),
    #[error("no account {label:?} in this home{}", known_list(known))]
    NoSuchAccount { label: String, known: Vec<String> },
    #[error("the label {label:?} is taken by another account ({other})")]
    LabelTaken { label: String, other: String },
    #[error("{} holds no login to save as an account", path.display())]
    NoLogin { path: PathBuf },
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Home(#[from] HomeError),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() { String::new() } else { format!(" (known: {})", known.join(", ")) }
}

/// Who a login is, without a secret: what matches a live auth.json to its account.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    ChatGpt {
        account_id: Option<String>,
        email: Option<String>,
    },
    /// SHA-256 of the key.
    ApiKey(String),
}

fn identity(file: &AuthFile) -> Option<Identity> {
    if let Some((account_id, email)) = file.chatgpt_identity() {
        return Some(Identity::ChatGpt { account_id, email });
    }
    file.api_key().map(|k| Identity::ApiKey(hex::encode(Sha256::digest(k.expose().as_bytes()))))
}

/// One account as `auth list` shows it: never a secret (an API key is masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub label: String,
    pub active: bool,
    /// `chatgpt`, `apikey`, or `null` when the file holds no credential.
    pub method: Option<&'static str>,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    pub api_key: Option<String>,
    pub last_refresh: Option<String>,
    pub access_token_expires_at: Option<String>,
    /// A ChatGPT login without a refresh token (DESIGN.md §10).
    pub lease: bool,
    /// The file that holds this account's login now (the live auth.json for the active one).
    pub auth_file: String,
    /// False for the login of a home that has no `accounts/` yet (shown, not saved as one).
    pub saved: bool,
}

impl Summary {
    fn of(label: &str, active: bool, path: &Path, file: &AuthFile, saved: bool) -> Summary {
        let tokens = file.tokens.as_ref();
        let claims = tokens.and_then(|t| IdClaims::parse(t.id_token.expose()).ok()).unwrap_or_default();
        Summary {
            label: label.to_string(),
            active,
            method: if tokens.is_some() {
                Some("chatgpt")
            } else if file.api_key().is_some() {
                Some("apikey")
            } else {
                None
            },
            email: claims.email,
            plan: claims.plan,
            account_id: file.account_id(),
            api_key: file.api_key().map(|k| k.mask()),
            last_refresh: file.last_refresh.clone(),
            access_token_expires_at: tokens.and_then(|t| expiry(t.access_token.expose())).and_then(format_unix),
            lease: tokens.is_some_and(|t| t.refresh_token.is_empty()),
            auth_file: path.display().to_string(),
            saved,
        }
    }
}

/// What [`Accounts::add`] did with a new login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub label: String,
    /// The account was known already (same identity): its login was replaced.
    pub replaced: bool,
    /// The new login is the active one (`$LLMX_HOME/auth.json`).
    pub active: bool,
    /// The account that was active before, when it was registered by this call (the upgrade
    /// of a single-account home).
    pub registered_first: Option<String>,
}

/// Whether [`Accounts::add`] makes the new login the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activate {
    /// Only when the home has no live login (or it is this account already).
    IfNone,
    /// Always (a plain `llmx login` in a home with accounts).
    Always,
}

/// What [`Accounts::switch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    pub from: Option<String>,
    pub to: String,
    pub already: bool,
}

/// The accounts of one home.
#[derive(Debug, Clone)]
pub struct Accounts {
    home: PathBuf,
    /// The live login's store; each account's directory is a home of its own with the same
    /// kind of store (in the keyring: an entry named from that directory's path).
    store: Store,
}

impl Accounts {
    /// The accounts of `home`, whose live login is in `store` (see [`Store`]).
    pub fn new(home: &Home, store: &Store) -> Accounts {
        Accounts { home: home.dir().to_path_buf(), store: store.at(&home.auth_path()) }
    }

    /// The store of `label`'s saved copy.
    fn account_store(&self, label: &str) -> Store {
        self.store.at(&self.account_path(label))
    }

    /// Whether `label` has a saved account: its auth.json, or (a store that reads the keyring)
    /// its directory.
    fn has_account(&self, label: &str) -> bool {
        let path = self.account_path(label);
        path.is_file() || (self.store.mode() != CredentialsStore::File && self.dir().join(label).is_dir())
    }

    fn live_path(&self) -> PathBuf {
        self.home.join(crate::home::AUTH_FILE)
    }

    /// `$LLMX_HOME/accounts`.
    pub fn dir(&self) -> PathBuf {
        self.home.join(ACCOUNTS_DIR)
    }

    /// Whether the home has saved accounts (at least one in `accounts/`).
    pub fn exist(&self) -> bool {
        self.labels().is_ok_and(|l| !l.is_empty())
    }

    /// `$LLMX_HOME/accounts/<label>/auth.json` (the label is not checked here).
    pub fn account_path(&self, label: &str) -> PathBuf {
        self.dir().join(label).join(crate::home::AUTH_FILE)
    }

    /// The labels of saved accounts, sorted: directories with a valid label and an auth.json.
    pub fn labels(&self) -> Result<Vec<String>, AccountsError> {
        let dir = self.dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HomeError::io(&dir, e).into()),
        };
        let mut labels: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|l| label::check(l).is_ok() && self.has_account(l))
            .collect();
        labels.sort();
        Ok(labels)
    }

    /// Write the live auth.json back to its account, under the home's lock (see the module
    /// docs). A live login that matches no account is registered as a new one when the home has
    /// accounts, or when `register` (the first `login --as` / `switch`). Returns the active label.
    pub fn adopt(&self, register: bool) -> Result<Option<String>, AccountsError> {
        let _lock = AuthLock::acquire(&self.home, DEFAULT_WAIT)?;
        self.adopt_locked(register)
    }

    /// [`Accounts::adopt`] with the home's lock held by the caller.
    fn adopt_locked(&self, register: bool) -> Result<Option<String>, AccountsError> {
        let Some((bytes, place)) = self.store.read()? else { return Ok(None) };
        let live = self.store.parse(&bytes, place)?;
        let Some(id) = identity(&live) else { return Ok(None) };
        if let Some(label) = self.find(&id)? {
            let store = self.account_store(&label);
            if store.read()?.map(|(b, _)| b).as_deref() != Some(bytes.as_slice()) {
                let _account = AuthLock::acquire(store.dir(), DEFAULT_WAIT)?;
                store.write(&bytes)?;
            }
            return Ok(Some(label));
        }
        if !register && !self.exist() {
            return Ok(None);
        }
        let label = self.free_label(&label::default_for(&live).unwrap_or_else(|| "account".into()))?;
        self.account_store(&label).write(&bytes)?;
        Ok(Some(label))
    }

    /// The label of the saved account with this identity.
    fn find(&self, id: &Identity) -> Result<Option<String>, AccountsError> {
        for l in self.labels()? {
            let Ok(Some(f)) = self.account_store(&l).load() else { continue };
            if identity(&f).as_ref() == Some(id) {
                return Ok(Some(l));
            }
        }
        Ok(None)
    }

    /// `wanted`, or `wanted-2`, `wanted-3`… when an account already uses it.
    fn free_label(&self, wanted: &str) -> Result<String, AccountsError> {
        let taken = self.labels()?;
        let mut n = 1;
        loop {
            let l = if n == 1 { wanted.to_string() } else { format!("{wanted}-{n}") };
            if !taken.contains(&l) && !self.dir().join(&l).exists() {
                return Ok(l);
            }
            n += 1;
        }
    }

    /// Every account, the active one's facts read from the live auth.json. A home without
    /// `accounts/` shows its login (if any) as one unsaved account.
    pub fn list(&self) -> Result<Vec<Summary>, AccountsError> {
        let active = self.adopt(false)?;
        let live_path = self.live_path();
        if !self.exist() {
            let Some(live) = self.store.load()? else { return Ok(Vec::new()) };
            let Some(label) = label::default_for(&live) else { return Ok(Vec::new()) };
            return Ok(vec![Summary::of(&label, true, &live_path, &live, false)]);
        }
        let mut out = Vec::new();
        for l in self.labels()? {
            let is_active = active.as_deref() == Some(l.as_str());
            let path = if is_active { live_path.clone() } else { self.account_path(&l) };
            if let Some(f) = self.store.at(&path).load()? {
                out.push(Summary::of(&l, is_active, &path, &f, true));
            }
        }
        Ok(out)
    }

    /// The auth.json to work on for `label` (`--account`): the live file when it is the active
    /// account (after adopting it), else the account's own file.
    pub fn resolve(&self, label: &str) -> Result<PathBuf, AccountsError> {
        label::check(label)?;
        let active = self.adopt(false)?;
        if active.as_deref() == Some(label) {
            return Ok(self.live_path());
        }
        if !self.exist() {
            // A single-account home: its one login answers to its default label.
            if let Ok(Some(live)) = self.store.load()
                && label::default_for(&live).as_deref() == Some(label)
            {
                return Ok(self.live_path());
            }
        }
        if self.has_account(label) {
            return Ok(self.account_path(label));
        }
        Err(AccountsError::NoSuchAccount { label: label.into(), known: self.labels()? })
    }

    /// Whether `label` is the active account (after adopting the live file).
    pub fn is_active(&self, label: &str) -> Result<bool, AccountsError> {
        Ok(self.adopt(false)?.as_deref() == Some(label))
    }

    /// Make `label` the active account: under the home's lock, the live file is written back to
    /// its account (registered first when it is new), then the account's file replaces it.
    pub fn switch(&self, label: &str) -> Result<Switched, AccountsError> {
        label::check(label)?;
        let _lock = AuthLock::acquire(&self.home, DEFAULT_WAIT)?;
        let from = self.adopt_locked(true)?;
        if from.as_deref() == Some(label) {
            return Ok(Switched { from: from.clone(), to: label.into(), already: true });
        }
        let store = self.account_store(label);
        let _account = AuthLock::acquire(store.dir(), DEFAULT_WAIT)?;
        let Some((bytes, place)) = store.read()? else {
            return Err(AccountsError::NoSuchAccount { label: label.into(), known: self.labels()? });
        };
        store.parse(&bytes, place)?;
        self.store.write(&bytes)?;
        Ok(Switched { from, to: label.into(), already: false })
    }

    /// Save the login a `login --as` wrote to `staged` as an account: under `wanted` (checked),
    /// else under the account with the same identity, else under its default label. The live
    /// login is adopted first (a single-account home becomes the first account), and the new one
    /// becomes active as `activate` says. A label taken by another identity is refused.
    pub fn add(&self, staged: &Path, wanted: Option<&str>, activate: Activate) -> Result<Added, AccountsError> {
        if let Some(w) = wanted {
            label::check(w)?;
        }
        let bytes = Store::file(staged).read()?.map(|(b, _)| b);
        let bytes = bytes.ok_or_else(|| AccountsError::NoLogin { path: staged.to_path_buf() })?;
        let file = AuthFile::parse(staged, &bytes)?;
        let id = identity(&file).ok_or_else(|| AccountsError::NoLogin { path: staged.to_path_buf() })?;
        let _lock = AuthLock::acquire(&self.home, DEFAULT_WAIT)?;
        let had_accounts = self.exist();
        let active = self.adopt_locked(true)?;
        let registered_first = if had_accounts { None } else { active.clone() };
        let existing = self.find(&id)?;
        let label = match (wanted, existing) {
            (_, Some(e)) => e,
            (Some(w), None) => {
                if self.has_account(w) {
                    let other = self
                        .account_store(w)
                        .load()?
                        .and_then(|f| label::default_for(&f))
                        .unwrap_or_else(|| "another login".into());
                    return Err(AccountsError::LabelTaken { label: w.into(), other });
                }
                w.to_string()
            }
            (None, None) => self.free_label(&label::default_for(&file).unwrap_or_else(|| "account".into()))?,
        };
        let replaced = self.has_account(&label);
        let make_active = match activate {
            Activate::Always => true,
            Activate::IfNone => active.is_none() || active.as_deref() == Some(label.as_str()),
        };
        {
            let store = self.account_store(&label);
            let _account = AuthLock::acquire(store.dir(), DEFAULT_WAIT)?;
            store.write(&bytes)?;
        }
        if make_active {
            self.store.write(&bytes)?;
        }
        Ok(Added { label, replaced, active: make_active, registered_first })
    }

    /// Forget `label` after its login was logged out: remove its directory.
    pub fn forget(&self, label: &str) -> Result<(), AccountsError> {
        label::check(label)?;
        self.account_store(label).remove()?;
        let dir = self.dir().join(label);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HomeError::io(&dir, e).into()),
        }
    }

    /// A private directory for a login to write its auth.json into before it is saved as an
    /// account ([`Accounts::add`]); removed when the value is dropped.
    pub fn staging(&self) -> Result<Staging, AccountsError> {
        let dir = self.dir().join(format!(".login-{}-{}", std::process::id(), crate::home::random_suffix()));
        crate::home::ensure_private_dir(&dir)?;
        Ok(Staging { dir })
    }
}

/// See [`Accounts::staging`].
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    pub fn auth_path(&self) -> PathBuf {
        self.dir.join(crate::home::AUTH_FILE)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
