//! From `[user@]host[:port]` to an authenticated `ssh2::Session`: apply `~/.ssh/config`, open the
//! TCP connection within the connect timeout, do the handshake, verify the host key, authenticate.
//! Blocking; runs on the thread that will own the session (see [`crate::ssh::session`]).
#![allow(unsafe_code, reason = "getpwuid_r for the local user name: std has no safe wrapper")]

use crate::ssh::SshAddress;
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};
use crate::ssh::{SshError, SshOptions, auth, config};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// Where and as whom to connect, after the config has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// What the user typed (an alias or a host name).
    pub alias: String,
    /// The host name or address actually connected to (`HostName`), and checked in known_hosts.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Identity files in the order to try.
    pub keys: Vec<PathBuf>,
    pub use_agent: bool,
    /// Files consulted for host keys; the first one is where `accept_new` records.
    pub known_hosts: Vec<PathBuf>,
    /// `HashKnownHosts yes`: record new hosts hashed.
    pub hash_known_hosts: bool,
}

impl Destination {
    /// Apply the config to `addr`. An explicit user or port in `addr` wins over the config.
    pub fn resolve(addr: &SshAddress, opts: &SshOptions) -> Result<Destination, SshError> {
        let ssh_dir = opts.ssh_dir()?;
        let cfg = config::load(&ssh_dir.join("config"), &addr.host)?;
        let host = match &cfg.host_name {
            Some(h) => h.replace("%h", &addr.host),
            None => addr.host.clone(),
        };
        let local = local_user();
        let user = addr.user.clone().or(cfg.user.clone()).or_else(|| local.clone()).ok_or_else(|| {
            SshError::Config { path: ssh_dir.join("config"), reason: "no user name: give one as ssh:USER@HOST".into() }
        })?;
        let home = ssh_dir.parent().map(PathBuf::from).unwrap_or_else(|| ssh_dir.clone());
        let local = local.unwrap_or_default();
        let mut keys: Vec<PathBuf> = opts.identities.clone();
        keys.extend(cfg.identity_files.iter().map(|raw| config::expand_identity(raw, &home, &local, &host, &user)));
        // As OpenSSH: the default names are tried only when no identity file was named.
        if keys.is_empty() {
            keys.extend(auth::DEFAULT_KEYS.iter().map(|k| ssh_dir.join(k)));
        }
        let mut known_hosts = vec![ssh_dir.join("known_hosts")];
        known_hosts.extend(opts.system_known_hosts.clone());
        Ok(Destination {
            alias: addr.host.clone(),
            host,
            port: addr.port.or(cfg.port).unwrap_or(22),
            user,
            keys,
            use_agent: opts.use_agent && cfg.identities_only != Some(true),
            known_hosts,
            hash_known_hosts: cfg.hash_known_hosts == Some(true),
        })
    }
}

/// The name of the local user (passwd database), for the default remote user and `%u`.
fn local_user() -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers we pass and nothing else; `result` is either
    // null or points at `pwd`, whose strings live in `buf`, read before `buf` goes away.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(libc::geteuid(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return std::env::var("USER").ok().filter(|u| !u.is_empty());
        }
        Some(std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

/// Connect, verify, authenticate. Returns the session (still blocking) and its socket.
pub fn establish(dest: &Destination, opts: &SshOptions) -> Result<(ssh2::Session, RawFd, String), SshError> {
    let secs = opts.connect_timeout.as_secs().max(1);
    let shown = known_hosts::host_port_name(&dest.host, dest.port);
    let tcp = tcp_connect(dest, opts.connect_timeout)?;
    let _ = tcp.set_nodelay(true);
    let fd = tcp.as_raw_fd();
    let handshake_err = |reason: String| SshError::Handshake { host: shown.clone(), reason };
    let mut sess = ssh2::Session::new().map_err(|e| handshake_err(e.message().to_string()))?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(millis(opts.connect_timeout));

    let known = KnownHosts::load(&dest.known_hosts)?;
    prefer_known_key_types(&sess, &known.known_types(&dest.host, dest.port));
    sess.handshake().map_err(|e| {
        if is_timeout(&e) {
            SshError::Timeout { host: shown.clone(), secs, during: "the SSH handshake" }
        } else {
            handshake_err(e.message().to_string())
        }
    })?;

    let (blob, _) = sess.host_key().ok_or_else(|| handshake_err("the server sent no host key".into()))?;
    let blob = blob.to_vec();
    let fp = known_hosts::fingerprint(&blob);
    let key_type = known_hosts::blob_key_type(&blob).unwrap_or_else(|| "unknown".into());
    match known.check(&dest.host, dest.port, &blob) {
        Verdict::Known => {}
        // Keys of other types on file: the host may have changed. OpenSSH's accept-new would
        // record the new key; we refuse, as for a changed key, and let a person decide.
        Verdict::Unknown { other_types } if !other_types.is_empty() => {
            return Err(SshError::HostKeyTypeChanged {
                host: shown,
                key_type,
                fingerprint: fp,
                known_types: other_types.join(", "),
                file: dest.known_hosts[0].clone(),
            });
        }
        Verdict::Unknown { .. } if opts.accept_new => {
            if opts.record_new_keys {
                known_hosts::record(&dest.known_hosts[0], &dest.host, dest.port, &blob, dest.hash_known_hosts)?;
            }
            if let Some(notice) = &opts.on_new_host_key {
                notice(&crate::ssh::NewHostKey {
                    name: shown.clone(),
                    key_type: known_hosts::key_type_label(&key_type),
                    fingerprint: fp.clone(),
                    file: dest.known_hosts[0].clone(),
                    recorded: opts.record_new_keys,
                });
            }
        }
        Verdict::Unknown { .. } => {
            return Err(SshError::UnknownHost { host: shown, key_type, fingerprint: fp });
        }
        Verdict::Changed { file, line } => {
            return Err(SshError::HostKeyChanged { host: shown, key_type, fingerprint: fp, file, line });
        }
        Verdict::Revoked { file, line } => {
            return Err(SshError::HostKeyRevoked { host: shown, fingerprint: fp, file, line });
        }
    }

    let id = auth::Identity { user: &dest.user, keys: &dest.keys, use_agent: dest.use_agent };
    auth::authenticate(&sess, &shown, &id, opts, secs)?;
    sess.set_timeout(millis(opts.io_timeout));
    Ok((sess, fd, fp))
}

fn tcp_connect(dest: &Destination, timeout: Duration) -> Result<TcpStream, SshError> {
    let shown = known_hosts::host_port_name(&dest.host, dest.port);
    let addrs = resolve(&dest.host, dest.port, timeout)?;
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {
            Err(SshError::Timeout { host: shown, secs: timeout.as_secs().max(1), during: "connecting" })
        }
        Some(e) => Err(SshError::Connect { addr: shown, reason: e.to_string() }),
        None => Err(SshError::Resolve { host: dest.host.clone(), reason: "no address".into() }),
    }
}

/// The addresses of `host`, within `timeout`. `getaddrinfo` cannot be cancelled and a stuck
/// resolver holds it for as long as its own retries last (resolv.conf `timeout` x `attempts`), so
/// it runs on a helper thread and is abandoned at the deadline (the thread ends when the resolver
/// gives up; it owns nothing but its result). A numeric address needs no lookup.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, SshError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let failed = |reason: String| SshError::Resolve { host: host.to_string(), reason };
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("llmx-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| failed(format!("cannot start the lookup: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(RecvTimeoutError::Timeout) => {
            Err(failed(format!("no answer from the resolver within {}s", timeout.as_secs().max(1))))
        }
        Err(RecvTimeoutError::Disconnected) => Err(failed("the lookup ended without an answer".into())),
    }
}

/// Put the host-key algorithms of the key types already recorded for the host first, as OpenSSH
/// does, so that the server shows the key we can check.
fn prefer_known_key_types(sess: &ssh2::Session, types: &[String]) {
    if types.is_empty() {
        return;
    }
    let Ok(supported) = sess.supported_algs(ssh2::MethodType::HostKey) else { return };
    let mut prefs: Vec<&str> = Vec::new();
    for t in types {
        let algs: Vec<&str> = match t.as_str() {
            "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            other => vec![other],
        };
        for a in algs {
            if let Some(s) = supported.iter().find(|s| **s == a)
                && !prefs.contains(s)
            {
                prefs.push(s);
            }
        }
    }
    for s in &supported {
        if !prefs.contains(s) {
            prefs.push(s);
        }
    }
    let _ = sess.method_pref(ssh2::MethodType::HostKey, &prefs.join(","));
}

pub(crate) fn is_timeout(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(-9))
}

pub(crate) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_alias_user_port_and_keys() {
        let t = tempfile::tempdir().unwrap();
        let ssh = t.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host box\n HostName 127.0.0.1\n User cfguser\n Port 2022\n IdentityFile ~/.ssh/k\n",
        )
        .unwrap();
        let opts = SshOptions { ssh_dir: Some(ssh.clone()), ..SshOptions::default() };
        let d = Destination::resolve(&SshAddress::parse("box").unwrap(), &opts).unwrap();
        assert_eq!((d.host.as_str(), d.port, d.user.as_str()), ("127.0.0.1", 2022, "cfguser"));
        assert_eq!(d.keys, vec![t.path().join(".ssh/k")]);
        let d = Destination::resolve(&SshAddress::parse("other@box:2200").unwrap(), &opts).unwrap();
        assert_eq!((d.port, d.user.as_str()), (2200, "other"));
        let d = Destination::resolve(&SshAddress::parse("me@plain").unwrap(), &opts).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("plain", 22));
        assert_eq!(d.keys, auth::DEFAULT_KEYS.iter().map(|k| ssh.join(k)).collect::<Vec<_>>());
        assert_eq!(d.known_hosts[0], ssh.join("known_hosts"));
    }
}
