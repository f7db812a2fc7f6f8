//! Text helpers shared by every layer: making text from other machines safe for a terminal, the
//! one way durations are shown, and "did you mean" suggestions. No I/O.
//!
//! Text that came from outside (id_token claims, a remote's output, an issuer's error, a peer's
//! URL) can carry terminal control sequences: a screen clear (`ESC[2J`), a clipboard write
//! (OSC 52), a fake line (a newline, then "URL: ..."), or bidi overrides that make text read
//! differently from what it is. [`terminal_safe`] removes all of them; the binary passes every
//! line and every JSON string it prints through it (`cli::output`), and [`printable`] also bounds
//! the length for messages built from remote text.

use std::time::Duration;

/// The candidates within edit distance 2 of `word` (and not equal to it), nearest first: what a
/// "did you mean" suggests for a typo.
pub fn near_misses<'a>(word: &str, candidates: &[&'a str]) -> Vec<&'a str> {
    let mut near: Vec<(usize, &str)> =
        candidates.iter().map(|c| (edit_distance(word, c), *c)).filter(|(d, c)| *d <= 2 && *c != word).collect();
    near.sort();
    near.into_iter().map(|(_, c)| c).collect()
}

/// Levenshtein distance, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Text from the network made safe for a terminal line, at most 300 chars (see [`terminal_safe`]).
pub fn printable(text: &str) -> String {
    terminal_safe(text).chars().take(300).collect()
}

/// `text` without terminal controls: escape sequences (CSI `ESC[`…, OSC `ESC]`… up to BEL or ST,
/// DCS/SOS/PM/APC strings, two-byte `ESC x`, and their C1 forms such as U+009B), every other C0
/// and C1 control (newlines and tabs too: one value, one line), DEL, and the bidi embedding,
/// override and isolate characters (U+202A–U+202E, U+2066–U+2069), plus U+200E/U+200F and
/// U+061C. Everything else is kept as it is. Never fails, never grows the text.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    skip_csi(&mut chars);
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    skip_string(&mut chars);
                }
                Some(n) if ('\u{20}'..='\u{7e}').contains(&n) => {
                    chars.next();
                }
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// The characters that reorder displayed text (Unicode bidi embeddings, overrides, isolates and
/// marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// The rest of a CSI sequence: parameter and intermediate bytes, then one final byte.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(&c) = chars.peek() {
        if ('\u{20}'..='\u{3f}').contains(&c) {
            chars.next();
            continue;
        }
        if ('\u{40}'..='\u{7e}').contains(&c) {
            chars.next();
        }
        return;
    }
}

/// The rest of an OSC/DCS/SOS/PM/APC string: up to BEL, ST (`ESC \` or U+009C) or the end.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
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

/// A serde_json error without the values it may quote (`invalid type: string "sk-..."`): its
/// kind and position only, plus the key name of a missing field (a name from our own types).
pub fn json_error_summary(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable".to_string(),
        serde_json::error::Category::Syntax => "not valid JSON".to_string(),
        serde_json::error::Category::Eof => "cut short".to_string(),
        serde_json::error::Category::Data => {
            let text = e.to_string();
            match text.strip_prefix("missing field `").and_then(|t| t.split_once('`')) {
                Some((field, _)) if field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    format!("missing key {field:?}")
                }
                _ => "a value of the wrong type".to_string(),
            }
        }
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

/// Hostile strings as other machines could send them, for the tests of every surface that shows
/// remote text (unit and integration tests share this one table): each tries a different way to
/// reach the terminal; [`has_terminal_controls`] says whether anything of them survived.
#[doc(hidden)]
pub const HOSTILE_STRINGS: [&str; 12] = [
    "a\u{1b}[2Jb",                      // clear the screen
    "a\u{1b}]52;c;ZXZpbA==\u{7}b",      // OSC 52: write the clipboard, BEL-terminated
    "a\u{1b}]52;c;ZXZpbA==\u{1b}\\b",   // the same, ST-terminated
    "a\u{7}b",                          // BEL
    "a\u{9b}31mb",                      // C1 CSI (U+009B)
    "a\u{9d}0;title\u{9c}b",            // C1 OSC set-title
    "a\u{202e}gnp.exe",                 // right-to-left override
    "a\u{2066}b\u{2069}",               // isolates
    "a\nURL: https://evil.example/\nb", // a fake line
    "a\r\u{1b}[1A\u{1b}[Kb",            // move up and erase a line
    "a\u{1b}P1$qm\u{1b}\\b",            // DCS request
    "a\u{1b}[?1049h\u{0}\u{7f}\u{85}b", // alternate screen, NUL, DEL, NEL
];

/// Whether `output` (several lines) still holds something of [`HOSTILE_STRINGS`]: a control other
/// than the newlines between lines, a bidi control, or a line the remote faked.
#[doc(hidden)]
pub fn has_terminal_controls(output: &str) -> bool {
    output.chars().any(|c| (c.is_control() && c != '\n') || is_bidi_control(c))
        || output.lines().any(|l| l.trim_start().starts_with("URL: https://evil"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn near_misses_suggest_typos_within_two_edits_only() {
        let keys = ["auth_issuer", "auth_client_id", "preferred_auth_method"];
        assert_eq!(super::near_misses("auth_isuer", &keys), ["auth_issuer"]);
        assert_eq!(super::near_misses("auth_issuer", &keys), Vec::<&str>::new());
        assert_eq!(super::near_misses("model", &keys), Vec::<&str>::new());
        assert_eq!(super::edit_distance("kitten", "sitting"), 3);
    }

    use super::*;

    #[test]
    fn terminal_safe_strips_every_hostile_string_class() {
        for s in HOSTILE_STRINGS {
            let clean = terminal_safe(s);
            assert!(!has_terminal_controls(&clean), "{s:?} -> {clean:?}");
            assert!(!clean.contains('\n'), "{s:?} -> {clean:?}");
            assert!(clean.starts_with('a'), "text around the sequence is kept: {s:?} -> {clean:?}");
        }
        assert_eq!(terminal_safe("a\u{1b}[2Jb"), "ab");
        assert_eq!(terminal_safe("a\u{1b}]52;c;ZXZpbA==\u{7}b"), "ab");
        assert_eq!(terminal_safe("ümlaut — ok 😀 https://x/?a=1&b=2"), "ümlaut — ok 😀 https://x/?a=1&b=2");
        // An unterminated sequence eats the rest, never panics.
        for s in ["\u{1b}", "\u{1b}[", "\u{1b}]52;", "\u{9b}", "x\u{1b}[1;2", "\u{1b}P"] {
            assert!(!has_terminal_controls(&terminal_safe(s)), "{s:?}");
        }
    }

    #[test]
    fn printable_bounds_the_length() {
        assert_eq!(printable(&"x".repeat(1000)).len(), 300);
    }
}
