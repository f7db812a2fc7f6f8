//! Logging out: remove auth.json. Idempotent: a home with nothing to remove is not an error.
//! (Revoking the refresh token at the issuer belongs here too, DESIGN.md §9.)

use crate::home::HomeError;
use std::path::Path;

/// Remove the credential file at `auth_path`; `Ok(false)` when there was none.
pub fn logout(auth_path: &Path) -> Result<bool, HomeError> {
    match std::fs::remove_file(auth_path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(HomeError::io(auth_path, e)),
    }
}
