//! What the family commands (`auth where`, `pull`, `sync`, `remove`, `logout --everywhere`)
//! share in the binary: reading the local login and the ledger, and a spinner on a terminal.

use crate::cli::k8s_args::K8sArgs;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llmx::auth::file::AuthFile;
use llmx::family::Progress;
use llmx::family::ledger::Ledger;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The flags of the commands that work on many holders at once (`auth sync`, `auth remove`).
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Print one JSON object per target and a summary object on stdout
    #[arg(long)]
    pub json: bool,

    /// How many targets to work on at the same time (default: all of them, up to 256)
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..), long_help = crate::cli::JOBS_HELP)]
    pub jobs: Option<u16>,

    /// Credential directory on the named targets (default: the one recorded when pushed)
    #[arg(long, value_name = "PATH")]
    pub remote_home: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,
}

/// This machine's login (the `--account` one's with it), parsed, and its bytes (`None` when
/// there is none).
pub fn local(ctx: &Ctx) -> Result<Option<(AuthFile, Vec<u8>)>, Failure> {
    let store = ctx.store()?;
    match store.read()? {
        None => Ok(None),
        Some((b, place)) => Ok(Some((store.parse(&b, place)?, b))),
    }
}

pub fn ledger(ctx: &Ctx) -> Result<Ledger, Failure> {
    Ok(Ledger::load(ctx.home.dir())?)
}

/// "N of M checked" on stderr while holders are contacted, only where live progress can be drawn
/// (a terminal, not `TERM=dumb`, not `-q`) and without --json.
pub struct Spinner {
    bar: Option<ProgressBar>,
    done: AtomicUsize,
    total: usize,
}

impl Spinner {
    pub fn new(json: bool, total: usize, what: &str) -> Spinner {
        let bar = (!json && crate::cli::output::live_progress() && total > 0).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // A fixed template: it always parses.
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar.set_message(format!("{what} 0 of {total}"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Spinner { bar, done: AtomicUsize::new(0), total }
    }

    pub fn on_progress(&self, p: Progress<'_>) {
        if let (Some(bar), Progress::Done { .. }) = (&self.bar, p) {
            let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
            bar.set_message(format!("checked {n} of {}", self.total));
        }
    }

    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
