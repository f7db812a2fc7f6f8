//! `llmx auth sync --schedule` / `--unschedule`: the systemd user units it writes (checked with
//! the real `systemd-analyze verify`, from Debian's `systemd` package, which scripts/test
//! installs) and the crontab line it prints where no user systemd runs. This machine has no
//! systemd as PID 1, so `systemd --user` cannot start here (it exits at once: /run/systemd/system
//! is missing) and every run below takes the crontab path: with `systemctl` on PATH (it cannot
//! reach a manager) and without one.

use crate::support::docker::{assert_no_secret, chatgpt_auth, creds};
use crate::support::harness::{Llmx, Run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temp machine: a home with an odd name (space, `%`, `$`, quotes: every escaping rule is
/// exercised) holding a ChatGPT login, and its own XDG_CONFIG_HOME.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let m = Machine { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(m.home()).unwrap();
        let c = creds("acct-sched", "sched");
        std::fs::write(m.home().join("auth.json"), chatgpt_auth(&c, "acct-sched", "2026-01-01T00:00:00Z")).unwrap();
        m
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("my home 100% $x \"q\" it's")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn unit_dir(&self) -> PathBuf {
        self.config().join("systemd").join("user")
    }

    fn llmx(&self, args: &[&str], path: Option<&Path>) -> Run {
        let mut cmd = Llmx::new(args).env("LLMX_HOME", self.home()).env("XDG_CONFIG_HOME", self.config());
        if let Some(p) = path {
            cmd = cmd.env("PATH", p);
        }
        cmd.run_blocking()
    }

    /// The two unit files (service, timer) and their names.
    fn units(&self) -> Vec<(String, String, u32)> {
        let mut v: Vec<(String, String, u32)> = std::fs::read_dir(self.unit_dir())
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
                    (e.file_name().into_string().unwrap(), std::fs::read_to_string(e.path()).unwrap(), mode)
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// `systemd-analyze --user verify` of the given unit files: its exit code and stderr.
fn verify(units: &[PathBuf]) -> (i32, String) {
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .args(units)
        // --user needs a runtime directory; the real one does not exist without a login session.
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze (Debian package systemd; scripts/test installs it): {e}"));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sync_schedule_writes_user_units_that_systemd_analyze_verifies() {
    let m = Machine::new();
    let run = m.llmx(&["auth", "sync", "--schedule", "--every", "30m"], None);
    assert_eq!(run.code(), 0, "{run:?}");
    let units = m.units();
    assert_eq!(units.len(), 2, "{units:?}");
    let name = units[0].0.trim_end_matches(".service").to_string();
    assert!(name.starts_with("llmx-sync-") && units[1].0 == format!("{name}.timer"), "{units:?}");
    for (file, text, mode) in &units {
        assert_eq!(*mode, 0o644, "{file}");
        assert_no_secret(text, &creds("acct-sched", "sched"));
    }
    let (service, timer) = (&units[0].1, &units[1].1);
    let bin = std::fs::canonicalize(crate::support::harness::LLMX).unwrap();
    assert!(service.contains(&format!("\nExecStart=\"{}\" auth sync\n", bin.display())), "{service}");
    assert!(service.contains("\nEnvironment=\"LLMX_HOME="), "{service}");
    assert!(timer.contains("\nOnUnitActiveSec=30min\n") && timer.contains("\nWantedBy=timers.target\n"), "{timer}");

    let paths: Vec<PathBuf> = units.iter().map(|(f, _, _)| m.unit_dir().join(f)).collect();
    let (code, stderr) = verify(&paths);
    assert_eq!((code, stderr.as_str()), (0, ""), "systemd-analyze verify");
    // The checker is real: a unit it must refuse is refused.
    let broken = m.dir.path().join(format!("{name}-broken.service"));
    std::fs::write(&broken, service.replace("ExecStart=\"/", "ExecStart=\"")).unwrap();
    assert_ne!(verify(&[broken]).0, 0);

    // Units for another home get another name; the same home keeps its name (rewritten in place).
    let again = m.llmx(&["auth", "sync", "--schedule"], None);
    assert_eq!(again.code(), 0, "{again:?}");
    assert_eq!(m.units().len(), 2);
    assert!(m.units()[1].1.contains("\nOnUnitActiveSec=6h\n"), "the default interval is 6h");
    assert_no_secret(&again.all(), &creds("acct-sched", "sched"));
}

#[test]
fn sync_schedule_without_a_user_systemd_prints_the_crontab_line() {
    let m = Machine::new();
    // systemctl is on PATH here, but no user manager answers it.
    let run = m.llmx(&["auth", "sync", "--schedule", "--every", "6h"], None);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.stderr.contains("no user systemd here (systemctl --user: "), "{run:?}");
    let name = m.units()[0].0.trim_end_matches(".service").to_string();
    let line = run.stdout.trim_end();
    assert_eq!(run.stdout.lines().count(), 1, "only the crontab line on stdout: {run:?}");
    let fields: Vec<&str> = line.splitn(6, ' ').collect();
    assert!(fields[1].ends_with("-23/6") && fields[2..5] == ["*", "*", "*"], "{line}");
    assert!(line.ends_with(&format!("auth sync -q  # {name}")), "{line}");

    // The command part runs as cron would run it (cron turns `\%` into `%`, then `sh -c`): it
    // reaches llmx with this home. Here `auth status` stands in for `auth sync`.
    let command = fields[5].replace("\\%", "%").replace(" auth sync -q  # ", " auth status; : ");
    let out = Command::new("sh").args(["-c", &command]).env_clear().env("PATH", "/usr/bin:/bin").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("Logged in using ChatGPT"), "{command}: {out:?}");

    // No systemctl at all: the same line, and --json says why.
    let empty = tempfile::tempdir().unwrap();
    let run = m.llmx(&["auth", "sync", "--schedule", "--every", "7h", "--json"], Some(empty.path()));
    assert_eq!(run.code(), 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["via"], "cron", "{v}");
    assert_eq!(v["systemd"], "no systemctl on PATH", "{v}");
    assert_eq!(v["every"], "7h");
    assert_eq!(v["crontab_every"], "6h", "cron cannot run every 7h: the line says every 6h");
    assert_eq!(v["unit"], name.as_str());
    assert!(v["crontab"].as_str().unwrap().ends_with(&format!("# {name}")), "{v}");
}

#[test]
fn sync_schedule_every_refuses_a_bad_interval_in_one_line() {
    let m = Machine::new();
    for (every, says) in [
        ("1m", "llmx: --every 1m: the shortest interval is 5m"),
        ("6w", "llmx: --every 6w: unknown unit \"w\" (give a duration like 30m, 6h or 1d)"),
        ("30d", "llmx: --every 30d: the longest interval is 7d"),
    ] {
        let run = m.llmx(&["auth", "sync", "--schedule", "--every", every], None);
        assert_eq!(run.code(), 2, "{run:?}");
        assert!(run.stderr.starts_with(says) && run.stderr.lines().count() == 1, "{every}: {run:?}");
        assert!(m.units().is_empty(), "nothing written for a bad interval");
    }
    let run = m.llmx(&["auth", "sync", "--every", "6h"], None);
    assert_eq!(run.code(), 2, "--every needs --schedule: {run:?}");
    let run = m.llmx(&["auth", "sync", "--schedule", "docker:web"], None);
    assert_eq!(run.code(), 2, "a schedule syncs every holder, not named targets: {run:?}");
    let run = m.llmx(&["auth", "sync", "--schedule", "--owner", "k8s:a/secret/b"], None);
    assert_eq!(run.code(), 2, "a schedule does not carry --owner (that is the CronJob's): {run:?}");
}

#[test]
fn sync_unschedule_removes_the_units_of_this_home_only() {
    let m = Machine::new();
    let other = Machine::new();
    for machine in [&m, &other] {
        assert_eq!(machine.llmx(&["auth", "sync", "--schedule"], None).code(), 0);
    }
    // Both homes' units in one directory (one user, two homes).
    let theirs = other.units();
    for (f, text, _) in &theirs {
        std::fs::write(m.unit_dir().join(f), text).unwrap();
    }
    let run = m.llmx(&["auth", "sync", "--unschedule"], None);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.stdout.starts_with("unscheduled: "), "{run:?}");
    assert!(run.stderr.contains("remove the crontab line ending in `# llmx-sync-"), "{run:?}");
    let left: Vec<String> = m.units().into_iter().map(|(f, _, _)| f).collect();
    let expected: Vec<String> = theirs.into_iter().map(|(f, _, _)| f).collect();
    assert_eq!(left, expected, "only the other home's units stay");
    let again = m.llmx(&["auth", "sync", "--unschedule", "--json"], None);
    assert_eq!(again.code(), 0, "{again:?}");
    assert_eq!(again.json()["removed"], serde_json::json!([]));
}
