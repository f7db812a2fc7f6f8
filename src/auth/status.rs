//! The status report shared by `llmx login status`, `llmx auth status` and the status of a push
//! target: which method is in use, from where, and what can be shown of it without a secret.

use crate::auth::claims::{IdClaims, expiry};
use crate::auth::file::AuthFile;
use crate::auth::select::{Selected, Source, select};
use crate::config::{AuthMethod, Preference};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A secret-free description of the credential in use. Field names are the stable `--json` form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub logged_in: bool,
    pub method: Option<AuthMethod>,
    pub source: Option<Source>,
    /// Masked: first 8 characters, `***`, last 5.
    pub api_key: Option<String>,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub account_id: Option<String>,
    pub last_refresh: Option<String>,
    pub access_token_expires_at: Option<String>,
    /// A ChatGPT login without a refresh token: a lease (DESIGN.md §10), usable until the
    /// access token expires and renewed by the machine that pushed it.
    pub lease: bool,
}

impl StatusReport {
    pub fn build(preferred: Preference, env_key: Option<&str>, file: Option<&AuthFile>) -> StatusReport {
        let last_refresh = file.and_then(|f| f.last_refresh.clone());
        match select(preferred, env_key, file) {
            None => StatusReport::default(),
            Some(Selected::ApiKey { key, source }) => StatusReport {
                logged_in: true,
                method: Some(AuthMethod::ApiKey),
                source: Some(source),
                api_key: Some(key.mask()),
                last_refresh: if source == Source::File { last_refresh } else { None },
                ..Default::default()
            },
            Some(Selected::ChatGpt { tokens }) => {
                let claims = IdClaims::parse(tokens.id_token.expose()).unwrap_or_default();
                StatusReport {
                    logged_in: true,
                    method: Some(AuthMethod::ChatGpt),
                    source: Some(Source::File),
                    api_key: None,
                    email: claims.email,
                    plan: claims.plan,
                    account_id: tokens.account_id.clone().or(claims.account_id),
                    last_refresh,
                    access_token_expires_at: expiry(tokens.access_token.expose()).and_then(format_unix),
                    lease: tokens.refresh_token.is_empty(),
                }
            }
        }
    }
}

/// A Unix time as RFC 3339 UTC.
pub fn format_unix(secs: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(secs).ok()?.format(&Rfc3339).ok()
}
