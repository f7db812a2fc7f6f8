//! `llmx auth sync --schedule [--every 6h]` and `--unschedule`: put `llmx auth sync` for this
//! home on a systemd user timer, or print the crontab line where no user systemd runs
//! (`llmx::family::schedule` writes the units and drives `systemctl --user`).

use crate::cli::{Ctx, Failure, output};
use clap::Args;
use llmx::family::schedule::{self, DEFAULT_EVERY, Every, Installed, Schedule, ScheduleError};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Run `llmx auth sync` for this home on a timer (systemd user timer; else prints a crontab line)
    #[arg(long, conflicts_with_all = ["targets", "unschedule", "owner"])]
    pub schedule: bool,

    /// With --schedule: how often (30m, 6h, 1d; at least 5m)
    #[arg(long, value_name = "DURATION", requires = "schedule")]
    pub every: Option<String>,

    /// Remove this home's timer (stop, disable, delete the unit files)
    #[arg(long, conflicts_with_all = ["targets", "owner"])]
    pub unschedule: bool,
}

/// `Some(exit code)` when `--schedule` or `--unschedule` was given (nothing else runs then).
pub fn run(ctx: &Ctx, args: &ScheduleArgs, json: bool) -> Result<Option<u8>, Failure> {
    if !args.schedule && !args.unschedule {
        return Ok(None);
    }
    let home = absolute(ctx.home.dir())?;
    let config =
        dirs::config_dir().ok_or_else(|| Failure::new("no configuration directory: set HOME or XDG_CONFIG_HOME"))?;
    let dir = schedule::unit_dir(&config);
    if args.unschedule {
        return unschedule(&home, &dir, json).map(Some);
    }
    let every = Every::parse(args.every.as_deref().unwrap_or(DEFAULT_EVERY)).map_err(usage)?;
    let binary =
        std::env::current_exe().map_err(|e| Failure::new(format!("cannot tell where this llmx binary is: {e}")))?;
    let s = Schedule::new(binary, home.clone(), every).map_err(usage)?;
    let name = s.unit_name();
    let (service, timer, how) = schedule::install(&s, &dir).map_err(failed)?;
    let files = [service.display().to_string(), timer.display().to_string()];
    let mut value = json!({
        "scheduled": true, "every": every.to_string(), "home": home.display().to_string(),
        "unit": name, "files": files,
    });
    match how {
        Installed::Systemd => {
            value["via"] = "systemd".into();
            if json {
                return output::json_line(&value).map(|_| Some(0));
            }
            output::lines(&[format!(
                "scheduled: `llmx auth sync` every {every} for {} (systemd user timer {name}.timer)",
                home.display()
            )])?;
            let mut notes = vec![
                format!("  {}", files[0]),
                format!("  {}", files[1]),
                format!("see it: systemctl --user list-timers {name}.timer; its runs: journalctl --user -u {name}"),
            ];
            if !lingering() {
                notes.push(
                    "note: a user timer runs while you are logged in; `loginctl enable-linger` runs it always".into(),
                );
            }
            output::note(&notes);
        }
        Installed::Cron { why, cron } => {
            value["via"] = "cron".into();
            value["crontab"] = cron.line.clone().into();
            value["systemd"] = why.clone().into();
            value["crontab_every"] = cron.approximated.clone().unwrap_or_else(|| every.to_string()).into();
            if json {
                return output::json_line(&value).map(|_| Some(0));
            }
            let mut notes = vec![format!(
                "no user systemd here (systemctl --user: {why}); add this line to your crontab (`crontab -e`) instead:"
            )];
            if let Some(real) = &cron.approximated {
                notes.push(format!("(cron cannot run every {every}: this line runs every {real})"));
            }
            output::note(&notes);
            output::lines(std::slice::from_ref(&cron.line))?;
            output::note(&[format!(
                "the units were written too, inactive, for a machine with a user systemd \
                 (`systemctl --user enable --now {name}.timer`): {}, {}",
                files[0], files[1]
            )]);
        }
    }
    Ok(Some(0))
}

fn unschedule(home: &std::path::Path, dir: &std::path::Path, json: bool) -> Result<u8, Failure> {
    let removed = schedule::uninstall(home, dir).map_err(failed)?;
    let name = schedule::unit_name(home);
    let files: Vec<String> = removed.files.iter().map(|p| p.display().to_string()).collect();
    if json {
        let value = json!({
            "scheduled": false, "home": home.display().to_string(), "unit": name,
            "removed": files, "systemd": removed.systemd,
        });
        return output::json_line(&value).map(|_| 0);
    }
    let what = if files.is_empty() { "no timer units to remove".to_string() } else { files.join(", ") };
    output::lines(&[format!("unscheduled: {what} ({name}, home {})", home.display())])?;
    if !removed.systemd {
        output::note(&[format!("no user systemd here: remove the crontab line ending in `# {name}` (`crontab -e`)")]);
    }
    Ok(0)
}

/// The home as an absolute path, symlinks resolved when it exists (the timer runs elsewhere).
fn absolute(dir: &std::path::Path) -> Result<PathBuf, Failure> {
    std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .map_err(|e| Failure::new(format!("{}: {e}", dir.display())))
}

/// Whether systemd keeps this user's manager running without a login (`loginctl enable-linger`).
fn lingering() -> bool {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    !user.is_empty() && std::path::Path::new("/var/lib/systemd/linger").join(user).exists()
}

fn usage(e: ScheduleError) -> Failure {
    Failure::usage(e.to_string())
}

fn failed(e: ScheduleError) -> Failure {
    match e {
        ScheduleError::Every { .. } | ScheduleError::Path { .. } => usage(e),
        ScheduleError::Home(e) => e.into(),
        e @ ScheduleError::Systemctl { .. } => {
            Failure::new(e.to_string()).hint("see `systemctl --user status` and `journalctl --user`")
        }
    }
}
