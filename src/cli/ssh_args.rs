//! The SSH flags shared by every command that reaches SSH hosts (`auth push`, `auth status`,
//! `auth tunnel`), and the terminal prompt for the passphrase of an encrypted key.
#![allow(unsafe_code, reason = "termios calls turn echo off for the passphrase prompt")]

use crate::cli::output;
use clap::Args;
use llmx::secret::Secret;
use llmx::ssh::{NewHostKey, PassphrasePrompt, SshAddress, SshOptions, parse_jump_list};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// SSH: record the host key of a host seen for the first time in ~/.ssh/known_hosts (a changed
    /// key is always refused)
    #[arg(long)]
    pub accept_new: bool,

    /// SSH: private key to log in with (repeatable); tried after ssh-agent, before the keys named
    /// in ~/.ssh/config
    #[arg(short = 'i', long = "identity", value_name = "PATH")]
    pub identity: Vec<PathBuf>,

    /// SSH and Kubernetes: seconds to wait for a host or API server to connect and answer (SSH:
    /// resolve, connect, handshake and authenticate) [default: ConnectTimeout of ~/.ssh/config, else 15]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: Option<u64>,

    /// SSH: go through these jump hosts, as `ssh -J` (comma-separated [user@]host[:port] or
    /// ssh://…, each verified against known_hosts under its own name; `none`: directly). Replaces
    /// the ProxyJump/ProxyCommand of ~/.ssh/config for the target hosts
    #[arg(short = 'J', long = "jump", value_name = "HOSTS", value_parser = parse_jump)]
    pub jump: Option<JumpChain>,
}

/// The value of `-J` (a newtype: clap would read a bare `Vec` as several values).
#[derive(Debug, Clone)]
pub struct JumpChain(pub Vec<SshAddress>);

fn parse_jump(s: &str) -> Result<JumpChain, String> {
    parse_jump_list(s).map(JumpChain)
}

impl SshArgs {
    /// Options for the SSH transport: `~/.ssh` of `$HOME`, `$SSH_AUTH_SOCK`, a passphrase
    /// prompt on the controlling terminal when there is one, and ssh's "Permanently added"
    /// line for every host key `--accept-new` records.
    pub fn options(&self) -> SshOptions {
        self.options_for(false)
    }

    /// [`options`](SshArgs::options) for a run that may be a dry run: then a first-seen host
    /// key is accepted for this connection only, and nothing is recorded.
    pub fn options_for(&self, dry_run: bool) -> SshOptions {
        let opts = SshOptions {
            identities: self.identity.clone(),
            accept_new: self.accept_new,
            record_new_keys: !dry_run,
            on_new_host_key: Some(Arc::new(|k: &NewHostKey| output::err_lines(&[new_host_key_line(k)]))),
            connect_timeout: Duration::from_secs(self.connect_timeout.unwrap_or(15)),
            connect_timeout_from_flag: self.connect_timeout.is_some(),
            jump: self.jump.as_ref().map(|j| j.0.clone()),
            passphrase: Some(terminal_prompt()),
            system_config: system_config(),
            ..SshOptions::default()
        };
        if output::is_verbose() {
            let dir = opts.ssh_dir().map(|d| d.display().to_string()).unwrap_or_else(|e| e.to_string());
            let system = opts.system_known_hosts.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            let system_conf = opts.system_config.as_ref().map(|p| p.display().to_string()).unwrap_or("none".into());
            output::verbose(format!(
                "ssh: config {dir}/config then {system_conf}, host keys {dir}/known_hosts and {system}, agent {}",
                std::env::var("SSH_AUTH_SOCK").unwrap_or_else(|_| "none (SSH_AUTH_SOCK unset)".into())
            ));
        }
        opts
    }
}

/// The system-wide ssh_config: `LLMX_SSH_SYSTEM_CONFIG` when set (empty: none, like `ssh -F`
/// with a file of one's own), else OpenSSH's `/etc/ssh/ssh_config`.
fn system_config() -> Option<PathBuf> {
    match std::env::var_os("LLMX_SSH_SYSTEM_CONFIG") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(llmx::ssh::SYSTEM_CONFIG)),
    }
}

/// What ssh says when it records a key, word for word; on a dry run, that nothing was recorded.
pub fn new_host_key_line(k: &NewHostKey) -> String {
    if k.recorded {
        format!("Warning: Permanently added '{}' ({}) to the list of known hosts.", k.name, k.key_type)
    } else {
        format!(
            "Accepted the new host key of '{}' ({} {}) for this dry run only; not added to {}.",
            k.name,
            k.key_type,
            k.fingerprint,
            k.file.display()
        )
    }
}

/// Ask on `/dev/tty` (as ssh does), once per key even when several hosts need it; no terminal,
/// no question.
fn terminal_prompt() -> PassphrasePrompt {
    let cache: Arc<Mutex<HashMap<PathBuf, Option<Secret>>>> = Arc::default();
    Arc::new(move |key: &Path| {
        // Held across the question so that concurrent pushes ask one at a time.
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(answer) = cache.get(key) {
            return answer.clone();
        }
        let answer = ask(&format!("Enter passphrase for key '{}': ", key.display()));
        cache.insert(key.to_path_buf(), answer.clone());
        answer
    })
}

fn ask(question: &str) -> Option<Secret> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios calls on a descriptor we hold open; `old` is filled by tcgetattr before use.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
        return None;
    }
    let mut quiet = old;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut out = &tty;
    let _ = out.write_all(question.as_bytes());
    let _ = out.flush();
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    read.ok()?;
    let p = line.trim_end_matches(['\n', '\r']);
    (!p.is_empty()).then(|| Secret::new(p))
}
