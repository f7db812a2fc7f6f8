//! From `[user@]host[:port]` to an authenticated `ssh2::Session`: apply `~/.ssh/config` (the
//! [`Route`]: direct, jump hosts or a `ProxyCommand`), open the TCP connection within the connect
//! timeout (or take the stream a jump host or proxy command gives), do the handshake, verify the host key, authenticate.
//! Blocking; runs on the thread that will own the session (see [`crate::ssh::session`]).
#![allow(unsafe_code, reason = "getpwuid_r for the local user name: std has no safe wrapper")]

use crate::ssh::SshAddress;
use crate::ssh::known_hosts::{self, KnownHosts, Verdict};
use crate::ssh::{SshError, SshOptions, auth, config};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// How the SSH connection reaches the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// A TCP connection to `host:port`.
    Direct,
    /// Through these jump hosts, in order (`ProxyJump`, `-J`): the last one opens a
    /// `direct-tcpip` channel to the host; each is reached through the ones before it.
    Jump(Vec<SshAddress>),
    /// SSH over the stdin/stdout of this command (`ProxyCommand`, tokens expanded), run by
    /// `/bin/sh`.
    Command(String),
}

/// Where and as whom to connect, after the config has been applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// What the user typed (an alias or a host name).
    pub alias: String,
    /// The host name or address actually connected to (`HostName`).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Identity files in the order to try.
    pub keys: Vec<PathBuf>,
    pub use_agent: bool,
    /// `IdentityAgent`: the agent's socket; `None`: as the options say (`$SSH_AUTH_SOCK`).
    pub agent_socket: Option<PathBuf>,
    /// Files consulted for host keys, user files first.
    pub known_hosts: Vec<PathBuf>,
    /// Where `accept_new` records (the first `UserKnownHostsFile`); `None`: nowhere.
    pub record_file: Option<PathBuf>,
    /// The name and port the host key is looked up (and recorded) under: `host:port`, or the
    /// `HostKeyAlias` (port 22, as OpenSSH).
    pub key_name: String,
    pub key_port: u16,
    /// `HashKnownHosts yes`: record new hosts hashed.
    pub hash_known_hosts: bool,
    /// Record an unknown host key (`--accept-new`, `StrictHostKeyChecking accept-new`/`no`).
    pub accept_new: bool,
    pub route: Route,
    /// TCP connect plus handshake and authentication.
    pub connect_timeout: Duration,
    /// `ServerAliveInterval` / `ServerAliveCountMax`.
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
}

/// Jump hosts followed at most, counting those of the jump hosts' own configs (a loop in
/// `~/.ssh/config` ends here).
pub const MAX_HOPS: usize = 8;

impl Destination {
    /// Apply the config to `addr`, with the route `-J` gave ([`SshOptions::jump`]) if any. An
    /// explicit user or port in `addr` wins over the config.
    pub fn resolve(addr: &SshAddress, opts: &SshOptions) -> Result<Destination, SshError> {
        Destination::resolve_with(addr, opts, opts.jump.clone())
    }

    /// As [`resolve`](Destination::resolve), with the jump chain given (`Some(empty)`: direct)
    /// instead of the config's `ProxyJump`/`ProxyCommand` when `jump` is `Some`.
    pub fn resolve_with(
        addr: &SshAddress,
        opts: &SshOptions,
        jump: Option<Vec<SshAddress>>,
    ) -> Result<Destination, SshError> {
        let ssh_dir = opts.ssh_dir()?;
        let config_path = ssh_dir.join("config");
        let local = local_user();
        let local_name = local.clone().unwrap_or_default();
        let q = config::Query { alias: &addr.host, user: addr.user.as_deref(), local_user: &local_name };
        let mut files = vec![config_path.as_path()];
        files.extend(opts.system_config.as_deref());
        let cfg = config::load(&files, &q)?;
        let host = match &cfg.host_name {
            Some(h) => config::expand_host_name(h, &addr.host),
            None => addr.host.clone(),
        };
        let user = addr.user.clone().or(cfg.user.clone()).or_else(|| local.clone()).ok_or_else(|| {
            SshError::Config { path: config_path.clone(), reason: "no user name: give one as ssh:USER@HOST".into() }
        })?;
        let port = addr.port.or(cfg.port).unwrap_or(22);
        let home = ssh_dir.parent().map(PathBuf::from).unwrap_or_else(|| ssh_dir.clone());
        let tokens = config::Tokens {
            home: Some(&home),
            local_user: &local_name,
            host: &host,
            original: &addr.host,
            user: &user,
            port,
        };
        let mut keys: Vec<PathBuf> = opts.identities.clone();
        keys.extend(cfg.identity_files.iter().map(|raw| config::expand(raw, &tokens)));
        // As OpenSSH: the default names are tried only when no identity file was named.
        if keys.is_empty() {
            keys.extend(auth::DEFAULT_KEYS.iter().map(|k| ssh_dir.join(k)));
        }
        let files = |list: &Option<Vec<String>>, default: Vec<PathBuf>| -> Vec<PathBuf> {
            match list {
                Some(v) if v.len() == 1 && v[0].eq_ignore_ascii_case("none") => Vec::new(),
                Some(v) => v.iter().map(|raw| config::expand(raw, &tokens)).collect(),
                None => default,
            }
        };
        let user_files = files(&cfg.user_known_hosts, vec![ssh_dir.join("known_hosts")]);
        let global_files = files(&cfg.global_known_hosts, opts.system_known_hosts.clone().into_iter().collect());
        let record_file = user_files.first().cloned();
        let known_hosts: Vec<PathBuf> = user_files.into_iter().chain(global_files).collect();
        let route = match jump {
            Some(chain) if chain.is_empty() => Route::Direct,
            Some(chain) => Route::Jump(chain),
            None => match (&cfg.proxy_jump, &cfg.proxy_command) {
                (Some(j), _) if j.eq_ignore_ascii_case("none") => Route::Direct,
                (Some(j), _) => Route::Jump(parse_jump_list(j).map_err(|reason| SshError::Config {
                    path: config_path.clone(),
                    reason: format!("ProxyJump for {}: {reason}", addr.host),
                })?),
                (None, Some(c)) if c.eq_ignore_ascii_case("none") => Route::Direct,
                (None, Some(c)) => {
                    refuse_shell_words(addr)?;
                    Route::Command(config::expand(c, &tokens).to_string_lossy().into_owned())
                }
                (None, None) => Route::Direct,
            },
        };
        let (key_name, key_port) = match &cfg.host_key_alias {
            Some(a) => (a.clone(), 22),
            None => (host.clone(), port),
        };
        let (use_agent, agent_socket) = match cfg.identity_agent.as_deref() {
            Some(a) if a.eq_ignore_ascii_case("none") => (false, None),
            Some("SSH_AUTH_SOCK") | None => (opts.use_agent, opts.agent_socket.clone()),
            Some(a) => (opts.use_agent, Some(config::expand(a, &tokens))),
        };
        let connect_timeout = match cfg.connect_timeout {
            Some(secs) if !opts.connect_timeout_from_flag && secs > 0 => Duration::from_secs(secs),
            _ => opts.connect_timeout,
        };
        Ok(Destination {
            alias: addr.host.clone(),
            host,
            port,
            user,
            keys,
            use_agent: use_agent && cfg.identities_only != Some(true),
            agent_socket,
            known_hosts,
            record_file,
            key_name,
            key_port,
            hash_known_hosts: cfg.hash_known_hosts == Some(true),
            accept_new: opts.accept_new || cfg.strict_host_key_checking == Some(config::Strict::AcceptNew),
            route,
            connect_timeout,
            keepalive_interval: cfg.server_alive_interval.map(Duration::from_secs).unwrap_or(opts.keepalive_interval),
            keepalive_count: cfg.server_alive_count_max.unwrap_or(opts.keepalive_count),
        })
    }

    /// What was resolved, one `name: value` pair a line, for `--explain` (no secrets: file names
    /// only).
    pub fn explain(&self) -> Vec<(&'static str, String)> {
        let files = |v: &[PathBuf]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
            }
        };
        let route = match &self.route {
            Route::Direct => "direct".to_string(),
            Route::Jump(chain) => chain.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "),
            Route::Command(c) => format!("ProxyCommand {c}"),
        };
        vec![
            ("host", self.alias.clone()),
            ("hostname", self.host.clone()),
            ("port", self.port.to_string()),
            ("user", self.user.clone()),
            ("via", route),
            ("hostkey name", known_hosts::host_port_name(&self.key_name, self.key_port)),
            ("known_hosts", files(&self.known_hosts)),
            ("records new keys", if self.accept_new { files(self.record_file.as_slice()) } else { "no".to_string() }),
            ("identity files", files(&self.keys)),
            ("agent", if self.use_agent { "yes".to_string() } else { "no".to_string() }),
            ("connect timeout", format!("{}s", self.connect_timeout.as_secs())),
            ("keepalive", format!("{}s x {}", self.keepalive_interval.as_secs(), self.keepalive_count)),
        ]
    }
}

/// `ProxyJump` / `-J`: `[user@]host[:port]` or `ssh://[user@]host[:port]`, comma-separated; `none`
/// is the empty chain.
pub fn parse_jump_list(s: &str) -> Result<Vec<SshAddress>, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    s.split(',').map(|hop| SshAddress::parse(hop.trim()).map_err(|e| format!("'{hop}': {e}"))).collect()
}

/// Before `%h`, `%n` and `%r` go into a `ProxyCommand` (run by `/bin/sh`): the host and user
/// names the user gave (not those from ssh_config) must hold nothing the shell would run.
fn refuse_shell_words(addr: &SshAddress) -> Result<(), SshError> {
    if let Some(why) = config::shell_unsafe_host(&addr.host) {
        return Err(SshError::UnsafeName { what: "host name", name: addr.host.clone(), why });
    }
    if let Some(why) = addr.user.as_deref().and_then(config::shell_unsafe_user) {
        return Err(SshError::UnsafeName { what: "user name", name: addr.user.clone().unwrap_or_default(), why });
    }
    Ok(())
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

/// What carries the SSH bytes: a TCP connection we open, or a socket already joined to the host
/// (one end of a socketpair relayed by a jump host's session, or a `ProxyCommand`'s stdio).
pub enum Transport {
    Tcp,
    Stream(UnixStream),
}

/// Connect, verify, authenticate. Returns the session (still blocking) and its socket.
pub fn establish(
    dest: &Destination,
    opts: &SshOptions,
    transport: Transport,
) -> Result<(ssh2::Session, RawFd, String), SshError> {
    let timeout = dest.connect_timeout;
    let secs = timeout.as_secs().max(1);
    let shown = known_hosts::host_port_name(&dest.host, dest.port);
    let handshake_err = |reason: String| SshError::Handshake { host: shown.clone(), reason };
    let mut sess = ssh2::Session::new().map_err(|e| handshake_err(e.message().to_string()))?;
    let fd = match transport {
        Transport::Tcp => {
            let tcp = tcp_connect(dest, timeout)?;
            let _ = tcp.set_nodelay(true);
            let fd = tcp.as_raw_fd();
            sess.set_tcp_stream(tcp);
            fd
        }
        Transport::Stream(s) => {
            let fd = s.as_raw_fd();
            sess.set_tcp_stream(s);
            fd
        }
    };
    sess.set_timeout(millis(timeout));

    let known = KnownHosts::load_shared(&dest.known_hosts)?;
    prefer_known_key_types(&sess, &known.known_types(&dest.key_name, dest.key_port));
    sess.handshake().map_err(|e| {
        if is_timeout(&e) {
            SshError::Timeout { host: shown.clone(), secs, during: "the SSH handshake" }
        } else {
            handshake_err(handshake_reason(&e))
        }
    })?;

    let (blob, _) = sess.host_key().ok_or_else(|| handshake_err("the server sent no host key".into()))?;
    let blob = blob.to_vec();
    let fp = known_hosts::fingerprint(&blob);
    let key_type = known_hosts::blob_key_type(&blob).unwrap_or_else(|| "unknown".into());
    let key_shown = known_hosts::host_port_name(&dest.key_name, dest.key_port);
    let record_file = dest.record_file.clone().unwrap_or_else(|| PathBuf::from("(no UserKnownHostsFile)"));
    match known.check(&dest.key_name, dest.key_port, &blob) {
        Verdict::Known => {}
        // Keys of other types on file: the host may have changed. OpenSSH's accept-new would
        // record the new key; we refuse, as for a changed key, and let a person decide.
        Verdict::Unknown { other_types } if !other_types.is_empty() => {
            return Err(SshError::HostKeyTypeChanged {
                host: key_shown,
                key_type,
                fingerprint: fp,
                known_types: other_types.join(", "),
                file: record_file,
            });
        }
        Verdict::Unknown { .. } if dest.accept_new && dest.record_file.is_some() => {
            // Recorded once however many targets of the run share the host: the others say nothing.
            let first = !opts.record_new_keys
                || known_hosts::record(&record_file, &dest.key_name, dest.key_port, &blob, dest.hash_known_hosts)?;
            if let Some(notice) = opts.on_new_host_key.as_ref().filter(|_| first) {
                notice(&crate::ssh::NewHostKey {
                    name: shown.clone(),
                    key_type: known_hosts::key_type_label(&key_type),
                    fingerprint: fp.clone(),
                    file: record_file.clone(),
                    recorded: opts.record_new_keys,
                });
            }
        }
        Verdict::Unknown { .. } => {
            return Err(SshError::UnknownHost { host: key_shown, key_type, fingerprint: fp });
        }
        Verdict::Changed { file, line } => {
            return Err(SshError::HostKeyChanged { host: key_shown, key_type, fingerprint: fp, file, line });
        }
        Verdict::Revoked { file, line } => {
            return Err(SshError::HostKeyRevoked { host: key_shown, fingerprint: fp, file, line });
        }
    }

    let id = auth::Identity { user: &dest.user, keys: &dest.keys, use_agent: dest.use_agent };
    let mut auth_opts = opts.clone();
    if dest.agent_socket.is_some() {
        auth_opts.agent_socket = dest.agent_socket.clone();
    }
    auth::authenticate(&sess, &shown, &id, &auth_opts, secs)?;
    sess.set_timeout(millis(opts.io_timeout));
    Ok((sess, fd, fp))
}

/// libssh2's words when the peer closed the connection before its `SSH-2.0-…` greeting.
const NO_BANNER: &str = "Failed getting banner";

/// Whether the server closed the connection before greeting (as sshd does over `MaxStartups`).
pub fn dropped_before_greeting(e: &SshError) -> bool {
    matches!(e, SshError::Handshake { reason, .. } if reason.starts_with(NO_BANNER))
}

/// libssh2's words for a failed handshake, with what the bare ones mean.
fn handshake_reason(e: &ssh2::Error) -> String {
    match e.message() {
        // The peer closed the connection before (or instead of) its `SSH-2.0-…` greeting.
        m @ NO_BANNER => format!(
            "{m}: the server closed the connection before greeting (sshd dropping connections over \
             its MaxStartups, a firewall, or not an SSH server)"
        ),
        m => m.to_string(),
    }
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
