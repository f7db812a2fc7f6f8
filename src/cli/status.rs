//! `llmx login status` and `llmx auth status`: which credential is in use, without secrets.
//! Exit 0 when logged in, 1 when not.

use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, output, push};
use clap::Args;
use llmx::auth::select::Source;
use llmx::auth::status::StatusReport;
use llmx::auth::store::{Place, Store};
use llmx::config::AuthMethod;
use llmx::config::CredentialsStore;
use llmx::targets::TargetSpec;
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
  llmx auth status @fleet.txt           # each target listed in the file, one a line
  llmx auth status docker:label=agent   # every container it matches: a row each, then a recap
  llmx auth status k8s:agents/secret/llmx-auth   # what a Kubernetes Secret holds
  llmx auth status --all --json         # every account here; exit 1 when any is unusable

Exit status 0 logged in, 1 not, 3 the target is unreachable, 4 SSH authentication or an
unknown host key; with --json a failure is {\"error\":{\"kind\":...,\"message\":...}}.";

/// `llmx auth status [TARGET]`.
#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{AUTH_STATUS_EXAMPLES}", llmx::targets::spec::forms_help()))]
pub struct AuthStatusArgs {
    /// Report on targets instead of this machine
    #[arg(value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true, help = format!("Report on targets instead of this machine: {}; @FILE or - (stdin): the targets listed one a line", llmx::targets::spec::forms_list()))]
    pub targets: Vec<String>,

    /// Credential directory on the target (default: its LLMX_HOME, else ~/.llmx)
    #[arg(long, value_name = "PATH", requires = "targets")]
    pub remote_home: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,

    /// Every account of this home (`llmx auth list`): usable or not, from the local facts;
    /// exit 1 when any is unusable
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,

    #[command(flatten)]
    pub base: StatusArgs,
}

pub fn run_auth(ctx: &Ctx, args: AuthStatusArgs) -> Result<u8, Failure> {
    if args.all {
        return crate::cli::accounts::status_all(ctx, args.base.json);
    }
    if args.targets.is_empty() {
        return run(ctx, args.base);
    }
    let specs = push::parse_targets(&args.targets)?;
    push::check_remote_home(args.remote_home.as_deref())?;
    // Once for every target: building the SSH options also says on -v which files are read.
    let resolve = args.k8s.resolve_options(&args.ssh, &args.docker);
    if let [spec] = specs.as_slice()
        && !may_match_many(spec)
    {
        return run_target(ctx, spec, args.remote_home.as_deref(), &resolve, args.base.json);
    }
    run_many(ctx, &specs, args.remote_home.as_deref(), &resolve, args.base.json)
}

/// Several targets, or a selector that may match many (`docker:label=…`, `k8s:…/deploy/…`), as
/// push takes them: one aligned row per target with its mark, printed in order as each is
/// read (one that fails does not stop the others), then a recap; `--json`: one object per
/// target (`error` on a failed one) and a summary. Exit 0 only when every target is logged in.
fn run_many(
    ctx: &Ctx,
    specs: &[TargetSpec],
    remote_home: Option<&str>,
    opts: &ResolveOptions,
    json: bool,
) -> Result<u8, Failure> {
    use futures_util::StreamExt;
    let preferred = ctx.settings()?.preference();
    crate::cli::runtime()?.block_on(async {
        let targets = llmx::targets::resolve::resolve(specs, opts).await;
        let labels: Vec<String> = targets.iter().map(|t| output::clean(&t.label())).collect();
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let mut reads = futures_util::stream::iter(targets)
            .map(|mut t| async move {
                let label = t.label();
                (label, llmx::push::remote_status(t.as_mut(), remote_home, preferred, &|_| {}).await)
            })
            .buffered(8);
        let (mut logged_in, mut not, mut failed) = (0, 0, 0);
        while let Some((label, status)) = reads.next().await {
            let (mark, text) = match &status {
                Ok(s) if s.report.logged_in => {
                    logged_in += 1;
                    ("✓", format!("{}  {}", who(&s.report), s.auth_file))
                }
                Ok(s) => {
                    not += 1;
                    ("✗", format!("no credential  {}", s.auth_file))
                }
                Err(e) => {
                    failed += 1;
                    let hint = e.hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default();
                    ("✗", format!("failed: {}{hint}", e.message))
                }
            };
            if json {
                match status {
                    Ok(s) => output::json_line(&s)?,
                    Err(e) => output::json_line(&serde_json::json!({"target": label, "error": {"message": e.message, "hint": e.hint}}))?,
                }
            } else {
                let label = output::clean(&label);
                let pad = " ".repeat(width.saturating_sub(label.chars().count()));
                output::lines(&[format!("{mark} {label}{pad}  {text}")])?;
            }
        }
        let n = logged_in + not + failed;
        if json {
            output::json_line(&serde_json::json!({"event": "summary", "targets": n, "logged_in": logged_in, "not_logged_in": not, "failed": failed}))?;
        } else {
            let mut parts = vec![format!("{logged_in} logged in")];
            parts.extend((not > 0).then(|| format!("{not} not logged in")));
            parts.extend((failed > 0).then(|| format!("{failed} failed")));
            output::lines(&[format!("{n} target{}: {}", if n == 1 { "" } else { "s" }, parts.join(", "))])?;
        }
        Ok(if logged_in == n { 0 } else { 1 })
    })
}

/// A selector that stands for every container or pod it matches (as push takes it).
fn may_match_many(spec: &TargetSpec) -> bool {
    use llmx::targets::DockerSelector;
    use llmx::targets::k8s::spec::K8sObject;
    match spec {
        TargetSpec::Docker(d) => !matches!(d, DockerSelector::Container(_)),
        TargetSpec::K8s(k) => matches!(k.object, K8sObject::Label { .. } | K8sObject::Deploy(_)),
        TargetSpec::Ssh(_) => false,
    }
}

/// `ChatGPT dev@example.com (plus)` or `API key sk-proj-***12345`, for one row.
fn who(r: &StatusReport) -> String {
    match r.method {
        Some(AuthMethod::ChatGpt) => {
            let plan = r.plan.as_ref().map(|p| format!(" ({p})")).unwrap_or_default();
            format!("ChatGPT {}{plan}", r.email.as_deref().unwrap_or("(no email)"))
        }
        Some(AuthMethod::ApiKey) => format!("API key {}", r.api_key.as_deref().unwrap_or("***")),
        None => "not logged in".to_string(),
    }
}

/// What a target's store means for the auth.json llmx reads and writes there.
pub fn target_store_note(store: &str) -> Option<&'static str> {
    match store {
        "keyring" => Some("the agent there reads its login from the OS keyring: this auth.json is ignored"),
        "auto" => Some("the agent there reads the OS keyring first: a keyring entry there shadows this auth.json"),
        _ => None,
    }
}

/// The credential on one target, read through the push engine's target layer.
fn run_target(
    ctx: &Ctx,
    spec: &TargetSpec,
    remote_home: Option<&str>,
    opts: &ResolveOptions,
    json: bool,
) -> Result<u8, Failure> {
    let spec = spec.clone();
    let preferred = ctx.settings()?.preference();
    let status = crate::cli::runtime()?.block_on(async {
        let mut targets = llmx::targets::resolve::resolve(std::slice::from_ref(&spec), opts).await;
        if targets.len() != 1 {
            return Err(Failure::usage(format!(
                "{spec} matches {} containers; `auth status` reports on one (name it: docker:NAME)",
                targets.len()
            )));
        }
        let mut target = targets.remove(0);
        llmx::push::remote_status(target.as_mut(), remote_home, preferred, &|_| {})
            .await
            .map_err(|e| Failure::target(&spec.to_string(), e))
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
            let home = remote_home.map(|h| format!(" --remote-home {h}")).unwrap_or_default();
            lines.push(format!("  No credential. Push one with `llmx auth push {}{home}`.", status.target));
        }
        if let (Some(u), Some(g), Some(m)) = (status.uid, status.gid, &status.mode) {
            lines.push(format!("    File: owner {u}:{g}, mode {m}"));
        }
        if let Some(store) = &status.store {
            lines.push(format!("  Store: {store} (cli_auth_credentials_store of the agent there)"));
        }
        output::lines(&lines)?;
        if let Some(note) = status.store.as_deref().and_then(target_store_note) {
            output::warning(&format!("{}: {note}", status.target), Some(llmx::push::KEYRING_TARGET_HINT));
        }
    }
    Ok(if status.report.logged_in { 0 } else { 1 })
}

pub fn run(ctx: &Ctx, args: StatusArgs) -> Result<u8, Failure> {
    let settings = ctx.settings()?;
    let store = ctx.store()?;
    let loaded = store.load_with_place()?;
    let place = loaded.as_ref().map(|(_, p)| *p);
    let file = loaded.map(|(f, _)| f);
    let origin = place.map_or_else(|| store.describe(), |p| store.name_of(p));
    let differ = store.differing().is_some();
    if store.mode() == CredentialsStore::Keyring && place.is_none() && store.path().is_file() {
        output::warning(
            &format!(
                "{} is there, but cli_auth_credentials_store = \"keyring\" reads only the keyring: the agent ignores that file",
                store.path().display()
            ),
            Some(
                "log in again (it saves to the keyring and deletes auth.json), or set cli_auth_credentials_store = \"file\"",
            ),
        );
    }
    let env_key = std::env::var("OPENAI_API_KEY").ok();
    let report = StatusReport::build(settings.preference(), env_key.as_deref(), file.as_ref());
    let used = store_used(&store, place);
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a StatusReport,
            auth_file: String,
            store: String,
            store_setting: &'static str,
            store_used: Option<&'static str>,
            stores_differ: bool,
        }
        output::json_line(&Out {
            report: &report,
            auth_file: origin,
            store: used,
            store_setting: store.mode().as_str(),
            store_used: place.map(Place::as_str),
            stores_differ: differ,
        })?;
    } else {
        let mut lines = describe(&report, &origin);
        lines.push(format!("  Store: {used}"));
        output::lines(&lines)?;
    }
    Ok(if report.logged_in { 0 } else { 1 })
}

/// The store as status shows it: `file`, `keyring`, or `auto → keyring` / `auto → file` (the
/// place the login was read from; with nothing read, where a login would be saved).
pub fn store_used(store: &Store, place: Option<Place>) -> String {
    match store.mode() {
        CredentialsStore::Auto => {
            let fallback = if store.fell_back() { Place::File } else { Place::Keyring };
            format!("auto → {}", place.unwrap_or(fallback).as_str())
        }
        mode => mode.as_str().to_string(),
    }
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
            if r.lease {
                out.push(
                    "  Kind: lease (access only, no refresh token: renewed by the machine that pushed it, with `llmx auth sync`)"
                        .to_string(),
                );
            }
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
