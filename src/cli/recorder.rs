//! The ledger record of a push as it happens (issue 20 item 2): each target is recorded the
//! moment it is written, not once after all of them, so an interrupt, a crash or a lost
//! connection later in the push leaves no written place unrecorded.
//!
//! Recording takes the ledger's lock and rewrites ledger.json (fsync included); doing that on
//! the push's own thread for every target would stall the others. So a thread of its own
//! records: it takes every report that finished since its last write and records them in one
//! update (through `family::ledger::record_push`, the one way a push is recorded). At most one
//! write is under way; [`Recorder::finish`] waits for the last one.

use llmx::family::ledger::{Ledger, LedgerError, Route, record_push};
use llmx::push::TargetReport;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

pub struct Recorder {
    dir: PathBuf,
    tx: Option<mpsc::Sender<TargetReport>>,
    /// Records until the sender is dropped; whether it recorded anything.
    thread: Option<JoinHandle<Result<bool, LedgerError>>>,
}

impl Recorder {
    /// Record into the ledger of the home `dir` what holds `bytes` now, reached by `route`; `None`: record nothing
    /// (a dry run, a key from the environment).
    pub fn start(record: Option<(PathBuf, Vec<u8>, Route)>) -> Recorder {
        let Some((dir, bytes, route)) = record else { return Recorder { dir: PathBuf::new(), tx: None, thread: None } };
        let home = dir.clone();
        let (tx, rx) = mpsc::channel::<TargetReport>();
        let thread = std::thread::spawn(move || {
            let (mut first_error, mut any) = (None, false);
            while let Ok(report) = rx.recv() {
                let mut batch = vec![report];
                batch.extend(rx.try_iter());
                // Keep recording after a failure (a lock held a moment too long); say the first.
                match record_push(&dir, &bytes, &batch, &route) {
                    Ok(()) => any = true,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(any), Err)
        });
        Recorder { dir: home, tx: Some(tx), thread: Some(thread) }
    }

    /// A target is done: record it if it now holds the login (the record function decides).
    pub fn record(&self, report: &TargetReport) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(report.clone());
        }
    }

    /// Wait until everything given has been recorded, then list this push's entries in the
    /// order of `targets` (the push's, as typed) rather than the order they finished in.
    pub fn finish(mut self, targets: &[String]) -> Result<(), LedgerError> {
        drop(self.tx.take());
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(Ok(false))) => Ok(()),
            Some(Ok(Ok(true))) => Ledger::update(&self.dir, |l| l.order_as(targets)),
            Some(Ok(Err(e))) => Err(e),
            // The thread only panics on a bug; the push itself is done.
            Some(Err(_)) => Ok(()),
        }
    }
}
