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
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => report(&f, json),
    }
}

/// A command line clap refused (exit 2). `--help` and `--version` are not errors: printed as
/// clap prints them. With `--json` anywhere on the line, the error is a JSON object too.
fn usage_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
    if json {
        let f = Failure::of(Kind::Usage, first).hint("see `llmx --help`");
        print_json(&f);
    }
    let _ = e.print();
    ExitCode::from(Kind::Usage.code())
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
