//! Reaching hosts the way a fleet is reached: a bastion. The bastion is a real sshd in a network
//! namespace (tests/it/support/netns.rs); the inner host is a second sshd in the same namespace
//! listening only on the namespace's own loopback, so nothing on this side can reach it except
//! through the bastion (`ProxyJump`, `-J`, or a `ProxyCommand` that runs `ssh -W` through it).
//! Needs root, iproute2, openssh-server and procps (fails loudly without them).

use crate::support::harness::Llmx;
use crate::support::netns::Remote;
use crate::support::sshd::{Sshd, SshdOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const SECRET: &str = "sk-reach-secret-0123456789abcdefgh";

/// A bastion (sshd on the namespace's veth address) and an inner host behind it, both trusting
/// the client's key; the client's known_hosts has both host keys and a config naming them.
struct Fleet {
    bastion: Remote,
    inner: Sshd,
    /// This side's 127.0.0.1 at the inner host's port: what a direct connection would reach.
    decoy: Decoy,
}

/// A listener on this side's 127.0.0.1, on a port the OS chose free here; the inner sshd listens
/// on the same port on the namespace's loopback. A connection that went straight to
/// 127.0.0.1:PORT here instead of through the bastion lands on the decoy, which counts it and
/// closes it. So no fixed port (such as 2222, a common dev sshd port) needs to be free on the
/// machine, and "not reached directly" is seen, not inferred from an empty port.
struct Decoy {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Decoy {
    fn start() -> Decoy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hits, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Decoy { port, hits, stop }
    }

    /// Connections that reached this side's 127.0.0.1:PORT so far.
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Fleet {
    fn start() -> Fleet {
        Fleet::start_many(1, 1)
    }

    /// Push to every inner user (`push_args` then `specs`), expecting success and every file
    /// written; what the bastion's sshd logged meanwhile.
    fn push_all_and_bastion_log(&self, push_args: &[&str], specs: &[String]) -> String {
        let mut args = push_args.to_vec();
        args.extend(specs.iter().map(String::as_str));
        let before = self.bastion.sshd.log().len();
        let (code, out, err) = self.llmx(&args);
        assert_eq!(code, 0, "{out}\n{err}");
        for u in &self.inner.users {
            assert!(u.home.join(".llmx/auth.json").exists(), "{}", u.name);
        }
        self.bastion.sshd.log()[before..].to_string()
    }

    /// With `bastion_users` users on the bastion (the client key authorized for the first) and
    /// `inner_users` on the inner host (the client key authorized for all).
    fn start_many(bastion_users: usize, inner_users: usize) -> Fleet {
        let bastion = Remote::start_opts(SshdOptions { users: bastion_users, ..SshdOptions::default() }, "");
        let decoy = Decoy::start();
        let inner = Sshd::start_in_netns_on(
            SshdOptions { users: inner_users, ..SshdOptions::default() },
            &bastion.ns.name,
            [127, 0, 0, 1].into(),
            decoy.port,
        );
        for u in &inner.users {
            u.authorize(&bastion.key.public);
        }
        let mut kh = std::fs::read_to_string(fleet_kh(&bastion)).unwrap();
        kh.push_str(&inner.known_hosts_line());
        std::fs::write(fleet_kh(&bastion), kh).unwrap();
        Fleet { bastion, inner, decoy }
    }

    /// The inner host's port (on the namespace's loopback; the decoy's here).
    fn port(&self) -> u16 {
        self.decoy.port
    }

    fn home(&self) -> &Path {
        self.bastion.client_home.path()
    }

    fn write_config(&self, extra: &str) {
        let conf = format!(
            "Host bastion\n  HostName {ns}\n  User {buser}\n\nHost inner\n  HostName 127.0.0.1\n  Port {port}\n  \
             User {iuser}\n{extra}\n",
            port = self.port(),
            ns = self.bastion.ns.ns_ip,
            buser = self.bastion.user().name,
            iuser = self.inner.user().name,
        );
        std::fs::write(self.home().join(".ssh/config"), conf).unwrap();
    }

    /// `llmx ARGS` as the client: HOME its temp home, LLMX_HOME inside it, no agent.
    fn llmx(&self, args: &[&str]) -> (i32, String, String) {
        let out = Llmx::new(args)
            .env("HOME", self.home())
            .env("LLMX_HOME", self.home().join(".llmx"))
            .stdin(if args.contains(&"--with-api-key") { format!("{SECRET}\n") } else { String::new() })
            .run_blocking();
        let (so, se) = (out.stdout, out.stderr);
        assert!(!so.contains(SECRET) && !se.contains(SECRET), "secret leaked by {args:?}:\n{so}\n{se}");
        (out.status.code().unwrap_or(-1), so, se)
    }

    fn login(&self) {
        let (code, _, err) = self.llmx(&["login", "--with-api-key"]);
        assert_eq!(code, 0, "{err}");
    }

    fn inner_auth(&self) -> std::path::PathBuf {
        self.inner.user().home.join(".llmx/auth.json")
    }

    /// The inner sshd accepted our key from the namespace's loopback: the connection came out of
    /// the bastion, never straight from this side (the decoy here saw none).
    fn assert_inner_reached_through_bastion(&self) {
        assert_eq!(self.decoy.hits(), 0, "a connection went straight to 127.0.0.1:{} here", self.port());
        let log = self.inner.log();
        let from = format!("Accepted publickey for {} from 127.0.0.1 port", self.inner.user().name);
        assert!(log.contains(&from), "inner sshd log:\n{log}");
        let blog = self.bastion.sshd.log();
        assert!(blog.contains(&format!("Accepted publickey for {}", self.bastion.user().name)), "{blog}");
    }
}

fn fleet_kh(r: &Remote) -> std::path::PathBuf {
    r.client_home.path().join(".ssh/known_hosts")
}

#[test]
fn proxy_jump_in_ssh_config_reaches_a_bastion_only_host_for_push_and_status() {
    let f = Fleet::start();
    f.write_config("  ProxyJump bastion");
    f.login();
    let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created"), "{out}");
    assert_eq!(std::fs::read(f.inner_auth()).unwrap(), std::fs::read(f.home().join(".llmx/auth.json")).unwrap());
    f.assert_inner_reached_through_bastion();

    let (code, out, err) = f.llmx(&["auth", "status", "ssh:inner"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("API key") && out.contains(&format!("/home/{}/.llmx", f.inner.user().name)), "{out}");

    // --explain shows the route and the files, and connects nowhere.
    let (code, out, err) = f.llmx(&["auth", "push", "--explain", "ssh:inner"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hostname: 127.0.0.1") && out.contains(&format!("port: {}", f.port())), "{out}");
    assert!(out.contains("via: bastion") && out.contains(&format!("hostname: {}", f.bastion.ns.ns_ip)), "{out}");
    assert!(out.contains(&format!("known_hosts: {}", fleet_kh(&f.bastion).display())), "{out}");
}

#[test]
fn dash_j_goes_through_the_jump_host_like_ssh_dash_j_and_none_goes_direct() {
    let f = Fleet::start();
    f.write_config("");
    f.login();
    let spec = format!("ssh://{}@127.0.0.1:{}", f.inner.user().name, f.port());
    let jump = format!("{}@{}", f.bastion.user().name, f.bastion.ns.ns_ip);
    let (code, out, err) = f.llmx(&["auth", "push", "-J", &jump, &spec]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(f.inner_auth().exists());
    f.assert_inner_reached_through_bastion();

    // `-J none` overrides a ProxyJump of the config: the host is then tried directly (the decoy
    // here answers and hangs up) and fails.
    f.write_config("  ProxyJump bastion");
    let (code, out, err) = f.llmx(&["auth", "status", "-J", "none", "--connect-timeout", "3", "ssh:inner"]);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(f.decoy.hits() > 0, "-J none did not go direct: {out}{err}");
    assert!(format!("{out}{err}").contains(&format!("127.0.0.1]:{}", f.port())), "{out}{err}");
}

/// Issue 20 item 1: the route is part of the place. Without it, `where`/`sync` called a `-J`
/// holder unreachable on every run and a cron'd sync exited 1 forever.
#[test]
fn a_dash_j_push_is_recorded_with_its_jump_and_where_sync_and_remove_reach_the_holder_that_way() {
    let f = Fleet::start();
    f.write_config("");
    let c = crate::support::docker::creds("acc-1", "route");
    let owner = crate::support::docker::chatgpt_auth(&c, "acc-1", "2025-01-01T00:00:00Z");
    std::fs::create_dir_all(f.home().join(".llmx")).unwrap();
    std::fs::write(f.home().join(".llmx/auth.json"), &owner).unwrap();
    let spec = format!("ssh://{}@127.0.0.1:{}", f.inner.user().name, f.port());
    let jump = format!("{}@{}", f.bastion.user().name, f.bastion.ns.ns_ip);
    let (code, out, err) = f.llmx(&["auth", "push", "-J", &jump, &spec]);
    assert_eq!(code, 0, "{out}\n{err}");
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.home().join(".llmx/ledger.json")).unwrap()).unwrap();
    assert_eq!(ledger["entries"][0]["route"]["jump"], jump.as_str(), "{ledger}");

    // No -J now: every family command reaches it through the recorded jump host.
    let (code, out, err) = f.llmx(&["auth", "where"]);
    assert_eq!(code, 0, "reachable the way it was pushed: {out}\n{err}");
    assert!(out.contains("lease") && out.contains("same"), "{out}");
    let (code, out, err) = f.llmx(&["auth", "sync", "--renew-within", "30m"]);
    assert_eq!(code, 0, "a cron'd sync succeeds: {out}\n{err}");
    // A -J given to `where` applies to the targets named with it, not to the ledger's holders.
    let (code, out, err) = f.llmx(&["auth", "where", "-J", "none", "--connect-timeout", "3"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = f.llmx(&["auth", "remove", &spec]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("removed"), "{out}");
    assert!(!f.inner_auth().exists());
    for text in [&out, &err] {
        assert!(!text.contains(&c.refresh_token) && !text.contains(&c.access_token));
    }
}

#[test]
fn proxy_command_speaks_ssh_over_the_stdio_of_ssh_dash_w() {
    let f = Fleet::start();
    let ssh_w = format!(
        "  ProxyCommand ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile={kh} -i {key} -W %h:%p {buser}@{ns}",
        kh = fleet_kh(&f.bastion).display(),
        key = f.bastion.key.path.display(),
        buser = f.bastion.user().name,
        ns = f.bastion.ns.ns_ip,
    );
    f.write_config(&ssh_w);
    f.login();
    let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(f.inner_auth().exists());
    f.assert_inner_reached_through_bastion();
}

#[test]
fn a_changed_key_on_the_second_hop_is_refused_also_with_strict_checking_off() {
    let f = Fleet::start();
    // Replace the inner host's recorded key with another one (a different key of the same type).
    let other = crate::support::sshd::Key::generate(&f.home().join("other"), "fake_host", "");
    let fake: String = other.public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let kh = std::fs::read_to_string(fleet_kh(&f.bastion)).unwrap();
    let kh = kh.replace(&f.inner.host_key, &fake);
    std::fs::write(fleet_kh(&f.bastion), kh).unwrap();
    f.write_config("  ProxyJump bastion\n  StrictHostKeyChecking no");
    f.login();
    let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner", "--accept-new"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let all = format!("{out}{err}");
    assert!(all.contains(&format!("REMOTE HOST IDENTIFICATION HAS CHANGED for [127.0.0.1]:{}", f.port())), "{all}");
    assert!(!f.inner_auth().exists());
    assert!(!f.inner.log().contains("Accepted publickey"), "authenticated to a host with a changed key");
}

#[test]
fn unknown_second_hop_is_checked_under_its_own_name_and_host_key_alias() {
    let f = Fleet::start();
    // Only the bastion is known; the inner host is recorded under its HostKeyAlias on accept-new.
    let kh = std::fs::read_to_string(fleet_kh(&f.bastion)).unwrap();
    std::fs::write(fleet_kh(&f.bastion), kh.replace(&f.inner.known_hosts_line(), "")).unwrap();
    f.write_config("  ProxyJump bastion\n  HostKeyAlias inner.internal\n  UserKnownHostsFile ~/.ssh/kh_inner");
    f.login();
    let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(format!("{out}{err}").contains("host key for inner.internal is not known"), "{out}{err}");
    f.write_config(
        "  ProxyJump bastion\n  HostKeyAlias inner.internal\n  UserKnownHostsFile ~/.ssh/kh_inner\n  \
         StrictHostKeyChecking accept-new",
    );
    let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let recorded = std::fs::read_to_string(f.home().join(".ssh/kh_inner")).unwrap();
    assert!(recorded.starts_with("inner.internal ") && recorded.contains(&f.inner.host_key), "{recorded}");
}

#[test]
fn routing_directives_llmx_cannot_honour_are_errors_naming_them() {
    let f = Fleet::start();
    f.login();
    for (line, name) in [
        ("  Match exec \"true\"", "Match exec is not supported"),
        ("  CertificateFile ~/.ssh/id-cert.pub", "CertificateFile is not supported"),
        ("  BindAddress 10.0.0.1", "BindAddress is not supported"),
    ] {
        f.write_config(&format!("  ProxyJump bastion\nHost inner\n{line}"));
        let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner"]);
        assert_ne!(code, 0, "{out}\n{err}");
        let all = format!("{out}{err}");
        assert!(all.contains(name) && all.contains(".ssh/config: line"), "{line}: {all}");
        assert!(!f.inner_auth().exists());
        assert!(!f.inner.log().contains("Accepted publickey"), "connected despite {line}");
    }
}

#[test]
fn include_files_are_read_relative_to_dot_ssh() {
    let f = Fleet::start();
    f.write_config("");
    let conf = std::fs::read_to_string(f.home().join(".ssh/config")).unwrap();
    std::fs::create_dir_all(f.home().join(".ssh/conf.d")).unwrap();
    std::fs::write(f.home().join(".ssh/conf.d/inner.conf"), "Host inner\n  ProxyJump bastion\n").unwrap();
    std::fs::write(f.home().join(".ssh/config"), format!("Include conf.d/*.conf\n{conf}")).unwrap();
    f.login();
    let (code, out, err) = f.llmx(&["auth", "push", "ssh:inner"]);
    assert_eq!(code, 0, "{out}\n{err}");
    f.assert_inner_reached_through_bastion();
}

#[test]
fn the_system_ssh_config_is_read_after_the_users_as_openssh_reads_it() {
    // The route to the inner host is only in the system-wide file (a site's /etc/ssh/ssh_config):
    // without it llmx would go direct and fail; with it, through the bastion.
    let f = Fleet::start();
    f.write_config("");
    f.login();
    let system = f.home().join("etc-ssh_config");
    std::fs::write(&system, "Host inner\n  ProxyJump bastion\n  Port 1\n").unwrap();
    let run = |system: &Path| {
        Llmx::new(["auth", "push", "ssh:inner", "--connect-timeout", "3"])
            .env("HOME", f.home())
            .env("LLMX_HOME", f.home().join(".llmx"))
            .env("LLMX_SSH_SYSTEM_CONFIG", system)
            .run_blocking()
    };
    let direct = run(Path::new(""));
    assert_ne!(direct.status.code(), Some(0), "reached without the bastion: {}", direct.stdout);
    assert!(f.decoy.hits() > 0, "without the system file it did not go direct: {}", direct.stderr);
    let before = f.decoy.hits();
    let out = run(&system);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    // The user's `Port` came first and won over the system file's `Port 1`; nothing went direct.
    assert_eq!(f.decoy.hits(), before, "went direct with the system file");
    assert!(f.inner.log().contains("Accepted publickey"), "{}", f.inner.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_signs_in_a_host_behind_the_bastion_through_the_jump_chain() {
    use crate::support::harness::{LLMX, free_port};
    use crate::support::login::{Browser, Home};
    use std::os::unix::fs::PermissionsExt;
    let f = Fleet::start();
    f.write_config("  ProxyJump bastion");
    // The issuer on this side's veth address: the inner host (in the namespace) reaches it.
    let listener = tokio::net::TcpListener::bind((f.bastion.ns.host_ip, 0)).await.unwrap();
    let issuer = llmx_test_issuer::Issuer::new(llmx_test_issuer::IssuerConfig::default()).spawn(listener).unwrap();
    let user = f.inner.user();
    let tools = user.home.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    user.chown(&tools);
    std::fs::copy(LLMX, tools.join("llmx")).unwrap();
    std::fs::set_permissions(tools.join("llmx"), std::fs::Permissions::from_mode(0o755)).unwrap();
    user.chown(&tools.join("llmx"));

    let local = Home::new();
    let port = free_port();
    let mut t = local
        .llmx(["-c", &format!("auth_issuer={}", issuer.base_url()), "auth", "tunnel", "--json", "--no-browser"])
        .env("HOME", f.home())
        .args(["--port", &port.to_string(), "--connect-timeout", "10", "--remote-llmx", "~/tools/llmx", "inner"])
        .events();
    let listening = t.wait_for("listening").await;
    let url = listening["authorize_url"].as_str().unwrap().to_string();
    let hops = Browser::new().follow(&url).await;
    let last = hops.last().unwrap();
    assert!(last.status == 200 && last.url.ends_with("/success"), "{hops:?}");
    let (status, events, stderr) = t.finish().await;
    assert!(status.success(), "exit {status:?}; events {events:?}; stderr {stderr}");
    assert_eq!(events.last().unwrap()["event"], "tunnel_succeeded", "{events:?}");
    let auth: serde_json::Value = serde_json::from_slice(&std::fs::read(f.inner_auth()).unwrap()).unwrap();
    assert_eq!(auth["tokens"]["account_id"], "acc-test-0001");
    f.assert_inner_reached_through_bastion();
}

/// `ssh:USER@inner` for every user of the inner host.
fn inner_specs(f: &Fleet) -> Vec<String> {
    f.inner.users.iter().map(|u| format!("ssh:{}@inner", u.name)).collect()
}

/// Lines of `log` that say `what` (sshd writes one line per event).
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// The JSON line of each target of a `--json` push or status, in the order given.
fn per_target(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("target").is_some())
        .collect()
}

/// Six hosts behind one bastion in one push: the bastion sees ONE connection and ONE login (the
/// jump host's session is shared), the inner host six, and every file is written and read back.
/// (Before sharing: six bastion logins per push.) The side-by-side timing against `ssh -J` lives
/// in scripts/bench-bastion.
#[test]
fn hosts_behind_one_bastion_share_one_bastion_connection_in_one_push_and_status() {
    let f = Fleet::start_many(1, 6);
    f.write_config("  ProxyJump bastion");
    f.login();
    let specs = inner_specs(&f);
    let mut args = vec!["auth", "push", "--jobs", "6"];
    args.extend(specs.iter().map(String::as_str));
    // From here on (sshd's log also holds the harness's readiness probe).
    let before = f.bastion.sshd.log().len();
    let t0 = std::time::Instant::now();
    let (code, out, err) = f.llmx(&args);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created"), "{out}");
    let local = std::fs::read(f.home().join(".llmx/auth.json")).unwrap();
    for u in &f.inner.users {
        assert_eq!(std::fs::read(u.home.join(".llmx/auth.json")).unwrap(), local, "{}", u.name);
    }
    let (blog, ilog) = (f.bastion.sshd.log()[before..].to_string(), f.inner.log());
    let bastion_user = &f.bastion.user().name;
    assert_eq!(count(&blog, &format!("Accepted publickey for {bastion_user}")), 1, "bastion sshd log:\n{blog}");
    assert_eq!(count(&blog, "Connection from"), 1, "bastion sshd log:\n{blog}");
    assert_eq!(count(&ilog, "Accepted publickey for"), 6, "inner sshd log:\n{ilog}");

    // Read back, all six through the bastion again: one more bastion login for the run.
    let mut args = vec!["auth", "status", "--json"];
    args.extend(specs.iter().map(String::as_str));
    let (code, out, err) = f.llmx(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    let reports = per_target(&out);
    assert_eq!(reports.len(), 6, "{out}");
    for (r, u) in reports.iter().zip(&f.inner.users) {
        assert!(r.to_string().contains(&format!("/home/{}/.llmx/auth.json", u.name)), "{r}");
    }
    let blog = f.bastion.sshd.log()[before..].to_string();
    assert_eq!(count(&blog, &format!("Accepted publickey for {bastion_user}")), 2, "bastion sshd log:\n{blog}");
    eprintln!("6 hosts behind one bastion: llmx auth push {} ms, 1 bastion login", took.as_millis());
}

/// Two users of one bastion host, each with its own key, are two sessions: sharing goes by all
/// that makes a session (user, keys, ...), never by the host alone.
/// Two users of the bastion host, the second with a key of its own (id_second): `Host bastion-a`
/// and `bastion-b` in the config, and `inner-a` / `inner-b` behind each.
fn two_bastion_users(f: &Fleet) {
    let second = crate::support::sshd::Key::generate(&f.home().join(".ssh"), "id_second", "");
    f.bastion.sshd.users[1].authorize(&second.public);
    let (ua, ub) = (&f.bastion.sshd.users[0].name, &f.bastion.sshd.users[1].name);
    let conf = format!(
        "Host bastion-a\n  HostName {ns}\n  User {ua}\n\nHost bastion-b\n  HostName {ns}\n  User {ub}\n  IdentityFile \
         {key}\n\nHost inner-a\n  HostName 127.0.0.1\n  Port {port}\n  ProxyJump bastion-a\n\nHost inner-b\n  \
         HostName 127.0.0.1\n  Port {port}\n  ProxyJump bastion-b\n",
        ns = f.bastion.ns.ns_ip,
        key = second.path.display(),
        port = f.port(),
    );
    std::fs::write(f.home().join(".ssh/config"), conf).unwrap();
}

/// Two users of one bastion host, each with its own key, are two sessions: sharing goes by all
/// that makes a session (user, keys, ...), never by the host alone.
#[test]
fn two_bastion_users_with_their_own_keys_are_two_connections_not_one() {
    let f = Fleet::start_many(2, 4);
    two_bastion_users(&f);
    let (ua, ub) = (&f.bastion.sshd.users[0].name, &f.bastion.sshd.users[1].name);
    f.login();
    let specs: Vec<String> = f
        .inner
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| format!("ssh:{}@inner-{}", u.name, if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    let blog = f.push_all_and_bastion_log(&["auth", "push"], &specs);
    assert_eq!(count(&blog, &format!("Accepted publickey for {ua} ")), 1, "bastion sshd log:\n{blog}");
    assert_eq!(count(&blog, &format!("Accepted publickey for {ub} ")), 1, "bastion sshd log:\n{blog}");
    assert_eq!(count(&blog, "Connection from"), 2, "bastion sshd log:\n{blog}");
    assert_eq!(count(&f.inner.log(), "Accepted publickey for"), 4, "{}", f.inner.log());
}

/// A bastion that cannot be trusted (unknown host key) or refuses the login fails every target
/// behind it with the same one line, from one attempt, and nothing is written anywhere.
#[test]
fn a_refusing_bastion_fails_every_target_behind_it_with_the_same_line_from_one_attempt() {
    let f = Fleet::start_many(1, 4);
    f.write_config("  ProxyJump bastion");
    f.login();
    let specs = inner_specs(&f);
    let kh = std::fs::read_to_string(fleet_kh(&f.bastion)).unwrap();
    let ns = f.bastion.ns.ns_ip.to_string();
    let without_bastion: String = kh.lines().filter(|l| !l.starts_with(&ns)).map(|l| format!("{l}\n")).collect();
    assert_ne!(without_bastion, kh, "the bastion's known_hosts line: {kh}");
    let wrong = crate::support::sshd::Key::generate(&f.home().join("wrong"), "id_wrong", "");
    let wrong_key = format!("  IdentityFile {}", wrong.path.display());
    let cases = [
        (without_bastion.clone(), String::new(), format!("host key for {ns} is not known")),
        (kh.clone(), wrong_key, format!("permission denied for {}@{ns}", f.bastion.user().name)),
    ];
    for (known, bastion_extra, expected) in cases {
        std::fs::write(fleet_kh(&f.bastion), &known).unwrap();
        // The inner host keeps the client's usual key; only the bastion's differs.
        f.write_config(&format!("  ProxyJump bastion\nHost bastion\n{bastion_extra}\n  IdentitiesOnly yes"));
        let before = f.bastion.sshd.log().len();
        let mut args = vec!["auth", "push", "--json"];
        args.extend(specs.iter().map(String::as_str));
        let (code, out, err) = f.llmx(&args);
        assert_eq!(code, 1, "{out}\n{err}");
        let reports = per_target(&out);
        assert_eq!(reports.len(), 4, "{out}");
        let reasons: Vec<&str> = reports.iter().map(|r| r["reason"].as_str().unwrap_or_default()).collect();
        assert!(reasons.iter().all(|r| r.contains(&expected) && !r.contains('\n')), "{expected}: {reasons:?}");
        assert!(reasons.windows(2).all(|w| w[0] == w[1]), "different errors: {reasons:?}");
        let blog = f.bastion.sshd.log()[before..].to_string();
        assert_eq!(count(&blog, "Connection from"), 1, "{expected}: bastion sshd log:\n{blog}");
        for u in &f.inner.users {
            assert!(!u.home.join(".llmx").exists(), "{}", u.name);
        }
        assert!(!f.inner.log().contains("Accepted publickey"), "reached the inner host:\n{}", f.inner.log());
    }
}

/// `-J a,b`: each hop level is shared by its own key. Three hosts behind the chain cost one login
/// to the first hop (from this side) and one to the second (made through the first, so from the
/// namespace's own address), not three of each.
#[test]
fn a_two_hop_chain_shares_each_hop_by_its_own_key() {
    let f = Fleet::start_many(2, 3);
    two_bastion_users(&f);
    f.login();
    let (ua, ub) = (&f.bastion.sshd.users[0].name, &f.bastion.sshd.users[1].name);
    let specs: Vec<String> = f.inner.users.iter().map(|u| format!("ssh://{}@127.0.0.1:{}", u.name, f.port())).collect();
    let blog = f.push_all_and_bastion_log(&["auth", "push", "-J", "bastion-a,bastion-b"], &specs);
    let (host_ip, ns_ip) = (f.bastion.ns.host_ip, f.bastion.ns.ns_ip);
    assert_eq!(count(&blog, &format!("Accepted publickey for {ua} from {host_ip} ")), 1, "{blog}");
    assert_eq!(count(&blog, &format!("Accepted publickey for {ub} from {ns_ip} ")), 1, "{blog}");
    assert_eq!(count(&blog, "Accepted publickey"), 2, "{blog}");
    assert_eq!(count(&f.inner.log(), "Accepted publickey for"), 3, "{}", f.inner.log());
}
