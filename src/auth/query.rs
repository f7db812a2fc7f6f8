//! The parameters of an OAuth redirect back to llmx (`code`, `state`, `error`,
//! `error_description`): from a callback request or from an address the user pasted. Parsing never
//! fails; values that are shown to the user are made terminal-safe here.

use crate::text::printable;

/// The parameters of a callback. Never fails: junk yields `None`s.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl CallbackQuery {
    /// Parse a raw query string; the first occurrence of a key wins; shown values are cleaned.
    pub fn parse(raw: &str) -> CallbackQuery {
        let mut q = CallbackQuery::default();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let slot = match &*k {
                "code" => &mut q.code,
                "state" => &mut q.state,
                "error" => &mut q.error,
                "error_description" => &mut q.error_description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        q.error = q.error.map(|e| printable(&e)).filter(|e| !e.is_empty());
        q.error_description = q.error_description.map(|e| printable(&e)).filter(|e| !e.is_empty());
        q
    }
}
