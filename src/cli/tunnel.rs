//! `llmx auth tunnel [ssh:][user@]host[:port]`: sign a headless host in with its own browser login,
//! driven from this machine's browser. The work is `llmx::tunnel`; this module parses the flags
//! and renders its events: human lines on stderr (the sign-in URL always, a spinner while waiting
//! on a terminal) and the result on stdout, or with `--json` one JSON object per line on stdout.
//!
//! Exit codes: 0 signed in, 1 failure, 2 usage, 130 interrupted (Ctrl-C; the remote login is
//! cancelled first).

use crate::cli::login::has_display;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, output};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use llmx::ssh::SshAddress;
use llmx::tunnel::{self, TunnelError, TunnelEvent, TunnelOptions, TunnelSuccess};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// The machine to sign in: [ssh:][user@]host[:port] (an ~/.ssh/config alias works)
    #[arg(value_name = "HOST")]
    pub host: String,

    #[command(flatten)]
    pub ssh: SshArgs,

    /// Callback port, the same here and on the host (the redirect URI is
    /// http://localhost:PORT/auth/callback)
    #[arg(long, default_value_t = tunnel::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Print the sign-in URL but do not open a browser
    #[arg(long)]
    pub no_browser: bool,

    /// The llmx program on the host (`~/` is the remote home); default: `llmx` on its PATH, then
    /// ~/.llmx/bin/llmx
    #[arg(long, value_name = "PATH", conflicts_with = "install")]
    pub remote_llmx: Option<String>,

    /// Upload this llmx to ~/.llmx/bin/llmx on the host (same OS and architecture only) and use it
    #[arg(long)]
    pub install: bool,

    /// Give up when nobody completes the sign-in within SECS seconds
    #[arg(long, value_name = "SECS", default_value_t = llmx::auth::login::DEFAULT_TIMEOUT_SECS, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,

    /// Print machine-readable events (JSON lines) on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: TunnelArgs) -> Result<u8, Failure> {
    let address =
        SshAddress::parse(&args.host).map_err(|e| Failure::usage(format!("invalid host '{}': {e}", args.host)))?;
    let opts = TunnelOptions {
        address,
        ssh: args.ssh.options(),
        port: args.port,
        remote_llmx: args.remote_llmx.clone(),
        install: args.install,
        install_from: if args.install { std::env::current_exe().ok() } else { None },
        overrides: ctx.overrides.iter().map(|o| o.raw.clone()).collect(),
        timeout: Duration::from_secs(args.timeout),
    };
    let ui = Arc::new(Ui::new(&args));
    let sink: tunnel::EventSink = {
        let ui = ui.clone();
        Arc::new(move |event| ui.event(&event))
    };
    let runtime = crate::cli::runtime()?;
    let interrupt = async {
        // If the handler cannot be installed, Ctrl-C keeps its default effect (no teardown).
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let result = runtime.block_on(tunnel::run(opts, sink, interrupt));
    ui.done();
    match result {
        Ok(s) => {
            if args.json {
                output::json_line(&Tagged { event: "tunnel_succeeded", body: &s })?;
            } else {
                output::lines(&success_lines(&s))?;
            }
            Ok(0)
        }
        Err(e) => {
            if args.json {
                let _ = output::json_line(&serde_json::json!({
                    "event": "tunnel_failed", "reason": e.reason(), "error": e.to_string(), "hint": e.hint(),
                }));
            }
            Err(failure(e))
        }
    }
}

#[derive(serde::Serialize)]
struct Tagged<'a, T> {
    event: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

fn failure(e: TunnelError) -> Failure {
    let code = match e {
        TunnelError::Interrupted { .. } => 130,
        _ => 1,
    };
    let f = Failure { code, ..Failure::new(e.to_string()) };
    match e.hint() {
        Some(h) => f.hint(h),
        None => f,
    }
}

fn success_lines(s: &TunnelSuccess) -> Vec<String> {
    let status = s.status.clone().unwrap_or_default();
    let method = match status.method.as_deref() {
        Some("apikey") => "an API key",
        _ => "ChatGPT",
    };
    let mut who = status.email.or_else(|| s.email.clone()).unwrap_or_else(|| "(no email in id_token)".into());
    if let Some(p) = status.plan.or_else(|| s.plan.clone()) {
        who.push_str(&format!(" ({p})"));
    }
    let mut lines = vec![format!("Logged in on {} using {method} - {who}", s.host)];
    if let Some(a) = status.account_id.or_else(|| s.account_id.clone()) {
        lines.push(format!("  Account ID: {a}"));
    }
    lines.push(format!("  Saved to {} on {}", status.auth_file.as_deref().unwrap_or(&s.auth_file), s.host));
    if s.status.is_some() && !status.logged_in {
        lines.push("  Note: `llmx login status` there does not report a login (check its config).".into());
    }
    lines.push("  This is the host's own login: it refreshes independently of this machine's.".into());
    lines
}

/// Rendering state: a spinner on a terminal (never with --json), plain lines otherwise.
struct Ui {
    json: bool,
    open_browser: bool,
    timeout: Duration,
    spinner: Option<ProgressBar>,
    spinning: AtomicBool,
}

impl Ui {
    fn new(args: &TunnelArgs) -> Ui {
        let spinner = (!args.json && std::io::stderr().is_terminal()).then(|| {
            let pb = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                pb.set_style(style);
            }
            pb
        });
        Ui {
            json: args.json,
            open_browser: !args.no_browser && has_display(),
            timeout: Duration::from_secs(args.timeout),
            spinner,
            spinning: AtomicBool::new(false),
        }
    }

    fn say(&self, text: &str) {
        let print = || {
            let _ = writeln!(std::io::stderr(), "{text}");
        };
        match &self.spinner {
            // Once it spins, print above it.
            Some(pb) if self.spinning.load(Ordering::Relaxed) => pb.suspend(print),
            _ => print(),
        }
    }

    fn spin(&self, message: String) {
        if let Some(pb) = &self.spinner {
            pb.set_message(message);
            self.spinning.store(true, Ordering::Relaxed);
            pb.enable_steady_tick(Duration::from_millis(100));
        }
    }

    fn done(&self) {
        if let Some(pb) = &self.spinner {
            pb.finish_and_clear();
        }
    }

    fn event(&self, event: &TunnelEvent) {
        if let TunnelEvent::Listening { authorize_url, .. } = event
            && self.open_browser
        {
            let url = authorize_url.clone();
            // webbrowser may wait for a text-mode browser; never let it hold up the tunnel.
            std::thread::spawn(move || {
                if let Err(e) = webbrowser::open(&url) {
                    let _ = writeln!(std::io::stderr(), "Could not open a browser ({e}); open the URL above yourself.");
                }
            });
        }
        if self.json {
            // A closed stdout must not stop the tunnel: the remote login is what matters.
            let _ = output::json_line(event);
            return;
        }
        match event {
            TunnelEvent::Bound { .. } => {}
            TunnelEvent::Connected { host, host_key_fingerprint, .. } => {
                self.say(&format!("Connected to {host} (host key {host_key_fingerprint})"));
            }
            TunnelEvent::Installing { path, bytes, os, arch } => self
                .say(&format!("Uploading this llmx ({:.1} MB, {os}/{arch}) to {path}...", *bytes as f64 / 1_048_576.0)),
            TunnelEvent::Installed { path } => self.say(&format!("Installed {path}")),
            TunnelEvent::RemoteStarted { llmx, .. } => self.spin(format!("Starting {llmx} login on the host")),
            TunnelEvent::Listening { authorize_url, port } => {
                self.say(&format!(
                    "{} this URL in a browser to sign in the host:\n\n  {authorize_url}\n\n\
                     localhost:{port} here is forwarded to the host's llmx login (gives up after {}; Ctrl-C to cancel).",
                    if self.open_browser { "Opening" } else { "Open" },
                    llmx::text::format_duration(self.timeout)
                ));
                self.spin("Waiting for the sign-in in the browser".into());
            }
            TunnelEvent::CallbackRejected { reason } => {
                self.say(&format!("The host's login ignored a callback: {reason}. Still waiting..."))
            }
            TunnelEvent::CallbackReceived => self.spin("Signing in on the host".into()),
            TunnelEvent::ForwardFailed { error } => self.say(&format!("warning: forwarding failed: {error}")),
            TunnelEvent::Warning { message } => self.say(&format!("warning: {message}")),
        }
    }
}
