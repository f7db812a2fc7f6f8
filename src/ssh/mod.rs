//! The SSH transport (ssh2 / libssh2), shared by `llmx auth push ssh:…` and `llmx auth tunnel`.
//!
//! - [`config`]: `~/.ssh/config` as OpenSSH reads it for where, as whom and through which jump
//!   hosts we connect and which host key we trust (Host/Match/Include, ProxyJump, ProxyCommand,
//!   HostKeyAlias, known-hosts files, StrictHostKeyChecking, …); what we cannot honour is an error.
//! - [`known_hosts`]: strict host-key checking against `~/.ssh/known_hosts` and
//!   `/etc/ssh/ssh_known_hosts` (hashed and `[host]:port` entries); `accept_new` records an unknown
//!   host, a changed key is always refused.
//! - [`auth`]: ssh-agent, then identity files, with a passphrase callback for encrypted keys.
//! - [`session`]: one thread per connection owns the `ssh2::Session` and all of its channels (libssh2
//!   serialises every call, and a blocking read on one channel would stall the others); tokio code
//!   talks to it through a cloneable [`Session`] handle: one-shot calls (exec with captured output,
//!   SFTP), streamed remote processes, `direct-tcpip` port forwards, and `direct-streamlocal`
//!   channels to a remote Unix socket (a Docker engine over SSH).
//!
//! Nothing here prints. Where the files live is injectable through [`SshOptions::ssh_dir`], so tests
//! never touch the real `~/.ssh`.

pub mod address;
pub mod auth;
pub mod config;
pub mod connect;
pub mod known_hosts;
pub mod session;

use crate::secret::Secret;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The largest file or remote command output read from another machine (auth.json, passwd and
/// group are a few KiB): a hostile host or container cannot make us buffer more. The SSH
/// transport enforces it; the Docker target uses the same bound.
pub const MAX_READ: usize = 4 * 1024 * 1024;

pub use address::SshAddress;
pub use connect::{Destination, Route, parse_jump_list};
pub use session::{
    Conn, ExecEvent, ExecOutput, ExitStatus, ForwardStats, Forwarding, ProcessInput, RemoteProcess, Session,
    SessionInfo,
};

/// Asks the user for the passphrase of an encrypted private key; `None` when nobody can answer
/// (no terminal). Supplied by the CLI layer: the library never touches the terminal itself.
pub type PassphrasePrompt = Arc<dyn Fn(&Path) -> Option<Secret> + Send + Sync>;

/// A host key seen for the first time and accepted (`accept_new`): what ssh reports as
/// "Permanently added '[host]:port' (ED25519) to the list of known hosts.".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHostKey {
    /// `host`, or `[host]:port` off port 22, as known_hosts names it.
    pub name: String,
    /// As ssh shows it: `ED25519`, `ECDSA`, `RSA`...
    pub key_type: String,
    pub fingerprint: String,
    /// The known_hosts file it was recorded in (or would have been).
    pub file: PathBuf,
    /// False on a dry run (`record_new_keys` off): accepted for this connection only.
    pub recorded: bool,
}

/// Told about every [`NewHostKey`] (supplied by the CLI, which says so on stderr).
pub type HostKeyNotice = Arc<dyn Fn(&NewHostKey) + Send + Sync>;

/// How to connect. `Default` gives the behaviour of a plain `ssh host`.
#[derive(Clone)]
pub struct SshOptions {
    /// The directory holding `config`, `known_hosts` and the default keys. `None`: `~/.ssh` of
    /// `$HOME` (tests point `HOME` at a temp dir).
    pub ssh_dir: Option<PathBuf>,
    /// The system-wide known-hosts file (`/etc/ssh/ssh_known_hosts`); `None` to ignore it.
    pub system_known_hosts: Option<PathBuf>,
    /// The system-wide ssh_config (`/etc/ssh/ssh_config`), read after `~/.ssh/config` as OpenSSH
    /// reads it (the first value obtained still wins); `None` to ignore it.
    pub system_config: Option<PathBuf>,
    /// `-i/--identity` files, tried before those of the config and the default names.
    pub identities: Vec<PathBuf>,
    /// Accept the key of a host that is not in known_hosts yet (never a changed one) and record
    /// it, unless `record_new_keys` is off (a dry run writes nothing anywhere).
    pub accept_new: bool,
    pub record_new_keys: bool,
    pub on_new_host_key: Option<HostKeyNotice>,
    /// TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// `connect_timeout` was given on the command line: it wins over `ConnectTimeout` in the
    /// config (otherwise the config's value wins over the default).
    pub connect_timeout_from_flag: bool,
    /// `-J`: the jump hosts to go through, instead of the config's `ProxyJump`/`ProxyCommand`
    /// (`Some(empty)`: `-J none`, direct). Applies to the destination, not to the jump hosts.
    pub jump: Option<Vec<SshAddress>>,
    /// Limit for each blocking libssh2 call once connected.
    pub io_timeout: Duration,
    /// While streams run (a tunnel), send an SSH keepalive this often (zero: never), and give the
    /// connection up as lost when nothing at all has come back for `keepalive_count` intervals,
    /// plus one (as OpenSSH's `ServerAliveInterval` / `ServerAliveCountMax`).
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
    /// Try the keys held by ssh-agent first.
    pub use_agent: bool,
    /// The agent's socket; `None`: `$SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    pub passphrase: Option<PassphrasePrompt>,
}

/// Where OpenSSH keeps its system-wide client configuration.
pub const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";

impl Default for SshOptions {
    fn default() -> SshOptions {
        SshOptions {
            ssh_dir: None,
            system_known_hosts: Some(PathBuf::from("/etc/ssh/ssh_known_hosts")),
            system_config: Some(PathBuf::from(SYSTEM_CONFIG)),
            identities: Vec::new(),
            accept_new: false,
            record_new_keys: true,
            on_new_host_key: None,
            connect_timeout: Duration::from_secs(15),
            connect_timeout_from_flag: false,
            jump: None,
            io_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(15),
            keepalive_count: 3,
            use_agent: true,
            agent_socket: None,
            passphrase: None,
        }
    }
}

impl std::fmt::Debug for SshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshOptions")
            .field("ssh_dir", &self.ssh_dir)
            .field("identities", &self.identities)
            .field("accept_new", &self.accept_new)
            .field("record_new_keys", &self.record_new_keys)
            .field("connect_timeout", &self.connect_timeout)
            .field("jump", &self.jump)
            .finish_non_exhaustive()
    }
}

impl SshOptions {
    /// The `~/.ssh` directory in use.
    pub fn ssh_dir(&self) -> Result<PathBuf, SshError> {
        match &self.ssh_dir {
            Some(d) => Ok(d.clone()),
            None => dirs::home_dir().map(|h| h.join(".ssh")).ok_or(SshError::NoHome),
        }
    }
}

/// Everything that can go wrong on the way to a remote file. Messages are one line, name the host,
/// and never contain a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("cannot find a home directory for ~/.ssh; set HOME")]
    NoHome,
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{host}: no answer within {secs}s while {during}")]
    Timeout { host: String, secs: u64, during: &'static str },
    #[error("{host}: SSH handshake failed: {reason}")]
    Handshake { host: String, reason: String },
    #[error("host key for {host} is not known ({key_type} {fingerprint})")]
    UnknownHost { host: String, key_type: String, fingerprint: String },
    /// No key of the offered type is on file, but keys of other types are: the host may have
    /// been replaced, so `--accept-new` does not record it either.
    #[error(
        "WARNING: POSSIBLE HOST KEY CHANGE for {host}! It offers {key_type} {fingerprint}, but only keys of \
         another type ({known_types}) are recorded for it. The host may have been reinstalled, or someone \
         could be intercepting the connection (man-in-the-middle). Refusing to connect, also with --accept-new."
    )]
    HostKeyTypeChanged { host: String, key_type: String, fingerprint: String, known_types: String, file: PathBuf },
    #[error(
        "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {host}! It now offers {key_type} {fingerprint}, \
         which differs from the key recorded in {}:{line}. Someone could be intercepting the connection \
         (man-in-the-middle), or the host key was just replaced. Refusing to connect.",
        file.display()
    )]
    HostKeyChanged { host: String, key_type: String, fingerprint: String, file: PathBuf, line: usize },
    #[error("host key for {host} ({fingerprint}) is marked @revoked in {}:{line}; refusing to connect", file.display())]
    HostKeyRevoked { host: String, fingerprint: String, file: PathBuf, line: usize },
    #[error("cannot record the host key in {}: {reason}", file.display())]
    RecordHost { file: PathBuf, reason: String },
    #[error("permission denied for {user}@{host} (tried {tried})")]
    Auth { user: String, host: String, tried: String },
    #[error("{host}: {what}: {reason}")]
    Remote { host: String, what: String, reason: String },
    #[error("{host}: refusing to write {path}: {reason}")]
    Refused { host: String, path: String, reason: String },
    #[error("{host}: connection lost while {during}")]
    Closed { host: String, during: String },
    /// A host or user name from outside ssh_config (a target, `@FILE`, `-J`, `DOCKER_HOST`, a
    /// docker context) that a `ProxyCommand` would hand to the shell (OpenSSH 9.6's rule).
    #[error("{what} '{name}' is not safe to put into the ProxyCommand ({why}); refusing to run it, as OpenSSH does")]
    UnsafeName { what: &'static str, name: String, why: String },
}

impl SshError {
    /// The command or setting that fixes it, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            SshError::UnknownHost { .. } => Some(
                "check the fingerprint with the host's administrator (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on \
                 the host), then run again with --accept-new to record it"
                    .to_string(),
            ),
            SshError::HostKeyTypeChanged { key_type, file, .. } => Some(format!(
                "verify the fingerprint with the host's administrator (ssh-keygen -lf \
                 /etc/ssh/ssh_host_*_key.pub on the host); if it matches, add the host's {key_type} key to {} by \
                 hand; --accept-new never records a key for a host known under another key type",
                file.display()
            )),
            SshError::HostKeyChanged { host, file, line, .. } => Some(format!(
                "if the host was really reinstalled, remove line {line} from {} (`ssh-keygen -R '{host}' -f {}`) and \
                 connect again; --accept-new never replaces a changed key",
                file.display(),
                file.display()
            )),
            SshError::Auth { .. } => Some(
                "add your public key to the host's ~/.ssh/authorized_keys (ssh-copy-id), load it into ssh-agent \
                 (ssh-add), or name it with -i KEY"
                    .to_string(),
            ),
            SshError::UnsafeName { .. } => Some(
                "name the host by an alias in ~/.ssh/config (HostName there may be anything), or check where the \
                 name came from: it may be an attempt to run a command"
                    .to_string(),
            ),
            SshError::Connect { .. } | SshError::Timeout { .. } => {
                Some("check the host name and port, and that sshd runs there (`ssh -v HOST` shows more)".to_string())
            }
            _ => None,
        }
    }
}

/// Quote `s` for a POSIX shell: one single-quoted word in which nothing is special. A `'` or a
/// `\` is written outside the quotes, escaped (`'\''`, `'\\'`), so that fish, whose single quotes
/// give `\` a meaning, reads the same word as sh, dash, bash and zsh.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '\\' => out.push_str("'\\\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What is sent to the server for `cmd`, a POSIX shell command line. sshd hands it to the user's
/// login shell, which may not be POSIX (fish has no `$$`; csh is another language), so the login
/// shell is only asked to run `/bin/sh` on the quoted line.
pub fn posix_command(cmd: &str) -> String {
    format!("exec /bin/sh -c {}", shell_quote(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_makes_one_inert_word() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)`x`;|&"), "'$(rm -rf /)`x`;|&'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote(r"a\b"), r"'a'\\'b'");
    }

    /// Words a remote command line must carry unchanged (the ssh tests run them through fish).
    pub const HOSTILE_WORDS: [&str; 15] = [
        "plain",
        "with space",
        "quote'in\"side",
        "''''",
        "$HOME",
        "$(id)",
        "`id`",
        "a;b|c&d",
        "-n",
        "new\nline",
        r"back\slash",
        r"\'",
        r"ends with \",
        "glob * ? [a] ~ # {a,b}",
        "\x1b]52;c;aGk=\x07",
    ];

    #[test]
    fn posix_command_round_trips_hostile_words_through_two_shells() {
        // As sshd runs it: the login shell (here sh) gets `exec /bin/sh -c '...'`.
        for s in HOSTILE_WORDS {
            let inner = format!("printf %s {}", shell_quote(s));
            let out = std::process::Command::new("sh").arg("-c").arg(posix_command(&inner)).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn shell_quote_round_trips_through_sh() {
        for s in HOSTILE_WORDS {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
