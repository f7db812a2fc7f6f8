//! The ledger (DESIGN.md §9): `$LLMX_HOME/ledger.json`, where this machine's login was pushed.
//!
//! One entry per destination (target + path): the target spec as typed (canonical form), the
//! resolved identity (container id; host-key fingerprint + user + port), the remote path, the
//! account id, and the SHA-256 and `last_refresh` of what was written, and when; what kind of
//! copy it is (lease, full, own, api-key) and when a lease's access token expires; and the
//! [`Route`] the push took (`-J`, kubeconfig/context, Docker engine), so every later command
//! reaches the holder the same way. No secrets.
//! Written atomically (0600) under its own lock (`ledger.json.lock`), so two commands that record
//! at once both land. Keys and fields this version does not know are kept. A ledger that does
//! not parse is an error naming the file, never silently replaced.

use super::lease::{Kind, access_expiry};
use crate::auth::file::AuthFile;
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::status::format_unix;
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
    /// What was written (absent in entries of older versions: full copies or API keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// RFC 3339 expiry of the access token written (a lease is usable until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// How the push reached the target.
    #[serde(default, skip_serializing_if = "Route::is_empty")]
    pub route: Route,
    /// The label of the account pushed there (`auth push --account`, DESIGN.md §11); absent in
    /// entries of a home without accounts and of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
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
            kind: file.as_ref().map(Kind::of_written),
            expires_at: file.as_ref().and_then(access_expiry).and_then(format_unix),
            last_refresh: file.and_then(|f| f.last_refresh),
            written_at: crate::auth::file::now_rfc3339(),
            route: Route::default(),
            account: None,
            extra: Default::default(),
        }
    }

    /// A place that signed in on its own (`auth tunnel`): its own lineage of `account_id`,
    /// recorded so that `where` is the one inventory of where this account is signed in from
    /// here. Nothing was written by this machine, so there is no hash.
    pub fn own(target: &str, path: &str, account_id: Option<String>, last_refresh: Option<String>) -> Entry {
        Entry {
            target: target.to_string(),
            identity: None,
            path: path.to_string(),
            account_id,
            sha256: String::new(),
            kind: Some(Kind::Own),
            expires_at: None,
            last_refresh,
            written_at: crate::auth::file::now_rfc3339(),
            route: Route::default(),
            account: None,
            extra: Default::default(),
        }
    }

    /// What the place holds: as recorded, else (an entry of an older version) a full copy when
    /// it names an account, an API key otherwise.
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(if self.account_id.is_some() { Kind::Full } else { Kind::ApiKey })
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

/// How a push reached its target, as given then: recorded per entry (only what applies to the
/// target's kind) and used again by `where`, `sync`, `pull`, `remove` and `logout --everywhere`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `-J` as given (comma-separated jump hosts, or `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `DOCKER_HOST` and `DOCKER_CONTEXT` at the time of the push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_context: Option<String>,
}

impl Route {
    pub fn is_empty(&self) -> bool {
        *self == Route::default()
    }

    /// The part of the route that applies to the target `label` (`ssh:…` keeps the jump hosts,
    /// `k8s:…` the kubeconfig and context, `docker:…` the engine).
    pub fn for_target(&self, label: &str) -> Route {
        let kind = label.split_once(':').map(|(k, _)| k).unwrap_or("");
        match kind {
            "ssh" => Route { jump: self.jump.clone(), ..Route::default() },
            "k8s" => Route { kubeconfig: self.kubeconfig.clone(), context: self.context.clone(), ..Route::default() },
            "docker" => Route {
                docker_host: self.docker_host.clone(),
                docker_context: self.docker_context.clone(),
                ..Route::default()
            },
            _ => Route::default(),
        }
    }

    /// `base` (the command's options) with this route in place of the command's, for a target
    /// of the ledger: it is reached as it was pushed.
    pub fn apply(&self, base: &crate::targets::resolve::ResolveOptions) -> crate::targets::resolve::ResolveOptions {
        let mut o = base.clone();
        o.ssh.jump = self.jump.as_deref().and_then(|j| crate::ssh::parse_jump_list(j).ok());
        if self.kubeconfig.is_some() || self.context.is_some() {
            o.k8s.kubeconfig = self.kubeconfig.clone().map(Into::into);
            o.k8s.context = self.context.clone();
        }
        // An engine named at push time is used again; none named (the environment's default then,
        // or an entry of an older version) leaves this command's environment to decide.
        if self.docker_host.is_some() || self.docker_context.is_some() {
            o.docker.recorded = Some((self.docker_host.clone(), self.docker_context.clone()));
        }
        o
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
        serde_json::from_slice(&bytes)
            .map_err(|e| LedgerError::Corrupt { path, reason: crate::text::json_error_summary(&e) })
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
                // A rewrite of the same lineage (a sync) keeps the account it is bound to.
                if entry.account.is_none() && entry.account_id.is_some() && entry.account_id == old.account_id {
                    entry.account = old.account.take();
                }
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

/// Record the holders of a push that now hold `bytes`: created, updated or unchanged, each with
/// the part of `route` that applies to it.
pub fn record_push(
    dir: &Path,
    bytes: &[u8],
    reports: &[crate::push::TargetReport],
    route: &Route,
) -> Result<(), LedgerError> {
    let items: Vec<(&crate::push::TargetReport, &[u8])> = reports.iter().map(|r| (r, bytes)).collect();
    record_written(dir, &items, Some(route))
}

/// Record each holder that now holds its bytes (a sync writes leases to some, full copies to
/// others). `route`: the route of this command (a push), or `None` to keep each entry's
/// recorded route (a sync reaches holders the way they were pushed).
pub fn record_written(
    dir: &Path,
    items: &[(&crate::push::TargetReport, &[u8])],
    route: Option<&Route>,
) -> Result<(), LedgerError> {
    use crate::push::Outcome;
    let held: Vec<&(&crate::push::TargetReport, &[u8])> = items
        .iter()
        .filter(|(r, _)| !r.dry_run && matches!(r.outcome, Outcome::Created | Outcome::Updated | Outcome::Unchanged))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Ledger::update(dir, |l| {
        for (r, bytes) in held {
            if let Some(path) = &r.path {
                let mut entry = Entry::new(&r.target, r.identity.clone(), path, bytes);
                match route {
                    Some(route) => entry.route = route.for_target(&r.target),
                    None => {
                        if let Some(old) = l.entries.iter().find(|e| e.same_place(&entry)) {
                            entry.route = old.route.clone();
                        }
                    }
                }
                l.upsert(entry);
            }
        }
    })
}

/// Bind the destinations a push wrote to the account `label` (recorded after [`record_push`]).
pub fn bind_account(dir: &Path, reports: &[crate::push::TargetReport], label: &str) -> Result<(), LedgerError> {
    use crate::push::Outcome;
    let places: Vec<(&str, &str)> = reports
        .iter()
        .filter(|r| !r.dry_run && matches!(r.outcome, Outcome::Created | Outcome::Updated | Outcome::Unchanged))
        .filter_map(|r| Some((r.target.as_str(), r.path.as_deref()?)))
        .collect();
    if places.is_empty() {
        return Ok(());
    }
    Ledger::update(dir, |l| {
        for e in &mut l.entries {
            if places.iter().any(|(t, p)| e.target == *t && e.path == *p) {
                e.account = Some(label.to_string());
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

    /// Issue 21 item 6: the error names the file and where, never a value from it.
    #[test]
    fn a_corrupt_ledger_error_never_quotes_the_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(LEDGER_FILE), r#"{"entries": "sk-LEAKED-value"}"#).unwrap();
        let e = Ledger::load(t.path()).unwrap_err().to_string();
        assert!(e.contains("ledger.json: not a valid ledger") && !e.contains("LEAKED"), "{e}");
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
