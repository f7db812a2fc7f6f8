//! Where a login is kept: `$LLMX_HOME/auth.json`, the OS keyring, or both as the agent's `auto`
//! uses them (`cli_auth_credentials_store`, DESIGN.md §7). Every read and write of a login goes
//! through a [`Store`]; nothing else opens auth.json for the login.
//!
//! - `file`: auth.json (pretty JSON, atomic 0600 writes).
//! - `keyring`: the keyring entry only ([`keyring`]); saving deletes auth.json, removing deletes
//!   both, as the agent does.
//! - `auto`: the keyring first; the file when the keyring is empty or fails. A save goes to the
//!   keyring (and deletes auth.json); when the keyring fails it goes to the file. Unlike the
//!   agent, a read that finds both stores holding different logins says so, and a save that
//!   falls back to the file warns that the keyring may still hold an older one.
//!
//! What a store did is told through an observer (the library never prints): which store a read
//! or a write used, and why `auto` fell back.

pub mod keyring;

use crate::auth::file::{AuthFile, AuthFileError};
use crate::config::CredentialsStore;
use crate::home::{read_optional, remove_optional, write_private};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::keyring::{KeyringEntry, KeyringError};

/// Which of the two places held or took the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    File,
    Keyring,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::File => "file",
            Place::Keyring => "keyring",
        }
    }
}

/// What a store tells its observer.
#[derive(Debug, Clone)]
pub enum StoreNote {
    /// A read, write or removal used this place (`-v`).
    Used { op: &'static str, place: Place, name: String },
    /// `auto` could not use the keyring and used the file instead (a warning).
    FellBack { op: &'static str, error: KeyringError },
    /// Both places hold a login and they differ (the agent reads only one of them).
    Differ { read: Place },
}

type Observer = Arc<dyn Fn(&StoreNote) + Send + Sync>;

/// The login store of one home (or of one account's directory, a home of its own).
#[derive(Clone)]
pub struct Store {
    mode: CredentialsStore,
    path: PathBuf,
    keyring: KeyringEntry,
    observer: Option<Observer>,
    fell_back: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("mode", &self.mode).field("path", &self.path).finish()
    }
}

impl Store {
    /// The store `mode` for the auth.json at `path` (its directory is the home the keyring
    /// account is derived from).
    pub fn new(mode: CredentialsStore, path: &Path) -> Store {
        let dir = path.parent().unwrap_or(Path::new("."));
        Store {
            mode,
            path: path.to_path_buf(),
            keyring: KeyringEntry::for_home(dir),
            observer: None,
            fell_back: Default::default(),
        }
    }

    /// The file store at `path`.
    pub fn file(path: &Path) -> Store {
        Store::new(CredentialsStore::File, path)
    }

    /// The same kind of store for another auth.json path (an account's directory). It shares the
    /// fall-back: one Secret Service serves every entry, so a stalled one costs one time limit per
    /// command, not one per store.
    pub fn at(&self, path: &Path) -> Store {
        Store { observer: self.observer.clone(), fell_back: Arc::clone(&self.fell_back), ..Store::new(self.mode, path) }
    }

    /// Tell `observer` what the store does.
    pub fn observed(mut self, observer: impl Fn(&StoreNote) + Send + Sync + 'static) -> Store {
        self.observer = Some(Arc::new(observer));
        self
    }

    pub fn mode(&self) -> CredentialsStore {
        self.mode
    }

    /// The auth.json path (also where the home's lock and recovery files live).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The home directory of this store.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// How errors and reports name the place: the file's path, or the keyring entry.
    pub fn name_of(&self, place: Place) -> String {
        match place {
            Place::File => self.path.display().to_string(),
            Place::Keyring => format!("keyring \"{}\" account \"{}\"", keyring::SERVICE, self.keyring.account()),
        }
    }

    fn note(&self, note: StoreNote) {
        if let Some(o) = &self.observer {
            o(&note);
        }
    }

    /// `auto` could not use the keyring: say so, and remember it (status shows `auto → file`).
    fn fall_back(&self, op: &'static str, error: KeyringError) {
        self.fell_back.store(true, std::sync::atomic::Ordering::Relaxed);
        self.note(StoreNote::FellBack { op, error });
    }

    /// Whether `auto` fell back to the file because the keyring failed.
    pub fn fell_back(&self) -> bool {
        self.fell_back.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn used(&self, op: &'static str, place: Place) {
        self.note(StoreNote::Used { op, place, name: self.name_of(place) });
    }

    /// The stored login's bytes and where they came from; `None` when there is none. A keyring
    /// entry comes back pretty-printed, as llmx writes auth.json, so that bytes compare alike
    /// whichever place holds the login.
    pub fn read(&self) -> Result<Option<(Vec<u8>, Place)>, AuthFileError> {
        let file = || -> Result<Option<(Vec<u8>, Place)>, AuthFileError> {
            Ok(read_optional(&self.path)?.map(|b| (b, Place::File)))
        };
        let found = match self.mode {
            CredentialsStore::File => file()?,
            CredentialsStore::Keyring => self.keyring.get()?.map(|v| (pretty(v), Place::Keyring)),
            // Once the keyring failed, `auto` stays with the file for the rest of the command:
            // a stalled Secret Service costs one time limit, not one per call.
            CredentialsStore::Auto if self.fell_back() => file()?,
            CredentialsStore::Auto => match self.keyring.get() {
                Ok(Some(v)) => Some((pretty(v), Place::Keyring)),
                Ok(None) => file()?,
                Err(error) => {
                    self.fall_back("read", error);
                    file()?
                }
            },
        };
        let nothing = if self.fell_back() { Place::File } else { self.default_place() };
        self.used("read", found.as_ref().map_or(nothing, |(_, p)| *p));
        Ok(found)
    }

    /// The stored login, parsed and validated.
    pub fn load(&self) -> Result<Option<AuthFile>, AuthFileError> {
        self.load_with_place().map(|f| f.map(|(f, _)| f))
    }

    /// The stored login and where it came from.
    pub fn load_with_place(&self) -> Result<Option<(AuthFile, Place)>, AuthFileError> {
        match self.read()? {
            None => Ok(None),
            Some((bytes, place)) => Ok(Some((self.parse(&bytes, place)?, place))),
        }
    }

    /// Parse bytes read from `place`, errors naming it.
    pub fn parse(&self, bytes: &[u8], place: Place) -> Result<AuthFile, AuthFileError> {
        AuthFile::parse(Path::new(&self.name_of(place)), bytes)
    }

    /// Save a login given as auth.json bytes (the file gets them as they are; the keyring the
    /// same object as compact JSON). Where it went.
    pub fn write(&self, bytes: &[u8]) -> Result<Place, AuthFileError> {
        let to_file = || -> Result<Place, AuthFileError> {
            write_private(&self.path, bytes)?;
            Ok(Place::File)
        };
        let place = match self.mode {
            CredentialsStore::File => to_file()?,
            CredentialsStore::Keyring => self.to_keyring(bytes)?,
            CredentialsStore::Auto if self.fell_back() => to_file()?,
            CredentialsStore::Auto => match self.to_keyring(bytes) {
                Ok(p) => p,
                Err(AuthFileError::Keyring(error)) => {
                    self.fall_back("save", error);
                    to_file()?
                }
                Err(e) => return Err(e),
            },
        };
        self.used("save", place);
        Ok(place)
    }

    /// Save `file` (see [`Store::write`]).
    pub fn save(&self, file: &AuthFile) -> Result<Place, AuthFileError> {
        self.write(&file.to_bytes())
    }

    fn to_keyring(&self, bytes: &[u8]) -> Result<Place, AuthFileError> {
        let compact = compact(bytes).map_err(|reason| AuthFileError::Corrupt { path: self.path.clone(), reason })?;
        // The entry is named from the home's canonical path: the home must exist first.
        crate::home::ensure_private_dir(self.dir())?;
        self.keyring.set(compact)?;
        remove_optional(&self.path)?;
        Ok(Place::Keyring)
    }

    /// Remove the login from every place this store reads; whether anything was there.
    pub fn remove(&self) -> Result<bool, AuthFileError> {
        let from_keyring = match self.mode {
            CredentialsStore::File => false,
            CredentialsStore::Keyring => self.keyring.delete()?,
            CredentialsStore::Auto if self.fell_back() => false,
            CredentialsStore::Auto => match self.keyring.delete() {
                Ok(found) => found,
                Err(error) => {
                    self.fall_back("delete", error);
                    false
                }
            },
        };
        let from_file = remove_optional(&self.path)?;
        self.used("delete", self.default_place());
        Ok(from_keyring || from_file)
    }

    /// Both places' logins when this store reads the keyring and both hold one that differs
    /// (status warns: the agent reads only one of them). Errors count as "nothing there".
    pub fn differing(&self) -> Option<Place> {
        if self.mode == CredentialsStore::File || self.fell_back() {
            return None;
        }
        let file = read_optional(&self.path).ok().flatten()?;
        let entry = self.keyring.get().ok().flatten()?;
        let same = serde_json::from_slice::<serde_json::Value>(&file).ok()
            == serde_json::from_str::<serde_json::Value>(&entry).ok();
        (!same).then(|| {
            self.note(StoreNote::Differ { read: Place::Keyring });
            Place::Keyring
        })
    }

    /// How reports name this store: where a write goes first.
    pub fn describe(&self) -> String {
        self.name_of(self.default_place())
    }

    /// Where a write goes first.
    fn default_place(&self) -> Place {
        match self.mode {
            CredentialsStore::File => Place::File,
            CredentialsStore::Keyring | CredentialsStore::Auto => Place::Keyring,
        }
    }
}

/// A keyring value as auth.json bytes (pretty, key order kept); a value that is not JSON as it
/// is (parsing it then fails with the entry's name).
fn pretty(value: String) -> Vec<u8> {
    match serde_json::from_str::<serde_json::Value>(&value) {
        Ok(v) => serde_json::to_vec_pretty(&v).unwrap_or_else(|_| value.into_bytes()),
        Err(_) => value.into_bytes(),
    }
}

/// The auth.json object as compact JSON (key order kept), as the agent stores it.
fn compact(bytes: &[u8]) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| crate::text::json_error_summary(&e))?;
    serde_json::to_string(&value).map_err(|e| crate::text::json_error_summary(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_key_order_and_drops_whitespace() {
        let pretty = b"{\n  \"OPENAI_API_KEY\": null,\n  \"tokens\": {\"b\": 1, \"a\": 2}\n}";
        assert_eq!(compact(pretty).unwrap(), r#"{"OPENAI_API_KEY":null,"tokens":{"b":1,"a":2}}"#);
    }

    #[test]
    fn file_store_reads_and_writes_auth_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::file(&dir.path().join("auth.json"));
        assert!(store.read().unwrap().is_none());
        assert_eq!(store.write(b"{\"OPENAI_API_KEY\": \"k\"}").unwrap(), Place::File);
        assert_eq!(store.read().unwrap().unwrap().1, Place::File);
        assert!(store.remove().unwrap());
        assert!(!dir.path().join("auth.json").exists());
    }
}
