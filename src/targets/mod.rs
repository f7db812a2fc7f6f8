//! Push targets: where a credential can be written other than this machine.
//!
//! [`spec`] parses what the user types (`docker:web`, `ssh:deploy@host:2222`); each kind of
//! target implements [`Target`]. This layer knows nothing of OAuth: it reads and writes the bytes
//! of an auth.json and reports owner and mode; `push` decides what to write.
//!
//! Shared by every kind: [`conversation`] (write, move and read back through one shell on an exec
//! API, whatever the runtime), the read cap [`MAX_READ`], [`deadline`] (one overall time budget
//! per target, applied by [`resolve`] to every target it returns), and [`judge_dir`], the one rule
//! for which existing credential directory may be written into (and when it is tightened to 0700).

pub mod conversation;
pub mod deadline;
pub mod docker;
pub mod k8s;
pub mod resolve;
pub mod spec;
pub mod ssh;

use futures_util::future::BoxFuture;

pub use spec::{DockerSelector, TargetSpec};
pub use ssh::SshTarget;

/// Reports the step a target is on ("connecting", "resolving user", "uploading"...), for progress.
pub type StepFn<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A failure on one target: a one-line message, optionally the command that fixes it, and what
/// kind of failure it is (the CLI's exit code when it is the only target).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
    pub hint: Option<String>,
    pub kind: ErrorKind,
}

/// What kind of failure a [`TargetError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorKind {
    #[default]
    Failed,
    /// The Docker Engine or the SSH host could not be reached (or did not answer in time).
    Unreachable,
    /// A credential or trust decision is needed: the host refused every key, its host key is
    /// not known yet.
    AuthNeeded,
    /// The name now reaches another place than the one the ledger records (a container or pod
    /// recreated under the same name): the copy written there went with the old one.
    Replaced,
}

impl TargetError {
    pub fn new(message: impl Into<String>) -> TargetError {
        TargetError { message: message.into(), hint: None, kind: ErrorKind::Failed }
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> TargetError {
        self.kind = kind;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> TargetError {
        self.hint = Some(hint.into());
        self
    }
}

/// Where the credential lives on a target, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The credential directory (absolute path on the target).
    pub home: String,
    /// Owner (uid, gid) of what is created, when the target says.
    pub owner: Option<(u32, u32)>,
    /// The agent's `cli_auth_credentials_store` in the target home's config.toml (`file` when
    /// unset), read by the conversation that located the home (`None`: not read on this path).
    pub store: Option<String>,
    /// Asked of [`Target::write`] (push `--store file`): also set `cli_auth_credentials_store =
    /// "file"` in that config.toml, in the same conversation; [`Target::file_store_set`] says
    /// whether it did.
    pub file_store: bool,
}

impl Location {
    pub fn auth_path(&self) -> String {
        format!("{}/{}", self.home.trim_end_matches('/'), crate::home::AUTH_FILE)
    }
}

/// The largest file or remote command output read from a target (the transport's cap).
pub use crate::ssh::MAX_READ;

/// A regular file read from a target, with its owner and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub bytes: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// What a target says about an existing credential directory, seen without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFacts {
    pub kind: DirKind,
    /// The owner, when the target says.
    pub uid: Option<u32>,
    /// Permission bits with setuid/setgid/sticky (e.g. 0o1777 for `/tmp`).
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    Dir,
    Link,
    Other,
}

/// What to do with an acceptable existing credential directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirVerdict {
    /// Already 0700 (or `/`, which is never re-moded).
    Keep,
    /// llmx's own default directory (`…/.llmx`), the user's and not writable by others, but
    /// readable by them: chmod it 0700.
    Tighten,
}

/// The rule for an existing credential directory `path`, on every kind of target: never through a
/// symbolic link (a writer running as root would follow it anywhere), only the target user's own
/// (`want_uid`), never one that others can write to (a shared or sticky directory such as `/tmp`:
/// another user could read or swap the credential) — each refused with the reason, never
/// silently re-owned or re-moded. Only a directory named `.llmx` (llmx's default) is tightened
/// to 0700; any other existing directory (one named by `--remote-home` or `LLMX_HOME`: `/etc` of
/// a root container, a home) is written into as it is — auth.json itself is 0600 either way.
/// The `Err` is the reason, for "refusing to write PATH: REASON".
pub fn judge_dir(path: &str, facts: &DirFacts, want_uid: Option<u32>) -> Result<DirVerdict, String> {
    match facts.kind {
        DirKind::Dir => {}
        DirKind::Link => {
            return Err("the credential directory is a symbolic link, which llmx does not follow; \
                        name the real directory with --remote-home"
                .into());
        }
        DirKind::Other => return Err("it exists and is not a directory".into()),
    }
    let foreign = match (want_uid, facts.uid) {
        (Some(want), Some(have)) if want != have => {
            Some(format!("the directory belongs to uid {have}, not to the target user (uid {want})"))
        }
        _ => None,
    };
    let shared = (facts.mode & 0o022 != 0).then(|| {
        let what = if facts.mode & 0o1000 != 0 { "a shared sticky directory such as /tmp" } else { "shared" };
        format!(
            "the directory is writable by other users (mode {:04o}, {what}): they could read or replace the \
             credential; point LLMX_HOME or --remote-home at a private directory (llmx creates it 0700)",
            facts.mode & 0o7777
        )
    });
    match (foreign, shared) {
        (Some(f), Some(s)) => return Err(format!("{f}; {s}")),
        (Some(r), None) | (None, Some(r)) => return Err(r),
        (None, None) => {}
    }
    let ours = path.trim_end_matches('/').rsplit('/').next() == Some(".llmx");
    if facts.mode & 0o7777 == 0o700 || !ours { Ok(DirVerdict::Keep) } else { Ok(DirVerdict::Tighten) }
}

/// Who a target is once resolved, independent of how it was named: aliases of one host, or a
/// name and a label that match one container, have the same identity. Kept in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Identity {
    Docker {
        container_id: String,
    },
    Ssh {
        host_key: String,
        user: String,
        port: u16,
    },
    /// A pod's container (`object`: `pod/NAME/CONTAINER`, with the pod's `uid`) or a Secret
    /// (`secret/NAME`: the Secret is the place, whatever its UID).
    K8s {
        server: String,
        namespace: String,
        object: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
    },
}

impl Identity {
    /// Whether `now` (what a target resolved to today) is still the place this identity was
    /// recorded for: the same container, the same host key, account and port, the same pod. A
    /// field the record lacks (an older ledger's) is not held against it.
    pub fn same_place(&self, now: &Identity) -> bool {
        match (self, now) {
            (
                Identity::K8s { server, namespace, object, uid },
                Identity::K8s { server: s2, namespace: n2, object: o2, uid: u2 },
            ) => server == s2 && namespace == n2 && object == o2 && (uid.is_none() || u2.is_none() || uid == u2),
            (a, b) => a == b,
        }
    }

    /// Says what changed, for a message: "container 3f2a1b4c5d6e is now 9a8b7c6d5e4f".
    pub fn change(&self, now: &Identity) -> String {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        match (self, now) {
            (Identity::Docker { container_id: a }, Identity::Docker { container_id: b }) => {
                format!(
                    "the container the ledger records ({}) is gone: the name is now container {}",
                    short(a),
                    short(b)
                )
            }
            (Identity::Ssh { host_key: a, .. }, Identity::Ssh { host_key: b, .. }) if a != b => {
                format!("the host key recorded ({a}) is not the host's now ({b})")
            }
            (Identity::K8s { uid: Some(a), .. }, Identity::K8s { uid: Some(b), .. }) if a != b => {
                format!("the pod the ledger records (UID {}) is gone: the name is now pod UID {}", short(a), short(b))
            }
            _ => "it resolves to another place than the one recorded".into(),
        }
    }
}

/// How old a temp file left beside auth.json must be before a write removes it: a younger one
/// may belong to a push that is still running (another alias of the same host, another llmx).
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The target's current auth.json and what its metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub bytes: Vec<u8>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Permission bits (e.g. 0o600).
    pub mode: Option<u32>,
}

/// One destination (a container, a host). Object-safe so that the push engine can fan out over a
/// `Vec<Box<dyn Target>>` of mixed kinds. Connections are made lazily in `locate`, so one
/// unreachable target fails alone.
pub trait Target: Send {
    /// The name used in outcome lines and `--json`, e.g. `docker:web` or `ssh:deploy@host`.
    fn label(&self) -> String;

    /// Connect and resolve the credential directory: `remote_home` when given, else the target's
    /// own `LLMX_HOME`, else `<home of the target user>/.llmx`. Writes nothing.
    fn locate<'a>(
        &'a mut self,
        remote_home: Option<&'a str>,
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<Location, TargetError>>;

    /// The current auth.json, `None` when there is none. Writes nothing.
    fn read<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>>;

    /// Replace auth.json with `bytes`: directory 0700 and file 0600, owned by the target user,
    /// atomically where the target allows it; then read it back and compare SHA-256.
    fn write<'a>(
        &'a mut self,
        loc: &'a Location,
        bytes: &'a [u8],
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Who the target turned out to be, as far as `locate` got: a container's ID and a pod's UID
    /// are known before the exec that reads it, so a recreated place is recognised even when that
    /// exec fails.
    fn identity(&self) -> Option<Identity>;

    /// Delete auth.json (never through a symbolic link, never one owned by another user);
    /// `Ok(false)` when there was none.
    fn remove<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>>;

    /// After a [`Target::write`] asked to (see [`Location::file_store`]): whether the target's
    /// config.toml now sets `cli_auth_credentials_store = "file"`. `None`: not asked, or this
    /// target's write path cannot (no shell).
    fn file_store_set(&self) -> Option<bool> {
        None
    }

    /// Whether [`Target::remove`] could ever delete what was written, once located: `Err(why)`
    /// for a place llmx cannot delete from at all (a container without a shell).
    fn removable(&self) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_directories_that_are_linked_foreign_or_shared_are_refused() {
        let dir = |mode, uid| DirFacts { kind: DirKind::Dir, uid: Some(uid), mode };
        // Refused: a link, not a directory, someone else's (root's /etc for uid 1000), and
        // every mode that lets group or others write (sticky or not), even when it is ours.
        let refused = [
            (DirFacts { kind: DirKind::Link, uid: Some(1000), mode: 0o777 }, "symbolic link"),
            (DirFacts { kind: DirKind::Other, uid: Some(1000), mode: 0o600 }, "not a directory"),
            (dir(0o755, 0), "belongs to uid 0"),
            (dir(0o700, 1001), "belongs to uid 1001"),
            (dir(0o1777, 1000), "sticky"),
            (dir(0o1777, 0), "belongs to uid 0"),
            (dir(0o1777, 0), "writable by other users (mode 1777, a shared sticky"),
            (dir(0o770, 1000), "writable by other users (mode 0770"),
            (dir(0o702, 1000), "writable by other users"),
            (dir(0o2775, 1000), "writable by other users"),
        ];
        for (facts, why) in refused {
            let e = judge_dir("/x", &facts, Some(1000)).unwrap_err();
            assert!(e.contains(why), "{facts:?}: {e}");
        }
        // Root's own sticky /tmp is refused too.
        assert!(judge_dir("/tmp", &dir(0o1777, 0), Some(0)).unwrap_err().contains("sticky"));
        // Accepted: ours and private (kept), ours and readable by others (tightened).
        assert_eq!(judge_dir("/x", &dir(0o700, 1000), Some(1000)), Ok(DirVerdict::Keep));
        assert_eq!(judge_dir("/home/u/.llmx", &dir(0o755, 1000), Some(1000)), Ok(DirVerdict::Tighten));
        assert_eq!(judge_dir("/home/u/.llmx/", &dir(0o750, 1000), Some(1000)), Ok(DirVerdict::Tighten));
        assert_eq!(judge_dir("/", &dir(0o755, 0), Some(0)), Ok(DirVerdict::Keep));
    }

    #[test]
    fn an_existing_directory_named_by_remote_home_is_never_chmodded() {
        let dir = |mode, uid| DirFacts { kind: DirKind::Dir, uid: Some(uid), mode };
        // A root container's /etc, a user's home, a shared project directory of the user's own.
        for (path, mode, uid) in
            [("/etc", 0o755, 0), ("/root", 0o750, 0), ("/home/u", 0o755, 1000), ("/srv/x/", 0o711, 1000)]
        {
            assert_eq!(judge_dir(path, &dir(mode, uid), Some(uid)), Ok(DirVerdict::Keep), "{path}");
        }
        // Still refused when others can write to it or it is someone else's.
        assert!(judge_dir("/etc", &dir(0o755, 0), Some(1000)).is_err());
        assert!(judge_dir("/srv/x", &dir(0o775, 1000), Some(1000)).is_err());
    }
}
