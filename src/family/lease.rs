//! Leases (DESIGN.md §10): this machine owns each ChatGPT lineage; every other place holds an
//! access-only copy. A lease is the owner's auth.json with `tokens.refresh_token` set to `""`
//! (the key stays: current Codex refuses a file without it, and reads one with `""` as a
//! ChatGPT login) and `OPENAI_API_KEY` `null` (the exchanged key is a credential of its own).
//! Everything else — id and access tokens, `account_id`, `last_refresh`, `auth_mode`, unknown
//! keys — is kept as the owner has it, so a lease is a pure view of the owner's file: neither the
//! refresh token nor the key leaves this machine.
//!
//! [`Kind`] names what a place holds (lease, full copy, its own login, an API key); the ledger
//! records it and `auth where` shows it. Nothing here does I/O.

use crate::auth::claims::expiry;
use crate::auth::file::AuthFile;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How long before a lease's access token expires `auth sync` renews it, unless
/// `--renew-within` or `lease_renew_within` says otherwise.
pub const DEFAULT_WINDOW: time::Duration = time::Duration::days(2);

/// What one place holds of this machine's login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An access-only copy: usable until its access token expires, renewed by `auth sync`.
    Lease,
    /// A full copy of the lineage (refresh token included): `push --full`.
    Full,
    /// The place signed in on its own (`auth tunnel`): its own lineage, the same account.
    Own,
    /// An API key: copies freely, nothing to renew.
    ApiKey,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lease => "lease",
            Kind::Full => "full",
            Kind::Own => "own",
            Kind::ApiKey => "api-key",
        }
    }

    /// What a file that was written from here is: a lease when its refresh token is empty, a
    /// full copy when it has one, an API key otherwise.
    pub fn of_written(file: &AuthFile) -> Kind {
        match &file.tokens {
            Some(_) if is_lease(file) => Kind::Lease,
            Some(_) => Kind::Full,
            None => Kind::ApiKey,
        }
    }
}

/// Whether `file` is a lease: ChatGPT tokens with an empty refresh token.
pub fn is_lease(file: &AuthFile) -> bool {
    file.tokens.as_ref().is_some_and(|t| t.refresh_token.is_empty())
}

/// The lease of the owner's login: the same file with `refresh_token` `""` and no API key
/// (`"OPENAI_API_KEY": null`). `None` for a file without ChatGPT tokens (an API key is pushed as
/// it is). The key a ChatGPT login got from the token exchange is a credential of its own that
/// does not expire with the access token: a lease that carried it would leak more than one access
/// token, and a ChatGPT lease (its `auth_mode` says `chatgpt`) does not use it.
pub fn lease_of(owner: &AuthFile) -> Option<AuthFile> {
    let mut lease = owner.clone();
    lease.tokens.as_mut()?.refresh_token = Secret::new("");
    lease.openai_api_key = None;
    Some(lease)
}

/// Unix time of the access token's `exp`, when it is a JWT.
pub fn access_expiry(file: &AuthFile) -> Option<i64> {
    expiry(file.tokens.as_ref()?.access_token.expose())
}

/// Where a lease stands at `now` with renewal window `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// More than `window` left.
    Current,
    /// Inside the renewal window: `auth sync` renews it.
    Expiring,
    /// Its access token has expired: the place cannot work until renewed.
    Expired,
    /// An opaque access token: its expiry is unknown.
    Unknown,
}

/// How a lease whose access token expires at `exp` stands.
pub fn standing(exp: Option<i64>, window: time::Duration, now: OffsetDateTime) -> Standing {
    let Some(exp) = exp else { return Standing::Unknown };
    let left = exp - now.unix_timestamp();
    if left <= 0 {
        Standing::Expired
    } else if left < window.whole_seconds() {
        Standing::Expiring
    } else {
        Standing::Current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::test_jwt;
    use std::path::Path;

    fn owner() -> Vec<u8> {
        let id = test_jwt(&serde_json::json!({"email": "a@b.c"}));
        let at = test_jwt(&serde_json::json!({"exp": 2_000_000_000}));
        format!(
            "{{\n  \"OPENAI_API_KEY\": \"sk-x\",\n  \"tokens\": {{\n    \"id_token\": \"{id}\",\n    \"access_token\": \"{at}\",\n    \"refresh_token\": \"rt-secret\",\n    \"account_id\": \"acc\"\n  }},\n  \"last_refresh\": \"2025-08-06T20:41:36.232376Z\",\n  \"auth_mode\": \"chatgpt\",\n  \"future\": 1\n}}"
        )
        .into_bytes()
    }

    #[test]
    fn a_lease_is_the_owners_file_with_an_empty_refresh_token_and_nothing_else_changed() {
        let bytes = owner();
        let f = AuthFile::parse(Path::new("o"), &bytes).unwrap();
        let lease = lease_of(&f).unwrap().to_bytes();
        let text = String::from_utf8(lease.clone()).unwrap();
        assert!(!text.contains("rt-secret") && !text.contains("sk-x"));
        assert!(text.contains("\"refresh_token\": \"\""), "{text}");
        let expected = String::from_utf8(bytes)
            .unwrap()
            .replace("rt-secret", "")
            .replace("\"OPENAI_API_KEY\": \"sk-x\"", "\"OPENAI_API_KEY\": null");
        assert_eq!(text, expected, "only the refresh token and the API key differ, byte for byte");
        let back = AuthFile::parse(Path::new("l"), &lease).unwrap();
        assert!(is_lease(&back));
        assert_eq!(Kind::of_written(&back), Kind::Lease);
        assert_eq!(Kind::of_written(&f), Kind::Full);
        assert_eq!(access_expiry(&back), Some(2_000_000_000));
        assert!(lease_of(&AuthFile::with_api_key(Secret::new("k"))).is_none());
    }

    #[test]
    fn standing_by_expiry_and_window() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let w = time::Duration::days(2);
        assert_eq!(standing(Some(1_000_000 + 3 * 86_400), w, now), Standing::Current);
        assert_eq!(standing(Some(1_000_000 + 86_400), w, now), Standing::Expiring);
        assert_eq!(standing(Some(1_000_000), w, now), Standing::Expired);
        assert_eq!(standing(None, w, now), Standing::Unknown);
    }
}
