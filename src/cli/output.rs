//! Rendering helpers shared by the commands, and the one place where text meets the terminal:
//! JSON to stdout, human lines to stdout or stderr.
//!
//! This is the choke point for text that came from other machines (id_token claims read from a
//! target, a container's or host's error text, the tunnel peer's URL and messages): every human
//! line is passed through [`llmx::text::terminal_safe`] (no escape sequences, controls, newlines
//! or bidi overrides), and every string inside a JSON line is too, after which serde escapes what
//! is left, so `--json` stays one valid JSON object per line. A line is one line: callers that
//! show several give several, so a value with a newline in it cannot fake a line of its own.

use crate::cli::Failure;
use llmx::text::terminal_safe;
use serde::Serialize;
use std::io::Write;

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

/// Print human-readable lines on stderr, each made terminal-safe. A closed stderr is ignored.
pub fn err_lines<S: AsRef<str>>(lines: &[S]) {
    let mut err = std::io::stderr().lock();
    for l in lines {
        let _ = writeln!(err, "{}", terminal_safe(l.as_ref()));
    }
}

/// One line for a progress bar or message: terminal-safe.
pub fn clean(text: &str) -> String {
    terminal_safe(text)
}
