//! `llmx auth remove TARGET…`: delete this login's copies from targets and the ledger.

use crate::cli::family::{ledger, local};
use crate::cli::push::{check_remote_home, parse_targets};
use crate::cli::push_view::PushView;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure};
use clap::Args;
use llmx::family::holders_from_specs;
use llmx::push::{PushEvent, PushSummary};
use llmx::targets::spec;

const EXAMPLES: &str = "\
Examples:
  llmx auth remove docker:web                # delete the container's copy of this login
  llmx auth remove ssh:old-host docker:label=ci --json
  llmx auth remove docker:web --force        # even when it holds another account or an API key

Outcomes: removed, unchanged (nothing to remove), skipped (not this login's copy; --force
removes it), failed. A stopped or shell-less container cannot have a file removed (the Engine
API cannot delete). Exit status 0 only when no target failed.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", spec::forms_help()))]
pub struct RemoveArgs {
    /// Targets to remove auth.json from
    #[arg(required = true, value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true)]
    pub targets: Vec<String>,

    /// Remove the file even when it is not a copy of this machine's login
    #[arg(long)]
    pub force: bool,

    /// Print one JSON object per target and a summary object on stdout
    #[arg(long)]
    pub json: bool,

    /// How many targets to work on at the same time
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,

    /// Credential directory on the targets (default: the one recorded when pushed)
    #[arg(long, value_name = "PATH")]
    pub remote_home: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,
}

pub fn run(ctx: &Ctx, args: RemoveArgs) -> Result<u8, Failure> {
    let specs = parse_targets(&args.targets)?;
    check_remote_home(args.remote_home.as_deref())?;
    let ledger = ledger(ctx)?;
    let local = local(ctx)?;
    let rt = crate::cli::runtime()?;
    rt.block_on(async {
        let resolve = args.k8s.resolve_options(&args.ssh);
        let mut holders = holders_from_specs(&specs, &ledger, args.remote_home.as_deref(), &resolve).await;
        let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
        let view = PushView::new(args.json, &labels);
        let on_event = |e: PushEvent<'_>| view.on_event(e);
        let pair = local.as_ref().map(|(f, b)| (f, b.as_slice()));
        let reports = llmx::family::remove::remove(
            ctx.home.dir(),
            pair,
            &mut holders,
            args.force,
            usize::from(args.jobs),
            &on_event,
        )
        .await?;
        let summary = PushSummary { reports, warnings: Vec::new() };
        view.finish(&summary)?;
        Ok(if summary.all_ok() { 0 } else { 1 })
    })
}
