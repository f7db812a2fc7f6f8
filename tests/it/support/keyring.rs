//! A real Secret Service for the credential-store tests: Debian's gnome-keyring-daemon on a
//! private D-Bus session bus, both started by the test (its own dbus-daemon with a config and a
//! socket in a temp dir; the keyring with its own HOME, XDG dirs and an unlocked `login`
//! collection) and stopped by [`SecretService`]'s `Drop`, by pid. Missing programs are a test
//! failure naming the package, never a skip. `secret-tool` reads and writes entries as another
//! client would.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The programs the bed needs and the Debian packages that have them.
const NEEDS: [(&str, &str); 4] = [
    ("dbus-daemon", "dbus-daemon (dbus)"),
    ("dbus-send", "dbus-bin"),
    ("gnome-keyring-daemon", "gnome-keyring"),
    ("secret-tool", "libsecret-tools"),
];

/// The keyring service and the account of a home, as the agent computes them.
pub const SERVICE: &str = "LLMX Auth";

pub fn account_of(home: &Path) -> String {
    let canonical = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cli|{}", &hex[..16])
}

/// A session bus with gnome-keyring's Secret Service on it.
pub struct SecretService {
    dir: tempfile::TempDir,
    address: String,
    bus: Child,
    keyring: Child,
}

impl SecretService {
    /// Start the bus and an unlocked keyring; wait until the Secret Service owns its name.
    pub fn start() -> SecretService {
        for (program, package) in NEEDS {
            let found =
                std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
            assert!(found, "{program} is missing: install the Debian package {package} (scripts/test does)");
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"
 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">
<busconfig><type>session</type><listen>{address}</listen><auth>EXTERNAL</auth>
<standard_session_servicedirs/>
<policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy>
</busconfig>"
            ),
        )
        .unwrap();
        for d in ["home", "run", "data", "config"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::set_permissions(dir.path().join("run"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        // The bus and what it activates (the password prompter) see only the bed's environment.
        let bus = Command::new("dbus-daemon")
            .env_clear()
            .envs(Self::env_in(dir.path(), &address))
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let started = Instant::now();
        while !socket.exists() {
            assert!(started.elapsed() < Duration::from_secs(20), "dbus-daemon made no socket at {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets", "--foreground"])
            .envs(Self::env_in(dir.path(), &address))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gnome-keyring-daemon");
        {
            use std::io::Write;
            let mut stdin = keyring.stdin.take().unwrap();
            stdin.write_all(b"test-password").unwrap();
        }
        let ss = SecretService { dir, address, bus, keyring };
        let started = Instant::now();
        while !ss.has_owner() {
            assert!(started.elapsed() < Duration::from_secs(20), "gnome-keyring-daemon did not take the bus name");
            std::thread::sleep(Duration::from_millis(50));
        }
        ss
    }

    fn env_in(dir: &Path, address: &str) -> Vec<(String, String)> {
        let at = |d: &str| dir.join(d).display().to_string();
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), address.to_string()),
            ("HOME".into(), at("home")),
            ("XDG_RUNTIME_DIR".into(), at("run")),
            ("XDG_DATA_HOME".into(), at("data")),
            ("XDG_CONFIG_HOME".into(), at("config")),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ]
    }

    /// The bus address llmx is given.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear().envs(Self::env_in(self.dir.path(), &self.address));
        c
    }

    fn has_owner(&self) -> bool {
        let out = self
            .client("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }

    /// `secret-tool ARGS` on this bus (stdin: `input`).
    pub fn secret_tool(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut c = self.client("secret-tool");
        c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if let Some(i) = input {
                stdin.write_all(i).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }

    /// The secret of `account` (service `LLMX Auth`), looked up as any client would.
    pub fn lookup(&self, account: &str) -> Option<Vec<u8>> {
        let out = self.secret_tool(&["lookup", "service", SERVICE, "username", account], None);
        out.status.success().then_some(out.stdout)
    }

    /// Every attribute `secret-tool search` shows for `account` (`attribute.NAME = VALUE` lines).
    pub fn attributes(&self, account: &str) -> Vec<String> {
        let out = self.secret_tool(&["search", "--all", "service", SERVICE, "username", account], None);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<String> = text.lines().filter(|l| l.starts_with("attribute.")).map(String::from).collect();
        lines.sort();
        lines
    }

    /// Store `secret` for `account` with the attributes the agent's `keyring` crate writes.
    pub fn store_as_agent(&self, account: &str, secret: &[u8]) {
        let label = format!("{account}@{SERVICE}:default (keyring v3.6.3)");
        let out = self.secret_tool(
            &[
                "store",
                &format!("--label={label}"),
                "service",
                SERVICE,
                "username",
                account,
                "target",
                "default",
                "application",
                "rust-keyring",
            ],
            Some(secret),
        );
        assert!(out.status.success(), "secret-tool store: {out:?}");
    }

    /// Lock the `login` collection (a later read wants a password prompt, which has no display).
    pub fn lock(&self) {
        let out = self
            .client("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "lock: {out:?}");
    }

    /// Stop (SIGSTOP) or continue (SIGCONT) the keyring daemon: a Secret Service that owns its
    /// name but never answers.
    pub fn stall(&self, stalled: bool) {
        let signal = if stalled { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on the pid of a child this value owns.
        let r = unsafe { libc::kill(self.keyring.id() as libc::pid_t, signal) };
        assert_eq!(r, 0, "kill({}, {signal})", self.keyring.id());
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.bus] {
            // SAFETY: kill(2) on the pid of a child this value owns; a stopped one must go on to die.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
