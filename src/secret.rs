//! A string that holds a credential. Its `Debug` and `Display` are redacted so that a secret
//! cannot reach a log line, an error message or `--json` output by accident; the only way to the
//! text is the explicit [`Secret::expose`].

use serde::{Deserialize, Serialize};
use std::fmt;

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

    /// The display form used by `status`: the first 8 characters, `***`, then the last 5; just
    /// `***` when the key is 13 characters or fewer (showing both ends would reveal all of it).
    pub fn mask(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() <= 13 {
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
        assert_eq!(Secret::new("1234567890123").mask(), "***");
        assert_eq!(Secret::new("12345678901234").mask(), "12345678***01234");
        assert_eq!(Secret::new("").mask(), "***");
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-very-secret-value-0000");
        assert!(!format!("{s:?}").contains("secret-value"));
        assert_eq!(format!("{s}"), "***");
    }
}
