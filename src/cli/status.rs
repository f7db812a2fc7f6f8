//! `llmx login status` and `llmx auth status`: which credential is in use, without secrets.
//! Exit 0 when logged in, 1 when not.

use crate::auth::file::AuthFile;
use crate::auth::select::Source;
use crate::auth::status::StatusReport;
use crate::cli::{Ctx, Failure, output};
use crate::config::AuthMethod;
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: StatusArgs) -> Result<u8, Failure> {
    let settings = ctx.settings()?;
    let path = ctx.home.auth_path();
    let file = AuthFile::load(&path)?;
    let env_key = std::env::var("OPENAI_API_KEY").ok();
    let report = StatusReport::build(settings.preferred_auth_method, env_key.as_deref(), file.as_ref());
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a StatusReport,
            auth_file: String,
        }
        output::json_line(&Out { report: &report, auth_file: path.display().to_string() })?;
    } else {
        output::lines(&describe(&report, &path.display().to_string()))?;
    }
    Ok(if report.logged_in { 0 } else { 1 })
}

/// Human lines for a report; `origin` names the file the credential came from.
pub fn describe(r: &StatusReport, origin: &str) -> Vec<String> {
    let mut out = Vec::new();
    match r.method {
        None => out.push("Not logged in. Run `llmx login` (or `llmx login --with-api-key`).".to_string()),
        Some(AuthMethod::ApiKey) => {
            let from = match r.source {
                Some(Source::Env) => "the OPENAI_API_KEY environment variable".to_string(),
                _ => origin.to_string(),
            };
            out.push(format!("Logged in using an API key - {}", r.api_key.as_deref().unwrap_or("***")));
            out.push(format!("  Source: {from}"));
        }
        Some(AuthMethod::ChatGpt) => {
            out.push("Logged in using ChatGPT".to_string());
            out.push(format!("  Account: {}", r.email.as_deref().unwrap_or("(no email in id_token)")));
            if let Some(p) = &r.plan {
                out.push(format!("  Plan: {p}"));
            }
            if let Some(a) = &r.account_id {
                out.push(format!("  Account ID: {a}"));
            }
            out.push(format!("  Source: {origin}"));
        }
    }
    if r.logged_in {
        if let Some(t) = &r.last_refresh {
            out.push(format!("  Last refresh: {t}"));
        }
        if let Some(t) = &r.access_token_expires_at {
            out.push(format!("  Access token expires: {t}"));
        }
    }
    out
}
