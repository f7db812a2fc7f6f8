//! The inventory is the truth (issue 20): every place a push writes is in the ledger the moment
//! it is written, also when the push is interrupted (Ctrl-C, SIGTERM); a home where the ledger
//! cannot be written is found before anything is pushed or asked of the issuer; and the fleet
//! commands print one line per target as it finishes. Against a real sshd (tests/it/support/
//! sshd.rs) with dedicated users; a target that never answers is a listener here that accepts
//! nothing (its SSH handshake waits).

use crate::support::harness::{Events, Llmx};
use crate::support::sshd::{Key, Sshd, SshdOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECRET: &str = "sk-inventory-secret-0123456789abcdef";

/// A client machine (temp HOME with its own key, trusted by every user of `sshd`) logged in with
/// an API key, and the sshd.
struct Bed {
    sshd: Sshd,
    home: tempfile::TempDir,
}

impl Bed {
    /// From async tests too (it runs llmx to completion on a thread of its own).
    fn start(users: usize) -> Bed {
        std::thread::spawn(move || Bed::start_blocking(users)).join().unwrap()
    }

    fn start_blocking(users: usize) -> Bed {
        let sshd = Sshd::start(SshdOptions { users, ..SshdOptions::default() });
        let home = tempfile::tempdir().unwrap();
        let key = Key::generate(&home.path().join(".ssh"), "id_ed25519", "");
        std::fs::write(home.path().join(".ssh/known_hosts"), sshd.known_hosts_line()).unwrap();
        for u in &sshd.users {
            u.authorize(&key.public);
        }
        let bed = Bed { sshd, home };
        let r = bed.llmx(&["login", "--with-api-key"]).stdin(format!("{SECRET}\n")).run_blocking();
        assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
        bed
    }

    fn llmx_home(&self) -> PathBuf {
        self.home.path().join(".llmx")
    }

    /// `llmx ARGS` as the client: HOME its temp home, LLMX_HOME inside it.
    fn llmx(&self, args: &[&str]) -> Llmx {
        Llmx::new(args).env("HOME", self.home.path()).env("LLMX_HOME", self.llmx_home())
    }

    fn specs(&self) -> Vec<String> {
        self.sshd.users.iter().map(|u| self.sshd.spec(u)).collect()
    }

    /// The targets the ledger lists.
    fn ledger_targets(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.llmx_home().join("ledger.json")) else { return Vec::new() };
        let l: Value = serde_json::from_str(&text).unwrap();
        l["entries"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap().to_string()).collect()
    }
}

/// A listener here that accepts nothing: an SSH target on it waits in its handshake.
fn silent_target() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("ssh:nobody@127.0.0.1:{}", l.local_addr().unwrap().port());
    (l, spec)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Ctrl-C while one target still connects: the targets already written are in the ledger, the
/// recap says what was done, the last line is `llmx: interrupted`, exit 130 (on main the push
/// died with nothing recorded). SIGTERM the same, on the human output.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_push_records_every_target_written_and_exits_130_with_the_recap() {
    let bed = Bed::start(3);
    let (_silent, hang) = silent_target();
    let specs = bed.specs();
    let mut args = vec!["auth", "push", "--json", "--connect-timeout", "120", &specs[0], &specs[1]];
    args.push(&hang);
    let mut push: Events = bed.llmx(&args).events();
    for _ in 0..2 {
        let t = push.wait_for("target").await;
        assert_eq!(t["outcome"], "created", "{t}");
    }
    // Written and done: in the ledger already, while the push still runs.
    wait_until_recorded(&bed, &specs[1]).await;
    wait_until_recorded(&bed, &specs[0]).await;
    let started = Instant::now();
    signal(push.pid().unwrap(), libc::SIGINT);
    let (status, events, stderr) = push.finish().await;
    assert_eq!(status.code(), Some(130), "{events:?}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "a connecting target held the interrupt up");
    let hung = events.iter().find(|e| e["target"] == hang.as_str()).expect("the cut-short target is reported");
    assert_eq!(hung["outcome"], "failed", "{hung}");
    assert!(hung["reason"].as_str().unwrap().contains("interrupted before anything was written"), "{hung}");
    let summary = events.iter().find(|e| e["event"] == "summary").expect("a summary");
    assert_eq!(summary["counts"]["created"], 2, "{summary}");
    assert_eq!(events.last().unwrap()["error"]["kind"], "interrupted", "{events:?}");
    assert!(stderr.lines().any(|l| l == "llmx: interrupted"), "{stderr}");

    // SIGTERM, human output (a pipe): the recap, `llmx: interrupted` last.
    let child = bed.llmx(&["auth", "push", "--connect-timeout", "120", &specs[2], &hang]).spawn();
    wait_until_recorded(&bed, &specs[2]).await;
    signal(child.id().unwrap(), libc::SIGTERM);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 targets: 1 created, 1 failed"), "{stdout}");
    assert!(stdout.contains("interrupted before anything was written"), "{stdout}");
    let last = stderr.lines().rfind(|l| !l.starts_with("hint:"));
    assert_eq!(last, Some("llmx: interrupted"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains(SECRET));
    let (mut recorded, mut want) = (bed.ledger_targets(), specs.clone());
    recorded.sort();
    want.sort();
    assert_eq!(recorded, want, "every target written is recorded, the silent one is not");
}

/// Processes whose command line contains `marker`.
fn running_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .count()
}

/// A ProxyCommand never outlives the push: interrupted while its proxy command (which leaves a
/// helper in the background, as a `sh -c '… &'` wrapper does) is connecting, llmx exits 130 and
/// neither the command nor its helper keeps running (on main both did, the helper also after a
/// push that ended normally).
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_command_and_its_helpers_never_outlive_an_interrupted_push() {
    let bed = Bed::start(1);
    let marker = format!("6{}.{}", std::process::id() % 100, std::process::id());
    std::fs::write(
        bed.home.path().join(".ssh/config"),
        format!("Host stuck\n  ProxyCommand sh -c 'sleep {marker} & exec sleep {marker}'\n"),
    )
    .unwrap();
    let child = bed.llmx(&["auth", "push", "--connect-timeout", "120", "ssh:nobody@stuck"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_with(&marker) < 2 {
        assert!(Instant::now() < deadline, "the proxy command did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(child.id().unwrap(), libc::SIGTERM);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    while running_with(&marker) > 0 {
        assert!(Instant::now() < deadline, "the proxy command or its helper outlived the push");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (up to 30 s) until the ledger lists `spec`.
async fn wait_until_recorded(bed: &Bed, spec: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bed.ledger_targets().iter().any(|t| t == spec) {
        assert!(Instant::now() < deadline, "{spec} is not recorded: {:?}", bed.ledger_targets());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `unshare -m` with the home bind-mounted read-only, then `llmx ARGS`.
fn read_only_home(bed: &Bed, args: &[&str]) -> Llmx {
    let script = r#"mount --bind "$H" "$H" && mount -o remount,ro,bind "$H" && exec "$0" "$@""#;
    Llmx::via("unshare", ["-m", "sh", "-c", script])
        .args(args)
        .env("H", bed.llmx_home())
        .env("HOME", bed.home.path())
        .env("LLMX_HOME", bed.llmx_home())
}

/// A home where the ledger cannot be written: the push stops before any target is touched, and
/// says so (on main it pushed, then failed to record: "another llmx is working on this login").
#[test]
fn push_from_a_read_only_home_is_refused_before_any_target_is_written() {
    let bed = Bed::start(1);
    let spec = &bed.specs()[0];
    let r = read_only_home(&bed, &["auth", "push", spec]).run_blocking();
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let home = bed.llmx_home().display().to_string();
    assert!(r.stderr.contains(&format!("llmx: LLMX_HOME {home} is not writable")), "{}", r.stderr);
    assert!(!r.stderr.contains("another llmx"), "{}", r.stderr);
    assert!(!bed.sshd.user().home.join(".llmx/auth.json").exists(), "a target was written");
    assert!(bed.ledger_targets().is_empty());
    // --dry-run records nothing, so it still runs.
    let r = read_only_home(&bed, &["auth", "push", "--dry-run", spec]).run_blocking();
    assert_eq!(r.status.code(), Some(0), "{r:?}");
}

/// The same for a login: found before a port is opened or the issuer asked for a code, and
/// with --json the error is a JSON object naming it (not `reason: internal`).
#[tokio::test(flavor = "multi_thread")]
async fn login_into_a_read_only_home_is_refused_before_a_port_opens_or_the_issuer_is_asked() {
    let bed = Bed::start(1);
    let issuer = crate::support::login::issuer().await;
    let iss = format!("auth_issuer={}", issuer.base_url());
    for method in [&["--no-browser", "--port", "0"][..], &["--device-auth"]] {
        let r = read_only_home(&bed, &[&["-c", &iss, "login", "--json"][..], method].concat()).run().await;
        assert_eq!(r.code(), 1, "{method:?}: {r:?}");
        let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{method:?}: no event before the error: {}", r.stdout);
        let msg = lines[0]["error"]["message"].as_str().unwrap();
        assert!(msg.contains("is not writable"), "{msg}");
        assert!(r.stderr.contains("is not writable"), "{}", r.stderr);
    }
    assert_eq!(issuer.issuer.stats(), Default::default(), "the issuer was asked");
}

/// `llmx` alone prints its help on stdout and exits 0 (as gh and kubectl); a usage error is one
/// `llmx:` line and one `hint:` line like every other failure, not clap's paragraphs, and with
/// --json the JSON error too (issue 20 item 6).
#[test]
fn no_arguments_print_the_help_and_usage_errors_are_one_llmx_line() {
    let r = Llmx::new(Vec::<String>::new()).run_blocking();
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(r.stdout.contains("Usage: llmx") && r.stdout.contains("Examples:"), "{}", r.stdout);
    assert_eq!(r.stderr, "");
    for (args, json) in [(&["auth", "push"][..], false), (&["auth", "push", "--bogus", "docker:x", "--json"], true)] {
        let r = Llmx::new(args).run_blocking();
        assert_eq!(r.status.code(), Some(2), "{args:?}: {r:?}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {}", r.stderr);
        assert!(lines[0].starts_with("llmx: ") && lines[1].starts_with("hint: "), "{}", r.stderr);
        if json {
            let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
            assert_eq!(v["error"]["kind"], "usage", "{v}");
        } else {
            assert!(lines[0].contains("<TARGET>..."), "{}", r.stderr);
        }
    }
}

/// On a pipe each target's row is printed as it finishes, while slower targets still run — not
/// all at the end (issue 20 item 5); then the recap.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_pipe_each_target_is_printed_as_it_finishes_then_the_recap() {
    use tokio::io::AsyncBufReadExt;
    let bed = Bed::start(1);
    let (_silent, hang) = silent_target();
    let spec = bed.specs()[0].clone();
    let mut child = bed.llmx(&["auth", "push", "--connect-timeout", "5", &hang, &spec]).spawn();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with(&format!("✓ {spec}")) && first.contains("created"), "{first}");
    assert!(child.try_wait().unwrap().is_none(), "printed only at the end");
    let mut rest = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push(l);
    }
    assert_eq!(child.wait().await.unwrap().code(), Some(1));
    assert!(rest[0].starts_with(&format!("✗ {hang}")), "{rest:?}");
    assert_eq!(rest.last().unwrap(), "2 targets: 1 created, 1 failed", "{rest:?}");
    assert_eq!(rest.iter().filter(|l| l.contains(&spec)).count(), 0, "a row printed twice: {rest:?}");
}

/// A target typed three times is written once and counted as such (issue 20 item 5).
#[test]
fn a_target_typed_twice_is_counted_as_the_same_place() {
    let bed = Bed::start(1);
    let spec = bed.specs()[0].clone();
    let r = bed.llmx(&["auth", "push", &spec, &spec, &spec]).run_blocking();
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(r.stdout.contains("3 targets: 1 created, 2 the same place"), "{}", r.stdout);
    assert_eq!(r.stdout.matches("(typed twice: written once)").count(), 2, "{}", r.stdout);
    let r = bed.llmx(&["auth", "push", "--json", &spec, &spec]).run_blocking();
    let summary: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["same_place"], 1, "{summary}");
}
