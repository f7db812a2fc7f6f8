//! One overall deadline per target: [`Bounded`] wraps any [`Target`] so that everything done on
//! it — `locate`, `read`, `write`, `remove`, in any number — ends within one budget counted from
//! the first call. Whatever a holder does (a shell that floods its error output a byte at a time,
//! an `~/.ssh/rc` that never returns, an engine that keeps a stream open), the operation on that
//! target fails with a clear reason when the budget is spent, and every other target, and the
//! command, carry on. [`crate::targets::resolve::resolve`] wraps every target it returns, so
//! push, status, where, pull, sync and remove all get it; the stages inside a conversation have
//! their own, shorter deadlines ([`crate::targets::conversation::STAGE_TIMEOUT`]).
//!
//! Dropping the inner future on the deadline is what cancels the work: an SSH channel or a
//! Docker/Kubernetes exec is closed when its handle is dropped.

use crate::targets::{ErrorKind, Identity, Location, RemoteFile, StepFn, Target, TargetError};
use futures_util::future::BoxFuture;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The budget of one target when none is given: room for a connect timeout, a fallback path
/// and a write's three stages, and still a bound a cron job can live with.
pub const DEFAULT_TARGET_DEADLINE: Duration = Duration::from_secs(180);

/// A target whose every call ends by one deadline (see the module doc).
pub struct Bounded {
    inner: Box<dyn Target>,
    budget: Duration,
    /// Set by the first call.
    deadline: Option<Instant>,
}

impl Bounded {
    pub fn new(inner: Box<dyn Target>, budget: Duration) -> Bounded {
        Bounded { inner, budget, deadline: None }
    }

    /// When the budget runs out (`None` before the first call).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn run<'a, T: Send + 'a>(
        &'a mut self,
        work: impl FnOnce(&'a mut Box<dyn Target>) -> BoxFuture<'a, Result<T, TargetError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, TargetError>> {
        let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + self.budget);
        let (label, budget) = (self.inner.label(), self.budget);
        within(deadline, work(&mut self.inner), label, budget)
    }
}

fn within<'a, T: Send + 'a>(
    deadline: Instant,
    work: impl Future<Output = Result<T, TargetError>> + Send + 'a,
    label: String,
    budget: Duration,
) -> BoxFuture<'a, Result<T, TargetError>> {
    Box::pin(async move {
        match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(TargetError::new(format!(
                "{label}: gave up after {}s: the target kept llmx waiting (it never finished answering); the other \
                 targets were not held up",
                budget.as_secs()
            ))
            .with_kind(ErrorKind::Unreachable)),
        }
    })
}

impl Target for Bounded {
    fn label(&self) -> String {
        self.inner.label()
    }

    fn locate<'a>(
        &'a mut self,
        remote_home: Option<&'a str>,
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<Location, TargetError>> {
        self.run(move |t| t.locate(remote_home, step))
    }

    fn read<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
        self.run(move |t| t.read(loc))
    }

    fn write<'a>(
        &'a mut self,
        loc: &'a Location,
        bytes: &'a [u8],
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        self.run(move |t| t.write(loc, bytes, step))
    }

    fn identity(&self) -> Option<Identity> {
        self.inner.identity()
    }

    fn removable(&self) -> Result<(), String> {
        self.inner.removable()
    }

    fn file_store_set(&self) -> Option<bool> {
        self.inner.file_store_set()
    }

    fn remove<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
        self.run(move |t| t.remove(loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target whose every call never ends (a holder that keeps writing and never answers).
    struct Endless;

    impl Target for Endless {
        fn label(&self) -> String {
            "docker:endless".into()
        }
        fn locate<'a>(&'a mut self, _: Option<&'a str>, _: StepFn<'a>) -> BoxFuture<'a, Result<Location, TargetError>> {
            Box::pin(std::future::pending())
        }
        fn read<'a>(&'a mut self, _: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
            Box::pin(std::future::pending())
        }
        fn write<'a>(
            &'a mut self,
            _: &'a Location,
            _: &'a [u8],
            _: StepFn<'a>,
        ) -> BoxFuture<'a, Result<(), TargetError>> {
            Box::pin(std::future::pending())
        }
        fn identity(&self) -> Option<Identity> {
            None
        }
        fn remove<'a>(&'a mut self, _: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn every_call_on_a_target_ends_within_one_overall_deadline() {
        let budget = Duration::from_millis(300);
        let mut t = Bounded::new(Box::new(Endless), budget);
        let start = std::time::Instant::now();
        let e = t.locate(None, &|_| {}).await.unwrap_err();
        assert!(e.message.contains("docker:endless: gave up after"), "{e:?}");
        assert_eq!(e.kind, ErrorKind::Unreachable);
        // The budget is for the whole operation, not per call: later calls fail at once.
        let loc = Location { home: "/h".into(), owner: None, store: None, file_store: false };
        assert!(t.read(&loc).await.is_err());
        assert!(t.write(&loc, b"x", &|_| {}).await.is_err());
        assert!(t.remove(&loc).await.is_err());
        let took = start.elapsed();
        assert!(took >= budget && took < budget * 3, "{took:?}");
    }
}
