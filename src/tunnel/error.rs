//! Why a tunnel failed: [`TunnelError`], with a stable machine-readable [`TunnelError::reason`]
//! and a [`TunnelError::hint`] that names the command or flag that fixes it.

use super::INSTALL_PATH;
use super::remote_login::MAX_LINE;
use crate::ssh::SshError;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The Engine, or the container, refused (not running, no such container, an API error).
    #[error("{target}: {message}")]
    Container { target: String, message: String, hint: Option<String> },
    #[error("{target}: no llmx found (looked on the container's PATH and for {home}/{INSTALL_PATH})")]
    NoContainerLlmx { target: String, home: String },
    #[error(
        "{target}: cannot --install: the container has no {loader}; this llmx is a dynamically linked glibc \
         program and needs that loader and glibc there"
    )]
    NoLoader { target: String, loader: String },
    #[error("{host}: the issuer does not offer device-code sign-in (the remote login fell back to the browser)")]
    DeviceCodeOff { host: String },
    #[error(
        "{host}: the remote llmx sent a device-code page that is not the configured issuer's \
         {issuer}/codex/device; not opening it: {url}"
    )]
    BadVerificationUrl { host: String, issuer: String, url: String },
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
    #[error(
        "{host}: the remote llmx sent a sign-in URL that is not the configured issuer's \
         {issuer}/oauth/authorize; not opening it: {url}"
    )]
    BadAuthorizeUrl { host: String, issuer: String, url: String },
    #[error("{host}: the remote llmx listens on port {remote}, not {local}")]
    PortMismatch { host: String, local: u16, remote: u16 },
    #[error("{host}: the remote llmx sent an output line longer than {} KiB; it does not speak `login --json`", MAX_LINE / 1024)]
    LineTooLong { host: String },
    #[error("{host}: the remote login failed: {error}")]
    RemoteLoginFailed { host: String, reason: String, error: String },
    #[error("{host}: `{llmx} login` exited ({status}) without a result{detail}")]
    RemoteExited { host: String, llmx: String, status: String, detail: String },
    #[error("nobody completed the sign-in within {}", crate::text::format_duration(*after))]
    TimedOut { after: Duration },
    /// `remote` says what became of the remote login (cancelled, or why it could not be).
    #[error("interrupted; {remote}")]
    Interrupted { remote: String },
}

impl TunnelError {
    /// A stable machine-readable name (the `reason` of `tunnel_failed`).
    pub fn reason(&self) -> &'static str {
        match self {
            TunnelError::PortBusy { .. } => "port_busy",
            TunnelError::Bind { .. } => "bind",
            TunnelError::Ssh(_) => "ssh",
            TunnelError::Container { .. } => "docker",
            TunnelError::NoRemoteLlmx { .. }
            | TunnelError::RemoteLlmxMissing { .. }
            | TunnelError::NoContainerLlmx { .. } => "no_remote_llmx",
            TunnelError::PlatformMismatch { .. }
            | TunnelError::UnknownPlatform { .. }
            | TunnelError::NoLoader { .. } => "platform_mismatch",
            TunnelError::DeviceCodeOff { .. } => "device_code_off",
            TunnelError::ReadBinary { .. }
            | TunnelError::InstallRefused { .. }
            | TunnelError::InstalledDoesNotRun { .. } => "install",
            TunnelError::BadAuthorizeUrl { .. }
            | TunnelError::BadVerificationUrl { .. }
            | TunnelError::PortMismatch { .. }
            | TunnelError::LineTooLong { .. } => "protocol",
            TunnelError::RemoteLoginFailed { .. } => "remote_login_failed",
            TunnelError::RemoteExited { .. } => "remote_exited",
            TunnelError::TimedOut { .. } => "timeout",
            TunnelError::Interrupted { .. } => "interrupted",
        }
    }

    /// The command or flag that fixes it, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            TunnelError::PortBusy { port } => Some(format!(
                "see who holds it with `ss -ltnp 'sport = :{port}'` and stop it (an `llmx login` waiting here stops \
                 when a new `llmx login --port {port}` of the same LLMX_HOME starts), or use --port N with an issuer \
                 that accepts that port"
            )),
            TunnelError::Ssh(e) => e.hint(),
            TunnelError::Container { hint, .. } => hint.clone(),
            TunnelError::NoContainerLlmx { target, .. } => Some(format!(
                "copy an llmx into the container and name it with --remote-llmx PATH, or pass --install to copy \
                 this one to ~/.llmx/bin/llmx there (same architecture and a glibc only): \
                 `llmx auth tunnel {target} --install`"
            )),
            TunnelError::NoLoader { .. } => Some(
                "put an llmx built for that container in it (a static or musl build) and name it with --remote-llmx \
                 PATH, or push this machine's login instead: `llmx auth push docker:NAME`"
                    .to_string(),
            ),
            TunnelError::DeviceCodeOff { .. } => Some(
                "sign in through the browser instead: run the same `llmx auth tunnel` without --device".to_string(),
            ),
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
            TunnelError::BadAuthorizeUrl { .. } | TunnelError::BadVerificationUrl { .. } => Some(
                "the host's llmx uses another issuer: set the same auth_issuer here (config.toml or \
                 -c auth_issuer=URL, which the tunnel also passes to the host)"
                    .to_string(),
            ),
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
