//! `llmx auth remove TARGET…`: delete this login's copies from targets and the ledger.

use crate::cli::bound::Judges;
use crate::cli::family::{FleetArgs, ledger, local};
use crate::cli::push::{check_remote_home, parse_targets};
use crate::cli::push_view::PushView;
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
  llmx auth remove docker:label=ci --dry-run # what would be removed; deletes nothing

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

    /// Reach every target and say what would be removed, but delete nothing (the ledger too)
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub fn run(ctx: &Ctx, args: RemoveArgs) -> Result<u8, Failure> {
    let specs = parse_targets(&args.targets)?;
    check_remote_home(args.fleet.remote_home.as_deref())?;
    let ledger = ledger(ctx)?;
    let local = local(ctx)?;
    let rt = crate::cli::runtime()?;
    rt.block_on(async {
        let resolve = args.fleet.k8s.resolve_options(&args.fleet.ssh, &args.fleet.docker);
        let mut holders = holders_from_specs(&specs, &ledger, args.fleet.remote_home.as_deref(), &resolve).await;
        // With several accounts, a copy is judged "ours" by the login of the account it is bound to.
        let judges = Judges::for_holders(ctx, &holders)?;
        let each = judges.as_ref().map(Judges::each);
        let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
        let view = PushView::new(args.fleet.json, &labels);
        let on_event = |e: PushEvent<'_>| view.on_event(e);
        let pair = local.as_ref().map(|(f, b)| (f, b.as_slice()));
        let reports = llmx::family::remove::remove(
            ctx.home.dir(),
            pair,
            each.as_deref(),
            &mut holders,
            args.force,
            args.dry_run,
            args.fleet.jobs.map(usize::from),
            &on_event,
        )
        .await?;
        let summary = PushSummary { reports, warnings: Vec::new() };
        view.finish(&summary)?;
        Ok(if summary.all_ok() { 0 } else { 1 })
    })
}
