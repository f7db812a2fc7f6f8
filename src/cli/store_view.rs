//! How the binary shows what a login store did: the store a read or write used (`-v`), and
//! `auto`'s fall-backs and disagreements between the two places as warnings.

use super::output;
use llmx::auth::store::StoreNote;

/// The observer every [`llmx::auth::store::Store`] of this binary reports to.
pub fn show(note: &StoreNote) {
    match note {
        StoreNote::Used { op, place: _, name } => output::verbose(format!("login store: {op} {name}")),
        StoreNote::FellBack { op, error } => {
            let older = if *op == "save" {
                "; an older login the keyring may hold is still read first by the agent"
            } else {
                ""
            };
            output::warning(
                &format!("{error}"),
                Some(&format!(
                    "cli_auth_credentials_store = \"auto\": the {op} used auth.json instead, as the agent does{older}"
                )),
            )
        }
        StoreNote::Differ { read } => output::warning(
            "the keyring and auth.json hold different logins",
            Some(&format!("the agent reads the {}; `llmx logout` removes both, then log in again", read.as_str())),
        ),
    }
}
