//! `config.toml` plus `-c key=value` overrides, turned into typed [`Settings`].
//!
//! The file is shared with the agent, so unknown keys are ignored. Only the keys this tool reads
//! are validated, and an invalid value names the file (or the override) and the valid values.

use crate::home::{HomeError, read_optional};
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_ISSUER: &str = "https://auth.openai.com";
pub const DEFAULT_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// The most dotted segments a `-c` key may have: tables that deep are never real settings, and
/// thousands of them would overflow the stack when the nested tables are dropped or printed.
pub const MAX_KEY_DEPTH: usize = 32;

/// The keys this tool reads (every other key is the agent's, and allowed).
pub const KEYS: [&str; 5] =
    ["preferred_auth_method", "auth_issuer", "auth_client_id", "lease_renew_within", CREDENTIALS_STORE_KEY];

/// For a key this tool does not read but that is a likely typo of one it does: that key
/// (`auth_isuer` → `auth_issuer`).
pub fn likely_typo(key: &str) -> Option<&'static str> {
    if KEYS.contains(&key) {
        return None;
    }
    crate::text::near_misses(key, &KEYS).first().copied()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid override '{raw}': expected key=value")]
    OverrideMissingEquals { raw: String },
    #[error("invalid override '{raw}': empty key")]
    OverrideEmptyKey { raw: String },
    #[error("invalid override: the key has {depth} dotted parts; at most {MAX_KEY_DEPTH} are allowed")]
    OverrideTooDeep { depth: usize },
    #[error("invalid override '{raw}': key '{key}' conflicts with a non-table value")]
    OverrideConflict { raw: String, key: String },
    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{origin}: invalid {key} {value}; valid values: {valid}")]
    InvalidValue { origin: String, key: &'static str, value: String, valid: &'static str },
    #[error(transparent)]
    Home(#[from] HomeError),
}

/// Which credential to prefer when both an API key and ChatGPT tokens are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    #[serde(rename = "chatgpt")]
    ChatGpt,
    #[serde(rename = "apikey")]
    ApiKey,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMethod::ChatGpt => "chatgpt",
            AuthMethod::ApiKey => "apikey",
        })
    }
}

/// `preferred_auth_method` and whether the user set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Preference {
    pub method: AuthMethod,
    /// Set in config.toml or with `-c`: then it wins over a file's `auth_mode`.
    pub explicit: bool,
}

impl Preference {
    /// Set by the user.
    pub fn explicit(method: AuthMethod) -> Preference {
        Preference { method, explicit: true }
    }
}

/// The settings this tool reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub preferred_auth_method: AuthMethod,
    /// The user set `preferred_auth_method` (config.toml or `-c`): it then decides which
    /// credential a file offers, whatever the file's `auth_mode` says (DESIGN.md §1, §2).
    pub preferred_auth_method_set: bool,
    pub auth_issuer: String,
    pub auth_client_id: String,
    /// `lease_renew_within`: `auth sync` renews leases whose access token expires within this.
    pub lease_renew_within: time::Duration,
    /// `cli_auth_credentials_store`: where the agent (and so llmx) keeps the login.
    pub credentials_store: CredentialsStore,
}

/// `cli_auth_credentials_store = "file" | "keyring" | "auto"` (the agent's key; default `file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialsStore {
    /// `$LLMX_HOME/auth.json`.
    #[default]
    File,
    /// The OS keyring only (service `LLMX Auth`).
    Keyring,
    /// The keyring first, the file when the keyring is empty or fails.
    Auto,
}

impl CredentialsStore {
    /// The value as config.toml spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsStore::File => "file",
            CredentialsStore::Keyring => "keyring",
            CredentialsStore::Auto => "auto",
        }
    }

    /// Parse the value of the key (`None` for anything else).
    pub fn parse(text: &str) -> Option<CredentialsStore> {
        match text {
            "file" => Some(CredentialsStore::File),
            "keyring" => Some(CredentialsStore::Keyring),
            "auto" => Some(CredentialsStore::Auto),
            _ => None,
        }
    }
}

/// The config key naming the credential store.
pub const CREDENTIALS_STORE_KEY: &str = "cli_auth_credentials_store";

impl Settings {
    pub fn preference(&self) -> Preference {
        Preference { method: self.preferred_auth_method, explicit: self.preferred_auth_method_set }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            preferred_auth_method: AuthMethod::ChatGpt,
            preferred_auth_method_set: false,
            auth_issuer: DEFAULT_ISSUER.to_string(),
            auth_client_id: DEFAULT_CLIENT_ID.to_string(),
            lease_renew_within: time::Duration::days(2),
            credentials_store: CredentialsStore::File,
        }
    }
}

/// One parsed `-c key=value`. `raw` is kept so the tunnel can hand the same override to a remote.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub raw: String,
    pub path: Vec<String>,
    pub value: toml::Value,
}

impl Override {
    /// Split at the first `=`, trim both sides; the value is a TOML value if it parses as one,
    /// else a string with surrounding quotes stripped.
    pub fn parse(raw: &str) -> Result<Override, ConfigError> {
        let (key, value) =
            raw.split_once('=').ok_or_else(|| ConfigError::OverrideMissingEquals { raw: raw.to_string() })?;
        let key = key.trim();
        let depth = key.split('.').count();
        if depth > MAX_KEY_DEPTH {
            return Err(ConfigError::OverrideTooDeep { depth });
        }
        if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
            return Err(ConfigError::OverrideEmptyKey { raw: raw.to_string() });
        }
        let value = parse_value(value.trim());
        Ok(Override { raw: raw.to_string(), path: key.split('.').map(|p| p.trim().to_string()).collect(), value })
    }
}

fn parse_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    if let Ok(mut table) = doc.parse::<toml::Table>()
        && table.len() == 1
        && let Some(v) = table.remove("v")
    {
        return v;
    }
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        .unwrap_or(text);
    toml::Value::String(unquoted.to_string())
}

/// Read `config.toml` (missing is empty), apply the overrides, extract the typed settings.
pub fn load(config_path: &Path, overrides: &[Override]) -> Result<Settings, ConfigError> {
    let mut table = match read_optional(config_path)? {
        None => toml::Table::new(),
        Some(bytes) => parse_file(config_path, &bytes)?,
    };
    for o in overrides {
        apply(&mut table, o)?;
    }
    let origin = |key: &str| -> String {
        match overrides.iter().rev().find(|o| o.path.len() == 1 && o.path[0] == key) {
            Some(o) => format!("override '{}'", o.raw),
            None => config_path.display().to_string(),
        }
    };
    let mut s = Settings::default();
    if let Some(v) = table.get("lease_renew_within") {
        s.lease_renew_within =
            v.as_str().and_then(|t| parse_duration(t).ok()).ok_or_else(|| ConfigError::InvalidValue {
                origin: origin("lease_renew_within"),
                key: "lease_renew_within",
                value: v.to_string(),
                valid: "a duration such as \"2d\", \"12h\" or \"30m\"",
            })?;
    }
    if let Some(v) = table.get(CREDENTIALS_STORE_KEY) {
        s.credentials_store =
            v.as_str().and_then(CredentialsStore::parse).ok_or_else(|| ConfigError::InvalidValue {
                origin: origin(CREDENTIALS_STORE_KEY),
                key: CREDENTIALS_STORE_KEY,
                value: v.to_string(),
                valid: "\"file\", \"keyring\", \"auto\"",
            })?;
    }
    if let Some(v) = table.get("preferred_auth_method") {
        s.preferred_auth_method_set = true;
        s.preferred_auth_method = match v.as_str() {
            Some("chatgpt") => AuthMethod::ChatGpt,
            Some("apikey") => AuthMethod::ApiKey,
            _ => {
                return Err(ConfigError::InvalidValue {
                    origin: origin("preferred_auth_method"),
                    key: "preferred_auth_method",
                    value: v.to_string(),
                    valid: "\"chatgpt\", \"apikey\"",
                });
            }
        };
    }
    for (key, slot) in [("auth_issuer", &mut s.auth_issuer), ("auth_client_id", &mut s.auth_client_id)] {
        if let Some(v) = table.get(key) {
            match v.as_str() {
                Some(text) if !text.trim().is_empty() => *slot = text.trim().to_string(),
                _ => {
                    return Err(ConfigError::InvalidValue {
                        origin: origin(key),
                        key: if key == "auth_issuer" { "auth_issuer" } else { "auth_client_id" },
                        value: v.to_string(),
                        valid: "a non-empty string",
                    });
                }
            }
        }
    }
    if !url::Url::parse(&s.auth_issuer).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
        return Err(ConfigError::InvalidValue {
            origin: origin("auth_issuer"),
            key: "auth_issuer",
            value: format!("\"{}\"", s.auth_issuer),
            valid: "an http(s) URL such as \"https://auth.openai.com\"",
        });
    }
    Ok(s)
}

/// `2d`, `12h`, `30m`, `45s` (a bare number is seconds); never negative.
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not a duration like 2d, 12h, 30m or 45s");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" | "" => Some(n),
        _ => None,
    };
    secs.map(time::Duration::seconds).ok_or_else(bad)
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<toml::Table, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        line: line_of(bytes, e.valid_up_to()).0,
        column: line_of(bytes, e.valid_up_to()).1,
        message: "not valid UTF-8".to_string(),
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = e.span().map(|s| line_of(bytes, s.start)).unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })
}

/// 1-based line and column of a byte offset.
fn line_of(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

fn apply(table: &mut toml::Table, o: &Override) -> Result<(), ConfigError> {
    // `Override::parse` never yields an empty path, but the fields are public: no panic here.
    let Some((last, parents)) = o.path.split_last() else {
        return Err(ConfigError::OverrideEmptyKey { raw: o.raw.clone() });
    };
    let mut cur = table;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::OverrideConflict { raw: o.raw.clone(), key: p.clone() }),
        };
    }
    cur.insert(last.clone(), o.value.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(s: &str) -> Override {
        Override::parse(s).unwrap()
    }

    #[test]
    fn override_values_are_toml_or_strings() {
        assert_eq!(ov("a=1").value, toml::Value::Integer(1));
        assert_eq!(ov(" a = true ").value, toml::Value::Boolean(true));
        assert_eq!(ov("a=\"apikey\"").value, toml::Value::String("apikey".into()));
        assert_eq!(ov("a=apikey").value, toml::Value::String("apikey".into()));
        assert_eq!(ov("a='x y'").value, toml::Value::String("x y".into()));
        assert_eq!(ov("a=b=c").value, toml::Value::String("b=c".into()));
        assert_eq!(ov("x.y.z=1").path, vec!["x", "y", "z"]);
        assert_eq!(ov("a=").value, toml::Value::String(String::new()));
    }

    #[test]
    fn override_errors() {
        assert!(matches!(Override::parse("novalue"), Err(ConfigError::OverrideMissingEquals { .. })));
        assert!(matches!(Override::parse(" =1"), Err(ConfigError::OverrideEmptyKey { .. })));
        assert!(matches!(Override::parse("a..b=1"), Err(ConfigError::OverrideEmptyKey { .. })));
    }

    #[test]
    fn override_keys_deeper_than_the_bound_are_an_error_not_a_stack_overflow() {
        let key = |n: usize| vec!["k"; n].join(".");
        assert_eq!(ov(&format!("{}=1", key(MAX_KEY_DEPTH))).path.len(), MAX_KEY_DEPTH);
        for n in [MAX_KEY_DEPTH + 1, 1000, 100_000] {
            let raw = format!("{}=1", key(n));
            let e = Override::parse(&raw).unwrap_err();
            assert!(matches!(e, ConfigError::OverrideTooDeep { depth } if depth == n), "{n}");
            assert!(e.to_string().len() < 200, "the message does not echo the key");
        }
        // Empty parts count too, and a deep value is a value, not a key.
        assert!(Override::parse(&format!("{}=1", ".".repeat(5000))).is_err());
        assert!(Override::parse(&format!("a={}", "b.".repeat(5000))).is_ok());
    }

    #[test]
    fn file_then_overrides() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.toml");
        std::fs::write(&p, "model = \"x\"\npreferred_auth_method = \"apikey\"\n[other]\nk = 1\n").unwrap();
        let s = load(&p, &[]).unwrap();
        assert_eq!(s.preferred_auth_method, AuthMethod::ApiKey);
        let s = load(&p, &[ov("preferred_auth_method=chatgpt"), ov("auth_issuer=http://127.0.0.1:9")]).unwrap();
        assert_eq!(s.preferred_auth_method, AuthMethod::ChatGpt);
        assert_eq!(s.auth_issuer, "http://127.0.0.1:9");
    }

    #[test]
    fn invalid_method_lists_valid_values() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.toml");
        let e = load(&p, &[ov("preferred_auth_method=oauth")]).unwrap_err().to_string();
        assert!(e.contains("chatgpt") && e.contains("apikey") && e.contains("override"), "{e}");
    }

    #[test]
    fn an_issuer_is_an_http_or_https_url_with_a_host() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.toml");
        for bad in ["notaurl", "ftp://auth.example", "file:///etc/passwd", "https:"] {
            let e = load(&p, &[ov(&format!("auth_issuer={bad}"))]).unwrap_err().to_string();
            assert!(e.contains("invalid auth_issuer") && e.contains("http(s) URL"), "{bad}: {e}");
        }
        assert!(load(&p, &[ov("auth_issuer=https://auth.example")]).is_ok());
    }

    #[test]
    fn hand_built_override_with_an_empty_path_is_an_error_not_a_panic() {
        let o = Override { raw: "=1".into(), path: vec![], value: toml::Value::Integer(1) };
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(load(&t.path().join("config.toml"), &[o]), Err(ConfigError::OverrideEmptyKey { .. })));
    }

    #[test]
    fn corrupt_file_names_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("config.toml");
        std::fs::write(&p, "a = 1\nb = = 2\n").unwrap();
        let e = load(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("config.toml: line 2"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
