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
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages);
    let names: Vec<String> = pages.iter().map(page_name).collect();
    let mut written = Vec::new();
    for page in &pages {
        let path = args.dir.join(format!("{}.1", page_name(page)));
        std::fs::write(&path, render_page(page, &names).map_err(cannot)?).map_err(cannot)?;
        // Man pages are for everyone to read (the process umask makes files private).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(cannot)?;
        written.push(path);
    }
    output::note(&[format!("wrote {} man pages into {}", written.len(), args.dir.display())]);
    Ok(0)
}

/// Every command with a page: llmx and its (visible) subcommands, depth first.
fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(cmd.clone());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

/// `llmx-auth-push` (clap's display name once built).
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string()
}

/// One page: clap_mangen's title, name, synopsis, description, options and subcommands (a
/// repeatable TARGET shown as `<TARGET>...`), then EXAMPLES and NOTES from the `--help` text
/// after the options, EXIT STATUS, and SEE ALSO naming the other pages.
fn render_page(cmd: &clap::Command, all: &[String]) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    // Each part comes with roff's quote-character prelude; one is enough.
    const PRELUDE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    if let Some(rest) = text.strip_prefix(PRELUDE) {
        text = format!("{PRELUDE}{}", rest.replace(PRELUDE, ""));
    }
    for arg in cmd.get_positionals().filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1)) {
        let name = arg.get_value_names().and_then(|v| v.first()).map(ToString::to_string).unwrap_or_default();
        let shown = format!("<\\fI{name}\\fR>");
        text = text.replace(&shown, &format!("{shown}..."));
    }
    let after = cmd.get_after_help().map(ToString::to_string).unwrap_or_default();
    let (examples, notes) = split_examples(&after);
    if !examples.is_empty() {
        text.push_str(&format!(".SH EXAMPLES\n.nf\n{}\n.fi\n", roff_lines(&examples)));
    }
    if !notes.is_empty() {
        text.push_str(&format!(".SH NOTES\n.nf\n{}\n.fi\n", roff_lines(&notes)));
    }
    text.push_str(EXIT_STATUS);
    let me = page_name(cmd);
    let others: Vec<String> = all.iter().filter(|n| **n != me).map(|n| format!("\\fB{n}\\fR(1)")).collect();
    text.push_str(&format!(".SH \"SEE ALSO\"\n{}\n", others.join(", ")));
    Ok(text.into_bytes())
}

const EXIT_STATUS: &str = ".SH \"EXIT STATUS\"\n\
0 success; 1 not logged in, or a target failed; 2 a usage or configuration error; 3 unreachable \
(Docker Engine, SSH host, Kubernetes API, issuer); 4 authentication needed (SSH, an unknown host \
key); 130 interrupted (Ctrl\\-C or SIGTERM). With \\fB\\-\\-json\\fR a failure is also a JSON \
object on stdout: {\"error\":{\"kind\":...,\"message\":...}}.\n";

/// The `Examples:` paragraph of a command's after-help (its lines, without the heading), and the
/// other paragraphs.
fn split_examples(after: &str) -> (String, String) {
    let (mut examples, mut notes) = (Vec::new(), Vec::new());
    for para in after.split("\n\n") {
        match para.strip_prefix("Examples:\n") {
            Some(lines) => examples.push(lines.to_string()),
            None if !para.trim().is_empty() => notes.push(para.to_string()),
            None => {}
        }
    }
    (examples.join("\n"), notes.join("\n\n"))
}

/// Text as roff lines shown as they are: backslashes escaped, a leading `.` or `'` neutralised.
fn roff_lines(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
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

    /// Every man page has EXAMPLES, EXIT STATUS and SEE ALSO, and a repeatable TARGET is shown
    /// as `<TARGET>...` (issue 20 item 6).
    #[test]
    fn man_pages_have_examples_exit_status_see_also_and_repeated_targets() {
        let mut cmd = Cli::command().disable_help_subcommand(true);
        cmd.build();
        let mut pages = Vec::new();
        collect(&cmd, &mut pages);
        let names: Vec<String> = pages.iter().map(page_name).collect();
        for page in &pages {
            let text = String::from_utf8(render_page(page, &names).unwrap()).unwrap();
            let name = page_name(page);
            for section in [".SH \"EXIT STATUS\"", ".SH \"SEE ALSO\""] {
                assert!(text.contains(section), "{name}: no {section}");
            }
            let leaf = page.get_subcommands().next().is_none() || page.get_name() == "login";
            assert!(!leaf || text.contains(".SH EXAMPLES"), "{name}: no EXAMPLES");
            assert_eq!(text.matches(".ds Aq").count(), 2, "{name}: one prelude");
        }
        let push = pages.iter().find(|p| page_name(p) == "llmx-auth-push").unwrap();
        let text = String::from_utf8(render_page(push, &names).unwrap()).unwrap();
        assert!(text.contains("<\\fITARGET\\fR>..."), "{text}");
        assert!(
            text.contains("\\fBllmx\\-auth\\-where\\fR(1)") || text.contains("\\fBllmx-auth-where\\fR(1)"),
            "{text}"
        );
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
