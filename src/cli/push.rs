//! `llmx auth push TARGET...`: copy this machine's auth.json to containers and hosts.
//!
//! Two phases (ripgrep's habit): first every argument is validated with no side effect (a
//! malformed target or option is exit 2 before anything connects; a malformed local auth.json
//! is refused before any target is touched), then the targets are resolved and pushed.

use crate::cli::push_view::PushView;
use crate::cli::recorder::Recorder;
use crate::cli::ssh_args::SshArgs;
use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::auth::file::AuthFile;
use llmx::auth::refresh;
use llmx::push::{LocalCredential, LocalError, Outcome, PushEvent, PushOptions, PushSummary, TargetReport};
use llmx::secret::Secret;
use llmx::ssh::{Destination, Route, SshAddress, SshOptions};
use llmx::targets::{TargetSpec, spec};

const EXAMPLES: &str = "\
Examples:
  llmx auth push docker:web                     # one container, by name or ID
  llmx auth push docker:label=llmx              # every running container labelled llmx
  llmx auth push docker:label=env=dev --dry-run # show where it would go, write nothing
  llmx auth push docker:a docker:b --json       # one JSON object per target, then a summary
  llmx auth push docker:web --remote-home /srv/llmx
  llmx auth push ssh:deploy@build-01 ssh:ci@10.0.0.7:2222   # SSH hosts (~/.ssh/config aliases work)
  llmx auth push ssh:new-host --accept-new       # record a first-seen host key (check it first)
  llmx auth push -J bastion ssh:10.1.2.3         # through a jump host, as ssh -J
  llmx auth push --explain ssh:inner             # how ~/.ssh/config resolves it; connects nowhere
  llmx auth push docker:compose=shop/web         # every running container of a Compose service
  llmx auth push @fleet.txt                      # the targets listed in a file, one a line
  llmx auth push --account work docker:ci        # another account (`llmx auth list`); bound in the ledger
  ansible all --list-hosts | sed 1d | sed 's/^ */ssh:/' | llmx auth push -
  llmx auth push --from-env docker:web          # the key exported in OPENAI_API_KEY (never type it on a command line)
  DOCKER_HOST=ssh://deploy@build-01 llmx auth push docker:web  # a remote engine, through llmx's SSH
  DOCKER_HOST=tcp://build-01:2376 DOCKER_TLS_VERIFY=1 llmx auth push docker:web  # TLS, ~/.docker/*.pem
  llmx auth push k8s:agents/deploy/workers      # every ready pod of a Deployment, through exec
  llmx auth push k8s:agents/secret/llmx-auth    # an Opaque Secret for pods to mount (no shell needed)
  llmx auth push --context prod k8s:pod/agent-0/sidecar
  llmx auth push --store file ssh:box           # its agent reads the keyring: make it read the pushed file

Each target is recorded in the ledger ($LLMX_HOME/ledger.json) the moment it is written: see
`llmx auth where`, `llmx auth sync`, `llmx auth remove`. A home where the ledger cannot be written
is refused before anything is pushed. Ctrl-C (or SIGTERM) stops the targets not yet writing, lets
writes under way finish, prints the recap and exits 130. A login whose access token expires within 5 minutes is
refreshed before it is pushed. Targets that turn out to be the same destination (aliases of one
host) are written once.

Outcomes: created, updated, unchanged, skipped (the target holds a fresher login of the
same account; --force overwrites it), failed. Exit status 0 only when no target failed.
A target whose config.toml says cli_auth_credentials_store = \"keyring\" (or \"auto\") is named:
the agent there reads its keyring, not the pushed file; --store file also sets
cli_auth_credentials_store = \"file\" in that config.toml (the rest of it kept as it is).
A ChatGPT login goes as a lease: its access token only, usable until it expires and renewed from
here by `llmx auth sync` (schedule it: `llmx auth sync --schedule`); the refresh token never
leaves this machine. --full copies the whole login, whose copies then share one rotating refresh
token; `llmx auth tunnel` gives a machine a login of its own instead.";

#[derive(Debug, Args)]
#[command(after_help = format!("{}\n\n{EXAMPLES}", spec::forms_help()))]
pub struct PushArgs {
    /// Where to copy auth.json (one or more; the forms are listed below)
    #[arg(required = true, value_name = "TARGET", value_parser = crate::cli::push::TargetArg, hide_possible_values = true, help = format!("Where to copy auth.json: {}; @FILE or - (stdin): the targets listed one a line", spec::forms_list()))]
    pub targets: Vec<String>,

    /// How many targets to work on at the same time (default: all of them, up to 256)
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..), long_help = crate::cli::JOBS_HELP)]
    pub jobs: Option<u16>,

    /// Overwrite targets that hold a fresher login of the same account
    #[arg(long)]
    pub force: bool,

    /// Resolve every target and report the path and the action, but write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON object per target and a summary object on stdout
    #[arg(long)]
    pub json: bool,

    /// Credential directory on every target (default: the target's LLMX_HOME, else ~/.llmx)
    #[arg(long, value_name = "PATH")]
    pub remote_home: Option<String>,

    /// Print how each SSH target would be reached (HostName, Port, User, jump hosts,
    /// known_hosts files, …, as ~/.ssh/config resolves it) and exit without connecting
    #[arg(long)]
    pub explain: bool,

    /// Push the API key in OPENAI_API_KEY instead of this machine's auth.json
    #[arg(long)]
    pub from_env: bool,

    /// Copy the whole ChatGPT login, refresh token included, instead of a lease (an
    /// access-only copy renewed by `llmx auth sync`): the copies then share one rotating
    /// refresh token, and the first that refreshes signs the others out
    #[arg(long)]
    pub full: bool,

    /// On a target whose agent reads its keyring (cli_auth_credentials_store = "keyring" or
    /// "auto" in its config.toml), also set cli_auth_credentials_store = "file" there, keeping
    /// the rest of that config.toml, so that the agent reads the pushed file
    #[arg(long, value_name = "file", value_parser = ["file"])]
    pub store: Option<String>,

    #[command(flatten)]
    pub ssh: SshArgs,

    #[command(flatten)]
    pub k8s: crate::cli::k8s_args::K8sArgs,

    #[command(flatten)]
    pub docker: crate::cli::docker_args::DockerArgs,
}

/// Parse target arguments; a malformed one is a usage error (exit 2), with a "did you mean"
/// for a missing or misspelt kind. `@FILE` and `-` (stdin) stand for the specs in the file, one
/// a line (blank lines and `#` comments skipped).
pub fn parse_targets(raw: &[String]) -> Result<Vec<TargetSpec>, Failure> {
    let mut specs = Vec::new();
    let mut stdin_read = false;
    for arg in raw {
        let (text, from) = if arg == "-" {
            if std::mem::replace(&mut stdin_read, true) {
                return Err(Failure::usage("'-' (targets on stdin) given twice"));
            }
            (std::io::read_to_string(std::io::stdin().lock())?, "stdin".to_string())
        } else if let Some(path) = arg.strip_prefix('@') {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read targets from {path}: {e}")))?;
            (text, path.to_string())
        } else {
            specs.push(parse_one(arg)?);
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let spec = line.parse::<TargetSpec>().map_err(|e| Failure::usage(format!("{from}:{}: {e}", n + 1)))?;
            specs.push(spec);
        }
    }
    if specs.is_empty() && !raw.is_empty() {
        return Err(Failure::usage(format!("no targets in {}", raw.join(" "))));
    }
    Ok(specs)
}

/// `--explain`: what `~/.ssh/config` (and `-J`, `--accept-new`, …) make of each SSH target, and
/// of each jump host on its way; nothing connects. Docker targets are listed as such.
fn explain(specs: &[TargetSpec], opts: &SshOptions, json: bool) -> Result<u8, Failure> {
    let resolve = |addr: &SshAddress, jump: Option<Vec<SshAddress>>| {
        Destination::resolve_with(addr, opts, jump).map_err(|e| {
            let hint = e.hint();
            let f = Failure::usage(e.to_string());
            match hint {
                Some(h) => f.hint(h),
                None => f,
            }
        })
    };
    for spec in specs {
        let TargetSpec::Ssh(addr) = spec else {
            if !json {
                crate::cli::output::lines(&[format!("{spec}: not an SSH target, nothing to explain")])?;
            }
            continue;
        };
        let dest = resolve(addr, opts.jump.clone())?;
        let mut hops = vec![(format!("{spec}"), dest.clone())];
        if let Route::Jump(chain) = &dest.route {
            for (i, hop) in chain.iter().enumerate() {
                let before = if i == 0 { None } else { Some(chain[..i].to_vec()) };
                hops.push((format!("  jump host {} ({hop})", i + 1), resolve(hop, before)?));
            }
        }
        if json {
            let steps: Vec<serde_json::Value> = hops
                .iter()
                .map(|(_, d)| {
                    serde_json::Value::Object(
                        d.explain().into_iter().map(|(k, v)| (k.replace(' ', "_"), v.into())).collect(),
                    )
                })
                .collect();
            crate::cli::output::json_line(&serde_json::json!({ "target": spec.to_string(), "hops": steps }))?;
            continue;
        }
        let mut out = Vec::new();
        for (title, d) in &hops {
            let indent = if title.starts_with(' ') { "    " } else { "  " };
            out.push(format!("{title}:"));
            out.extend(d.explain().into_iter().map(|(k, v)| format!("{indent}{k}: {v}")));
        }
        crate::cli::output::lines(&out)?;
    }
    Ok(0)
}

/// The target kinds (prefixes of the one syntax table), for suggestions.
fn kinds() -> Vec<&'static str> {
    spec::KINDS.iter().map(|k| k.prefix).collect()
}

/// One target argument; a "did you mean" hint when it does not parse.
fn parse_one(t: &str) -> Result<TargetSpec, Failure> {
    t.parse::<TargetSpec>().map_err(|e| {
        let f = Failure::usage(e.to_string());
        match did_you_mean(t) {
            Some(m) => f.hint(format!("did you mean {m}?")),
            None => f,
        }
    })
}

/// The value parser of TARGET arguments: any string (parsed later, in the validation phase),
/// but shell completion offers the kinds (`docker:`, `ssh:`).
#[derive(Debug, Clone, Copy)]
pub struct TargetArg;

impl clap::builder::TypedValueParser for TargetArg {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        // From the one syntax table: each kind's prefix, its forms as the help.
        Some(Box::new(spec::KINDS.iter().map(|k| {
            let forms: Vec<&str> = k.forms.iter().map(|f| f.syntax).collect();
            clap::builder::PossibleValue::new(format!("{}:", k.prefix)).help(forms.join(", "))
        })))
    }
}

/// A suggestion for a target that did not parse: the kinds it may have meant.
fn did_you_mean(raw: &str) -> Option<String> {
    match raw.split_once(':') {
        // `dokcer:web`: a misspelt kind.
        Some((kind, rest)) if !kinds().contains(&kind) => {
            let near = llmx::text::near_misses(kind, &kinds());
            near.first().map(|k| format!("{k}:{rest}"))
        }
        Some(_) => None,
        // `nc-web`: no kind at all.
        None if !raw.is_empty() && !raw.starts_with('-') => {
            // Only the kinds under which it would be a valid target.
            let valid: Vec<String> =
                kinds().iter().map(|k| format!("{k}:{raw}")).filter(|t| t.parse::<TargetSpec>().is_ok()).collect();
            (!valid.is_empty()).then(|| valid.join(" or "))
        }
        None => None,
    }
}

/// Check `--remote-home`: an absolute path (exit 2 otherwise).
pub fn check_remote_home(p: Option<&str>) -> Result<(), Failure> {
    match p {
        Some(p) if !p.starts_with('/') || p.split('/').any(|c| c == "..") => {
            Err(Failure::usage(format!("--remote-home '{p}' must be an absolute path without '..'")))
        }
        _ => Ok(()),
    }
}

/// A ChatGPT login whose access token expires within 5 minutes is refreshed (under the lock)
/// before it is copied anywhere: a copy that must refresh at once is a copy about to race.
fn refresh_if_expiring(ctx: &Ctx, dry_run: bool) -> Result<(), Failure> {
    let store = ctx.store()?;
    let Ok(Some(file)) = store.load() else { return Ok(()) };
    let now = time::OffsetDateTime::now_utc();
    if dry_run || !refresh::expires_within(&file, refresh::EXPIRY_MARGIN, now) {
        return Ok(());
    }
    let client = crate::cli::refresh::client(ctx)?;
    let when = refresh::When::ExpiresWithin(refresh::EXPIRY_MARGIN);
    let (store, r) = crate::cli::refresh::refresh_current(ctx, &client, when)?;
    r.map(|_| ()).map_err(|e| crate::cli::refresh::failure(e, store.path()))
}

/// The key in `OPENAI_API_KEY` (for `--from-env`), as the auth.json `llmx login --with-api-key`
/// would write for it.
fn from_env() -> Result<LocalCredential, Failure> {
    let key = env_api_key().ok_or_else(|| {
        Failure::of(Kind::NotLoggedIn, "--from-env: OPENAI_API_KEY is not set in this environment")
            .hint("set it without typing it on a command line (`read -rs OPENAI_API_KEY && export OPENAI_API_KEY`), or push the saved login without --from-env")
    })?;
    let bytes = AuthFile::with_api_key(Secret::new(key)).to_bytes();
    LocalCredential::from_bytes(std::path::Path::new("$OPENAI_API_KEY"), bytes)
        .map_err(|e| Failure::usage(e.to_string()))
}

/// A non-empty `OPENAI_API_KEY`.
fn env_api_key() -> Option<String> {
    std::env::var("OPENAI_API_KEY").ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty())
}

/// This machine's auth.json. When there is none but `OPENAI_API_KEY` is set (so `login status`
/// says logged in), say that the key is in the environment, not in a file, and how to push it.
fn local_credential(ctx: &Ctx) -> Result<LocalCredential, Failure> {
    let store = ctx.store()?;
    LocalCredential::load(&store).map_err(|e| match e {
        LocalError::Missing { .. } | LocalError::Empty { .. } if env_api_key().is_some() => Failure::of(
            Kind::NotLoggedIn,
            format!(
                "the API key in use here is in the OPENAI_API_KEY environment variable, not in {}: nothing to push",
                store.describe()
            ),
        )
        .hint("push the key itself with `llmx auth push --from-env TARGET`, or save it first: `printenv OPENAI_API_KEY | llmx login --with-api-key`"),
        LocalError::Missing { .. } | LocalError::Empty { .. } => Failure::of(Kind::NotLoggedIn, e.to_string())
            .hint("run `llmx login` (or `llmx login --with-api-key`) first"),
        LocalError::Invalid(e) => Failure::from(e),
    })
}

/// `-v`: where each target resolved to, and which Docker Engine is used.
pub fn verbose_targets(specs: &[TargetSpec], labels: &[String]) {
    if !output::is_verbose() {
        return;
    }
    if specs.iter().any(|s| matches!(s, TargetSpec::Docker(_))) {
        use llmx::targets::docker::connect::{Endpoint, EndpointEnv, Route};
        match Endpoint::resolve(&EndpointEnv::from_process()) {
            Ok(ep) => {
                let how = Route::decide(&ep, true).map(|r| r.to_string()).unwrap_or_else(|e| e.message);
                output::verbose(format!("docker: engine {} (from {}), {how}", ep.host, ep.origin))
            }
            Err(e) => output::verbose(format!("docker: no engine: {}", e.message)),
        }
    }
    let specs: Vec<String> = specs.iter().map(ToString::to_string).collect();
    output::verbose(format!("targets: {} resolved to {}", specs.join(" "), labels.join(" ")));
}

/// After an interrupt, how long writes already under way get to finish (and be recorded).
const WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

pub fn run(ctx: &Ctx, args: PushArgs) -> Result<u8, Failure> {
    let specs = parse_targets(&args.targets)?;
    check_remote_home(args.remote_home.as_deref())?;
    if args.explain {
        return explain(&specs, &args.ssh.options(), args.json);
    }
    let record = !args.dry_run && !args.from_env;
    // Every place written is recorded: a home that cannot take the record is found before the
    // issuer is asked for a refresh or any target is touched.
    if record {
        llmx::home::check_writable(ctx.home.dir())?;
    }
    refresh_if_expiring(ctx, args.dry_run)?;
    let owner = if args.from_env { from_env()? } else { local_credential(ctx)? };
    // A ChatGPT login goes out as a lease unless --full: the refresh token stays here.
    let local = match llmx::family::lease::lease_of(owner.file()) {
        Some(lease) if !args.full => {
            LocalCredential::as_lease(&owner, lease.to_bytes()).map_err(|e| Failure::usage(e.to_string()))?
        }
        _ => owner,
    };
    // A ledger that cannot be read only costs the skip hint its precision; the record below
    // reports it.
    let pushed_before = llmx::family::ledger::Ledger::load(ctx.home.dir())
        .map(|l| l.entries.iter().map(|e| e.target.clone()).collect())
        .unwrap_or_default();
    let opts = PushOptions {
        jobs: args.jobs.map(usize::from),
        force: args.force,
        dry_run: args.dry_run,
        remote_home: args.remote_home.clone(),
        pushed_before,
        store_file: args.store.is_some(),
        stop: Default::default(),
    };
    let recorder =
        Recorder::start(record.then(|| (ctx.home.dir().to_path_buf(), local.bytes().to_vec(), route_of(&args))));
    let rt = crate::cli::runtime()?;
    let outcome = rt.block_on(async {
        let interrupt = crate::cli::signals::interrupted();
        tokio::pin!(interrupt);
        let resolve_opts = args.k8s.resolve_options_for(&args.ssh, &args.docker, args.dry_run);
        let resolve = llmx::targets::resolve::resolve(&specs, &resolve_opts);
        let targets = tokio::select! {
            t = resolve => t,
            () = &mut interrupt => return Err(Failure::of(Kind::Interrupted, "interrupted before any target was reached")),
        };
        let labels: Vec<String> = targets.iter().map(|t| t.label()).collect();
        verbose_targets(&specs, &labels);
        let view = PushView::new(args.json, &labels);
        let done = std::sync::Mutex::new(vec![None; labels.len()]);
        let on_event = |e: PushEvent<'_>| {
            if let PushEvent::Done { index, report } = &e {
                recorder.record(report);
                if let Some(slot) = done.lock().ok().as_mut().and_then(|d| d.get_mut(*index)) {
                    *slot = Some((*report).clone());
                }
            }
            view.on_event(e)
        };
        let mut push = Box::pin(llmx::push::push(&local, targets, &opts, &on_event));
        let (summary, interrupted) = tokio::select! {
            s = &mut push => (Some(s), false),
            () = &mut interrupt => {
                opts.stop.cancel();
                output::note(&["interrupted: writes under way finish first (again to stop now)"]);
                tokio::select! {
                    s = &mut push => (Some(s), true),
                    () = crate::cli::signals::interrupted() => (None, true),
                    () = tokio::time::sleep(WRITE_GRACE) => (None, true),
                }
            }
        };
        drop(push);
        let mut summary = summary.unwrap_or_else(|| {
            let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
            cut_short(&labels, done, args.dry_run)
        });
        count_typed_again(&specs, &mut summary);
        view.finish(&summary)?;
        Ok((summary, interrupted))
    });
    // The record is finished whatever happened, before anything is said about it.
    let order: Vec<String> = match &outcome {
        Ok((s, _)) => s.reports.iter().map(|r| r.target.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let recorded = recorder.finish(&order);
    let (summary, interrupted) = outcome?;
    recorded?;
    if record && let Some(label) = crate::cli::accounts::current_label(ctx)? {
        llmx::family::ledger::bind_account(ctx.home.dir(), &summary.reports, &label)?;
    }
    if interrupted {
        let left = summary.reports.iter().filter(|r| r.outcome == llmx::push::Outcome::Failed).count();
        return Err(Failure::of(Kind::Interrupted, "interrupted").hint(format!(
            "{left} of {} target{} not done; run the same command again (what was written is recorded, and is unchanged next time)",
            summary.reports.len(),
            if summary.reports.len() == 1 { "" } else { "s" }
        )));
    }
    if local.is_lease() && !args.json {
        lease_note(&summary);
    }
    Ok(if summary.all_ok() { 0 } else { 1 })
}

/// How this push reached its targets, for the ledger: `-J`, `--kubeconfig`/`--context`, and
/// the Docker engine (`DOCKER_HOST`, `DOCKER_CONTEXT`).
pub fn route_of(args: &PushArgs) -> llmx::family::ledger::Route {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    llmx::family::ledger::Route {
        jump: args.ssh.jump.as_ref().map(|j| {
            if j.0.is_empty() {
                "none".to_string()
            } else {
                j.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }
        }),
        kubeconfig: args
            .k8s
            .kubeconfig
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string()),
        context: args.k8s.context.clone(),
        docker_host: var("DOCKER_HOST"),
        docker_context: var("DOCKER_CONTEXT"),
    }
}

/// After a lease push: when the leases expire and what renews them.
fn lease_note(summary: &llmx::push::PushSummary) {
    let Some(exp) = summary.reports.iter().find_map(|r| r.lease_expires_at.clone()) else { return };
    let n = summary.reports.iter().filter(|r| r.lease_expires_at.is_some()).count();
    output::note(&[format!(
        "{n} lease{} (access only; the refresh token stays here) usable until {exp}; `llmx auth sync` renews {} (schedule it: `llmx auth sync --schedule`)",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" }
    )]);
}

/// A target typed more than once is pushed once (resolving drops the repeats); each repeat is
/// still reported, as the same place as the first (`3 targets: 1 updated, 2 the same place`),
/// so the count matches what was typed.
fn count_typed_again(specs: &[TargetSpec], summary: &mut PushSummary) {
    let typed: Vec<String> = specs.iter().map(ToString::to_string).collect();
    for (i, t) in typed.iter().enumerate() {
        if !typed[..i].contains(t) {
            continue;
        }
        if let Some(at) = summary.reports.iter().rposition(|r| r.target == *t) {
            let mut again = summary.reports[at].clone();
            again.same_as = Some(t.clone());
            summary.reports.insert(at + 1, again);
        }
    }
}

/// The summary of a push the interrupt cut short: the targets done, and the others, whose write
/// was still under way (it may or may not have landed).
fn cut_short(labels: &[String], done: Vec<Option<TargetReport>>, dry_run: bool) -> PushSummary {
    let reports = labels
        .iter()
        .zip(done)
        .map(|(label, r)| {
            r.unwrap_or_else(|| {
                let mut r = TargetReport::new(
                    label.clone(),
                    Outcome::Failed,
                    Some("interrupted while it was being written: it may hold the new copy".into()),
                );
                r.hint = Some(format!("see what it holds with `llmx auth status {label}`"));
                r.dry_run = dry_run;
                r
            })
        })
        .collect();
    PushSummary { reports, warnings: Vec::new() }
}
