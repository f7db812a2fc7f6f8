//! `llmx auth tunnel`: sign a headless machine in with its *own* login, driven from this
//! machine's browser (DESIGN.md §6) — what `ssh -L 1455:localhost:1455 host` plus a remote
//! `llmx login` and a copied URL do by hand, as one command; also for containers, and with a
//! device code where nothing can be forwarded.
//!
//! Where the login runs ([`Link`]): on an SSH host, or in a container through the Engine's exec
//! API. What it is ([`TunnelOptions::device`]): the browser login, whose callback reaches it from
//! this machine's 127.0.0.1:PORT, or the device-code login (`llmx login --device-auth`), which
//! needs no port at all: its code and page are shown here and the page opened in the browser.
//!
//! Over SSH, [`run`]:
//!
//! 1. binds 127.0.0.1:PORT here first (browser login only; a busy port fails before anything else);
//! 2. connects over SSH (`crate::ssh`: config, agent, keys, strict host keys);
//! 3. finds the remote `llmx` (`--remote-llmx`, else `llmx` on the PATH of a non-interactive shell,
//!    else `~/.llmx/bin/llmx`), or with `--install` uploads this binary there after checking that
//!    `uname -s`/`uname -m` match this build;
//! 4. runs `llmx [--config='K=V']... login --no-browser --json --port PORT` (or
//!    `login --device-auth --json`) on the remote, bound
//!    to the SSH session (see `bound_to_session`: it dies when sshd closes the session), prints its
//!    pid first (teardown kills it by pid if it will not stop), and reads its JSON events
//!    ([`LoginEvent`], the `llmx login --json` protocol); every remote command is run by `/bin/sh`,
//!    whatever the user's login shell (fish included);
//! 5. once the remote callback server listens and its authorize URL is this machine's configured
//!    `{issuer}/oauth/authorize` (same origin and path; anything else fails the tunnel), forwards
//!    every local connection to the remote's
//!    127.0.0.1:PORT over `direct-tcpip` (several at once: browsers open more than one), and hands
//!    the authorize URL to the caller to open; a device code is shown only when its page is the
//!    configured `{issuer}/codex/device`;
//! 6. when the remote login ends, asks the remote `llmx login status --json` what it now holds.
//!
//! In a container (`docker:NAME`, `container`), the same steps run through the Engine API: the
//! container's user and llmx are found through the archive API (no shell needed), the login runs
//! as that user in one exec with `--end-on-stdin-eof` (its stdin is held here; closing it, or this
//! process dying, stops it), and the browser's callback is not forwarded but relayed (`relay`):
//! 127.0.0.1:PORT here hands it to the login as a paste-back line on that stdin, so the state
//! check and the exchange (with the PKCE verifier) happen in the container.
//!
//! Teardown runs on every path out of the wait (success, failure, interrupt, timeout): a remote
//! login still running is asked to stop with `POST /cancel` (with the secret that login wrote in its home) through the tunnel, then signalled by
//! pid (INT, then KILL) if it lingers, all within a few seconds (a container's login: its stdin is
//! closed); its channel or exec is closed, the accept
//! loop and its listener are dropped, and open forwards are closed. What became of the remote login
//! is reported as it is (an interrupt on a dead network does not claim it was cancelled). SSH
//! keepalives notice a dead network while waiting. Local and remote ports must be equal because the
//! redirect URI (`http://localhost:PORT/auth/callback`) is fixed by the OAuth client.
//!
//! The library never prints: progress is a stream of [`TunnelEvent`]s; `cli::tunnel` renders them.
//! Nothing secret passes through here — the tokens are written by the remote llmx on the remote
//! host and only the status report (no secrets) comes back; a relayed callback's code is only
//! passed on.
//!
//! The parts: [`run`] and the types it shares live here; `remote` finds the remote llmx and asks
//! it for its status, `install` uploads this one, `container` is the Engine side, `remote_login`
//! reads the running login's output whichever way it runs, `wait` follows it, `forward` carries
//! the browser's connections over SSH and `relay` hands them to a container, `teardown` stops what
//! is left, and `error` says what went wrong.

mod container;
mod error;
mod forward;
mod install;
mod relay;
mod remote;
mod remote_login;
mod teardown;
mod wait;

pub use error::TunnelError;
pub use install::platform_from_uname;

use crate::auth::login::{self, LoginSucceeded};
use crate::ssh::SshAddress;
use crate::ssh::{Session, SshOptions, shell_quote};
use forward::Forwarder;
use relay::{Relay, Relayed};
use remote::{overrides_words, remote_llmx};
use remote_login::RemoteLogin;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The port of llmx's OAuth redirect URI; local and remote ports are the same.
pub const DEFAULT_PORT: u16 = login::DEFAULT_PORT;
/// Where `--install` puts this binary on the remote, under the login directory.
pub const INSTALL_PATH: &str = ".llmx/bin/llmx";
/// The remote login's own timeout is the tunnel's plus this margin: it only matters when the
/// connection is lost and the tunnel can no longer cancel it, and the tunnel's own timer must win.
const REMOTE_TIMEOUT_MARGIN: Duration = Duration::from_secs(60);
/// The longest `--timeout` `llmx login` accepts.
const LOGIN_MAX_TIMEOUT_SECS: u64 = 86_400;

/// The forms `llmx auth tunnel` takes, for messages and `--help`.
pub const TARGET_FORMS: &str = "[ssh:][user@]host[:port] or docker:NAME";

/// Where the login runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTarget {
    Ssh(SshAddress),
    /// A running container, by name or ID.
    Docker(String),
}

impl TunnelTarget {
    /// `[ssh:][user@]host[:port]` or `docker:NAME`; the error is one line naming those forms.
    pub fn parse(s: &str) -> Result<TunnelTarget, String> {
        if let Some(rest) = s.strip_prefix("docker:") {
            return match s.parse::<crate::targets::TargetSpec>() {
                Ok(crate::targets::TargetSpec::Docker(crate::targets::DockerSelector::Container(c))) => {
                    Ok(TunnelTarget::Docker(c))
                }
                Ok(_) => Err(format!(
                    "'{s}': the tunnel signs in one container, by name or ID (docker:NAME), not docker:{rest}; \
                     it takes {TARGET_FORMS}"
                )),
                Err(e) => Err(format!("{e}; the tunnel takes {TARGET_FORMS}")),
            };
        }
        let rest = s.strip_prefix("ssh:").unwrap_or(s);
        SshAddress::parse(rest)
            .map(TunnelTarget::Ssh)
            .map_err(|e| format!("invalid host '{s}': {e}; the tunnel takes {TARGET_FORMS}"))
    }
}

/// What a tunnel needs.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    pub target: TunnelTarget,
    /// How to reach an SSH target, or a container's engine over `ssh://`.
    pub ssh: SshOptions,
    /// How a container's engine is reached (`--insecure-engine`).
    pub docker: crate::targets::docker::connect::DockerOptions,
    /// The device-code login (`--device`): no port here or there.
    pub device: bool,
    /// Local and remote callback port.
    pub port: u16,
    /// `--remote-llmx`: the remote program (`~/` is the remote login directory).
    pub remote_llmx: Option<String>,
    /// `--install`: upload `install_from` to the remote `~/.llmx/bin/llmx` and use it.
    pub install: bool,
    /// The binary `--install` uploads (the CLI passes `std::env::current_exe`).
    pub install_from: Option<PathBuf>,
    /// `-c KEY=VALUE` overrides as typed, passed on to the remote llmx as `--config='KEY=VALUE'`.
    pub overrides: Vec<String>,
    /// How long to wait for the sign-in once the remote login runs.
    pub timeout: Duration,
    /// The issuer configured here (config.toml and `-c`): the remote's authorize URL must be
    /// `{issuer}/oauth/authorize`, or the tunnel neither opens nor shows it.
    pub issuer: String,
}

/// Progress of a tunnel, in order; the `llmx auth tunnel --json` lines. Consumers ignore events
/// they do not know.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TunnelEvent {
    /// 127.0.0.1:PORT is bound here (nothing is accepted until the remote login listens).
    Bound { port: u16 },
    /// The SSH connection is up and the host key verified.
    Connected { host: String, user: String, host_key_fingerprint: String },
    /// The container runs; the login will run as its user (`Config.User`, `""`: root).
    ContainerReady { container: String, id: String, user: String },
    /// `--install`: the platforms match; uploading this binary.
    Installing { path: String, bytes: u64, os: String, arch: String },
    Installed {
        path: String,
        /// The host already had this very binary there (same SHA-256): nothing was uploaded.
        #[serde(default)]
        unchanged: bool,
    },
    /// The remote `llmx login` started (its pid on the remote host).
    RemoteStarted { llmx: String, pid: u32 },
    /// The remote login listens and every local connection is forwarded: open `authorize_url`.
    Listening { authorize_url: String, port: u16 },
    /// The remote device-code login has its code: enter `user_code` at `verification_url` (the
    /// configured issuer's page) within `expires_in` seconds.
    DeviceCode { verification_url: String, user_code: String, expires_in: u64 },
    /// The remote login answered a callback 400 and keeps waiting.
    CallbackRejected { reason: String },
    /// The browser came back with a code; the remote exchanges it.
    CallbackReceived,
    /// One forwarded connection failed (the tunnel keeps running).
    ForwardFailed { error: String },
    /// Something went wrong in teardown or in the final status report; the outcome stands.
    Warning { message: String },
}

/// A receiver of tunnel events; called from the tunnel's task, keep it quick.
pub type EventSink = Arc<dyn Fn(TunnelEvent) + Send + Sync>;

/// What the remote login saved, and what the remote reports afterwards (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TunnelSuccess {
    /// The host as given (`user@host:port`).
    pub host: String,
    /// What the remote login reported (its `login_succeeded` event): the remote auth.json,
    /// account, and the remote llmx's own timings.
    #[serde(flatten)]
    pub login: LoginSucceeded,
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

/// Run a tunnel login. `interrupt` ends it early with a full teardown (the CLI passes Ctrl-C).
pub async fn run(
    opts: TunnelOptions,
    events: EventSink,
    interrupt: impl Future<Output = ()> + Send + 'static,
) -> Result<TunnelSuccess, TunnelError> {
    let port = opts.port;
    let listener = if opts.device {
        None
    } else {
        let l = bind_local(port).await?;
        events(TunnelEvent::Bound { port });
        Some(l)
    };

    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        AbortOnDrop(tokio::spawn(async move {
            interrupt.await;
            cancel.cancel();
        }))
    };

    let overrides = overrides_words(&opts.overrides);
    let remote_timeout = (opts.timeout + REMOTE_TIMEOUT_MARGIN).as_secs().min(LOGIN_MAX_TIMEOUT_SECS);
    let (link, host, llmx, remote) = match &opts.target {
        TunnelTarget::Ssh(address) => {
            let host = address.to_string();
            let session = until(&cancel, Session::connect(address, &opts.ssh)).await??;
            let info = session.info().clone();
            events(TunnelEvent::Connected {
                host: host.clone(),
                user: info.user.clone(),
                host_key_fingerprint: info.host_key_fingerprint.clone(),
            });
            let llmx = until(&cancel, remote_llmx(&session, &host, &opts, &events)).await??;
            let method = if opts.device {
                "--device-auth --json".to_string()
            } else {
                format!("--no-browser --json --port {port}")
            };
            let login = format!("{}{overrides} login {method} --timeout {remote_timeout}", shell_quote(&llmx));
            let proc = until(&cancel, session.spawn(&bound_to_session(&login))).await??;
            (Link::Ssh(session), host, llmx, RemoteLogin::new(proc))
        }
        TunnelTarget::Docker(name) => {
            let c = until(&cancel, container::open(name, &opts)).await??;
            events(TunnelEvent::ContainerReady { container: name.clone(), id: c.id_short(), user: c.user.clone() });
            let llmx = until(&cancel, c.llmx(&opts, &events)).await??;
            let mut cmd = vec![llmx.clone()];
            cmd.extend(opts.overrides.iter().map(|o| format!("--config={o}")));
            cmd.push("login".into());
            if opts.device {
                cmd.push("--device-auth".into());
            } else {
                cmd.extend(["--no-browser".into(), "--port".into(), port.to_string()]);
            }
            cmd.extend(["--json", "--end-on-stdin-eof", "--timeout"].map(String::from));
            cmd.push(remote_timeout.to_string());
            let (exec, pid) = until(&cancel, c.spawn(cmd)).await??;
            events(TunnelEvent::RemoteStarted { llmx: llmx.clone(), pid });
            (Link::Container(Box::new(c)), format!("docker:{name}"), llmx, RemoteLogin::exec(exec, pid))
        }
    };

    let relay = mpsc::channel(4);
    let mut t = Tunnel {
        link,
        host,
        llmx,
        port,
        device: opts.device,
        issuer: opts.issuer.clone(),
        events,
        listener,
        forwarder: None,
        relay: None,
        relayed: (Some(relay.0), relay.1),
        pending: VecDeque::new(),
        remote,
        failures: mpsc::unbounded_channel(),
        forward_failures: 0,
    };
    let outcome = t.wait(&cancel, opts.timeout).await;
    let end = t.teardown().await;
    drop(watcher);
    let mut success = match outcome {
        Err(TunnelError::Interrupted { .. }) => return Err(TunnelError::Interrupted { remote: end.describe() }),
        o => o?,
    };
    success.forward_failures = t.forward_failures;
    success.status = t.status(&opts.overrides).await;
    Ok(success)
}

/// The remote login command, run so that it dies with the SSH session: it runs in the background
/// with stdin from /dev/null, its pid goes first on stdout (teardown signals it by pid), and a
/// watchdog holds the channel's stdin; when sshd closes the session (the connection dropped, this
/// process killed), that stdin ends and the watchdog stops the login (TERM, then KILL), so it does
/// not keep the remote callback port until its own timeout. Chosen over a pty (SIGHUP on close):
/// a pty would merge stderr into stdout, rewrite line ends and make the remote llmx think it
/// talks to a terminal.
fn bound_to_session(login: &str) -> String {
    format!(
        "exec 3<&0 </dev/null; {login} 3<&- & p=$!; echo $p; \
         {{ cat <&3 >/dev/null 2>&1; kill -TERM $p 2>/dev/null; sleep 3; kill -KILL $p 2>/dev/null; }} \
         >/dev/null 2>&1 & w=$!; exec 3<&-; wait $p; s=$?; kill $w 2>/dev/null; exit $s"
    )
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
        () = cancel.cancelled() => Err(TunnelError::Interrupted { remote: "no remote login was started".into() }),
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the remote login runs, and how commands reach it there.
enum Link {
    Ssh(Session),
    Container(Box<container::Container>),
}

/// One tunnel's moving parts, for the wait and the teardown.
struct Tunnel {
    link: Link,
    host: String,
    llmx: String,
    port: u16,
    device: bool,
    issuer: String,
    events: EventSink,
    /// Bound at the start (browser login); moves into the forwarder or relay when the remote listens.
    listener: Option<TcpListener>,
    forwarder: Option<Forwarder>,
    relay: Option<Relay>,
    /// Callbacks the relay hands over (the sender moves into the relay when it starts).
    relayed: (Option<mpsc::Sender<Relayed>>, mpsc::Receiver<Relayed>),
    /// Relayed callbacks written to the login's stdin, waiting for what it makes of them (in order).
    pending: VecDeque<tokio::sync::oneshot::Sender<relay::Answer>>,
    remote: RemoteLogin,
    failures: (mpsc::UnboundedSender<String>, mpsc::UnboundedReceiver<String>),
    forward_failures: usize,
}
