//! The token family (DESIGN.md §9): one ChatGPT login's refresh-token lineage across every
//! machine that holds a copy. [`ledger`] remembers where this machine pushed it; [`survey`]
//! (`auth where`) asks each holder what it holds now; [`pull`] adopts a holder's fresher copy;
//! [`sync`] makes one copy the only live one everywhere; [`remove`] deletes copies; [`logout`]
//! revokes the lineage once no other copy needs it.
//!
//! Shared here: a [`Holder`] (a target and the home to look in), [`probe`] (locate + read), and
//! [`State`], what a holder's copy is relative to the local login. Nothing here prints.

pub mod ledger;
pub mod logout;
pub mod owner;
pub mod pull;
pub mod remove;
pub mod schedule;
pub mod survey;
pub mod sync;

use crate::auth::file::AuthFile;
use crate::targets::resolve::{ResolveOptions, resolve};
use crate::targets::{Identity, Location, RemoteFile, StepFn, Target, TargetError, TargetSpec};
use ledger::{Entry, Ledger};
use serde::Serialize;
use std::path::Path;

/// One target to visit, with the credential home to look in (the one recorded in the ledger, or
/// `--remote-home`, else the target's own).
pub struct Holder {
    pub target: Box<dyn Target>,
    pub remote_home: Option<String>,
    /// What the ledger knows of it.
    pub entry: Option<Entry>,
}

/// Every ledger entry as a holder, in ledger order.
pub async fn holders_from_ledger(ledger: &Ledger, opts: &ResolveOptions) -> Vec<Holder> {
    let mut out = Vec::new();
    for e in &ledger.entries {
        let target = match e.target.parse::<TargetSpec>() {
            Ok(spec) => resolve(std::slice::from_ref(&spec), opts).await.into_iter().next(),
            Err(_) => None,
        };
        let target = target.unwrap_or_else(|| {
            let why = TargetError::new(format!("the ledger names an invalid target '{}'", e.target));
            Box::new(crate::targets::resolve::FailedTarget::new(e.target.clone(), why))
        });
        out.push(Holder { target, remote_home: Some(e.home().to_string()), entry: Some(e.clone()) });
    }
    out
}

/// The targets the user named (labels expand), each with its ledger entry when there is one;
/// `remote_home` (from `--remote-home`) wins over the ledger's.
pub async fn holders_from_specs(
    specs: &[TargetSpec],
    ledger: &Ledger,
    remote_home: Option<&str>,
    opts: &ResolveOptions,
) -> Vec<Holder> {
    resolve(specs, opts)
        .await
        .into_iter()
        .map(|target| {
            let entry = ledger.find(&target.label()).cloned();
            let home = remote_home.map(str::to_string).or_else(|| entry.as_ref().map(|e| e.home().to_string()));
            Holder { target, remote_home: home, entry }
        })
        .collect()
}

/// The holders a family command works on: the targets named (`specs`), else every target in
/// the ledger.
pub async fn holders_named_or_all(
    specs: &[TargetSpec],
    ledger: &Ledger,
    remote_home: Option<&str>,
    opts: &ResolveOptions,
) -> Vec<Holder> {
    if specs.is_empty() {
        holders_from_ledger(ledger, opts).await
    } else {
        holders_from_specs(specs, ledger, remote_home, opts).await
    }
}

/// Progress of a family command, for the CLI: `index` is the holder's position.
#[derive(Debug)]
pub enum Progress<'a> {
    Step { index: usize, step: &'a str },
    Done { index: usize },
}

/// A callback receiving [`Progress`]; called from the command's own task.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress<'_>) + Send + Sync);

/// Run `f` on every holder, `jobs` at a time; the results in holder order.
pub async fn concurrently<'h, T, F, Fut>(holders: &'h mut [Holder], jobs: usize, f: F) -> Vec<T>
where
    F: Fn(usize, &'h mut Holder) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    let mut out: Vec<(usize, T)> = futures_util::stream::iter(holders.iter_mut().enumerate())
        .map(|(i, h)| {
            let fut = f(i, h);
            async move { (i, fut.await) }
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

/// What a holder turned out to hold.
pub struct Probed {
    pub loc: Location,
    pub identity: Option<Identity>,
    pub file: Option<RemoteFile>,
}

/// Locate and read one holder.
pub async fn probe(h: &mut Holder, step: StepFn<'_>) -> Result<Probed, TargetError> {
    let loc = h.target.locate(h.remote_home.as_deref(), step).await?;
    step("reading the credential");
    let file = h.target.read(&loc).await?;
    Ok(Probed { identity: h.target.identity(), loc, file })
}

/// A holder's copy compared with the local login (`auth where`'s vocabulary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The same bytes as the local auth.json.
    Same,
    /// The same account, refreshed later than the local copy: it rotated the refresh token.
    Fresher,
    /// The same account, not newer than the local copy (the local copy rotated, or it is stale).
    Older,
    OtherAccount,
    ApiKey,
    Missing,
    /// The file exists but is not a valid auth.json.
    Invalid,
    Unreachable,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Same => "same",
            State::Fresher => "fresher",
            State::Older => "older",
            State::OtherAccount => "other-account",
            State::ApiKey => "api-key",
            State::Missing => "missing",
            State::Invalid => "invalid",
            State::Unreachable => "unreachable",
        }
    }

    /// A copy of this login's lineage (same account, ChatGPT tokens).
    pub fn in_lineage(&self) -> bool {
        matches!(self, State::Same | State::Fresher | State::Older)
    }
}

/// Compare the holder's bytes with the local login (`local` and its bytes; `None` when this
/// machine holds no login). The account is compared by account id when both have one, else by
/// email; when neither can tell, the copy counts as the same account (the safe direction).
pub fn classify(
    local: Option<(&AuthFile, &[u8])>,
    remote: Option<&[u8]>,
    remote_path: &str,
) -> (State, Option<AuthFile>) {
    let Some(bytes) = remote else { return (State::Missing, None) };
    let Ok(theirs) = AuthFile::parse(Path::new(remote_path), bytes) else { return (State::Invalid, None) };
    if local.is_some_and(|(_, b)| b == bytes) {
        return (State::Same, Some(theirs));
    }
    if theirs.tokens.is_none() {
        let state = if theirs.api_key().is_some() { State::ApiKey } else { State::Invalid };
        return (state, Some(theirs));
    }
    let Some((ours, _)) = local.filter(|(f, _)| f.tokens.is_some()) else {
        return (State::OtherAccount, Some(theirs));
    };
    if !same_account(ours, &theirs) {
        return (State::OtherAccount, Some(theirs));
    }
    let state = match (ours.last_refresh_time(), theirs.last_refresh_time()) {
        (mine, Some(t)) if mine.is_none_or(|m| t > m) => State::Fresher,
        _ => State::Older,
    };
    (state, Some(theirs))
}

/// What a holder outside the lineage holds, for reasons: "an API key"...
pub fn describe(state: &State) -> &'static str {
    match state {
        State::OtherAccount => "a login of another account",
        State::ApiKey => "an API key",
        State::Invalid => "a file that is not a valid auth.json",
        _ => "a copy of this login",
    }
}

/// Account ids when both have one, else emails, else "cannot tell" (taken as the same).
pub fn same_account(a: &AuthFile, b: &AuthFile) -> bool {
    if let (Some(x), Some(y)) = (a.account_id(), b.account_id()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.email(), b.email()) {
        return x.eq_ignore_ascii_case(&y);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::{AUTH_CLAIMS, test_jwt};

    fn login(account: &str, last_refresh: &str, rt: &str) -> Vec<u8> {
        let id = test_jwt(&serde_json::json!({ AUTH_CLAIMS: {"chatgpt_account_id": account} }));
        serde_json::to_vec(&serde_json::json!({"OPENAI_API_KEY": null,
            "tokens": {"id_token": id, "access_token": "a", "refresh_token": rt, "account_id": account},
            "last_refresh": last_refresh}))
        .unwrap()
    }

    #[test]
    fn states_relative_to_the_local_login() {
        let mine = login("acc", "2025-02-01T00:00:00Z", "r1");
        let f = AuthFile::parse(Path::new("l"), &mine).unwrap();
        let local = Some((&f, mine.as_slice()));
        let st = |b: Option<&[u8]>| classify(local, b, "/r/auth.json").0;
        assert_eq!(st(Some(&mine)), State::Same);
        assert_eq!(st(Some(&login("acc", "2025-03-01T00:00:00Z", "r2"))), State::Fresher);
        assert_eq!(st(Some(&login("acc", "2025-01-01T00:00:00Z", "r0"))), State::Older);
        assert_eq!(st(Some(&login("other", "2025-03-01T00:00:00Z", "x"))), State::OtherAccount);
        assert_eq!(st(Some(br#"{"OPENAI_API_KEY":"sk-1"}"#)), State::ApiKey);
        assert_eq!(st(Some(b"{")), State::Invalid);
        assert_eq!(st(None), State::Missing);
    }
}
