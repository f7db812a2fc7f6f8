//! `llmx auth list` and `llmx auth switch`: the accounts of this home (DESIGN.md §11), and the
//! global `--account LABEL` / `LLMX_ACCOUNT` that points one command at one of them without
//! switching. The library side is `llmx::accounts`; this module renders it.

use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::accounts::{AccountsError, Summary};
use llmx::family::ledger::{Entry, Ledger};

const LIST_EXAMPLES: &str = "\
Examples:
  llmx auth list                      # every account; * marks the active one
  llmx auth list --json | jq -r '.accounts[].label'
  llmx login --as work                # sign another account in (the active one stays)
  llmx auth switch work               # make it the one the agent uses

Never a secret: an API key is masked. Exit status 0 (also with no account), 2 usage.";

const SWITCH_EXAMPLES: &str = "\
Examples:
  llmx auth switch work               # the agent uses the account labelled work from now on
  llmx --account work auth status     # one command on another account, without switching

The login being left is written back to its account first (tokens the agent refreshed are
kept), then the chosen one is put in $LLMX_HOME/auth.json, atomically, under the home's lock.
llmx never switches accounts by itself (docs/authentication.md, \"Several accounts\").";

#[derive(Debug, Args)]
#[command(after_help = LIST_EXAMPLES)]
pub struct ListArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = SWITCH_EXAMPLES)]
pub struct SwitchArgs {
    /// The account to make active (see `llmx auth list`)
    #[arg(value_name = "LABEL")]
    pub label: String,

    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

impl From<AccountsError> for Failure {
    fn from(e: AccountsError) -> Failure {
        match e {
            AccountsError::Label(_) => Failure::usage(e.to_string())
                .hint("a label is a plain name: no `/`, no `..`, no control characters, not starting with `.`"),
            AccountsError::NoSuchAccount { .. } => Failure::of(Kind::NotLoggedIn, e.to_string())
                .hint("see `llmx auth list`; sign one in with `llmx login --as LABEL`"),
            AccountsError::LabelTaken { .. } => {
                Failure::usage(e.to_string()).hint("choose another label, or `llmx logout --account LABEL` first")
            }
            AccountsError::NoLogin { .. } => Failure::of(Kind::NotLoggedIn, e.to_string()),
            AccountsError::File(f) => f.into(),
            AccountsError::Lock(l) => l.into(),
            AccountsError::Home(h) => h.into(),
        }
    }
}

pub fn list(ctx: &Ctx, args: ListArgs) -> Result<u8, Failure> {
    let accounts = ctx.accounts()?.list()?;
    if args.json {
        let active = accounts.iter().find(|a| a.active).map(|a| a.label.clone());
        output::json_line(&serde_json::json!({ "accounts": accounts, "active": active }))?;
        return Ok(0);
    }
    if accounts.is_empty() {
        output::lines(&["No account. Sign in with `llmx login` (or `llmx login --as LABEL`).".to_string()])?;
        return Ok(0);
    }
    let width = accounts.iter().map(|a| a.label.chars().count()).max().unwrap_or(0);
    let lines: Vec<String> = accounts.iter().map(|a| line(a, width)).collect();
    output::lines(&lines)?;
    Ok(0)
}

/// `* label  chatgpt  email (plan)  account id  expires …`
fn line(a: &Summary, width: usize) -> String {
    let mut parts = vec![format!("{} {:width$}", if a.active { "*" } else { " " }, a.label)];
    match a.method {
        Some("chatgpt") => {
            let mut who = a.email.clone().unwrap_or_else(|| "(no email)".into());
            if let Some(p) = &a.plan {
                who.push_str(&format!(" ({p})"));
            }
            parts.push(format!("chatgpt{}  {who}", if a.lease { " lease" } else { "" }));
            if let Some(id) = &a.account_id {
                parts.push(id.clone());
            }
            if let Some(t) = &a.access_token_expires_at {
                parts.push(format!("expires {t}"));
            }
        }
        Some(m) => parts.push(format!("{m}  {}", a.api_key.as_deref().unwrap_or("***"))),
        None => parts.push("no credential".into()),
    }
    if !a.saved {
        parts.push("(the home's only login; `llmx login --as LABEL` adds another)".into());
    }
    parts.join("  ")
}

pub fn switch(ctx: &Ctx, args: SwitchArgs) -> Result<u8, Failure> {
    let s = ctx.accounts()?.switch(&args.label)?;
    if args.json {
        output::json_line(&serde_json::json!({
            "active": s.to,
            "previous": s.from,
            "switched": !s.already,
            "auth_file": ctx.store_at(&ctx.home.auth_path())?.describe(),
        }))?;
    } else if s.already {
        output::lines(&[format!("{} is the active account already", s.to)])?;
    } else {
        let from = s.from.map(|f| format!(" (was {f}, saved back to its account)")).unwrap_or_default();
        output::lines(&[format!("Switched to {}{from}: the agent uses it from now on", s.to)])?;
    }
    Ok(0)
}

/// The account a push works on, to bind its places to in the ledger: `--account`, else the
/// active one when the home has accounts (`None` in a home without accounts).
pub fn current_label(ctx: &Ctx) -> Result<Option<String>, Failure> {
    if let Some(l) = &ctx.account {
        return Ok(Some(l.clone()));
    }
    let accounts = ctx.accounts()?;
    if !accounts.exist() {
        return Ok(None);
    }
    Ok(accounts.adopt(false)?)
}

/// One `auth sync` run: the account (when the home has accounts), its auth.json, and the
/// ledger entries of its holders.
pub struct SyncRun {
    pub label: Option<String>,
    pub path: std::path::PathBuf,
    pub ledger: Ledger,
}

/// What `auth sync` runs. Named targets, or a home without accounts: one run, as always. With
/// accounts and no target: one run per account (only `--account`'s with it) over the holders
/// bound to it in the ledger, so each account is refreshed at most once. Entries from before
/// accounts (no label) belong to the account with their account id, else to the active one.
pub fn sync_runs(ctx: &Ctx, named_targets: bool, ledger: &Ledger) -> Result<Vec<SyncRun>, Failure> {
    let binding = if named_targets { None } else { crate::cli::bound::Binding::load(ctx)? };
    let Some(b) = binding else {
        // Named targets, no accounts, or `--account` (then only the holders bound to it): one run.
        let label = if named_targets { current_label(ctx)? } else { ctx.account.clone() };
        let entries = match (&ctx.account, named_targets) {
            (Some(l), false) => bound_to(ctx, l, ledger)?,
            _ => ledger.entries.clone(),
        };
        return Ok(vec![SyncRun { label, path: ctx.auth_path()?, ledger: Ledger { entries, ..ledger.clone() } }]);
    };
    let mut runs = Vec::new();
    for label in b.labels() {
        let entries = b.entries_of(ledger, label);
        if entries.is_empty() && b.active() != Some(label) {
            continue;
        }
        runs.push(SyncRun {
            label: Some(label.to_string()),
            path: b.path_of(label),
            ledger: Ledger { entries, ..ledger.clone() },
        });
    }
    Ok(runs)
}

/// The ledger entries bound to account `label` (as a run without `--account` would sort them).
pub fn bound_to(ctx: &Ctx, label: &str, ledger: &Ledger) -> Result<Vec<Entry>, Failure> {
    ctx.accounts()?.resolve(label)?;
    let Some(b) = crate::cli::bound::Binding::of_home(ctx)? else { return Ok(ledger.entries.clone()) };
    Ok(b.entries_of(ledger, label))
}

/// Whether an account can be used now, from the local facts (no issuer is called: a refresh
/// would spend the refresh token): an API key, a ChatGPT login with a refresh token, or a lease
/// whose access token has not expired. The problem, when not.
fn problem(a: &Summary) -> Option<&'static str> {
    match a.method {
        None => Some("no credential in the file"),
        Some("chatgpt") if a.lease => {
            let expired = a.access_token_expires_at.as_deref().is_some_and(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|t| t <= time::OffsetDateTime::now_utc())
            });
            expired.then_some("a lease whose access token has expired (renewed by the machine that pushed it)")
        }
        _ => None,
    }
}

/// `llmx auth status --all`: every account, usable or not; exit 1 when any is not (or none).
pub fn status_all(ctx: &Ctx, json: bool) -> Result<u8, Failure> {
    let accounts = ctx.accounts()?.list()?;
    let unusable = accounts.iter().filter(|a| problem(a).is_some()).count();
    let code = if accounts.is_empty() || unusable > 0 { 1 } else { 0 };
    if json {
        let rows: Vec<serde_json::Value> = accounts
            .iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["usable"] = problem(a).is_none().into();
                v["problem"] = problem(a).into();
                v
            })
            .collect();
        output::json_line(&serde_json::json!({ "accounts": rows, "ok": code == 0 }))?;
        return Ok(code);
    }
    if accounts.is_empty() {
        output::lines(&["No account. Sign in with `llmx login` (or `llmx login --as LABEL`).".to_string()])?;
        return Ok(code);
    }
    let width = accounts.iter().map(|a| a.label.chars().count()).max().unwrap_or(0);
    let lines: Vec<String> = accounts
        .iter()
        .map(|a| match problem(a) {
            None => format!("{}  ok", line(a, width)),
            Some(p) => format!("{}  UNUSABLE: {p}", line(a, width)),
        })
        .collect();
    output::lines(&lines)?;
    Ok(code)
}
