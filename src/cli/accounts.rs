//! `llmx auth list` and `llmx auth switch`: the accounts of this home (DESIGN.md §11), and the
//! global `--account LABEL` / `LLMX_ACCOUNT` that points one command at one of them without
//! switching. The library side is `llmx::accounts`; this module renders it.

use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::accounts::{Accounts, AccountsError, Summary};

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
    let accounts = Accounts::new(&ctx.home).list()?;
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
    let s = Accounts::new(&ctx.home).switch(&args.label)?;
    if args.json {
        output::json_line(&serde_json::json!({
            "active": s.to,
            "previous": s.from,
            "switched": !s.already,
            "auth_file": ctx.home.auth_path().display().to_string(),
        }))?;
    } else if s.already {
        output::lines(&[format!("{} is the active account already", s.to)])?;
    } else {
        let from = s.from.map(|f| format!(" (was {f}, saved back to its account)")).unwrap_or_default();
        output::lines(&[format!("Switched to {}{from}: the agent uses it from now on", s.to)])?;
    }
    Ok(0)
}
