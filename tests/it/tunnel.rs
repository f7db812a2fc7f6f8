//! `llmx auth tunnel` end to end: the remote is a real sshd in a network namespace with its own
//! loopback and its own non-root user (tests/it/support/netns.rs); the test issuer listens on this
//! side's veth address so the remote login can reach it; the "browser" is an HTTP client here
//! that reads the authorize URL from the tunnel's `--json` events, asks the issuer, and follows
//! the redirect to `localhost:PORT/auth/callback` through the tunnel. Needs root, iproute2,
//! openssh-server and procps (fails loudly without them).

use crate::support::harness::{Events, LIMIT, LLMX, free_port, last_event};
use crate::support::login::{Browser, Home, port_of};
use crate::support::netns::{Remote, has_port, listeners};
use llmx_test_issuer::{Issuer, IssuerConfig, RunningIssuer};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// The test issuer on this side's veth address, reachable from inside the namespace.
async fn issuer_for(remote: &Remote) -> RunningIssuer {
    let listener = tokio::net::TcpListener::bind((remote.ns.host_ip, 0)).await.unwrap();
    Issuer::new(IssuerConfig::default()).spawn(listener).unwrap()
}

/// `llmx -c auth_issuer=ISSUER auth tunnel --json --no-browser --port PORT -i KEY SPEC EXTRA...`
/// as this machine's user: HOME is the client home (its ~/.ssh), LLMX_HOME is `local`.
fn spawn_tunnel(remote: &Remote, issuer: &str, local: &Home, port: u16, extra: &[&str]) -> Events {
    let mut args = vec!["--port".to_string(), port.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_tunnel_with(remote, issuer, local, &args)
}

/// The same without `--port` (`--device` takes none).
fn spawn_tunnel_with(remote: &Remote, issuer: &str, local: &Home, extra: &[String]) -> Events {
    local
        .llmx(["-c", &format!("auth_issuer={issuer}"), "auth", "tunnel", "--json", "--no-browser"])
        .env("HOME", remote.client_home.path())
        .args(["--connect-timeout", "10", "-i"])
        .args([&remote.key.path])
        .args([remote.spec()])
        .args(extra)
        .events()
}

/// TCP listeners here that belong to process `pid`.
pub(crate) fn listeners_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("ss").arg("-ltnpH").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(str::to_string)
        .collect()
}

/// The browser's part: ask the issuer to approve, then follow its redirect through the tunnel
/// (`localhost:PORT` here is forwarded to the remote's 127.0.0.1:PORT) to the success page.
async fn sign_in(authorize_url: &str) {
    let hops = Browser::new().follow(authorize_url).await;
    assert!(hops.len() >= 3, "{hops:?}");
    assert!(hops[1].url.contains("/auth/callback?"), "{hops:?}");
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "{hops:?}");
    assert!(last.url.ends_with("/success") && last.body.contains("signed in"), "{last:?}");
}

/// Nothing left behind: no listener on `port` on either side, no llmx process of the user.
fn assert_torn_down(remote: &Remote, port: u16) {
    let here = listeners(std::process::Command::new("ss"));
    assert!(!has_port(&here, port), "a listener is left on local port {port}: {here:?}");
    assert_remote_torn_down(remote, port);
}

/// After a device tunnel, which binds no port here (its events say so; whatever else holds
/// 1455 on this machine is not ours): no listener on the remote's default port, no llmx left.
fn assert_device_torn_down(remote: &Remote) {
    assert_remote_torn_down(remote, llmx::tunnel::DEFAULT_PORT);
}

fn assert_remote_torn_down(remote: &Remote, port: u16) {
    let there = remote.ns.listeners();
    assert!(!has_port(&there, port), "a listener is left on the remote's port {port}: {there:?}");
    assert!(has_port(&there, 22), "the namespace check is blind: sshd's listener is not seen: {there:?}");
    // A process ends a moment after its channel closes (and a uid freed by an earlier test's
    // user may still own one being killed): give them up to five seconds, no more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut procs = remote.user_processes("llmx");
    while !procs.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        procs = remote.user_processes("llmx");
    }
    assert!(procs.is_empty(), "stray remote llmx processes after 5 s: {procs:?}");
}

/// The remote user's auth.json: tokens, 0600, owned by the user, in a 0700 directory.
fn assert_remote_login(remote: &Remote) -> Value {
    let json = assert_remote_tokens(remote);
    assert!(json["OPENAI_API_KEY"].as_str().is_some_and(|k| !k.is_empty()), "{json}");
    json
}

/// As [`assert_remote_login`], for a device-code login (which exchanges no API key).
fn assert_remote_tokens(remote: &Remote) -> Value {
    let path = remote.user().home.join(".llmx/auth.json");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(meta.mode() & 0o777, 0o600, "auth.json mode");
    assert_eq!((meta.uid(), meta.gid()), (remote.user().uid, remote.user().gid), "auth.json owner");
    let dir = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700, "credential dir mode");
    assert_eq!(dir.uid(), remote.user().uid, "credential dir owner");
    let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for k in ["id_token", "access_token", "refresh_token"] {
        assert!(json["tokens"][k].as_str().is_some_and(|t| t.len() > 10), "tokens.{k}: {json}");
    }
    assert_eq!(json["tokens"]["account_id"], "acc-test-0001");
    assert_eq!(json["auth_mode"], "chatgpt", "{json}");
    json
}

/// No secret of `auth` appears in `text`.
fn assert_no_secrets(auth: &Value, text: &str) {
    let t = &auth["tokens"];
    for s in [&t["id_token"], &t["access_token"], &t["refresh_token"], &auth["OPENAI_API_KEY"]] {
        let s = s.as_str().unwrap();
        assert!(!text.contains(s), "a secret leaked into the output");
    }
}

/// A remote with this build's llmx in `~/tools/llmx`, its issuer, an empty local home, and a
/// tunnel to it (`--remote-llmx ~/tools/llmx EXTRA...`) whose remote login listens.
async fn waiting_tunnel(extra: &[&str]) -> (Remote, RunningIssuer, Home, Events, Value) {
    waiting_tunnel_to(Remote::start(), extra).await
}

async fn waiting_tunnel_to(remote: Remote, extra: &[&str]) -> (Remote, RunningIssuer, Home, Events, Value) {
    let issuer = issuer_for(&remote).await;
    remote.give_binary(Path::new(LLMX), "tools/llmx");
    let local = Home::new();
    let mut args = vec!["--remote-llmx", "~/tools/llmx"];
    args.extend_from_slice(extra);
    let mut t = spawn_tunnel(&remote, &issuer.base_url(), &local, free_port(), &args);
    let started = t.wait_for("remote_started").await;
    assert_eq!(started["llmx"], format!("{}/tools/llmx", remote.user().home.display()));
    let listening = t.wait_for("listening").await;
    (remote, issuer, local, t, listening)
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_signs_the_remote_user_in_and_leaves_nothing_behind() {
    let (remote, issuer, local, t, listening) = waiting_tunnel(&[]).await;
    let port = port_of(&listening);
    let url = listening["authorize_url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&issuer.base_url()), "{url}");
    assert!(url.contains(&format!("localhost%3A{port}%2Fauth%2Fcallback")), "{url}");

    // The remote login really listens on its own loopback, and only there.
    assert!(has_port(&remote.ns.listeners(), port), "remote login not listening on {port}");

    // Several connections at once, as browsers open them: each is forwarded on its own.
    let probes = (0..6)
        .map(|i| tokio::spawn(async move { Browser::new().get(&format!("http://localhost:{port}/probe-{i}")).await }));
    for p in futures_util::future::join_all(probes).await {
        let hop = p.unwrap();
        assert_eq!(hop.status, 404, "{hop:?}");
        assert!(hop.body.contains("Not found"), "{hop:?}");
    }

    sign_in(&url).await;
    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");
    let done = last_event(&events);
    assert_eq!(done["event"], "tunnel_succeeded", "{events:?}");
    assert_eq!(done["status"]["method"], "chatgpt", "{done}");
    assert_eq!(done["status"]["email"], "dev@example.com", "{done}");
    assert_eq!(done["status"]["account_id"], "acc-test-0001", "{done}");
    assert_eq!(done["forward_failures"], 0, "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "callback_received"), "{events:?}");
    assert!(!events.iter().any(|e| e["event"] == "forward_failed" || e["event"] == "warning"), "{events:?}");

    let auth = assert_remote_login(&remote);
    assert_eq!(done["auth_file"], remote.user().home.join(".llmx/auth.json").display().to_string());
    assert_no_secrets(&auth, &format!("{events:?}{stderr}"));
    // Nothing of the login here: only the ledger, recording the machine's own sign-in (kind
    // `own`: its own lineage of this account), so `auth where` and `logout` know it.
    assert!(!local.auth_path().exists(), "the tunnel wrote a login here");
    let ledger: Value = serde_json::from_slice(&std::fs::read(local.path().join("ledger.json")).unwrap()).unwrap();
    let entry = &ledger["entries"][0];
    assert_eq!(
        (entry["kind"].as_str(), entry["account_id"].as_str()),
        (Some("own"), Some("acc-test-0001")),
        "{ledger}"
    );
    assert_eq!(entry["path"], done["auth_file"], "{ledger}");
    assert_no_secrets(&auth, &ledger.to_string());
    assert_torn_down(&remote, port);
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_without_llmx_fails_clearly_then_install_uploads_this_binary_and_works() {
    let remote = Remote::start();
    let issuer = issuer_for(&remote).await;
    let local = Home::new();
    local.write("auth.json", b"{\n  \"OPENAI_API_KEY\": \"sk-local-untouched\"\n}");
    let before = local.read_auth().unwrap();
    let port = free_port();

    let t = spawn_tunnel(&remote, &issuer.base_url(), &local, port, &[]);
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(1), "{events:?} {stderr}");
    assert_eq!(last_event(&events)["reason"], "no_remote_llmx", "{events:?}");
    assert!(stderr.contains("no llmx found"), "{stderr}");
    assert!(stderr.contains("--install") && stderr.contains("--remote-llmx"), "{stderr}");
    assert_torn_down(&remote, port);

    // --install: this build's binary goes to ~/.llmx/bin/llmx (0700, dirs 0700) and signs in.
    let mut t = spawn_tunnel(&remote, &issuer.base_url(), &local, port, &["--install"]);
    let installed = t.wait_for("installed").await;
    let bin = remote.user().home.join(".llmx/bin/llmx");
    assert_eq!(installed["path"], bin.display().to_string());
    assert_eq!(installed["unchanged"], false, "{installed}");
    let listening = t.wait_for("listening").await;
    sign_in(listening["authorize_url"].as_str().unwrap()).await;
    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "{events:?} {stderr}");
    let meta = std::fs::metadata(&bin).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o700, remote.user().uid), "installed binary");
    for d in [".llmx", ".llmx/bin"] {
        let m = std::fs::metadata(remote.user().home.join(d)).unwrap();
        assert_eq!((m.mode() & 0o777, m.uid()), (0o700, remote.user().uid), "{d}");
    }
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(LLMX).unwrap(), "uploaded bytes differ");
    let leftovers: Vec<PathBuf> =
        std::fs::read_dir(bin.parent().unwrap()).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(leftovers, vec![bin.clone()], "temp files left beside the binary");
    assert_remote_login(&remote);
    assert_torn_down(&remote, port);

    // --install again: the same binary is already there, so nothing is uploaded.
    let mtime = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let mut t = spawn_tunnel(&remote, &issuer.base_url(), &local, port, &["--install"]);
    let installed = t.wait_for("installed").await;
    assert_eq!(installed["unchanged"], true, "{installed}");
    let listening = t.wait_for("listening").await;
    sign_in(listening["authorize_url"].as_str().unwrap()).await;
    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "{events:?} {stderr}");
    assert!(!events.iter().any(|e| e["event"] == "installing"), "uploaded again: {events:?}");
    assert_eq!(std::fs::metadata(&bin).unwrap().modified().unwrap(), mtime, "the binary was rewritten");
    assert_torn_down(&remote, port);

    // Next time the installed copy is found without any flag.
    let mut t = spawn_tunnel(&remote, &issuer.base_url(), &local, port, &[]);
    let started = t.wait_for("remote_started").await;
    assert_eq!(started["llmx"], bin.display().to_string());
    let listening = t.wait_for("listening").await;
    sign_in(listening["authorize_url"].as_str().unwrap()).await;
    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "{events:?} {stderr}");
    assert_torn_down(&remote, port);
    assert_eq!(local.read_auth().unwrap(), before, "the local auth.json changed");
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_waiting_cancels_the_remote_login_and_tears_down() {
    let (remote, issuer, _local, t, listening) = waiting_tunnel(&[]).await;
    let port = port_of(&listening);
    // The remote login runs and listens, so the teardown has something to do.
    assert_eq!(remote.user_processes("llmx").len(), 1);
    assert!(has_port(&remote.ns.listeners(), port));
    let pid = t.pid().unwrap() as i32;
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(130), "{events:?} {stderr}");
    let last = last_event(&events);
    assert_eq!((last["event"].as_str(), last["reason"].as_str()), (Some("tunnel_failed"), Some("interrupted")));
    assert!(!events.iter().any(|e| e["event"] == "warning"), "teardown needed force: {events:?}");
    assert_torn_down(&remote, port);
    assert!(!remote.user().home.join(".llmx/auth.json").exists());
    assert_eq!(issuer.issuer.stats().code_exchanges, 0);
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_while_waiting_tears_down() {
    let (remote, issuer, _local, t, listening) = waiting_tunnel(&["--timeout", "1"]).await;
    let port = port_of(&listening);
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(1), "{events:?} {stderr}");
    assert_eq!(last_event(&events)["reason"], "timeout", "{events:?}");
    assert!(stderr.contains("nobody completed the sign-in within 1 s"), "{stderr}");
    assert_torn_down(&remote, port);
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_refused_by_the_host_is_reported_and_teardown_falls_back_to_killing_by_pid() {
    let remote = Remote::start_with("AllowTcpForwarding no\n");
    let (remote, issuer, _local, mut t, listening) = waiting_tunnel_to(remote, &["--timeout", "3"]).await;
    let port = port_of(&listening);
    // The browser's connection is accepted here, but the host refuses to forward it: closed.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let _ = s.write_all(b"GET /probe HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let failed = t.wait_for("forward_failed").await;
    assert!(failed["error"].as_str().unwrap().contains("prohibited"), "{failed}");
    // Teardown: /cancel cannot get through either, so the remote login is signalled by pid.
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(1), "{events:?} {stderr}");
    assert_eq!(last_event(&events)["reason"], "timeout", "{events:?}");
    assert!(events.iter().filter(|e| e["event"] == "forward_failed").count() >= 2, "the /cancel failure: {events:?}");
    assert!(!events.iter().any(|e| e["event"] == "warning"), "{events:?}");
    assert_torn_down(&remote, port);
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_local_port_is_a_clear_error_naming_it() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let local = Home::new();
    // Nothing listens on 127.0.0.1:9 for SSH: the port check must come first.
    let out = local
        .llmx(["auth", "tunnel", "--no-browser", "--port", &port.to_string(), "ssh:nobody@127.0.0.1:9"])
        .env("HOME", local.dir.path())
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("llmx: port {port} on 127.0.0.1 is already in use")), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    // The program holding the port is left alone: it still accepts.
    let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    holder.accept().unwrap();
}

/// Poll `done` for up to `limit`; whether it came true.
async fn within(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_login_dies_with_its_session_when_the_tunnel_is_killed() {
    // The tunnel process is killed outright (no teardown at all): sshd closes the session, and
    // the remote login must go with it instead of holding the callback port until its timeout.
    let (remote, issuer, _local, mut t, listening) = waiting_tunnel(&[]).await;
    let port = port_of(&listening);
    assert_eq!(remote.user_processes("llmx").len(), 1);
    t.kill().await;
    let gone = within(std::time::Duration::from_secs(10), || {
        remote.user_processes("llmx").is_empty() && !has_port(&remote.ns.listeners(), port)
    })
    .await;
    assert!(gone, "the remote login outlived its session: {:?}", remote.user_processes("llmx"));
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_on_a_dead_network_is_bounded_and_does_not_claim_a_cancellation() {
    let (remote, issuer, _local, t, _) = waiting_tunnel(&[]).await;
    // The network dies: nothing more reaches the host, and nothing says so.
    crate::support::sshd::run(std::process::Command::new("ip").args(["link", "set", &remote.ns.host_if, "down"]));
    let started = std::time::Instant::now();
    let pid = t.pid().unwrap() as i32;
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let (status, events, stderr) = t.finish().await;
    let took = started.elapsed();
    crate::support::sshd::run(std::process::Command::new("ip").args(["link", "set", &remote.ns.host_if, "up"]));
    assert!(took < std::time::Duration::from_secs(12), "teardown took {took:?}: {stderr}");
    assert_eq!(status.code(), Some(130), "{events:?} {stderr}");
    assert!(stderr.contains("could not be cancelled"), "{stderr}");
    assert!(!stderr.contains("remote login was cancelled"), "{stderr}");
    let last = last_event(&events);
    assert_eq!(last["reason"], "interrupted", "{events:?}");
    assert!(events.iter().any(|e| e["event"] == "warning"), "{events:?}");
    issuer.stop().await.unwrap();
}

/// A device-code tunnel to a remote with this build's llmx in `~/tools/llmx`, up to its code
/// (whose `elapsed_ms` is the time from starting the tunnel to it).
async fn device_tunnel(extra: &[&str]) -> (Remote, RunningIssuer, Home, Events, Value) {
    let remote = Remote::start();
    let issuer = issuer_for(&remote).await;
    remote.give_binary(Path::new(LLMX), "tools/llmx");
    let local = Home::new();
    let mut args: Vec<String> = ["--device", "--remote-llmx", "~/tools/llmx"].map(String::from).to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let started = std::time::Instant::now();
    let mut t = spawn_tunnel_with(&remote, &issuer.base_url(), &local, &args);
    t.wait_for("remote_started").await;
    let mut code = t.wait_for("device_code").await;
    code["elapsed_ms"] = (started.elapsed().as_millis() as u64).into();
    (remote, issuer, local, t, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn device_tunnel_shows_the_remote_code_here_and_signs_the_remote_in_without_a_port() {
    let (remote, issuer, local, t, code) = device_tunnel(&[]).await;
    let to_code = std::time::Duration::from_millis(code["elapsed_ms"].as_u64().unwrap());
    assert_eq!(code["verification_url"], format!("{}/codex/device", issuer.base_url()), "{code}");
    let user_code = code["user_code"].as_str().unwrap().to_string();
    assert!(!user_code.is_empty());
    // Nothing bound or forwarded: no listener of the tunnel here, none of the login there.
    assert_eq!(listeners_of(t.pid().unwrap()), Vec::<String>::new());
    assert_eq!(remote.ns.listeners().iter().filter(|l| !l.ends_with(":22")).count(), 0, "{:?}", remote.ns.listeners());

    let approved = std::time::Instant::now();
    crate::signin::decide_on_page(&issuer.base_url(), &user_code, "approve").await;
    let (status, events, stderr) = t.finish().await;
    let to_exit = approved.elapsed();
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");

    // The same login run here, for the overhead of the tunnel (printed; see the changelog).
    let here = Home::new();
    let started = std::time::Instant::now();
    let mut login =
        here.llmx(["-c", &format!("auth_issuer={}", issuer.base_url()), "login", "--device-auth", "--json"]).events();
    let c = login.expect_next("device_code").await;
    let local_to_code = started.elapsed();
    let approved = std::time::Instant::now();
    crate::signin::decide_on_page(&issuer.base_url(), c["user_code"].as_str().unwrap(), "approve").await;
    let (ok, _, _) = login.finish().await;
    assert!(ok.success());
    let local_to_exit = approved.elapsed();
    eprintln!(
        "tunnel --device over ssh: start→code {to_code:?}, approve→exit {to_exit:?}; \
         local device login: start→code {local_to_code:?}, approve→exit {local_to_exit:?}"
    );
    let done = events.last().unwrap();
    assert_eq!(done["event"], "tunnel_succeeded", "{events:?}");
    assert_eq!(done["status"]["method"], "chatgpt", "{done}");
    assert_eq!(done["status"]["email"], "dev@example.com", "{done}");
    assert!(!events.iter().any(|e| e["event"] == "bound" || e["event"] == "listening"), "{events:?}");
    let auth = assert_remote_tokens(&remote);
    assert_no_secrets_but_key(&auth, &format!("{events:?}{stderr}"));
    assert!(!local.auth_path().exists(), "the tunnel wrote a login here (only the ledger records the sign-in)");
    assert_device_torn_down(&remote);
    issuer.stop().await.unwrap();
}

/// No token of `auth` appears in `text` (a device login holds no API key).
fn assert_no_secrets_but_key(auth: &Value, text: &str) {
    let t = &auth["tokens"];
    for s in [&t["id_token"], &t["access_token"], &t["refresh_token"]] {
        assert!(!text.contains(s.as_str().unwrap()), "a secret leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_a_device_tunnel_stops_the_remote_login() {
    let (remote, issuer, _local, t, _code) = device_tunnel(&[]).await;
    assert_eq!(remote.user_processes("llmx").len(), 1);
    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(t.pid().unwrap() as i32, libc::SIGINT) }, 0);
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(130), "{events:?} {stderr}");
    assert_eq!(crate::support::harness::last_event(&events)["reason"], "interrupted", "{events:?}");
    assert!(stderr.contains("the remote login was cancelled"), "{stderr}");
    assert_device_torn_down(&remote);
    assert!(!remote.user().home.join(".llmx/auth.json").exists());
    issuer.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn device_tunnel_refuses_a_verification_page_of_another_issuer() {
    // The remote llmx is told another issuer than this side's: its page is not shown or opened.
    let remote = Remote::start();
    let issuer = issuer_for(&remote).await;
    let other = issuer_for(&remote).await;
    remote.give_binary(Path::new(LLMX), "tools/llmx");
    let local = Home::new();
    // Its own override comes last, so it wins over the one the tunnel passes.
    let script = tempfile::NamedTempFile::new().unwrap();
    let text = format!("#!/bin/sh\nexec \"$HOME/tools/llmx\" \"$@\" -c auth_issuer={}\n", other.base_url());
    std::fs::write(script.path(), text).unwrap();
    remote.give_binary(script.path(), "tools/llmx-other");
    let args: Vec<String> = ["--device", "--remote-llmx", "~/tools/llmx-other"].map(String::from).to_vec();
    let t = spawn_tunnel_with(&remote, &issuer.base_url(), &local, &args);
    let (status, events, stderr) = t.finish().await;
    assert_eq!(status.code(), Some(1), "{events:?} {stderr}");
    assert_eq!(crate::support::harness::last_event(&events)["reason"], "protocol", "{events:?}");
    assert!(stderr.contains("/codex/device"), "{stderr}");
    assert!(!events.iter().any(|e| e["event"] == "device_code"), "{events:?}");
    assert_device_torn_down(&remote);
    issuer.stop().await.unwrap();
    other.stop().await.unwrap();
}

/// Issue 20 item 4: the issuer goes where the login goes. With `auth_issuer` only in this
/// machine's config.toml (no `-c`), the remote login signs in to that issuer too.
#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_set_only_in_config_toml_is_the_remote_logins_issuer_too() {
    let remote = Remote::start();
    let issuer = issuer_for(&remote).await;
    remote.give_binary(Path::new(LLMX), "tools/llmx");
    let local = Home::new();
    local.write("config.toml", format!("auth_issuer = \"{}\"\n", issuer.base_url()).as_bytes());
    let port = free_port().to_string();
    let mut t = local
        .llmx(["auth", "tunnel", "--json", "--no-browser", "--port", &port, "--remote-llmx", "~/tools/llmx"])
        .env("HOME", remote.client_home.path())
        .args(["--connect-timeout", "10", "-i"])
        .args([&remote.key.path])
        .args([remote.spec()])
        .events();
    let listening = t.wait_for("listening").await;
    let url = listening["authorize_url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&issuer.base_url()), "the remote login uses config.toml's issuer: {url}");
    sign_in(&url).await;
    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");
    assert_eq!(last_event(&events)["event"], "tunnel_succeeded", "{events:?}");
    assert_remote_login(&remote);
    issuer.stop().await.unwrap();
}
