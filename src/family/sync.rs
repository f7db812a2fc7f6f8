//! `llmx auth sync [TARGET…]`: leave exactly one live copy of the lineage, everywhere.
//!
//! Under the home's lock for the whole run: gather every holder's copy (concurrently), take the
//! newest copy of this account (local or remote), refresh it once here when its access token
//! expires within `refresh_within` (or always with `refresh`), save it locally (the refresh
//! discipline of `auth::refresh`: temp file first, validated answer, recovery file), then write
//! that one file to every holder of the lineage (and to holders whose file went missing). Holders
//! of another account, of an API key, or of a file that is not an auth.json are reported and left
//! alone. The ledger records every holder that ends up with the file.

use super::ledger::LedgerError;
use super::{Holder, Probed, State, classify, concurrently, probe};
use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::oauth::OAuthClient;
use crate::auth::refresh::{RefreshFailure, expires_within, refresh_and_save};
use crate::home::{read_optional, write_private};
use crate::push::{EventFn, Outcome, PushEvent, TargetReport};
use crate::targets::TargetError;
use std::path::Path;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub jobs: usize,
    /// Refresh even when the access token is far from expiring.
    pub refresh: bool,
    /// Refresh when the access token expires within this (default 2 days).
    pub refresh_within: Duration,
    /// Gather and decide; write nothing and call no issuer.
    pub dry_run: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { jobs: 8, refresh: false, refresh_within: Duration::days(2), dry_run: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no ChatGPT login here to sync ({}): sync keeps one login's copies in step", path.display())]
    NoLogin { path: std::path::PathBuf },
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Refresh(#[from] RefreshFailure),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What a sync did: the local home's report (target `local`), one per holder, and the decision.
#[derive(Debug, Clone)]
pub struct SyncSummary {
    pub local: TargetReport,
    pub reports: Vec<TargetReport>,
    /// Where the copy that won came from: `local` or a target.
    pub source: String,
    /// Whether the issuer was called (once).
    pub refreshed: bool,
    pub last_refresh: Option<String>,
}

impl SyncSummary {
    pub fn all_ok(&self) -> bool {
        self.local.outcome != Outcome::Failed && self.reports.iter().all(|r| r.outcome != Outcome::Failed)
    }
}

/// Sync the login at `auth_path` with `holders`.
pub async fn sync(
    auth_path: &Path,
    holders: &mut [Holder],
    client: &OAuthClient,
    opts: &SyncOptions,
    on_event: EventFn<'_>,
) -> Result<SyncSummary, SyncError> {
    let dir = auth_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let _lock = AuthLock::acquire(&dir, DEFAULT_WAIT)?;
    let no_login = || SyncError::NoLogin { path: auth_path.to_path_buf() };
    let local_bytes = read_optional(auth_path).map_err(AuthFileError::from)?.ok_or_else(no_login)?;
    let local = AuthFile::parse(auth_path, &local_bytes)?;
    if local.tokens.is_none() {
        return Err(no_login());
    }
    let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
    for (index, target) in labels.iter().enumerate() {
        on_event(PushEvent::Queued { index, target });
    }

    // 1. Gather.
    let probes: Vec<Result<Probed, TargetError>> = concurrently(holders, opts.jobs, |index, h| async move {
        let step = move |s: &str| on_event(PushEvent::Step { index, step: s });
        probe(h, &step).await
    })
    .await;
    let pair = Some((&local, local_bytes.as_slice()));
    let states: Vec<(State, Option<AuthFile>)> = probes
        .iter()
        .map(|p| match p {
            Ok(p) => classify(pair, p.file.as_ref().map(|f| f.bytes.as_slice()), &p.loc.auth_path()),
            Err(_) => (State::Unreachable, None),
        })
        .collect();

    // 2. The newest copy of the lineage.
    let mut best: (&AuthFile, &[u8], String) = (&local, &local_bytes, "local".to_string());
    for (i, (state, file)) in states.iter().enumerate() {
        if let (State::Fresher, Some(f), Ok(p)) = (state, file, &probes[i])
            && f.last_refresh_time() > best.0.last_refresh_time()
            && let Some(rf) = &p.file
        {
            best = (f, &rf.bytes, labels[i].clone());
        }
    }
    let (best_file, best_bytes, source) = best;

    // 3. Refresh it once, here, when due; save it locally.
    let due = opts.refresh || expires_within(best_file, opts.refresh_within, OffsetDateTime::now_utc());
    let mut refreshed = false;
    let final_bytes: Vec<u8> = if opts.dry_run {
        best_bytes.to_vec()
    } else if due {
        let (new, _) = refresh_and_save(best_file, auth_path, client).await?;
        refreshed = true;
        new.to_bytes()
    } else {
        if best_bytes != local_bytes.as_slice() {
            write_private(auth_path, best_bytes).map_err(AuthFileError::from)?;
        }
        best_bytes.to_vec()
    };
    let last_refresh = AuthFile::parse(auth_path, &final_bytes).ok().and_then(|f| f.last_refresh);
    let local_outcome = if refreshed || final_bytes != local_bytes { Outcome::Updated } else { Outcome::Unchanged };
    let mut local_report = TargetReport::new("local".into(), local_outcome, None);
    local_report.path = Some(auth_path.display().to_string());
    local_report.dry_run = opts.dry_run;
    if opts.dry_run && due {
        local_report.reason = Some("would refresh here first".into());
    }

    // 4. Write that one file to every holder of the lineage.
    let final_ref = &final_bytes;
    let probes_ref = &probes;
    let states_ref = &states;
    let reports: Vec<TargetReport> = concurrently(holders, opts.jobs, |index, h| async move {
        let step = move |s: &str| on_event(PushEvent::Step { index, step: s });
        let mut r = TargetReport::new(h.target.label(), Outcome::Failed, None);
        r.dry_run = opts.dry_run;
        match &probes_ref[index] {
            Err(e) => {
                r.reason = Some(e.message.clone());
                r.hint = e.hint.clone();
            }
            Ok(p) => {
                r.path = Some(p.loc.auth_path());
                r.identity = p.identity.clone();
                let state = &states_ref[index].0;
                let current = p.file.as_ref().map(|f| f.bytes.as_slice());
                if !(state.in_lineage() || *state == State::Missing) {
                    r.outcome = Outcome::Skipped;
                    r.reason = Some(format!("it holds {}; left alone", super::describe(state)));
                } else if current == Some(final_ref.as_slice()) {
                    r.outcome = Outcome::Unchanged;
                } else {
                    let outcome = if current.is_some() { Outcome::Updated } else { Outcome::Created };
                    let written = if opts.dry_run { Ok(()) } else { h.target.write(&p.loc, final_ref, &step).await };
                    match written {
                        Ok(()) => r.outcome = outcome,
                        Err(e) => {
                            r.reason = Some(e.message);
                            r.hint = e.hint;
                        }
                    }
                }
            }
        }
        on_event(PushEvent::Done { index, report: &r });
        r
    })
    .await;

    if !opts.dry_run {
        super::ledger::record_push(&dir, &final_bytes, &reports)?;
    }
    Ok(SyncSummary { local: local_report, reports, source, refreshed, last_refresh })
}
