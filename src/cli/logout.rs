//! `llmx logout`: remove auth.json, and any temp copy of it a crashed write left in the home.
//! Idempotent: logging out twice is not an error.

use crate::cli::{Ctx, Failure, output};
use clap::Args;

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Print a JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: LogoutArgs) -> Result<u8, Failure> {
    let path = ctx.home.auth_path();
    let removed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Failure::new(format!("{}: {e}", path.display()))),
    };
    llmx::home::clean_stale_temps(ctx.home.dir(), llmx::home::AUTH_FILE);
    let env_key_set = std::env::var("OPENAI_API_KEY").is_ok_and(|v| !v.is_empty());
    if args.json {
        output::json_line(
            &serde_json::json!({"removed": removed, "auth_file": path.display().to_string(), "env_api_key_set": env_key_set}),
        )?;
    } else {
        let mut lines = vec![if removed {
            "Logged out: removed ".to_string() + &path.display().to_string()
        } else {
            "Not logged in: nothing to remove".to_string()
        }];
        if env_key_set {
            lines.push(
                "Note: OPENAI_API_KEY is set in this environment and still applies; unset it to log out fully.".into(),
            );
        }
        output::lines(&lines)?;
    }
    Ok(0)
}
