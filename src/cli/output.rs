//! Small rendering helpers shared by the commands: JSON to stdout, human lines to stdout.

use crate::cli::Failure;
use serde::Serialize;
use std::io::Write;

/// Print `value` as one line of JSON on stdout.
pub fn json_line<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(value).map_err(|e| Failure::new(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Print human-readable lines on stdout.
pub fn lines(lines: &[String]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}
