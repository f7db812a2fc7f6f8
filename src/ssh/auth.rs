//! User authentication on a connected `ssh2::Session`: the keys held by ssh-agent first (unless
//! `IdentitiesOnly`), then identity files in order (`-i`, then the config's `IdentityFile`s, then
//! `id_ed25519`, `id_ecdsa`, `id_rsa` in `~/.ssh`). An encrypted key is only tried when the
//! passphrase callback answers (the CLI asks on a terminal, and nobody otherwise).
//!
//! A key file of ours that the group or others can read is refused, as ssh refuses it
//! ("UNPROTECTED PRIVATE KEY FILE"). Every attempt is described in the final error, so
//! "permission denied" says what was tried.

use crate::ssh::{SshError, SshOptions};
use base64::Engine;
use std::path::{Path, PathBuf};

/// Default private-key names in `~/.ssh`, in OpenSSH's order (DSA and the security-key types
/// are left out: libssh2 cannot use them).
pub const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// Whom to authenticate and with what, once the config has been applied.
pub struct Identity<'a> {
    pub user: &'a str,
    /// Identity files in the order to try.
    pub keys: &'a [PathBuf],
    pub use_agent: bool,
}

/// Authenticate `id.user` on `host` (`host` or `[host]:port`, for messages).
pub fn authenticate(
    sess: &ssh2::Session,
    host: &str,
    id: &Identity<'_>,
    opts: &SshOptions,
    timeout_secs: u64,
) -> Result<(), SshError> {
    let (user, keys, prompt) = (id.user, id.keys, opts.passphrase.as_ref());
    let timeout = || SshError::Timeout { host: host.to_string(), secs: timeout_secs, during: "authentication" };
    let mut tried: Vec<String> = Vec::new();
    // With a key to offer, the `none` request that asks for the server's methods would cost a
    // round trip before the first key: the keys go first, and the methods are asked for only
    // when every key was refused (to say so when the server takes no keys at all).
    let agent = id.use_agent && agent_configured(opts.agent_socket.as_deref());
    if !agent && !keys.iter().any(|k| k.is_file()) {
        let methods = server_methods(sess, user);
        if sess.authenticated() {
            return Ok(()); // the server accepted "none"
        }
        if let Some(e) = keys_not_offered(&methods, user, host) {
            return Err(e);
        }
    }
    if agent && try_agent(sess, user, opts.agent_socket.as_deref(), &mut tried) {
        return Ok(());
    }
    for key in keys {
        if !key.is_file() {
            continue;
        }
        let shown = key.display().to_string();
        if let Some(why) = too_open(key) {
            tried.push(why);
            continue;
        }
        let public = key.with_extension(match key.extension() {
            Some(e) => format!("{}.pub", e.to_string_lossy()),
            None => "pub".to_string(),
        });
        let public = public.is_file().then_some(public);
        let passphrase = if is_encrypted(key) {
            match prompt.and_then(|p| p(key)) {
                Some(p) => Some(p),
                None => {
                    tried.push(format!(
                        "{shown} (encrypted; no terminal to ask for its passphrase: load it with ssh-add)"
                    ));
                    continue;
                }
            }
        } else {
            None
        };
        let pass = passphrase.as_ref().map(|p| p.expose());
        match sess.userauth_pubkey_file(user, public.as_deref(), key, pass) {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push(shown),
            Err(e) if crate::ssh::connect::is_timeout(&e) => return Err(timeout()),
            Err(e) => {
                // libssh2 reports a wrong passphrase and an unusable key file the same way as a
                // refused key; say which it was when we can tell.
                let why = match e.code() {
                    ssh2::ErrorCode::Session(-16) => format!("{shown} (cannot read the key: {})", e.message()),
                    ssh2::ErrorCode::Session(-18) | ssh2::ErrorCode::Session(-19) => shown,
                    _ => format!("{shown} ({})", e.message()),
                };
                tried.push(why);
            }
        }
    }
    if tried.is_empty() {
        tried.push("no key: no ssh-agent and no identity file found".to_string());
    } else if let Some(e) = keys_not_offered(&server_methods(sess, user), user, host) {
        return Err(e);
    }
    Err(SshError::Auth { user: user.to_string(), host: host.to_string(), tried: tried.join(", ") })
}

/// The server's authentication methods, asked with a `none` request (which a server may accept:
/// then the session is authenticated); empty when it does not say.
fn server_methods(sess: &ssh2::Session, user: &str) -> String {
    sess.auth_methods(user).map(str::to_string).unwrap_or_default()
}

/// The error for a server whose `methods` take no keys at all, if so.
fn keys_not_offered(methods: &str, user: &str, host: &str) -> Option<SshError> {
    (!methods.is_empty() && !methods.split(',').any(|m| m == "publickey")).then(|| SshError::Auth {
        user: user.to_string(),
        host: host.to_string(),
        tried: format!("nothing: the server offers only {methods}, and llmx authenticates with keys"),
    })
}

/// Whether an agent is named (`IdentityAgent`, else `$SSH_AUTH_SOCK`): then its keys are tried.
fn agent_configured(socket: Option<&Path>) -> bool {
    socket.is_some() || std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty())
}

/// Try each identity the agent holds; `false` (with a note in `tried`) when none works.
fn try_agent(sess: &ssh2::Session, user: &str, socket: Option<&Path>, tried: &mut Vec<String>) -> bool {
    let Ok(mut agent) = sess.agent() else { return false };
    if let Some(path) = socket
        && agent.set_identity_path(path).is_err()
    {
        return false;
    }
    if agent.connect().is_err() {
        tried.push("ssh-agent (not reachable at $SSH_AUTH_SOCK)".to_string());
        return false;
    }
    let ids = match agent.list_identities().and_then(|_| agent.identities()) {
        Ok(ids) => ids,
        Err(_) => return false,
    };
    let n = ids.len();
    for id in ids {
        if agent.userauth(user, &id).is_ok() && sess.authenticated() {
            let _ = agent.disconnect();
            return true;
        }
    }
    let _ = agent.disconnect();
    tried.push(format!("ssh-agent ({n} key{})", if n == 1 { "" } else { "s" }));
    false
}

/// As OpenSSH: a private key of ours that the group or others may read is not used. The note for
/// the error, in ssh's words; `None` when the key is private enough.
pub fn too_open(key: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).ok()?;
    let me = crate::home::effective_uid();
    (meta.uid() == me && meta.mode() & 0o077 != 0).then(|| {
        format!(
            "{} (WARNING: UNPROTECTED PRIVATE KEY FILE! Permissions {:04o} are too open; it is required that your \
             private key files are NOT accessible by others: ignored, chmod 600 it)",
            key.display(),
            meta.mode() & 0o7777
        )
    })
}

/// Whether a private key file is protected by a passphrase: the old PEM header, PKCS#8
/// `ENCRYPTED PRIVATE KEY`, or an OpenSSH key whose cipher is not `none`.
pub fn is_encrypted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    if text.contains("Proc-Type: 4,ENCRYPTED") || text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return true;
    }
    let Some(body) = text
        .split("-----BEGIN OPENSSH PRIVATE KEY-----")
        .nth(1)
        .and_then(|r| r.split("-----END OPENSSH PRIVATE KEY-----").next())
    else {
        return false;
    };
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else { return false };
    // "openssh-key-v1\0", then the cipher name as an SSH string.
    let magic = b"openssh-key-v1\0";
    let Some(rest) = raw.strip_prefix(magic.as_slice()) else { return false };
    let Some(len) = rest.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) else { return false };
    rest.get(4..4 + len as usize).is_some_and(|cipher| cipher != b"none")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, name: &str, pass: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", pass, "-C", "t", "-f"])
            .arg(&p)
            .status()
            .expect("ssh-keygen is needed (openssh-client)");
        assert!(st.success());
        p
    }

    #[test]
    fn detects_encrypted_openssh_keys() {
        let t = tempfile::tempdir().unwrap();
        assert!(!is_encrypted(&keygen(t.path(), "plain", "")));
        assert!(is_encrypted(&keygen(t.path(), "locked", "correct horse")));
        assert!(!is_encrypted(&t.path().join("missing")));
    }
}
