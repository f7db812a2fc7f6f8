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
    local
        .llmx(["-c", &format!("auth_issuer={issuer}"), "auth", "tunnel", "--json", "--no-browser"])
        .env("HOME", remote.client_home.path())
        .args(["--port", &port.to_string(), "--connect-timeout", "10", "-i"])
        .args([&remote.key.path])
        .args([remote.spec()])
        .args(extra)
        .events()
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
    let there = remote.ns.listeners();
    assert!(!has_port(&there, port), "a listener is left on the remote's port {port}: {there:?}");
    assert!(has_port(&there, 22), "the namespace check is blind: sshd's listener is not seen: {there:?}");
    let procs = remote.user_processes("llmx");
    assert!(procs.is_empty(), "stray remote llmx processes: {procs:?}");
}

/// The remote user's auth.json: tokens, 0600, owned by the user, in a 0700 directory.
fn assert_remote_login(remote: &Remote) -> Value {
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
    assert!(json["OPENAI_API_KEY"].as_str().is_some_and(|k| !k.is_empty()), "{json}");
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
    assert!(!local.path().exists(), "the tunnel touched the local llmx home");
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
