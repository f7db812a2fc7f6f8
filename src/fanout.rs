//! How many targets a fan-out (`auth push`, `where`, `sync`, `remove`) works on at once.
//!
//! A fleet is latency-bound: a target spends its time waiting for round trips, not computing, so
//! the time of a run is (waves) x (round trips per target) x (RTT). The default therefore puts
//! every target in flight at once, up to what one target costs llmx:
//!
//! - **CPU**: about 2.5 ms of llmx's own CPU per SSH target (key exchange, signature, the
//!   conversation; measured by `scripts/bench`). A target lives for at least a handful of round
//!   trips, so at 100 ms RTT one core keeps some 300 targets busy; [`DEFAULT_WIDTH`] (256) keeps
//!   the client under one core on such a network, and on a LAN the servers are the bound anyway.
//! - **Threads**: one per SSH connection (the session's owner thread, [`crate::ssh::session`]),
//!   mostly asleep in `poll`; 256 of them are a few MB of touched stack.
//! - **File descriptors**: [`FDS_PER_TARGET`] per target (the socket, the owner's wake-up pipe,
//!   a jump host's socket pair or a `ProxyCommand`'s pipes), plus [`RESERVED_FDS`] for the rest
//!   of the process. The soft `RLIMIT_NOFILE` is raised as far as the hard limit allows; when
//!   even the hard limit is too low, the width shrinks to what fits, so that no target fails
//!   from a limit llmx set itself.
//!
//! `--jobs N` still caps the width (and gets the same descriptor check). Per-host limits are
//! separate: at most `PER_HOST` connections to one sshd are being set up at a time, whatever the
//! width (`ssh/session/startups.rs`, for sshd's `MaxStartups`).
#![allow(unsafe_code, reason = "getrlimit/setrlimit(2): std has no wrapper")]

/// Targets in flight at once when `--jobs` is not given (and there are that many).
pub const DEFAULT_WIDTH: usize = 256;
/// File descriptors one target in flight may hold.
pub const FDS_PER_TARGET: u64 = 8;
/// Descriptors kept for everything else (stdio, the runtime, the ledger, the resolver).
pub const RESERVED_FDS: u64 = 64;

/// The number of targets to work on at once: `jobs` (`--jobs`), else [`DEFAULT_WIDTH`], never
/// more than `targets`, and no more than the descriptor limit holds after raising the soft limit
/// towards the hard one. At least 1.
pub fn width(targets: usize, jobs: Option<usize>) -> usize {
    let wanted = jobs.unwrap_or(DEFAULT_WIDTH).min(targets).max(1);
    let soft = raise_nofile(needed_fds(wanted));
    wanted.min(fitting(soft)).max(1)
}

/// Descriptors `width` targets in flight need.
fn needed_fds(width: usize) -> u64 {
    RESERVED_FDS + FDS_PER_TARGET * width as u64
}

/// Targets in flight that `limit` descriptors hold.
fn fitting(limit: u64) -> usize {
    usize::try_from(limit.saturating_sub(RESERVED_FDS) / FDS_PER_TARGET).unwrap_or(usize::MAX)
}

/// Raise the soft `RLIMIT_NOFILE` to `needed` (at most the hard limit) when it is lower; the soft
/// limit in force afterwards (`u64::MAX` when it cannot be read: nothing is capped then).
fn raise_nofile(needed: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return u64::MAX;
    }
    let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
    if soft >= needed || soft == libc::RLIM_INFINITY {
        return soft;
    }
    let raised = libc::rlimit { rlim_cur: needed.min(hard), rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads the struct we pass; the hard limit is left as it was.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return soft;
    }
    raised.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_puts_a_whole_fleet_in_flight_and_jobs_caps_it() {
        assert_eq!(width(64, None), 64);
        assert_eq!(width(1000, None), DEFAULT_WIDTH);
        assert_eq!(width(64, Some(8)), 8);
        assert_eq!(width(3, Some(8)), 3);
        assert_eq!(width(0, None), 1);
    }

    #[test]
    fn descriptors_bound_the_width() {
        assert_eq!(fitting(needed_fds(100)), 100);
        assert_eq!(fitting(10), 0);
        // The soft limit after a call covers the width it returned.
        let w = width(DEFAULT_WIDTH, None);
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in raise_nofile.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert!(lim.rlim_cur >= needed_fds(w) || lim.rlim_cur == lim.rlim_max);
    }
}
