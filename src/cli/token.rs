//! `llmx auth token`: print the current access token for scripts and other tools, as
//! `gh auth token` and `gcloud auth print-access-token` do. A ChatGPT login whose access token
//! expires within 5 minutes is refreshed once first, under the home's lock (a lease, which has
//! no refresh token, is printed while it is valid and refused once expired). `--json` gives
//! `{access_token, expires_at, account_id}`. A refresh token is never printed.

use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::auth::refresh::{self, When};
use llmx::auth::status::format_unix;

const EXAMPLES: &str = "\
Examples:
  llmx auth token                                   # the access token, one line on stdout
  curl -H \"Authorization: Bearer $(llmx auth token)\" https://…
  llmx auth token --json | jq -r .expires_at

Only the access token is printed (never the refresh token); it is refreshed first when it expires
within 5 minutes. Exit status 0 printed, 1 not logged in with ChatGPT (or a lease that has
expired), 3 the issuer is unreachable, 4 the login is no longer valid (run `llmx login`).";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TokenArgs {
    /// Print {access_token, expires_at, account_id} as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: TokenArgs) -> Result<u8, Failure> {
    let store = ctx.store()?;
    let not_chatgpt = || {
        Failure::of(
            Kind::NotLoggedIn,
            format!("no ChatGPT login in {}: there is no access token to print", store.describe()),
        )
        .hint("sign in with `llmx login` (an API key is used as it is: see `llmx login status`)")
    };
    let file = store.load()?.ok_or_else(not_chatgpt)?;
    let tokens = file.tokens.as_ref().ok_or_else(not_chatgpt)?;
    let now = time::OffsetDateTime::now_utc();
    let expiring = refresh::expires_within(&file, refresh::EXPIRY_MARGIN, now);
    let file = if expiring && !tokens.refresh_token.is_empty() {
        let client = crate::cli::refresh::client(ctx)?;
        let (store, r) =
            crate::cli::refresh::refresh_current(ctx, &client, When::ExpiresWithin(refresh::EXPIRY_MARGIN))?;
        r.map_err(|e| crate::cli::refresh::failure(e, store.path()))?;
        store.load()?.ok_or_else(not_chatgpt)?
    } else {
        file
    };
    let tokens = file.tokens.as_ref().ok_or_else(not_chatgpt)?;
    let exp = llmx::auth::claims::expiry(tokens.access_token.expose());
    if tokens.refresh_token.is_empty() && exp.is_some_and(|e| e <= now.unix_timestamp()) {
        return Err(Failure::of(
            Kind::NotLoggedIn,
            format!("{} holds a lease whose access token has expired", store.describe()),
        )
        .hint("the machine that pushed it renews it with `llmx auth sync`"));
    }
    if args.json {
        output::json_line(&serde_json::json!({
            "access_token": tokens.access_token.expose(),
            "expires_at": exp.and_then(format_unix),
            "account_id": file.account_id(),
        }))?;
    } else {
        output::lines(&[tokens.access_token.expose().to_string()])?;
    }
    Ok(0)
}
