//! The ledger (DESIGN.md §9): `$LLMX_HOME/ledger.json`, where this machine's login was pushed.
//!
//! One entry per destination (target + path): the target spec as typed (canonical form), the
//! resolved identity (container id; host-key fingerprint + user + port), the remote path, the
//! account id, and the SHA-256 and `last_refresh` of what was written, and when. No secrets.
//! Written atomically (0600) under its own lock (`ledger.json.lock`), so two commands that record
//! at once both land. Keys and fields this version does not know are kept. A ledger that does
//! not parse is an error naming the file, never silently replaced.

use crate::auth::file::AuthFile;
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::home::{HomeError, read_optional, write_private};
use crate::targets::Identity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Name of the ledger inside the home.
pub const LEDGER_FILE: &str = "ledger.json";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{}: not a valid ledger: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// One place a login was written to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The target as `TargetSpec` prints it (`docker:web`, `ssh:deploy@host:2222`).
    pub target: String,
    #[serde(default)]
    pub identity: Option<Identity>,
    /// auth.json on the target.
    pub path: String,
    #[serde(default)]
    pub account_id: Option<String>,
    /// SHA-256 (hex) of the bytes written.
    pub sha256: String,
    #[serde(default)]
    pub last_refresh: Option<String>,
    /// RFC 3339 time of the write.
    pub written_at: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Entry {
    /// The entry for `bytes` (a valid auth.json) written to `path` on `target`.
    pub fn new(target: &str, identity: Option<Identity>, path: &str, bytes: &[u8]) -> Entry {
        let file = AuthFile::parse(Path::new(path), bytes).ok();
        Entry {
            target: target.to_string(),
            identity,
            path: path.to_string(),
            account_id: file.as_ref().and_then(AuthFile::account_id),
            sha256: sha256_hex(bytes),
            last_refresh: file.and_then(|f| f.last_refresh),
            written_at: crate::auth::file::now_rfc3339(),
            extra: Default::default(),
        }
    }

    /// The credential directory on the target (what `--remote-home` would say).
    pub fn home(&self) -> &str {
        self.path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or(&self.path)
    }

    fn same_place(&self, other: &Entry) -> bool {
        self.path == other.path
            && (self.target == other.target || (self.identity.is_some() && self.identity == other.identity))
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default = "version")]
    pub version: u32,
    #[serde(default)]
    pub entries: Vec<Entry>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn version() -> u32 {
    1
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Ledger {
    pub fn path(home: &Path) -> PathBuf {
        home.join(LEDGER_FILE)
    }

    /// Read the ledger of the home `dir`; an empty one when there is none.
    pub fn load(dir: &Path) -> Result<Ledger, LedgerError> {
        let path = Ledger::path(dir);
        let Some(bytes) = read_optional(&path)? else { return Ok(Ledger { version: 1, ..Default::default() }) };
        serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt { path, reason: e.to_string() })
    }

    fn save(&self, dir: &Path) -> Result<(), LedgerError> {
        // Plain strings, numbers and JSON maps serialise into a Vec without failing.
        let bytes = serde_json::to_vec_pretty(self).expect("ledger serialises");
        Ok(write_private(&Ledger::path(dir), &bytes)?)
    }

    /// Load, change and save under the ledger's lock.
    pub fn update<T>(dir: &Path, change: impl FnOnce(&mut Ledger) -> T) -> Result<T, LedgerError> {
        let _lock = AuthLock::acquire_file(&dir.join("ledger.json.lock"), DEFAULT_WAIT)?;
        let mut ledger = Ledger::load(dir)?;
        let out = change(&mut ledger);
        ledger.save(dir)?;
        Ok(out)
    }

    /// Record `entry`, replacing the entry of the same destination (same target name or same
    /// identity, same path); unknown fields of the old entry are kept.
    pub fn upsert(&mut self, mut entry: Entry) {
        match self.entries.iter_mut().find(|e| e.same_place(&entry)) {
            Some(old) => {
                entry.extra = std::mem::take(&mut old.extra);
                *old = entry;
            }
            None => self.entries.push(entry),
        }
    }

    /// Forget the destination `target` + `path`; whether there was one.
    pub fn forget(&mut self, target: &str, path: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| !(e.target == target && e.path == path));
        before != self.entries.len()
    }

    /// The entry for `target` (the first one, when it was pushed to several paths).
    pub fn find(&self, target: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.target == target)
    }

    /// Put the entries of `targets` in that order, in the places they hold among the others
    /// (a push records each target as it finishes; its entries are then listed as typed).
    pub fn order_as(&mut self, targets: &[String]) {
        let rank = |e: &Entry| targets.iter().position(|t| *t == e.target);
        let slots: Vec<usize> = (0..self.entries.len()).filter(|i| rank(&self.entries[*i]).is_some()).collect();
        let mut ours: Vec<Entry> = slots.iter().map(|i| self.entries[*i].clone()).collect();
        ours.sort_by_key(|e| rank(e));
        for (slot, entry) in slots.into_iter().zip(ours) {
            self.entries[slot] = entry;
        }
    }
}

/// Record the holders of a push (or a sync) that now hold `bytes`: created, updated or unchanged.
pub fn record_push(dir: &Path, bytes: &[u8], reports: &[crate::push::TargetReport]) -> Result<(), LedgerError> {
    use crate::push::Outcome;
    let held: Vec<&crate::push::TargetReport> = reports
        .iter()
        .filter(|r| !r.dry_run && matches!(r.outcome, Outcome::Created | Outcome::Updated | Outcome::Unchanged))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Ledger::update(dir, |l| {
        for r in held {
            if let Some(path) = &r.path {
                l.upsert(Entry::new(&r.target, r.identity.clone(), path, bytes));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_unknown_keys_and_replaces_one_destination() {
        let t = tempfile::tempdir().unwrap();
        let text = r#"{"version":1,"entries":[{"target":"docker:a","path":"/r/.llmx/auth.json","sha256":"x","written_at":"t","future":1}],"later":true}"#;
        std::fs::write(t.path().join(LEDGER_FILE), text).unwrap();
        Ledger::update(t.path(), |l| {
            l.upsert(Entry::new("docker:a", None, "/r/.llmx/auth.json", b"{}"));
            l.upsert(Entry::new("docker:b", None, "/r/.llmx/auth.json", b"{}"));
        })
        .unwrap();
        let l = Ledger::load(t.path()).unwrap();
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.entries[0].extra["future"], 1);
        assert_eq!(l.extra["later"], true);
        assert_eq!(l.entries[0].home(), "/r/.llmx");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(t.path().join(LEDGER_FILE)).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn entries_recorded_as_targets_finished_are_listed_as_typed() {
        let mut l = Ledger::default();
        for t in ["docker:old", "docker:c", "docker:keep", "docker:a", "docker:b"] {
            l.upsert(Entry::new(t, None, "/r/.llmx/auth.json", b"{}"));
        }
        l.order_as(&["docker:a".into(), "docker:b".into(), "docker:c".into()]);
        let order: Vec<&str> = l.entries.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(order, ["docker:old", "docker:a", "docker:keep", "docker:b", "docker:c"]);
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_naming_the_file_and_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(LEDGER_FILE), "{not json").unwrap();
        let e = Ledger::update(t.path(), |_| ()).unwrap_err().to_string();
        assert!(e.contains("ledger.json: not a valid ledger"), "{e}");
        assert_eq!(std::fs::read_to_string(t.path().join(LEDGER_FILE)).unwrap(), "{not json");
    }
}
