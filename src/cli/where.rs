//! `llmx auth where [TARGET…]`: every place this login was pushed (the ledger), or the targets
//! named, and what each holds now.

use crate::cli::bound::Judges;
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

Kinds: lease (an access-only copy: usable until its access token expires, renewed by `llmx auth
sync`), full (a whole login, pushed with --full), own (signed in on its own, e.g. `llmx auth
tunnel`), api-key.
States: same (what this machine would write there now), fresher (a full copy refreshed later
there: it rotated the refresh token; `llmx auth pull TARGET` or `llmx auth sync` adopts it),
older (same account, not newer: a full copy's refresh token is dead, its agent is signed out at
its next refresh; a lease from an earlier refresh; `llmx auth sync` fixes both), expiring (a
lease inside the renewal window), expired (a lease past its expiry: the place cannot work until
`llmx auth sync` renews it), other-account, api-key, missing, invalid, replaced (the name now
reaches another container or pod than the one written to: `llmx auth push` or `llmx auth
remove` it), unreachable: reason.
Exit status 0 when every holder is reachable and holds a working copy of this login's lineage,
1 otherwise.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", llmx::targets::spec::forms_help()))]
pub struct WhereArgs {
    /// Targets to survey (default: every target in the ledger); @FILE and - read them one a line
    #[arg(value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true)]
    pub targets: Vec<String>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,

    /// How many holders to contact at the same time (default: all of them, up to 256)
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..), long_help = crate::cli::JOBS_HELP)]
    pub jobs: Option<u16>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,
}

pub fn run(ctx: &Ctx, args: WhereArgs) -> Result<u8, Failure> {
    let specs = crate::cli::push::parse_targets(&args.targets)?;
    let mut ledger = ledger(ctx)?;
    // `--account LABEL` without targets: the places bound to that account.
    if let (Some(label), true) = (&ctx.account, specs.is_empty()) {
        ledger.entries = crate::cli::accounts::bound_to(ctx, label, &ledger)?;
    }
    let local = local(ctx)?;
    let rt = crate::cli::runtime()?;
    let survey = rt.block_on(async {
        let opts = args.k8s.resolve_options(&args.ssh, &args.docker);
        let mut holders = holders_named_or_all(&specs, &ledger, None, &opts).await;
        // With several accounts, each place is compared with the login of its account.
        let judges = Judges::for_holders(ctx, &holders)?;
        let each = judges.as_ref().map(Judges::each);
        let spinner = Spinner::new(args.json, holders.len(), "checking");
        let on_progress = |p: Progress<'_>| spinner.on_progress(p);
        let pair = local.as_ref().map(|(f, b)| (f, b.as_slice()));
        let window = ctx.settings().map(|s| s.lease_renew_within).unwrap_or(llmx::family::lease::DEFAULT_WINDOW);
        let jobs = args.jobs.map(usize::from);
        let s = survey::survey(pair, each.as_deref(), &mut holders, jobs, window, &on_progress).await;
        spinner.clear();
        Ok::<_, Failure>(s)
    })?;
    if args.json {
        output::json_line(&serde_json::json!({
            "auth_file": ctx.store()?.describe(),
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
            let kind = h.kind.map(|k| k.as_str()).unwrap_or("-");
            let mut text = format!("{:<6} {}", kind, h.state.as_str());
            if let Some(r) = &h.reason {
                text.push_str(&format!(": {r}"));
            }
            if let Some(exp) = &h.lease_expires_at {
                text.push_str(&format!("  (lease until {exp})"));
            } else if h.state.in_lineage() || h.state == State::OtherAccount {
                text.push_str(&format!("  (last refresh {})", h.last_refresh.as_deref().unwrap_or("never")));
            }
            if let Some(p) = &h.path {
                text.push_str(&format!("  {p}"));
            }
            if let Some(a) = &h.account {
                text.push_str(&format!("  (account {a})"));
            }
            if let Some(note) = h.store.as_deref().and_then(crate::cli::status::target_store_note) {
                text.push_str(&format!("  (store {}: {note})", h.store.as_deref().unwrap_or_default()));
            }
            // ✓ a working copy of this login's lineage; ✗ anything else (issue 20 item 5).
            let works = h.state.in_lineage() && h.state != State::Expired;
            let mark = if works {
                output::paint("✓", output::Paint::Good, false)
            } else {
                output::paint("✗", output::Paint::Bad, false)
            };
            lines.push(format!("{mark} {:width$}  {text}", h.target));
        }
        let working = survey.holders.iter().filter(|h| h.state.in_lineage() && h.state != State::Expired).count();
        let n = survey.holders.len();
        lines.push(format!("{n} holder{}: {working} working, {} not", if n == 1 { "" } else { "s" }, n - working));
        lines.push(format!(
            "this machine: last refresh {}",
            survey.local_last_refresh.as_deref().unwrap_or("never (no ChatGPT login here)")
        ));
        lines.extend(hints(&survey));
        output::lines(&lines)?;
    }
    Ok(if survey.all_in_lineage() { 0 } else { 1 })
}

/// What the states found mean for the user, and what to run.
fn hints(survey: &llmx::family::survey::Survey) -> Vec<String> {
    use llmx::family::lease::Kind;
    let mut out = Vec::new();
    let count = |st: State| survey.count(&st);
    let full_older = survey.holders.iter().filter(|h| h.state == State::Older && h.kind == Some(Kind::Full)).count();
    if count(State::Fresher) > 0 {
        out.push(
            "hint: a holder refreshed on its own; `llmx auth sync` adopts its copy (checked with the issuer) and writes it everywhere"
                .into(),
        );
    }
    if full_older > 0 {
        out.push(format!(
            "hint: {full_older} full cop{} older than this machine's: {} agent{} signed out at {} next refresh (refresh_token_reused); run `llmx auth sync`",
            if full_older == 1 { "y is" } else { "ies are" },
            if full_older == 1 { "its" } else { "their" },
            if full_older == 1 { " is" } else { "s are" },
            if full_older == 1 { "its" } else { "their" },
        ));
    }
    let replaced: Vec<&str> =
        survey.holders.iter().filter(|h| h.state == State::Replaced).map(|h| h.target.as_str()).collect();
    if !replaced.is_empty() {
        out.push(format!(
            "hint: {} recreated under the same name, the copy gone with the old one: `llmx auth push {}` gives the new one a copy, `llmx auth remove {}` forgets the old one",
            if replaced.len() == 1 { "1 holder was".to_string() } else { format!("{} holders were", replaced.len()) },
            replaced.join(" "),
            replaced.join(" "),
        ));
    }
    let stale = count(State::Expired)
        + count(State::Expiring)
        + survey.holders.iter().filter(|h| h.state == State::Older && h.kind == Some(Kind::Lease)).count();
    if stale > 0 {
        out.push(format!(
            "hint: {stale} lease{} due for renewal ({} expired): run `llmx auth sync`, or schedule it with `llmx auth sync --schedule`",
            if stale == 1 { " is" } else { "s are" },
            count(State::Expired)
        ));
    }
    out
}
