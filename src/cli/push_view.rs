//! Rendering of a push as it happens: an indicatif MultiProgress with one line per target on a
//! terminal, plain lines otherwise, JSON lines with `--json`; then the recap.
//!
//! Progress and warnings go to stderr; results (outcome lines, recap, JSON) to stdout, so
//! `llmx auth push ... --json | jq` sees only JSON. Every line and JSON string goes through
//! `cli::output`'s terminal-safe cleaning: target names, reasons and hints carry text from the
//! containers and hosts.

use crate::cli::output::{clean, clean_json};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use llmx::push::{Outcome, PushEvent, PushSummary, TargetReport, Warning};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

enum Mode {
    Json,
    Plain,
    Bars { multi: MultiProgress, bars: Mutex<Vec<ProgressBar>>, width: usize },
}

/// Receives the engine's events; safe to call from the push (it is `Send + Sync`).
pub struct PushView {
    mode: Mode,
}

impl PushView {
    /// `labels` are the targets in order (to align the bars).
    pub fn new(json: bool, terminal: bool, labels: &[String]) -> PushView {
        let mode = if json {
            Mode::Json
        } else if terminal {
            let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
            Mode::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(Vec::new()),
                width,
            }
        } else {
            Mode::Plain
        };
        PushView { mode }
    }

    pub fn on_event(&self, event: PushEvent<'_>) {
        match (&self.mode, event) {
            (Mode::Bars { multi, .. }, PushEvent::Warning(w)) => {
                let _ = multi.println(warning_text(w));
            }
            (_, PushEvent::Warning(w)) => eprintln!("{}", warning_text(w)),
            (Mode::Bars { multi, bars, width }, PushEvent::Queued { index, target }) => {
                let bar = multi.add(ProgressBar::new_spinner());
                let template = format!("{{spinner}} {{prefix:<{width}}}  {{msg}}");
                // The template is built from a fixed string and a number: it always parses.
                if let Ok(style) = ProgressStyle::with_template(&template) {
                    bar.set_style(style.tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"]));
                }
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
                    bar.finish_with_message(outcome_text(report));
                }
            }
            (Mode::Plain, PushEvent::Done { report, .. }) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}  {}", clean(&report.target), outcome_text(report));
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
            for r in &summary.reports {
                writeln!(out, "{}  {}", clean(&r.target), outcome_text(r))?;
            }
        }
        for l in lines {
            writeln!(out, "{l}")?;
        }
        let parts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| summary.count(**o) > 0)
            .map(|o| format!("{} {}", summary.count(*o), o.as_str()))
            .collect();
        let n = summary.reports.len();
        let dry = if summary.reports.first().is_some_and(|r| r.dry_run) { " (dry run: nothing written)" } else { "" };
        writeln!(out, "{n} target{}: {}{dry}", if n == 1 { "" } else { "s" }, parts.join(", "))?;
        out.flush()
    }
}

/// Two lines, each cleaned on its own (a newline inside the message cannot add a third).
fn warning_text(w: &Warning) -> String {
    format!("warning: {}\nhint: {}", clean(&w.message()), clean(w.hint()))
}

/// `created /root/.llmx/auth.json`, `would update ...`, `failed: reason (hint: ...)`.
fn outcome_text(r: &TargetReport) -> String {
    let path = r.path.as_deref().unwrap_or("");
    let verb = match (r.outcome, r.dry_run) {
        (Outcome::Created, true) => "would create",
        (Outcome::Updated, true) => "would update",
        (Outcome::Removed, true) => "would remove",
        (o, _) => o.as_str(),
    };
    let mut text = match r.outcome {
        Outcome::Failed | Outcome::Skipped => {
            format!("{verb}: {}", r.reason.as_deref().unwrap_or("unknown reason"))
        }
        _ => format!("{verb} {path}"),
    };
    if let Some(first) = &r.same_as {
        text.push_str(&format!(" (same destination as {first}: written once)"));
    }
    if let (Some(why), Outcome::Unchanged) = (&r.reason, r.outcome) {
        text.push_str(&format!(" ({why})"));
    }
    if let Some(h) = &r.hint {
        text.push_str(&format!(" (hint: {h})"));
    }
    clean(&text)
}
