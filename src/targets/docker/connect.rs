//! Which Docker Engine to talk to, and the connection to it.
//!
//! The engine is found the way the `docker` CLI finds it: `DOCKER_HOST` when set (with
//! `DOCKER_TLS_VERIFY`/`DOCKER_TLS` and `DOCKER_CERT_PATH`, default the docker config directory),
//! else the current context (`DOCKER_CONTEXT`, else `currentContext` in `$DOCKER_CONFIG/config.json`,
//! default `~/.docker/config.json`, whose endpoint is in `contexts/meta/<sha256 of the name>/meta.json`
//! and whose TLS material is in `contexts/tls/<sha256>/docker/`), else the default socket. Then
//! [`Route::decide`] picks how to get there:
//!
//! | endpoint | how |
//! |---|---|
//! | `unix://PATH` | the local socket |
//! | `tcp://` + TLS asked for | TLS with our rustls configuration, host name checked ([`super::tls`]) |
//! | `tcp://` to a loopback address | plain HTTP (it never leaves this machine) |
//! | `tcp://` elsewhere, or TLS without verification | refused before anything is sent, unless `--insecure-engine` ([`DockerOptions::insecure_engine`]), which is announced on every use |
//! | `ssh://[user@]host[:port]` | llmx's own SSH transport, the remote socket over a stream-local channel ([`super::over_ssh`]) |
//!
//! The API version is always negotiated (bollard's default is newer than most engines accept),
//! and an engine that does not answer is an error within [`CONNECT_TIMEOUT`], not a hang.

use crate::ssh::{SshAddress, SshOptions};
use crate::targets::docker::over_ssh::dial_over_ssh;
use crate::targets::docker::tls::{self, TlsMaterial};
use crate::targets::docker::transport::{Dial, EngineIo, docker_over};
use crate::targets::{ErrorKind, TargetError};
use bollard::Docker;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long connecting and negotiating the API version may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request timeout once connected (bollard counts whole seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The engine address and where it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub origin: String,
    /// TLS is asked for (`DOCKER_TLS_VERIFY`/`DOCKER_TLS`, a context's TLS material or
    /// `SkipTLSVerify`): with which certificates.
    pub tls: Option<TlsMaterial>,
}

/// The inputs of endpoint resolution, injected so that tests need no process environment.
#[derive(Debug, Clone, Default)]
pub struct EndpointEnv {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    /// `$DOCKER_CONFIG`, else `<home>/.docker`.
    pub config_dir: Option<PathBuf>,
    /// `DOCKER_TLS_VERIFY` (any non-empty value turns verified TLS on, as in the docker CLI).
    pub tls_verify: Option<String>,
    /// `DOCKER_TLS`: TLS without checking the server's certificate.
    pub tls: Option<String>,
    /// `DOCKER_CERT_PATH` (default: `config_dir`).
    pub cert_path: Option<PathBuf>,
}

impl EndpointEnv {
    pub fn from_process() -> EndpointEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        EndpointEnv {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            config_dir: var("DOCKER_CONFIG").map(PathBuf::from).or_else(|| dirs::home_dir().map(|h| h.join(".docker"))),
            tls_verify: var("DOCKER_TLS_VERIFY"),
            tls: var("DOCKER_TLS"),
            cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
        }
    }
}

impl Endpoint {
    pub fn resolve(env: &EndpointEnv) -> Result<Endpoint, TargetError> {
        // The environment's TLS settings belong to DOCKER_HOST and the default context, as in
        // the docker CLI; another context brings its own.
        let env_tls = || {
            let (why, verify) = match (&env.tls_verify, &env.tls) {
                (Some(_), _) => ("DOCKER_TLS_VERIFY", true),
                (None, Some(_)) => ("DOCKER_TLS", false),
                (None, None) => return None,
            };
            let named_by = env.cert_path.as_ref().map(|_| "DOCKER_CERT_PATH".to_string());
            let dir = env.cert_path.clone().or_else(|| env.config_dir.clone()).unwrap_or_default();
            Some(TlsMaterial { why: why.to_string(), dir, named_by, ca_only: false, verify })
        };
        if let Some(h) = &env.docker_host {
            return Ok(Endpoint { host: h.clone(), origin: "DOCKER_HOST".into(), tls: env_tls() });
        }
        let context = match &env.docker_context {
            Some(c) => Some(c.clone()),
            None => env.config_dir.as_deref().and_then(current_context),
        };
        match context {
            None => Ok(Endpoint { host: DEFAULT_HOST.into(), origin: "the default socket".into(), tls: env_tls() }),
            Some(c) if c == "default" => {
                Ok(Endpoint { host: DEFAULT_HOST.into(), origin: "docker context 'default'".into(), tls: env_tls() })
            }
            Some(c) => {
                let dir = env.config_dir.as_deref().ok_or_else(|| {
                    TargetError::new(format!("docker context '{c}': no docker config directory (set DOCKER_CONFIG)"))
                })?;
                let (host, skip_verify) = context_host(dir, &c)?;
                let digest = hex::encode(Sha256::digest(c.as_bytes()));
                let material = dir.join("contexts/tls").join(digest).join("docker");
                let why = format!("docker context '{c}'");
                let tls = (material.exists() || skip_verify).then(|| TlsMaterial {
                    why: why.clone(),
                    dir: material,
                    named_by: None,
                    ca_only: true,
                    verify: !skip_verify,
                });
                Ok(Endpoint { host, origin: why, tls })
            }
        }
    }
}

/// `currentContext` from `config.json`; a missing or unreadable file means none.
fn current_context(config_dir: &Path) -> Option<String> {
    let bytes = std::fs::read(config_dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("currentContext").and_then(|c| c.as_str()).filter(|c| !c.is_empty()).map(str::to_string)
}

/// A context's Docker endpoint and its `SkipTLSVerify`.
fn context_host(config_dir: &Path, name: &str) -> Result<(String, bool), TargetError> {
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let meta = config_dir.join("contexts").join("meta").join(digest).join("meta.json");
    let fix = "run `docker context use default` or `docker context ls`";
    let bytes = std::fs::read(&meta).map_err(|e| {
        TargetError::new(format!("docker context '{name}': cannot read {}: {e}", meta.display())).with_hint(fix)
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| TargetError::new(format!("docker context '{name}': {}: {e}", meta.display())).with_hint(fix))?;
    let skip = v.pointer("/Endpoints/docker/SkipTLSVerify").and_then(|s| s.as_bool()).unwrap_or(false);
    v.pointer("/Endpoints/docker/Host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .map(|h| (h.to_string(), skip))
        .ok_or_else(|| TargetError::new(format!("docker context '{name}' has no Docker endpoint")).with_hint(fix))
}

/// Called with a warning each time an engine is used without a verified, encrypted connection
/// because `--insecure-engine` allowed it (the CLI prints it).
pub type InsecureNotice = Arc<dyn Fn(&str) + Send + Sync>;

/// How Docker targets reach their engine, beyond where it is.
#[derive(Clone, Default)]
pub struct DockerOptions {
    /// `--insecure-engine`: allow plain `tcp://` (or TLS without verification) to another machine.
    pub insecure_engine: bool,
    pub on_insecure: Option<InsecureNotice>,
    /// The engine a ledger entry was pushed through (`DOCKER_HOST`, `DOCKER_CONTEXT` as they
    /// were then): replaces the environment's, so a holder is reached the way it was written.
    pub recorded: Option<(Option<String>, Option<String>)>,
}

impl std::fmt::Debug for DockerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerOptions").field("insecure_engine", &self.insecure_engine).finish_non_exhaustive()
    }
}

/// How the engine of an [`Endpoint`] is reached, decided before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Unix(String),
    /// Plain HTTP; `warning` is set when it leaves this machine (allowed by `--insecure-engine`).
    Plain {
        host: String,
        warning: Option<String>,
    },
    Tls {
        addr: String,
        name: String,
        material: TlsMaterial,
        warning: Option<String>,
    },
    Ssh(SshAddress),
}

impl Route {
    /// The route to `ep`, or why there is none this build (or the user) allows.
    pub fn decide(ep: &Endpoint, insecure_engine: bool) -> Result<Route, TargetError> {
        let host = ep.host.as_str();
        if let Some(rest) = host.strip_prefix("ssh://") {
            if rest.contains('/') && !rest.ends_with('/') {
                return Err(TargetError::new(format!(
                    "'{host}' (from {}): an ssh:// Docker host takes no path, as in the docker CLI",
                    ep.origin
                )));
            }
            return SshAddress::parse(host)
                .map(Route::Ssh)
                .map_err(|e| TargetError::new(format!("'{host}' (from {}): {e}", ep.origin)));
        }
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Route::Unix(path.to_string()));
        }
        let Some(rest) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) else {
            return Err(TargetError::new(format!(
                "unsupported Docker host '{host}' (from {}): llmx speaks unix://, tcp:// and ssh://",
                ep.origin
            )));
        };
        let hostport = rest.split('/').next().unwrap_or_default();
        let (name, port) = split_port(hostport);
        if name.is_empty() {
            return Err(TargetError::new(format!("'{host}' (from {}) names no host", ep.origin)));
        }
        let loopback = name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let insecure = |how: &str| -> Result<Option<String>, TargetError> {
            if loopback {
                return Ok(None);
            }
            let what = format!("the Docker engine at {host} (from {}) would be reached {how}", ep.origin);
            if insecure_engine {
                return Ok(Some(format!(
                    "--insecure-engine: {what}; the credential can be read or changed on the way"
                )));
            }
            Err(TargetError::new(format!("{what}: refusing to send a credential to another machine that way"))
                .with_hint(
                    "turn TLS on (DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or a context with TLS material), use \
                     DOCKER_HOST=ssh://USER@HOST, or accept the risk with --insecure-engine",
                ))
        };
        match &ep.tls {
            Some(m) => {
                let port = port.unwrap_or(2376);
                let warning = if m.verify { None } else { insecure("over TLS without checking its certificate")? };
                Ok(Route::Tls { addr: join_port(name, port), name: name.to_string(), material: m.clone(), warning })
            }
            None => {
                let warning = insecure("over plain TCP, unencrypted")?;
                Ok(Route::Plain { host: format!("tcp://{}", join_port(name, port.unwrap_or(2375))), warning })
            }
        }
    }
}

impl std::fmt::Display for Route {
    /// How the engine is reached, for `-v`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Unix(p) => write!(f, "over the local socket {p}"),
            Route::Plain { host, warning: None } => write!(f, "over plain HTTP to {host} (loopback)"),
            Route::Plain { host, warning: Some(_) } => write!(f, "over plain HTTP to {host} (--insecure-engine)"),
            Route::Tls { addr, material, .. } => write!(
                f,
                "over TLS to {addr}, certificates from {} ({}{})",
                material.dir.display(),
                material.why,
                if material.verify { "" } else { ", server not verified" }
            ),
            Route::Ssh(a) => write!(f, "over SSH to {a}, the remote engine's socket"),
        }
    }
}

/// `host:port` → (`host`, port); IPv6 in brackets; no port → `None`.
fn split_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (s, None),
    }
}

fn join_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// One lazily made, shared connection to the engine: every Docker target of a run uses it, and
/// the first to need it connects. A failure is remembered, so an unreachable engine costs one
/// timeout per run, not one per container.
#[derive(Clone)]
pub struct Engine {
    endpoint: Result<Endpoint, TargetError>,
    opts: DockerOptions,
    /// How an `ssh://` engine is reached: the options of `ssh:` targets.
    ssh: SshOptions,
    cell: Arc<OnceCell<Result<Docker, TargetError>>>,
}

impl Engine {
    pub fn new(endpoint: Result<Endpoint, TargetError>, opts: DockerOptions, ssh: SshOptions) -> Engine {
        Engine { endpoint, opts, ssh, cell: Arc::new(OnceCell::new()) }
    }

    /// The engine the environment names (`DOCKER_HOST`, contexts), reached as `opts` allow; an
    /// `ssh://` engine as `ssh:` targets are reached.
    pub fn from_env(opts: &DockerOptions, ssh: &SshOptions) -> Engine {
        let mut env = EndpointEnv::from_process();
        if let Some((host, context)) = &opts.recorded {
            env.docker_host = host.clone();
            env.docker_context = context.clone();
        }
        Engine::new(Endpoint::resolve(&env), opts.clone(), ssh.clone())
    }

    pub async fn get(&self) -> Result<&Docker, TargetError> {
        let r = self.cell.get_or_init(|| async { connect(self.endpoint.clone()?, &self.opts, &self.ssh).await }).await;
        r.as_ref().map_err(Clone::clone)
    }
}

async fn connect(ep: Endpoint, opts: &DockerOptions, ssh: &SshOptions) -> Result<Docker, TargetError> {
    let unreachable = |why: String| {
        TargetError::new(format!("cannot reach the Docker daemon at {} (from {}): {why}", ep.host, ep.origin))
            .with_hint("start Docker, or point DOCKER_HOST / `docker context use` at a running engine")
            .with_kind(ErrorKind::Unreachable)
    };
    let route = Route::decide(&ep, opts.insecure_engine)?;
    let warn = |w: &Option<String>| {
        if let (Some(w), Some(notice)) = (w, &opts.on_insecure) {
            notice(w);
        }
    };
    let secs = REQUEST_TIMEOUT.as_secs();
    let docker = match &route {
        Route::Unix(_) => Docker::connect_with_host(&ep.host).map_err(|e| unreachable(e.to_string()))?,
        Route::Plain { host, warning } => {
            warn(warning);
            Docker::connect_with_host(host).map_err(|e| unreachable(e.to_string()))?
        }
        Route::Tls { addr, name, material, warning } => {
            warn(warning);
            let dial = tls_dial(addr.clone(), name, material)?;
            // One handshake first, so that a wrong CA or a refused client certificate is said as
            // such, before any request is sent.
            // That connection then carries the first request.
            let first = match tokio::time::timeout(CONNECT_TIMEOUT, dial()).await {
                Err(_) => return Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
                Ok(Err(e)) => {
                    return Err(rustls_cause(&e)
                        .map(|r| tls_failure(&ep, material, r))
                        .unwrap_or_else(|| unreachable(e.to_string())));
                }
                Ok(Ok(io)) => io,
            };
            docker_over(dial, Some(first), addr, secs).map_err(|e| unreachable(error_text(&e)))?
        }
        Route::Ssh(addr) => {
            // The remote engine sees a local socket client; `Host` says what the docker CLI's
            // dial-stdio says.
            let (dial, _socket) = dial_over_ssh(addr, ssh, &ep.host).await?;
            docker_over(dial, None, "docker", secs).map_err(|e| unreachable(error_text(&e)))?
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.with_timeout(REQUEST_TIMEOUT).negotiate_version()).await {
        Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        // Go's HTTP server answers plain HTTP on a TLS port with a 400; nothing else answers a
        // version query that way.
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 400, .. }))
            if matches!(route, Route::Plain { .. }) =>
        {
            Err(TargetError::new(format!(
                "the Docker engine at {} (from {}) expects TLS, which is not turned on here; nothing was sent",
                ep.host, ep.origin
            ))
            .with_hint(
                "set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory holding its ca.pem, cert.pem and \
                 key.pem, as for the docker CLI",
            ))
        }
        // TLS 1.3 ends the client's side of the handshake before the engine has checked the
        // client certificate: its refusal (an alert) arrives with the first answer.
        Ok(Err(e)) => match (&route, rustls_cause(&e)) {
            (Route::Tls { material, .. }, Some(r)) => Err(tls_failure(&ep, material, r)),
            (Route::Unix(path), _) if denied(&e) => Err(TargetError::new(format!(
                "permission denied on {path} (from {}): this user may not use the Docker Engine",
                ep.origin
            ))
            .with_hint(
                "join the docker group (`sudo usermod -aG docker $USER`, then log in again), or run llmx as a user who can",
            )),
            _ => Err(unreachable(error_text(&e))),
        },
        Ok(Ok(d)) => Ok(d),
    }
}

/// The rustls error somewhere in `e`'s causes (inside an `io::Error` as tokio-rustls wraps it).
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// TCP, then the TLS handshake with `material`'s certificates, checking the certificate against `name`.
fn tls_dial(addr: String, name: &str, material: &TlsMaterial) -> Result<Dial, TargetError> {
    let connector = tokio_rustls::TlsConnector::from(tls::client_config(material)?);
    let server = tls::server_name(name)?;
    Ok(Arc::new(move || {
        let (connector, server, addr) = (connector.clone(), server.clone(), addr.clone());
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(server, tcp).await?;
            Ok(Box::new(tls) as Box<dyn EngineIo>)
        })
    }))
}

/// A failed TLS handshake, said as what it is, with the fix.
fn tls_failure(ep: &Endpoint, m: &TlsMaterial, inner: &rustls::Error) -> TargetError {
    let dir = m.dir.display();
    // What chose the directory, for the reader to fix.
    let from = match (&m.named_by, m.ca_only) {
        (Some(var), _) => var.clone(),
        (None, true) => m.why.clone(),
        (None, false) => "the default of DOCKER_CERT_PATH".to_string(),
    };
    let hint = match inner {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => format!(
            "the engine's certificate is not signed by {dir}/ca.pem (nor a system CA): check that {from} points at \
             this engine's CA"
        ),
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }) => {
            "the engine's certificate does not name this host: use the name or address it was issued for in DOCKER_HOST"
                .to_string()
        }
        rustls::Error::AlertReceived(_) if !m.dir.join("cert.pem").exists() => format!(
            "the engine wants a client certificate and {dir} ({from}) has no cert.pem and key.pem: use the directory \
             that holds them"
        ),
        rustls::Error::AlertReceived(_) => format!(
            "the engine refused the client certificate {dir}/cert.pem ({from}): use a cert.pem/key.pem issued by the \
             engine's CA"
        ),
        _ => format!("check the certificates in {dir} ({})", m.why),
    };
    TargetError::new(format!(
        "TLS to the Docker engine at {} (from {}) failed: {inner}; nothing was sent",
        ep.host, ep.origin
    ))
    .with_hint(hint)
}

/// A bollard error with its causes, on one line ("client error (Connect): No such file...").
pub fn error_text(e: &bollard::errors::Error) -> String {
    // The Engine's own answer, with what it is: "the Docker Engine answered 500: ...".
    if let bollard::errors::Error::DockerResponseServerError { status_code, message } = e {
        return format!("the Docker Engine answered {status_code}: {message}");
    }
    // Every cause, outermost first, without the HTTP client's names for itself ("Error in the
    // hyper legacy client", "client error (Connect)"): no use to the reader.
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        let text = s.to_string();
        if !(text.contains("hyper") || text.starts_with("client error (")) {
            parts.push(text);
        }
        cur = s.source();
    }
    // A wrapper that repeats its cause adds nothing.
    let kept: Vec<&String> = parts
        .iter()
        .enumerate()
        .filter(|(i, p)| !parts[i + 1..].iter().any(|q| p.contains(q.as_str())))
        .map(|(_, p)| p)
        .collect();
    match kept.is_empty() {
        true => e.to_string(),
        false => kept.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(": "),
    }
}

/// Whether the OS refused the connection for permissions (a socket the user may not open).
fn denied(e: &bollard::errors::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied) {
            return true;
        }
        cur = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_wins_then_context_then_default() {
        let t = tempfile::tempdir().unwrap();
        let env = |host: Option<&str>, ctx: Option<&str>| EndpointEnv {
            docker_host: host.map(str::to_string),
            docker_context: ctx.map(str::to_string),
            config_dir: Some(t.path().to_path_buf()),
            tls_verify: None,
            tls: None,
            cert_path: None,
        };
        assert_eq!(Endpoint::resolve(&env(None, None)).unwrap().host, DEFAULT_HOST);
        assert_eq!(Endpoint::resolve(&env(Some("tcp://h:1"), Some("x"))).unwrap().host, "tcp://h:1");

        std::fs::write(t.path().join("config.json"), r#"{"currentContext":"remote"}"#).unwrap();
        let e = Endpoint::resolve(&env(None, None)).unwrap_err();
        assert!(e.message.contains("docker context 'remote'"), "{e}");

        let meta = t.path().join("contexts/meta").join(hex::encode(Sha256::digest(b"remote")));
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"remote","Endpoints":{"docker":{"Host":"tcp://10.0.0.9:2375"}}}"#,
        )
        .unwrap();
        let ep = Endpoint::resolve(&env(None, None)).unwrap();
        assert_eq!(ep.host, "tcp://10.0.0.9:2375");
        assert_eq!(ep.origin, "docker context 'remote'");
        assert_eq!(Endpoint::resolve(&env(None, Some("default"))).unwrap().host, DEFAULT_HOST);
        std::fs::create_dir_all(
            t.path().join("contexts/tls").join(hex::encode(Sha256::digest(b"remote"))).join("docker"),
        )
        .unwrap();
        let tls = Endpoint::resolve(&env(None, None)).unwrap().tls.unwrap();
        assert_eq!(tls.why, "docker context 'remote'");
        assert!(tls.ca_only && tls.verify, "{tls:?}");
        assert!(tls.dir.ends_with("docker"), "{tls:?}");
    }

    #[test]
    fn environment_tls_uses_the_cert_path_and_joins_the_system_roots() {
        let env = EndpointEnv {
            docker_host: Some("tcp://h:1".into()),
            config_dir: Some(PathBuf::from("/cfg")),
            tls_verify: Some("1".into()),
            ..EndpointEnv::default()
        };
        let m = Endpoint::resolve(&env).unwrap().tls.unwrap();
        assert_eq!((m.dir.as_path(), m.ca_only, m.verify), (Path::new("/cfg"), false, true));
        let env = EndpointEnv { cert_path: Some("/certs".into()), tls_verify: None, tls: Some("1".into()), ..env };
        let m = Endpoint::resolve(&env).unwrap().tls.unwrap();
        assert_eq!((m.dir.as_path(), m.why.as_str(), m.verify), (Path::new("/certs"), "DOCKER_TLS", false));
    }

    #[test]
    fn remote_plain_tcp_is_refused_unless_insecure_and_tls_gets_the_default_port() {
        let material = |verify| TlsMaterial {
            why: "DOCKER_TLS_VERIFY".into(),
            dir: "/c".into(),
            named_by: None,
            ca_only: false,
            verify,
        };
        let ep =
            |host: &str, tls: Option<TlsMaterial>| Endpoint { host: host.into(), origin: "DOCKER_HOST".into(), tls };
        for (e, want) in [
            (ep("tcp://10.0.0.9:2375", None), "over plain TCP, unencrypted"),
            (ep("tcp://docker.example", None), "over plain TCP, unencrypted"),
            (ep("tcp://10.0.0.9", Some(material(false))), "without checking its certificate"),
            (ep("ssh://deploy@host/var/run/docker.sock", None), "takes no path"),
            (ep("npipe:////./pipe/docker_engine", None), "unsupported Docker host"),
        ] {
            let err = Route::decide(&e, false).unwrap_err();
            assert!(err.message.contains(want), "{}: {err}", e.host);
        }
        match Route::decide(&ep("tcp://10.0.0.9:2375", None), true).unwrap() {
            Route::Plain { host, warning: Some(w) } => {
                assert_eq!(host, "tcp://10.0.0.9:2375");
                assert!(w.contains("--insecure-engine"), "{w}");
            }
            r => panic!("{r:?}"),
        }
        for ok in ["tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375"] {
            assert!(matches!(Route::decide(&ep(ok, None), false), Ok(Route::Plain { warning: None, .. })), "{ok}");
        }
        match Route::decide(&ep("tcp://docker.example", Some(material(true))), false).unwrap() {
            Route::Tls { addr, name, warning: None, .. } => {
                assert_eq!((addr.as_str(), name.as_str()), ("docker.example:2376", "docker.example"))
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            Route::decide(&ep("ssh://deploy@host:2222", None), false).unwrap(),
            Route::Ssh(SshAddress::parse("deploy@host:2222").unwrap())
        );
        assert_eq!(
            Route::decide(&ep("unix:///var/run/docker.sock", Some(material(true))), false).unwrap(),
            Route::Unix("/var/run/docker.sock".into())
        );
    }
}
