//! The `llmx` binary: parse arguments, run the command, map the result to an exit code.
//! This is the only place that calls `process::exit` (through `ExitCode`), and where a failure
//! becomes the `llmx:` / `hint:` lines on stderr and, with `--json`, the
//! `{"error":{"kind":…,"message":…}}` object on stdout (the exit codes: cli::failure::Kind).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the binary is where output is rendered")]

use clap::Parser;
mod cli;

use cli::{Cli, Failure, Kind};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Secure default before anything can write a file (atuin's habit): nothing we create is
    // readable by others, whatever path a write takes.
    // SAFETY: umask only sets the process file-mode mask; it has no failure mode.
    #[allow(unsafe_code, reason = "umask: std has no safe wrapper")]
    unsafe {
        libc::umask(0o077)
    };
    // reqwest and kube both use rustls; with more than one crypto provider in the dependency
    // graph rustls panics at the first TLS connection unless one is installed: ring, first.
    // Err only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.command.json();
    // One run shares each jump host's connection between all its targets, also those worked on
    // one after another (llmx::ssh::session::hops).
    let jump_hosts = llmx::ssh::session::keep_jump_hosts();
    let result = cli::run(cli);
    drop(jump_hosts);
    // Connections still open (an interrupted run) end with the process: their proxy commands too.
    llmx::ssh::session::end_proxy_commands();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => report(&f, json),
    }
}

/// A command line clap refused (exit 2), said as every other failure is: one `llmx:` line and
/// a `hint:` line (clap's tip, else the usage), not clap's multi-line text; with `--json`
/// anywhere on the line, the JSON error object too. `--help` and `--version` are not errors:
/// printed as clap prints them; nor is a command without its subcommand (`llmx`, `llmx auth`):
/// its help on stdout, exit 0, as gh and kubectl do.
fn usage_error(e: &clap::Error) -> ExitCode {
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{}", e.render());
        let _ = out.flush();
        return ExitCode::SUCCESS;
    }
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let (message, hint) = usage_lines(&e.render().to_string());
    let f = Failure::of(Kind::Usage, message).hint(hint);
    if json {
        print_json(&f);
    }
    report(&f, false)
}

/// clap's rendered error as one message and one hint: the first paragraph (a list it announces
/// with a colon joined on), and clap's tip, else the usage line.
fn usage_lines(rendered: &str) -> (String, String) {
    let mut paragraphs = rendered.split("\n\n").map(str::trim).filter(|p| !p.is_empty());
    let first = paragraphs.next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    let message = first.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let tip = rendered.lines().find_map(|l| l.trim().strip_prefix("tip: "));
    let usage = rendered.lines().find_map(|l| l.trim().strip_prefix("Usage: "));
    let hint = match (tip, usage) {
        (Some(tip), _) => tip.to_string(),
        (None, Some(usage)) => format!("usage: {usage} (more with --help)"),
        (None, None) => "see `llmx --help`".to_string(),
    };
    (message, hint)
}

fn report(f: &Failure, json: bool) -> ExitCode {
    if f.broken_pipe {
        return ExitCode::SUCCESS;
    }
    if json {
        print_json(f);
    }
    let mut err = std::io::stderr().lock();
    // Messages can quote other machines (a container's error, a remote login's output): one
    // line each, without terminal controls, like everything else the binary prints.
    let _ = writeln!(err, "llmx: {}", llmx::text::terminal_safe(&f.message));
    if let Some(h) = &f.hint {
        let _ = writeln!(err, "hint: {}", llmx::text::terminal_safe(h));
    }
    ExitCode::from(f.code())
}

/// The failure as one JSON object on stdout (every string terminal-safe).
fn print_json(f: &Failure) {
    let mut value = f.json();
    cli::clean_json(&mut value);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}
