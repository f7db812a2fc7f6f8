//! Text helpers shared by every layer: making text from other machines safe for a terminal, and
//! the one way durations are shown. No I/O.

use std::time::Duration;

/// Text from the network made safe for a terminal line: no control characters, at most 300 chars.
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// "10 min", "90 s", "1.5 s": how messages show a duration.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match d.subsec_millis() {
        0 if s >= 60 && s.is_multiple_of(60) => format!("{} min", s / 60),
        0 => format!("{s} s"),
        _ => format!("{:.1} s", d.as_secs_f64()),
    }
}
