//! The `llmx` binary: parse arguments, run the command, map the result to an exit code.
//! This is the only place that calls `process::exit` (through `ExitCode`).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the binary is where output is rendered")]

use clap::Parser;
mod cli;

use cli::{Cli, Failure};
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
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => report(&f),
    }
}

fn report(f: &Failure) -> ExitCode {
    if f.broken_pipe {
        return ExitCode::SUCCESS;
    }
    let mut err = std::io::stderr().lock();
    // Messages can quote other machines (a container's error, a remote login's output): one
    // line each, without terminal controls, like everything else the binary prints.
    let _ = writeln!(err, "llmx: {}", llmx::text::terminal_safe(&f.message));
    if let Some(h) = &f.hint {
        let _ = writeln!(err, "hint: {}", llmx::text::terminal_safe(h));
    }
    ExitCode::from(f.code)
}
