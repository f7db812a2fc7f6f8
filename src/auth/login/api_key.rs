//! The API-key login: one key read from standard input (never from argv, where other local users
//! could read it). The key is checked for shape only; the agent finds out whether it works.

use super::Obtained;
use crate::secret::Secret;
use std::io::Read;

/// The most we read: an API key is ~200 bytes; anything near this is not a key.
pub const MAX_INPUT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("reading the API key from stdin: {0}")]
    Read(std::io::Error),
    #[error("no API key on standard input")]
    Empty,
    #[error("the API key on standard input contains whitespace; pass exactly one key")]
    Whitespace,
    #[error("standard input holds more than {} KiB; an API key is one short line", MAX_INPUT / 1024)]
    TooLong,
}

/// Read one key from `input`: surrounding whitespace trimmed, nothing else accepted.
pub fn read(input: impl Read) -> Result<Obtained, ApiKeyError> {
    let mut bytes = Vec::new();
    input.take(MAX_INPUT + 1).read_to_end(&mut bytes).map_err(ApiKeyError::Read)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(ApiKeyError::TooLong);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiKeyError::Read(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(ApiKeyError::Empty);
    }
    if key.chars().any(char::is_whitespace) {
        return Err(ApiKeyError::Whitespace);
    }
    Ok(Obtained::ApiKey(Secret::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(input: &[u8]) -> Result<String, String> {
        match read(input) {
            Ok(Obtained::ApiKey(k)) => Ok(k.expose().to_string()),
            Ok(Obtained::ChatGpt { .. }) => Err("not a key".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn one_trimmed_key_or_a_reason() {
        assert_eq!(key(b"  sk-abc\n").unwrap(), "sk-abc");
        assert!(key(b"").unwrap_err().contains("no API key"));
        assert!(key(b" \n\t").unwrap_err().contains("no API key"));
        assert!(key(b"sk-a sk-b").unwrap_err().contains("whitespace"));
        assert!(key(b"\xff\xfe").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn input_past_the_cap_is_an_error_not_a_cut_key() {
        let long = vec![b'k'; MAX_INPUT as usize + 1];
        assert!(key(&long).unwrap_err().contains("more than 64 KiB"));
        let exact = vec![b'k'; MAX_INPUT as usize];
        assert_eq!(key(&exact).unwrap().len(), MAX_INPUT as usize);
    }
}
