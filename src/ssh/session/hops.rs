//! Jump-host connections shared within one process: sixteen targets behind one bastion cost the
//! bastion one key exchange and one authentication, not sixteen (what OpenSSH users get from
//! `ControlMaster`). Each target still opens its own `direct-tcpip` forward over the shared
//! session.
//!
//! - **Key.** Everything that makes a hop's session what it is, from its resolved
//!   [`Destination`] (host, port, user, identity files, agent, known_hosts files and how new keys
//!   are treated, its own route through earlier hops, timeouts) plus the options `establish`
//!   reads besides it, and its depth in the chain. The alias the hop was named by is not part of
//!   it (`bastion` and `alice@10.0.0.1` that resolve alike share); the depth is, so that a
//!   `ProxyJump` loop meets the [`MAX_HOPS`](crate::ssh::connect::MAX_HOPS) error instead of
//!   waiting on its own connect. Each level of a `-J a,b` chain shares by its own key.
//! - **One connect.** Concurrent askers for one key queue on its slot's lock: the first connects,
//!   the others get the same [`Session`] handle.
//! - **Weakly held.** A slot keeps a `Weak` of the session: the connection lives while a target's
//!   session runs through it (`Via::Jump` holds it) and says goodbye when the last one is done.
//!   A session known to be dead ([`Session::is_closed`]) is replaced on the next ask.
//! - **Kept for a run.** Targets worked on one after another (`auth status` of a list, `--jobs 1`)
//!   would each find the bastion gone. While a [`KeepJumpHosts`] guard lives (the binary holds
//!   one for the whole command: one run), every hop session made is also held strongly, and
//!   released when the last guard goes.
//! - **Failures.** Everyone who was waiting for an attempt gets that attempt's error (one
//!   refusal shows the same one line on every target, and the bastion sees one failed login, not
//!   one per target). An ask that comes after the failed attempt ended tries again: the failure
//!   may have been passing (a timeout, a restart), and a slot whose session is gone is dropped
//!   from the cache, so nothing is remembered for the rest of a long run.

use super::{Session, Shared};
use crate::ssh::SshError;
use crate::ssh::SshOptions;
use crate::ssh::connect::Destination;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

/// What identifies a hop's session (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    dest: Destination,
    depth: usize,
    io_timeout: Duration,
    record_new_keys: bool,
    passphrase_prompt: bool,
}

impl Key {
    /// The key of `dest`, reached after `depth` jump hosts, connected with `opts`.
    pub(super) fn new(dest: &Destination, opts: &SshOptions, depth: usize) -> Key {
        let mut dest = dest.clone();
        // Only names the peer in messages; two names for one host share.
        dest.alias.clear();
        Key {
            dest,
            depth,
            io_timeout: opts.io_timeout,
            record_new_keys: opts.record_new_keys,
            passphrase_prompt: opts.passphrase.is_some(),
        }
    }
}

#[derive(Default)]
struct Slot {
    /// Connect attempts finished so far: tells a waiter whether one ended while it waited.
    finished: AtomicU64,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Weak<Shared>,
    /// How the last attempt failed, for those who waited on it.
    failed: Option<SshError>,
}

impl State {
    fn live(&self) -> Option<Session> {
        self.session.upgrade().map(|shared| Session { shared }).filter(|s| !s.is_closed())
    }
}

/// Open guards, and the sessions they keep.
static KEPT: Mutex<(usize, Vec<Session>)> = Mutex::new((0, Vec::new()));

/// While it lives, jump hosts' sessions stay open after their last target is done, for the next
/// target of the same run. Dropping the last guard lets them close (each once nothing else runs
/// through it).
#[must_use = "the sessions are kept only while the guard lives"]
pub struct KeepJumpHosts(());

/// Keep jump hosts' sessions for as long as the returned guard lives (one run of a command).
pub fn keep_jump_hosts() -> KeepJumpHosts {
    KEPT.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
    KeepJumpHosts(())
}

impl Drop for KeepJumpHosts {
    fn drop(&mut self) {
        let released = {
            let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
            kept.0 = kept.0.saturating_sub(1);
            if kept.0 == 0 { std::mem::take(&mut kept.1) } else { Vec::new() }
        };
        // Dropped outside the lock: the last handle of a session wakes its thread for the goodbye.
        drop(released);
    }
}

/// Hold `s` if a guard is open (and let go of kept sessions known to be dead).
fn keep(s: &Session) {
    let dead = {
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.0 == 0 {
            return;
        }
        let (dead, mut live): (Vec<Session>, Vec<Session>) =
            std::mem::take(&mut kept.1).into_iter().partition(Session::is_closed);
        live.push(s.clone());
        kept.1 = live;
        dead
    };
    drop(dead);
}

static HOPS: LazyLock<Mutex<HashMap<Key, Arc<Slot>>>> = LazyLock::new(Mutex::default);

/// The live session for `key`, or the one `connect` makes (at most one connect at a time per
/// key; those who waited for a failed one get its error).
pub(super) async fn session<F, Fut>(key: Key, connect: F) -> Result<Session, SshError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Session, SshError>>,
{
    let slot = {
        // A panic elsewhere while holding the map cannot leave it inconsistent: take it as is.
        let mut map = HOPS.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, slot| in_use(slot));
        Arc::clone(map.entry(key).or_default())
    };
    let seen = slot.finished.load(Ordering::Acquire);
    let mut state = slot.state.lock().await;
    if let Some(s) = state.live() {
        return Ok(s);
    }
    if slot.finished.load(Ordering::Acquire) != seen
        && let Some(e) = &state.failed
    {
        return Err(e.clone());
    }
    let r = connect().await;
    match &r {
        Ok(s) => {
            state.session = Arc::downgrade(&s.shared);
            state.failed = None;
            keep(s);
        }
        Err(e) => state.failed = Some(e.clone()),
    }
    slot.finished.fetch_add(1, Ordering::Release);
    r
}

/// Whether a slot still matters: someone holds or waits on it, or its session lives.
fn in_use(slot: &Arc<Slot>) -> bool {
    Arc::strong_count(slot) > 1 || slot.state.try_lock().map_or(true, |s| s.session.strong_count() > 0)
}
