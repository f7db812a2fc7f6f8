//! PKCE (RFC 7636) and the OAuth `state`, exactly as llmx makes them (DESIGN.md §3): the verifier
//! is base64url-no-pad of 64 random bytes, the challenge base64url-no-pad of its SHA-256 (method
//! `S256`), and the state base64url-no-pad of 32 random bytes.

use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The operating system could not provide random bytes; no login can be started safely.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// A PKCE pair. The verifier is sent only to the token endpoint; the challenge goes in the URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Result<Pkce, RandomError> {
        let verifier = random_b64(64)?;
        Ok(Pkce { challenge: challenge_for(&verifier), verifier: Secret::new(verifier) })
    }
}

/// The `S256` challenge of a verifier: base64url-no-pad(SHA-256(verifier)).
pub fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh `state` value (32 random bytes).
pub fn new_state() -> Result<String, RandomError> {
    random_b64(32)
}

/// `n` random bytes, base64url-no-pad encoded.
pub fn random_b64(n: usize) -> Result<String, RandomError> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn lengths_and_alphabet() {
        let p = Pkce::generate().unwrap();
        assert_eq!(p.verifier.expose().len(), 86, "64 bytes -> 86 base64url chars");
        assert_eq!(p.challenge.len(), 43);
        assert_eq!(challenge_for(p.verifier.expose()), p.challenge);
        let s = new_state().unwrap();
        assert_eq!(s.len(), 43);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{s}");
        assert_ne!(new_state().unwrap(), s);
    }
}
