//! Evicting a stale login server without letting web pages do it (DESIGN.md §3 "Port busy").
//!
//! A running browser login writes a per-login secret to `login-PORT.cancel` in the home (0600,
//! atomically, like auth.json) and accepts `POST /cancel` only with that secret as the body. A
//! later `llmx login` on the same port reads the file and sends it; a web page in the user's
//! browser can neither read the file nor guess the secret, so its cross-site request to
//! `localhost:PORT/cancel` (the old, GET-only design) cannot abort a login in progress. The file
//! is removed when the login ends, unless a newer login has already replaced it.

use crate::auth::pkce::{RandomError, random_b64};
use crate::home::{HomeError, read_optional, write_private};
use crate::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path of the cancel secret of a login on `port`, in the home `dir`.
pub fn cancel_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("login-{port}.cancel"))
}

#[derive(Debug, thiserror::Error)]
pub enum CancelFileError {
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("writing the login's cancel file: {0}")]
    Home(#[from] HomeError),
}

/// The cancel secret of the running login, on disk while this value lives.
pub struct CancelFile {
    path: PathBuf,
    secret: Secret,
}

impl CancelFile {
    /// Make a fresh secret (32 random bytes) and write it to [`cancel_path`], mode 0600.
    pub fn create(dir: &Path, port: u16) -> Result<CancelFile, CancelFileError> {
        let secret = Secret::new(random_b64(32)?);
        let path = cancel_path(dir, port);
        write_private(&path, format!("{}\n", secret.expose()).as_bytes())?;
        Ok(CancelFile { path, secret })
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl Drop for CancelFile {
    fn drop(&mut self) {
        // Only our own secret: a newer login on this port may have written its file already.
        if read_secret_at(&self.path).is_some_and(|s| s == self.secret) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The secret of the login running on `port` with home `dir`, if its file is there.
pub fn read_secret(dir: &Path, port: u16) -> Option<Secret> {
    read_secret_at(&cancel_path(dir, port))
}

fn read_secret_at(path: &Path) -> Option<Secret> {
    let bytes = read_optional(path).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.len() <= 256).then(|| Secret::new(text))
}

/// `POST http://127.0.0.1:{port}/cancel` with `secret`; true when an llmx login server
/// acknowledged it (it stops by itself then).
pub async fn request_cancel(port: u16, secret: &Secret) -> bool {
    let Ok(http) = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    let req = http
        .post(format!("http://127.0.0.1:{port}/cancel"))
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(secret.expose().to_string());
    match req.send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn cancel_file_is_private_and_removed_only_while_it_is_ours() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("h");
        let f = CancelFile::create(&dir, 1455).unwrap();
        let path = cancel_path(&dir, 1455);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_secret(&dir, 1455).as_ref(), Some(f.secret()));
        assert!(read_secret(&dir, 1456).is_none());
        drop(f);
        assert!(!path.exists());
        // A newer login replaced the file: the older one leaves it.
        let old = CancelFile::create(&dir, 1455).unwrap();
        let new = CancelFile::create(&dir, 1455).unwrap();
        drop(old);
        assert_eq!(read_secret(&dir, 1455).as_ref(), Some(new.secret()));
    }
}
