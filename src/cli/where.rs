//! `llmx auth where [TARGET…]`: every place this login was pushed (the ledger), or the targets
//! named, and what each holds now.

use crate::cli::family::{Spinner, ledger, local};
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, output};
use clap::Args;
use llmx::family::{Progress, State, holders_named_or_all, survey};

const EXAMPLES: &str = "\
Examples:
  llmx auth where                 # every holder and what it holds now
  llmx auth where docker:web ssh:build-01   # only these targets (ledger entries or not)
  llmx auth where @fleet.txt      # the targets listed in a file, one a line (`-`: stdin)
  llmx auth where --json | jq -r '.holders[] | select(.state != \"same\") | .target'

States: same (the bytes this machine holds), fresher (same account, refreshed later there: it
rotated the refresh token; `llmx auth pull TARGET` or `llmx auth sync` adopts it), older (same
account, not newer: its refresh token is probably dead; `llmx auth sync` fixes it),
other-account, api-key, missing, invalid, unreachable: reason.
Exit status 0 when every holder is reachable and holds this login's lineage (same, fresher or
older), 1 otherwise.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", llmx::targets::spec::forms_help()))]
pub struct WhereArgs {
    /// Targets to survey (default: every target in the ledger); @FILE and - read them one a line
    #[arg(value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true)]
    pub targets: Vec<String>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,

    /// How many holders to contact at the same time
    #[arg(long, short = 'j', value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,
}

pub fn run(ctx: &Ctx, args: WhereArgs) -> Result<u8, Failure> {
    let specs = crate::cli::push::parse_targets(&args.targets)?;
    let ledger = ledger(ctx)?;
    let local = local(ctx)?;
    let rt = crate::cli::runtime()?;
    let survey = rt.block_on(async {
        let opts = args.k8s.resolve_options(&args.ssh, &args.docker);
        let mut holders = holders_named_or_all(&specs, &ledger, None, &opts).await;
        let spinner = Spinner::new(args.json, holders.len(), "checking");
        let on_progress = |p: Progress<'_>| spinner.on_progress(p);
        let pair = local.as_ref().map(|(f, b)| (f, b.as_slice()));
        let s = survey::survey(pair, &mut holders, usize::from(args.jobs), &on_progress).await;
        spinner.clear();
        s
    });
    if args.json {
        output::json_line(&serde_json::json!({
            "auth_file": ctx.home.auth_path().display().to_string(),
            "local_last_refresh": survey.local_last_refresh,
            "local_account_id": survey.local_account_id,
            "holders": survey.holders,
            "ok": survey.all_in_lineage(),
        }))?;
    } else if survey.holders.is_empty() {
        output::lines(&["No pushes recorded: this login lives only here (see `llmx auth push`).".into()])?;
    } else {
        let width = survey.holders.iter().map(|h| h.target.chars().count()).max().unwrap_or(0);
        let mut lines = Vec::new();
        for h in &survey.holders {
            let mut text = h.state.as_str().to_string();
            if let Some(r) = &h.reason {
                text.push_str(&format!(": {r}"));
            }
            if h.state.in_lineage() || h.state == State::OtherAccount {
                text.push_str(&format!("  (last refresh {})", h.last_refresh.as_deref().unwrap_or("never")));
            }
            if let Some(p) = &h.path {
                text.push_str(&format!("  {p}"));
            }
            lines.push(format!("{:width$}  {text}", h.target));
        }
        lines.push(format!(
            "this machine: last refresh {}",
            survey.local_last_refresh.as_deref().unwrap_or("never (no ChatGPT login here)")
        ));
        if survey.holders.iter().any(|h| h.state == State::Fresher) {
            lines.push(
                "hint: a holder refreshed on its own; `llmx auth sync` makes its copy the one live copy everywhere"
                    .into(),
            );
        }
        output::lines(&lines)?;
    }
    Ok(if survey.all_in_lineage() { 0 } else { 1 })
}
