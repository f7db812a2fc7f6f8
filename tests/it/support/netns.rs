//! A second host with its own loopback, for the tunnel tests (TESTBED.md): a network namespace
//! made by the test (unique name, a veth pair on a /30 in 10.x that the test checked is unused),
//! an OpenSSH `sshd` inside it listening on the namespace's veth address, and a dedicated non-root
//! user. The namespace's 127.0.0.1 is not this machine's, so a port held there is not held here.
//!
//! Guards clean up on success and on failure, in order: every process inside the namespace
//! (killed by the pids `ip netns pids` lists: sshd, its sessions, a remote llmx), the user
//! (`userdel -r`), then the veth pair and the namespace. Needs root, iproute2, openssh-server and
//! procps; without them the tests fail with the reason, they never skip.

use super::sshd::{Key, Sshd, SshdOptions, User, require_sshd, run};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Fail loudly unless root, sshd, ip, ss and pgrep are all there.
pub fn require_netns() {
    require_sshd();
    for bin in ["/usr/sbin/ip", "/usr/bin/ss", "/usr/bin/pgrep"] {
        if !Path::new(bin).exists() {
            panic!("{bin} is missing: apt-get install -y iproute2 procps");
        }
    }
}

/// A network namespace joined to this machine by a veth pair: `host_ip` here, `ns_ip` there.
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

impl Netns {
    pub fn create() -> Netns {
        Netns::make(None)
    }

    /// The network namespace of process `pid` (a container's, run with `--network none`), named
    /// for `ip -n` by `ip netns attach` and joined to this machine the same way. Dropping it
    /// kills what runs in it: the container's processes.
    pub fn of_process(pid: u32) -> Netns {
        Netns::make(Some(pid))
    }

    fn make(attach: Option<u32>) -> Netns {
        require_netns();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("llmxt-{pid}-{n}");
        let host_if = format!("lxt{}h{n}", pid % 10_000_000);
        let peer_if = format!("lxt{}r{n}", pid % 10_000_000);
        let (host_ip, ns_ip) = free_subnet(pid, n);
        // From here on the guard removes whatever was made, even if a later step fails.
        let ns = Netns { name, host_if, host_ip, ns_ip };
        match attach {
            Some(p) => run(Command::new("ip").args(["netns", "attach", &ns.name, &p.to_string()])),
            None => run(Command::new("ip").args(["netns", "add", &ns.name])),
        };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        run(Command::new("ip").args([
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            &ns.name,
        ]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if]));
        run(Command::new("ip").args(["link", "set", &ns.host_if, "up"]));
        run(Command::new("ip").args(["-n", &ns.name, "addr", "add", &format!("{ns_ip}/30"), "dev", &peer_if]));
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", &peer_if, "up"]));
        ns
    }

    /// `ip netns exec NAME PROGRAM`.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Pids of every process inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip").args(["netns", "pids", &self.name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }

    /// Local addresses of the TCP listeners inside the namespace.
    pub fn listeners(&self) -> Vec<String> {
        listeners(self.command("ss"))
    }

    /// `f()` run on a thread that joined this namespace's network: sockets it makes live there
    /// (a socket keeps its namespace for life, so a listener bound there stays there).
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on this (fresh, soon-ended) thread only, with a namespace fd we opened.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns {path}");
            f()
        })
        .join()
        .unwrap()
    }

    /// A listener on the namespace's 127.0.0.1:`port` (a port "held by another program" there).
    pub fn hold(&self, port: u16) -> std::net::TcpListener {
        self.within(move || std::net::TcpListener::bind(("127.0.0.1", port)).unwrap())
    }

    /// `GET path_and_query` from the namespace's 127.0.0.1:`port`, as a browser there would:
    /// the status, the `Location` header, and the whole reply (for messages).
    pub fn http_get(&self, port: u16, path_and_query: &str) -> (u16, Option<String>, String) {
        let request = format!("GET {path_and_query} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
        let reply = self.within(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut reply = String::new();
            if let Err(e) = s.read_to_string(&mut reply) {
                reply.push_str(&format!("(read failed: {e})"));
            }
            reply
        });
        let status = reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let location = reply
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")))
            .map(|(_, v)| v.trim().to_string());
        (status, location, reply)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all(self);
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

fn kill_all(ns: &Netns) {
    for _ in 0..50 {
        let pids = ns.pids();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            // SAFETY: kill with a pid that lives in the namespace this test made.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A /30 in 10.0.0.0/8 that no interface here uses: derived from the pid and a counter, skipping
/// any /24 that already has an address on this machine.
fn free_subnet(pid: u32, n: usize) -> (Ipv4Addr, Ipv4Addr) {
    let used = run(Command::new("ip").args(["-4", "-o", "addr", "show"]));
    for i in 0..1000u32 {
        let k = pid.wrapping_mul(7919).wrapping_add(n as u32 * 131 + i * 17);
        let (b, c) = (100 + (k % 120) as u8, ((k / 120) % 256) as u8);
        let prefix = format!(" 10.{b}.{c}.");
        if !used.contains(&prefix) {
            return (Ipv4Addr::new(10, b, c, 1), Ipv4Addr::new(10, b, c, 2));
        }
    }
    panic!("no unused 10.x.y.0/30 found");
}

/// `ss -ltnH` (run by `cmd`): the local address:port of each listener.
pub fn listeners(mut cmd: Command) -> Vec<String> {
    let out = run(cmd.arg("-ltnH"));
    out.lines().filter_map(|l| l.split_whitespace().nth(3).map(str::to_string)).collect()
}

/// Whether any of `listeners` is on `port`.
pub fn has_port(listeners: &[String], port: u16) -> bool {
    listeners.iter().any(|l| l.ends_with(&format!(":{port}")))
}

/// The remote host: a namespace with sshd on `ns_ip:22` and one user, and a client identity (a
/// temp HOME with `.ssh/id_ed25519` and a known_hosts line for this sshd). Dropping it kills every
/// process in the namespace, then sshd's guard removes the user, then the namespace goes.
pub struct Remote {
    pub sshd: Sshd,
    pub client_home: tempfile::TempDir,
    pub key: Key,
    pub ns: Netns,
}

impl Remote {
    pub fn start() -> Remote {
        Remote::start_with("")
    }

    /// With `sshd_config` lines added to sshd's config.
    pub fn start_with(sshd_config: &str) -> Remote {
        Remote::start_opts(SshdOptions::default(), sshd_config)
    }

    /// With these sshd options (several users: the client key is authorized for the first one
    /// only) and `sshd_config` lines.
    pub fn start_opts(opts: SshdOptions, sshd_config: &str) -> Remote {
        let ns = Netns::create();
        let sshd = Sshd::start_in_netns(opts, &ns.name, ns.ns_ip.into(), sshd_config);
        let client_home = tempfile::tempdir().unwrap();
        let key = Key::generate(&client_home.path().join(".ssh"), "id_ed25519", "");
        sshd.user().authorize(&key.public);
        std::fs::write(client_home.path().join(".ssh/known_hosts"), sshd.known_hosts_line()).unwrap();
        Remote { sshd, client_home, key, ns }
    }

    pub fn user(&self) -> &User {
        self.sshd.user()
    }

    /// `ssh:USER@NS_IP:22`.
    pub fn spec(&self) -> String {
        self.sshd.spec(self.user())
    }

    /// Copy `bin` into the user's home at `rel` (owned by the user, 0755).
    pub fn give_binary(&self, bin: &Path, rel: &str) -> PathBuf {
        let user = self.user();
        let dest = user.home.join(rel);
        let parent = dest.parent().unwrap();
        std::fs::create_dir_all(parent).unwrap();
        user.chown(parent);
        std::fs::copy(bin, &dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
        user.chown(&dest);
        dest
    }

    /// Pids of the user's processes named exactly `name`.
    pub fn user_processes(&self, name: &str) -> Vec<String> {
        let out = Command::new("pgrep").args(["-u", &self.user().name, "-x", name]).output().unwrap();
        // Only those in this namespace: a uid freed by an earlier test's user (and given to this
        // one) may still own a process of that test being killed.
        let here = self.ns.pids();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|p| p.parse::<i32>().is_ok_and(|p| here.contains(&p)))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // sshd, its sessions and anything they started: all inside the namespace.
        kill_all(&self.ns);
    }
}
