//! Push targets: where a credential can be written other than this machine.
//!
//! [`spec`] parses what the user types (`docker:web`, `ssh:deploy@host:2222`); each kind of
//! target implements [`Target`]. This layer knows nothing of OAuth: it reads and writes the bytes
//! of an auth.json and reports owner and mode; `push` decides what to write.

pub mod docker;
pub mod resolve;
pub mod spec;
pub mod ssh;

use futures_util::future::BoxFuture;

pub use spec::{DockerSelector, TargetSpec};
pub use ssh::SshTarget;

/// Reports the step a target is on ("connecting", "resolving user", "uploading"...), for progress.
pub type StepFn<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A failure on one target: a one-line message, and optionally the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
    pub hint: Option<String>,
}

impl TargetError {
    pub fn new(message: impl Into<String>) -> TargetError {
        TargetError { message: message.into(), hint: None }
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
}

impl Location {
    pub fn auth_path(&self) -> String {
        format!("{}/{}", self.home.trim_end_matches('/'), crate::home::AUTH_FILE)
    }
}

/// Who a target is once resolved, independent of how it was named: aliases of one host, or a
/// name and a label that match one container, have the same identity. Kept in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Identity {
    Docker { container_id: String },
    Ssh { host_key: String, user: String, port: u16 },
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

    /// Who the target turned out to be, once `locate` succeeded.
    fn identity(&self) -> Option<Identity>;

    /// Delete auth.json (never through a symbolic link, never one owned by another user);
    /// `Ok(false)` when there was none.
    fn remove<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>>;
}
