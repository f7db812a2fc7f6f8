//! Command-line types (clap) and dispatch. Each command lives in its own module and only parses,
//! calls the library and renders; the command tree mirrors the module tree.

mod accounts;
mod bound;
mod browser;
mod docker_args;
mod docs;
mod failure;
mod family;
pub mod k8s_args;
mod login;
mod logout;
mod output;
mod owner;
mod pull;
mod push;
mod push_view;
mod recorder;
mod refresh;
mod remove;
mod schedule;
mod signals;
pub mod ssh_args;
mod status;
mod store_view;
mod sync;
mod token;
mod tunnel;
#[path = "where.rs"]
mod where_;

pub use failure::{Failure, Kind};
pub use output::clean_json;

use clap::{Parser, Subcommand};
use llmx::auth::store::Store;
use llmx::config::{self, Override, Settings};
use llmx::home::Home;
use output::ColorChoice;

const EXAMPLES: &str = "\
Examples:
  llmx login                              # sign in with the browser
  llmx login --no-browser --json          # print the URL; JSON events for scripts
  printenv OPENAI_API_KEY | llmx login --with-api-key
  llmx login status --json
  llmx auth push docker:web               # a lease of this login into a container (--full: all of it)
  llmx auth status docker:web             # what a container holds
  llmx auth where                         # every place this login was pushed, and what it holds
  llmx auth sync                          # renew every lease with one refresh (`--schedule`: a timer)
  llmx auth token                         # the current access token, for scripts
  llmx -c preferred_auth_method=apikey login status
  llmx auth refresh
  llmx auth tunnel deploy@build-01        # sign a headless host in from this browser
  llmx auth tunnel --device deploy@build-01   # the same with a code: nothing forwarded
  llmx auth tunnel docker:web             # a container's own login, from this browser
  llmx login --as work                    # another account beside this one
  llmx auth list                          # every account; * is the active one
  llmx auth switch work                   # the agent uses work from now on
  llmx --account work auth status         # one command on another account (or LLMX_ACCOUNT=work)
  llmx logout
  mkdir -p ~/.local/share/bash-completion/completions && llmx completion bash > ~/.local/share/bash-completion/completions/llmx

Exit status: 0 ok, 1 not logged in or a target failed, 2 usage or config error, 3 unreachable
(Docker Engine, SSH host, issuer), 4 authentication needed, 130 interrupted. With --json, a
failure is a JSON object on stdout too: {\"error\":{\"kind\":...,\"message\":...}}.";

#[derive(Debug, Parser)]
#[command(name = "llmx", version, about = "Sign the llmx agent in and provision its credentials", after_help = EXAMPLES)]
pub struct Cli {
    /// Override a config.toml setting for this run (repeatable), e.g. -c preferred_auth_method=apikey
    #[arg(short = 'c', long = "config", global = true, value_name = "KEY=VALUE")]
    pub config: Vec<String>,

    /// Only errors, warnings and the final result (no progress, no notes)
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say what is resolved and why: config files read, targets, host key files, engine endpoint
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,

    /// Colour the outcomes and warnings: auto (a terminal, unless NO_COLOR is set), always, never
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,

    /// Work on this account for one command, without switching (see `llmx auth list`)
    #[arg(long, global = true, value_name = "LABEL", env = "LLMX_ACCOUNT")]
    pub account: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in: with the browser (OAuth + PKCE), a device code (--device-auth), or an API key from stdin
    Login(login::LoginArgs),
    /// Revoke the login and remove the stored credentials (auth.json)
    Logout(logout::LogoutArgs),
    /// Credential status, refresh, and provisioning to other machines
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(docs::CompletionArgs),
    /// Write the man pages (llmx.1 and one per subcommand) into a directory
    Man(docs::ManArgs),
}

impl Command {
    /// Whether the command was asked for `--json` (its failure is then a JSON object too).
    pub fn json(&self) -> bool {
        match self {
            Command::Login(a) => a.json || matches!(&a.sub, Some(login::LoginCommand::Status(s)) if s.json),
            Command::Logout(a) => a.json,
            Command::Auth(a) => match a {
                AuthCommand::Status(a) => a.base.json,
                AuthCommand::Refresh(a) => a.json,
                AuthCommand::Push(a) => a.json,
                AuthCommand::Tunnel(a) => a.json,
                AuthCommand::Where(a) => a.json,
                AuthCommand::Pull(a) => a.json,
                AuthCommand::Sync(a) => a.fleet.json,
                AuthCommand::Remove(a) => a.fleet.json,
                AuthCommand::Token(a) => a.json,
                AuthCommand::List(a) => a.json,
                AuthCommand::Switch(a) => a.json,
            },
            Command::Completion(_) | Command::Man(_) => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Show which credential is in use here, or on a target (see `auth push --help` for targets)
    Status(status::AuthStatusArgs),
    /// Refresh the ChatGPT tokens in auth.json now
    Refresh(refresh::RefreshArgs),
    /// Copy this machine's login to containers and hosts (a lease by default; --full for all of it)
    Push(push::PushArgs),
    /// Sign a host (SSH) or a container in with its own login, from this machine's browser
    Tunnel(tunnel::TunnelArgs),
    /// Every place this login was pushed, and what each holds now
    Where(where_::WhereArgs),
    /// Adopt a target's fresher copy of this login
    Pull(pull::PullArgs),
    /// Renew every lease and keep one live lineage: refreshed once here, written everywhere
    Sync(sync::SyncArgs),
    /// Delete this login's copies from targets (and from the ledger)
    Remove(remove::RemoveArgs),
    /// Print the current access token (refreshed first when it is about to expire)
    Token(token::TokenArgs),
    /// The accounts signed in here (label, method, email, plan, expiry; * is the active one)
    List(accounts::ListArgs),
    /// Make another account the active one (the file the agent reads)
    Switch(accounts::SwitchArgs),
}

/// Shared state for one run: the home and the parsed `-c` overrides. Settings are loaded lazily
/// so that commands that do not need config.toml never read it.
pub struct Ctx {
    pub home: Home,
    pub overrides: Vec<Override>,
    /// `--account LABEL` / `LLMX_ACCOUNT`: the account this command works on.
    pub account: Option<String>,
    /// The configured store at the live auth.json, once asked for (see [`Ctx::store_at`]).
    store: std::sync::OnceLock<Store>,
}

impl Ctx {
    /// The auth.json this command works on: the live one, or with `--account` that account's
    /// (the live one again when it is the active account).
    pub fn auth_path(&self) -> Result<std::path::PathBuf, Failure> {
        match &self.account {
            None => Ok(self.home.auth_path()),
            Some(label) => {
                let path = self.accounts()?.resolve(label)?;
                output::verbose(format!("account {label}: {}", path.display()));
                Ok(path)
            }
        }
    }

    /// The login store this command works on (`cli_auth_credentials_store` of config.toml or
    /// `-c`), at [`Ctx::auth_path`]; what it does is shown with `-v`, its fall-backs as warnings.
    pub fn store(&self) -> Result<Store, Failure> {
        self.store_at(&self.auth_path()?)
    }

    /// The accounts of this home, with the configured store.
    pub fn accounts(&self) -> Result<llmx::accounts::Accounts, Failure> {
        Ok(llmx::accounts::Accounts::new(&self.home, &self.store_at(&self.home.auth_path())?))
    }

    /// The configured kind of store for the auth.json at `path` (an account's directory). Every
    /// store of a command derives from one, made on first use: config.toml is read for it once,
    /// and a keyring fall-back holds for the whole command.
    pub fn store_at(&self, path: &std::path::Path) -> Result<Store, Failure> {
        if let Some(base) = self.store.get() {
            return Ok(base.at(path));
        }
        let mode = config::load(&self.home.config_path(), &self.overrides)?.credentials_store;
        Ok(self.store.get_or_init(|| Store::new(mode, &self.home.auth_path()).observed(store_view::show)).at(path))
    }

    pub fn settings(&self) -> Result<Settings, Failure> {
        let path = self.home.config_path();
        output::verbose(format!(
            "config: {} ({})",
            path.display(),
            if path.exists() { "read" } else { "absent: defaults" }
        ));
        let settings = config::load(&path, &self.overrides)?;
        output::verbose(format!(
            "config: auth_issuer {}, preferred_auth_method {}",
            settings.auth_issuer, settings.preferred_auth_method
        ));
        Ok(settings)
    }
}

/// Run a parsed command line; `Ok` carries the exit code.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    output::configure(cli.quiet, cli.verbose, cli.color);
    match cli.command {
        Command::Completion(args) => return docs::completion(args),
        Command::Man(args) => return docs::man(args),
        _ => {}
    }
    let overrides = cli.config.iter().map(|raw| Override::parse(raw)).collect::<Result<Vec<_>, _>>()?;
    for o in &overrides {
        if let [key] = o.path.as_slice()
            && let Some(near) = config::likely_typo(key)
        {
            output::warning(
                &format!("-c {key}: llmx reads no such key (config.toml is shared with the agent, so it is allowed)"),
                Some(&format!("did you mean {near}?")),
            );
        }
    }
    let home = Home::from_env()?;
    output::verbose(format!("home: {} (LLMX_HOME, else ~/.llmx)", home.dir().display()));
    if !matches!(cli.command, Command::Completion(_) | Command::Man(_)) {
        home.check_private()?;
    }
    let account = cli.account.filter(|a| !a.is_empty());
    let ctx = Ctx { home, overrides, account, store: std::sync::OnceLock::new() };
    match cli.command {
        Command::Login(args) => login::run(&ctx, args),
        Command::Logout(args) => logout::run(&ctx, args),
        Command::Auth(AuthCommand::Status(args)) => status::run_auth(&ctx, args),
        Command::Auth(AuthCommand::Refresh(args)) => refresh::run(&ctx, args),
        Command::Auth(AuthCommand::Push(args)) => push::run(&ctx, args),
        Command::Auth(AuthCommand::Tunnel(args)) => tunnel::run(&ctx, args),
        Command::Auth(AuthCommand::Where(args)) => where_::run(&ctx, args),
        Command::Auth(AuthCommand::Pull(args)) => pull::run(&ctx, args),
        Command::Auth(AuthCommand::Sync(args)) => sync::run(&ctx, args),
        Command::Auth(AuthCommand::Remove(args)) => remove::run(&ctx, args),
        Command::Auth(AuthCommand::Token(args)) => token::run(&ctx, args),
        Command::Auth(AuthCommand::List(args)) => accounts::list(&ctx, args),
        Command::Auth(AuthCommand::Switch(args)) => accounts::switch(&ctx, args),
        Command::Completion(_) | Command::Man(_) => Ok(0),
    }
}

/// A tokio runtime for one command. One thread is enough: the work is I/O-bound (concurrent
/// pushes are futures polled together); the blocking SSH transport runs on its own session threads.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))
}

/// `--jobs` of the commands that work on many targets at once.
pub const JOBS_HELP: &str = "How many targets to work on at the same time. Default: every target at once, up to 256 \
(a fleet waits on round trips, not on this machine's CPU), and no more than the open-file limit holds at 8 \
descriptors a target (llmx raises its soft RLIMIT_NOFILE up to the hard limit when it needs to). However wide, \
at most 6 connections to one SSH host are being set up at a time (sshd's MaxStartups).";
