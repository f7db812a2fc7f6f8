//! `llmx auth sync --schedule`: run `llmx auth sync` for one home at a fixed interval, as a
//! systemd *user* timer (a `.service` + `.timer` pair in `$XDG_CONFIG_HOME/systemd/user`), or,
//! on a machine without a user systemd, as a crontab line the user adds.
//!
//! The unit texts, the unit name and the crontab line are pure functions of a [`Schedule`] (the
//! absolute path of the llmx binary, the absolute home, the interval): unit-tested below and
//! checked with `systemd-analyze verify` by the integration tests. [`install`] and [`uninstall`]
//! write or remove the two files and drive `systemctl --user`. Nothing written holds a secret:
//! the units name the binary and the home, nothing else. Nothing here prints.

use crate::home::{HomeError, write_private};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The shortest interval: renewals are cheap, but a timer every minute is a mistake.
pub const MIN_MINUTES: u64 = 5;
/// The longest: a lease must be renewed well within its lifetime (days).
pub const MAX_MINUTES: u64 = 7 * 24 * 60;
/// The interval when `--every` is not given.
pub const DEFAULT_EVERY: &str = "6h";
/// How long one `systemctl` call may take.
const SYSTEMCTL_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("--every {given}: {why}")]
    Every { given: String, why: String },
    #[error("{what} {path:?} cannot go into a systemd unit or a crontab line ({why})")]
    Path { what: &'static str, path: PathBuf, why: &'static str },
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("`systemctl --user {args}` failed: {why}")]
    Systemctl { args: String, why: String },
}

/// How often: a whole number of minutes, at least [`MIN_MINUTES`], at most [`MAX_MINUTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every {
    minutes: u64,
}

impl Every {
    /// `30m` (or `30min`), `6h`, `1d`.
    pub fn parse(s: &str) -> Result<Every, ScheduleError> {
        let given = s.trim();
        let bad = |why: String| ScheduleError::Every { given: given.to_string(), why };
        let like = "give a duration like 30m, 6h or 1d";
        let split = given.find(|c: char| !c.is_ascii_digit()).unwrap_or(given.len());
        let (num, unit) = given.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad(format!("not a duration ({like})")))?;
        let per = match unit {
            "m" | "min" => 1,
            "h" => 60,
            "d" => 24 * 60,
            "" => return Err(bad(format!("a unit is missing ({like})"))),
            _ => return Err(bad(format!("unknown unit {unit:?} ({like})"))),
        };
        let minutes = n.saturating_mul(per);
        if minutes < MIN_MINUTES {
            return Err(bad(format!("the shortest interval is {MIN_MINUTES}m")));
        }
        if minutes > MAX_MINUTES {
            return Err(bad("the longest interval is 7d (leases must be renewed within days)".into()));
        }
        Ok(Every { minutes })
    }

    pub fn minutes(self) -> u64 {
        self.minutes
    }

    /// As systemd writes a time span: `30min`, `6h`, `1d`.
    pub fn systemd(self) -> String {
        let m = self.minutes;
        if m.is_multiple_of(24 * 60) {
            format!("{}d", m / (24 * 60))
        } else if m.is_multiple_of(60) {
            format!("{}h", m / 60)
        } else {
            format!("{m}min")
        }
    }
}

impl std::fmt::Display for Every {
    /// As `--every` takes it: `30m`, `6h`, `1d`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.systemd().replace("min", "m"))
    }
}

/// What to run, for which home, how often.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The llmx binary, absolute.
    pub binary: PathBuf,
    /// The home (`LLMX_HOME`), absolute.
    pub home: PathBuf,
    pub every: Every,
}

/// A crontab line and whether cron can run it at exactly the interval asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronLine {
    pub line: String,
    /// `None`: exact; else the interval the line really has (cron cannot express every interval).
    pub approximated: Option<String>,
}

impl Schedule {
    /// Both paths must be absolute UTF-8 without control characters (they go into unit files
    /// and a shell command line).
    pub fn new(binary: PathBuf, home: PathBuf, every: Every) -> Result<Schedule, ScheduleError> {
        check_path("the llmx binary", &binary)?;
        check_path("the home", &home)?;
        Ok(Schedule { binary, home, every })
    }

    /// `llmx-sync-<8 hex>`: unique per home (a hash of its path), the same on every run.
    pub fn unit_name(&self) -> String {
        unit_name(&self.home)
    }

    fn home_str(&self) -> &str {
        self.home.to_str().unwrap_or_default()
    }

    fn binary_str(&self) -> &str {
        self.binary.to_str().unwrap_or_default()
    }

    /// The `.service`: one `llmx auth sync` with `LLMX_HOME` set to this home.
    pub fn service_text(&self) -> String {
        let home = self.home_str();
        format!(
            "# Written by `llmx auth sync --schedule` for the llmx home {home}; holds no secret.\n\
             # Remove with: LLMX_HOME={qhome} llmx auth sync --unschedule\n\
             [Unit]\n\
             Description=llmx auth sync (home {desc})\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             Environment={env}\n\
             ExecStart={exec} auth sync\n",
            qhome = sh_quote(home),
            desc = specifiers(home),
            env = quote(&format!("LLMX_HOME={home}"), false),
            exec = quote(self.binary_str(), true),
        )
    }

    /// The `.timer`: a first run a minute after it starts (enable, login, boot), then every
    /// interval after the last run, spread by up to a tenth of the interval (at most 10 min).
    pub fn timer_text(&self) -> String {
        let spread = (self.every.minutes / 10).clamp(1, 10);
        format!(
            "# Written by `llmx auth sync --schedule` for the llmx home {home}; holds no secret.\n\
             [Unit]\n\
             Description=llmx auth sync every {every} (home {desc})\n\
             \n\
             [Timer]\n\
             OnActiveSec=1min\n\
             OnUnitActiveSec={span}\n\
             RandomizedDelaySec={spread}min\n\
             AccuracySec=1min\n\
             Unit={name}.service\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            home = self.home_str(),
            every = self.every,
            desc = specifiers(self.home_str()),
            span = self.every.systemd(),
            name = self.unit_name(),
        )
    }

    /// The crontab line: the same command, at a minute (and hour) derived from the home's hash
    /// so that several homes do not all run at once; ends with `# <unit name>` to find it again.
    pub fn crontab_line(&self) -> CronLine {
        let seed = u64::from_str_radix(&self.unit_name()["llmx-sync-".len()..], 16).unwrap_or(0);
        let minute = seed % 60;
        let m = self.every.minutes;
        let (when, real) = if m < 60 {
            let step = [30, 20, 15, 12, 10, 6, 5].into_iter().find(|d| *d <= m).unwrap_or(5);
            (format!("{}-59/{step} * * * *", minute % step), step)
        } else if m < 24 * 60 {
            let h = [12, 8, 6, 4, 3, 2, 1].into_iter().find(|d| *d * 60 <= m).unwrap_or(1);
            (format!("{minute} {}-23/{h} * * *", (seed / 60) % h), h * 60)
        } else {
            (format!("{minute} {} * * *", (seed / 60) % 24), 24 * 60)
        };
        let approximated = (real != m).then(|| Every { minutes: real }.to_string());
        let command = format!("LLMX_HOME={} {} auth sync -q", sh_quote(self.home_str()), sh_quote(self.binary_str()));
        // cron turns an unescaped % into a newline.
        let line = format!("{when} {}  # {}", command.replace('%', "\\%"), self.unit_name());
        CronLine { line, approximated }
    }
}

/// `llmx-sync-<first 8 hex of SHA-256(home path)>`.
pub fn unit_name(home: &Path) -> String {
    let digest = Sha256::digest(home.as_os_str().as_encoded_bytes());
    format!("llmx-sync-{}", &hex::encode(digest)[..8])
}

/// `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`), where a user's own units go.
pub fn unit_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("systemd").join("user")
}

fn check_path(what: &'static str, path: &Path) -> Result<(), ScheduleError> {
    let bad = |why| Err(ScheduleError::Path { what, path: path.to_path_buf(), why });
    match path.to_str() {
        None => bad("not UTF-8"),
        Some(_) if !path.is_absolute() => bad("not absolute"),
        Some(s) if s.chars().any(char::is_control) => bad("it holds a control character"),
        Some(_) => Ok(()),
    }
}

/// `%` is a specifier in unit files: `%%` is a literal one.
fn specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// One word in a unit file, double-quoted (systemd's own quoting: `\\`, `\"`); in a command line
/// also `$` → `$$` (no variable expansion).
fn quote(s: &str, command: bool) -> String {
    let mut out = specifiers(s).replace('\\', "\\\\").replace('"', "\\\"");
    if command {
        out = out.replace('$', "$$");
    }
    format!("\"{out}\"")
}

/// One word for `sh`, single-quoted.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Whether `systemctl --user` can talk to a user manager here; `Err` says why not.
pub fn user_systemd() -> Result<(), String> {
    match systemctl(&["show-environment"]) {
        Ok(_) => Ok(()),
        Err(ScheduleError::Systemctl { why, .. }) => Err(why),
        Err(e) => Err(e.to_string()),
    }
}

/// Run `systemctl --user ARGS` within [`SYSTEMCTL_DEADLINE`]; `Err` carries its first stderr line.
fn systemctl(args: &[&str]) -> Result<(), ScheduleError> {
    let failed = |why: String| ScheduleError::Systemctl { args: args.join(" "), why };
    let mut child = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(if e.kind() == io::ErrorKind::NotFound { "no systemctl on PATH".into() } else { e.to_string() })
        })?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < SYSTEMCTL_DEADLINE => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!("no answer within {} s", SYSTEMCTL_DEADLINE.as_secs())));
            }
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = io::Read::read_to_string(&mut s, &mut err);
    }
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    Err(failed(if first.is_empty() { status.to_string() } else { first }))
}

/// How a schedule was put in place.
#[derive(Debug, Clone)]
pub enum Installed {
    /// The timer is enabled and started in the user's systemd.
    Systemd,
    /// No user systemd answers (`why`): the unit files are written but inactive; the crontab
    /// line is the way to run it here.
    Cron { why: String, cron: CronLine },
}

/// The two unit files of a schedule, in `dir`.
pub fn unit_paths(dir: &Path, name: &str) -> [PathBuf; 2] {
    [dir.join(format!("{name}.service")), dir.join(format!("{name}.timer"))]
}

/// Write the units into `dir` (mode 0644), then, when a user systemd answers, `daemon-reload`
/// and `enable --now` the timer; else hand back the crontab line.
pub fn install(s: &Schedule, dir: &Path) -> Result<(PathBuf, PathBuf, Installed), ScheduleError> {
    let name = s.unit_name();
    let [service, timer] = unit_paths(dir, &name);
    write_unit(&service, &s.service_text())?;
    write_unit(&timer, &s.timer_text())?;
    if let Err(why) = user_systemd() {
        return Ok((service, timer, Installed::Cron { why, cron: s.crontab_line() }));
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "--now", &format!("{name}.timer")])?;
    Ok((service, timer, Installed::Systemd))
}

/// What `--unschedule` did.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The unit files that were there and are gone.
    pub files: Vec<PathBuf>,
    /// Whether a user systemd answered (and the timer was stopped and disabled).
    pub systemd: bool,
}

/// Stop and disable the timer (when a user systemd answers), remove the unit files, reload.
pub fn uninstall(home: &Path, dir: &Path) -> Result<Removed, ScheduleError> {
    let name = unit_name(home);
    let systemd = user_systemd().is_ok();
    if systemd {
        // Not loaded (never installed, or removed by hand) is not an error here.
        let _ = systemctl(&["disable", "--now", &format!("{name}.timer")]);
    }
    let mut files = Vec::new();
    for path in unit_paths(dir, &name) {
        match fs::remove_file(&path) {
            Ok(()) => files.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(HomeError::io(&path, e).into()),
        }
    }
    if systemd && !files.is_empty() {
        systemctl(&["daemon-reload"])?;
    }
    Ok(Removed { files, systemd })
}

/// Atomically, then 0644: systemd reads unit files as the user; they hold no secret.
fn write_unit(path: &Path, text: &str) -> Result<(), ScheduleError> {
    write_private(path, text.as_bytes())?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(|e| HomeError::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(every: &str) -> Schedule {
        Schedule::new("/usr/local/bin/llmx".into(), "/home/a/.llmx".into(), Every::parse(every).unwrap()).unwrap()
    }

    #[test]
    fn every_takes_minutes_hours_and_days() {
        assert_eq!(Every::parse("30m").unwrap().minutes(), 30);
        assert_eq!(Every::parse("45min").unwrap().minutes(), 45);
        assert_eq!(Every::parse("6h").unwrap().minutes(), 360);
        assert_eq!(Every::parse(" 1d ").unwrap().minutes(), 1440);
        assert_eq!(Every::parse("90m").unwrap().systemd(), "90min");
        assert_eq!(Every::parse("120m").unwrap().systemd(), "2h");
        assert_eq!(Every::parse("48h").unwrap().to_string(), "2d");
    }

    #[test]
    fn every_refuses_too_short_too_long_and_garbage() {
        for (bad, says) in [
            ("4m", "shortest interval is 5m"),
            ("0h", "shortest"),
            ("8d", "longest interval is 7d"),
            ("99999999999999999999d", "not a duration"),
            ("6", "unit is missing"),
            ("6w", "unknown unit \"w\""),
            ("soon", "not a duration"),
            ("", "not a duration"),
            ("-5m", "not a duration"),
        ] {
            let e = Every::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--every {}:", bad.trim())) && e.contains(says), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn unit_name_is_stable_and_unique_per_home() {
        let a = unit_name(Path::new("/home/a/.llmx"));
        assert_eq!(a, unit_name(Path::new("/home/a/.llmx")));
        assert_ne!(a, unit_name(Path::new("/home/b/.llmx")));
        assert!(a.starts_with("llmx-sync-") && a.len() == "llmx-sync-".len() + 8, "{a}");
    }

    #[test]
    fn service_runs_sync_with_this_home() {
        let s = schedule("6h");
        let text = s.service_text();
        assert!(text.contains("\nType=oneshot\n"), "{text}");
        assert!(text.contains("\nEnvironment=\"LLMX_HOME=/home/a/.llmx\"\n"), "{text}");
        assert!(text.contains("\nExecStart=\"/usr/local/bin/llmx\" auth sync\n"), "{text}");
    }

    #[test]
    fn timer_runs_every_interval_after_the_last_run() {
        let text = schedule("30m").timer_text();
        assert!(text.contains("\nOnUnitActiveSec=30min\n"), "{text}");
        assert!(text.contains("\nOnActiveSec=1min\n"), "{text}");
        assert!(text.contains("\nRandomizedDelaySec=3min\n"), "{text}");
        assert!(text.contains(&format!("\nUnit={}.service\n", schedule("30m").unit_name())), "{text}");
        assert!(text.contains("\nWantedBy=timers.target\n"), "{text}");
    }

    #[test]
    fn paths_are_escaped_for_systemd_and_for_sh() {
        let s =
            Schedule::new("/opt/my $tools/llmx".into(), "/srv/100%/it's \"home\"".into(), Every::parse("1d").unwrap())
                .unwrap();
        let service = s.service_text();
        assert!(service.contains("ExecStart=\"/opt/my $$tools/llmx\" auth sync\n"), "{service}");
        assert!(service.contains("Environment=\"LLMX_HOME=/srv/100%%/it's \\\"home\\\"\"\n"), "{service}");
        let cron = s.crontab_line().line;
        assert!(
            cron.contains("LLMX_HOME='/srv/100\\%/it'\\''s \"home\"' '/opt/my $tools/llmx' auth sync -q"),
            "{cron}"
        );
    }

    #[test]
    fn paths_must_be_absolute_and_single_line() {
        let every = Every::parse("1h").unwrap();
        assert!(Schedule::new("llmx".into(), "/h".into(), every).unwrap_err().to_string().contains("not absolute"));
        let e = Schedule::new("/bin/llmx".into(), "/h\nExecStart=/bin/evil".into(), every).unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
    }

    #[test]
    fn crontab_line_says_when_cron_cannot_keep_the_interval() {
        let exact = schedule("15m").crontab_line();
        assert_eq!(exact.approximated, None);
        let fields: Vec<&str> = exact.line.split_whitespace().collect();
        assert!(fields[0].ends_with("-59/15") && fields[1..5] == ["*", "*", "*", "*"], "{}", exact.line);
        assert!(exact.line.ends_with(&format!("  # {}", schedule("15m").unit_name())), "{}", exact.line);

        let six = schedule("6h").crontab_line();
        assert_eq!(six.approximated, None);
        assert!(six.line.split_whitespace().nth(1).unwrap().ends_with("-23/6"), "{}", six.line);
        assert_eq!(schedule("1d").crontab_line().approximated, None);

        assert_eq!(schedule("7h").crontab_line().approximated.as_deref(), Some("6h"));
        assert_eq!(schedule("45m").crontab_line().approximated.as_deref(), Some("30m"));
        assert_eq!(schedule("3d").crontab_line().approximated.as_deref(), Some("1d"));
    }
}
