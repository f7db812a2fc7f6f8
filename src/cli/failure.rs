//! The one error type the binary reports: a one-line message, an optional `hint:` line with the
//! command to run, and a [`Kind`] that decides the exit code and the `kind` of the `--json` error
//! object (the table is in docs/authentication.md, "Exit codes").

use llmx::auth::file::AuthFileError;
use llmx::auth::lock::LockError;
use llmx::auth::oauth::OAuthError;
use llmx::config::ConfigError;
use llmx::family::ledger::LedgerError;
use llmx::home::HomeError;
use llmx::targets::{ErrorKind, TargetError};

/// What kind of failure: each has its own exit code, so scripts can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else that failed (a target failed, a file could not be written): 1.
    Failed,
    /// No credential here (or on the target asked about): 1.
    NotLoggedIn,
    /// A malformed command line: 2.
    Usage,
    /// A bad config.toml setting or `-c` override: 2.
    Config,
    /// The Docker Engine, an SSH host or the issuer could not be reached: 3.
    Unreachable,
    /// A credential or a trust decision is needed: the login is no longer valid (log in again),
    /// an SSH host refused every key, a host key is not known yet: 4.
    AuthNeeded,
    /// Ctrl-C: 130.
    Interrupted,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Failed | Kind::NotLoggedIn => 1,
            Kind::Usage | Kind::Config => 2,
            Kind::Unreachable => 3,
            Kind::AuthNeeded => 4,
            Kind::Interrupted => 130,
        }
    }

    /// The stable name in `{"error":{"kind":…}}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failed => "failed",
            Kind::NotLoggedIn => "not_logged_in",
            Kind::Usage => "usage",
            Kind::Config => "config",
            Kind::Unreachable => "unreachable",
            Kind::AuthNeeded => "auth_needed",
            Kind::Interrupted => "interrupted",
        }
    }

    /// The kind of a target's failure when it is the command's only target.
    pub fn of_target(e: &TargetError) -> Kind {
        Kind::from(e.kind)
    }

    /// The kind of an issuer error: unreachable (network) or the issuer's own refusal.
    pub fn of_oauth(e: &OAuthError) -> Kind {
        match e {
            OAuthError::Unreachable { .. } => Kind::Unreachable,
            OAuthError::Issuer { .. } => Kind::Config,
            _ => Kind::Failed,
        }
    }
}

impl From<ErrorKind> for Kind {
    fn from(k: ErrorKind) -> Kind {
        match k {
            ErrorKind::Failed | ErrorKind::Replaced => Kind::Failed,
            ErrorKind::Unreachable => Kind::Unreachable,
            ErrorKind::AuthNeeded => Kind::AuthNeeded,
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    /// Output went to a closed pipe: exit quietly with success (ripgrep's rule).
    pub broken_pipe: bool,
    /// Fields the `--json` error object carries besides `error` (e.g. `auth refresh`'s
    /// `permanent`, `recovery_file`).
    pub json_extra: Vec<(String, serde_json::Value)>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Failed, message)
    }

    pub fn of(kind: Kind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into(), hint: None, broken_pipe: false, json_extra: Vec::new() }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::of(Kind::Usage, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// A failed target, its message prefixed (`docker:web: ...`), its hint kept.
    pub fn target(prefix: &str, e: TargetError) -> Failure {
        let f = Failure::of(Kind::of_target(&e), format!("{prefix}: {}", e.message));
        match e.hint {
            Some(h) => f.hint(h),
            None => f,
        }
    }

    /// A field the `--json` error object carries besides `error`.
    pub fn extra(mut self, key: &str, value: impl Into<serde_json::Value>) -> Failure {
        self.json_extra.push((key.to_string(), value.into()));
        self
    }

    pub fn code(&self) -> u8 {
        self.kind.code()
    }

    /// The `--json` form: `{"error":{"kind","message","hint"}, ...extra}`.
    pub fn json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "error".into(),
            serde_json::json!({"kind": self.kind.as_str(), "message": self.message, "hint": self.hint, "exit_code": self.code()}),
        );
        obj.extend(self.json_extra.clone());
        serde_json::Value::Object(obj)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        let kind = if matches!(e, ConfigError::Home(_)) { Kind::Failed } else { Kind::Config };
        Failure::of(kind, e.to_string())
    }
}

impl From<HomeError> for Failure {
    fn from(e: HomeError) -> Failure {
        let hint = match &e {
            HomeError::NotWritable { dir, .. } => Some(format!(
                "make {} writable for this user, or point LLMX_HOME at a directory that is (nothing was done)",
                dir.display()
            )),
            HomeError::NotPrivate { .. } => Some(
                "point LLMX_HOME at a directory of your own that others cannot write to (llmx creates it 0700), or \
                 unset it to use ~/.llmx"
                    .to_string(),
            ),
            _ => None,
        };
        let f = Failure::new(e.to_string());
        match hint {
            Some(h) => f.hint(h),
            None => f,
        }
    }
}

impl From<AuthFileError> for Failure {
    fn from(e: AuthFileError) -> Failure {
        let f = Failure::new(e.to_string());
        match e {
            AuthFileError::Corrupt { .. } => {
                f.hint("fix or remove the file, then run `llmx login` (the file was left as it is)")
            }
            AuthFileError::Home(_) | AuthFileError::Keyring(_) => f,
        }
    }
}

impl From<LockError> for Failure {
    fn from(e: LockError) -> Failure {
        Failure::new(e.to_string()).hint("another llmx is working on this login; wait for it and try again")
    }
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Failure {
        match e {
            LedgerError::Corrupt { ref path, .. } => {
                let hint = format!("fix {} or move it away (it lists where this login was pushed)", path.display());
                Failure::new(e.to_string()).hint(hint)
            }
            LedgerError::Lock(l) => l.into(),
            LedgerError::Home(h) => h.into(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure { broken_pipe: e.kind() == std::io::ErrorKind::BrokenPipe, ..Failure::new(e.to_string()) }
    }
}
