//! A string that holds a credential. Its `Debug` and `Display` are redacted so that a secret
//! cannot reach a log line, an error message or `--json` output by accident; the only way to the
//! text is the explicit [`Secret::expose`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// The shortest key whose ends `mask` shows: 13 shown, at least 13 hidden.
pub const MASK_MIN_CHARS: usize = 26;

/// A secret string (API key, access/refresh/id token). Serialises transparently (auth.json needs
/// the real value) but never formats itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text. Call sites are few and greppable on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The display form used by `status`: the first 8 characters, `***`, then the last 5, only
    /// when at least half of the key stays hidden ([`MASK_MIN_CHARS`] or more); else just `***`.
    /// (DESIGN.md §2 says "`***` when 13 or fewer", which shows 13 of a 14-character key; see
    /// docs/security.md.)
    pub fn mask(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < MASK_MIN_CHARS {
            return "***".to_string();
        }
        let head: String = chars[..8].iter().collect();
        let tail: String = chars[chars.len() - 5..].iter().collect();
        format!("{head}***{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_shows_ends_of_long_keys_only() {
        assert_eq!(Secret::new("sk-proj-abcdefghijklmnop12345").mask(), "sk-proj-***12345");
        assert_eq!(Secret::new("").mask(), "***");
        assert_eq!(Secret::new("abcdefghijklmnopqrstuvwxyz").mask(), "abcdefgh***vwxyz");
    }

    /// Every length, ASCII and multi-byte: the mask never shows more than half of the key.
    #[test]
    fn mask_never_reveals_half_of_a_key_of_any_length() {
        for n in 0..80 {
            for unit in ["k", "é", "😀"] {
                let key = unit.repeat(n);
                let mask = Secret::new(&key).mask();
                let shown = mask.chars().count() - 3;
                assert!(mask.contains("***"), "{n}");
                assert!(2 * shown <= n, "{n} chars: {mask:?} shows {shown}");
                assert_eq!(shown > 0, n >= MASK_MIN_CHARS, "{n}");
            }
        }
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-very-secret-value-0000");
        assert!(!format!("{s:?}").contains("secret-value"));
        assert_eq!(format!("{s}"), "***");
    }
}
