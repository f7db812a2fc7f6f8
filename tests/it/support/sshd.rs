//! A real OpenSSH `sshd` for tests (TESTBED.md): its own host key and config in a temp dir, on a
//! free 127.0.0.1 port, `UsePAM no`, logging in as dedicated non-root users created with
//! `useradd -m` (unique names, removed with `userdel -r` when the guard drops). Needs root and
//! the openssh-server package: without them the test fails with the reason, it never skips.

use super::harness::free_port;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// useradd/userdel lock /etc/passwd and fail rather than wait: one at a time in this process.
static PASSWD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fail loudly unless we are root and sshd is installed.
pub fn require_sshd() {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "the SSH tests need root (they create users with useradd and run sshd); run them as root (scripts/test)"
        );
    }
    for bin in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/ssh-agent", "/usr/bin/ssh-add", "/usr/sbin/useradd"]
    {
        if !Path::new(bin).exists() {
            panic!("{bin} is missing: apt-get install -y openssh-server openssh-client passwd");
        }
    }
    std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
}

/// A local login made by `useradd -m`.
pub struct User {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    pub fn create() -> User {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("llmxt{}x{n}", std::process::id());
        let _g = PASSWD.lock().unwrap_or_else(|e| e.into_inner());
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]));
        // useradd leaves the account locked, and sshd without PAM refuses a locked account.
        run(Command::new("usermod").args(["-p", "*", &name]));
        let uid = run(Command::new("id").args(["-u", &name])).trim().parse().unwrap();
        let gid = run(Command::new("id").args(["-g", &name])).trim().parse().unwrap();
        User { home: PathBuf::from(format!("/home/{name}")), name, uid, gid }
    }

    /// Put `pubkey` in the user's ~/.ssh/authorized_keys (owned by the user, as sshd's
    /// StrictModes wants).
    pub fn authorize(&self, pubkey: &str) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let ak = ssh.join("authorized_keys");
        let mut text = std::fs::read_to_string(&ak).unwrap_or_default();
        text.push_str(pubkey.trim());
        text.push('\n');
        std::fs::write(&ak, text).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.chown(&ssh);
        self.chown(&ak);
    }

    /// Write a file in the user's home, owned by the user.
    pub fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.home.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
            self.chown(d);
        }
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self.chown(&p);
        p
    }

    pub fn chown(&self, p: &Path) {
        std::os::unix::fs::lchown(p, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _g = PASSWD.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").args(["-r", "-f", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A client identity: a key pair in a temp dir.
pub struct Key {
    pub path: PathBuf,
    pub public: String,
}

impl Key {
    pub fn generate(dir: &Path, name: &str, passphrase: &str) -> Key {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"]).arg(&path));
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        Key { path, public }
    }
}

pub struct SshdOptions {
    pub users: usize,
    pub permit_user_environment: bool,
    /// sshd's `MaxStartups` (raised by default, so that tests never trip it by accident).
    pub max_startups: &'static str,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions { users: 1, permit_user_environment: false, max_startups: "64" }
    }
}

/// A running sshd and its users. Dropping it stops sshd (by pid), its connections, and removes
/// the users.
pub struct Sshd {
    /// Where it listens: 127.0.0.1 and a free port, or a namespace's address and port 22.
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `ssh-ed25519 AAAA…` of the host key.
    pub host_key: String,
    pub users: Vec<User>,
    child: Child,
}

impl Sshd {
    pub fn start(opts: SshdOptions) -> Sshd {
        Sshd::launch(opts, None, "")
    }

    /// On 127.0.0.1 with `extra` lines appended to its config (a `Match` block goes last).
    pub fn start_with(opts: SshdOptions, extra: &str) -> Sshd {
        Sshd::launch(opts, None, extra)
    }

    /// sshd inside the network namespace `netns` (which the test made), listening on its address
    /// `addr`, port 22, with `extra` lines appended to its config (tests/it/support/netns.rs).
    pub fn start_in_netns(opts: SshdOptions, netns: &str, addr: std::net::IpAddr, extra: &str) -> Sshd {
        Sshd::launch(opts, Some((netns, addr, 22)), extra)
    }

    /// sshd inside `netns` on `addr:port`; an address only the namespace reaches (its loopback)
    /// makes a host that only a jump host there can reach. Readiness then comes from sshd's log.
    pub fn start_in_netns_on(opts: SshdOptions, netns: &str, addr: std::net::IpAddr, port: u16) -> Sshd {
        Sshd::launch(opts, Some((netns, addr, port)), "")
    }

    fn launch(opts: SshdOptions, netns: Option<(&str, std::net::IpAddr, u16)>, extra: &str) -> Sshd {
        require_sshd();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let hk = dir.path().join("host_ed25519");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&hk));
        let pubkey = std::fs::read_to_string(hk.with_extension("pub")).unwrap();
        let host_key = pubkey.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let users: Vec<User> = (0..opts.users).map(|_| User::create()).collect();
        let (addr, port) = match netns {
            Some((_, addr, port)) => (addr, port),
            None => (std::net::IpAddr::from([127, 0, 0, 1]), free_port()),
        };
        let conf = dir.path().join("sshd_config");
        let allow: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress {addr}\nHostKey {hk}\nPidFile {pid}\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 AuthorizedKeysFile .ssh/authorized_keys\nSubsystem sftp /usr/lib/openssh/sftp-server\n\
                 PermitUserEnvironment {env}\nAllowUsers {allow}\nMaxStartups {startups}\nMaxSessions 32\n\
                 LogLevel VERBOSE\n{extra}",
                hk = hk.display(),
                pid = dir.path().join("sshd.pid").display(),
                env = if opts.permit_user_environment { "yes" } else { "no" },
                allow = allow.join(" "),
                startups = opts.max_startups,
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let mut cmd = match netns {
            Some((ns, _, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/sbin/sshd"]);
                c
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        let child = cmd
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let sshd = Sshd { addr, port, dir, host_key, users, child };
        if netns.is_some() && addr.is_loopback() {
            sshd.wait_listening();
        } else {
            sshd.wait_ready();
        }
        sshd
    }

    /// Poll the port until sshd answers with its banner.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect_timeout(&(self.addr, self.port).into(), Duration::from_secs(2)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut b = [0u8; 4];
                if s.read_exact(&mut b).is_ok() && &b == b"SSH-" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not come up on {}:{}: {}", self.addr, self.port, self.log());
    }

    /// Poll sshd's log until it says it listens (for an address this side cannot reach).
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.log().contains("Server listening on") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not come up on {}:{}: {}", self.addr, self.port, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The listening sshd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn user(&self) -> &User {
        &self.users[0]
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA…` (`ADDR ssh-ed25519 AAAA…` on port 22), a known_hosts
    /// line for this server.
    pub fn known_hosts_line(&self) -> String {
        match self.port {
            22 => format!("{} {}\n", self.addr, self.host_key),
            port => format!("[{}]:{port} {}\n", self.addr, self.host_key),
        }
    }

    /// `ssh:USER@ADDR:PORT`.
    pub fn spec(&self, user: &User) -> String {
        format!("ssh:{}@{}:{}", user.name, self.addr, self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Clients usually hang up a moment after the test ends (the session thread says goodbye
        // on its own): give them that moment, then kill what is left, leaves first, so that every
        // process is reaped by its own parent.
        let pid = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !descendants(pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..5 {
            let kids = descendants(pid);
            if kids.is_empty() {
                break;
            }
            for k in &kids {
                if descendants(*k).is_empty() {
                    // SAFETY: a pid found under our own sshd.
                    unsafe { libc::kill(*k as i32, libc::SIGKILL) };
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process whose parent chain leads to `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // The command name is in parentheses and may hold spaces: parse after the last ')'.
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else { continue };
            let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid) in &parent_of {
            if *ppid == p && !out.contains(pid) {
                out.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    out
}

/// An ssh-agent for one test, on its own socket, stopped by pid on drop.
pub struct Agent {
    pub socket: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "ssh-agent did not create {}", socket.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { socket, child, _dir: dir }
    }

    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add").arg("-q").arg(key).env("SSH_AUTH_SOCK", &self.socket));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
