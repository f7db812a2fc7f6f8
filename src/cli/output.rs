//! Rendering helpers shared by the commands, and the one place where text meets the terminal:
//! JSON to stdout, human lines to stdout or stderr.
//!
//! This is the choke point for text that came from other machines (id_token claims read from a
//! target, a container's or host's error text, the tunnel peer's URL and messages): every human
//! line is passed through [`llmx::text::terminal_safe`] (no escape sequences, controls, newlines
//! or bidi overrides), and every string inside a JSON line is too, after which serde escapes what
//! is left, so `--json` stays one valid JSON object per line. A line is one line: callers that
//! show several give several, so a value with a newline in it cannot fake a line of its own.
//!
//! It also holds the run's output settings (`-q`, `-v`, `--color`), set once by `cli::run`, and
//! the progress display in use: every stderr line is printed above it (indicatif's `suspend`),
//! which works whatever the terminal (`TERM=dumb` hides indicatif's own `println`).

use crate::cli::Failure;
use indicatif::{MultiProgress, ProgressDrawTarget};
use llmx::text::terminal_safe;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);
static VERBOSE: AtomicBool = AtomicBool::new(false);
static COLOR_OUT: AtomicBool = AtomicBool::new(false);
static COLOR_ERR: AtomicBool = AtomicBool::new(false);
static PROGRESS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// `--color`: `auto` colours a terminal unless `NO_COLOR` is set or `TERM=dumb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Set the run's output settings (once, before the command runs).
pub fn configure(quiet: bool, verbose: bool, color: ColorChoice) {
    QUIET.store(quiet, Ordering::Relaxed);
    VERBOSE.store(verbose, Ordering::Relaxed);
    let auto = |terminal: bool| {
        terminal
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").is_ok_and(|t| t != "dumb")
    };
    let (out, err) = match color {
        ColorChoice::Always => (true, true),
        ColorChoice::Never => (false, false),
        ColorChoice::Auto => (auto(std::io::stdout().is_terminal()), auto(std::io::stderr().is_terminal())),
    };
    COLOR_OUT.store(out, Ordering::Relaxed);
    COLOR_ERR.store(err, Ordering::Relaxed);
}

/// `-q`: only errors, warnings and the final result.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether live progress (bars, spinners) can be drawn on stderr: a terminal indicatif can
/// draw on (not `TERM=dumb`), and not `-q`.
pub fn live_progress() -> bool {
    !quiet() && std::io::stderr().is_terminal() && !ProgressDrawTarget::stderr().is_hidden()
}

/// The progress display stderr lines are printed above, while it is shown (`None` to forget it).
pub fn set_progress(multi: Option<MultiProgress>) {
    *PROGRESS.lock().unwrap_or_else(|p| p.into_inner()) = multi;
}

/// What a colour is for; off unless `--color` / the terminal allow it.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Good,
    Bad,
    Warn,
    Dim,
}

/// `text` (already terminal-safe) in the colour of `paint`, when colour is on for stdout
/// (`stderr: false`) or stderr.
pub fn paint(text: &str, paint: Paint, stderr: bool) -> String {
    let on = if stderr { &COLOR_ERR } else { &COLOR_OUT };
    if !on.load(Ordering::Relaxed) {
        return text.to_string();
    }
    let code = match paint {
        Paint::Good => "32",
        Paint::Bad => "31",
        Paint::Warn => "33",
        Paint::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Write on stderr above the progress display, if one is shown. A closed stderr is ignored.
fn to_stderr(text: &str) {
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    };
    let progress = PROGRESS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match progress {
        Some(m) => m.suspend(write),
        None => write(),
    }
}

/// A warning and its hint on stderr: never silenced (not by `-q` either), whatever the terminal.
pub fn warning(message: &str, hint: Option<&str>) {
    let mut text = format!("{} {}\n", paint("warning:", Paint::Warn, true), terminal_safe(message));
    if let Some(h) = hint {
        text.push_str(&format!("hint: {}\n", terminal_safe(h)));
    }
    to_stderr(&text);
}

/// Informational lines on stderr (what is going on): silenced by `-q`.
pub fn note<S: AsRef<str>>(lines: &[S]) {
    if !quiet() {
        err_lines(lines);
    }
}

/// `-v`: what was resolved and why, one `verbose:` line on stderr each.
pub fn verbose(line: impl AsRef<str>) {
    if VERBOSE.load(Ordering::Relaxed) {
        to_stderr(&format!("{} {}\n", paint("verbose:", Paint::Dim, true), terminal_safe(line.as_ref())));
    }
}

/// Whether `-v` is on (to skip work only verbose output needs).
pub fn is_verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Print `value` as one line of JSON on stdout, every string in it made terminal-safe.
pub fn json_line<T: Serialize>(value: &T) -> Result<(), Failure> {
    let mut value = serde_json::to_value(value).map_err(|e| Failure::new(e.to_string()))?;
    clean_json(&mut value);
    let text = value.to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Make every string (and object key) in `value` terminal-safe, in place.
pub fn clean_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = terminal_safe(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
        serde_json::Value::Object(m) => {
            let entries = std::mem::take(m);
            for (k, mut v) in entries {
                clean_json(&mut v);
                m.insert(terminal_safe(&k), v);
            }
        }
        _ => {}
    }
}

/// Print human-readable lines on stdout, each made terminal-safe.
pub fn lines(lines: &[String]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{}", terminal_safe(l))?;
    }
    Ok(())
}

/// Print human-readable lines on stderr, each made terminal-safe (above the progress display,
/// if one is shown). A closed stderr is ignored.
pub fn err_lines<S: AsRef<str>>(lines: &[S]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(&terminal_safe(l.as_ref()));
        text.push('\n');
    }
    to_stderr(&text);
}

/// One line for a progress bar or message: terminal-safe.
pub fn clean(text: &str) -> String {
    terminal_safe(text)
}
