//! Adopting a holder's copy on the issuer's word (issue 21 item 1). A holder is exactly the kind
//! of place llmx provisions — a CI runner, a sandbox running code nobody reviewed — and anything
//! it holds may have been written by whoever runs there: `tokens.account_id`, the *unsigned*
//! id_token claims, `last_refresh`, an `OPENAI_API_KEY` or `auth_mode`. So a holder's copy is
//! never taken as it is. Only its refresh token is used: put into *this machine's* file, it is
//! refreshed here (over TLS to the configured issuer), and the issuer's answer must name this
//! machine's account — the refresh discipline of `auth::refresh` checks the new id_token's
//! account against the file's. Everything else in the adopted login (the API key, `auth_mode`,
//! unknown keys) stays this machine's. "Cannot tell" (no account here to check against)
//! refuses.

use crate::auth::claims::IdClaims;
use crate::auth::file::AuthFile;
use crate::auth::oauth::OAuthClient;
use crate::auth::refresh::refresh_and_save;
use crate::auth::store::Store;

/// Why a holder's copy was not adopted, and whether the issuer was called (its refresh token
/// may then be spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAdopted {
    pub reason: String,
    pub issuer_called: bool,
}

/// Refresh `theirs`' refresh token inside `local` and save the result in `store` (the
/// caller holds the home's lock). The new file, or why not.
pub async fn adopt(
    store: &Store,
    local: &AuthFile,
    theirs: &AuthFile,
    client: &OAuthClient,
) -> Result<AuthFile, NotAdopted> {
    let refuse = |reason: &str| NotAdopted { reason: reason.to_string(), issuer_called: false };
    let their_rt = theirs.tokens.as_ref().map(|t| t.refresh_token.clone()).filter(|t| !t.is_empty());
    let Some(their_rt) = their_rt else { return Err(refuse("it holds no refresh token")) };
    let Some(account) = local.account_id() else {
        return Err(refuse("this machine's login names no account to check the holder's copy against"));
    };
    let mut candidate = local.clone();
    let Some(tokens) = candidate.tokens.as_mut() else { return Err(refuse("this machine holds no ChatGPT login")) };
    tokens.refresh_token = their_rt;
    // The account the issuer's answer must name is this machine's, never the holder's claim.
    tokens.account_id = Some(account.clone());
    match refresh_and_save(&candidate, store, client).await {
        Ok((new, _)) => {
            let named = new.tokens.as_ref().and_then(|t| IdClaims::parse(t.id_token.expose()).ok()?.account_id);
            if named.as_deref() != Some(account.as_str()) {
                // Saved already (the issuer accepted); say so rather than hide it.
                return Err(NotAdopted {
                    reason: "the issuer's answer does not name this machine's account".into(),
                    issuer_called: true,
                });
            }
            Ok(new)
        }
        Err(e) => Err(NotAdopted { reason: format!("the issuer refused it: {e}"), issuer_called: true }),
    }
}
