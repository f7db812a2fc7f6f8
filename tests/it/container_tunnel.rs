//! `llmx auth tunnel docker:NAME` end to end against the real Docker Engine: the container runs an
//! image with this machine's glibc (tests/it/support/docker.rs, `IMAGE_GLIBC`, user `app`) on
//! `--network none`, joined to this machine by a veth pair into its own network namespace
//! (support/netns.rs, `Netns::of_process`), so its 127.0.0.1 is not ours and the test issuer,
//! listening on this side's veth address, is reachable from inside. The browser relay is
//! checked with the scripted browser following the authorize URL to 127.0.0.1:PORT here; the
//! device code is approved on the issuer's page as a person would. The same device login runs
//! through the engines of tests/it/engines.rs: the second dockerd behind TLS (the image loaded
//! into it with docker save | load) and the machine's engine reached over `ssh://`.

use crate::engines::{SshEngine, tls_engine};
use crate::support::docker::{Container, EngineEnv, IMAGE_GLIBC, IMAGE_NOSHELL};
use crate::support::harness::{Events, LLMX, free_port};
use crate::support::login::{Browser, Home, port_of};
use crate::support::netns::{Netns, has_port, listeners};
use crate::tunnel::listeners_of;
use llmx_test_issuer::{Issuer, IssuerConfig, RunningIssuer};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A running glibc container with its own network, and the test issuer reachable from it.
struct Bed {
    // Field order is drop order: the namespace handle and veth go before the container.
    ns: Netns,
    c: Container,
    issuer: RunningIssuer,
    /// What the llmx under test is given to reach the container's engine (empty: the test run's
    /// DOCKER_HOST).
    llmx_env: EngineEnv,
}

async fn container(tag: &str) -> Bed {
    bed(Container::run(tag, IMAGE_GLIBC, &[]), Vec::new()).await
}

/// The container `c` (running IMAGE_GLIBC on any engine of this machine) joined to this side,
/// the issuer listening here for it.
async fn bed(c: Container, llmx_env: EngineEnv) -> Bed {
    let ns = Netns::of_process(c.pid());
    let listener = tokio::net::TcpListener::bind((ns.host_ip, 0)).await.unwrap();
    let issuer = Issuer::new(IssuerConfig::default()).spawn(listener).unwrap();
    Bed { ns, c, issuer, llmx_env }
}

/// `llmx -c auth_issuer=ISSUER auth tunnel --json --no-browser docker:NAME EXTRA...`.
fn spawn(b: &Bed, local: &Home, extra: &[&str]) -> Events {
    let mut cmd = local
        .llmx(["-c", &format!("auth_issuer={}", b.issuer.base_url()), "auth", "tunnel", "--json", "--no-browser"])
        .args([b.c.target()])
        .args(extra);
    if b.llmx_env.is_empty() {
        cmd = cmd.envs_from_docker();
    }
    for (k, v) in &b.llmx_env {
        cmd = cmd.env(k, v);
    }
    cmd.events()
}

trait DockerEnv {
    fn envs_from_docker(self) -> Self;
}

impl DockerEnv for crate::support::harness::Llmx {
    /// The test run's DOCKER_HOST (scripts/test may start a private engine).
    fn envs_from_docker(self) -> Self {
        match std::env::var("DOCKER_HOST") {
            Ok(h) => self.env("DOCKER_HOST", h),
            Err(_) => self,
        }
    }
}

/// The container user's auth.json: a ChatGPT login, 0600, owned by `app` (1000), dir 0700.
fn assert_container_login(c: &Container, api_key: bool) -> Value {
    let (bytes, uid, gid, mode) = c.stat("/home/app/.llmx/auth.json").expect("auth.json in the container");
    assert_eq!((uid, gid, mode), (1000, 1000, 0o600), "auth.json owner and mode");
    let (_, duid, _, dmode) = c.stat("/home/app/.llmx").unwrap();
    assert_eq!((duid, dmode), (1000, 0o700), "credential dir");
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["auth_mode"], "chatgpt", "{json}");
    assert_eq!(json["tokens"]["account_id"], "acc-test-0001", "{json}");
    assert_eq!(json["OPENAI_API_KEY"].as_str().is_some_and(|k| !k.is_empty()), api_key, "{json}");
    json
}

/// Nothing left: no llmx process in the container, no listener of ours on `port` here, and the
/// container's own loopback free.
fn assert_torn_down(b: &Bed, port: u16) {
    let here = listeners(std::process::Command::new("ss"));
    assert!(!has_port(&here, port), "a listener is left on local port {port}: {here:?}");
    assert_container_torn_down(b, port);
}

/// After a device tunnel, which binds no port here (checked while it runs; whatever else holds
/// 1455 on this machine is not ours): the container's loopback free, no llmx left in it.
fn assert_device_torn_down(b: &Bed) {
    assert_container_torn_down(b, llmx::tunnel::DEFAULT_PORT);
}

fn assert_container_torn_down(b: &Bed, port: u16) {
    let procs: Vec<String> = b.c.processes().into_iter().filter(|p| p.contains("llmx")).collect();
    assert!(procs.is_empty(), "llmx still runs in the container: {procs:?}");
    assert!(!has_port(&b.ns.listeners(), port), "the container still listens on {port}");
}

fn assert_no_tokens(auth: &Value, text: &str) {
    let t = &auth["tokens"];
    for s in [&t["id_token"], &t["access_token"], &t["refresh_token"]] {
        assert!(!text.contains(s.as_str().unwrap()), "a secret leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn container_tunnel_installs_llmx_and_relays_the_browser_callback_into_the_container_login() {
    let b = container("relay").await;
    let local = Home::new();
    let port = free_port();
    let mut t = spawn(&b, &local, &["--install", "--port", &port.to_string()]);
    let ready = t.wait_for("container_ready").await;
    assert_eq!(ready["user"], "app", "{ready}");
    let installed = t.wait_for("installed").await;
    assert_eq!(installed["path"], "/home/app/.llmx/bin/llmx");
    let (bin, uid, _, mode) = b.c.stat("/home/app/.llmx/bin/llmx").unwrap();
    assert_eq!((uid, mode), (1000, 0o700), "installed binary");
    assert_eq!(bin, std::fs::read(LLMX).unwrap(), "copied bytes differ");
    assert_eq!(b.c.stat("/home/app/.llmx/bin").map(|s| (s.1, s.3)), Some((1000, 0o700)));
    let listening = t.wait_for("listening").await;
    assert_eq!(port_of(&listening), port);
    let url = listening["authorize_url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&b.issuer.base_url()), "{url}");
    // The container's login listens on its own loopback, never ours.
    assert!(has_port(&b.ns.listeners(), port), "the container login does not listen");

    // A callback of another login is refused by the container's state check; it keeps waiting.
    let wrong = Browser::new().get(&format!("http://localhost:{port}/auth/callback?code=x&state=wrong")).await;
    assert_eq!(wrong.status, 400, "{wrong:?}");
    assert!(wrong.body.contains("state mismatch"), "{wrong:?}");
    assert_eq!(t.wait_for("callback_rejected").await["reason"].as_str().map(|r| r.contains("state")), Some(true));
    assert_eq!(Browser::new().get(&format!("http://localhost:{port}/other")).await.status, 404);

    // The browser is slow to follow the relay's redirect (a loaded machine): by then the
    // container's login has saved and ended, and the success page must still be served here
    // (it once raced: the relay had already closed, 2 runs in 8 beside the reach tests).
    let browser = Browser::new();
    let callback = browser.callback_url(&url).await;
    assert_eq!(callback.port(), Some(port), "{callback}");
    let relayed = browser.get(callback.as_str()).await;
    assert_eq!(
        (relayed.status, relayed.location.as_deref()),
        (302, Some(&*format!("http://127.0.0.1:{port}/success")))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last = browser.get(&relayed.location.unwrap()).await;
    assert_eq!(last.status, 200, "{last:?}");
    assert!(last.body.contains("signed in"), "{last:?}");

    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "tunnel_succeeded", "{events:?}");
    assert_eq!(done["host"], b.c.target());
    assert_eq!(done["auth_file"], "/home/app/.llmx/auth.json", "{done}");
    assert_eq!(done["status"]["method"], "chatgpt", "{done}");
    assert_eq!(done["status"]["email"], "dev@example.com", "{done}");
    let auth = assert_container_login(&b.c, true);
    assert_no_tokens(&auth, &format!("{events:?}{stderr}"));
    assert_eq!(b.issuer.issuer.stats().code_exchanges, 1, "the container exchanged the code once");
    assert!(!local.auth_path().exists(), "the tunnel wrote a login here (only the ledger records the sign-in)");
    assert_torn_down(&b, port);
}

#[tokio::test(flavor = "multi_thread")]
async fn container_device_tunnel_signs_the_container_in_with_a_code_and_binds_no_port() {
    let b = container("device").await;
    b.c.give_binary(Path::new(LLMX), "/usr/local/bin", "llmx");
    let local = Home::new();
    let started = Instant::now();
    let mut t = spawn(&b, &local, &["--device"]);
    let run = t.wait_for("remote_started").await;
    assert_eq!(run["llmx"], "/usr/local/bin/llmx", "found on the container's PATH");
    let code = t.wait_for("device_code").await;
    let to_code = started.elapsed();
    assert_eq!(code["verification_url"], format!("{}/codex/device", b.issuer.base_url()), "{code}");
    assert_eq!(listeners_of(t.pid().unwrap()), Vec::<String>::new(), "the tunnel bound a port");
    assert!(b.ns.listeners().is_empty(), "the container login listens: {:?}", b.ns.listeners());

    let approved = Instant::now();
    crate::signin::decide_on_page(&b.issuer.base_url(), code["user_code"].as_str().unwrap(), "approve").await;
    let (status, events, stderr) = t.finish().await;
    let to_exit = approved.elapsed();
    eprintln!("container tunnel --device: start→code {to_code:?}, approve→exit {to_exit:?}");
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");
    assert_eq!(events.last().unwrap()["event"], "tunnel_succeeded", "{events:?}");
    let auth = assert_container_login(&b.c, false);
    assert_no_tokens(&auth, &format!("{events:?}{stderr}"));
    assert_device_torn_down(&b);
}

/// `--install --device` into `b`'s container: this llmx copied in through the archive API, the
/// login run through the exec API's hijacked stream, the code approved; signed in, nothing
/// secret said, nothing left. Returns the output (events and stderr) as text.
async fn install_and_sign_in_with_a_code(b: &Bed) -> String {
    let local = Home::new();
    let started = Instant::now();
    let mut t = spawn(b, &local, &["--install", "--device"]);
    let ready = t.wait_for("container_ready").await;
    let to_ready = started.elapsed();
    assert_eq!(ready["user"], "app", "{ready}");
    assert_eq!(t.wait_for("installed").await["path"], "/home/app/.llmx/bin/llmx");
    let to_installed = started.elapsed();
    // Checked inside (busybox stat, sha256sum): copying the debug build back out through the
    // docker CLI over TLS takes half a minute on a loaded machine.
    let path = "/home/app/.llmx/bin/llmx";
    assert_eq!(b.c.exec(&["stat", "-c", "%u %a", path]), "1000 700", "installed binary");
    let local_sum = std::process::Command::new("sha256sum").arg(LLMX).output().unwrap();
    let sum = String::from_utf8_lossy(&local_sum.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(b.c.exec(&["sha256sum", path]).split_whitespace().next(), Some(sum.as_str()), "copied bytes differ");
    let code = t.wait_for("device_code").await;
    let to_code = started.elapsed();
    assert_eq!(code["verification_url"], format!("{}/codex/device", b.issuer.base_url()), "{code}");
    assert!(b.ns.listeners().is_empty(), "the container login listens: {:?}", b.ns.listeners());
    let approved = Instant::now();
    crate::signin::decide_on_page(&b.issuer.base_url(), code["user_code"].as_str().unwrap(), "approve").await;
    let (status, events, stderr) = t.finish().await;
    eprintln!(
        "{}: start→container_ready {to_ready:?}, →installed {to_installed:?}, →device_code {to_code:?}, \
         approve→exit {:?}",
        b.c.name,
        approved.elapsed()
    );
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "tunnel_succeeded", "{events:?}");
    assert_eq!(done["auth_file"], "/home/app/.llmx/auth.json", "{done}");
    let auth = assert_container_login(&b.c, false);
    let text = format!("{events:?}{stderr}");
    assert_no_tokens(&auth, &text);
    assert!(!local.auth_path().exists(), "the tunnel wrote a login here (only the ledger records the sign-in)");
    assert_device_torn_down(b);
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn container_device_tunnel_through_a_tls_engine_installs_llmx_and_signs_the_container_in() {
    let e = tls_engine();
    e.load(IMAGE_GLIBC);
    let env = e.env(&e.certs);
    let b = bed(Container::run_on(env.clone(), "tls-device", IMAGE_GLIBC, &[]), env).await;
    let started = Instant::now();
    let text = install_and_sign_in_with_a_code(&b).await;
    eprintln!("container tunnel --install --device over TLS: {:?} in all", started.elapsed());
    let key = std::fs::read_to_string(e.certs.join("key.pem")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    assert!(!text.contains(key_line), "the client key leaked into the output");
}

#[tokio::test(flavor = "multi_thread")]
async fn container_device_tunnel_through_an_ssh_engine_installs_llmx_and_signs_the_container_in() {
    let e = SshEngine::start(true);
    let env = vec![("DOCKER_HOST", e.host(&e.sshd.users[0])), ("HOME", e.local.home().display().to_string())];
    let b = bed(Container::run("ssh-device", IMAGE_GLIBC, &[]), env).await;
    let started = Instant::now();
    install_and_sign_in_with_a_code(&b).await;
    eprintln!("container tunnel --install --device over ssh://: {:?} in all", started.elapsed());
    let log = e.sshd.log();
    assert!(log.contains(&format!("Accepted publickey for {}", e.sshd.users[0].name)), "not through this sshd: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_a_container_login_stops_it_inside_and_releases_the_port() {
    let b = container("ctrlc").await;
    b.c.give_binary(Path::new(LLMX), "/usr/local/bin", "llmx");
    let local = Home::new();
    let port = free_port();
    let mut t = spawn(&b, &local, &["--port", &port.to_string()]);
    t.wait_for("listening").await;
    assert_eq!(b.c.processes().iter().filter(|p| p.contains("llmx")).count(), 1);
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(t.pid().unwrap() as i32, libc::SIGINT) }, 0);
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(130), "{events:?} {stderr}");
    assert_eq!(crate::support::harness::last_event(&events)["reason"], "interrupted", "{events:?}");
    assert!(stderr.contains("the remote login was cancelled"), "{stderr}");
    assert!(!events.iter().any(|e| e["event"] == "warning"), "{events:?}");
    assert_torn_down(&b, port);
    assert!(b.c.stat("/home/app/.llmx/auth.json").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn container_login_stops_when_the_tunnel_is_killed() {
    let b = container("killed").await;
    b.c.give_binary(Path::new(LLMX), "/usr/local/bin", "llmx");
    let local = Home::new();
    let mut t = spawn(&b, &local, &["--device"]);
    t.wait_for("device_code").await;
    t.kill().await;
    // The engine closes the exec's stdin when the attach connection drops; the login ends.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.c.processes().iter().any(|p| p.contains("llmx")) {
        assert!(Instant::now() < deadline, "the container login outlived the tunnel: {:?}", b.c.processes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn container_without_shell_or_llmx_fails_in_one_line_and_starts_no_exec() {
    let c = Container::run("bare", IMAGE_NOSHELL, &[]);
    let local = Home::new();
    let run = |extra: &[&str]| {
        let port = free_port().to_string();
        let args = ["auth", "tunnel", "--no-browser", "--port", &port, &c.target()].map(String::from);
        local.llmx(args).args(extra).envs_from_docker().run_blocking()
    };
    let out = run(&[]);
    assert_eq!(out.code(), 1, "{}", out.all());
    let err = out.stderr.trim();
    let reason: Vec<&str> = err.lines().filter(|l| l.starts_with("llmx: ")).collect();
    assert!(reason.len() == 1 && reason[0].contains("no llmx found"), "{err}");
    assert!(err.contains("--install") && err.contains("--remote-llmx"), "{err}");

    let out = run(&["--install"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    let err = out.stderr.trim();
    assert!(err.contains("cannot --install") && err.contains("glibc"), "{err}");

    let out = run(&["--remote-llmx", "/nope/llmx"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr.contains("/nope/llmx"), "{}", out.stderr);

    assert_eq!(c.exec_ids(), "null", "an exec was started");
    assert!(c.stat("/home/nonroot/.llmx").is_none(), "something was written");
    assert!(!local.auth_path().exists());
}

#[test]
fn tunnel_target_forms_are_named_on_a_wrong_one() {
    let local = Home::new();
    for (bad, want) in [
        ("docker:label=a", "one container"),
        ("docker:", "docker:NAME"),
        ("k8s:pod", "[ssh:][user@]host[:port] or docker:NAME"),
    ] {
        let out = local.llmx(["auth", "tunnel", bad]).run_blocking();
        assert_eq!(out.code(), 2, "{bad}: {}", out.all());
        assert!(out.stderr.contains(want), "{bad}: {}", out.stderr);
        assert!(!out.stderr.contains("invalid port 'x'"), "{}", out.stderr);
    }
}

/// The human screen of a container tunnel speaks of the container and of a relayed callback,
/// not of a host and a forwarded port (issue 20 item 6).
#[tokio::test(flavor = "multi_thread")]
async fn container_tunnel_says_container_and_relayed() {
    use tokio::io::AsyncBufReadExt;
    let b = container("words").await;
    b.c.give_binary(Path::new(LLMX), "/usr/local/bin", "llmx");
    let local = Home::new();
    let port = free_port().to_string();
    let mut cmd = local
        .llmx(["-c", &format!("auth_issuer={}", b.issuer.base_url()), "auth", "tunnel", "--no-browser"])
        .args(["--port", &port, &b.c.target()]);
    cmd = cmd.envs_from_docker();
    let mut child = cmd.spawn();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Ok(Ok(Some(l))) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        let done = l.contains("localhost:");
        seen.push(l);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("sign in the container:"), "{text}");
    assert!(text.contains("is relayed to the container's llmx login"), "{text}");
    assert!(!text.contains("the host") && !text.contains("forwarded"), "{text}");
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130));
}
