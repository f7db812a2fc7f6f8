//! `llmx auth refresh`: refresh the stored ChatGPT tokens now, under the home's lock. When
//! another llmx refreshed while this one waited, its result is reported and the issuer is not
//! called again. auth.json is left untouched on any failure; a permanent one (the refresh token
//! is no longer valid) says to log in again; an accepted refresh that could not be saved names
//! the recovery file. Exit codes: 1 nothing to refresh, 3 the issuer is unreachable, 4 the login
//! is no longer valid (log in again); with `--json` the error object says `permanent`.

use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::auth::oauth::{OAuthClient, RefreshError};
use llmx::auth::refresh::{self, RefreshFailure, RefreshOutcome, When};
use llmx::auth::status::format_unix;
use llmx::auth::store::Store;

const EXAMPLES: &str = "\
Examples:
  llmx auth refresh                   # refresh now (waits for another llmx holding the lock)
  llmx auth refresh --json | jq .access_token_expires_at
  llmx auth refresh --json || case $? in 3) echo 'issuer down: retry later';; 4) llmx login;; esac

Exit status 0 refreshed, 1 nothing to refresh or not saved, 3 the issuer is unreachable (the
stored tokens may still work), 4 the login is no longer valid (run `llmx login`). auth.json is
left as it was on any failure.";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct RefreshArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// The OAuth client of the configured issuer (a bad `auth_issuer` is a config error, exit 2).
pub fn client(ctx: &Ctx) -> Result<OAuthClient, Failure> {
    let settings = ctx.settings()?;
    OAuthClient::new(&settings.auth_issuer, &settings.auth_client_id).map_err(|e| {
        Failure::of(Kind::Config, e.to_string()).hint("check auth_issuer in config.toml or your -c override")
    })
}

pub fn run(ctx: &Ctx, args: RefreshArgs) -> Result<u8, Failure> {
    let client = client(ctx)?;
    let (store, result) = refresh_current(ctx, &client, When::Always)?;
    let path = store.path().to_path_buf();
    let (r, by_other) = match result {
        Ok(RefreshOutcome::Refreshed(r)) => (r, false),
        Ok(RefreshOutcome::AlreadyRefreshed(r)) => (r, true),
        Ok(RefreshOutcome::NotNeeded) => return Err(Failure::of(Kind::NotLoggedIn, "nothing to refresh")),
        Err(e) => {
            // With --json the error object carries what a script needs to decide what next.
            let code = match &e {
                RefreshFailure::Issuer(RefreshError::Permanent { code }) => Some(code.clone()),
                _ => None,
            };
            let recovery = match &e {
                RefreshFailure::NotSaved { recovery, .. } => recovery.as_ref().map(|p| p.display().to_string()),
                _ => None,
            };
            let permanent = e.is_permanent();
            return Err(failure(e, &path)
                .extra("refreshed", false)
                .extra("permanent", permanent)
                .extra("code", code)
                .extra("recovery_file", recovery));
        }
    };
    let expires = r.access_token_expires_at.and_then(format_unix);
    if args.json {
        output::json_line(&serde_json::json!({
            "refreshed": true,
            "by_another_process": by_other,
            "auth_file": store.describe(),
            "email": r.email,
            "last_refresh": r.last_refresh,
            "access_token_expires_at": expires,
            "refresh_token_rotated": r.refresh_token_rotated,
        }))?;
    } else {
        let who = r.email.as_deref().map(|e| format!(" of {e}")).unwrap_or_default();
        let mut lines = vec![if by_other {
            format!("The ChatGPT login{who} was just refreshed by another llmx process; not refreshing again")
        } else {
            format!("Refreshed the ChatGPT login{who}")
        }];
        if let Some(t) = expires {
            lines.push(format!("  Access token expires: {t}"));
        }
        output::lines(&lines)?;
    }
    Ok(0)
}

/// Refresh the login this command works on (`--account`'s, else the live one): returns the
/// store it was in. An account made active while the refresh waited for its lock is refreshed
/// where it now lives, the live file (once; `RefreshFailure::Moved`).
pub fn refresh_current(
    ctx: &Ctx,
    client: &OAuthClient,
    when: When,
) -> Result<(Store, Result<RefreshOutcome, RefreshFailure>), Failure> {
    let runtime = crate::cli::runtime()?;
    let live = ctx.store_at(&ctx.home.auth_path())?;
    let mut store = ctx.store()?;
    let mut r = runtime.block_on(refresh::refresh_home(&store, client, when, Some(&live)));
    if let Err(RefreshFailure::Moved { .. }) = &r {
        store = live;
        r = runtime.block_on(refresh::refresh_home(&store, client, when, None));
    }
    Ok((store, r))
}

/// The one mapping of refresh failures to messages and hints (refresh, push, sync use it).
pub fn failure(e: RefreshFailure, path: &std::path::Path) -> Failure {
    match e {
        RefreshFailure::File(e) => e.into(),
        RefreshFailure::Lock(_) => Failure::new(e.to_string())
            .hint("wait for the other llmx to finish, or find it with `fuser` on the lock file"),
        RefreshFailure::Moved { .. } => Failure::new(e.to_string()).hint("run the command again"),
        RefreshFailure::NoTokens { .. } => Failure::of(Kind::NotLoggedIn, e.to_string())
            .hint("sign in with `llmx login` first (an API key needs no refresh)"),
        RefreshFailure::CannotSave { .. } => Failure::new(e.to_string())
            .hint(format!("make {} writable, then refresh again", path.parent().unwrap_or(path).display())),
        RefreshFailure::InvalidAnswer { .. } => Failure::new(e.to_string())
            .hint("try `llmx auth refresh` again; if the login no longer works, run `llmx login`"),
        RefreshFailure::PartlySaved { .. } | RefreshFailure::Salvage { .. } => Failure::new(e.to_string())
            .hint("run `llmx auth refresh` again for a new id_token (the saved refresh token works)"),
        RefreshFailure::NotSaved { ref recovery, .. } => {
            let hint = match recovery {
                Some(r) => format!("restore it with `mv {} {}`", r.display(), path.display()),
                None => "the new tokens could not be kept; run `llmx login`".to_string(),
            };
            Failure::new(e.to_string()).hint(hint)
        }
        RefreshFailure::Issuer(RefreshError::Permanent { ref code }) => {
            let why = if code == "refresh_token_reused" {
                " (another copy of this login refreshed first: run `llmx auth where`, or keep one live copy per machine, see docs/headless.md)"
            } else {
                ""
            };
            Failure::of(Kind::AuthNeeded, format!("{e}; auth.json was left unchanged"))
                .hint(format!("run `llmx login` to sign in again{why}"))
        }
        RefreshFailure::Issuer(RefreshError::Transient(ref o)) => {
            Failure::of(Kind::of_oauth(o), format!("could not refresh: {e}; auth.json was left unchanged"))
                .hint("the stored tokens may still work; try `llmx auth refresh` again later")
        }
    }
}
