//! The SSH flags shared by every command that reaches SSH hosts (`auth push`, `auth status`,
//! `auth tunnel`), and the terminal prompt for the passphrase of an encrypted key.
#![allow(unsafe_code, reason = "termios calls turn echo off for the passphrase prompt")]

use clap::Args;
use llmx::secret::Secret;
use llmx::ssh::{PassphrasePrompt, SshOptions};
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

    /// SSH and Kubernetes: seconds to wait for a host or API server to connect and answer (SSH: resolve,
    /// connect, handshake and authenticate)
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
}

impl SshArgs {
    /// Options for the SSH transport: `~/.ssh` of `$HOME`, `$SSH_AUTH_SOCK`, and a passphrase
    /// prompt on the controlling terminal when there is one.
    pub fn options(&self) -> SshOptions {
        SshOptions {
            identities: self.identity.clone(),
            accept_new: self.accept_new,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            passphrase: Some(terminal_prompt()),
            ..SshOptions::default()
        }
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
