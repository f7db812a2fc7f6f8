//! `llmx login`: browser sign-in, `--with-api-key` from stdin, and `llmx login status`.
//!
//! The browser login itself is `auth::login`; this module renders its events: human text on
//! stderr (the URL always), or with `--json` one JSON object per line on stdout, flushed at once,
//! which is the protocol `llmx auth tunnel` drives a remote login with.

use crate::cli::browser::Launcher;
use crate::cli::{Ctx, Failure, output, status};
use clap::{Args, Subcommand};
use llmx::auth::file::AuthFile;
use llmx::auth::login::{self, LoginError, LoginEvent, LoginOptions, LoginSuccess};
use llmx::secret::Secret;
use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::time::Duration;

/// The most `--with-api-key` reads from stdin; more is an error, never a key cut short.
const MAX_API_KEY_INPUT: u64 = 64 * 1024;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoginArgs {
    #[command(subcommand)]
    pub sub: Option<LoginCommand>,

    /// Read an API key from standard input instead of signing in with the browser
    #[arg(long)]
    pub with_api_key: bool,

    /// Port of the local callback server (the redirect URI is http://localhost:PORT/auth/callback)
    #[arg(long, default_value_t = login::DEFAULT_PORT, conflicts_with = "with_api_key")]
    pub port: u16,

    /// Print the sign-in URL but do not open a browser
    #[arg(long, conflicts_with = "with_api_key")]
    pub no_browser: bool,

    /// Give up when nobody completes the sign-in within SECS seconds
    #[arg(long, value_name = "SECS", default_value_t = login::DEFAULT_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86400), conflicts_with = "with_api_key")]
    pub timeout: u64,

    /// Print machine-readable events (JSON lines) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Show which credential is in use
    Status(status::StatusArgs),
}

pub fn run(ctx: &Ctx, args: LoginArgs) -> Result<u8, Failure> {
    if let Some(LoginCommand::Status(s)) = args.sub {
        return status::run(ctx, s);
    }
    if args.with_api_key {
        return with_api_key(ctx, args.json);
    }
    browser(ctx, &args)
}

fn browser(ctx: &Ctx, args: &LoginArgs) -> Result<u8, Failure> {
    let settings = ctx.settings()?;
    let opts = LoginOptions {
        issuer: settings.auth_issuer,
        client_id: settings.auth_client_id,
        port: args.port,
        timeout: Duration::from_secs(args.timeout),
        auth_path: ctx.home.auth_path(),
    };
    let open_browser = !args.no_browser && has_display();
    let json = args.json;
    let launcher = Arc::new(Launcher::new(ctx.home.dir().to_path_buf()));
    let sink: login::EventSink = {
        let launcher = launcher.clone();
        Arc::new(move |event| render(&event, json, open_browser.then_some(&*launcher)))
    };
    let runtime = crate::cli::runtime()?;
    let interrupt = async {
        // If the signal handler cannot be installed, Ctrl-C simply keeps its default effect.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let result = runtime.block_on(login::login(opts, sink, interrupt));
    launcher.close();
    if json {
        output::json_line(&LoginEvent::outcome(&result))?;
    }
    match result {
        Ok(s) => {
            if !json {
                output::lines(&success_lines(&s))?;
            }
            Ok(0)
        }
        Err(e) => Err(failure(e)),
    }
}

/// Whether a browser can be opened here: on Linux and the BSDs, only with a graphical session.
pub(crate) fn has_display() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

fn render(event: &LoginEvent, json: bool, browser: Option<&Launcher>) {
    let open_browser = browser.is_some();
    if let (LoginEvent::Listening { authorize_url, .. }, Some(b)) = (event, browser) {
        b.open(authorize_url);
    }
    if json {
        // A closed stdout must not stop the login: the file is what matters.
        let _ = output::json_line(event);
        return;
    }
    let lines = match event {
        LoginEvent::StaleServerCancelled { port } => {
            vec![format!("Stopped an earlier llmx login that was waiting on port {port}.")]
        }
        LoginEvent::Listening { authorize_url, port, timeout_secs, .. } => vec![
            format!("{}this URL in a browser to sign in:", if open_browser { "Opening " } else { "Open " }),
            String::new(),
            format!("  {authorize_url}"),
            String::new(),
            format!(
                "Waiting on http://localhost:{port} (gives up after {}; Ctrl-C to cancel)...",
                llmx::text::format_duration(Duration::from_secs(*timeout_secs))
            ),
        ],
        LoginEvent::CallbackRejected { reason } => vec![format!("Ignored a callback: {reason}. Still waiting...")],
        LoginEvent::CallbackReceived => vec!["Signing in...".to_string()],
        LoginEvent::LoginSucceeded { .. } | LoginEvent::LoginFailed { .. } => return,
    };
    output::err_lines(&lines);
}

fn success_lines(s: &LoginSuccess) -> Vec<String> {
    let mut who = s.email.clone().unwrap_or_else(|| "(no email in id_token)".into());
    if let Some(p) = &s.plan {
        who.push_str(&format!(" ({p})"));
    }
    let mut lines = vec![format!("Logged in using ChatGPT - {who}"), format!("  Saved to {}", s.auth_file.display())];
    if !s.api_key_saved {
        lines.push("  (The issuer gave no API key; the agent will use the ChatGPT tokens.)".into());
    }
    lines
}

fn failure(e: LoginError) -> Failure {
    let hint = match &e {
        LoginError::PortBusy { port } => Some(format!(
            "see who holds it with `ss -ltnp 'sport = :{port}'` and stop it, or run `llmx login --port N`"
        )),
        LoginError::Denied { .. } | LoginError::Exchange(_) => Some("run `llmx login` again".to_string()),
        LoginError::TimedOut { .. } => Some("run `llmx login` again; `--timeout SECS` waits longer".to_string()),
        LoginError::Issuer(_) => Some("check auth_issuer in config.toml or your -c override".to_string()),
        _ => None,
    };
    let code = if matches!(e, LoginError::Issuer(_)) { 2 } else { 1 };
    let f = Failure { code, ..Failure::new(e.to_string()) };
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

fn with_api_key(ctx: &Ctx, json: bool) -> Result<u8, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::usage("--with-api-key reads the key from standard input, not from a terminal")
            .hint("printenv OPENAI_API_KEY | llmx login --with-api-key"));
    }
    // One byte more than the limit tells "too long" from "exactly the limit".
    let mut text = String::new();
    stdin
        .lock()
        .take(MAX_API_KEY_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|e| Failure::new(format!("reading the API key from stdin: {e}")))?;
    if text.len() as u64 > MAX_API_KEY_INPUT {
        return Err(Failure::usage(format!(
            "standard input holds more than {} KiB; that is not one API key (nothing was saved)",
            MAX_API_KEY_INPUT / 1024
        )));
    }
    let key = text.trim();
    if key.is_empty() {
        return Err(
            Failure::usage("no API key on standard input").hint("printenv OPENAI_API_KEY | llmx login --with-api-key")
        );
    }
    if key.chars().any(char::is_whitespace) {
        return Err(Failure::usage("the API key on standard input contains whitespace; pass exactly one key"));
    }
    let path = ctx.home.auth_path();
    let key = Secret::new(key);
    AuthFile::with_api_key(key.clone()).save(&path)?;
    if json {
        output::json_line(
            &serde_json::json!({"event": "login_succeeded", "method": "apikey", "api_key": key.mask(), "auth_file": path.display().to_string()}),
        )?;
    } else {
        output::lines(&[format!("Logged in using an API key - {} (saved to {})", key.mask(), path.display())])?;
    }
    Ok(0)
}
