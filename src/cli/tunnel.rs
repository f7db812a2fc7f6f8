//! `llmx auth tunnel [ssh:][user@]host[:port] | docker:NAME [--device]`: sign a headless host or
//! a container in with its own login, driven from this machine's browser (or, with `--device`,
//! with a code shown here: nothing is forwarded). The work is `llmx::tunnel`; this module parses
//! the flags and renders its events: human lines on stderr (the sign-in URL or code always, a
//! spinner while waiting on a terminal) and the result on stdout, or with `--json` one JSON object
//! per line on stdout.
//!
//! Exit codes: 0 signed in, 1 failure, 2 usage, 130 interrupted (Ctrl-C; the remote login is
//! cancelled first).

use crate::cli::browser::Launcher;
use crate::cli::login::has_display;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use llmx::tunnel::{self, TunnelError, TunnelEvent, TunnelOptions, TunnelSuccess, TunnelTarget};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  llmx auth tunnel deploy@build-01                # the host runs its own `llmx login`; you sign in here
  llmx auth tunnel ssh:ci@10.0.0.7:2222 --install # the host has no llmx: upload this one first
  llmx auth tunnel --device deploy@build-01       # a device code shown here; no port anywhere
  llmx auth tunnel docker:web                     # a container's own login, callback relayed into it
  llmx auth tunnel docker:web --device --json
  llmx auth tunnel build-01 --no-browser          # print the URL instead of opening a browser

The host (or container) gets a login of its own (its own refresh token), unlike `llmx auth push`,
which copies this machine's. HOST is [ssh:][user@]host[:port] (or a ~/.ssh/config alias) or
docker:NAME. Exit status 0 signed in, 1 failed, 2 usage, 3 the host is unreachable, 4 SSH
authentication or an unknown host key (--accept-new), 130 interrupted (the remote login is
cancelled first).";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TunnelArgs {
    /// The machine to sign in: [ssh:][user@]host[:port] (an ~/.ssh/config alias works) or
    /// docker:NAME (a running container: the login runs inside it, as its user)
    #[arg(value_name = "TARGET")]
    pub host: String,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,

    /// Sign in with a device code instead: the code and its page are shown here (the page opens in
    /// this browser) and nothing is forwarded; for hosts and containers no callback can reach
    #[arg(long, conflicts_with = "port")]
    pub device: bool,

    /// Callback port, the same here and on the host (the redirect URI is
    /// http://localhost:PORT/auth/callback)
    #[arg(long, default_value_t = tunnel::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Print the sign-in URL (or the device-code page) but do not open a browser
    #[arg(long)]
    pub no_browser: bool,

    /// The llmx program on the host or in the container (`~/` is the remote home); default:
    /// `llmx` on its PATH, then ~/.llmx/bin/llmx
    #[arg(long, value_name = "PATH", conflicts_with = "install")]
    pub remote_llmx: Option<String>,

    /// Copy this llmx to ~/.llmx/bin/llmx there (same OS and architecture only; a container also
    /// needs a glibc) and use it
    #[arg(long)]
    pub install: bool,

    /// Give up when nobody completes the sign-in within SECS seconds [default: 600; --device: 900]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: Option<u64>,

    /// Print machine-readable events (JSON lines) on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: TunnelArgs) -> Result<u8, Failure> {
    let target = TunnelTarget::parse(&args.host).map_err(Failure::usage)?;
    let opts = TunnelOptions {
        target,
        ssh: args.ssh.options(),
        docker: args.docker.options(),
        device: args.device,
        port: args.port,
        remote_llmx: args.remote_llmx.clone(),
        install: args.install,
        install_from: if args.install { std::env::current_exe().ok() } else { None },
        overrides: remote_overrides(ctx)?,
        timeout: Duration::from_secs(timeout_secs(&args)),
        issuer: ctx.settings()?.auth_issuer,
    };
    let ui = Arc::new(Ui::new(&args, ctx.home.dir().to_path_buf()));
    let sink: tunnel::EventSink = {
        let ui = ui.clone();
        Arc::new(move |event| ui.event(&event))
    };
    let runtime = crate::cli::runtime()?;
    // Ctrl-C and SIGTERM (a supervisor stopping it) both tear the tunnel down.
    let interrupt = crate::cli::signals::interrupted();
    let result = runtime.block_on(tunnel::run(opts, sink, interrupt));
    ui.done();
    ui.browser.close();
    match result {
        Ok(s) => {
            record_own(ctx, &args, &s);
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

/// The `-c` overrides the remote login gets: the ones typed here, plus the effective
/// `auth_issuer` and `auth_client_id` when config.toml (not `-c`) set them, so the remote signs in
/// to the issuer whose page this machine's browser opens.
fn remote_overrides(ctx: &Ctx) -> Result<Vec<String>, Failure> {
    let settings = ctx.settings()?;
    let mut out: Vec<String> = ctx.overrides.iter().map(|o| o.raw.clone()).collect();
    let typed = |key: &str| ctx.overrides.iter().any(|o| o.path.len() == 1 && o.path[0] == key);
    if settings.auth_issuer != llmx::config::DEFAULT_ISSUER && !typed("auth_issuer") {
        out.push(format!("auth_issuer={}", settings.auth_issuer));
    }
    if settings.auth_client_id != llmx::config::DEFAULT_CLIENT_ID && !typed("auth_client_id") {
        out.push(format!("auth_client_id={}", settings.auth_client_id));
    }
    Ok(out)
}

/// A ChatGPT sign-in through the tunnel is recorded in the ledger as kind `own` (its own
/// lineage, this account), with the route it took: `auth where` lists it, `logout` names it
/// before a revoke, a later push there is told it holds its own login. A ledger that cannot be
/// written costs only this record: a warning, the sign-in stands.
fn record_own(ctx: &Ctx, args: &TunnelArgs, s: &TunnelSuccess) {
    use llmx::family::ledger::{Entry, Ledger, Route};
    let status = s.status.clone().unwrap_or_default();
    if s.login.method != "chatgpt" {
        return;
    }
    let label = match llmx::tunnel::TunnelTarget::parse(&args.host) {
        Ok(llmx::tunnel::TunnelTarget::Ssh(addr)) => format!("ssh:{addr}"),
        Ok(llmx::tunnel::TunnelTarget::Docker(name)) => format!("docker:{name}"),
        Err(_) => return,
    };
    let path = status.auth_file.clone().unwrap_or_else(|| s.login.auth_file.clone());
    let account = status.account_id.clone().or_else(|| s.login.account_id.clone());
    let mut entry = Entry::own(&label, &path, account, status.last_refresh.clone());
    let jump = args.ssh.jump.as_ref().map(|j| j.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    entry.route = Route { jump, ..Route::default() }.for_target(&label);
    if let Err(e) = Ledger::update(ctx.home.dir(), |l| l.upsert(entry)) {
        output::warning(&format!("the sign-in is not recorded in the ledger: {e}"), None);
    }
}

/// `--timeout`, else 600 s for the browser login and the device code's 15 minutes for `--device`.
fn timeout_secs(args: &TunnelArgs) -> u64 {
    let default = if args.device {
        llmx::auth::login::device::CODE_LIFETIME.as_secs()
    } else {
        llmx::auth::login::DEFAULT_TIMEOUT_SECS
    };
    args.timeout.unwrap_or(default)
}

#[derive(serde::Serialize)]
struct Tagged<'a, T> {
    event: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

fn failure(e: TunnelError) -> Failure {
    let kind = match &e {
        TunnelError::Interrupted { .. } => Kind::Interrupted,
        TunnelError::Ssh(s) => Kind::from(llmx::targets::ssh::error_kind(s)),
        _ => Kind::Failed,
    };
    let f = Failure::of(kind, e.to_string());
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
    let mut who = status.email.or_else(|| s.login.email.clone()).unwrap_or_else(|| "(no email in id_token)".into());
    if let Some(p) = status.plan.or_else(|| s.login.plan.clone()) {
        who.push_str(&format!(" ({p})"));
    }
    let place = Place::of(&s.host);
    let mut lines = vec![format!("Logged in on {} using {method} - {who}", s.host)];
    if let Some(a) = status.account_id.or_else(|| s.login.account_id.clone()) {
        lines.push(format!("  Account ID: {a}"));
    }
    lines.push(format!("  Saved to {} on {}", status.auth_file.as_deref().unwrap_or(&s.login.auth_file), s.host));
    if s.status.is_some() && !status.logged_in {
        lines.push("  Note: `llmx login status` there does not report a login (check its config).".into());
    }
    lines.push(format!("  This is the {}'s own login: it refreshes independently of this machine's.", place.noun));
    lines
}

/// What the tunnel signs in, for its messages: a host, whose login the browser reaches through
/// a forwarded port, or a container, to whose login the callback is relayed.
struct Place {
    noun: &'static str,
    carried: &'static str,
}

impl Place {
    fn of(target: &str) -> Place {
        if target.starts_with("docker:") {
            Place { noun: "container", carried: "relayed" }
        } else {
            Place { noun: "host", carried: "forwarded" }
        }
    }
}

/// Rendering state: a spinner on a terminal (never with --json), plain lines otherwise.
struct Ui {
    place: Place,
    json: bool,
    open_browser: bool,
    browser: Launcher,
    timeout: Duration,
    spinner: Option<ProgressBar>,
    spinning: AtomicBool,
}

impl Ui {
    fn new(args: &TunnelArgs, home: std::path::PathBuf) -> Ui {
        let spinner = (!args.json && output::live_progress()).then(|| {
            let pb = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                pb.set_style(style);
            }
            pb
        });
        Ui {
            place: Place::of(&args.host),
            json: args.json,
            open_browser: !args.no_browser && has_display(),
            browser: Launcher::new(home),
            timeout: Duration::from_secs(timeout_secs(args)),
            spinner,
            spinning: AtomicBool::new(false),
        }
    }

    /// Print `text` on stderr, one terminal-safe line per `\n` in it: the newlines are the fixed
    /// text's own, since [`Ui::event`] cleans every value it puts in (which removes theirs).
    fn say(&self, text: &str) {
        let print = || output::err_lines(&text.split('\n').collect::<Vec<_>>());
        match &self.spinner {
            // Once it spins, print above it.
            Some(pb) if self.spinning.load(Ordering::Relaxed) => pb.suspend(print),
            _ => print(),
        }
    }

    fn spin(&self, message: String) {
        if let Some(pb) = &self.spinner {
            pb.set_message(output::clean(&message));
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
        if let TunnelEvent::Listening { authorize_url: url, .. } | TunnelEvent::DeviceCode { verification_url: url, .. } =
            event
            && self.open_browser
        {
            self.browser.open(url);
        }
        if self.json {
            // A closed stdout must not stop the tunnel: the remote login is what matters.
            let _ = output::json_line(event);
            return;
        }
        let c = |s: &str| output::clean(s);
        let (place, carried) = (self.place.noun, self.place.carried);
        match event {
            TunnelEvent::Bound { .. } => {}
            TunnelEvent::Connected { host, host_key_fingerprint, .. } => {
                self.say(&format!("Connected to {} (host key {})", c(host), c(host_key_fingerprint)));
            }
            TunnelEvent::ContainerReady { container, id, user } => self.say(&format!(
                "Container {} ({}) runs; signing in its user {}",
                c(container),
                c(id),
                if user.is_empty() { "root".to_string() } else { c(user) }
            )),
            TunnelEvent::DeviceCode { verification_url, user_code, expires_in } => {
                self.say(&format!(
                    "To sign in the {place}, {} this page:\n\n  {}\n\nand enter the code:\n\n  {}\n\n\
                     The code expires in {}. Enter it only on that page, and only for a sign-in you started \
                     yourself: nobody who asks you for this code is from the provider.",
                    if self.open_browser { "opening" } else { "open" },
                    c(verification_url),
                    c(user_code),
                    llmx::text::format_duration(Duration::from_secs(*expires_in).min(self.timeout))
                ));
                self.spin("Waiting for the code to be entered".into());
            }
            TunnelEvent::Installing { path, bytes, os, arch } => self.say(&format!(
                "Uploading this llmx ({:.1} MB, {}/{}) to {}...",
                *bytes as f64 / 1_048_576.0,
                c(os),
                c(arch),
                c(path)
            )),
            TunnelEvent::Installed { path, unchanged: false } => self.say(&format!("Installed {}", c(path))),
            TunnelEvent::Installed { path, unchanged: true } => {
                self.say(&format!("{} is already this llmx (same SHA-256); not uploaded again", c(path)))
            }
            TunnelEvent::RemoteStarted { llmx, .. } => self.spin(format!("Starting {llmx} login in the {place}")),
            TunnelEvent::Listening { authorize_url, port } => {
                self.say(&format!(
                    "{} this URL in a browser to sign in the {place}:\n\n  {}\n\n\
                     localhost:{port} here is {carried} to the {place}'s llmx login (gives up after {}; Ctrl-C to cancel).",
                    if self.open_browser { "Opening" } else { "Open" },
                    c(authorize_url),
                    llmx::text::format_duration(self.timeout)
                ));
                self.spin("Waiting for the sign-in in the browser".into());
            }
            TunnelEvent::CallbackRejected { reason } => {
                self.say(&format!("The {place}'s login ignored a callback: {}. Still waiting...", c(reason)))
            }
            TunnelEvent::CallbackReceived => self.spin(format!("Signing in the {place}")),
            TunnelEvent::ForwardFailed { error } => {
                self.say(&format!("warning: a {carried} connection failed: {}", c(error)))
            }
            TunnelEvent::Warning { message } => self.say(&format!("warning: {}", c(message))),
        }
    }
}
