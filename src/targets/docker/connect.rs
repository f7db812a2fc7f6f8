//! Which Docker Engine to talk to, and the connection to it.
//!
//! The engine is found the way the `docker` CLI finds it: `DOCKER_HOST` when set, else the
//! current context (`DOCKER_CONTEXT`, else `currentContext` in `$DOCKER_CONFIG/config.json`,
//! default `~/.docker/config.json`, whose endpoint is in
//! `contexts/meta/<sha256 of the name>/meta.json`), else the default socket. The API version is
//! TLS (`DOCKER_TLS_VERIFY`, a context's TLS material), `ssh://` engines and plain `tcp://` to
//! another machine are refused with the reason before anything is sent (see [`check_transport`]):
//! this build cannot do TLS or Docker-over-SSH, and a credential never goes unencrypted. The API
//! version is always negotiated (bollard's default is newer than most engines accept), and an engine that
//! does not answer is an error within [`CONNECT_TIMEOUT`], not a hang.

use crate::targets::TargetError;
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
    /// TLS is asked for (`DOCKER_TLS_VERIFY`, or a context with TLS material): what asks for it.
    pub tls: Option<String>,
}

/// The inputs of endpoint resolution, injected so that tests need no process environment.
#[derive(Debug, Clone, Default)]
pub struct EndpointEnv {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    /// `$DOCKER_CONFIG`, else `<home>/.docker`.
    pub config_dir: Option<PathBuf>,
    /// `DOCKER_TLS_VERIFY` (any non-empty value turns TLS on, as in the docker CLI).
    pub tls_verify: Option<String>,
}

impl EndpointEnv {
    pub fn from_process() -> EndpointEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        EndpointEnv {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            config_dir: var("DOCKER_CONFIG").map(PathBuf::from).or_else(|| dirs::home_dir().map(|h| h.join(".docker"))),
            tls_verify: var("DOCKER_TLS_VERIFY"),
        }
    }
}

impl Endpoint {
    pub fn resolve(env: &EndpointEnv) -> Result<Endpoint, TargetError> {
        let tls = env.tls_verify.as_ref().map(|_| "DOCKER_TLS_VERIFY".to_string());
        if let Some(h) = &env.docker_host {
            return Ok(Endpoint { host: h.clone(), origin: "DOCKER_HOST".into(), tls });
        }
        let context = match &env.docker_context {
            Some(c) => Some(c.clone()),
            None => env.config_dir.as_deref().and_then(current_context),
        };
        match context {
            None => Ok(Endpoint { host: DEFAULT_HOST.into(), origin: "the default socket".into(), tls }),
            Some(c) if c == "default" => {
                Ok(Endpoint { host: DEFAULT_HOST.into(), origin: "docker context 'default'".into(), tls })
            }
            Some(c) => {
                let dir = env.config_dir.as_deref().ok_or_else(|| {
                    TargetError::new(format!("docker context '{c}': no docker config directory (set DOCKER_CONFIG)"))
                })?;
                let host = context_host(dir, &c)?;
                let digest = hex::encode(Sha256::digest(c.as_bytes()));
                let tls = tls.or_else(|| {
                    dir.join("contexts/tls")
                        .join(digest)
                        .join("docker")
                        .exists()
                        .then(|| format!("docker context '{c}' (TLS material)"))
                });
                Ok(Endpoint { host, origin: format!("docker context '{c}'"), tls })
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

fn context_host(config_dir: &Path, name: &str) -> Result<String, TargetError> {
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let meta = config_dir.join("contexts").join("meta").join(digest).join("meta.json");
    let fix = "run `docker context use default` or `docker context ls`";
    let bytes = std::fs::read(&meta).map_err(|e| {
        TargetError::new(format!("docker context '{name}': cannot read {}: {e}", meta.display())).with_hint(fix)
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| TargetError::new(format!("docker context '{name}': {}: {e}", meta.display())).with_hint(fix))?;
    v.pointer("/Endpoints/docker/Host")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .ok_or_else(|| TargetError::new(format!("docker context '{name}' has no Docker endpoint")).with_hint(fix))
}

/// One lazily made, shared connection to the engine: every Docker target of a run uses it, and
/// the first to need it connects. A failure is remembered, so an unreachable engine costs one
/// timeout per run, not one per container.
#[derive(Clone)]
pub struct Engine {
    endpoint: Result<Endpoint, TargetError>,
    cell: Arc<OnceCell<Result<Docker, TargetError>>>,
}

impl Engine {
    pub fn new(endpoint: Result<Endpoint, TargetError>) -> Engine {
        Engine { endpoint, cell: Arc::new(OnceCell::new()) }
    }

    pub fn from_env() -> Engine {
        Engine::new(Endpoint::resolve(&EndpointEnv::from_process()))
    }

    pub async fn get(&self) -> Result<&Docker, TargetError> {
        let r = self.cell.get_or_init(|| async { connect(self.endpoint.clone()?).await }).await;
        r.as_ref().map_err(Clone::clone)
    }
}

async fn connect(ep: Endpoint) -> Result<Docker, TargetError> {
    let unreachable = |why: String| {
        TargetError::new(format!("cannot reach the Docker daemon at {} (from {}): {why}", ep.host, ep.origin))
            .with_hint("start Docker, or point DOCKER_HOST / `docker context use` at a running engine")
            .with_kind(crate::targets::ErrorKind::Unreachable)
    };
    let host = ep.host.as_str();
    check_transport(&ep)?;
    let docker = Docker::connect_with_host(host).map_err(|e| unreachable(e.to_string()))?.with_timeout(REQUEST_TIMEOUT);
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        Ok(Err(e)) => Err(unreachable(error_text(&e))),
        Ok(Ok(d)) => Ok(d),
    }
}

/// Refuse every engine this build cannot reach the way the docker CLI would, before a byte is
/// sent: the credential never travels over plain HTTP where TLS or SSH was asked for, nor to
/// another machine without encryption.
fn check_transport(ep: &Endpoint) -> Result<(), TargetError> {
    let host = ep.host.as_str();
    let hint = "push to the engine's host with an ssh: target instead, or reach the engine over a local socket \
                (for instance `ssh -L /tmp/d.sock:/var/run/docker.sock HOST` and DOCKER_HOST=unix:///tmp/d.sock)";
    if host.starts_with("ssh://") {
        return Err(TargetError::new(format!(
            "Docker over ssh:// ('{host}', from {}) is not supported by this build",
            ep.origin
        ))
        .with_hint(hint));
    }
    if let Some(why) = &ep.tls
        && !host.starts_with("unix://")
    {
        return Err(TargetError::new(format!(
            "{why} asks for TLS to the Docker engine at {host}, which this build cannot do; refusing to send the \
             credential without it"
        ))
        .with_hint(hint));
    }
    if let Some(rest) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
        let name = rest.split('/').next().unwrap_or_default();
        let name = match name.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => name,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let loopback = name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(TargetError::new(format!(
                "the Docker engine at {host} (from {}) would be reached over plain TCP, unencrypted: refusing to \
                 send a credential to another machine that way",
                ep.origin
            ))
            .with_hint(hint));
        }
        return Ok(());
    }
    if host.starts_with("unix://") {
        return Ok(());
    }
    Err(TargetError::new(format!(
        "unsupported Docker host '{host}' (from {}): this build speaks unix:// and loopback tcp://",
        ep.origin
    )))
}

/// A bollard error with its causes, on one line ("client error (Connect): No such file...").
pub fn error_text(e: &bollard::errors::Error) -> String {
    use std::error::Error as _;
    // The Engine's own answer, with what it is: "the Docker Engine answered 500: ...".
    if let bollard::errors::Error::DockerResponseServerError { status_code, message } = e {
        return format!("the Docker Engine answered {status_code}: {message}");
    }
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        // The HTTP client's names for itself are no use to the reader.
        if s_text.starts_with("client error (") || s_text.contains("hyper") {
            src = s.source();
            continue;
        }
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        src = s.source();
    }
    text
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
        assert_eq!(
            Endpoint::resolve(&env(None, None)).unwrap().tls.as_deref(),
            Some("docker context 'remote' (TLS material)")
        );
    }

    #[test]
    fn tls_ssh_and_remote_plain_tcp_are_refused_never_sent_in_clear() {
        let ep = |host: &str, tls: Option<&str>| Endpoint {
            host: host.into(),
            origin: "DOCKER_HOST".into(),
            tls: tls.map(str::to_string),
        };
        for (e, want) in [
            (ep("tcp://10.0.0.9:2376", Some("DOCKER_TLS_VERIFY")), "DOCKER_TLS_VERIFY asks for TLS"),
            (ep("tcp://127.0.0.1:2376", Some("DOCKER_TLS_VERIFY")), "DOCKER_TLS_VERIFY asks for TLS"),
            (ep("ssh://deploy@host", None), "Docker over ssh://"),
            (ep("tcp://10.0.0.9:2375", None), "over plain TCP, unencrypted"),
            (ep("tcp://docker.example:2375", None), "over plain TCP, unencrypted"),
            (ep("npipe:////./pipe/docker_engine", None), "unsupported Docker host"),
        ] {
            let err = check_transport(&e).unwrap_err();
            assert!(err.message.contains(want), "{}: {err}", e.host);
        }
        for ok in ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375"] {
            assert!(check_transport(&ep(ok, None)).is_ok(), "{ok}");
        }
        assert!(check_transport(&ep("unix:///var/run/docker.sock", Some("DOCKER_TLS_VERIFY"))).is_ok());
    }
}
