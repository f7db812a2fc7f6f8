//! The OS keyring as the agent uses it: service `LLMX Auth`, account `cli|` + the first 16 hex
//! digits of SHA-256 of the canonicalised home, the auth.json object as compact JSON. The
//! `keyring` crate with the agent's features writes and reads the entry (on Linux: the kernel
//! keyring as a cache in front of the Secret Service), so an entry of one is the other's.
//!
//! Every call runs on a thread of its own with a time limit: a locked, absent or slow Secret
//! Service must never hang llmx (the call is abandoned, its thread ends with the process).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The keyring service the agent uses.
pub const SERVICE: &str = "LLMX Auth";
/// How long one keyring call may take, unless `LLMX_KEYRING_TIMEOUT` says otherwise.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(5);
/// Environment variable with the limit (a duration such as `5s` or `500ms`, or whole seconds).
pub const LIMIT_ENV: &str = "LLMX_KEYRING_TIMEOUT";

/// Why the keyring did not answer as asked. The reason never quotes a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the keyring (service \"{SERVICE}\", account \"{account}\") could not {op} the login: {reason}; \
     unlock the keyring, or set cli_auth_credentials_store = \"file\" in config.toml"
)]
pub struct KeyringError {
    pub op: &'static str,
    pub account: String,
    pub reason: String,
}

/// The keyring account of the home `dir`: `cli|` + 16 hex digits of SHA-256 of its canonical
/// path (the path as given when it cannot be canonicalised), as the agent computes it.
pub fn account_for(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let digest = hex::encode(Sha256::digest(canonical.to_string_lossy().as_bytes()));
    format!("cli|{}", &digest[..16])
}

/// The limit of one call: `LLMX_KEYRING_TIMEOUT` when set and valid, else [`DEFAULT_LIMIT`].
pub fn limit() -> Duration {
    std::env::var(LIMIT_ENV).ok().and_then(|t| parse_limit(&t)).unwrap_or(DEFAULT_LIMIT)
}

/// `5s`, `500ms`, `2.5` (seconds): a positive duration.
fn parse_limit(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().filter(|n| *n > 0).map(Duration::from_millis);
    }
    let secs = text.strip_suffix('s').unwrap_or(text).trim();
    secs.parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0).map(Duration::from_secs_f64)
}

/// One keyring entry (service [`SERVICE`], the account of one home). The account is computed at
/// each call, from the home as it is then: a home created after this value was made (an
/// account's directory) canonicalises as the agent will see it.
#[derive(Debug, Clone)]
pub struct KeyringEntry {
    dir: std::path::PathBuf,
    limit: Duration,
}

impl KeyringEntry {
    /// The entry of the home `dir`.
    pub fn for_home(dir: &Path) -> KeyringEntry {
        KeyringEntry { dir: dir.to_path_buf(), limit: limit() }
    }

    pub fn account(&self) -> String {
        account_for(&self.dir)
    }

    /// The stored value, `None` when there is no entry.
    pub fn get(&self) -> Result<Option<String>, KeyringError> {
        self.call("read", |e| match e.get_password() {
            Ok(v) => Ok(Some(v)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Store `value` (replacing what is there).
    pub fn set(&self, value: String) -> Result<(), KeyringError> {
        self.call("save", move |e| e.set_password(&value))
    }

    /// Delete the entry; `false` when there was none.
    pub fn delete(&self) -> Result<bool, KeyringError> {
        self.call("delete", |e| match e.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// Run `f` on the entry on a thread of its own, giving up after the limit.
    fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
    ) -> Result<T, KeyringError> {
        let (tx, rx) = mpsc::channel();
        let account = self.account();
        let theirs = account.clone();
        let spawned = std::thread::Builder::new().name("llmx-keyring".into()).spawn(move || {
            let result = keyring::Entry::new(SERVICE, &theirs).and_then(|e| f(&e));
            let _ = tx.send(result);
        });
        let fail = |reason: String| KeyringError { op, account: account.clone(), reason };
        if let Err(e) = spawned {
            return Err(fail(format!("cannot start a thread: {e}")));
        }
        match rx.recv_timeout(self.limit) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(fail(describe(&e))),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(fail(format!(
                "no answer within {} (a locked keyring waiting for a password prompt, or a stalled Secret Service)",
                crate::text::format_duration(self.limit)
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(fail("the keyring call ended without an answer".into())),
        }
    }
}

/// One line for a keyring error (the crate's own text can span lines and wrap a D-Bus error).
fn describe(e: &keyring::Error) -> String {
    let text = match e {
        keyring::Error::NoStorageAccess(inner) => format!("no keyring is reachable ({inner})"),
        keyring::Error::PlatformFailure(inner) => format!("the keyring failed ({inner})"),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_takes_seconds_or_milliseconds_and_refuses_the_rest() {
        assert_eq!(parse_limit("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_limit(" 2.5 "), Some(Duration::from_millis(2500)));
        assert_eq!(parse_limit("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "0", "-1s", "0ms", "soon", "inf", "NaN", "1e9"] {
            assert_eq!(parse_limit(bad), None, "{bad}");
        }
    }

    #[test]
    fn account_is_cli_and_16_hex_of_the_canonical_home() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        let want = hex::encode(Sha256::digest(canonical.to_string_lossy().as_bytes()));
        assert_eq!(account_for(dir.path()), format!("cli|{}", &want[..16]));
        let missing = Path::new("/no/such/home");
        let raw = hex::encode(Sha256::digest(b"/no/such/home"));
        assert_eq!(account_for(missing), format!("cli|{}", &raw[..16]));
    }
}
