//! `llmx auth push TARGET...`: copy this machine's auth.json to containers and hosts.
//!
//! Two phases (ripgrep's habit): first every argument is validated with no side effect (a
//! malformed target or option is exit 2 before anything connects; a malformed local auth.json
//! is refused before any target is touched), then the targets are resolved and pushed.

use crate::cli::push_view::PushView;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure};
use clap::Args;
use llmx::auth::refresh;
use llmx::push::{LocalCredential, LocalError, PushEvent, PushOptions};
use llmx::targets::{TargetSpec, spec};
use std::io::IsTerminal;

const EXAMPLES: &str = "\
Examples:
  llmx auth push docker:web                     # one container, by name or ID
  llmx auth push docker:label=llmx              # every running container labelled llmx
  llmx auth push docker:label=env=dev --dry-run # show where it would go, write nothing
  llmx auth push docker:a docker:b --json       # one JSON object per target, then a summary
  llmx auth push docker:web --remote-home /srv/llmx
  llmx auth push ssh:deploy@build-01 ssh:ci@10.0.0.7:2222   # SSH hosts (~/.ssh/config aliases work)
  llmx auth push ssh:new-host --accept-new       # record a first-seen host key (check it first)
  llmx auth push k8s:agents/deploy/workers      # every ready pod of a Deployment, through exec
  llmx auth push k8s:agents/secret/llmx-auth    # an Opaque Secret for pods to mount (no shell needed)
  llmx auth push --context prod k8s:pod/agent-0/sidecar

Each successful push is recorded in the ledger ($LLMX_HOME/ledger.json): see `llmx auth where`,
`llmx auth sync`, `llmx auth remove`. A login whose access token expires within 5 minutes is
refreshed before it is pushed. Targets that turn out to be the same destination (aliases of one
host) are written once.

Outcomes: created, updated, unchanged, skipped (the target holds a fresher login of the
same account; --force overwrites it), failed. Exit status 0 only when no target failed.
Copying a ChatGPT login shares one refresh token: see `llmx auth tunnel` for a separate
login per machine, or push an API key.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", spec::forms_help()))]
pub struct PushArgs {
    /// Where to copy auth.json (one or more; the forms are listed below)
    #[arg(required = true, value_name = "TARGET", help = format!("Where to copy auth.json: {}", spec::forms_list()))]
    pub targets: Vec<String>,

    /// How many targets to work on at the same time
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,

    /// Overwrite targets that hold a fresher login of the same account
    #[arg(long)]
    pub force: bool,

    /// Resolve every target and report the path and the action, but write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON object per target and a summary object on stdout
    #[arg(long)]
    pub json: bool,

    /// Credential directory on every target (default: the target's LLMX_HOME, else ~/.llmx)
    #[arg(long, value_name = "PATH")]
    pub remote_home: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,
}

/// Parse target arguments; a malformed one is a usage error (exit 2).
pub fn parse_targets(raw: &[String]) -> Result<Vec<TargetSpec>, Failure> {
    raw.iter().map(|t| t.parse::<TargetSpec>().map_err(|e| Failure::usage(e.to_string()))).collect()
}

/// Check `--remote-home`: an absolute path (exit 2 otherwise).
pub fn check_remote_home(p: Option<&str>) -> Result<(), Failure> {
    match p {
        Some(p) if !p.starts_with('/') || p.split('/').any(|c| c == "..") => {
            Err(Failure::usage(format!("--remote-home '{p}' must be an absolute path without '..'")))
        }
        _ => Ok(()),
    }
}

/// A ChatGPT login whose access token expires within 5 minutes is refreshed (under the lock)
/// before it is copied anywhere: a copy that must refresh at once is a copy about to race.
fn refresh_if_expiring(ctx: &Ctx, dry_run: bool) -> Result<(), Failure> {
    let path = ctx.home.auth_path();
    let Ok(Some(file)) = llmx::auth::file::AuthFile::load(&path) else { return Ok(()) };
    let now = time::OffsetDateTime::now_utc();
    if dry_run || !refresh::expires_within(&file, refresh::EXPIRY_MARGIN, now) {
        return Ok(());
    }
    let client = crate::cli::refresh::client(ctx)?;
    let rt = crate::cli::runtime()?;
    rt.block_on(refresh::refresh_home(&path, &client, refresh::When::ExpiresWithin(refresh::EXPIRY_MARGIN)))
        .map(|_| ())
        .map_err(|e| crate::cli::refresh::failure(e, &path))
}

pub fn run(ctx: &Ctx, args: PushArgs) -> Result<u8, Failure> {
    let specs = parse_targets(&args.targets)?;
    check_remote_home(args.remote_home.as_deref())?;
    refresh_if_expiring(ctx, args.dry_run)?;
    let local = LocalCredential::load(&ctx.home.auth_path()).map_err(|e| match e {
        LocalError::Missing { .. } | LocalError::Empty { .. } => {
            Failure::new(e.to_string()).hint("run `llmx login` (or `llmx login --with-api-key`) first")
        }
        LocalError::Invalid(e) => Failure::from(e),
    })?;
    let opts = PushOptions {
        jobs: usize::from(args.jobs),
        force: args.force,
        dry_run: args.dry_run,
        remote_home: args.remote_home.clone(),
    };
    let rt = crate::cli::runtime()?;
    let summary = rt.block_on(async {
        let targets = llmx::targets::resolve::resolve(&specs, &args.k8s.resolve_options(&args.ssh)).await;
        let labels: Vec<String> = targets.iter().map(|t| t.label()).collect();
        let view = PushView::new(args.json, std::io::stderr().is_terminal(), &labels);
        let on_event = |e: PushEvent<'_>| view.on_event(e);
        let summary = llmx::push::push(&local, targets, &opts, &on_event).await;
        view.finish(&summary).map(|()| summary)
    })?;
    if !opts.dry_run {
        llmx::family::ledger::record_push(ctx.home.dir(), local.bytes(), &summary.reports)?;
    }
    Ok(if summary.all_ok() { 0 } else { 1 })
}
