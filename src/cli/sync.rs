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
  llmx auth sync --account work         # only the holders of one account (see `llmx auth list`)
  llmx auth sync --refresh --json       # refresh now, then write everywhere
  llmx auth sync --schedule --every 6h  # a systemd user timer (else prints a crontab line)
  llmx auth sync --unschedule
  llmx auth sync --owner k8s:agents/secret/llmx-owner k8s:agents/secret/llmx-lease   # in a CronJob

Renews leases and keeps one live lineage: gathers every holder's copy, refreshes this machine's
login once when its access token expires within --renew-within (at most one issuer call
however many holders; a holder's fresher full copy is adopted only when the issuer accepts its
refresh token for this account), then writes every lease holder the new lease and every
`--full` holder the full file. Holders of another account, of an API key, machines signed in on
their own, and a lease holder that now holds a full copy are reported and left alone. Run it
from cron or a systemd timer as the fleet's one refresher (docs/headless.md). With several
accounts (`llmx auth list`) and no TARGET, each account's holders are synced in turn, with at
most one refresh per account. Exit status 0 only
when nothing failed; the failures are listed.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", spec::forms_help()))]
pub struct SyncArgs {
    /// Holders to sync (default: every target in the ledger)
    #[arg(value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true)]
    pub targets: Vec<String>,

    /// Renew (refresh here once, rewrite every lease) when the access token expires within this
    /// long, e.g. 2d, 12h, 30m (default: config `lease_renew_within`, else 2d)
    #[arg(long, alias = "refresh-within", value_name = "DURATION", value_parser = llmx::config::parse_duration)]
    pub renew_within: Option<time::Duration>,

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
        jobs: args.fleet.jobs.map(usize::from),
        refresh: args.refresh,
        refresh_within: match args.renew_within {
            Some(d) => d,
            None => ctx.settings()?.lease_renew_within,
        },
        dry_run: args.dry_run,
        ledger_dir: Some(ctx.home.dir().to_path_buf()),
        live: Some(ctx.store_at(&ctx.home.auth_path())?),
    };
    // With accounts: one run per account over its own holders (one refresh each at most).
    let mut code = 0;
    for run in crate::cli::accounts::sync_runs(ctx, !specs.is_empty(), &ledger)? {
        code = code.max(sync_one(ctx, &args, &specs, &client, &opts, run)?);
    }
    Ok(code)
}

fn sync_one(
    ctx: &Ctx,
    args: &SyncArgs,
    specs: &[llmx::targets::TargetSpec],
    client: &llmx::auth::oauth::OAuthClient,
    opts: &SyncOptions,
    run: crate::cli::accounts::SyncRun,
) -> Result<u8, Failure> {
    let crate::cli::accounts::SyncRun { label, path, ledger } = run;
    let store = ctx.store_at(&path)?;
    let rt = crate::cli::runtime()?;
    rt.block_on(async {
        let resolve = args.fleet.k8s.resolve_options_for(&args.fleet.ssh, &args.fleet.docker, args.dry_run);
        let mut holders = holders_named_or_all(specs, &ledger, args.fleet.remote_home.as_deref(), &resolve).await;
        let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
        let view = PushView::new(args.fleet.json, &labels);
        let on_event = |e: PushEvent<'_>| view.on_event(e);
        let s = sync(&store, &mut holders, client, opts, &on_event).await.map_err(|e| failure(e, &path))?;
        let mut extra = serde_json::Map::new();
        extra.insert("account".into(), label.clone().into());
        extra.insert("local".into(), serde_json::to_value(&s.local).unwrap_or_default());
        extra.insert("source".into(), s.source.clone().into());
        extra.insert("refreshed".into(), s.refreshed.into());
        extra.insert("issuer_calls".into(), s.issuer_calls.into());
        extra.insert("lease_expires_at".into(), s.lease_expires_at.clone().into());
        extra.insert("last_refresh".into(), s.last_refresh.clone().into());
        extra.insert("ok".into(), s.all_ok().into());
        let local = format!(
            "local{}  {} {}{}; newest copy from {}{}",
            label.as_deref().map(|l| format!(" (account {l})")).unwrap_or_default(),
            // A dry run says what would happen, as the holders' rows do.
            match (args.dry_run, s.local.outcome) {
                (true, llmx::push::Outcome::Updated) => "would update",
                (_, o) => o.as_str(),
            },
            path.display(),
            s.local.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
            s.source,
            if s.refreshed { ", refreshed once here" } else { "" }
        );
        let mut tail = vec![local];
        if let Some(exp) = s.lease_expires_at.as_ref().filter(|_| !args.dry_run) {
            tail.push(format!("leases now usable until {exp}"));
        }
        let summary = PushSummary { reports: s.reports.clone(), warnings: Vec::new() };
        view.finish_with(&summary, extra, &tail)?;
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
