//! At most [`PER_HOST`] connections to one sshd are being set up at a time, within one process.
//!
//! sshd counts connections that have not authenticated yet against `MaxStartups` (stock
//! `10:30:100`: from the 10th on it drops new ones at random, 30 % at first). Many targets on one
//! host — accounts of a shared machine, a fleet behind one address — under a high `--jobs` would
//! otherwise trip it and fail targets that llmx itself made fail. So a connection waits for its
//! host's turn from the TCP connect (or the jump host's forward) until it is authenticated, and
//! no longer: an authenticated connection no longer counts for sshd either. The key is the host
//! and port the connection is made to, after `~/.ssh/config` (`HostName`, `Port`); two names for
//! one address that the config does not join count apart, which at worst allows twice as many.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections being set up to one host at a time: below the stock `MaxStartups 10`, with room
/// for other clients of the same sshd and for sshd's own lag in counting an authenticated
/// connection out (it learns of it from the connection's process, a moment after the client).
pub const PER_HOST: usize = 6;

/// Pauses before trying again a connection sshd closed before greeting (over its
/// `MaxStartups` all the same); each is stretched by up to half of itself at random, so that
/// connections dropped together do not come back together.
pub const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// `pause` plus up to half of it, at random.
pub fn jittered(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::getrandom(&mut byte);
    pause + pause.mul_f64(f64::from(byte[0]) / 510.0)
}

/// One gate per host and port.
type Gates = HashMap<(String, u16), Arc<Semaphore>>;

static GATES: LazyLock<Mutex<Gates>> = LazyLock::new(Mutex::default);

/// Wait for a turn to connect to `host:port`; the turn ends when the permit is dropped.
pub(super) async fn admit(host: &str, port: u16) -> OwnedSemaphorePermit {
    let gate = {
        let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget hosts nobody is connecting to (a long run over many hosts).
        gates.retain(|_, g| Arc::strong_count(g) > 1);
        Arc::clone(gates.entry((host.to_string(), port)).or_insert_with(|| Arc::new(Semaphore::new(PER_HOST))))
    };
    gate.acquire_owned().await.unwrap_or_else(|_| unreachable!("a connect gate is never closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_host_admits_per_host_at_a_time_and_other_hosts_are_not_held_up() {
        let mut held = Vec::new();
        for _ in 0..PER_HOST {
            held.push(admit("h", 22).await);
        }
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), admit("h", 22)).await;
        assert!(next.is_err(), "a ninth connection to one host was let through");
        // Another port is another sshd.
        let other = tokio::time::timeout(std::time::Duration::from_millis(50), admit("h", 2222)).await;
        assert!(other.is_ok());
        held.pop();
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), admit("h", 22)).await.is_ok());
    }
}
