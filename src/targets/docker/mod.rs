//! The Docker target: a container reached through the Engine API (bollard), no `docker` CLI.
//!
//! * **Fast path.** A running container with `/bin/sh` is handled by one `exec` conversation
//!   as the container's user ([`session`], the bollard adapter of
//!   [`crate::targets::conversation`]): it reads, writes atomically and reads back. Each
//!   archive request costs the engine a helper process, so this is several times cheaper; the
//!   archive path below is used when the container is stopped or paused, has no shell, or the
//!   exec route fails (e.g. the credential directory is not writable by the container's user).
//!   An auth.json the user cannot read (root's 0600 file, as `docker cp` leaves it) keeps the
//!   fast path: it is read through the archive API (one request) and the conversation replaces
//!   it with the user's own file (a rename in the user's own directory, which [`judge_dir`]
//!   allows); the ownership is corrected on the way.
//! * **Who and where.** The container's `Config.User` is resolved to uid/gid/home from its own
//!   `/etc/passwd` (and `/etc/group`), read through the archive API, so containers without a
//!   shell work. The credential home is `--remote-home`, else `LLMX_HOME` from the container's
//!   environment, else `$HOME/.llmx` from that environment, else `<passwd home>/.llmx`.
//! * **Writing.** A tar is uploaded whose headers carry the owner and the modes (directory 0700,
//!   file 0600). The tar is extracted into the credential directory's parent and carries the
//!   directory entry itself, so a missing directory is created (the engine answers 404 for a
//!   missing destination; when the parent is missing too, the tar is extracted at `/` and the
//!   engine creates the missing parents, root-owned 0755, as `mkdir -p` run by root would). An
//!   existing directory is judged first by [`judge_dir`] (read through the archive API without
//!   following a link): a link, another user's directory or one others can write to (`/tmp`) is
//!   refused, so root never re-owns or re-modes a directory that is not the user's; the directory
//!   entry (0700) is only sent for a missing directory or the user's own that needs tightening.
//! * **Atomicity.** On the fast path, and on the archive path when the container runs and has
//!   `/bin/sh`, the file is written beside auth.json under a temporary name and moved over it
//!   with `mv -f` (one `rename(2)`): a reader sees the old file or the new one. Otherwise (stopped container, no shell, exec refused) the
//!   file is uploaded in place; the engine then removes the old file and writes the new one, so
//!   a process reading at that instant can find no file or a partial one. On a stopped container
//!   nothing runs, so nothing can observe that; in a running shell-less container the window is
//!   one small write.
//! * **No credential left behind.** Before a temporary file is written, temp files an earlier
//!   push left (`.auth.json.llmx-*`, older than ten minutes) are removed. On the archive path a shell is run (as root,
//!   as the engine writes) *before* the temporary file is uploaded, so a shell that cannot run
//!   means an in-place upload with no temporary file; a failed `mv` removes its temporary file.
//!   Only if exec stops working between those two steps is the temporary file overwritten with
//!   an empty one (the archive API cannot delete), which the next push removes.
//! * **Links.** An auth.json or a credential directory that is a symbolic link is refused, as on
//!   SSH hosts (and neither is read through): writing through it could overwrite another file.
//! * **Verification.** The file is read back through the archive API and its SHA-256, owner and
//!   mode are compared with what was sent.

pub(crate) mod archive;
pub mod connect;
mod over_ssh;
mod session;
pub mod tls;
mod transport;
pub mod user;

use crate::targets::conversation::WriteError;
use crate::targets::{
    DirFacts, DirKind, DirVerdict, FileEntry, Identity, Location, RemoteFile, StepFn, Target, TargetError, judge_dir,
};
use archive::{ArchiveError, Links, Upload};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::ListContainersOptionsBuilder;
use connect::{Engine, error_text};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use session::Session;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What `locate` learnt about the container, used by `read` and `write`.
#[derive(Debug, Clone)]
struct Resolved {
    running: bool,
    has_shell: bool,
    uid: u32,
    gid: u32,
}

/// One container, by name or ID.
pub struct DockerTarget {
    engine: Engine,
    container: String,
    resolved: Option<Resolved>,
    /// The container's ID, known once it was inspected (before the exec that may still fail).
    id: Option<String>,
    /// The exec conversation of the fast path, when it is in use (see [`session`]).
    session: Option<Session>,
    /// What the last write did with `--store file` (see [`Target::file_store_set`]).
    file_store_set: Option<bool>,
    /// The current auth.json (or why it is refused), when `locate` already read it.
    prefetched: Option<Result<Option<FileEntry>, TargetError>>,
}

impl DockerTarget {
    pub fn new(engine: Engine, container: impl Into<String>) -> DockerTarget {
        DockerTarget {
            engine,
            container: container.into(),
            resolved: None,
            id: None,
            session: None,
            prefetched: None,
            file_store_set: None,
        }
    }

    /// What `locate` learnt, and the container's ID.
    fn located(&self) -> Result<(Resolved, String), TargetError> {
        match (&self.resolved, &self.id) {
            (Some(r), Some(id)) => Ok((r.clone(), id.clone())),
            _ => Err(TargetError::new("internal error: container used before it was located")),
        }
    }
}

/// The names of every running container carrying every one of `labels` (`KEY` or `KEY=VALUE`), sorted.
pub async fn containers_with_labels(engine: &Engine, labels: &[String]) -> Result<Vec<String>, TargetError> {
    let docker = engine.get().await?;
    let filter = labels.join(", ");
    let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
    let opts = ListContainersOptionsBuilder::default().all(false).filters(&filters).build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| TargetError::new(format!("listing containers with label {filter}: {}", error_text(&e))))?;
    let mut names: Vec<String> = list
        .into_iter()
        .filter_map(|c| {
            let name = c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string());
            name.or(c.id)
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The container's user (`Config.User` as `user_spec`) resolved from its own `/etc/passwd` and
/// `/etc/group`, read through the archive API (no shell needed).
pub async fn container_user(docker: &Docker, id: &str, user_spec: &str) -> Result<user::ResolvedUser, TargetError> {
    let want_group = user::needs_group_file(user_spec);
    let (passwd, group) =
        futures_util::try_join!(archive::read_file(docker, id, "/etc/passwd", Links::Follow), async {
            if want_group { archive::read_file(docker, id, "/etc/group", Links::Follow).await } else { Ok(None) }
        },)
        .map_err(archive_err("reading the container's user database"))?;
    let text = |f: &Option<archive::FileEntry>| f.as_ref().map(|f| String::from_utf8_lossy(&f.bytes).into_owned());
    user::resolve(user_spec, text(&passwd).as_deref(), text(&group).as_deref())
        .map_err(|e| TargetError::new(format!("container user: {e}")))
}

fn archive_err(what: &str) -> impl Fn(ArchiveError) -> TargetError + '_ {
    move |e| match e {
        ArchiveError::Symlink { path } => symlink_refused(&path),
        e => TargetError::new(format!("{what}: {e}")),
    }
}

/// An auth.json that is a symbolic link, refused as the SSH target does.
pub(crate) fn symlink_refused(path: &str) -> TargetError {
    TargetError::new(format!(
        "refusing to write {path}: it is a symbolic link (writing through it could overwrite another file)"
    ))
    .with_hint("remove the link in the container and push again")
}

/// An auth.json the target's user cannot read, where nothing else can read it for us.
pub(crate) fn unreadable_refused(path: &str) -> TargetError {
    TargetError::new(format!("cannot read {path}: the target's user may not read it (another user's file?)"))
        .with_hint("make it readable by the user the agent runs as (or remove it) and push again")
}

/// A credential directory that is a symbolic link, refused by the one rule ([`judge_dir`]).
pub(crate) fn dir_link_refused(home: &str) -> TargetError {
    let link = DirFacts { kind: DirKind::Link, uid: None, mode: 0 };
    let reason = judge_dir(home, &link, None).err().unwrap_or_default();
    TargetError::new(format!("refusing to write {home}: {reason}"))
}

/// Prefix of the temporary files written beside auth.json (the exec script uses it too).
const TEMP_PREFIX: &str = ".auth.json.llmx-";

/// A path we are willing to write to: absolute, no `.`/`..` components; returned without a
/// trailing slash (`/` stays `/`).
pub(crate) fn clean_home(path: &str, origin: &str) -> Result<String, TargetError> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "." || c == "..") {
        return Err(TargetError::new(format!("{origin} '{path}' must be an absolute path without '.' or '..'")));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    Ok(format!("/{}", parts.join("/")))
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('='))).filter(|v| !v.is_empty())
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

impl DockerTarget {
    async fn do_locate(&mut self, remote_home: Option<&str>, step: StepFn<'_>) -> Result<Location, TargetError> {
        step("connecting");
        let docker = self.engine.get().await?.clone();
        step("inspecting");
        let info = match docker.inspect_container(&self.container, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Err(TargetError::new(format!("no such container: {}", self.container))
                    .with_hint("list containers with `docker ps -a`"));
            }
            Err(e) => return Err(TargetError::new(format!("inspecting {}: {}", self.container, error_text(&e)))),
        };
        let id = info.id.clone().unwrap_or_else(|| self.container.clone());
        // Known now, before an exec that may still fail: a recreated container is told apart
        // even when it cannot be read.
        self.id = Some(id.clone());
        let state = info.state.as_ref();
        let running = state.and_then(|s| s.running).unwrap_or(false) && !state.and_then(|s| s.paused).unwrap_or(false);
        let config = info.config.unwrap_or_default();
        let user_spec = config.user.unwrap_or_default();
        let env = config.env.unwrap_or_default();

        if running && archive::exists(&docker, &id, "/bin/sh").await.map_err(archive_err("looking for a shell"))? {
            step("reading through exec");
            match session::open(&docker, &id, remote_home).await {
                Ok((session, h)) => {
                    let home = clean_home(&h.home, "the credential home")?;
                    let auth = join(&home, crate::home::AUTH_FILE);
                    // An auth.json the user cannot read (root's, as `docker cp` leaves it) is
                    // read through the archive API, one request (the shell has just seen that
                    // neither it nor its directory is a link; the read refuses a link anyway);
                    // the conversation still replaces it.
                    self.prefetched = Some(match (h.dir_link, h.symlink, h.unreadable) {
                        (true, _, _) => Err(dir_link_refused(&home)),
                        (_, true, _) => Err(symlink_refused(&auth)),
                        (_, _, true) => archive::read_file(&docker, &id, &auth, Links::Refuse)
                            .await
                            .map_err(archive_err("reading the current credential")),
                        _ => Ok(h.current),
                    });
                    self.resolved = Some(Resolved { running, has_shell: true, uid: h.uid, gid: h.gid });
                    self.session = Some(session);
                    return Ok(Location {
                        home,
                        owner: Some((h.uid, h.gid)),
                        store: h.store.clone(),
                        file_store: false,
                    });
                }
                Err(session::Unavailable::Hostile(why)) => {
                    return Err(TargetError::new(why));
                }
                Err(session::Unavailable::Exec(why)) => {
                    let why: String = why.chars().take(80).collect();
                    step(&format!("exec unusable ({why}): using the archive API"));
                }
            }
        }
        step("resolving user");
        let (who, shell) = futures_util::try_join!(container_user(&docker, &id, &user_spec), async {
            archive::exists(&docker, &id, "/bin/sh").await.map_err(archive_err("looking for a shell"))
        })?;

        let home = match (remote_home, env_value(&env, "LLMX_HOME"), env_value(&env, "HOME")) {
            (Some(h), _, _) => clean_home(h, "--remote-home")?,
            (None, Some(h), _) => clean_home(h, "the container's LLMX_HOME")?,
            (None, None, Some(h)) => join(&clean_home(h, "the container's HOME")?, ".llmx"),
            (None, None, None) => join(&clean_home(&who.home, "the user's home")?, ".llmx"),
        };
        self.resolved = Some(Resolved { running, has_shell: shell, uid: who.uid, gid: who.gid });
        Ok(Location { home, owner: Some((who.uid, who.gid)), store: None, file_store: false })
    }

    async fn do_read(&mut self, loc: &Location) -> Result<Option<RemoteFile>, TargetError> {
        let (_, id) = self.located()?;
        let f = match self.prefetched.take() {
            Some(f) => f?,
            None => {
                let docker = self.engine.get().await?.clone();
                // Never read through a linked directory either (it may lead to root's login).
                let dir = archive::lstat(&docker, &id, &loc.home)
                    .await
                    .map_err(archive_err("checking the credential directory"))?;
                if dir.is_some_and(|d| d.kind == DirKind::Link) {
                    return Err(dir_link_refused(&loc.home));
                }
                archive::read_file(&docker, &id, &loc.auth_path(), Links::Refuse)
                    .await
                    .map_err(archive_err("reading the current credential"))?
            }
        };
        Ok(f.map(|f| RemoteFile { bytes: f.bytes, uid: Some(f.uid), gid: Some(f.gid), mode: Some(f.mode) }))
    }

    async fn do_write(&mut self, loc: &Location, bytes: &[u8], step: StepFn<'_>) -> Result<(), TargetError> {
        let (r, id) = self.located()?;
        let final_path = loc.auth_path();
        if let Some(session) = self.session.take() {
            step("writing through exec");
            match session.write(bytes, loc.file_store).await {
                Ok(written) => {
                    self.file_store_set = written.file_store;
                    return verify(&final_path, &written.file, bytes, &r);
                }
                // The directory itself is refused: the archive path (as root) must not try.
                Err(WriteError::Refused(e)) => return Err(e),
                Err(WriteError::Failed(_)) => step("exec write refused: using the archive API"),
            }
        }
        let docker = self.engine.get().await?.clone();
        let home = loc.home.clone();
        // The archive API writes as root: judge the directory as it is, never through a link,
        // and only re-apply 0700 (with the owner it already has) to the user's own directory.
        let dir =
            archive::lstat(&docker, &id, &home).await.map_err(archive_err("checking the credential directory"))?;
        let dir_entry = match dir {
            None => true,
            Some(facts) => match judge_dir(&home, &facts, Some(r.uid)) {
                Ok(v) => v == DirVerdict::Tighten,
                Err(reason) => return Err(TargetError::new(format!("refusing to write {home}: {reason}"))),
            },
        };

        // A shell that runs is needed for the atomic replace; find out before a temporary file
        // exists (and remove those an earlier push left), so that no working shell means no
        // temporary file. The directory may not exist yet: then there is nothing to remove.
        let shell_works = r.running
            && r.has_shell
            && matches!(exec(&docker, &id, &["/bin/sh", "-c", CLEAN_SCRIPT, "sh", &home]).await, ExecResult::Ok);
        if shell_works {
            let tmp_name = format!("{TEMP_PREFIX}{}", crate::home::random_suffix());
            step("uploading");
            upload_into(&docker, &id, &r, &home, dir_entry, &tmp_name, bytes).await?;
            step("moving into place");
            let tmp_path = join(&home, &tmp_name);
            match exec(&docker, &id, &["/bin/sh", "-c", MOVE_SCRIPT, "sh", &tmp_path, &final_path]).await {
                ExecResult::Ok => {}
                ExecResult::CannotRun => {
                    // The shell stopped working since the check (container paused or stopped):
                    // the archive API cannot delete, so blank the temporary file, then upload
                    // in place. The next push removes the empty file.
                    step("uploading (no working shell)");
                    upload_into(&docker, &id, &r, &home, dir_entry, &tmp_name, b"").await?;
                    upload_into(&docker, &id, &r, &home, dir_entry, crate::home::AUTH_FILE, bytes).await?;
                }
                ExecResult::Failed(why) => {
                    return Err(TargetError::new(format!("moving {tmp_path} to {final_path}: {why}")));
                }
            }
        } else {
            step("uploading");
            upload_into(&docker, &id, &r, &home, dir_entry, crate::home::AUTH_FILE, bytes).await?;
        }

        step("verifying");
        let back = archive::read_file(&docker, &id, &final_path, Links::Refuse)
            .await
            .map_err(archive_err("reading the credential back"))?
            .ok_or_else(|| TargetError::new(format!("{final_path} is missing after the upload")))?;
        verify(&final_path, &back, bytes, &r)
    }
}

/// The file read back must be what was sent, 0600, owned by the container's user.
fn verify(path: &str, back: &FileEntry, sent: &[u8], r: &Resolved) -> Result<(), TargetError> {
    if Sha256::digest(&back.bytes) != Sha256::digest(sent) {
        return Err(TargetError::new(format!("{path}: content read back differs from what was written")));
    }
    if back.mode != 0o600 || (back.uid, back.gid) != (r.uid, r.gid) {
        return Err(TargetError::new(format!(
            "{path}: owner {}:{} mode {:04o} after the write, expected {}:{} 0600",
            back.uid, back.gid, back.mode, r.uid, r.gid
        )));
    }
    Ok(())
}

/// Extract `{home}/{file_name}` into the container: at the directory's parent with the directory
/// entry, or at `/` with the whole path when the parent is missing too.
async fn upload_into(
    docker: &Docker,
    id: &str,
    r: &Resolved,
    home: &str,
    dir_entry: bool,
    file_name: &str,
    bytes: &[u8],
) -> Result<(), TargetError> {
    let (parent, name) = match home.rsplit_once('/') {
        Some(("", n)) => ("/", n),
        Some((p, n)) => (p, n),
        None => ("/", home),
    };
    let attempts = [(parent, name.to_string()), ("/", home.trim_start_matches('/').to_string())];
    for (at, dir_rel) in &attempts {
        let up =
            Upload { at, parents: &[], dir_rel, dir_entry, file_name, file_mode: 0o600, bytes, uid: r.uid, gid: r.gid };
        if archive::upload(docker, id, &up).await.map_err(archive_err("uploading"))? {
            return Ok(());
        }
    }
    Err(TargetError::new(format!("uploading into {home}: the engine found no destination directory")))
}

/// Remove the temporary files earlier pushes left in `$1` (best effort; a missing directory
/// is fine). Exit 0 means the shell runs.
/// Only files older than ten minutes ([`crate::targets::STALE_TEMP_AGE`]): a younger one may
/// belong to a write still under way.
const CLEAN_SCRIPT: &str =
    r#"find "$1" -maxdepth 1 -name '.auth.json.llmx-*' -mmin +10 -exec rm -f -- {} + 2>/dev/null; exit 0"#;

/// Remove auth.json `$1`: exit 4 for a symbolic link, 5 when missing, 6 when not a regular file.
pub(crate) const REMOVE_SCRIPT: &str =
    r#"[ -L "$1" ] && exit 4; [ -e "$1" ] || exit 5; [ -f "$1" ] || exit 6; rm -f -- "$1""#;

/// Move `$1` over `$2`; on failure remove `$1` (it holds the credential) and exit 3, never 126 or
/// 127 (which read as "could not run", after which the caller would blank the file again).
const MOVE_SCRIPT: &str = r#"mv -f -- "$1" "$2" && exit 0; rm -f -- "$1"; exit 3"#;

enum ExecResult {
    Ok,
    /// The command could not start (no shell, container not running or paused).
    CannotRun,
    Failed(String),
}

/// Run `cmd` as root in the container and wait for it. Root, as the archive API writes: the
/// archive path is taken when the container's user could not write (a directory it cannot
/// write to), and a `mv` or `rm` as that user would fail there too and leave the temporary file.
async fn exec(docker: &Docker, id: &str, cmd: &[&str]) -> ExecResult {
    exec_as(docker, id, "0", cmd).await
}

/// [`exec`] as `user` (`UID:GID`).
async fn exec_as(docker: &Docker, id: &str, user: &str, cmd: &[&str]) -> ExecResult {
    let opts = CreateExecOptions {
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        user: Some(user.to_string()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = match docker.create_exec(id, opts).await {
        Ok(c) => c,
        Err(_) => return ExecResult::CannotRun,
    };
    let mut output = String::new();
    match docker.start_exec(&created.id, None).await {
        Ok(StartExecResults::Attached { output: mut stream, .. }) => {
            // One deadline for the whole command and a cap on what it may print: a shell that
            // never stops writing must not hold the push (or the auth lock of a sync) forever.
            let deadline = tokio::time::Instant::now() + crate::targets::conversation::STAGE_TIMEOUT;
            let mut seen = 0usize;
            loop {
                let item = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => return ExecResult::Failed("the command did not finish in time".into()),
                };
                match item {
                    Ok(chunk) => {
                        let bytes = chunk.into_bytes();
                        seen = seen.saturating_add(bytes.len());
                        if seen > crate::targets::MAX_READ {
                            return ExecResult::Failed("the command wrote more than 4 MiB; gave up on it".into());
                        }
                        if output.len() < 4096 {
                            output.push_str(&String::from_utf8_lossy(&bytes));
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        Ok(StartExecResults::Detached) => {}
        Err(_) => return ExecResult::CannotRun,
    }
    match docker.inspect_exec(&created.id).await {
        Ok(i) => match i.exit_code {
            Some(0) => ExecResult::Ok,
            // 126: found but not executable; 127: not found (the runtime reports a missing
            // /bin/sh either way).
            Some(126) | Some(127) | None => ExecResult::CannotRun,
            Some(code) => ExecResult::Failed(format!("exit status {code}: {}", output.trim())),
        },
        Err(e) => ExecResult::Failed(error_text(&e)),
    }
}

impl Target for DockerTarget {
    fn label(&self) -> String {
        format!("docker:{}", self.container)
    }

    fn file_store_set(&self) -> Option<bool> {
        self.file_store_set
    }

    fn locate<'a>(
        &'a mut self,
        remote_home: Option<&'a str>,
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<Location, TargetError>> {
        Box::pin(self.do_locate(remote_home, step))
    }

    fn read<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
        Box::pin(self.do_read(loc))
    }

    fn write<'a>(
        &'a mut self,
        loc: &'a Location,
        bytes: &'a [u8],
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.do_write(loc, bytes, step))
    }

    fn identity(&self) -> Option<Identity> {
        self.id.clone().map(|container_id| Identity::Docker { container_id })
    }

    fn remove<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
        Box::pin(self.do_remove(loc))
    }

    fn removable(&self) -> Result<(), String> {
        match &self.resolved {
            Some(r) if !r.has_shell => Err("the container has no /bin/sh (the Engine API cannot delete files)".into()),
            _ => Ok(()),
        }
    }
}

impl DockerTarget {
    /// Deleting needs a command in the container (the archive API cannot delete): a running
    /// container with `/bin/sh`.
    async fn do_remove(&mut self, loc: &Location) -> Result<bool, TargetError> {
        let (r, id) = self.located()?;
        // The exec conversation of the fast path ends when its input closes, writing nothing.
        self.session = None;
        let path = loc.auth_path();
        if !r.has_shell {
            return Err(TargetError::new(format!(
                "cannot remove {path}: the container has no /bin/sh, and the Engine API cannot delete files"
            ))
            .with_hint(format!(
                "recreate the container (`docker rm -f {0}`, then run it again) to be rid of the file; a lease there stops working when it expires (`llmx auth where docker:{0}`)",
                self.container
            )));
        }
        if !r.running {
            return Err(TargetError::new(format!(
                "cannot remove {path}: the container is stopped, and the Engine API cannot delete files"
            ))
            .with_hint(format!(
                "start it (`docker start {0}`) and run `llmx auth remove docker:{0}` again",
                self.container
            )));
        }
        let docker = self.engine.get().await?.clone();
        // As the container's user, never as root: between the check and the `rm`, the user could
        // swap a directory on the path for a link to another user's; as themselves, they can
        // only delete what they could delete anyway.
        let user = format!("{}:{}", r.uid, r.gid);
        match exec_as(&docker, &id, &user, &["/bin/sh", "-c", REMOVE_SCRIPT, "sh", &path]).await {
            ExecResult::Ok => Ok(true),
            ExecResult::Failed(why) if why.starts_with("exit status 5") => Ok(false),
            ExecResult::Failed(why) if why.starts_with("exit status 4") => Err(symlink_refused(&path)),
            ExecResult::Failed(why) => Err(TargetError::new(format!("removing {path}: {why}"))),
            ExecResult::CannotRun => {
                Err(TargetError::new(format!("removing {path}: the container's shell did not run")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_must_be_absolute_and_plain() {
        assert_eq!(clean_home("/x/y/", "h").unwrap(), "/x/y");
        assert_eq!(clean_home("/", "h").unwrap(), "/");
        assert_eq!(clean_home("//.llmx", "h").unwrap(), "/.llmx");
        assert!(clean_home("x/y", "h").is_err());
        assert!(clean_home("/x/../y", "h").is_err());
    }

    #[test]
    fn env_lookup_takes_the_last_value_and_empty_is_unset() {
        let env = vec!["HOME=/a".to_string(), "LLMX_HOMEX=/no".into(), "LLMX_HOME=".into(), "HOME=/b".into()];
        assert_eq!(env_value(&env, "HOME"), Some("/b"));
        assert_eq!(env_value(&env, "LLMX_HOME"), None);
    }
}
