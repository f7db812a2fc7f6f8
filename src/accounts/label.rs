//! Account labels: what names an account in `$LLMX_HOME/accounts/<label>/`, how a label is
//! checked (it becomes a directory name), and the default one a login gets (its email, or
//! `api-key-<last 4>` for an API key).

use crate::auth::file::AuthFile;

/// The longest label accepted (an email fits; a path component must stay short).
pub const MAX_LABEL: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid account label {shown:?}: {why}")]
pub struct LabelError {
    /// The label as given, control characters escaped.
    pub shown: String,
    pub why: &'static str,
}

/// Check a label: non-empty, at most [`MAX_LABEL`] bytes, no `/` or `\`, no `..`, no control
/// characters, not starting with `.` (the names of llmx's own files there do).
pub fn check(label: &str) -> Result<(), LabelError> {
    let err = |why| Err(LabelError { shown: label.escape_default().to_string(), why });
    if label.is_empty() {
        return err("it is empty");
    }
    if label.len() > MAX_LABEL {
        return err("it is longer than 128 bytes");
    }
    if label.contains(['/', '\\']) {
        return err("it contains a slash");
    }
    if label.contains("..") {
        return err("it contains `..`");
    }
    if label.starts_with('.') {
        return err("it starts with `.`");
    }
    if label.chars().any(char::is_control) {
        return err("it contains a control character");
    }
    if label.trim() != label {
        return err("it starts or ends with a space");
    }
    Ok(())
}

/// The label a login gets when none is given: the id_token's email for a ChatGPT login,
/// `api-key-<last 4>` for an API key, `chatgpt-<account id>` when there is no usable email.
pub fn default_for(file: &AuthFile) -> Option<String> {
    if file.tokens.is_some() {
        if let Some(email) = file.email().filter(|e| check(e).is_ok()) {
            return Some(email);
        }
        let id: String = file.account_id().unwrap_or_default().chars().filter(char::is_ascii_alphanumeric).collect();
        return Some(if id.is_empty() { "chatgpt".to_string() } else { format!("chatgpt-{id}") });
    }
    let key = file.api_key()?.expose();
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    let tail: String = tail.chars().filter(char::is_ascii_alphanumeric).collect();
    Some(format!("api-key-{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn labels_that_could_leave_the_accounts_directory_are_refused() {
        for ok in ["work", "dev@example.com", "api-key-1234", "a.b", "team ci"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "..", "a..b", ".hidden", "x\ny", "tab\there", "back\\slash", " pad", &"x".repeat(129)] {
            let e = check(bad).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn an_api_key_login_is_labelled_by_its_last_four_characters() {
        let f = AuthFile::with_api_key(Secret::new("sk-proj-abcdefgh9876"));
        assert_eq!(default_for(&f).as_deref(), Some("api-key-9876"));
        let empty = AuthFile { openai_api_key: None, tokens: None, last_refresh: None, extra: Default::default() };
        assert_eq!(default_for(&empty), None);
    }
}
