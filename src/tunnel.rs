//! `llmx auth tunnel`: sign a headless machine in with its *own* browser login, driven from this
//! machine's browser (DESIGN.md §6) — what `ssh -L 1455:localhost:1455 host` plus a remote
//! `llmx login` and a copied URL do by hand, as one command.
//!
//! Under the hood, [`run`]:
//!
//! 1. binds 127.0.0.1:PORT here first (a busy port fails before anything else happens);
//! 2. connects over SSH (`crate::ssh`: config, agent, keys, strict host keys);
//! 3. finds the remote `llmx` (`--remote-llmx`, else `llmx` on the PATH of a non-interactive shell,
//!    else `~/.llmx/bin/llmx`), or with `--install` uploads this binary there after checking that
//!    `uname -s`/`uname -m` match this build;
//! 4. runs `echo $$ && exec llmx [-c K=V]... login --no-browser --json --port PORT` on the remote
//!    (the pid lets teardown kill it if it will not stop), and reads its JSON events
//!    ([`LoginEvent`], the `llmx login --json` protocol);
//! 5. once the remote callback server listens, forwards every local connection to the remote's
//!    127.0.0.1:PORT over `direct-tcpip` (several at once: browsers open more than one), and hands
//!    the authorize URL to the caller to open;
//! 6. when the remote login ends, asks the remote `llmx login status --json` what it now holds.
//!
//! Teardown runs on every path out of the wait (success, failure, interrupt, timeout): a remote
//! login still running is asked to stop with `GET /cancel` through the tunnel, then signalled by
//! pid (INT, then KILL) if it lingers; its channel is closed, the accept loop and its listener are
//! dropped, and open forwards are closed. Local and remote ports must be equal because the
//! redirect URI (`http://localhost:PORT/auth/callback`) is fixed by the OAuth client.
//!
//! The library never prints: progress is a stream of [`TunnelEvent`]s; `cli::tunnel` renders them.
//! Nothing secret passes through here — the tokens are written by the remote llmx on the remote
//! host and only the status report (no secrets) comes back.

use crate::auth::login::{self, LoginEvent};
use crate::auth::server::printable;
use crate::ssh::{ExecEvent, ExitStatus, RemoteProcess, Session, SshError, SshOptions, shell_quote};
use crate::target::SshAddress;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The port of llmx's OAuth redirect URI; local and remote ports are the same.
pub const DEFAULT_PORT: u16 = login::DEFAULT_PORT;
/// Where `--install` puts this binary on the remote, under the login directory.
pub const INSTALL_PATH: &str = ".llmx/bin/llmx";
/// After `/cancel`, how long the remote login gets to stop on its own (its server drains open
/// connections for up to 2 s).
const CANCEL_WAIT: Duration = Duration::from_secs(3);
/// After each signal, how long to wait for the remote process to go.
const SIGNAL_WAIT: Duration = Duration::from_secs(2);
/// The remote login's own timeout is the tunnel's plus this margin: it only matters when the
/// connection is lost and the tunnel can no longer cancel it, and the tunnel's own timer must win.
const REMOTE_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);
/// The longest `--timeout` `llmx login` accepts.
const LOGIN_MAX_TIMEOUT_SECS: u64 = 86_400;
/// How much of the remote's stderr is kept for error messages.
const STDERR_TAIL: usize = 2048;
/// The longest line of the remote login's stdout we hold (its events are a few hundred bytes):
/// a program that never sends a newline must not grow our buffer without end.
const MAX_LINE: usize = 64 * 1024;

/// What a tunnel needs.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    pub address: SshAddress,
    pub ssh: SshOptions,
    /// Local and remote callback port.
    pub port: u16,
    /// `--remote-llmx`: the remote program (`~/` is the remote login directory).
    pub remote_llmx: Option<String>,
    /// `--install`: upload `install_from` to the remote `~/.llmx/bin/llmx` and use it.
    pub install: bool,
    /// The binary `--install` uploads (the CLI passes `std::env::current_exe`).
    pub install_from: Option<PathBuf>,
    /// `-c KEY=VALUE` overrides as typed, passed on to the remote llmx.
    pub overrides: Vec<String>,
    /// How long to wait for the sign-in once the remote login runs.
    pub timeout: Duration,
}

/// Progress of a tunnel, in order; the `llmx auth tunnel --json` lines. Consumers ignore events
/// they do not know.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TunnelEvent {
    /// 127.0.0.1:PORT is bound here (nothing is accepted until the remote login listens).
    Bound {
        port: u16,
    },
    /// The SSH connection is up and the host key verified.
    Connected {
        host: String,
        user: String,
        host_key_fingerprint: String,
    },
    /// `--install`: the platforms match; uploading this binary.
    Installing {
        path: String,
        bytes: u64,
        os: String,
        arch: String,
    },
    Installed {
        path: String,
    },
    /// The remote `llmx login` started (its pid on the remote host).
    RemoteStarted {
        llmx: String,
        pid: u32,
    },
    /// The remote login listens and every local connection is forwarded: open `authorize_url`.
    Listening {
        authorize_url: String,
        port: u16,
    },
    /// The remote login answered a callback 400 and keeps waiting.
    CallbackRejected {
        reason: String,
    },
    /// The browser came back with a code; the remote exchanges it.
    CallbackReceived,
    /// One forwarded connection failed (the tunnel keeps running).
    ForwardFailed {
        error: String,
    },
    /// Something went wrong in teardown or in the final status report; the outcome stands.
    Warning {
        message: String,
    },
}

/// A receiver of tunnel events; called from the tunnel's task, keep it quick.
pub type EventSink = Arc<dyn Fn(TunnelEvent) + Send + Sync>;

/// What the remote login saved, and what the remote reports afterwards (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunnelSuccess {
    /// The host as given (`user@host:port`).
    pub host: String,
    /// The remote auth.json.
    pub auth_file: String,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    pub api_key_saved: bool,
    /// As measured by the remote llmx: callback arrival → auth.json on disk, and the part spent
    /// waiting for the issuer.
    pub callback_to_saved_ms: f64,
    pub issuer_ms: f64,
    /// `llmx login status --json` on the remote after the login; `None` if that failed (a
    /// [`TunnelEvent::Warning`] says why).
    pub status: Option<RemoteStatus>,
    /// Forwarded connections that failed during the tunnel (each was reported as it happened).
    pub forward_failures: usize,
}

/// The remote's `llmx login status --json`, keeping only fields without secrets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteStatus {
    pub logged_in: bool,
    pub method: Option<String>,
    pub source: Option<String>,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    pub last_refresh: Option<String>,
    pub access_token_expires_at: Option<String>,
    pub auth_file: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "port {port} on 127.0.0.1 is already in use on this machine; the tunnel must listen there \
         (the sign-in redirects the browser to http://localhost:{port}/auth/callback)"
    )]
    PortBusy { port: u16 },
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(
        "{host}: no llmx found (looked for `llmx` on the PATH of a non-interactive shell and for ~/{INSTALL_PATH})"
    )]
    NoRemoteLlmx { host: String },
    #[error("{host}: --remote-llmx {path}: no such executable file there")]
    RemoteLlmxMissing { host: String, path: String },
    #[error("{host}: cannot --install: the host runs {remote}, this llmx is built for {local}")]
    PlatformMismatch { host: String, remote: String, local: String },
    #[error("{host}: cannot --install: `uname -s; uname -m` gave no usable answer ({detail})")]
    UnknownPlatform { host: String, detail: String },
    #[error("cannot read this program's binary {}: {source}", path.display())]
    ReadBinary { path: PathBuf, source: std::io::Error },
    #[error("{host}: {path} {what}")]
    InstallRefused { host: String, path: String, what: String },
    #[error("{host}: the uploaded {path} does not run there: {detail}")]
    InstalledDoesNotRun { host: String, path: String, detail: String },
    #[error("{host}: the remote llmx sent an authorize URL that is not http(s): {url}")]
    BadAuthorizeUrl { host: String, url: String },
    #[error("{host}: the remote llmx listens on port {remote}, not {local}")]
    PortMismatch { host: String, local: u16, remote: u16 },
    #[error("{host}: the remote llmx sent an output line longer than {} KiB; it does not speak `login --json`", MAX_LINE / 1024)]
    LineTooLong { host: String },
    #[error("{host}: the remote login failed: {error}")]
    RemoteLoginFailed { host: String, reason: String, error: String },
    #[error("{host}: `{llmx} login` exited ({status}) without a result{detail}")]
    RemoteExited { host: String, llmx: String, status: String, detail: String },
    #[error("nobody completed the sign-in within {}", login::format_duration(*after))]
    TimedOut { after: Duration },
    #[error("interrupted; the remote login was cancelled")]
    Interrupted,
}

impl TunnelError {
    /// A stable machine-readable name (the `reason` of `tunnel_failed`).
    pub fn reason(&self) -> &'static str {
        match self {
            TunnelError::PortBusy { .. } => "port_busy",
            TunnelError::Bind { .. } => "bind",
            TunnelError::Ssh(_) => "ssh",
            TunnelError::NoRemoteLlmx { .. } | TunnelError::RemoteLlmxMissing { .. } => "no_remote_llmx",
            TunnelError::PlatformMismatch { .. } | TunnelError::UnknownPlatform { .. } => "platform_mismatch",
            TunnelError::ReadBinary { .. }
            | TunnelError::InstallRefused { .. }
            | TunnelError::InstalledDoesNotRun { .. } => "install",
            TunnelError::BadAuthorizeUrl { .. }
            | TunnelError::PortMismatch { .. }
            | TunnelError::LineTooLong { .. } => "protocol",
            TunnelError::RemoteLoginFailed { .. } => "remote_login_failed",
            TunnelError::RemoteExited { .. } => "remote_exited",
            TunnelError::TimedOut { .. } => "timeout",
            TunnelError::Interrupted => "interrupted",
        }
    }

    /// The command or flag that fixes it, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            TunnelError::PortBusy { port } => Some(format!(
                "see who holds it with `ss -ltnp 'sport = :{port}'` and stop it (an `llmx login` waiting here stops \
                 with `curl http://127.0.0.1:{port}/cancel`), or use --port N with an issuer that accepts that port"
            )),
            TunnelError::Ssh(e) => e.hint(),
            TunnelError::NoRemoteLlmx { .. } | TunnelError::RemoteLlmxMissing { .. } => Some(
                "install llmx on the host, name it with --remote-llmx PATH, or pass --install to upload this llmx \
                 to ~/.llmx/bin/llmx there (same OS and architecture only)"
                    .to_string(),
            ),
            TunnelError::PlatformMismatch { .. } => {
                Some("install an llmx built for that host yourself and name it with --remote-llmx PATH".to_string())
            }
            TunnelError::RemoteLoginFailed { reason, .. } if reason == "port_busy" => {
                Some("another program holds that port on the host; stop it there, or choose another --port".to_string())
            }
            TunnelError::RemoteExited { .. } => {
                Some("the remote llmx may be too old for `login --json`; try --install or --remote-llmx".to_string())
            }
            TunnelError::TimedOut { .. } => {
                Some("run `llmx auth tunnel` again; --timeout SECS waits longer".to_string())
            }
            _ => None,
        }
    }
}

/// Run a tunnel login. `interrupt` ends it early with a full teardown (the CLI passes Ctrl-C).
pub async fn run(
    opts: TunnelOptions,
    events: EventSink,
    interrupt: impl Future<Output = ()> + Send + 'static,
) -> Result<TunnelSuccess, TunnelError> {
    let port = opts.port;
    let listener = bind_local(port).await?;
    events(TunnelEvent::Bound { port });

    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        AbortOnDrop(tokio::spawn(async move {
            interrupt.await;
            cancel.cancel();
        }))
    };

    let host = opts.address.to_string();
    let session = until(&cancel, Session::connect(&opts.address, &opts.ssh)).await??;
    let info = session.info().clone();
    events(TunnelEvent::Connected {
        host: host.clone(),
        user: info.user.clone(),
        host_key_fingerprint: info.host_key_fingerprint.clone(),
    });

    let llmx = until(&cancel, remote_llmx(&session, &host, &opts, &events)).await??;
    let overrides = overrides_words(&opts.overrides);
    let remote_timeout = (opts.timeout + REMOTE_TIMEOUT_MARGIN).as_secs().min(LOGIN_MAX_TIMEOUT_SECS);
    let cmd = format!(
        "echo $$ && exec {}{overrides} login --no-browser --json --port {port} --timeout {remote_timeout}",
        shell_quote(&llmx)
    );
    let proc = until(&cancel, session.spawn(&cmd)).await??;

    let mut t = Tunnel {
        session,
        host,
        llmx,
        port,
        events,
        listener: Some(listener),
        forwarder: None,
        remote: RemoteLogin::new(proc),
        failures: mpsc::unbounded_channel(),
        forward_failures: 0,
    };
    let outcome = t.wait(&cancel, opts.timeout).await;
    t.teardown().await;
    drop(watcher);
    let mut success = outcome?;
    success.forward_failures = t.forward_failures;
    success.status = t.status(&overrides).await;
    Ok(success)
}

/// Bind 127.0.0.1:`port`. Unlike `llmx login`, never evicts whoever holds it: on this machine
/// that is the user's own program, not a stale server of ours on the remote.
async fn bind_local(port: u16) -> Result<TcpListener, TunnelError> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(TunnelError::PortBusy { port }),
        Err(source) => Err(TunnelError::Bind { port, source }),
    }
}

/// `f`, unless the interrupt comes first.
async fn until<T>(cancel: &CancellationToken, f: impl Future<Output = T>) -> Result<T, TunnelError> {
    tokio::select! {
        v = f => Ok(v),
        () = cancel.cancelled() => Err(TunnelError::Interrupted),
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// ` --config='K=V'` for each override, quoted for the remote shell. The `--config=` form keeps
/// an override that starts with `-` one value for the remote clap, never a flag of its own.
fn overrides_words(overrides: &[String]) -> String {
    overrides.iter().map(|o| format!(" --config={}", shell_quote(o))).collect()
}

/// A remote path as a shell word: `~` and `~/…` start from `$HOME`, the rest is quoted.
fn path_word(path: &str) -> String {
    if path == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("\"$HOME\"/{}", shell_quote(rest))
    } else {
        shell_quote(path)
    }
}

/// The script that prints the path of the llmx to run (exit 0), or exits 127.
fn find_script(explicit: Option<&str>) -> String {
    match explicit {
        Some(p) if p.contains('/') || p.starts_with('~') => {
            format!("p={}; [ -f \"$p\" ] && [ -x \"$p\" ] && printf '%s\\n' \"$p\" || exit 127", path_word(p))
        }
        Some(name) => format!(
            "p=$(command -v {} 2>/dev/null) && [ -x \"$p\" ] && printf '%s\\n' \"$p\" || exit 127",
            shell_quote(name)
        ),
        None => format!(
            "p=$(command -v llmx 2>/dev/null) && [ -x \"$p\" ] && {{ printf '%s\\n' \"$p\"; exit 0; }}; \
             [ -f \"$HOME/{INSTALL_PATH}\" ] && [ -x \"$HOME/{INSTALL_PATH}\" ] && \
             {{ printf '%s\\n' \"$HOME/{INSTALL_PATH}\"; exit 0; }}; exit 127"
        ),
    }
}

/// The remote llmx to run: named, found, or installed.
async fn remote_llmx(
    session: &Session,
    host: &str,
    opts: &TunnelOptions,
    events: &EventSink,
) -> Result<String, TunnelError> {
    if opts.install {
        return install(session, host, opts, events).await;
    }
    let script = find_script(opts.remote_llmx.as_deref());
    let out = session.call(move |c| c.exec(&script, b"")).await?;
    let found = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    if out.status.success() && !found.is_empty() {
        return Ok(found);
    }
    Err(match &opts.remote_llmx {
        Some(p) => TunnelError::RemoteLlmxMissing { host: host.to_string(), path: p.clone() },
        None => TunnelError::NoRemoteLlmx { host: host.to_string() },
    })
}

/// `(os, arch)` in `std::env::consts` terms from `uname -s` and `uname -m`.
pub fn platform_from_uname(sys: &str, machine: &str) -> (String, String) {
    let os = match sys {
        "Linux" => "linux",
        "Darwin" => "macos",
        "FreeBSD" => "freebsd",
        "NetBSD" => "netbsd",
        "OpenBSD" => "openbsd",
        "DragonFly" => "dragonfly",
        "SunOS" => "solaris",
        other => return (other.to_lowercase(), arch_from_uname(machine)),
    };
    (os.to_string(), arch_from_uname(machine))
}

fn arch_from_uname(machine: &str) -> String {
    match machine {
        "x86_64" | "amd64" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        m if m.starts_with("armv") => "arm",
        "riscv64" => "riscv64",
        "ppc64le" | "ppc64" => "powerpc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
    .to_string()
}

/// `--install`: check the platform, upload `install_from` to `~/.llmx/bin/llmx` (dirs 0700, file
/// 0700, temp file + `mv -f`), and check that it runs.
async fn install(
    session: &Session,
    host: &str,
    opts: &TunnelOptions,
    events: &EventSink,
) -> Result<String, TunnelError> {
    let out = session.call(|c| c.exec("uname -s && uname -m", b"")).await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::trim);
    let (Some(sys), Some(machine), true) = (lines.next(), lines.next(), out.status.success()) else {
        let detail = printable(&format!("{} {}", text.trim(), String::from_utf8_lossy(&out.stderr).trim()));
        return Err(TunnelError::UnknownPlatform { host: host.to_string(), detail });
    };
    let (os, arch) = platform_from_uname(sys, machine);
    let (local_os, local_arch) = (std::env::consts::OS, std::env::consts::ARCH);
    if os != local_os || arch != local_arch {
        return Err(TunnelError::PlatformMismatch {
            host: host.to_string(),
            remote: format!("{os}/{arch} ({sys} {machine})"),
            local: format!("{local_os}/{local_arch}"),
        });
    }
    let from = match &opts.install_from {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|source| TunnelError::ReadBinary { path: PathBuf::from("(current executable)"), source })?,
    };
    let bytes =
        tokio::fs::read(&from).await.map_err(|source| TunnelError::ReadBinary { path: from.clone(), source })?;
    let home = session.call(|c| c.realpath(".")).await?;
    let dest = format!("{}/{INSTALL_PATH}", home.trim_end_matches('/'));
    events(TunnelEvent::Installing { path: dest.clone(), bytes: bytes.len() as u64, os, arch });
    let (h, d) = (host.to_string(), dest.clone());
    session.call(move |c| Ok(upload_binary(c, &h, &home, &d, &bytes))).await??;
    let check = format!("{} --version", shell_quote(&dest));
    let out = session.call(move |c| c.exec(&check, b"")).await?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.starts_with("llmx") {
        let detail = match String::from_utf8_lossy(&out.stderr).trim() {
            "" => format!("`--version` exited with {}", out.status.code),
            e => printable(e),
        };
        return Err(TunnelError::InstalledDoesNotRun { host: host.to_string(), path: dest, detail });
    }
    events(TunnelEvent::Installed { path: dest.clone() });
    Ok(dest)
}

/// On the session thread: make `~/.llmx` and `~/.llmx/bin` private directories, write the binary
/// to a temp file beside `dest` (0700) and move it into place.
fn upload_binary(
    c: &mut crate::ssh::Conn,
    host: &str,
    home: &str,
    dest: &str,
    bytes: &[u8],
) -> Result<(), TunnelError> {
    let llmx_dir = format!("{}/.llmx", home.trim_end_matches('/'));
    let bin_dir = format!("{llmx_dir}/bin");
    for dir in [&llmx_dir, &bin_dir] {
        match c.stat(dir)? {
            None => {
                c.mkdir(dir, 0o700)?;
                c.chmod(dir, 0o700)?;
            }
            Some(st) if st.is_dir() => {
                if st.perm.is_some_and(|p| p & 0o777 != 0o700) {
                    c.chmod(dir, 0o700)?;
                }
            }
            Some(_) => {
                return Err(TunnelError::InstallRefused {
                    host: host.to_string(),
                    path: dir.clone(),
                    what: "exists and is not a directory".into(),
                });
            }
        }
    }
    if c.lstat(dest)?.is_some_and(|st| st.file_type().is_symlink()) {
        return Err(TunnelError::InstallRefused {
            host: host.to_string(),
            path: dest.to_string(),
            what: "is a symbolic link; refusing to replace it".into(),
        });
    }
    let tmp = format!("{bin_dir}/.llmx.tmp-{}", crate::home::random_suffix());
    let placed = c.create_file(&tmp, bytes, 0o700).map_err(TunnelError::from).and_then(|()| {
        let out = c.exec(&format!("mv -f -- {} {}", shell_quote(&tmp), shell_quote(dest)), b"")?;
        if out.status.success() {
            Ok(())
        } else {
            Err(TunnelError::InstallRefused {
                host: host.to_string(),
                path: dest.to_string(),
                what: format!("cannot be replaced: {}", printable(String::from_utf8_lossy(&out.stderr).trim())),
            })
        }
    });
    if placed.is_err() {
        let _ = c.unlink(&tmp);
    }
    placed?;
    c.chmod(dest, 0o700)?;
    Ok(())
}

/// What the remote login process says, parsed.
enum Msg {
    Pid(u32),
    Event(LoginEvent),
    Exit(ExitStatus),
    Lost(SshError),
    /// A stdout line passed [`MAX_LINE`]; it was dropped.
    LineTooLong,
}

/// The remote `llmx login` process and its output, parsed into [`Msg`]s. `next` is cancel-safe
/// (its only await is a channel receive), so it can sit in a `select!`.
struct RemoteLogin {
    proc: Option<RemoteProcess>,
    pid: Option<u32>,
    ended: bool,
    line: Vec<u8>,
    /// Dropping the rest of an over-long line, up to its newline.
    skipping: bool,
    stderr: Vec<u8>,
    queue: VecDeque<Msg>,
}

impl RemoteLogin {
    fn new(proc: RemoteProcess) -> RemoteLogin {
        RemoteLogin {
            proc: Some(proc),
            pid: None,
            ended: false,
            line: Vec::new(),
            skipping: false,
            stderr: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> Msg {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return m;
            }
            let ev = match (&mut self.proc, self.ended) {
                (Some(p), false) => p.next().await,
                _ => return std::future::pending().await,
            };
            match ev {
                Some(ExecEvent::Stdout(b)) => self.stdout(&b),
                Some(ExecEvent::Stderr(b)) => {
                    self.stderr.extend_from_slice(&b);
                    if self.stderr.len() > STDERR_TAIL {
                        self.stderr.drain(..self.stderr.len() - STDERR_TAIL);
                    }
                }
                Some(ExecEvent::Exit(s)) => {
                    self.ended = true;
                    self.queue.push_back(Msg::Exit(s));
                }
                Some(ExecEvent::Error(e)) => {
                    self.ended = true;
                    self.queue.push_back(Msg::Lost(e));
                }
                None => {
                    self.ended = true;
                    let e = SshError::Closed { host: String::new(), during: "the remote login".into() };
                    self.queue.push_back(Msg::Lost(e));
                }
            }
        }
    }

    fn stdout(&mut self, mut bytes: &[u8]) {
        if self.skipping {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.skipping = false;
                    bytes = &bytes[i + 1..];
                }
                None => return,
            }
        }
        self.line.extend_from_slice(bytes);
        while let Some(i) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if self.pid.is_none() {
                if let Ok(pid) = text.parse::<u32>() {
                    self.pid = Some(pid);
                    self.queue.push_back(Msg::Pid(pid));
                }
                continue;
            }
            // Lines that are not events we know (newer llmx versions add some) are skipped.
            if let Ok(ev) = serde_json::from_str::<LoginEvent>(text) {
                self.queue.push_back(Msg::Event(ev));
            }
        }
        if self.line.len() > MAX_LINE {
            self.line = Vec::new();
            self.skipping = true;
            self.queue.push_back(Msg::LineTooLong);
        }
    }

    /// Wait until the process ends or `limit` passes; whether it ended.
    async fn wait_end(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.ended || !self.queue.is_empty() {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Msg::Exit(_) | Msg::Lost(_)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        true
    }

    fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let last: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let start = last.len().saturating_sub(3);
        printable(&last[start..].join(" / "))
    }
}

/// The accept loop: forwards each local connection to the remote's 127.0.0.1:PORT. Stopping it
/// drops the listener and closes every forward still open.
struct Forwarder {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Forwarder {
    fn start(listener: TcpListener, session: Session, port: u16, failures: mpsc::UnboundedSender<String>) -> Forwarder {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, session, port, failures, stopped));
        Forwarder { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    session: Session,
    port: u16,
    failures: mpsc::UnboundedSender<String>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let (session, failures) = (session.clone(), failures.clone());
                    conns.spawn(async move {
                        let r = match sock.into_std() {
                            Ok(sock) => match session.forward(sock, "127.0.0.1", port).await {
                                Ok(fwd) => fwd.finished().await.map(drop),
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(SshError::Remote {
                                host: session.info().host.clone(),
                                what: "forwarding".into(),
                                reason: e.to_string(),
                            }),
                        };
                        if let Err(e) = r {
                            let _ = failures.send(format!("connection from {peer}: {e}"));
                        }
                    });
                }
                Err(e) => {
                    let _ = failures.send(format!("accepting a connection on 127.0.0.1:{port}: {e}"));
                    // Out of descriptors and the like: give the system a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// One tunnel's moving parts, for the wait and the teardown.
struct Tunnel {
    session: Session,
    host: String,
    llmx: String,
    port: u16,
    events: EventSink,
    /// Bound at the start; moves into the forwarder when the remote listens.
    listener: Option<TcpListener>,
    forwarder: Option<Forwarder>,
    remote: RemoteLogin,
    failures: (mpsc::UnboundedSender<String>, mpsc::UnboundedReceiver<String>),
    forward_failures: usize,
}

impl Tunnel {
    /// Follow the remote login until it ends, the timeout passes or the interrupt comes.
    async fn wait(&mut self, cancel: &CancellationToken, timeout: Duration) -> Result<TunnelSuccess, TunnelError> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut result: Option<Result<TunnelSuccess, TunnelError>> = None;
        loop {
            tokio::select! {
                m = self.remote.next() => match m {
                    Msg::Pid(pid) => (self.events)(TunnelEvent::RemoteStarted { llmx: self.llmx.clone(), pid }),
                    Msg::Event(ev) => self.on_login_event(ev, &mut result)?,
                    Msg::Exit(status) => {
                        return result.unwrap_or_else(|| Err(self.exited_without_result(&status)));
                    }
                    Msg::LineTooLong => return Err(TunnelError::LineTooLong { host: self.host.clone() }),
                    Msg::Lost(e) => {
                        return result.unwrap_or(Err(TunnelError::Ssh(match e {
                            SshError::Closed { during, .. } => SshError::Closed { host: self.host.clone(), during },
                            e => e,
                        })));
                    }
                },
                Some(f) = self.failures.1.recv() => self.forward_failed(f),
                () = &mut deadline => return result.unwrap_or(Err(TunnelError::TimedOut { after: timeout })),
                () = cancel.cancelled() => return result.unwrap_or(Err(TunnelError::Interrupted)),
            }
        }
    }

    fn on_login_event(
        &mut self,
        ev: LoginEvent,
        result: &mut Option<Result<TunnelSuccess, TunnelError>>,
    ) -> Result<(), TunnelError> {
        match ev {
            LoginEvent::Listening { authorize_url, port, .. } => {
                if port != self.port {
                    return Err(TunnelError::PortMismatch { host: self.host.clone(), local: self.port, remote: port });
                }
                let ok = url::Url::parse(&authorize_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(TunnelError::BadAuthorizeUrl {
                        host: self.host.clone(),
                        url: printable(&authorize_url),
                    });
                }
                if let Some(listener) = self.listener.take() {
                    self.forwarder =
                        Some(Forwarder::start(listener, self.session.clone(), self.port, self.failures.0.clone()));
                }
                (self.events)(TunnelEvent::Listening { authorize_url, port });
            }
            LoginEvent::CallbackRejected { reason } => {
                (self.events)(TunnelEvent::CallbackRejected { reason: printable(&reason) })
            }
            LoginEvent::CallbackReceived => (self.events)(TunnelEvent::CallbackReceived),
            LoginEvent::LoginSucceeded {
                auth_file,
                email,
                plan,
                account_id,
                api_key_saved,
                callback_to_saved_ms,
                issuer_ms,
                ..
            } => {
                *result = Some(Ok(TunnelSuccess {
                    host: self.host.clone(),
                    auth_file,
                    email,
                    plan,
                    account_id,
                    api_key_saved,
                    callback_to_saved_ms,
                    issuer_ms,
                    status: None,
                    forward_failures: 0,
                }));
            }
            LoginEvent::LoginFailed { reason, error } => {
                *result = Some(Err(TunnelError::RemoteLoginFailed {
                    host: self.host.clone(),
                    reason: printable(&reason),
                    error: printable(&error),
                }));
            }
            LoginEvent::StaleServerCancelled { port } => (self.events)(TunnelEvent::Warning {
                message: format!("stopped an earlier llmx login that was waiting on port {port} on {}", self.host),
            }),
        }
        Ok(())
    }

    fn exited_without_result(&self, status: &ExitStatus) -> TunnelError {
        let status = match (&status.signal, status.code) {
            (Some(sig), _) => format!("killed by SIG{sig}"),
            (None, 127) => "127: command not found".to_string(),
            (None, code) => format!("exit code {code}"),
        };
        let tail = self.remote.stderr_tail();
        TunnelError::RemoteExited {
            host: self.host.clone(),
            llmx: self.llmx.clone(),
            status,
            detail: if tail.is_empty() { String::new() } else { format!(": {tail}") },
        }
    }

    fn forward_failed(&mut self, error: String) {
        self.forward_failures += 1;
        (self.events)(TunnelEvent::ForwardFailed { error });
    }

    /// Stop the remote login if it still runs, close its channel, stop forwarding and release the
    /// local port. Every step is bounded; what cannot be done is reported as a warning.
    async fn teardown(&mut self) {
        if !self.remote.ended {
            // Through our own listener, hence the tunnel, to the remote callback server; when it
            // acknowledges, the login stops by itself.
            if self.forwarder.is_some() && login::cancel_stale_server(self.port).await {
                self.remote.wait_end(CANCEL_WAIT).await;
            }
            if !self.remote.ended
                && let Some(pid) = self.remote.pid
            {
                for sig in ["INT", "KILL"] {
                    let cmd = format!("kill -{sig} {pid} 2>/dev/null");
                    let _ = self.session.call(move |c| c.exec(&cmd, b"")).await;
                    if self.remote.wait_end(SIGNAL_WAIT).await {
                        break;
                    }
                }
            }
            if !self.remote.ended {
                let pid = self.remote.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                (self.events)(TunnelEvent::Warning {
                    message: format!(
                        "the remote llmx login{pid} on {} did not stop; it may still be running",
                        self.host
                    ),
                });
            }
        }
        drop(self.remote.proc.take());
        if let Some(f) = self.forwarder.take() {
            f.stop().await;
        }
        self.listener = None;
        while let Ok(f) = self.failures.1.try_recv() {
            self.forward_failed(f);
        }
    }

    /// The remote's `llmx login status --json`.
    async fn status(&self, overrides: &str) -> Option<RemoteStatus> {
        let cmd = format!("exec {}{overrides} login status --json", shell_quote(&self.llmx));
        let r = self.session.call(move |c| c.exec(&cmd, b"")).await;
        let parsed = match r {
            Ok(out) => serde_json::from_slice::<RemoteStatus>(&out.stdout).map_err(|e| {
                let err = String::from_utf8_lossy(&out.stderr);
                format!("unexpected answer ({e}) {}", printable(err.trim()))
            }),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(s) => Some(s),
            Err(e) => {
                (self.events)(TunnelEvent::Warning {
                    message: format!("{}: `llmx login status` after the login failed: {e}", self.host),
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_maps_to_rust_platform_names() {
        assert_eq!(platform_from_uname("Linux", "x86_64"), ("linux".into(), "x86_64".into()));
        assert_eq!(platform_from_uname("Darwin", "arm64"), ("macos".into(), "aarch64".into()));
        assert_eq!(platform_from_uname("Linux", "armv7l"), ("linux".into(), "arm".into()));
        assert_eq!(platform_from_uname("Plan9", "mips"), ("plan9".into(), "mips".into()));
    }

    #[test]
    fn this_machine_matches_itself() {
        let sys = std::process::Command::new("uname").arg("-s").output().unwrap();
        let machine = std::process::Command::new("uname").arg("-m").output().unwrap();
        let (os, arch) = platform_from_uname(
            String::from_utf8_lossy(&sys.stdout).trim(),
            String::from_utf8_lossy(&machine.stdout).trim(),
        );
        assert_eq!((os.as_str(), arch.as_str()), (std::env::consts::OS, std::env::consts::ARCH));
    }

    #[test]
    fn remote_words_are_quoted_and_tilde_means_home() {
        assert_eq!(path_word("~/bin/ll x"), "\"$HOME\"/'bin/ll x'");
        assert_eq!(path_word("/opt/$(x)"), "'/opt/$(x)'");
        assert_eq!(
            overrides_words(&["auth_issuer=http://h:1/ x'y".into()]),
            " --config='auth_issuer=http://h:1/ x'\\''y'"
        );
    }

    #[test]
    fn override_starting_with_a_dash_stays_a_value_for_the_remote() {
        // `llmx --config=--port=1 auth tunnel h` is valid here; `-c '--port=1'` made the remote
        // clap read a flag. Through sh, each override must arrive as exactly one `--config=` word.
        let words = overrides_words(&["--port=1".into(), "a=b c".into()]);
        let out = std::process::Command::new("sh").arg("-c").arg(format!("printf '%s\\n'{words}")).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "--config=--port=1\n--config=a=b c\n");
    }

    #[test]
    fn find_scripts_run_in_sh() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("my llmx");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // No llmx on this PATH, so the default looks in ~/.llmx/bin only.
        let run = |script: String| {
            let mut cmd = std::process::Command::new("/bin/sh");
            let out = cmd.arg("-c").arg(script).env("HOME", dir.path()).env("PATH", "/nonexistent").output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let found = (Some(0), bin.to_str().unwrap().to_string());
        assert_eq!(run(find_script(Some(bin.to_str().unwrap()))), found);
        assert_eq!(run(find_script(Some("~/my llmx"))), found);
        assert_eq!(run(find_script(Some("~/nope"))).0, Some(127));
        assert_eq!(run(find_script(None)).0, Some(127));
        let installed = dir.path().join(INSTALL_PATH);
        std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
        std::fs::copy(&bin, &installed).unwrap();
        assert_eq!(run(find_script(None)), (Some(0), installed.to_str().unwrap().to_string()));
    }

    #[test]
    fn remote_output_is_split_into_pid_and_events() {
        let mut r = RemoteLogin {
            proc: None,
            pid: None,
            ended: false,
            line: Vec::new(),
            skipping: false,
            stderr: Vec::new(),
            queue: VecDeque::new(),
        };
        r.stdout(b"4242\n{\"event\":\"callback_rec");
        r.stdout(b"eived\"}\n{\"event\":\"something_new\"}\nnot json\n");
        assert!(matches!(r.queue.pop_front(), Some(Msg::Pid(4242))));
        assert!(matches!(r.queue.pop_front(), Some(Msg::Event(LoginEvent::CallbackReceived))));
        assert!(r.queue.is_empty());
    }

    #[test]
    fn remote_output_without_newline_is_bounded() {
        let mut r = RemoteLogin {
            proc: None,
            pid: None,
            ended: false,
            line: Vec::new(),
            skipping: false,
            stderr: Vec::new(),
            queue: VecDeque::new(),
        };
        r.stdout(b"4242\n");
        let chunk = vec![b'x'; 8192];
        for _ in 0..1024 {
            r.stdout(&chunk); // 8 MiB, never a newline
            assert!(r.line.len() <= MAX_LINE + chunk.len(), "buffer grew to {}", r.line.len());
        }
        assert!(matches!(r.queue.pop_front(), Some(Msg::Pid(4242))));
        assert!(matches!(r.queue.pop_front(), Some(Msg::LineTooLong)));
        assert!(r.queue.is_empty(), "reported once per line");
        // The rest of that line is dropped; the lines after it are read again.
        r.stdout(b"xxx\n{\"event\":\"callback_received\"}\n");
        assert!(matches!(r.queue.pop_front(), Some(Msg::Event(LoginEvent::CallbackReceived))));
        let e = TunnelError::LineTooLong { host: "h".into() };
        assert_eq!(e.reason(), "protocol");
        assert!(e.to_string().contains("longer than 64 KiB"), "{e}");
    }
}
