//! `llmx login`: browser sign-in, `--device-auth`, `--with-api-key` from stdin, and
//! `llmx login status`.
//!
//! The browser login itself is `auth::login`; this module renders its events: human text on
//! stderr (the URL always), or with `--json` one JSON object per line on stdout, flushed at once,
//! which is the protocol `llmx auth tunnel` drives a remote login with.

use crate::cli::browser::Launcher;
use crate::cli::{Ctx, Failure, Kind, output, status};
use clap::{Args, Subcommand};
use llmx::accounts::{Accounts, Activate, Added, Staging};
use llmx::auth::login::browser::{self, LoginOptions};
use llmx::auth::login::device::{self, DeviceOptions};
use llmx::auth::login::{self, LoginError, LoginEvent, LoginSucceeded, api_key};
use std::io::{BufRead, IsTerminal, Read};
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  llmx login                          # open the browser, sign in, save ~/.llmx/auth.json
  llmx login --no-browser             # print the URL (open it anywhere; paste back the address)
  llmx login --device-auth            # a code to enter on the issuer's page, from any device
  llmx login --port 1457              # another callback port (1455 is busy)
  printenv OPENAI_API_KEY | llmx login --with-api-key
  llmx login --json | jq -c .         # JSON events, one per line (what `auth tunnel` drives)
  llmx login status                   # which credential is in use
  llmx login --as work                # sign another account in beside this one (`auth list`)
  printenv KEY | llmx login --with-api-key --as ci   # an API key as an account of its own

On a headless machine: `llmx login --device-auth` there, or `llmx auth tunnel HOST` from a
machine with a browser (docs/headless.md). Exit status 0 signed in, 1 failed or timed out,
2 usage or config error, 3 the issuer is unreachable, 130 interrupted.";

const STATUS_EXAMPLES: &str = "\
Examples:
  llmx login status                   # method, account, source, expiry (no secrets)
  llmx login status --json | jq -r .method
  llmx -c preferred_auth_method=apikey login status

Exit status 0 when logged in (a file or OPENAI_API_KEY), 1 when not.";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = EXAMPLES)]
pub struct LoginArgs {
    #[command(subcommand)]
    pub sub: Option<LoginCommand>,

    /// Read an API key from standard input instead of signing in with the browser
    #[arg(long)]
    pub with_api_key: bool,

    /// Port of the local callback server (the redirect URI is http://localhost:PORT/auth/callback)
    /// [default: 1455, or 1457 when another program holds 1455]
    #[arg(long, conflicts_with = "with_api_key")]
    pub port: Option<u16>,

    /// Print the sign-in URL but do not open a browser
    #[arg(long, conflicts_with = "with_api_key")]
    pub no_browser: bool,

    /// Sign in with a code entered on the issuer's page, from any device: no callback port
    /// (`--port` is then only for the browser login it falls back to when the issuer has no
    /// device code)
    #[arg(long, conflicts_with = "with_api_key")]
    pub device_auth: bool,

    /// Give up when nobody completes the sign-in within SECS seconds [default: 600; device code: 900]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400), conflicts_with = "with_api_key")]
    pub timeout: Option<u64>,

    /// Print machine-readable events (JSON lines) on stdout
    #[arg(long)]
    pub json: bool,

    /// Sign in as another account, labelled LABEL (default: its email, or api-key-<last 4>),
    /// without touching the others; it becomes active only when there is no login yet
    #[arg(long = "as", value_name = "LABEL", num_args = 0..=1, default_missing_value = "")]
    pub as_label: Option<String>,

    /// End the login (as interrupted) when standard input closes: for `llmx auth tunnel
    /// docker:NAME`, which runs this login through the Engine's exec API and holds its stdin, so
    /// the login stops with the tunnel even when the container has no shell to signal it
    #[arg(long, hide = true, conflicts_with = "with_api_key")]
    pub end_on_stdin_eof: bool,
}

#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Show which credential is in use
    #[command(after_help = STATUS_EXAMPLES)]
    Status(status::StatusArgs),
}

pub fn run(ctx: &Ctx, args: LoginArgs) -> Result<u8, Failure> {
    if let Some(LoginCommand::Status(s)) = args.sub {
        return status::run(ctx, s);
    }
    if ctx.account.is_some() {
        return Err(Failure::usage("`llmx login` takes --as LABEL, not --account (or LLMX_ACCOUNT)")
            .hint("`llmx login --as LABEL` signs an account in; `llmx auth switch LABEL` makes it active"));
    }
    let json = args.json;
    let dest = Dest::new(ctx, args.as_label.as_deref())?;
    let before = if dest.replaces_live() { copies_of_the_login_here(ctx) } else { Vec::new() };
    let code = sign_in(ctx, args, &dest)?;
    if code == 0 && !json && !before.is_empty() {
        output::note(&[format!(
            "the ledger knows {} place{} holding copies of the previous login ({}): `llmx auth sync` gives leases of this account the new login; `llmx auth where` shows what each holds",
            before.len(),
            if before.len() == 1 { "" } else { "s" },
            before.join(", ")
        )]);
    }
    Ok(code)
}

/// The places the ledger says hold a copy of this home's login (leases, full copies, keys; not
/// machines signed in on their own): a new login leaves them on the previous one.
fn copies_of_the_login_here(ctx: &Ctx) -> Vec<String> {
    use llmx::family::lease::Kind;
    let Ok(ledger) = llmx::family::ledger::Ledger::load(ctx.home.dir()) else { return Vec::new() };
    ledger.entries.iter().filter(|e| e.kind() != Kind::Own).map(|e| e.target.clone()).collect()
}

/// Where a login is written: straight to the live auth.json (a home without accounts, as
/// always), or staged and then saved as an account ([`Accounts::add`]) with `--as` or in a
/// home that has accounts (so the login being replaced is first written back to its own).
struct Dest {
    accounts: Accounts,
    staged: Option<(Staging, Option<String>, Activate)>,
    live: llmx::auth::store::Store,
}

impl Dest {
    fn new(ctx: &Ctx, as_label: Option<&str>) -> Result<Dest, Failure> {
        let accounts = ctx.accounts()?;
        let wanted = as_label.filter(|l| !l.is_empty());
        if let Some(l) = wanted {
            llmx::accounts::label::check(l).map_err(llmx::accounts::AccountsError::from)?;
        }
        let staged = match as_label {
            Some(_) => Some((accounts.staging()?, wanted.map(str::to_string), Activate::IfNone)),
            None if accounts.exist() => Some((accounts.staging()?, None, Activate::Always)),
            None => None,
        };
        Ok(Dest { accounts, staged, live: ctx.store_at(&ctx.home.auth_path())? })
    }

    /// The store the login method writes: the live one, or a staging file for an account.
    fn store(&self) -> llmx::auth::store::Store {
        self.staged.as_ref().map_or_else(|| self.live.clone(), |(s, ..)| llmx::auth::store::Store::file(&s.auth_path()))
    }

    /// Whether the login will replace the active one (not a `--as` beside it).
    fn replaces_live(&self) -> bool {
        self.staged.as_ref().is_none_or(|(_, _, a)| *a == Activate::Always)
    }

    /// After the method saved: move a staged login to its account; `s` then names the file it
    /// ended in.
    fn settle(&self, s: &mut LoginSucceeded) -> Result<Option<Added>, Failure> {
        let Some((staging, wanted, activate)) = &self.staged else { return Ok(None) };
        let added = self.accounts.add(&staging.auth_path(), wanted.as_deref(), *activate)?;
        s.auth_file = if added.active {
            self.live.describe()
        } else {
            self.live.at(&self.accounts.account_path(&added.label)).describe()
        };
        Ok(Some(added))
    }
}

/// Settle a finished login into its destination (a failure to do so is the login's failure)
/// and, with `--json`, print the final event (and the account it was saved as).
fn settle(
    result: Result<LoginSucceeded, LoginError>,
    dest: &Dest,
    json: bool,
) -> Result<(LoginSucceeded, Option<Added>), Failure> {
    let mut s = match result {
        Ok(s) => s,
        Err(e) => {
            if json {
                output::json_line(&LoginEvent::LoginFailed { reason: e.reason().into(), error: e.to_string() })?;
            }
            return Err(failure(e));
        }
    };
    match dest.settle(&mut s) {
        Ok(added) => {
            if json {
                output::json_line(&LoginEvent::LoginSucceeded(s.clone()))?;
                if let Some(a) = &added {
                    output::json_line(&account_event(a))?;
                }
            }
            Ok((s, added))
        }
        Err(f) => {
            if json {
                output::json_line(&LoginEvent::LoginFailed { reason: "save".into(), error: f.message.clone() })?;
            }
            Err(f)
        }
    }
}

/// With `--json`, the line that says which account a login was saved as (drivers ignore events
/// they do not know).
fn account_event(added: &Added) -> serde_json::Value {
    serde_json::json!({
        "event": "account_saved",
        "label": added.label,
        "active": added.active,
        "replaced": added.replaced,
        "registered_first": added.registered_first,
    })
}

/// Human lines about the account a login was saved as.
fn account_lines(added: &Added) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(first) = &added.registered_first {
        lines.push(format!("  The login that was here is now the account {first} (still active)"));
    }
    lines.push(format!(
        "  Account: {}{}",
        added.label,
        if added.active {
            " (active: the agent uses it)".to_string()
        } else {
            format!(" (not active: `llmx auth switch {}` to use it)", added.label)
        }
    ));
    lines
}

fn sign_in(ctx: &Ctx, args: LoginArgs, dest: &Dest) -> Result<u8, Failure> {
    // A home that cannot take the login is found before a port is opened or the issuer is asked.
    llmx::home::check_writable(ctx.home.dir())?;
    if args.with_api_key {
        return with_api_key(dest, args.json);
    }
    let settings = ctx.settings()?;
    let open_browser = !args.no_browser && has_display();
    let json = args.json;
    let launcher = Arc::new(Launcher::new(ctx.home.dir().to_path_buf()));
    let sink: login::EventSink = {
        let launcher = launcher.clone();
        Arc::new(move |event| render(&event, json, open_browser.then_some(&*launcher)))
    };
    let runtime = crate::cli::runtime()?;
    let browser_opts = |timeout: Option<u64>| LoginOptions {
        issuer: settings.auth_issuer.clone(),
        client_id: settings.auth_client_id.clone(),
        port: args.port.unwrap_or(login::DEFAULT_PORT),
        port_fallback: args.port.is_none(),
        timeout: Duration::from_secs(timeout.unwrap_or(login::DEFAULT_TIMEOUT_SECS)),
        store: dest.store(),
    };
    // One reader of stdin for the whole login: paste-back lines, and (with --end-on-stdin-eof)
    // its end, which stops the login like Ctrl-C.
    let bound = args.end_on_stdin_eof;
    let (mut lines, eof) = if bound || !open_browser || args.device_auth {
        let (rx, eof) = stdin_lines();
        (Some(rx), Some(eof))
    } else {
        (None, None)
    };
    let eof = std::sync::Mutex::new(if bound { eof } else { None });
    let interrupt = || {
        let eof = eof.lock().ok().and_then(|mut e| e.take());
        async move {
            match eof {
                Some(eof) => tokio::select! {
                    () = ctrl_c() => {}
                    _ = eof => {}
                },
                None => ctrl_c().await,
            }
        }
    };
    let result = if args.device_auth {
        let opts = DeviceOptions {
            issuer: settings.auth_issuer.clone(),
            client_id: settings.auth_client_id.clone(),
            timeout: args.timeout.map(Duration::from_secs),
            store: dest.store(),
        };
        match runtime.block_on(device::run(opts, sink.clone(), interrupt())) {
            // As DESIGN §8 says: device code off → the browser login, printing the URL.
            Err(LoginError::DeviceCodeOff) => {
                sink(LoginEvent::DeviceCodeUnavailable);
                let no_browser: login::EventSink = Arc::new(move |event| render(&event, json, None));
                runtime.block_on(browser::run(browser_opts(args.timeout), no_browser, interrupt(), lines.take()))
            }
            other => other,
        }
    } else {
        if !open_browser && !json {
            output::note(&[headless_note()]);
        }
        // Paste-back: where no browser opens here, the user may paste the address it ends on.
        let pasted = if open_browser { None } else { lines.take() };
        runtime.block_on(browser::run(browser_opts(args.timeout), sink, interrupt(), pasted))
    };
    launcher.close();
    finish(result, json, dest)
}

/// Resolves on Ctrl-C or SIGTERM (nothing was written yet when the login is stopped).
async fn ctrl_c() {
    crate::cli::signals::interrupted().await;
}

/// Lines of standard input, read on a thread of their own (a blocking read must not hold up the
/// login); the channel closes at end of input, and the second receiver fires then (also after a
/// read error). Lines nobody takes (a device-code login) are dropped. The thread ends with the
/// process.
fn stdin_lines() -> (tokio::sync::mpsc::Receiver<String>, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        // Bounded per line: a pasted address is a few hundred bytes.
        while std::io::stdin().lock().take(16 * 1024).read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = tx.blocking_send(std::mem::take(&mut line));
        }
        let _ = eof_tx.send(());
    });
    (rx, eof_rx)
}

/// Where no browser can be opened: the ways that need none.
fn headless_note() -> &'static str {
    "No browser here. Open the URL below on any machine, or: `llmx login --device-auth` (a code \
     to enter instead), or `llmx auth tunnel HOST` run from a machine with a browser."
}

fn finish(result: Result<LoginSucceeded, LoginError>, json: bool, dest: &Dest) -> Result<u8, Failure> {
    let (s, added) = settle(result, dest, json)?;
    if !json {
        let mut lines = browser_success_lines(&s);
        lines.extend(added.as_ref().map(account_lines).unwrap_or_default());
        output::lines(&lines)?;
    }
    Ok(0)
}

/// Whether a browser can be opened here: never inside an SSH session (it would open on the remote
/// machine's display, or nowhere); on Linux and the BSDs, only with a graphical session.
pub(crate) fn has_display() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    if set("SSH_CONNECTION") || set("SSH_TTY") {
        return false;
    }
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    set("DISPLAY") || set("WAYLAND_DISPLAY")
}

fn render(event: &LoginEvent, json: bool, browser: Option<&Launcher>) {
    let open_browser = browser.is_some();
    if let (
        LoginEvent::Listening { authorize_url: url, .. } | LoginEvent::DeviceCode { verification_url: url, .. },
        Some(b),
    ) = (event, browser)
    {
        b.open(url);
    }
    if json {
        // A closed stdout must not stop the login: the file is what matters.
        let _ = output::json_line(event);
        return;
    }
    let text = match event {
        LoginEvent::StaleServerCancelled { port } => {
            format!("Stopped an earlier llmx login that was waiting on port {port}.")
        }
        LoginEvent::PortFallback { busy, port } => format!(
            "Port {busy} is held by another program (see `ss -ltnp 'sport = :{busy}'`); using {port}, the issuer's other callback port."
        ),
        LoginEvent::Listening { authorize_url, port, timeout_secs, .. } => format!(
            "{}this URL in a browser to sign in:\n\n  {authorize_url}\n\n{}Waiting on http://localhost:{port} (gives up after {}; Ctrl-C to cancel)...",
            if open_browser { "Opening " } else { "Open " },
            if open_browser {
                ""
            } else {
                "If the browser is on another machine, it ends on a page that does not load: paste \
                 the address it shows (or the code in it) here and press Enter.\n"
            },
            llmx::text::format_duration(Duration::from_secs(*timeout_secs))
        ),
        // Text from the issuer is cleaned before it is put into the lines (which are then split
        // on newlines): a newline in it must not make a line of its own.
        LoginEvent::DeviceCode { verification_url, user_code, expires_in } => format!(
            "To sign in, open this page on any device:\n\n  {}\n\nand enter the code:\n\n  {}\n\n\
             The code expires in {}. Enter it only on that page, and only for a sign-in you started \
             yourself: nobody who asks you for this code is from the provider.\nWaiting (Ctrl-C to cancel)...",
            output::clean(verification_url),
            output::clean(user_code),
            llmx::text::format_duration(Duration::from_secs(*expires_in))
        ),
        LoginEvent::DeviceCodeUnavailable => {
            "This issuer does not offer device-code sign-in; signing in with the browser instead.".to_string()
        }
        LoginEvent::CallbackRejected { reason } => {
            format!("Ignored a callback: {}. Still waiting...", output::clean(reason))
        }
        LoginEvent::PasteRejected { reason } => {
            format!("Ignored the pasted line: {}. Still waiting...", output::clean(reason))
        }
        LoginEvent::CallbackReceived => "Signing in...".to_string(),
        LoginEvent::LoginSucceeded { .. } | LoginEvent::LoginFailed { .. } => return,
    };
    output::err_lines(&text.split('\n').collect::<Vec<_>>());
}

fn browser_success_lines(s: &LoginSucceeded) -> Vec<String> {
    let mut who = s.email.clone().unwrap_or_else(|| "(no email in id_token)".into());
    if let Some(p) = &s.plan {
        who.push_str(&format!(" ({p})"));
    }
    let mut lines = vec![format!("Logged in using ChatGPT - {who}"), format!("  Saved to {}", s.auth_file)];
    if !s.api_key_saved {
        lines.push("  (The issuer gave no API key; the agent will use the ChatGPT tokens.)".into());
    }
    lines
}

fn failure(e: LoginError) -> Failure {
    let hint = match &e {
        LoginError::PortBusy { port } => Some(format!(
            "see who holds it with `ss -ltnp 'sport = :{port}'` and stop it, or sign in without a port: `llmx login --device-auth` (the issuer accepts callbacks on ports 1455 and 1457 only)"
        )),
        LoginError::PortsBusy { first, second } => Some(format!(
            "see who holds them with `ss -ltnp 'sport = :{first}' or 'sport = :{second}'`, or sign in without a port: `llmx login --device-auth`"
        )),
        LoginError::Denied { .. } | LoginError::Exchange(_) => Some("run `llmx login` again".to_string()),
        LoginError::TimedOut { .. } => Some("run `llmx login` again; `--timeout SECS` waits longer".to_string()),
        LoginError::Declined => Some("run `llmx login --device-auth` again to get a new code".to_string()),
        LoginError::Issuer(_) => Some("check auth_issuer in config.toml or your -c override".to_string()),
        _ => None,
    };
    let kind = match &e {
        LoginError::Issuer(_) => Kind::Config,
        LoginError::Exchange(o) | LoginError::DeviceStart(o) | LoginError::DevicePoll(o) => Kind::of_oauth(o),
        LoginError::Interrupted => Kind::Interrupted,
        _ => Kind::Failed,
    };
    let f = Failure::of(kind, e.to_string());
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

fn with_api_key(dest: &Dest, json: bool) -> Result<u8, Failure> {
    let stdin = std::io::stdin();
    let how = "printenv OPENAI_API_KEY | llmx login --with-api-key";
    if stdin.is_terminal() {
        return Err(Failure::usage("--with-api-key reads the key from standard input, not from a terminal").hint(how));
    }
    let obtained = api_key::read(stdin.lock()).map_err(|e| match e {
        api_key::ApiKeyError::Read(_) => Failure::new(e.to_string()),
        api_key::ApiKeyError::Empty => Failure::usage(e.to_string()).hint(how),
        _ => Failure::usage(e.to_string()),
    })?;
    let (s, added) = settle(login::save(&dest.store(), obtained), dest, json)?;
    if !json {
        let key = s.api_key.as_deref().unwrap_or("***");
        let mut lines = vec![format!("Logged in using an API key - {key} (saved to {})", s.auth_file)];
        lines.extend(added.as_ref().map(account_lines).unwrap_or_default());
        output::lines(&lines)?;
    }
    Ok(0)
}
