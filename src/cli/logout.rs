//! `llmx logout`: revoke a ChatGPT login's refresh token and remove auth.json (idempotent:
//! logging out twice is not an error). When the ledger knows other copies of the login, it
//! refuses unless `--everywhere` (remove those copies, then revoke) or `--local` (delete only
//! the local file, revoke nothing).

use crate::cli::refresh::client;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, output};
use clap::Args;
use llmx::auth::logout::Revocation;
use llmx::auth::refresh::RECOVERY_FILE;
use llmx::auth::status::format_unix;
use llmx::auth::store::Store;
use llmx::family::logout::{FamilyLogoutError, Scope, logout};
use llmx::push::{Outcome, PushEvent};

const EXAMPLES: &str = "\
Examples:
  llmx logout                    # revoke the login at the issuer and delete auth.json
  llmx logout --everywhere       # first delete every pushed copy (see `llmx auth where`)
  llmx logout --local            # delete only this machine's file; pushed copies keep working
  llmx logout --account work     # one account of several (see `llmx auth list`)

Revoking a ChatGPT login signs out every copy of it (leases lose their renewal), so logout
refuses while the ledger knows other copies, unless --everywhere or --local says which you mean.
Users of the provider report that a revoke is account-wide: it also signs out machines that
signed in with the same account on their own (e.g. through `llmx auth tunnel`); logout says so
before revoking and names the ones the ledger knows. --everywhere asks first on a terminal
(--yes skips the question).";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct LogoutArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,

    /// Remove every pushed copy of this login first, then revoke it
    #[arg(long, conflicts_with = "local")]
    pub everywhere: bool,

    /// Delete only the local auth.json; revoke nothing (pushed copies keep working)
    #[arg(long)]
    pub local: bool,

    /// Do not ask before --everywhere removes the copies and revokes
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// With --everywhere: reach every copy and say what would be removed; remove, revoke and
    /// delete nothing
    #[arg(long, requires = "everywhere")]
    pub dry_run: bool,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,
}

pub fn run(ctx: &Ctx, args: LogoutArgs) -> Result<u8, Failure> {
    // With accounts: the account logged out (the active one by default) is forgotten after.
    let accounts = ctx.accounts()?;
    let (path, account) = match &ctx.account {
        Some(label) => (accounts.resolve(label)?, Some(label.clone())),
        None if accounts.exist() => (ctx.home.auth_path(), accounts.adopt(false)?),
        None => (ctx.home.auth_path(), None),
    };
    let scope = match (args.everywhere, args.local) {
        (true, _) => Scope::Everywhere,
        (_, true) => Scope::Local,
        _ => Scope::Default,
    };
    let client = client(ctx)?;
    let store = ctx.store_at(&path)?;
    if scope != Scope::Local && !warn_before_revoking(ctx, &store, scope, args.yes || args.dry_run)? {
        return Err(Failure::new("logout cancelled: nothing was removed or revoked"));
    }
    let rt = crate::cli::runtime()?;
    // The copies removed by --everywhere are listed after the fact, with the local result.
    let on_event = |_: PushEvent<'_>| {};
    let resolve = args.k8s.resolve_options(&args.ssh, &args.docker);
    let done = rt.block_on(logout(&store, &client, scope, &resolve, None, args.dry_run, &on_event)).map_err(|e| match e {
        FamilyLogoutError::LiveCopies { .. } => Failure::new(format!("not logging out: {e}")).hint(
            "`llmx logout --everywhere` removes those copies and revokes; `llmx logout --local` deletes only this machine's file",
        ),
        FamilyLogoutError::Ledger(e) => e.into(),
        FamilyLogoutError::Logout(e) => Failure::new(e.to_string()),
    })?;
    if let Some(label) = account.as_ref().filter(|_| !args.dry_run) {
        accounts.forget(label)?;
    }
    let env_key_set = std::env::var("OPENAI_API_KEY").is_ok_and(|v| !v.is_empty());
    let (revoked, revoke_error) = match &done.local.revocation {
        Revocation::Revoked => (true, None),
        Revocation::NotAttempted => (false, None),
        Revocation::Failed(why) => (false, Some(why.clone())),
    };
    let failed = done.remote.iter().filter(|r| r.outcome == Outcome::Failed).count();
    if args.json {
        output::json_line(&serde_json::json!({
            "removed": done.local.removed,
            "dry_run": args.dry_run,
            "account": account,
            "auth_file": path.display().to_string(),
            "env_api_key_set": env_key_set,
            "revoked": revoked,
            "revoke_error": revoke_error,
            "recovery_file_removed": done.local.recovered.is_some(),
            "ledger_unreadable": done.ledger_unreadable,
            "access_expires_at": done.access_expires_at.and_then(format_unix),
            "scope": match scope { Scope::Default => "default", Scope::Everywhere => "everywhere", Scope::Local => "local" },
            "remote": done.remote,
        }))?;
    } else {
        let mut lines: Vec<String> = done
            .remote
            .iter()
            .map(|r| {
                format!(
                    "{}  {}{}{}",
                    r.target,
                    if r.dry_run { "would be " } else { "" },
                    r.outcome.as_str(),
                    r.reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
                )
            })
            .collect();
        lines.push(if args.dry_run {
            format!(
                "Dry run: would remove the copies above, then revoke this login and delete {}; nothing was done",
                path.display()
            )
        } else if done.local.removed {
            "Logged out: removed ".to_string() + &store.describe()
        } else {
            "Not logged in: nothing to remove".to_string()
        });
        if let Some(label) = account.as_ref().filter(|_| !args.dry_run) {
            lines.push(format!("Forgot the account {label} (`llmx auth list` shows the others)"));
        }
        if let Some(why) = &done.ledger_unreadable {
            lines.push(format!(
                "Note: the ledger ({}) could not be read ({why}): copies of this login it may list were \
                 neither checked nor removed",
                ctx.home.dir().join(llmx::family::ledger::LEDGER_FILE).display()
            ));
        }
        if revoked {
            let until = done.access_expires_at.and_then(format_unix).map(|t| format!(" ({t})")).unwrap_or_default();
            let kept: Vec<&str> =
                done.remote.iter().filter(|r| r.outcome == Outcome::Failed).map(|r| r.target.as_str()).collect();
            lines.push(if kept.is_empty() {
                "Revoked the refresh token at the issuer: no copy of this login can renew it any more".into()
            } else {
                format!(
                    "Revoked the refresh token at the issuer, but {} cop{} could not be removed ({}): an access \
                     token is not revoked, so {} keeps working until it expires{until}, then cannot renew",
                    kept.len(),
                    if kept.len() == 1 { "y" } else { "ies" },
                    kept.join(", "),
                    if kept.len() == 1 { "it" } else { "each" },
                )
            });
        }
        if let Some(why) = &revoke_error {
            lines.push(format!("Note: could not revoke the refresh token ({why}); it stays valid until it expires"));
        }
        if let Some(r) = &done.local.recovered {
            lines.push(match r {
                Revocation::Revoked => format!("Removed {} and revoked its refresh token", RECOVERY_FILE),
                Revocation::NotAttempted => format!("Removed {}", RECOVERY_FILE),
                Revocation::Failed(why) => format!(
                    "Removed {RECOVERY_FILE}; could not revoke its refresh token ({why}): it stays valid until it expires"
                ),
            });
        }
        if env_key_set {
            lines.push(
                "Note: OPENAI_API_KEY is set in this environment and still applies; unset it to log out fully.".into(),
            );
        }
        output::lines(&lines)?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Before a revoke: one line saying it is account-wide, naming the machines the ledger knows
/// signed in on their own; with `--everywhere` on a terminal, ask (unless `--yes`). Whether to go on.
fn warn_before_revoking(ctx: &Ctx, store: &Store, scope: Scope, yes: bool) -> Result<bool, Failure> {
    use llmx::family::ledger::Ledger;
    use std::io::IsTerminal;
    let Ok(Some(file)) = store.load() else { return Ok(true) };
    if file.tokens.as_ref().is_none_or(|t| t.refresh_token.is_empty()) {
        return Ok(true);
    }
    let ledger = Ledger::load(ctx.home.dir()).unwrap_or_default();
    let own = llmx::family::logout::signed_in_separately(&ledger, &file);
    let copies = llmx::family::logout::live_copies(&ledger, &file).len();
    if scope == Scope::Default && copies > 0 {
        return Ok(true); // refused below, with the list of copies
    }
    let named = if own.is_empty() { String::new() } else { format!(" (the ledger knows: {})", own.join(", ")) };
    output::warning(
        &format!(
            "logout revokes this login at the issuer, and a revoke is account-wide: it also signs out machines that signed in on their own with this account{named}"
        ),
        Some("`llmx logout --local` deletes only this machine's file and revokes nothing"),
    );
    if scope != Scope::Everywhere || yes || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(true);
    }
    output::err_lines(&[format!(
        "Remove {copies} cop{} of this login and revoke it? [y/N] ",
        if copies == 1 { "y" } else { "ies" }
    )]);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
