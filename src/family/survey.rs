//! `llmx auth where`: every place the ledger says this login was pushed, and what each holds now
//! (contacted concurrently): `same`, `fresher`, `older`, `expiring`, `expired`, `other-account`,
//! `api-key`, `missing`, `invalid` or `unreachable` with the reason; and what kind of copy each
//! holds (`lease`, `full`, `own`, `api-key`) with a lease's expiry. Reads only; writes nothing.

use super::lease::{Kind, access_expiry};
use super::{Holder, Judge, Judges, Local, Progress, ProgressFn, State, classify, concurrently, probe};
use crate::auth::file::AuthFile;
use crate::auth::status::format_unix;
use crate::targets::ErrorKind;
use serde::Serialize;

/// One holder's answer. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holding {
    pub target: String,
    /// auth.json on the target (as recorded, or as located).
    pub path: Option<String>,
    pub state: State,
    /// Why it is unreachable or invalid.
    pub reason: Option<String>,
    pub hint: Option<String>,
    /// `last_refresh` of the copy it holds.
    pub last_refresh: Option<String>,
    pub account_id: Option<String>,
    /// When this machine last wrote it (from the ledger).
    pub pushed_at: Option<String>,
    /// What the place holds: as found there, else as recorded.
    pub kind: Option<Kind>,
    /// When the access token it holds expires (RFC 3339): a lease is usable until then.
    pub lease_expires_at: Option<String>,
    /// The account the ledger binds it to (`push --account`), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The agent's `cli_auth_credentials_store` there (`keyring`/`auto`: it may not read the copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// Every holder, in ledger order, and the local login's `last_refresh`.
#[derive(Debug, Clone, Serialize)]
pub struct Survey {
    pub local_last_refresh: Option<String>,
    pub local_account_id: Option<String>,
    pub holders: Vec<Holding>,
}

impl Survey {
    /// The exit rule: every holder reachable and holding a working copy of this login's lineage
    /// (an expired lease does not work).
    pub fn all_in_lineage(&self) -> bool {
        self.holders.iter().all(|h| h.state.in_lineage() && h.state != State::Expired)
    }

    /// How many holders are in `state`.
    pub fn count(&self, state: &State) -> usize {
        self.holders.iter().filter(|h| h.state == *state).count()
    }
}

/// Ask every holder, `jobs` at a time. `local` is this machine's auth.json (file and bytes);
/// `judges`, when given, one per holder: the login each is compared with instead (with several
/// accounts, the one the ledger binds it to). `window`: a lease whose access token expires
/// within it is `expiring`.
pub async fn survey(
    local: Option<(&AuthFile, &[u8])>,
    judges: Option<&[Judge<'_>]>,
    holders: &mut [Holder],
    jobs: Option<usize>,
    window: time::Duration,
    on_progress: ProgressFn<'_>,
) -> Survey {
    let judges = Judges::new(local, judges, holders.len());
    let judges = &judges;
    let holdings = concurrently(holders, jobs, |index, h| async move {
        let step = move |s: &str| on_progress(Progress::Step { index, step: s });
        let holding = look(judges.get(index), h, window, &step).await;
        on_progress(Progress::Done { index });
        holding
    })
    .await;
    Survey {
        local_last_refresh: local.and_then(|(f, _)| f.last_refresh.clone()),
        local_account_id: local.and_then(|(f, _)| f.account_id()),
        holders: holdings,
    }
}

async fn look(
    local: Option<Local<'_>>,
    h: &mut Holder,
    window: time::Duration,
    step: crate::targets::StepFn<'_>,
) -> Holding {
    let mut out = Holding {
        target: h.target.label(),
        path: h.entry.as_ref().map(|e| e.path.clone()),
        state: State::Unreachable,
        reason: None,
        hint: None,
        last_refresh: None,
        account_id: None,
        pushed_at: h.entry.as_ref().map(|e| e.written_at.clone()),
        kind: h.entry.as_ref().map(|e| e.kind()),
        lease_expires_at: None,
        account: h.entry.as_ref().and_then(|e| e.account.clone()),
        store: None,
    };
    match probe(h, step).await {
        Err(e) => {
            if e.kind == ErrorKind::Replaced {
                out.state = State::Replaced;
            }
            out.reason = Some(e.message);
            out.hint = e.hint;
        }
        Ok(p) => {
            let path = p.loc.auth_path();
            out.store = p.loc.store.clone();
            let (state, file) = classify(local, p.file.as_ref().map(|f| f.bytes.as_slice()), &path, window);
            if let Some(f) = &file {
                let found = Kind::of_written(f);
                // A full copy of the lineage the place made itself stays "own" as recorded.
                if !(found == Kind::Full && out.kind == Some(Kind::Own)) {
                    out.kind = Some(found);
                }
                if found == Kind::Lease {
                    out.lease_expires_at = access_expiry(f).and_then(format_unix);
                }
            }
            if state == State::Invalid {
                out.reason = Some(format!("{path} is not a valid auth.json"));
            }
            out.last_refresh = file.as_ref().and_then(|f| f.last_refresh.clone());
            out.account_id = file.as_ref().and_then(AuthFile::account_id);
            out.path = Some(path);
            out.state = state;
        }
    }
    out
}
