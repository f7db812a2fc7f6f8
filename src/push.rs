//! The push engine: where the local credential meets the targets (DESIGN.md §4, §5).
//!
//! For each target, with at most `jobs` at a time: locate the credential home, read the current
//! auth.json, decide, write, and report an [`Outcome`]. The credential is usually a *lease*
//! (DESIGN.md §10: the owner's file with an empty refresh token, made by `family::lease`), which
//! cannot burn the lineage; `--full` pushes the whole login. The decision guards the places that
//! hold a login of their own: identical bytes are `unchanged`; a target holding a *fresher* full
//! login of the same account (`last_refresh` newer) is `skipped` unless `force` (overwriting it
//! would replace a live refresh token with one the issuer may already have rotated); so is a
//! full login this machine never pushed there (its own lineage, e.g. from `auth tunnel`) and a
//! login of another account. Copying a refresh token to a target gets a
//! [`Warning::RotationHazard`], given after the writes (a dry run, or a push that wrote nothing,
//! has no hazard); leases and API keys push freely.
//!
//! A malformed local auth.json cannot reach this module: [`LocalCredential`] validates it, so it
//! is refused before any target is touched. Nothing here prints: progress and results are
//! [`PushEvent`]s given to a callback, and the CLI renders them.

use crate::auth::claims::IdClaims;
use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::status::StatusReport;
use crate::targets::{Identity, Location, StepFn, Target, TargetError};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The credential to push: the local auth.json, validated, and its exact bytes.
#[derive(Debug, Clone)]
pub struct LocalCredential {
    path: PathBuf,
    file: AuthFile,
    bytes: Vec<u8>,
    /// For a lease: the owner's refresh token, kept only to recognise a copy of the same lineage
    /// on a target (compared in memory, never written or shown).
    lineage: Option<crate::secret::Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("not logged in: {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error(transparent)]
    Invalid(#[from] AuthFileError),
    /// A valid file with neither an API key nor tokens: pushing it would replace a target's
    /// working login with nothing.
    #[error("not logged in: {} holds no API key and no ChatGPT tokens", path.display())]
    Empty { path: PathBuf },
}

impl LocalCredential {
    /// Read and validate the login in `store` (as auth.json bytes, whichever place holds it).
    pub fn load(store: &crate::auth::store::Store) -> Result<LocalCredential, LocalError> {
        match store.read()? {
            None => Err(LocalError::Missing { path: store.path().to_path_buf() }),
            Some((bytes, place)) => LocalCredential::from_bytes(std::path::Path::new(&store.name_of(place)), bytes),
        }
    }

    /// Validate `bytes` as an auth.json that holds a credential; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<LocalCredential, LocalError> {
        let file = AuthFile::parse(path, &bytes)?;
        if file.api_key().is_none() && file.tokens.is_none() {
            return Err(LocalError::Empty { path: path.to_path_buf() });
        }
        Ok(LocalCredential { path: path.to_path_buf(), file, bytes, lineage: None })
    }

    /// The credential to push in place of `owner`: `lease` (the owner's lease bytes), which
    /// remembers the owner's lineage so that a hand-made copy of it is recognised on a target.
    pub fn as_lease(owner: &LocalCredential, lease: Vec<u8>) -> Result<LocalCredential, LocalError> {
        let mut l = LocalCredential::from_bytes(&owner.path, lease)?;
        l.lineage = owner.file.tokens.as_ref().map(|t| t.refresh_token.clone());
        Ok(l)
    }

    /// The refresh token of the lineage this credential belongs to (its own, or its owner's).
    fn lineage_token(&self) -> Option<&crate::secret::Secret> {
        self.lineage.as_ref().or(self.file.tokens.as_ref().map(|t| &t.refresh_token)).filter(|t| !t.is_empty())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &AuthFile {
        &self.file
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether pushing this credential copies a ChatGPT refresh token (the rotation hazard).
    pub fn has_chatgpt_tokens(&self) -> bool {
        self.file.tokens.as_ref().is_some_and(|t| !t.refresh_token.is_empty())
    }

    /// Whether this is a lease: ChatGPT tokens without a refresh token.
    pub fn is_lease(&self) -> bool {
        self.file.tokens.as_ref().is_some_and(|t| t.refresh_token.is_empty())
    }

    /// Unix time of the access token's `exp`, when it is a JWT.
    pub fn access_expiry(&self) -> Option<i64> {
        crate::auth::claims::expiry(self.file.tokens.as_ref()?.access_token.expose())
    }
}

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Targets worked on at the same time (`--jobs`); `None`: as wide as [`crate::fanout::width`]
    /// allows.
    pub jobs: Option<usize>,
    /// Overwrite a target that holds a fresher login of the same account.
    pub force: bool,
    /// Resolve and decide, write nothing.
    pub dry_run: bool,
    /// Credential home on every target, instead of the target's own.
    pub remote_home: Option<String>,
    /// Labels of targets this login was pushed to before (the ledger's): a fresher copy there has
    /// refreshed on its own and can be pulled back; a fresher login elsewhere is its own lineage.
    pub pushed_before: Vec<String>,
    /// `--store file`: on a target whose agent reads its keyring (`keyring`/`auto` in its
    /// config.toml), also set `cli_auth_credentials_store = "file"` there (see
    /// [`Location::file_store`]); such a target is written even when its auth.json is unchanged.
    pub store_file: bool,
    /// Cancelled on an interrupt: targets not yet writing stop at once (failed, [`INTERRUPTED`]);
    /// a write already under way finishes, so that what was written is known and recorded.
    pub stop: CancellationToken,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            jobs: None,
            force: false,
            dry_run: false,
            remote_home: None,
            pushed_before: Vec::new(),
            store_file: false,
            stop: CancellationToken::new(),
        }
    }
}

/// The reason of a target the interrupt stopped before anything was written to it.
pub const INTERRUPTED: &str = "interrupted before anything was written";

/// `f`, unless the push is stopped first.
async fn unless_stopped<T>(
    stop: &CancellationToken,
    f: impl std::future::Future<Output = Result<T, TargetError>>,
) -> Result<T, TargetError> {
    tokio::select! {
        biased;
        () = stop.cancelled() => Err(TargetError::new(INTERRUPTED)),
        r = f => r,
    }
}

/// What happened on one target (what would happen, in a dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Skipped,
    Failed,
    /// `auth remove` deleted the file.
    Removed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] =
        [Outcome::Created, Outcome::Updated, Outcome::Unchanged, Outcome::Skipped, Outcome::Removed, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Removed => "removed",
        }
    }
}

/// The result for one target. Field names are the stable `--json` form; nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetReport {
    pub target: String,
    /// The auth.json path on the target, once resolved.
    pub path: Option<String>,
    pub outcome: Outcome,
    /// True when nothing was written because of `--dry-run`.
    pub dry_run: bool,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// The command that fixes a failure, when known.
    pub hint: Option<String>,
    /// When another target of this command resolved to the same destination (an alias of the
    /// same host, a label matching a named container): that target's name. It was written once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    /// When the lease the target now holds expires (RFC 3339; a lease push or renewal only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// Why llmx could never remove what it wrote there (a container without a shell).
    #[serde(skip)]
    pub cannot_remove: Option<String>,
    /// Who the target turned out to be (for the ledger; not part of `--json`).
    #[serde(skip)]
    pub identity: Option<Identity>,
    /// The agent's `cli_auth_credentials_store` there (`file` when its config.toml sets none),
    /// after the push: `--store file` changes it; `None` where config.toml is not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// `--store file` on a target whose agent read its keyring: whether config.toml now says
    /// `cli_auth_credentials_store = "file"` (`false`: it could not be changed; see `store`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_set_to_file: Option<bool>,
}

impl TargetReport {
    /// A report with only the target, the outcome and a reason.
    pub fn new(target: String, outcome: Outcome, reason: Option<String>) -> TargetReport {
        TargetReport {
            target,
            path: None,
            outcome,
            dry_run: false,
            reason,
            hint: None,
            same_as: None,
            lease_expires_at: None,
            cannot_remove: None,
            identity: None,
            store: None,
            store_set_to_file: None,
        }
    }
}

/// Something the user should know about the whole push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// ChatGPT tokens were copied to `targets` places: the copies share one refresh token, and
    /// the first copy that refreshes invalidates the others.
    RotationHazard { targets: usize },
    /// A whole ChatGPT login or an API key (neither expires on its own) was written where llmx
    /// can never remove it (containers without a shell): the targets. A lease expires, so it is
    /// not warned about.
    CannotRemove { targets: Vec<String>, api_key: bool },
    /// The agent on these targets reads its login from the OS keyring (their config.toml sets
    /// `cli_auth_credentials_store`): with `keyring` a pushed auth.json is ignored, with `auto`
    /// a keyring entry there shadows it.
    AgentReadsKeyring { keyring: Vec<String>, auto: Vec<String> },
}

/// How to make the agent on a target read the auth.json llmx writes there.
pub const KEYRING_TARGET_HINT: &str = "push with `--store file` (it also sets cli_auth_credentials_store = \"file\" \
     in that config.toml, keeping the rest), or sign the target in with its own login: `llmx auth tunnel TARGET`";

impl Warning {
    /// A stable identifier for `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Warning::RotationHazard { .. } => "rotation_hazard",
            Warning::CannotRemove { .. } => "cannot_remove",
            Warning::AgentReadsKeyring { .. } => "agent_reads_keyring",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Warning::RotationHazard { targets } => format!(
                "--full copied a whole ChatGPT login (its refresh token) to {targets} target{}: the provider \
                 rotates refresh tokens, so the first copy that refreshes (this machine or a target) signs \
                 every other copy out (refresh_token_reused)",
                if *targets == 1 { "" } else { "s" }
            ),
            Warning::CannotRemove { targets, api_key } => format!(
                "the {} written to {} cannot be taken back: {} no /bin/sh, and the Engine API cannot delete files",
                if *api_key { "API key" } else { "whole login" },
                targets.join(", "),
                if targets.len() == 1 { "the container has" } else { "these containers have" }
            ),
            Warning::AgentReadsKeyring { keyring, auto } => {
                let mut parts = Vec::new();
                if !keyring.is_empty() {
                    parts.push(format!(
                        "the agent on {} reads its login from the OS keyring (cli_auth_credentials_store = \"keyring\" \
                         in its config.toml): the auth.json pushed there is ignored",
                        keyring.join(", ")
                    ));
                }
                if !auto.is_empty() {
                    parts.push(format!(
                        "the agent on {} reads the OS keyring first (cli_auth_credentials_store = \"auto\"): a keyring \
                         entry there shadows the auth.json pushed there",
                        auto.join(", ")
                    ));
                }
                parts.join("; ")
            }
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Warning::RotationHazard { .. } => {
                "push without --full (a lease: access only, renewed by `llmx auth sync`), give each machine \
                 its own login with `llmx auth tunnel HOST`, or push an API key"
            }
            Warning::CannotRemove { api_key: false, .. } => {
                "push a lease there instead (without --full): it stops working when it expires; to be rid of \
                 this copy, recreate the container"
            }
            Warning::CannotRemove { api_key: true, .. } => {
                "to be rid of it, recreate the container, or revoke the key in the provider's dashboard; a \
                 ChatGPT lease expires on its own"
            }
            Warning::AgentReadsKeyring { .. } => KEYRING_TARGET_HINT,
        }
    }
}

/// Progress, in the order it happens. `index` is the target's position in the input.
#[derive(Debug)]
pub enum PushEvent<'a> {
    Warning(&'a Warning),
    /// Every target, once, before any work starts.
    Queued {
        index: usize,
        target: &'a str,
    },
    /// A target moved on to a step ("connecting", "uploading"...).
    Step {
        index: usize,
        step: &'a str,
    },
    Done {
        index: usize,
        report: &'a TargetReport,
    },
}

/// A callback receiving [`PushEvent`]s; called from the push's own task, never concurrently.
pub type EventFn<'a> = &'a (dyn Fn(PushEvent<'_>) + Send + Sync);

/// Everything a push did: one report per target, in input order, and the warnings given.
#[derive(Debug, Clone, Default)]
pub struct PushSummary {
    pub reports: Vec<TargetReport>,
    pub warnings: Vec<Warning>,
}

impl PushSummary {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.reports.iter().filter(|r| r.outcome == outcome).count()
    }

    /// Exit status rule: success only when no target failed.
    pub fn all_ok(&self) -> bool {
        self.count(Outcome::Failed) == 0
    }
}

/// Push `local` to every target, `opts.jobs` at a time (default: [`crate::fanout::width`]).
pub async fn push(
    local: &LocalCredential,
    targets: Vec<Box<dyn Target>>,
    opts: &PushOptions,
    on_event: EventFn<'_>,
) -> PushSummary {
    let labels: Vec<String> = targets.iter().map(|t| t.label()).collect();
    for (index, target) in labels.iter().enumerate() {
        on_event(PushEvent::Queued { index, target });
    }
    let mut reports: Vec<Option<TargetReport>> = vec![None; targets.len()];
    let width = crate::fanout::width(targets.len(), opts.jobs);
    let claims = Destinations::default();
    let claims = &claims;
    let mut runs = futures_util::stream::iter(targets.into_iter().enumerate())
        .map(|(index, target)| async move { (index, push_one(local, target, opts, index, on_event, claims).await) })
        .buffer_unordered(width);
    while let Some((index, report)) = runs.next().await {
        on_event(PushEvent::Done { index, report: &report });
        reports[index] = Some(report);
    }
    let reports: Vec<TargetReport> = reports.into_iter().flatten().collect();
    let mut warnings = rotation_warning(local, &reports).into_iter().collect::<Vec<_>>();
    let api_key = local.file().tokens.is_none() && local.file().api_key().is_some();
    let stuck: Vec<String> = reports
        .iter()
        .filter(|r| (local.has_chatgpt_tokens() || api_key) && !r.dry_run && r.cannot_remove.is_some())
        .filter(|r| matches!(r.outcome, Outcome::Created | Outcome::Updated))
        .map(|r| r.target.clone())
        .collect();
    if !stuck.is_empty() {
        warnings.push(Warning::CannotRemove { targets: stuck, api_key });
    }
    let reading = |store: &str| -> Vec<String> {
        let of = |r: &&TargetReport| r.store.as_deref() == Some(store) && r.outcome != Outcome::Failed;
        reports.iter().filter(of).map(|r| r.target.clone()).collect()
    };
    let (keyring, auto) = (reading("keyring"), reading("auto"));
    if !keyring.is_empty() || !auto.is_empty() {
        warnings.push(Warning::AgentReadsKeyring { keyring, auto });
    }
    for w in &warnings {
        on_event(PushEvent::Warning(w));
    }
    PushSummary { reports, warnings }
}

/// The rotation hazard is real once a ChatGPT login was written to a second place: not on a dry
/// run, not when every target failed, was skipped or already held the same bytes. Destinations
/// written once for several aliases count once.
fn rotation_warning(local: &LocalCredential, reports: &[TargetReport]) -> Option<Warning> {
    let written = reports
        .iter()
        .filter(|r| !r.dry_run && r.same_as.is_none() && matches!(r.outcome, Outcome::Created | Outcome::Updated))
        .count();
    (local.has_chatgpt_tokens() && written > 0).then_some(Warning::RotationHazard { targets: written })
}

async fn push_one(
    local: &LocalCredential,
    mut target: Box<dyn Target>,
    opts: &PushOptions,
    index: usize,
    on_event: EventFn<'_>,
    claims: &Destinations,
) -> TargetReport {
    let step = move |s: &str| on_event(PushEvent::Step { index, step: s });
    let label = target.label();
    let mut path = None;
    let mut same_as = None;
    let mut store = None;
    let mut store_set_to_file = None;
    let result = match unless_stopped(&opts.stop, target.locate(opts.remote_home.as_deref(), &step)).await {
        Err(e) => Err(e),
        Ok(mut loc) => {
            path = Some(loc.auth_path());
            store = loc.store.clone();
            loc.file_store = opts.store_file && store.as_deref().is_some_and(|s| s != "file");
            let identity = target.identity();
            let (cell, first) = claims.claim(identity.as_ref(), &loc, &label);
            same_as = first;
            if same_as.is_some() {
                step("same destination as another target: waiting for it");
            }
            let result = cell.get_or_init(|| write_steps(local, target.as_mut(), &loc, opts, &step)).await.clone();
            if loc.file_store
                && same_as.is_none()
                && !opts.dry_run
                && matches!(result, Ok(Decision::Write(_) | Decision::Unchanged))
            {
                let set = target.file_store_set() == Some(true);
                store_set_to_file = Some(set);
                if set {
                    store = Some("file".into());
                }
            }
            result
        }
    };
    let (outcome, reason, hint) = match result {
        Ok(Decision::Write(o)) => (o, None, None),
        Ok(Decision::Unchanged) => (Outcome::Unchanged, None, None),
        Ok(Decision::Skip(why, hint)) => (Outcome::Skipped, Some(why), Some(hint.replace("TARGET", &label))),
        Err(e) => (Outcome::Failed, Some(e.message), e.hint),
    };
    let identity = target.identity();
    let lease_expires_at = (local.is_lease()
        && matches!(outcome, Outcome::Created | Outcome::Updated | Outcome::Unchanged))
    .then(|| local.access_expiry().and_then(crate::auth::status::format_unix))
    .flatten();
    let cannot_remove = target.removable().err();
    TargetReport {
        target: label,
        path,
        outcome,
        dry_run: opts.dry_run,
        reason,
        hint,
        same_as,
        lease_expires_at,
        cannot_remove,
        identity,
        store,
        store_set_to_file,
    }
}

/// Targets of one push that resolve to the same destination (identity + path) share one write:
/// the first one does it, the others wait for its result (DESIGN.md §9, issue 11 item 9).
#[derive(Default)]
struct Destinations {
    cells: Mutex<HashMap<String, (Arc<DecisionCell>, String)>>,
}

type DecisionCell = OnceCell<Result<Decision, TargetError>>;

impl Destinations {
    /// The shared cell of this destination, and the target that claimed it first when that was
    /// another one (also one typed the same way twice); `None` for the first claim and for a
    /// target without an identity (it is its own destination).
    fn claim(&self, identity: Option<&Identity>, loc: &Location, label: &str) -> (Arc<DecisionCell>, Option<String>) {
        let Some(identity) = identity else { return (Arc::new(OnceCell::new()), None) };
        let key = format!("{identity:?} {}", loc.auth_path());
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        match cells.get(&key) {
            Some((cell, first)) => (cell.clone(), Some(first.clone())),
            None => {
                let cell = Arc::new(OnceCell::new());
                cells.insert(key, (cell.clone(), label.to_string()));
                (cell, None)
            }
        }
    }
}

async fn write_steps(
    local: &LocalCredential,
    target: &mut dyn Target,
    loc: &Location,
    opts: &PushOptions,
    step: StepFn<'_>,
) -> Result<Decision, TargetError> {
    step("reading the current credential");
    let current = unless_stopped(&opts.stop, target.read(loc)).await?;
    let label = target.label();
    let pushed_before = opts.pushed_before.contains(&label);
    let decision =
        decide(local, current.as_ref().map(|f| f.bytes.as_slice()), &loc.auth_path(), opts.force, pushed_before);
    // `--store file` changes the target's config.toml in the write's conversation: that needs a
    // write, also of an auth.json that is already the same.
    let store_only = loc.file_store && decision == Decision::Unchanged;
    if (matches!(decision, Decision::Write(_)) || store_only) && !opts.dry_run {
        if opts.stop.is_cancelled() {
            return Err(TargetError::new(INTERRUPTED));
        }
        // Not raced against the interrupt: once started, a write finishes and is reported.
        target.write(loc, local.bytes(), step).await?;
    }
    Ok(decision)
}

/// What to do with a target, given its current auth.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write, reporting `Created` or `Updated`.
    Write(Outcome),
    Unchanged,
    /// Leave it: the reason and the command that would change it, for the user.
    Skip(String, String),
}

/// The rotation guard and the own-lineage guard. `remote_path` names the target's file in the
/// reason; `pushed_before`: the ledger says this machine wrote there before.
pub fn decide(
    local: &LocalCredential,
    remote: Option<&[u8]>,
    remote_path: &str,
    force: bool,
    pushed_before: bool,
) -> Decision {
    let Some(remote) = remote else { return Decision::Write(Outcome::Created) };
    if remote == local.bytes() {
        return Decision::Unchanged;
    }
    if force {
        return Decision::Write(Outcome::Updated);
    }
    // A target file we cannot parse is replaced: it is no working login.
    let Ok(theirs) = AuthFile::parse(Path::new(remote_path), remote) else { return Decision::Write(Outcome::Updated) };
    let ours = local.file();
    let same = match (Owner::of(ours), Owner::of(&theirs)) {
        (Some(a), Some(b)) => a.same_account(&b),
        // One side holds no ChatGPT login (an API key): no lineage to protect.
        _ => return Decision::Write(Outcome::Updated),
    };
    let theirs_full = theirs.tokens.as_ref().is_some_and(|t| !t.refresh_token.is_empty());
    if same == Sameness::Different {
        let what = if theirs_full { "a login of another account" } else { "a lease of another account" };
        return Decision::Skip(
            format!("the target holds {what}"),
            "leave it, or add --force to replace it with this login".into(),
        );
    }
    if !theirs_full {
        // A lease of this account: replaced by the current copy.
        return Decision::Write(Outcome::Updated);
    }
    // A copy of this very lineage (the same refresh token, e.g. copied by hand): ours to update
    // unless it is fresher, which cannot be with the same token.
    let same_lineage =
        local.lineage_token().is_some_and(|rt| theirs.tokens.as_ref().is_some_and(|t| t.refresh_token == *rt));
    let which = match same {
        Sameness::Unknown => "a login that may be of the same account (neither account id nor email to compare)",
        _ => "a login of the same account",
    };
    let fresher = match (ours.last_refresh_time(), theirs.last_refresh_time()) {
        (mine, Some(t)) => mine.is_none_or(|m| t > m),
        _ => false,
    };
    let times = format!(
        "last refresh {} there vs {} here",
        theirs.last_refresh.as_deref().unwrap_or("?"),
        ours.last_refresh.as_deref().unwrap_or("never")
    );
    if pushed_before && fresher {
        return Decision::Skip(
            format!("your copy here is retired: the target refreshed the copy pushed to it ({times})"),
            "adopt its copy with `llmx auth pull TARGET` (or add --force to overwrite it)".into(),
        );
    }
    if !pushed_before && !same_lineage {
        return Decision::Skip(
            format!("the target holds its own sign-in, {which} ({times})"),
            "it is its own lineage (e.g. from `llmx auth tunnel`): leave it, or add --force to replace it".into(),
        );
    }
    Decision::Write(Outcome::Updated)
}

/// Whether two ChatGPT logins belong to the same account, as far as their files tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sameness {
    Same,
    Different,
    /// Nothing to compare on both sides: treated as the same account by the guard (the safe
    /// direction: a fresher target is kept unless `--force`).
    Unknown,
}

/// Who a file with ChatGPT tokens belongs to: the account id (`tokens.account_id`, else the
/// id_token claim) and the id_token's email claim.
struct Owner {
    account: Option<String>,
    email: Option<String>,
}

impl Owner {
    fn of(f: &AuthFile) -> Option<Owner> {
        let t = f.tokens.as_ref()?;
        let claims = IdClaims::parse(t.id_token.expose()).ok();
        let account = t.account_id.clone().or_else(|| claims.as_ref()?.account_id.clone());
        let email = claims.and_then(|c| c.email);
        Some(Owner { account, email })
    }

    /// Account ids when both sides have one, else emails when both have one, else unknown.
    fn same_account(&self, other: &Owner) -> Sameness {
        let verdict = |same: bool| if same { Sameness::Same } else { Sameness::Different };
        if let (Some(a), Some(b)) = (&self.account, &other.account) {
            return verdict(a == b);
        }
        if let (Some(a), Some(b)) = (&self.email, &other.email) {
            return verdict(a.eq_ignore_ascii_case(b));
        }
        Sameness::Unknown
    }
}

/// The credential on one target, for `llmx auth status TARGET`. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteStatus {
    pub target: String,
    pub auth_file: String,
    #[serde(flatten)]
    pub report: StatusReport,
    /// Owner and mode of the file, when it exists.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Octal text, e.g. "0600".
    pub mode: Option<String>,
    /// The agent's `cli_auth_credentials_store` there (`file` when its config.toml sets none;
    /// `null` when the path that located the home does not read config.toml).
    pub store: Option<String>,
}

/// Locate and read a target's auth.json and describe it. Of the target's own config.toml only
/// `cli_auth_credentials_store` is read (by the conversation that locates the home): with both an
/// API key and tokens in the file, `preferred` decides what is shown.
pub async fn remote_status(
    target: &mut dyn Target,
    remote_home: Option<&str>,
    preferred: crate::config::Preference,
    step: StepFn<'_>,
) -> Result<RemoteStatus, TargetError> {
    let loc = target.locate(remote_home, step).await?;
    let path = loc.auth_path();
    step("reading the credential");
    let file = target.read(&loc).await?;
    let parsed = match &file {
        None => None,
        Some(f) => Some(AuthFile::parse(Path::new(&path), &f.bytes).map_err(|e| TargetError::new(e.to_string()))?),
    };
    Ok(RemoteStatus {
        target: target.label(),
        auth_file: path,
        report: StatusReport::build(preferred, None, parsed.as_ref()),
        uid: file.as_ref().and_then(|f| f.uid),
        gid: file.as_ref().and_then(|f| f.gid),
        mode: file.as_ref().and_then(|f| f.mode).map(|m| format!("{m:04o}")),
        store: loc.store.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{AUTH_CLAIMS, test_jwt};
    use serde_json::json;

    fn chatgpt(account: &str, last_refresh: Option<&str>, rt: &str) -> Vec<u8> {
        let id = test_jwt(&json!({"email": "a@b.c", AUTH_CLAIMS: {"chatgpt_account_id": account}}));
        let mut v = json!({"OPENAI_API_KEY": null, "tokens": {"id_token": id, "access_token": "at", "refresh_token": rt, "account_id": null}});
        if let Some(t) = last_refresh {
            v["last_refresh"] = json!(t);
        }
        serde_json::to_vec_pretty(&v).unwrap()
    }

    fn local(bytes: Vec<u8>) -> LocalCredential {
        LocalCredential::from_bytes(Path::new("/l/auth.json"), bytes).unwrap()
    }

    #[test]
    fn rotation_guard() {
        let old = "2025-01-01T00:00:00Z";
        let new = "2025-02-01T00:00:00Z";
        let me = local(chatgpt("acc-1", Some(old), "rt1"));
        let d = |remote: &[u8], force| decide(&me, Some(remote), "/r/auth.json", force, true);
        assert_eq!(decide(&me, None, "/r", false, false), Decision::Write(Outcome::Created));
        assert_eq!(d(me.bytes(), false), Decision::Unchanged);
        assert_eq!(d(me.bytes(), true), Decision::Unchanged);
        assert!(matches!(d(&chatgpt("acc-1", Some(new), "rt2"), false), Decision::Skip(r, _) if r.contains("retired")));
        assert!(matches!(d(&chatgpt("acc-1", Some(new), "rt2"), true), Decision::Write(Outcome::Updated)));
        assert_eq!(d(&chatgpt("acc-1", Some(old), "rt2"), false), Decision::Write(Outcome::Updated));
        assert!(
            matches!(d(&chatgpt("acc-2", Some(new), "rt2"), false), Decision::Skip(r, _) if r.contains("another account"))
        );
        assert_eq!(d(&chatgpt("acc-2", Some(new), "rt2"), true), Decision::Write(Outcome::Updated));
        assert_eq!(d(b"{not json", false), Decision::Write(Outcome::Updated));
        let key = br#"{"OPENAI_API_KEY": "sk-x"}"#;
        assert_eq!(d(key, false), Decision::Write(Outcome::Updated));
        let never = local(chatgpt("acc-1", None, "rt1"));
        let got = decide(&never, Some(&chatgpt("acc-1", Some(old), "r")), "/r", false, true);
        assert!(matches!(got, Decision::Skip(..)));
    }

    #[test]
    fn a_target_that_signed_in_on_its_own_is_skipped_unless_forced() {
        let (old, new) = ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z");
        let me = local(chatgpt("acc-1", Some(new), "rt1"));
        // Older than ours, but never pushed from here: its own lineage.
        let own = chatgpt("acc-1", Some(old), "rt-own");
        let got = decide(&me, Some(&own), "/r", false, false);
        assert!(
            matches!(&got, Decision::Skip(r, h) if r.contains("its own sign-in") && h.contains("--force")),
            "{got:?}"
        );
        assert_eq!(decide(&me, Some(&own), "/r", true, false), Decision::Write(Outcome::Updated));
        // A copy of this very lineage (its refresh token), made by hand: ours to update.
        let owner = local(chatgpt("acc-1", Some(new), "rt1"));
        let lease = LocalCredential::as_lease(&owner, chatgpt("acc-1", Some(new), "")).unwrap();
        let copied = chatgpt("acc-1", Some(old), "rt1");
        assert_eq!(decide(&lease, Some(&copied), "/r", false, false), Decision::Write(Outcome::Updated));
        // A lease there (of this account) is simply replaced.
        assert_eq!(
            decide(&me, Some(&chatgpt("acc-1", Some(old), "")), "/r", false, false),
            Decision::Write(Outcome::Updated)
        );
    }

    /// An auth.json whose tokens carry no `account_id` and an id_token with only `claims`.
    fn chatgpt_claims(claims: serde_json::Value, last_refresh: &str, rt: &str) -> Vec<u8> {
        let v = json!({"OPENAI_API_KEY": null, "last_refresh": last_refresh,
            "tokens": {"id_token": test_jwt(&claims), "access_token": "at", "refresh_token": rt, "account_id": null}});
        serde_json::to_vec_pretty(&v).unwrap()
    }

    #[test]
    fn fresher_target_without_account_ids_is_not_overwritten() {
        let (old, new) = ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z");
        let d = |mine: serde_json::Value, theirs: serde_json::Value| {
            let me = local(chatgpt_claims(mine, old, "rt1"));
            decide(&me, Some(&chatgpt_claims(theirs, new, "rt2")), "/r/auth.json", false, true)
        };
        // No account id on either side: the email decides.
        let skip = d(json!({"email": "a@b.c"}), json!({"email": "A@b.c"}));
        assert!(matches!(&skip, Decision::Skip(r, _) if r.contains("retired")), "{skip:?}");
        let other = d(json!({"email": "a@b.c"}), json!({"email": "x@y.z"}));
        assert!(matches!(&other, Decision::Skip(r, _) if r.contains("another account")), "{other:?}");
        // Neither account id nor email on both sides: possibly the same account, so kept.
        for (mine, theirs) in [
            (json!({}), json!({})),
            (json!({"email": "a@b.c"}), json!({})),
            (json!({AUTH_CLAIMS: {"chatgpt_account_id": "acc-1"}}), json!({"email": "a@b.c"})),
        ] {
            let got = d(mine, theirs);
            assert!(matches!(&got, Decision::Skip(..)), "{got:?}");
        }
        // With --force it is replaced; an older target pushed from here is replaced anyway.
        let me = local(chatgpt_claims(json!({}), new, "rt1"));
        let older = chatgpt_claims(json!({}), old, "rt2");
        assert_eq!(decide(&me, Some(&older), "/r", false, true), Decision::Write(Outcome::Updated));
        let me = local(chatgpt_claims(json!({}), old, "rt1"));
        let newer = chatgpt_claims(json!({}), new, "rt2");
        assert_eq!(decide(&me, Some(&newer), "/r", true, true), Decision::Write(Outcome::Updated));
    }

    #[test]
    fn malformed_local_file_is_refused() {
        assert!(LocalCredential::from_bytes(Path::new("/l/auth.json"), b"{\"tokens\": 1}".to_vec()).is_err());
    }

    #[test]
    fn local_file_without_a_credential_is_not_pushed() {
        for empty in [&b"{}"[..], br#"{"OPENAI_API_KEY": null}"#, br#"{"OPENAI_API_KEY": "", "x": 1}"#] {
            let e = LocalCredential::from_bytes(Path::new("/l/auth.json"), empty.to_vec()).unwrap_err();
            assert!(matches!(e, LocalError::Empty { .. }), "{e}");
        }
    }
}
