//! Logging out: remove auth.json, and any temp copy of it a crashed write left in the home.
//! Idempotent: a home with nothing to remove is not an error.
//! (Revoking the refresh token at the issuer belongs here too, DESIGN.md §9.)

use crate::home::HomeError;
use std::path::Path;

/// Remove the credential file at `auth_path`; `Ok(false)` when there was none.
pub fn logout(auth_path: &Path) -> Result<bool, HomeError> {
    let removed = match std::fs::remove_file(auth_path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(HomeError::io(auth_path, e)),
    };
    if let Some(home) = auth_path.parent() {
        crate::home::clean_stale_temps(home, crate::home::AUTH_FILE);
    }
    Ok(removed)
}
