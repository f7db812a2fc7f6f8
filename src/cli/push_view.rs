//! Rendering of a push as it happens: an indicatif MultiProgress with one line per target on a
//! terminal indicatif can draw on, nothing live otherwise (or with `-q`), JSON lines with
//! `--json`; then the per-target result lines (aligned, in input order) and the recap. Without
//! a live display (a pipe, `TERM=dumb`, `-q`) each target's line is printed as it finishes
//! instead, then the recap: a long push is never silent until its end.
//!
//! Progress and warnings go to stderr; results (outcome lines, recap, JSON) to stdout, so
//! `llmx auth push ... --json | jq` sees only JSON. Warnings go through `output::warning`, which
//! prints above the bars on every kind of terminal and is never silenced. Every line and JSON
//! string goes through `cli::output`'s terminal-safe cleaning: target names, reasons and hints
//! carry text from the containers and hosts.

use crate::cli::output::{self, Paint, clean, clean_json, paint};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use llmx::push::{Outcome, PushEvent, PushSummary, TargetReport, Warning};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

enum Mode {
    Json,
    /// No live display (a pipe, `TERM=dumb`, `-q`): each target's row is printed on stdout as it
    /// finishes (which ones were, by index), never all at the end.
    Plain {
        printed: Mutex<Vec<bool>>,
    },
    Bars {
        multi: MultiProgress,
        bars: Mutex<Vec<ProgressBar>>,
    },
}

/// Receives the engine's events; safe to call from the push (it is `Send + Sync`).
pub struct PushView {
    mode: Mode,
    /// The widest target label (to align the bars and the result lines).
    width: usize,
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

impl PushView {
    /// `labels` are the targets in order (to align the lines). Live bars only where
    /// [`output::live_progress`] says they can be drawn.
    pub fn new(json: bool, labels: &[String]) -> PushView {
        let width = labels.iter().map(|l| clean(l).chars().count()).max().unwrap_or(0);
        let mode = if json {
            Mode::Json
        } else if output::live_progress() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            output::set_progress(Some(multi.clone()));
            Mode::Bars { multi, bars: Mutex::new(Vec::new()) }
        } else {
            Mode::Plain { printed: Mutex::new(vec![false; labels.len()]) }
        };
        PushView { mode, width }
    }

    pub fn on_event(&self, event: PushEvent<'_>) {
        let width = self.width;
        match (&self.mode, event) {
            (_, PushEvent::Warning(w)) => warn(w),
            (Mode::Bars { multi, bars }, PushEvent::Queued { index, target }) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style(&format!("{{spinner}} {{prefix:<{width}}}  {{msg}}")).tick_strings(&SPINNER));
                bar.set_prefix(clean(target));
                bar.set_message("waiting");
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Ok(mut b) = bars.lock() {
                    debug_assert_eq!(b.len(), index);
                    b.push(bar);
                }
            }
            (Mode::Bars { bars, .. }, PushEvent::Step { index, step }) => {
                if let Some(bar) = bars.lock().ok().and_then(|b| b.get(index).cloned()) {
                    bar.set_message(clean(step));
                }
            }
            (Mode::Bars { bars, .. }, PushEvent::Done { index, report }) => {
                if let Some(bar) = bars.lock().ok().and_then(|b| b.get(index).cloned()) {
                    // The mark is the outcome's own, from the moment the target is done.
                    let mark = paint(mark(report.outcome), outcome_paint(report.outcome), true);
                    bar.set_style(style(&format!("{mark} {{prefix:<{width}}}  {{msg}}")));
                    bar.finish_with_message(outcome_text(report));
                }
            }
            (Mode::Plain { printed }, PushEvent::Done { index, report }) => {
                let mut out = std::io::stdout().lock();
                // A closed stdout is found (and said) when the recap is written.
                if writeln!(out, "{}", row(report, width)).and_then(|()| out.flush()).is_ok()
                    && let Some(p) = printed.lock().ok().as_mut().and_then(|p| p.get_mut(index))
                {
                    *p = true;
                }
            }
            (Mode::Json, PushEvent::Done { report, .. }) => {
                #[derive(serde::Serialize)]
                struct Line<'a> {
                    event: &'static str,
                    #[serde(flatten)]
                    report: &'a TargetReport,
                }
                if let Ok(mut value) = serde_json::to_value(Line { event: "target", report }) {
                    clean_json(&mut value);
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{value}");
                }
            }
            _ => {}
        }
    }

    /// The recap (and, on a terminal, the hints of failed targets) after the push.
    pub fn finish(&self, summary: &PushSummary) -> std::io::Result<()> {
        self.finish_with(summary, serde_json::Map::new(), &[])
    }

    /// [`finish`](PushView::finish) for the family commands: `extra` fields join the JSON
    /// summary; `lines` are printed before the human recap.
    pub fn finish_with(
        &self,
        summary: &PushSummary,
        extra: serde_json::Map<String, serde_json::Value>,
        lines: &[String],
    ) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if let Mode::Json = self.mode {
            let mut counts = serde_json::Map::new();
            for o in Outcome::ALL {
                counts.insert(o.as_str().to_string(), summary.count(o).into());
            }
            let warnings: Vec<_> = summary
                .warnings
                .iter()
                .map(|w| serde_json::json!({"code": w.code(), "message": w.message(), "hint": w.hint()}))
                .collect();
            let mut line = serde_json::json!({
                "event": "summary",
                "targets": summary.reports.len(),
                "counts": counts,
                "same_place": summary.reports.iter().filter(|r| r.same_as.is_some()).count(),
                "dry_run": summary.reports.first().is_some_and(|r| r.dry_run),
                "ok": summary.all_ok(),
                "warnings": warnings,
            });
            if let Some(obj) = line.as_object_mut() {
                obj.extend(extra);
            }
            clean_json(&mut line);
            writeln!(out, "{line}")?;
            return out.flush();
        }
        if let Mode::Bars { multi, .. } = &self.mode {
            let _ = multi.clear();
            output::set_progress(None);
        }
        let printed = match &self.mode {
            Mode::Plain { printed } => printed.lock().map(|p| p.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        for (i, r) in summary.reports.iter().enumerate() {
            if !printed.get(i).copied().unwrap_or(false) {
                writeln!(out, "{}", row(r, self.width))?;
            }
        }
        for l in lines {
            writeln!(out, "{}", clean(l))?;
        }
        writeln!(out, "{}", recap(summary))?;
        out.flush()
    }
}

impl Drop for PushView {
    fn drop(&mut self) {
        if let Mode::Bars { multi, .. } = &self.mode {
            let _ = multi.clear();
            output::set_progress(None);
        }
    }
}

/// One target's aligned row: its mark, its name padded to `width`, what happened.
fn row(r: &TargetReport, width: usize) -> String {
    let target = clean(&r.target);
    let pad = " ".repeat(width.saturating_sub(target.chars().count()));
    let mark = paint(mark(r.outcome), outcome_paint(r.outcome), false);
    format!("{mark} {target}{pad}  {}", outcome_text(r))
}

/// `3 targets: 2 created, 1 failed`; a dry run says what it would do: `would create 3`. A
/// target that was the same destination as an earlier one (typed twice, an alias, a label
/// matching a named container) is counted as such: `3 targets: 1 updated, 2 the same place`.
fn recap(summary: &PushSummary) -> String {
    let dry_run = summary.reports.first().is_some_and(|r| r.dry_run);
    let distinct = |o: Outcome| summary.reports.iter().filter(|r| r.outcome == o && r.same_as.is_none()).count();
    let mut parts: Vec<String> = Outcome::ALL
        .iter()
        .filter(|o| distinct(**o) > 0)
        .map(|o| {
            let n = distinct(*o);
            match (dry_run, would(*o)) {
                (true, Some(verb)) => format!("{verb} {n}"),
                _ => format!("{n} {}", o.as_str()),
            }
        })
        .collect();
    let same = summary.reports.iter().filter(|r| r.same_as.is_some()).count();
    if same > 0 {
        parts.push(format!("{same} the same place"));
    }
    let n = summary.reports.len();
    let dry = if dry_run { " (dry run: nothing written)" } else { "" };
    format!("{n} target{}: {}{dry}", if n == 1 { "" } else { "s" }, parts.join(", "))
}

/// A fixed template: it always parses (the fallback is never used).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn warn(w: &Warning) {
    output::warning(&w.message(), Some(w.hint()));
}

/// The mark of an outcome: done well, left alone, or failed.
fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Created | Outcome::Updated | Outcome::Unchanged | Outcome::Removed => "✓",
        Outcome::Skipped => "-",
        Outcome::Failed => "✗",
    }
}

fn outcome_paint(o: Outcome) -> Paint {
    match o {
        Outcome::Created | Outcome::Updated | Outcome::Removed => Paint::Good,
        Outcome::Unchanged => Paint::Dim,
        Outcome::Skipped => Paint::Warn,
        Outcome::Failed => Paint::Bad,
    }
}

/// What a dry run says instead of the outcome's name.
fn would(o: Outcome) -> Option<&'static str> {
    match o {
        Outcome::Created => Some("would create"),
        Outcome::Updated => Some("would update"),
        Outcome::Removed => Some("would remove"),
        _ => None,
    }
}

/// `created /root/.llmx/auth.json`, `would update ...`, `failed: reason (hint: ...)`.
fn outcome_text(r: &TargetReport) -> String {
    let path = r.path.as_deref().unwrap_or("");
    let verb = would(r.outcome).filter(|_| r.dry_run).unwrap_or(r.outcome.as_str());
    let mut text = match r.outcome {
        Outcome::Failed | Outcome::Skipped => {
            format!("{verb}: {}", r.reason.as_deref().unwrap_or("unknown reason"))
        }
        _ => format!("{verb} {path}"),
    };
    match &r.same_as {
        Some(first) if *first == r.target => text.push_str(" (typed twice: written once)"),
        Some(first) => text.push_str(&format!(" (same destination as {first}: written once)")),
        None => {}
    }
    if let (Some(why), Outcome::Unchanged) = (&r.reason, r.outcome) {
        text.push_str(&format!(" ({why})"));
    }
    match r.store_set_to_file {
        Some(true) => text.push_str(" (config.toml now sets cli_auth_credentials_store = \"file\")"),
        Some(false) => text.push_str(" (cli_auth_credentials_store in config.toml could not be changed)"),
        None => {}
    }
    if let Some(h) = &r.hint {
        text.push_str(&format!(" (hint: {h})"));
    }
    clean(&text)
}
