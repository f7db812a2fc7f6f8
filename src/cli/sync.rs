//! `llmx auth sync [TARGET…]`: one live copy of this login everywhere (see `family::sync`).

use crate::cli::family::{FleetArgs, ledger};
use crate::cli::push::{check_remote_home, parse_targets};
use crate::cli::push_view::PushView;
use crate::cli::refresh::client;
use crate::cli::{Ctx, Failure, Kind};
use clap::Args;
use llmx::family::holders_named_or_all;
use llmx::family::sync::{SyncError, SyncOptions, sync};
use llmx::push::{PushEvent, PushSummary};
use llmx::targets::spec;

const EXAMPLES: &str = "\
Examples:
  llmx auth sync                        # every holder in the ledger
  llmx auth sync docker:web ssh:build-01
  llmx auth sync --dry-run              # what it would do, writing nothing
  llmx auth sync --refresh --json       # refresh now, then write everywhere
  llmx auth sync --schedule --every 6h  # a systemd user timer (else prints a crontab line)
  llmx auth sync --unschedule
  llmx auth sync --owner k8s:agents/secret/llmx-owner k8s:agents/secret/llmx-lease   # in a CronJob

Gathers every holder's copy, takes the newest copy of this account (here or on a holder),
refreshes it once here when its access token expires within --refresh-within, then writes that
file here and to every holder of the login, so exactly one live copy remains. Holders of another
account or of an API key are reported (skipped) and left alone. Run it from cron or a systemd
timer as the fleet's one refresher (docs/headless.md). Exit status 0 only when nothing failed.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", spec::forms_help()))]
pub struct SyncArgs {
    /// Holders to sync (default: every target in the ledger)
    #[arg(value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true)]
    pub targets: Vec<String>,

    /// Refresh when the access token expires within this long (e.g. 2d, 12h, 30m)
    #[arg(long, value_name = "DURATION", default_value = "2d", value_parser = parse_duration)]
    pub refresh_within: time::Duration,

    /// Refresh now, however long the access token has left
    #[arg(long)]
    pub refresh: bool,

    /// Gather and decide, but write nothing and do not refresh
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub fleet: FleetArgs,

    #[command(flatten)]
    pub schedule: crate::cli::schedule::ScheduleArgs,

    #[command(flatten)]
    pub owner: crate::cli::owner::OwnerArgs,
}

/// `2d`, `12h`, `30m`, `45s` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 2d, 12h, 30m or 45s"))?;
    match unit {
        "d" => Ok(time::Duration::days(n)),
        "h" => Ok(time::Duration::hours(n)),
        "m" => Ok(time::Duration::minutes(n)),
        "s" | "" => Ok(time::Duration::seconds(n)),
        _ => Err(format!("'{s}' is not a duration like 2d, 12h, 30m or 45s")),
    }
}

pub fn run(ctx: &Ctx, args: SyncArgs) -> Result<u8, Failure> {
    if let Some(code) = crate::cli::schedule::run(ctx, &args.schedule, args.fleet.json)? {
        return Ok(code);
    }
    let (owner, json) = (args.owner.clone(), args.fleet.json);
    let k8s = args.fleet.k8s.resolve_options(&args.fleet.ssh, &args.fleet.docker).k8s;
    crate::cli::owner::around(ctx, &owner, k8s, json, || sync_here(ctx, args))
}

fn sync_here(ctx: &Ctx, args: SyncArgs) -> Result<u8, Failure> {
    let specs = parse_targets(&args.targets)?;
    check_remote_home(args.fleet.remote_home.as_deref())?;
    let client = client(ctx)?;
    let ledger = ledger(ctx)?;
    let opts = SyncOptions {
        jobs: usize::from(args.fleet.jobs),
        refresh: args.refresh,
        refresh_within: args.refresh_within,
        dry_run: args.dry_run,
    };
    let path = ctx.home.auth_path();
    let rt = crate::cli::runtime()?;
    rt.block_on(async {
        let resolve = args.fleet.k8s.resolve_options_for(&args.fleet.ssh, &args.fleet.docker, args.dry_run);
        let mut holders = holders_named_or_all(&specs, &ledger, args.fleet.remote_home.as_deref(), &resolve).await;
        let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
        let view = PushView::new(args.fleet.json, &labels);
        let on_event = |e: PushEvent<'_>| view.on_event(e);
        let s = sync(&path, &mut holders, &client, &opts, &on_event).await.map_err(|e| failure(e, &path))?;
        let mut extra = serde_json::Map::new();
        extra.insert("local".into(), serde_json::to_value(&s.local).unwrap_or_default());
        extra.insert("source".into(), s.source.clone().into());
        extra.insert("refreshed".into(), s.refreshed.into());
        extra.insert("last_refresh".into(), s.last_refresh.clone().into());
        extra.insert("ok".into(), s.all_ok().into());
        let local = format!(
            "local  {} {}{}; newest copy from {}{}",
            s.local.outcome.as_str(),
            path.display(),
            s.local.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
            s.source,
            if s.refreshed { ", refreshed once here" } else { "" }
        );
        let summary = PushSummary { reports: s.reports.clone(), warnings: Vec::new() };
        view.finish_with(&summary, extra, &[local])?;
        Ok(if s.all_ok() { 0 } else { 1 })
    })
}

fn failure(e: SyncError, path: &std::path::Path) -> Failure {
    match e {
        SyncError::NoLogin { .. } => Failure::of(Kind::NotLoggedIn, e.to_string())
            .hint("sign in with `llmx login`, or adopt a holder's copy with `llmx auth pull TARGET`"),
        SyncError::File(e) => e.into(),
        SyncError::Lock(e) => e.into(),
        SyncError::Ledger(e) => e.into(),
        SyncError::Refresh(e) => {
            let f = crate::cli::refresh::failure(e, path);
            Failure { message: format!("sync stopped before writing any holder: {}", f.message), ..f }
        }
    }
}
