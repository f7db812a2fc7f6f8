//! The one error type the binary reports: a one-line message, an optional `hint:` line with the
//! command to run, and the exit code (1 failure, 2 usage or config error).

use llmx::auth::file::AuthFileError;
use llmx::auth::lock::LockError;
use llmx::config::ConfigError;
use llmx::family::ledger::LedgerError;
use llmx::home::HomeError;

#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub hint: Option<String>,
    pub code: u8,
    /// Output went to a closed pipe: exit quietly with success (ripgrep's rule).
    pub broken_pipe: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), hint: None, code: 1, broken_pipe: false }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 2, ..Failure::new(message) }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        let code = if matches!(e, ConfigError::Home(_)) { 1 } else { 2 };
        Failure { code, ..Failure::new(e.to_string()) }
    }
}

impl From<HomeError> for Failure {
    fn from(e: HomeError) -> Failure {
        Failure::new(e.to_string())
    }
}

impl From<AuthFileError> for Failure {
    fn from(e: AuthFileError) -> Failure {
        let f = Failure::new(e.to_string());
        match e {
            AuthFileError::Corrupt { .. } => {
                f.hint("fix or remove the file, then run `llmx login` (the file was left as it is)")
            }
            AuthFileError::Home(_) => f,
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
