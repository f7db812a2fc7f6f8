//! Docker engines beyond the local socket, each a real component: a second dockerd behind TLS
//! (`--tlsverify`, a test CA made with openssl, started by `scripts/tls-engine up` from
//! scripts/test, which stops it in its exit trap: the tests read its address and certificates
//! from LLMX_TEST_TLS_ENGINE / _CERTS / _WRONG_CA and fail loudly without them), plain tcp:// to
//! an address of a network namespace the test made, and the machine's engine reached over
//! `ssh://` through a local sshd as a user in the `docker` group.

use crate::support::docker::{Container, IMAGE_ROOT, Local, api_key_auth, docker_raw, images, unique_name};
use crate::support::harness::Run;
use crate::support::netns::Netns;
use crate::support::sshd::{Key, Sshd, SshdOptions, User, run};
use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The TLS engine scripts/tls-engine started: address, client certificates, and a directory with
/// the same client certificate but an unrelated CA.
pub(crate) struct TlsEngine {
    host: String,
    pub(crate) certs: PathBuf,
    wrong_ca: PathBuf,
    /// The images given to it so far by this test process.
    loaded: Mutex<HashSet<&'static str>>,
}

pub(crate) fn tls_engine() -> &'static TlsEngine {
    static ENGINE: OnceLock<TlsEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let var = |k: &str| {
            std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
                panic!(
                    "no TLS Docker engine: {k} is unset; run the suite with scripts/test, or \
                     `scripts/tls-engine up && eval \"$(scripts/tls-engine env)\"` first"
                )
            })
        };
        let e = TlsEngine {
            host: var("LLMX_TEST_TLS_ENGINE"),
            certs: var("LLMX_TEST_TLS_CERTS").into(),
            wrong_ca: var("LLMX_TEST_TLS_WRONG_CA").into(),
            loaded: Mutex::new(HashSet::new()),
        };
        e.load(IMAGE_ROOT);
        e
    })
}

impl TlsEngine {
    /// It starts with no images: give it `image` from the machine's engine (docker save | load),
    /// once per test process.
    pub(crate) fn load(&self, image: &'static str) {
        let mut loaded = self.loaded.lock().unwrap();
        if loaded.contains(image) {
            return;
        }
        images();
        let saved = docker_raw(&["save", image], None);
        assert!(saved.status.success(), "docker save {image}: {}", String::from_utf8_lossy(&saved.stderr));
        let out = self.docker(&["load"], Some(&saved.stdout));
        assert!(out.status.success(), "docker load into the TLS engine: {}", String::from_utf8_lossy(&out.stderr));
        loaded.insert(image);
    }

    pub(crate) fn env(&self, certs: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("DOCKER_HOST", self.host.clone()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("DOCKER_CERT_PATH", certs.display().to_string()),
        ]
    }

    /// The docker CLI against this engine, with the right certificates.
    fn docker(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut cmd = Command::new("docker");
        cmd.args(args).envs(self.env(&self.certs));
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("docker CLI");
        if let Some(data) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(data).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// A running container on this engine, removed when dropped.
    fn container(&self, tag: &str) -> TlsContainer<'_> {
        let name = unique_name(tag);
        let out =
            self.docker(&["run", "-d", "--pull", "never", "--network", "none", "--name", &name, IMAGE_ROOT], None);
        assert!(out.status.success(), "docker run on the TLS engine: {}", String::from_utf8_lossy(&out.stderr));
        TlsContainer { engine: self, name }
    }
}

struct TlsContainer<'a> {
    engine: &'a TlsEngine,
    name: String,
}

impl TlsContainer<'_> {
    fn auth_json(&self) -> Option<String> {
        let out = self.engine.docker(&["exec", &self.name, "cat", "/root/.llmx/auth.json"], None);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    fn mode(&self) -> String {
        let out = self.engine.docker(&["exec", &self.name, "stat", "-c", "%a %u", "/root/.llmx/auth.json"], None);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for TlsContainer<'_> {
    fn drop(&mut self) {
        let _ = self.engine.docker(&["rm", "-f", &self.name], None);
    }
}

fn with<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A fresh container on the TLS engine and a local API-key login pushed to it with `env`.
fn push_to_tls_container(tag: &str, env: &[(&'static str, String)]) -> (TlsContainer<'static>, Local, Run) {
    let c = tls_engine().container(tag);
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let r = local.llmx(&["auth", "push", &format!("docker:{}", c.name)], &with(env));
    (c, local, r)
}

#[test]
fn tls_engine_with_the_right_client_certificate_pushes_and_reads_back() {
    let e = tls_engine();
    let env = e.env(&e.certs);
    let (c, local, r) = push_to_tls_container("tls-ok", &env);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("created /root/.llmx/auth.json"), "{}", r.all());
    assert_eq!(c.auth_json().as_deref(), Some(api_key_auth().as_str()));
    assert_eq!(c.mode(), "600 0");
    let r = local.llmx(&["auth", "status", &format!("docker:{}", c.name)], &with(&env));
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("API key"), "{}", r.all());
}

/// A push to several containers of a TLS engine keeps its connections open and uses them again:
/// the engine sees one TLS connection for all the requests that do not overlap, plus one per
/// container for the exec stream it hijacks (on main: one connection per API request).
#[test]
fn tls_engine_connections_are_kept_and_used_again_across_containers() {
    let e = tls_engine();
    let containers: Vec<TlsContainer<'_>> = (0..4).map(|i| e.container(&format!("tls-keep{i}"))).collect();
    let engine = e.host.strip_prefix("tcp://").expect("a tcp:// engine").to_string();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let via = format!("tcp://{}", l.local_addr().unwrap());
    let seen = relay(l, To::Tcp(engine));
    let mut env = e.env(&e.certs);
    env[0].1 = via;
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let targets: Vec<String> = containers.iter().map(|c| format!("docker:{}", c.name)).collect();
    let mut args = vec!["auth", "push"];
    args.extend(targets.iter().map(String::as_str));
    let r = local.llmx(&args, &with(&env));
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("4 created"), "{}", r.all());
    let connections = seen.load(Ordering::SeqCst);
    eprintln!("TLS connections for a push to 4 containers: {connections}");
    assert!(connections <= 4 + 2, "{connections} TLS connections for 4 containers: not kept and used again");
}

#[test]
fn tls_engine_with_a_wrong_ca_is_refused_and_nothing_is_written() {
    let e = tls_engine();
    let (c, _local, r) = push_to_tls_container("tls-wrong-ca", &e.env(&e.wrong_ca));
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("UnknownIssuer") && r.stdout.contains("nothing was sent"), "{}", r.all());
    assert!(r.stdout.contains("wrong/ca.pem"), "the hint names the CA file: {}", r.all());
    assert_eq!(c.auth_json(), None, "a file was written through an engine whose certificate was not trusted");
}

#[test]
fn tls_engine_without_tls_turned_on_fails_clearly_and_writes_nothing() {
    let e = tls_engine();
    let (c, _local, r) = push_to_tls_container("tls-off", &[("DOCKER_HOST", e.host.clone())]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("expects TLS, which is not turned on here"), "{}", r.all());
    assert!(r.stdout.contains("DOCKER_TLS_VERIFY=1"), "{}", r.all());
    assert_eq!(c.auth_json(), None);
}

#[test]
fn tls_engine_host_name_is_checked_against_the_certificate() {
    // The server certificate names 127.0.0.1 and localhost; another name of this machine is not
    // in it, so the handshake must fail although the CA is right.
    let e = tls_engine();
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = relay(l, To::Tcp(e.host.trim_start_matches("tcp://").to_string()));
    let mut env = e.env(&e.certs);
    env[0].1 = format!("tcp://127.0.0.2:{port}");
    let r = local.llmx(&["auth", "push", "docker:whatever"], &with(&env));
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("certificate not valid for name \"127.0.0.2\""), "{}", r.all());
    assert!(r.stdout.contains("does not name this host"), "{}", r.all());
    assert!(seen.load(Ordering::SeqCst) > 0, "the handshake never reached the engine");
}

#[test]
fn tls_engine_with_a_mistyped_cert_path_is_named_before_connecting() {
    let e = tls_engine();
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = relay(l, To::Tcp(e.host.trim_start_matches("tcp://").to_string()));
    let typo = e.certs.with_file_name("clinet");
    let mut env = e.env(&typo);
    env[0].1 = format!("tcp://127.0.0.1:{port}");
    let r = local.llmx(&["auth", "push", "docker:whatever"], &with(&env));
    assert_eq!(r.code(), 1, "{}", r.all());
    let line = format!("DOCKER_CERT_PATH={}: no such directory", typo.display());
    assert!(r.stdout.contains(&line), "{}", r.all());
    assert!(r.stdout.contains("ca.pem, cert.pem and key.pem"), "the hint says what belongs there: {}", r.all());
    assert!(!r.all().contains("cannot reach"), "{}", r.all());
    assert_eq!(seen.load(Ordering::SeqCst), 0, "llmx connected with a certificate directory that is not there");

    // A directory that is there without ca.pem still means the system roots (as the docker CLI).
    let empty = tempfile::tempdir().unwrap();
    let mut env = e.env(empty.path());
    env[0].1 = format!("tcp://127.0.0.1:{port}");
    let r = local.llmx(&["auth", "push", "docker:whatever"], &with(&env));
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("UnknownIssuer"), "{}", r.all());
    assert!(seen.load(Ordering::SeqCst) > 0);
}

#[test]
fn tls_engine_refusing_the_client_certificate_is_said_as_tls_with_the_cert_dir() {
    let e = tls_engine();
    let (none, stranger) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [none.path(), stranger.path()] {
        std::fs::copy(e.certs.join("ca.pem"), d.join("ca.pem")).unwrap();
    }
    // A client certificate the engine's CA never signed.
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=stranger", "-keyout"])
        .arg(stranger.path().join("key.pem"))
        .arg("-out")
        .arg(stranger.path().join("cert.pem")));
    for (dir, want) in
        [(none.path(), "has no cert.pem and key.pem"), (stranger.path(), "refused the client certificate")]
    {
        let (c, _local, r) = push_to_tls_container("tls-client-cert", &e.env(dir));
        assert_eq!(r.code(), 1, "{}", r.all());
        assert!(
            r.stdout.contains("TLS to the Docker engine at") && r.stdout.contains("nothing was sent"),
            "{}",
            r.all()
        );
        assert!(r.stdout.contains(want) && r.stdout.contains(&dir.display().to_string()), "{}", r.all());
        assert!(!r.all().contains("cannot reach") && !r.all().contains("start Docker"), "{}", r.all());
        assert_eq!(c.auth_json(), None);
    }
}

/// The main engine's socket (the run's DOCKER_HOST when it is a unix:// one).
fn main_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into())
}

/// Where a relay sends what it accepts.
enum To {
    Unix(String),
    Tcp(String),
}

/// The two directions of a relayed connection.
type Halves = (Box<dyn std::io::Read + Send>, Box<dyn std::io::Write + Send>);

impl To {
    fn connect(&self) -> Option<Halves> {
        match self {
            To::Unix(p) => {
                let s = UnixStream::connect(p).ok()?;
                Some((Box::new(s.try_clone().ok()?), Box::new(s)))
            }
            To::Tcp(a) => {
                let s = std::net::TcpStream::connect(a).ok()?;
                Some((Box::new(s.try_clone().ok()?), Box::new(s)))
            }
        }
    }
}

/// Accept on `l`, relay each connection to `to`; counts the connections.
fn relay(l: TcpListener, to: To) -> &'static AtomicUsize {
    let seen: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let Some((mut from_up, mut to_up)) = to.connect() else { continue };
            let (mut a, mut c) = (conn.try_clone().unwrap(), conn);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut to_up);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_up, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    seen
}

/// A plain TCP listener on the host side of a namespace the test made (an address of "another
/// machine"), relaying to the main engine's socket.
fn plain_engine_elsewhere(ns: &Netns) -> (String, &'static AtomicUsize) {
    let l = TcpListener::bind((ns.host_ip, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    (format!("tcp://{addr}"), relay(l, To::Unix(main_socket())))
}

#[test]
fn plain_tcp_to_another_machine_is_refused_before_connecting_and_insecure_engine_warns() {
    let ns = Netns::create();
    let (host, seen) = plain_engine_elsewhere(&ns);
    let c = Container::run("plain-elsewhere", IMAGE_ROOT, &[]);
    let local = Local::new();
    local.write_auth(&api_key_auth());
    let r = local.llmx(&["auth", "push", &c.target()], &[("DOCKER_HOST", &host)]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("over plain TCP, unencrypted: refusing"), "{}", r.all());
    assert!(r.stdout.contains("--insecure-engine"), "{}", r.all());
    assert_eq!(seen.load(Ordering::SeqCst), 0, "llmx connected although it refused");
    assert_eq!(c.read("/root/.llmx/auth.json"), None);

    let r = local.llmx(&["auth", "push", "--insecure-engine", &c.target()], &[("DOCKER_HOST", &host)]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr.contains("warning: --insecure-engine") && r.stderr.contains("unencrypted"), "{}", r.all());
    assert!(seen.load(Ordering::SeqCst) > 0);
    assert_eq!(c.read("/root/.llmx/auth.json").as_deref(), Some(api_key_auth().as_str()));
    // Every use warns, not only the first.
    let r = local.llmx(&["auth", "status", "--insecure-engine", &c.target()], &[("DOCKER_HOST", &host)]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stderr.contains("warning: --insecure-engine"), "{}", r.all());
}

/// An sshd whose first user may use the Docker socket (the `docker` group) and whose second may
/// not, and a client HOME whose ~/.ssh holds a key both accept; `trusted` writes known_hosts.
pub(crate) struct SshEngine {
    pub(crate) sshd: Sshd,
    pub(crate) local: Local,
}

impl SshEngine {
    pub(crate) fn start(trusted: bool) -> SshEngine {
        let sshd = Sshd::start(SshdOptions { users: 2, ..SshdOptions::default() });
        run(Command::new("usermod").args(["-aG", "docker", &sshd.users[0].name]));
        let local = Local::new();
        let ssh = local.home().join(".ssh");
        let key = Key::generate(&ssh, "id_ed25519", "");
        for u in &sshd.users {
            u.authorize(&key.public);
        }
        if trusted {
            std::fs::write(ssh.join("known_hosts"), sshd.known_hosts_line()).unwrap();
        }
        local.write_auth(&api_key_auth());
        SshEngine { sshd, local }
    }

    pub(crate) fn host(&self, user: &User) -> String {
        format!("ssh://{}@127.0.0.1:{}", user.name, self.sshd.port)
    }
}

#[test]
fn ssh_engine_pushes_through_llmxs_own_ssh_and_reads_back() {
    let e = SshEngine::start(true);
    let c = Container::run("ssh-engine", IMAGE_ROOT, &[]);
    let host = e.host(&e.sshd.users[0]);
    let r = e.local.llmx(&["auth", "push", &c.target()], &[("DOCKER_HOST", &host)]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("created /root/.llmx/auth.json"), "{}", r.all());
    assert_eq!(c.read("/root/.llmx/auth.json").as_deref(), Some(api_key_auth().as_str()));
    let (_, uid, _, mode) = c.stat("/root/.llmx/auth.json").unwrap();
    assert_eq!((uid, mode), (0, 0o600));
    assert!(
        e.sshd.log().contains(&format!("Accepted publickey for {}", e.sshd.users[0].name)),
        "the engine was not reached through this sshd: {}",
        e.sshd.log()
    );
    let r = e.local.llmx(&["auth", "status", &c.target()], &[("DOCKER_HOST", &host)]);
    assert_eq!(r.code(), 0, "{}", r.all());
}

#[test]
fn ssh_engine_with_an_unknown_host_key_is_refused_and_nothing_is_written() {
    let e = SshEngine::start(false);
    let c = Container::run("ssh-engine-unknown", IMAGE_ROOT, &[]);
    let r = e.local.llmx(&["auth", "push", &c.target()], &[("DOCKER_HOST", &e.host(&e.sshd.users[0]))]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("host key for") && r.stdout.contains("is not known"), "{}", r.all());
    assert!(r.stdout.contains("--accept-new"), "{}", r.all());
    assert_eq!(c.read("/root/.llmx/auth.json"), None);
}

#[test]
fn ssh_engine_as_a_user_outside_the_docker_group_is_told_what_to_fix() {
    let e = SshEngine::start(true);
    let outsider = &e.sshd.users[1];
    let r = e.local.llmx(&["auth", "push", "docker:any"], &[("DOCKER_HOST", &e.host(outsider))]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(
        r.stdout.contains(&format!("{} on 127.0.0.1 may not use /var/run/docker.sock", outsider.name)),
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("usermod -aG docker"), "{}", r.all());
}

/// `docker context create NAME --docker ARGS` in a fresh DOCKER_CONFIG: the store layout the
/// docker CLI itself writes (meta.json, TLS material under the name's SHA-256).
fn docker_context(name: &str, docker_args: &str) -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    let out = Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .args(["context", "create", name, "--docker", docker_args])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker context create: {}", String::from_utf8_lossy(&out.stderr));
    config
}

#[test]
fn tls_context_made_by_the_docker_cli_is_used_with_its_own_certificates() {
    let e = tls_engine();
    let d = e.certs.display();
    let config =
        docker_context("llmx-tls", &format!("host={},ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem", e.host));
    let config_dir = config.path().display().to_string();
    let env =
        [("DOCKER_HOST", String::new()), ("DOCKER_CONFIG", config_dir), ("DOCKER_CONTEXT", "llmx-tls".to_string())];
    let (c, _local, r) = push_to_tls_container("tls-context", &env);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(c.auth_json().as_deref(), Some(api_key_auth().as_str()));
}

#[test]
fn ssh_context_made_by_the_docker_cli_goes_through_llmxs_ssh() {
    let e = SshEngine::start(true);
    let config = docker_context("llmx-ssh", &format!("host={}", e.host(&e.sshd.users[0])));
    let config_dir = config.path().display().to_string();
    let c = Container::run("ssh-context", IMAGE_ROOT, &[]);
    let env = [("DOCKER_HOST", ""), ("DOCKER_CONFIG", config_dir.as_str()), ("DOCKER_CONTEXT", "llmx-ssh")];
    let r = e.local.llmx(&["auth", "push", &c.target()], &env);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert_eq!(c.read("/root/.llmx/auth.json").as_deref(), Some(api_key_auth().as_str()));
    assert!(e.sshd.log().contains("Accepted publickey"), "{}", e.sshd.log());
}
