//! `llmx auth refresh`: refresh the stored ChatGPT tokens now. auth.json is left untouched on any
//! failure; a permanent one (the refresh token is no longer valid) says to log in again.

use crate::cli::{Ctx, Failure, output};
use clap::Args;
use llmx::auth::oauth::{OAuthClient, RefreshError};
use llmx::auth::refresh::{self, RefreshFailure};
use llmx::auth::status::format_unix;

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: RefreshArgs) -> Result<u8, Failure> {
    let settings = ctx.settings()?;
    let client = OAuthClient::new(&settings.auth_issuer, &settings.auth_client_id)
        .map_err(|e| Failure::usage(e.to_string()).hint("check auth_issuer in config.toml or your -c override"))?;
    let path = ctx.home.auth_path();
    let runtime = crate::cli::runtime()?;
    match runtime.block_on(refresh::refresh(&path, &client)) {
        Ok(r) => {
            let expires = r.access_token_expires_at.and_then(format_unix);
            if args.json {
                output::json_line(&serde_json::json!({
                    "refreshed": true,
                    "auth_file": path.display().to_string(),
                    "email": r.email,
                    "last_refresh": r.last_refresh,
                    "access_token_expires_at": expires,
                    "refresh_token_rotated": r.refresh_token_rotated,
                }))?;
            } else {
                let mut lines = vec![format!(
                    "Refreshed the ChatGPT login{}",
                    r.email.as_deref().map(|e| format!(" of {e}")).unwrap_or_default()
                )];
                if let Some(t) = expires {
                    lines.push(format!("  Access token expires: {t}"));
                }
                output::lines(&lines)?;
            }
            Ok(0)
        }
        Err(e) => {
            if args.json {
                let code = match &e {
                    RefreshFailure::Issuer(RefreshError::Permanent { code }) => Some(code.clone()),
                    _ => None,
                };
                output::json_line(&serde_json::json!({
                    "refreshed": false,
                    "permanent": e.is_permanent(),
                    "code": code,
                    "error": e.to_string(),
                }))?;
            }
            Err(failure(e))
        }
    }
}

fn failure(e: RefreshFailure) -> Failure {
    match e {
        RefreshFailure::File(e) => e.into(),
        RefreshFailure::NoTokens { .. } => {
            Failure::new(e.to_string()).hint("sign in with `llmx login` first (an API key needs no refresh)")
        }
        RefreshFailure::Issuer(RefreshError::Permanent { ref code }) => {
            let why = if code == "refresh_token_reused" {
                " (another copy of this login refreshed first: keep one live copy per machine, see docs/headless.md)"
            } else {
                ""
            };
            Failure::new(format!("{e}; auth.json was left unchanged"))
                .hint(format!("run `llmx login` to sign in again{why}"))
        }
        RefreshFailure::Issuer(RefreshError::Transient(_)) => {
            Failure::new(format!("could not refresh: {e}; auth.json was left unchanged"))
                .hint("the stored tokens may still work; try `llmx auth refresh` again later")
        }
    }
}
