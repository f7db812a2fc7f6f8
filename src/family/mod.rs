//! The token family (DESIGN.md §9): one ChatGPT login's refresh-token lineage across every
//! machine that holds a copy. [`ledger`] remembers where this machine pushed it; [`survey`]
//! (`auth where`) asks each holder what it holds now; [`pull`] adopts a holder's fresher copy;
//! [`sync`] makes one copy the only live one everywhere; [`remove`] deletes copies; [`logout`]
//! revokes the lineage once no other copy needs it.
//!
//! Shared here: a [`Holder`] (a target and the home to look in), [`probe`] (locate + read), and
//! [`State`], what a holder's copy is relative to the local login. Nothing here prints.

pub mod adopt;
pub mod lease;
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
use crate::targets::{ErrorKind, Identity, Location, RemoteFile, StepFn, Target, TargetError, TargetSpec};
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

/// Every ledger entry as a holder, in ledger order, each reached the way it was pushed (its
/// recorded route, not the route flags of this command: those are for the targets named).
pub async fn holders_from_ledger(ledger: &Ledger, opts: &ResolveOptions) -> Vec<Holder> {
    let mut out = Vec::new();
    for e in &ledger.entries {
        let opts = e.route.apply(opts);
        let target = match e.target.parse::<TargetSpec>() {
            Ok(spec) => resolve(std::slice::from_ref(&spec), &opts).await.into_iter().next(),
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
/// `remote_home` (from `--remote-home`) wins over the ledger's. A target named without route
/// flags (`-J`, `--kubeconfig`, `--context`) that the ledger knows is reached by its recorded
/// route; flags given on this command line win.
pub async fn holders_from_specs(
    specs: &[TargetSpec],
    ledger: &Ledger,
    remote_home: Option<&str>,
    opts: &ResolveOptions,
) -> Vec<Holder> {
    // Specs the ledger knows a route for are resolved one by one with it; the others together,
    // so they share one engine connection.
    let mut routed: Vec<(usize, ResolveOptions)> = Vec::new();
    let mut plain: Vec<(usize, TargetSpec)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        match ledger.find(&spec.to_string()).map(|e| &e.route).filter(|r| !r.is_empty()) {
            Some(route) => routed.push((i, route_for_named(route, opts))),
            None => plain.push((i, spec.clone())),
        }
    }
    let mut found: Vec<(usize, Box<dyn Target>)> = Vec::new();
    let plain_specs: Vec<TargetSpec> = plain.iter().map(|(_, s)| s.clone()).collect();
    // `resolve` keeps the order of its input; a label expands in place. A target carries the
    // position of the last spec whose name it matched.
    let mut at = 0;
    for target in resolve(&plain_specs, opts).await {
        if let Some(q) = plain.iter().skip(at).position(|(_, s)| target.label() == s.to_string()) {
            at += q;
        }
        found.push((plain.get(at).map(|(i, _)| *i).unwrap_or(0), target));
    }
    for (i, o) in routed {
        for target in resolve(std::slice::from_ref(&specs[i]), &o).await {
            found.push((i, target));
        }
    }
    found.sort_by_key(|(i, _)| *i);
    let out = found
        .into_iter()
        .map(|(_, target)| {
            let entry = ledger.find(&target.label()).cloned();
            let home = remote_home.map(str::to_string).or_else(|| entry.as_ref().map(|e| e.home().to_string()));
            Holder { target, remote_home: home, entry }
        })
        .collect();
    dedupe(out)
}

/// The options for a named target the ledger knows: its recorded route, except where this
/// command line gives one.
fn route_for_named(route: &ledger::Route, opts: &ResolveOptions) -> ResolveOptions {
    let mut o = route.apply(opts);
    if opts.ssh.jump.is_some() {
        o.ssh.jump = opts.ssh.jump.clone();
    }
    if opts.k8s.kubeconfig.is_some() || opts.k8s.context.is_some() {
        o.k8s = opts.k8s.clone();
    }
    o
}

/// The same target named twice is visited once (as `resolve` does within one call).
fn dedupe(holders: Vec<Holder>) -> Vec<Holder> {
    let mut seen = std::collections::HashSet::new();
    holders.into_iter().filter(|h| seen.insert(h.target.label())).collect()
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

/// Run `f` on every holder, `jobs` at a time (`None`: as wide as [`crate::fanout::width`]
/// allows); the results in holder order.
pub async fn concurrently<'h, T, F, Fut>(holders: &'h mut [Holder], jobs: Option<usize>, f: F) -> Vec<T>
where
    F: Fn(usize, &'h mut Holder) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    let width = crate::fanout::width(holders.len(), jobs);
    let mut out: Vec<(usize, T)> = futures_util::stream::iter(holders.iter_mut().enumerate())
        .map(|(i, h)| {
            let fut = f(i, h);
            async move { (i, fut.await) }
        })
        .buffer_unordered(width)
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

/// Locate and read one holder. A holder whose name now reaches another place than the one the
/// ledger records (a recreated container or pod) is not read: an error of kind `Replaced`.
pub async fn probe(h: &mut Holder, step: StepFn<'_>) -> Result<Probed, TargetError> {
    // A place the name no longer reaches is "replaced" whether or not the new one can be read
    // (a pod recreated a moment ago may not answer exec yet).
    let located = h.target.locate(h.remote_home.as_deref(), step).await;
    let recorded = h.entry.as_ref().and_then(|e| e.identity.as_ref());
    if let (Some(was), Some(now)) = (recorded, h.target.identity())
        && !was.same_place(&now)
    {
        let label = h.target.label();
        return Err(TargetError::new(format!("{label} was replaced: {}", was.change(&now)))
            .with_kind(ErrorKind::Replaced)
            .with_hint(format!(
                "`llmx auth push {label}` gives the new one a copy; `llmx auth remove {label}` forgets the old one"
            )));
    }
    let loc = located?;
    step("reading the credential");
    let file = h.target.read(&loc).await?;
    Ok(Probed { identity: h.target.identity(), loc, file })
}

/// A holder's copy compared with the local login (`auth where`'s vocabulary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// What this machine would write there now: its login (a full copy) or its lease.
    Same,
    /// A full copy of the same account, refreshed later than the local copy: it rotated the
    /// refresh token.
    Fresher,
    /// The same account, not newer than what this machine holds (a full copy whose refresh
    /// token the local copy has rotated away, or a lease from an earlier refresh).
    Older,
    /// A lease whose access token expires inside the renewal window: `auth sync` renews it.
    Expiring,
    /// A lease whose access token has expired: the place cannot work until it is renewed.
    Expired,
    OtherAccount,
    ApiKey,
    Missing,
    /// The file exists but is not a valid auth.json.
    Invalid,
    /// The name now reaches another place than the one recorded (a recreated container or pod).
    Replaced,
    Unreachable,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Same => "same",
            State::Fresher => "fresher",
            State::Older => "older",
            State::Expiring => "expiring",
            State::Expired => "expired",
            State::OtherAccount => "other-account",
            State::ApiKey => "api-key",
            State::Missing => "missing",
            State::Invalid => "invalid",
            State::Replaced => "replaced",
            State::Unreachable => "unreachable",
        }
    }

    /// A copy of this login's lineage (same account, ChatGPT tokens), a lease included.
    pub fn in_lineage(&self) -> bool {
        matches!(self, State::Same | State::Fresher | State::Older | State::Expiring | State::Expired)
    }
}

/// The local login as holders are compared with it: the owner's file, its bytes, and the
/// bytes of its lease (what a lease holder would be given now).
#[derive(Clone, Copy)]
pub struct Local<'a> {
    pub file: &'a AuthFile,
    pub bytes: &'a [u8],
    pub lease: Option<&'a [u8]>,
}

impl<'a> Local<'a> {
    /// The lease bytes of `file`, to keep beside it (see [`Local::new`]).
    pub fn lease_bytes(file: &AuthFile) -> Option<Vec<u8>> {
        lease::lease_of(file).map(|l| l.to_bytes())
    }

    pub fn new(file: &'a AuthFile, bytes: &'a [u8], lease: Option<&'a [u8]>) -> Local<'a> {
        Local { file, bytes, lease }
    }
}

/// A login a holder is compared with: its file and bytes (`None`: no login here).
pub type Judge<'a> = Option<(&'a AuthFile, &'a [u8])>;

/// A judge with the bytes of its lease.
type WithLease<'a> = Option<(&'a AuthFile, &'a [u8], Option<Vec<u8>>)>;

/// The login each holder is compared with, and its lease bytes: one for all, or one per holder
/// (several accounts: the one the ledger binds each holder to).
pub(crate) struct Judges<'a> {
    each: Vec<WithLease<'a>>,
}

impl<'a> Judges<'a> {
    pub(crate) fn new(
        local: Option<(&'a AuthFile, &'a [u8])>,
        per_holder: Option<&[Judge<'a>]>,
        holders: usize,
    ) -> Judges<'a> {
        let with_lease = |j: Judge<'a>| j.map(|(f, b)| (f, b, Local::lease_bytes(f)));
        let each = match per_holder {
            Some(all) => all.iter().map(|j| with_lease(*j)).collect(),
            None => vec![with_lease(local); holders],
        };
        Judges { each }
    }

    /// Holder `index`'s judge.
    pub(crate) fn get(&self, index: usize) -> Option<Local<'_>> {
        self.each.get(index)?.as_ref().map(|(f, b, l)| Local::new(f, b, l.as_deref()))
    }
}

/// How far into the future a holder's `last_refresh` may be (clock skew) and still count: a
/// copy that claims to be refreshed later than that is not taken as fresher.
pub const FUTURE_SKEW: time::Duration = time::Duration::minutes(5);

/// Compare the holder's bytes with the local login (`None` when this machine holds no login).
/// The account is compared by account id when both have one, else by email; when neither can
/// tell, the copy counts as the same account (the safe direction for keeping it). A lease (an
/// empty refresh token) is never fresher: it cannot have refreshed; it is `same` (the lease this
/// machine would write now), `expired`/`expiring` by its access token and `window`, else
/// `older`. A `last_refresh` more than [`FUTURE_SKEW`] ahead is not fresher either.
pub fn classify(
    local: Option<Local<'_>>,
    remote: Option<&[u8]>,
    remote_path: &str,
    window: time::Duration,
) -> (State, Option<AuthFile>) {
    let Some(bytes) = remote else { return (State::Missing, None) };
    let Ok(theirs) = AuthFile::parse(Path::new(remote_path), bytes) else { return (State::Invalid, None) };
    if local.is_some_and(|l| l.bytes == bytes || l.lease == Some(bytes)) {
        return (State::Same, Some(theirs));
    }
    if theirs.tokens.is_none() {
        let state = if theirs.api_key().is_some() { State::ApiKey } else { State::Invalid };
        return (state, Some(theirs));
    }
    let Some(ours) = local.map(|l| l.file).filter(|f| f.tokens.is_some()) else {
        return (State::OtherAccount, Some(theirs));
    };
    if !same_account(ours, &theirs) {
        return (State::OtherAccount, Some(theirs));
    }
    let now = time::OffsetDateTime::now_utc();
    if lease::is_lease(&theirs) {
        let state = match lease::standing(lease::access_expiry(&theirs), window, now) {
            lease::Standing::Expired => State::Expired,
            lease::Standing::Expiring => State::Expiring,
            lease::Standing::Current | lease::Standing::Unknown => State::Older,
        };
        return (state, Some(theirs));
    }
    let state = match (ours.last_refresh_time(), theirs.last_refresh_time()) {
        (_, Some(t)) if t > now + FUTURE_SKEW => State::Older,
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
        let lease = Local::lease_bytes(&f).unwrap();
        let local = Some(Local::new(&f, &mine, Some(&lease)));
        let st = |b: Option<&[u8]>| classify(local, b, "/r/auth.json", time::Duration::days(2)).0;
        assert_eq!(st(Some(&mine)), State::Same);
        assert_eq!(st(Some(&login("acc", "2025-03-01T00:00:00Z", "r2"))), State::Fresher);
        assert_eq!(st(Some(&login("acc", "2025-01-01T00:00:00Z", "r0"))), State::Older);
        assert_eq!(st(Some(&login("other", "2025-03-01T00:00:00Z", "x"))), State::OtherAccount);
        assert_eq!(st(Some(br#"{"OPENAI_API_KEY":"sk-1"}"#)), State::ApiKey);
        assert_eq!(st(Some(b"{")), State::Invalid);
        assert_eq!(st(None), State::Missing);
        assert_eq!(st(Some(&lease)), State::Same, "the lease this machine would write");
        assert_eq!(st(Some(&login("acc", "2099-01-01T00:00:00Z", "r9"))), State::Older, "a future last_refresh");
    }

    #[test]
    fn a_lease_is_never_fresher_and_stands_by_its_access_token() {
        let mine = login("acc", "2025-02-01T00:00:00Z", "r1");
        let f = AuthFile::parse(Path::new("l"), &mine).unwrap();
        let local = Some(Local::new(&f, &mine, None));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let lease_with = |exp: i64, lr: &str| {
            let id = test_jwt(&serde_json::json!({ AUTH_CLAIMS: {"chatgpt_account_id": "acc"} }));
            let at = test_jwt(&serde_json::json!({ "exp": exp }));
            serde_json::to_vec(&serde_json::json!({"OPENAI_API_KEY": null,
                "tokens": {"id_token": id, "access_token": at, "refresh_token": "", "account_id": "acc"},
                "last_refresh": lr}))
            .unwrap()
        };
        let st = |b: &[u8]| classify(local, Some(b), "/r/auth.json", time::Duration::days(2)).0;
        assert_eq!(st(&lease_with(now - 10, "2025-03-01T00:00:00Z")), State::Expired);
        assert_eq!(st(&lease_with(now + 3600, "2025-03-01T00:00:00Z")), State::Expiring);
        assert_eq!(st(&lease_with(now + 5 * 86_400, "2025-03-01T00:00:00Z")), State::Older);
    }
}
