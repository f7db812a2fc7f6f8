//! `llmx auth pull TARGET`: adopt a holder's fresher copy of this login.

use crate::cli::family::ledger;
use crate::cli::push::{check_remote_home, parse_targets};
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::family::holders_from_specs;
use llmx::family::pull::{PullError, pull};
use llmx::targets::spec;

const EXAMPLES: &str = "\
Examples:
  llmx auth pull docker:web        # the container refreshed on its own: take its copy
  llmx auth pull ssh:build-01 --force --json

The copy is taken only when it is the same account and fresher than this machine's (it has
rotated the refresh token, so the local one no longer works), and only on the issuer's word: its
refresh token is refreshed here and the answer must name this machine's account (nothing else of
the holder's file is taken); the renewed login is written back to the holder. Otherwise pull
refuses and says why. --force takes the holder's file as it is (never a missing or invalid file,
never a lease).";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", spec::forms_help()))]
pub struct PullArgs {
    /// The holder to take the login from
    #[arg(value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true)]
    pub target: String,

    /// Take its copy even when it is not fresher, or of another account, or an API key
    #[arg(long)]
    pub force: bool,

    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,

    /// Credential directory on the target (default: the one recorded when it was pushed)
    #[arg(long, value_name = "PATH")]
    pub remote_home: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,
}

pub fn run(ctx: &Ctx, args: PullArgs) -> Result<u8, Failure> {
    let specs = parse_targets(std::slice::from_ref(&args.target))?;
    check_remote_home(args.remote_home.as_deref())?;
    let ledger = ledger(ctx)?;
    let client = crate::cli::refresh::client(ctx)?;
    let rt = crate::cli::runtime()?;
    let mut path = ctx.auth_path()?;
    let result = rt.block_on(async {
        let opts = args.k8s.resolve_options(&args.ssh, &args.docker);
        let mut holders = holders_from_specs(&specs, &ledger, args.remote_home.as_deref(), &opts).await;
        // With several accounts, a place is pulled into the account it is bound to.
        if let (Some(b), [one]) = (crate::cli::bound::Binding::load(ctx)?, holders.as_slice())
            && let Some(label) = one.entry.as_ref().and_then(|e| b.owner_of(e))
        {
            path = b.path_of(&label);
        }
        let path = &path;
        match holders.as_mut_slice() {
            [one] => pull(&ctx.store_at(path)?, one, args.force, &client, &|_| {}).await.map_err(failure),
            [] => Err(Failure::new(format!("{}: nothing matches", args.target))),
            many => Err(Failure::usage(format!("{} matches {} containers; pull takes one", args.target, many.len()))
                .hint("name one container: `llmx auth pull docker:NAME`")),
        }
    });
    let pulled = result?;
    if args.json {
        output::json_line(&serde_json::json!({
            "target": pulled.target,
            "path": pulled.path,
            "state": pulled.state,
            "adopted": pulled.adopted,
            "verified_by_issuer": pulled.verified_by_issuer,
            "account_id": pulled.account_id,
            "email": pulled.email,
            "write_back_error": pulled.write_back_error,
            "last_refresh": pulled.last_refresh,
            "auth_file": path.display().to_string(),
        }))?;
    } else if pulled.adopted {
        let account = match (&pulled.email, &pulled.account_id) {
            (Some(e), Some(a)) => format!("{e}, account {a}"),
            (None, Some(a)) => format!("account {a}"),
            (Some(e), None) => e.clone(),
            (None, None) => "no account named".into(),
        };
        let how = if pulled.verified_by_issuer {
            "refreshed here: the issuer confirmed the account"
        } else {
            "taken as it was (--force)"
        };
        let mut lines = vec![format!(
            "Adopted the login of {} ({account}; {how}; last refresh {}) into {}",
            pulled.target,
            pulled.last_refresh.as_deref().unwrap_or("never"),
            path.display()
        )];
        if let Some(e) = &pulled.write_back_error {
            lines.push(format!(
                "  Note: the renewed login could not be written back to {} ({e}); run `llmx auth sync`",
                pulled.target
            ));
        }
        output::lines(&lines)?;
    } else {
        output::lines(&[format!("{} already holds this machine's copy; nothing to do", pulled.target)])?;
    }
    Ok(0)
}

fn failure(e: PullError) -> Failure {
    match e {
        PullError::Refused { ref hint, .. } => {
            let f = Failure::new(format!("not pulling from {e}"));
            match hint {
                Some(h) => f.hint(h.clone()),
                None => f,
            }
        }
        PullError::Target { ref source, .. } => {
            let f = Failure::of(Kind::of_target(source), e.to_string());
            match &source.hint {
                Some(h) => f.hint(h.clone()),
                None => f,
            }
        }
        PullError::File(e) => e.into(),
        PullError::Lock(e) => e.into(),
        PullError::Ledger(e) => e.into(),
    }
}
