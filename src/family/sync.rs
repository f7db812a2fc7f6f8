//! `llmx auth sync [TARGET…]`: renew every lease and leave exactly one live lineage, everywhere.
//!
//! Three phases, so the home's lock is never held across remote I/O:
//! 1. **Gather** every holder's copy, concurrently, without the lock.
//! 2. **Decide and refresh, under the lock**: re-read the local login; the newest *full* copy of
//!    this account wins (a lease is never a source: it holds no refresh token). A holder's copy
//!    is adopted only on the issuer's word: its refresh token is refreshed here, inside this
//!    machine's file, and the answer must name this machine's account (a holder can write any
//!    bytes; only the issuer can vouch for them), so nothing else of the holder's file — API key,
//!    `auth_mode`, claims — is ever taken. The login is refreshed once when its access token
//!    expires within `refresh_within` (the lease renewal window), or always with `refresh`,
//!    and saved locally (the refresh discipline of `auth::refresh`). At most one issuer call for
//!    the login, however many holders (two when a holder's copy is adopted: that is its refresh).
//! 3. **Write**, without the lock: each holder gets what it is recorded as holding — the lease of
//!    the new login (the default), or the full file for a `push --full` holder. Holders of another
//!    account, of an API key, of a file that is not an auth.json, places signed in on their own
//!    (`own`), and a lease holder that now holds a full copy are reported and left alone.
//!
//! The ledger records every holder that ends up with its file.

use super::lease::{self, Kind};
use super::ledger::LedgerError;
use super::{Holder, Local, Probed, State, classify, concurrently, probe};
use crate::auth::file::{AuthFile, AuthFileError};
use crate::auth::lock::{AuthLock, DEFAULT_WAIT, LockError};
use crate::auth::oauth::OAuthClient;
use crate::auth::refresh::{RefreshFailure, expires_within, refresh_and_save};
use crate::auth::store::Store;
use crate::push::{EventFn, Outcome, PushEvent, TargetReport};
use crate::targets::TargetError;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub jobs: Option<usize>,
    /// Refresh even when the access token is far from expiring.
    pub refresh: bool,
    /// Refresh (and so renew every lease) when the access token expires within this.
    pub refresh_within: Duration,
    /// Gather and decide; write nothing and call no issuer.
    pub dry_run: bool,
    /// The home whose ledger records the writes, when the login is not the home's own
    /// auth.json (an account's, DESIGN.md §11); `None`: the directory of the auth.json.
    pub ledger_dir: Option<std::path::PathBuf>,
    /// The live login's store, when the login synced is a non-active account's: a sync that
    /// finds, under the lock, that the account was made active meanwhile refreshes nothing
    /// (`check_not_live`).
    pub live: Option<crate::auth::store::Store>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            jobs: None,
            refresh: false,
            refresh_within: lease::DEFAULT_WINDOW,
            dry_run: false,
            ledger_dir: None,
            live: None,
        }
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
    /// Whether the issuer was called for the login.
    pub refreshed: bool,
    /// Issuer refresh calls made (0 or 1; 2 when a holder's copy was adopted and then renewed).
    pub issuer_calls: u32,
    pub last_refresh: Option<String>,
    /// When the leases written now expire (RFC 3339), when known.
    pub lease_expires_at: Option<String>,
}

impl SyncSummary {
    pub fn all_ok(&self) -> bool {
        self.local.outcome != Outcome::Failed && self.reports.iter().all(|r| r.outcome != Outcome::Failed)
    }
}

/// Sync the login in `store` with `holders`.
pub async fn sync(
    store: &Store,
    holders: &mut [Holder],
    client: &OAuthClient,
    opts: &SyncOptions,
    on_event: EventFn<'_>,
) -> Result<SyncSummary, SyncError> {
    let dir = store.dir().to_path_buf();
    let no_login = || SyncError::NoLogin { path: store.path().to_path_buf() };
    let has_login = |bytes: &[u8]| AuthFile::parse(store.path(), bytes).map(|f| f.tokens.is_some());
    if !has_login(&store.read()?.map(|(b, _)| b).ok_or_else(no_login)?)? {
        return Err(no_login());
    }
    let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
    for (index, target) in labels.iter().enumerate() {
        on_event(PushEvent::Queued { index, target });
    }

    // 1. Gather, without the lock.
    let probes: Vec<Result<Probed, TargetError>> = concurrently(holders, opts.jobs, |index, h| async move {
        let step = move |s: &str| on_event(PushEvent::Step { index, step: s });
        probe(h, &step).await
    })
    .await;

    // 2. Decide and refresh under the lock (re-reading the local login).
    let decided = {
        let _lock = AuthLock::acquire(&dir, DEFAULT_WAIT)?;
        let local_bytes = store.read()?.map(|(b, _)| b).ok_or_else(no_login)?;
        let local = AuthFile::parse(store.path(), &local_bytes)?;
        if local.tokens.is_none() {
            return Err(no_login());
        }
        crate::auth::refresh::check_not_live(store, &local, opts.live.as_ref())?;
        decide_and_refresh(store, &local, &local_bytes, &probes, &labels, client, opts).await?
    };

    // 3. Write each holder its file, without the lock.
    let full = &decided.bytes;
    let lease_bytes = &decided.lease;
    let probes_ref = &probes;
    let states_ref = &decided.states;
    let refused = &decided.refused;
    let will_refresh = opts.dry_run && decided.due;
    let written: Vec<(TargetReport, Vec<u8>)> = concurrently(holders, opts.jobs, |index, h| async move {
        let step = move |s: &str| on_event(PushEvent::Step { index, step: s });
        let mut r = TargetReport::new(h.target.label(), Outcome::Failed, None);
        r.dry_run = opts.dry_run;
        let kind = h.entry.as_ref().map(|e| e.kind()).unwrap_or(Kind::Lease);
        let give = if kind == Kind::Full { full.clone() } else { lease_bytes.clone() };
        match &probes_ref[index] {
            Err(e) => {
                r.reason = Some(e.message.clone());
                r.hint = e.hint.clone();
            }
            Ok(p) => {
                r.path = Some(p.loc.auth_path());
                r.identity = p.identity.clone();
                let (state, theirs) = &states_ref[index];
                let current = p.file.as_ref().map(|f| f.bytes.as_slice());
                if let Some(why) = leave_alone(kind, state, theirs.as_ref(), refused.get(&index)) {
                    r.outcome = if refused.contains_key(&index) { Outcome::Failed } else { Outcome::Skipped };
                    r.reason = Some(why);
                } else if current == Some(give.as_slice()) && !will_refresh {
                    r.outcome = Outcome::Unchanged;
                } else {
                    let outcome = if current.is_some() { Outcome::Updated } else { Outcome::Created };
                    let done = if opts.dry_run { Ok(()) } else { h.target.write(&p.loc, &give, &step).await };
                    match done {
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
        (r, give)
    })
    .await;

    if !opts.dry_run {
        let items: Vec<(&TargetReport, &[u8])> = written.iter().map(|(r, b)| (r, b.as_slice())).collect();
        super::ledger::record_written(opts.ledger_dir.as_deref().unwrap_or(&dir), &items, None)?;
    }
    let new_file = AuthFile::parse(store.path(), full).ok();
    Ok(SyncSummary {
        local: decided.local_report,
        reports: written.into_iter().map(|(r, _)| r).collect(),
        source: decided.source,
        refreshed: decided.issuer_calls > 0,
        issuer_calls: decided.issuer_calls,
        last_refresh: new_file.as_ref().and_then(|f| f.last_refresh.clone()),
        lease_expires_at: new_file.as_ref().and_then(lease::access_expiry).and_then(crate::auth::status::format_unix),
    })
}

/// Why a holder is not written, or `None` to write it.
fn leave_alone(kind: Kind, state: &State, theirs: Option<&AuthFile>, refused: Option<&String>) -> Option<String> {
    if let Some(why) = refused {
        return Some(why.clone());
    }
    if !(state.in_lineage() || *state == State::Missing) {
        return Some(format!("it holds {}; left alone", super::describe(state)));
    }
    if kind == Kind::Own {
        return Some("it signed in on its own (its own lineage); left alone".into());
    }
    let holds_full = theirs.is_some_and(|f| f.tokens.is_some() && !lease::is_lease(f));
    if kind == Kind::Lease && holds_full {
        return Some(
            "the ledger says it holds a lease, but it holds a full copy now (pushed with --full from elsewhere, or its own sign-in); left alone"
                .into(),
        );
    }
    None
}

/// The outcome of phase 2.
struct Decided {
    /// The login now saved here (full) and its lease.
    bytes: Vec<u8>,
    lease: Vec<u8>,
    states: Vec<(State, Option<AuthFile>)>,
    /// Holders whose fresher copy was refused by the issuer: index → reason.
    refused: std::collections::HashMap<usize, String>,
    source: String,
    due: bool,
    issuer_calls: u32,
    local_report: TargetReport,
}

async fn decide_and_refresh(
    store: &Store,
    local: &AuthFile,
    local_bytes: &[u8],
    probes: &[Result<Probed, TargetError>],
    labels: &[String],
    client: &OAuthClient,
    opts: &SyncOptions,
) -> Result<Decided, SyncError> {
    let local_lease = Local::lease_bytes(local);
    let view = Local::new(local, local_bytes, local_lease.as_deref());
    let states: Vec<(State, Option<AuthFile>)> = probes
        .iter()
        .map(|p| match p {
            Ok(p) => classify(
                Some(view),
                p.file.as_ref().map(|f| f.bytes.as_slice()),
                &p.loc.auth_path(),
                opts.refresh_within,
            ),
            Err(_) => (State::Unreachable, None),
        })
        .collect();

    // The newest full copy of the lineage (fresher holders are full copies: leases never are).
    let mut best: Option<usize> = None;
    for (i, (state, file)) in states.iter().enumerate() {
        let newer = |f: &AuthFile| match best {
            None => f.last_refresh_time() > local.last_refresh_time(),
            Some(b) => f.last_refresh_time() > states[b].1.as_ref().and_then(AuthFile::last_refresh_time),
        };
        if *state == State::Fresher && file.as_ref().is_some_and(newer) {
            best = Some(i);
        }
    }

    // Adopt the newest fresher full copy on the issuer's word (a dry run only names it).
    let mut adopted: Option<AuthFile> = None;
    let mut source = best.map_or_else(|| "local".to_string(), |i| labels[i].clone());
    let mut issuer_calls = 0;
    let mut refused = std::collections::HashMap::new();
    if let Some(i) = best.filter(|_| !opts.dry_run) {
        let result = match states[i].1.as_ref() {
            Some(theirs) => super::adopt::adopt(store, local, theirs, client).await,
            None => Err(super::adopt::NotAdopted { reason: "it holds no login".into(), issuer_called: false }),
        };
        match result {
            Ok(file) => {
                adopted = Some(file);
                issuer_calls += 1;
            }
            Err(why) => {
                source = "local".to_string();
                issuer_calls += u32::from(why.issuer_called);
                refused.insert(i, format!("its fresher copy was not adopted: {}", why.reason));
            }
        }
    }

    let now = OffsetDateTime::now_utc();
    let due = opts.refresh || expires_within(local, opts.refresh_within, now) || (opts.dry_run && best.is_some());
    let (final_file, changed) = match adopted {
        // Adopting was a refresh: the login is as fresh as it gets.
        Some(file) => (file, true),
        None if due && !opts.dry_run => {
            let (new, _) = refresh_and_save(local, store, client).await?;
            issuer_calls += 1;
            (new, true)
        }
        None => (local.clone(), false),
    };
    let bytes = if changed { final_file.to_bytes() } else { local_bytes.to_vec() };
    let lease = lease::lease_of(&final_file).map(|l| l.to_bytes()).unwrap_or_else(|| bytes.clone());

    let outcome = if changed || (opts.dry_run && due) { Outcome::Updated } else { Outcome::Unchanged };
    let mut local_report = TargetReport::new("local".into(), outcome, None);
    local_report.path = Some(store.describe());
    local_report.dry_run = opts.dry_run;
    if opts.dry_run && due {
        local_report.reason = Some("would refresh here first".into());
    }
    Ok(Decided { bytes, lease, states, refused, source, due, issuer_calls, local_report })
}
