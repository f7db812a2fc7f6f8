//! `llmx login status` and `llmx auth status`: which credential is in use, without secrets.
//! Exit 0 when logged in, 1 when not.

use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, output, push};
use clap::Args;
use llmx::auth::file::AuthFile;
use llmx::auth::select::Source;
use llmx::auth::status::StatusReport;
use llmx::config::AuthMethod;
use llmx::targets::resolve::ResolveOptions;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

const AUTH_STATUS_EXAMPLES: &str = "\
Examples:
  llmx auth status                      # the credential in use on this machine
  llmx auth status docker:web           # what container web holds (owner, mode, expiry)
  llmx auth status docker:web --json
  llmx auth status ssh:deploy@build-01  # what an SSH host holds
  llmx auth status k8s:agents/secret/llmx-auth   # what a Kubernetes Secret holds";

/// `llmx auth status [TARGET]`.
#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{AUTH_STATUS_EXAMPLES}", llmx::targets::spec::forms_help()))]
pub struct AuthStatusArgs {
    /// Report on a target instead of this machine
    #[arg(value_name = "TARGET", help = format!("Report on a target instead of this machine: {}", llmx::targets::spec::forms_list()))]
    pub target: Option<String>,

    /// Credential directory on the target (default: its LLMX_HOME, else ~/.llmx)
    #[arg(long, value_name = "PATH", requires = "target")]
    pub remote_home: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub base: StatusArgs,
}

pub fn run_auth(ctx: &Ctx, args: AuthStatusArgs) -> Result<u8, Failure> {
    match &args.target {
        None => run(ctx, args.base),
        Some(t) => {
            run_target(ctx, t, args.remote_home.as_deref(), &args.k8s.resolve_options(&args.ssh), args.base.json)
        }
    }
}

/// The credential on one target, read through the push engine's target layer.
fn run_target(
    ctx: &Ctx,
    raw: &str,
    remote_home: Option<&str>,
    opts: &ResolveOptions,
    json: bool,
) -> Result<u8, Failure> {
    let spec = push::parse_targets(&[raw.to_string()])?.remove(0);
    push::check_remote_home(remote_home)?;
    let preferred = ctx.settings()?.preferred_auth_method;
    let status = crate::cli::runtime()?.block_on(async {
        let mut targets = llmx::targets::resolve::resolve(std::slice::from_ref(&spec), opts).await;
        if targets.len() != 1 {
            return Err(Failure::usage(format!(
                "{spec} matches {} containers; `auth status` reports on one (name it: docker:NAME)",
                targets.len()
            )));
        }
        let mut target = targets.remove(0);
        llmx::push::remote_status(target.as_mut(), remote_home, preferred, &|_| {}).await.map_err(|e| {
            let f = Failure::new(format!("{spec}: {}", e.message));
            match e.hint {
                Some(h) => f.hint(h),
                None => f,
            }
        })
    })?;
    if json {
        output::json_line(&status)?;
    } else {
        let mut lines = vec![format!("{} ({})", status.target, status.auth_file)];
        if status.report.logged_in {
            lines.extend(describe(&status.report, &status.auth_file).into_iter().map(|l| format!("  {l}")));
        } else if status.mode.is_some() {
            lines.push("  No usable credential in the file.".to_string());
        } else {
            lines.push(format!("  No credential. Push one with `llmx auth push {}`.", status.target));
        }
        if let (Some(u), Some(g), Some(m)) = (status.uid, status.gid, &status.mode) {
            lines.push(format!("    File: owner {u}:{g}, mode {m}"));
        }
        output::lines(&lines)?;
    }
    Ok(if status.report.logged_in { 0 } else { 1 })
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
