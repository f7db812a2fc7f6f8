//! `llmx completion SHELL` and `llmx man DIR`: the shell completion scripts (clap_complete) and
//! the man pages (clap_mangen), both generated from the same clap definitions as `--help`, so
//! they cannot drift from it. `scripts/man` regenerates `docs/man/`.

use crate::cli::{Cli, Failure, output};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::path::PathBuf;

const COMPLETION_EXAMPLES: &str = "\
Examples:
  mkdir -p ~/.local/share/bash-completion/completions
  llmx completion bash > ~/.local/share/bash-completion/completions/llmx
  llmx completion zsh > \"${fpath[1]}/_llmx\"
  mkdir -p ~/.config/fish/completions && llmx completion fish > ~/.config/fish/completions/llmx.fish
  source <(llmx completion bash)        # this shell only

Targets complete to their kinds (docker:, ssh:); the rest of a target is yours to type.";

#[derive(Debug, Args)]
#[command(after_help = COMPLETION_EXAMPLES)]
pub struct CompletionArgs {
    /// The shell to complete in
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

const MAN_EXAMPLES: &str = "\
Examples:
  llmx man /usr/local/share/man/man1    # then: man llmx, man llmx-auth-push
  llmx man docs/man                     # what scripts/man does";

#[derive(Debug, Args)]
#[command(after_help = MAN_EXAMPLES)]
pub struct ManArgs {
    /// Directory to write llmx.1 and llmx-SUBCOMMAND.1 into (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn completion(args: CompletionArgs) -> Result<u8, Failure> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "llmx", &mut script);
    if args.shell == Shell::Fish {
        // clap_complete's fish script completes no positional values: offer the target kinds.
        script.extend_from_slice(
            b"complete -c llmx -n \"__fish_seen_subcommand_from auth; and __fish_seen_subcommand_from push status pull sync remove\" -f -a \"docker: ssh:\"\n",
        );
    }
    // Generated from our own definitions: printed as it is (it is a script, not text from
    // another machine, and must keep its quoting and newlines).
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(0)
}

pub fn man(args: ManArgs) -> Result<u8, Failure> {
    let cannot = |e: std::io::Error| Failure::new(format!("cannot write man pages into {}: {e}", args.dir.display()));
    std::fs::create_dir_all(&args.dir).map_err(cannot)?;
    clap_mangen::generate_to(Cli::command(), &args.dir).map_err(cannot)?;
    // Man pages are for everyone to read (the process umask makes files private).
    let mut written = Vec::new();
    for entry in std::fs::read_dir(&args.dir).map_err(cannot)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "1") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(cannot)?;
            written.push(path);
        }
    }
    written.sort();
    output::note(&[format!("wrote {} man pages into {}", written.len(), args.dir.display())]);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command a user can run has an Examples section in its `--help`.
    #[test]
    fn every_subcommand_help_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let name = format!("{path} {}", cmd.get_name());
            let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            let leaf = cmd.get_subcommands().next().is_none() || cmd.get_name() == "login";
            if leaf && !help.contains("Examples:") {
                missing.push(name.clone());
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "no Examples section: {missing:?}");
    }

    /// No `--help` shows a key typed on a command line (it would land in the shell's history
    /// and in `ps`): keys come from stdin or an exported variable (issue 20 item 6).
    #[test]
    fn no_help_shows_a_key_on_a_command_line() {
        fn walk(cmd: &mut clap::Command, bad: &mut Vec<String>) {
            let help = cmd.render_long_help().to_string();
            for line in help.lines() {
                if line.contains("sk-") || line.contains("OPENAI_API_KEY=") || line.contains("--api-key ") {
                    bad.push(format!("{}: {line}", cmd.get_name()));
                }
            }
            for sub in cmd.get_subcommands_mut() {
                walk(sub, bad);
            }
        }
        let mut bad = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        walk(&mut cmd, &mut bad);
        assert!(bad.is_empty(), "{bad:#?}");
    }
}
