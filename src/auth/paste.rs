//! Paste-back (DESIGN.md §8): what a user pastes while a login waits. Either the whole address the
//! browser ended on (`http://localhost:1455/auth/callback?code=…&state=…`, which fails to load on
//! a machine without the listener) or just the code. No I/O; the server checks state and runs the
//! exchange.

use crate::auth::query::CallbackQuery;

/// A pasted line, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Pasted {
    /// An address with a query: checked like a callback request (state included).
    Callback(CallbackQuery),
    /// A bare authorization code, copied from the address by hand.
    Code(String),
}

/// The longest line taken as a code or an address.
const MAX_LINE: usize = 8 * 1024;

/// Understand one pasted line, or say in a few words why it is neither an address nor a code.
pub fn parse(line: &str) -> Result<Pasted, &'static str> {
    let line = line.trim();
    if line.is_empty() {
        return Err("an empty line is neither an address nor a code");
    }
    if line.len() > MAX_LINE {
        return Err("the pasted line is too long to be an address or a code");
    }
    if line.contains("://") || line.starts_with("localhost") || line.starts_with('/') || line.starts_with('?') {
        let query = match line.split_once('?') {
            Some((_, q)) => q.split('#').next().unwrap_or(""),
            None => return Err("the pasted address has no query (no ?code=...&state=...)"),
        };
        return Ok(Pasted::Callback(CallbackQuery::parse(query)));
    }
    if line.contains("code=") {
        return Ok(Pasted::Callback(CallbackQuery::parse(line)));
    }
    let plausible = line.len() >= 8 && line.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c));
    if !plausible {
        return Err("that is neither the address your browser shows nor a code");
    }
    Ok(Pasted::Code(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(line: &str) -> CallbackQuery {
        match parse(line) {
            Ok(Pasted::Callback(q)) => q,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_full_address_a_query_or_a_bare_code() {
        let q = callback("  http://localhost:1455/auth/callback?code=ac_123&state=st-1&scope=x#frag\n");
        assert_eq!((q.code.as_deref(), q.state.as_deref()), (Some("ac_123"), Some("st-1")));
        assert_eq!(callback("localhost:1457/auth/callback?state=s&code=c").code.as_deref(), Some("c"));
        assert_eq!(callback("code=c2&state=s2").state.as_deref(), Some("s2"));
        let q = callback("http://localhost:1455/auth/callback?error=access_denied&state=s");
        assert_eq!(q.error.as_deref(), Some("access_denied"));
        assert_eq!(parse("ac_0123456789abcdef").unwrap(), Pasted::Code("ac_0123456789abcdef".into()));
    }

    #[test]
    fn garbage_is_a_reason() {
        for junk in ["", "   ", "hello world", "short", "http://localhost:1455/auth/callback", "\u{1b}[2Jcode", "y"] {
            assert!(parse(junk).is_err(), "{junk:?}");
        }
        assert!(parse(&"a".repeat(MAX_LINE + 1)).is_err());
    }
}
