//! `llmx login`: browser sign-in, `--with-api-key` from stdin, and `llmx login status`.

use crate::auth::file::AuthFile;
use crate::cli::{Ctx, Failure, output, status};
use crate::secret::Secret;
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoginArgs {
    #[command(subcommand)]
    pub sub: Option<LoginCommand>,

    /// Read an API key from standard input instead of signing in with the browser
    #[arg(long)]
    pub with_api_key: bool,

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
    Err(Failure::new("browser login is not available in this build"))
}

fn with_api_key(ctx: &Ctx, json: bool) -> Result<u8, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::usage("--with-api-key reads the key from standard input, not from a terminal")
            .hint("printenv OPENAI_API_KEY | llmx login --with-api-key"));
    }
    let mut text = String::new();
    stdin
        .lock()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Failure::new(format!("reading the API key from stdin: {e}")))?;
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
