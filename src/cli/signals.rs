//! The interrupt of a long-running command: Ctrl-C (SIGINT) or SIGTERM (a supervisor, `timeout`,
//! `docker stop`, systemd) end it the same way — the command cleans up, says what it did, and
//! exits 130 — instead of dying with its progress lines frozen and its work half recorded.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Resolves at the first SIGINT or SIGTERM after it is first polled. Where a handler cannot be
/// installed, that signal keeps its default effect (the process ends) and this never resolves
/// for it.
pub async fn interrupted() {
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        () = next(int.as_mut()) => {}
        () = next(term.as_mut()) => {}
    }
}

async fn next(s: Option<&mut Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
