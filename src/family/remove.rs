//! `llmx auth remove TARGET…`: delete the credential file from holders and forget them in the
//! ledger. Only a copy of this machine's login (same account) is deleted unless `force`; the
//! target does the deleting safely (no symbolic links, no file of another user; one unlink).

use super::ledger::{Ledger, LedgerError};
use super::{Holder, Judge, Judges, State, classify, concurrently, probe};
use crate::auth::file::AuthFile;
use crate::push::{EventFn, Outcome, PushEvent, TargetReport};
use crate::targets::ErrorKind;
use std::path::Path;

/// Remove auth.json from every holder, `jobs` at a time; `local` is this machine's login (file
/// and bytes) that decides which copies are ours, or `judges`, one per holder, when they differ
/// (several accounts). The ledger in `home_dir` forgets the holders whose file is gone.
#[allow(clippy::too_many_arguments, reason = "one call site per command; a struct would only rename them")]
pub async fn remove(
    home_dir: &Path,
    local: Option<(&AuthFile, &[u8])>,
    judges: Option<&[Judge<'_>]>,
    holders: &mut [Holder],
    force: bool,
    dry_run: bool,
    jobs: Option<usize>,
    on_event: EventFn<'_>,
) -> Result<Vec<TargetReport>, LedgerError> {
    let labels: Vec<String> = holders.iter().map(|h| h.target.label()).collect();
    for (index, target) in labels.iter().enumerate() {
        on_event(PushEvent::Queued { index, target });
    }
    let judges = Judges::new(local, judges, holders.len());
    let judges = &judges;
    let reports = concurrently(holders, jobs, |index, h| async move {
        let local = judges.get(index);
        let step = move |s: &str| on_event(PushEvent::Step { index, step: s });
        let mut r = TargetReport::new(h.target.label(), Outcome::Failed, None);
        match probe(h, &step).await {
            // The copy went with the place it was written to: nothing to delete, and the new
            // place (another container under the name) is not touched; the entry is forgotten.
            Err(e) if e.kind == ErrorKind::Replaced => {
                r.outcome = Outcome::Unchanged;
                r.dry_run = dry_run;
                r.path = h.entry.as_ref().map(|e| e.path.clone());
                r.reason = Some(format!("{}; nothing removed from the new one, the old one forgotten", e.message));
            }
            Err(e) => {
                r.reason = Some(e.message);
                r.hint = e.hint;
            }
            Ok(p) => {
                let path = p.loc.auth_path();
                r.path = Some(path.clone());
                let (state, _) =
                    classify(local, p.file.as_ref().map(|f| f.bytes.as_slice()), &path, super::lease::DEFAULT_WINDOW);
                if state == State::Missing {
                    r.outcome = Outcome::Unchanged;
                    r.reason = Some("nothing to remove".into());
                } else if !(force || state.in_lineage()) {
                    r.outcome = Outcome::Skipped;
                    r.reason = Some(format!(
                        "it holds {} (state {}), not this login",
                        super::describe(&state),
                        state.as_str()
                    ));
                    r.hint = Some("add --force to remove it anyway".into());
                } else if dry_run {
                    // Every check made, nothing deleted: what the real run would do.
                    r.outcome = Outcome::Removed;
                    r.dry_run = true;
                } else {
                    step("removing");
                    match h.target.remove(&p.loc).await {
                        Ok(true) => r.outcome = Outcome::Removed,
                        Ok(false) => r.outcome = Outcome::Unchanged,
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
    if dry_run {
        return Ok(reports);
    }
    Ledger::update(home_dir, |l| {
        for r in &reports {
            if matches!(r.outcome, Outcome::Removed | Outcome::Unchanged)
                && let Some(path) = &r.path
            {
                l.forget(&r.target, path);
            }
        }
    })?;
    Ok(reports)
}
