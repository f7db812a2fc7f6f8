//! `~/.ssh/config`, then `/etc/ssh/ssh_config`, as OpenSSH reads them (`ssh_config(5)`), for the
//! keywords that decide where and as whom we connect and which host key we trust:
//!
//! - sections: `Host` patterns (`*`, `?`, `!negation`) and `Match` with `all`, `host`,
//!   `originalhost`, `user`, `localuser` (each negatable with `!`, comma-separated pattern lists);
//!   `Include` (globs, relative to `~/.ssh`, nested, only where the enclosing section applies).
//! - routing: `HostName` (`%h`), `User`, `Port`, `ProxyJump` (a chain, or `none`), `ProxyCommand`
//!   (`%h %p %r %n %%`, or `none`), `ConnectTimeout`, `ServerAliveInterval`, `ServerAliveCountMax`.
//! - identity: `IdentityFile` (accumulates), `IdentitiesOnly`, `IdentityAgent`.
//! - trust: `HostKeyAlias`, `UserKnownHostsFile`, `GlobalKnownHostsFile`, `StrictHostKeyChecking`,
//!   `HashKnownHosts`.
//!
//! As in OpenSSH the first value obtained for a keyword wins, except `IdentityFile`, which
//! accumulates. A keyword that would change the route or the trust and that we cannot honour
//! (`CertificateFile`, `BindAddress`, `KnownHostsCommand`, `Match exec`, …: see [`UNSUPPORTED`]) is
//! an error naming it where it applies, never silently ignored; every other keyword (`SendEnv`,
//! `ForwardAgent`, `Ciphers`, …) has no bearing on a credential push and is skipped.

use crate::ssh::SshError;
use std::path::{Path, PathBuf};

/// What the config says about one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Raw values, tokens not yet expanded (see [`expand`]).
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    /// Raw; `none` means no agent.
    pub identity_agent: Option<String>,
    pub hash_known_hosts: Option<bool>,
    /// Raw comma-separated chain; `none` means direct.
    pub proxy_jump: Option<String>,
    /// Raw command line, tokens not yet expanded; `none` means direct.
    pub proxy_command: Option<String>,
    pub host_key_alias: Option<String>,
    /// Raw file names (tokens not yet expanded); `none` means no file.
    pub user_known_hosts: Option<Vec<String>>,
    pub global_known_hosts: Option<Vec<String>>,
    pub strict_host_key_checking: Option<Strict>,
    pub connect_timeout: Option<u64>,
    pub server_alive_interval: Option<u64>,
    pub server_alive_count_max: Option<u32>,
}

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strict {
    /// `yes`, `ask` (nobody to ask: as `yes`).
    Yes,
    /// `accept-new`, and also `no`/`off`: record an unknown host. A changed key is refused
    /// whatever the setting (OpenSSH's `no` would connect with restrictions; we never do).
    AcceptNew,
}

/// Who is looking: the name as typed, the user given on the command line, the local user.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub alias: &'a str,
    pub user: Option<&'a str>,
    pub local_user: &'a str,
}

/// Keywords that change where we connect or which key we trust and that llmx cannot honour: an
/// error where they apply. The second field is why.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("certificatefile", "OpenSSH certificates are not supported by llmx's SSH library (libssh2)"),
    ("bindaddress", "llmx cannot bind the outgoing connection to a source address"),
    ("bindinterface", "llmx cannot bind the outgoing connection to an interface"),
    ("knownhostscommand", "llmx does not run a command to find host keys"),
    ("canonicalizehostname", "llmx does not canonicalise host names"),
    ("proxyusefdpass", "llmx cannot take a connection passed by the ProxyCommand"),
    ("addressfamily", "llmx cannot restrict the address family"),
];

/// Values of [`UNSUPPORTED`] keywords that mean "the default", which we do honour.
fn harmless(key: &str, value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    match key {
        "canonicalizehostname" | "proxyusefdpass" => v == "no",
        "addressfamily" => v == "any",
        "certificatefile" | "knownhostscommand" => v == "none",
        _ => false,
    }
}

/// Nested `Include` depth, as OpenSSH's `READCONF_MAX_DEPTH`.
const MAX_DEPTH: usize = 16;

/// Read `paths` in order (the user's file, then the system's; a missing one is empty) and look
/// up the host of `q`: the first value obtained wins across all of them, as in OpenSSH. A
/// relative `Include` is looked up beside the file that names it (`~/.ssh`, `/etc/ssh`).
pub fn load(paths: &[&Path], q: &Query<'_>) -> Result<HostConfig, SshError> {
    let mut out = HostConfig::default();
    for path in paths {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut reader = Reader { q, base: &base, out: &mut out };
        reader.file(path, 0, true)?;
    }
    Ok(out)
}

/// Look up `q` in the text of one config file (no `Include` is read).
pub fn parse(text: &str, q: &Query<'_>) -> Result<HostConfig, String> {
    let mut out = HostConfig::default();
    let base = PathBuf::new();
    let mut reader = Reader { q, base: &base, out: &mut out };
    reader.text(text, Path::new("config"), 0, false).map_err(|e| match e {
        SshError::Config { reason, .. } => reason,
        other => other.to_string(),
    })?;
    Ok(out)
}

struct Reader<'a> {
    q: &'a Query<'a>,
    /// Where relative `Include` names are looked up (`~/.ssh`).
    base: &'a Path,
    out: &'a mut HostConfig,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, depth: usize, missing_ok: bool) -> Result<(), SshError> {
        match std::fs::read_to_string(path) {
            Ok(text) => self.text(&text, path, depth, true),
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SshError::Config { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    fn text(&mut self, text: &str, path: &Path, depth: usize, includes: bool) -> Result<(), SshError> {
        let fail = |n: usize, reason: String| SshError::Config {
            path: path.to_path_buf(),
            reason: format!("line {n}: {reason}"),
        };
        let mut active = true; // settings before the first Host line apply to every host
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = split_keyword(line);
            let args = split_args(rest).map_err(|e| fail(n, e))?;
            let key = key.to_ascii_lowercase();
            match key.as_str() {
                "host" => {
                    active = host_matches(&args, self.q.alias);
                    continue;
                }
                "match" => {
                    active = self.match_line(&args).map_err(|e| fail(n, e))?;
                    continue;
                }
                _ => {}
            }
            if !active {
                continue;
            }
            if key == "include" {
                if !includes {
                    continue;
                }
                if depth >= MAX_DEPTH {
                    return Err(fail(n, format!("Include nested deeper than {MAX_DEPTH} files")));
                }
                for pattern in &args {
                    for f in glob(&include_path(pattern, self.base)) {
                        self.file(&f, depth + 1, false)?;
                    }
                }
                continue;
            }
            self.setting(&key, &args).map_err(|e| fail(n, e))?;
        }
        Ok(())
    }

    /// One `Match` line: every criterion must hold. `exec` and the other criteria we cannot
    /// evaluate are an error only when the line could still match (as OpenSSH, which skips an
    /// `exec` once an earlier criterion failed).
    fn match_line(&self, args: &[String]) -> Result<bool, String> {
        let mut it = args.iter();
        let mut result = true;
        if args.is_empty() {
            return Err("Match needs criteria".into());
        }
        while let Some(word) = it.next() {
            let lower = word.to_ascii_lowercase();
            let (negate, crit) = match lower.strip_prefix('!') {
                Some(c) => (true, c.to_string()),
                None => (false, lower.clone()),
            };
            if crit == "all" {
                continue;
            }
            let value = it.next().ok_or_else(|| format!("Match {crit} needs an argument"))?;
            let subject = match crit.as_str() {
                "host" => self.current_host().to_ascii_lowercase(),
                "originalhost" => self.q.alias.to_ascii_lowercase(),
                "user" => self.current_user().to_string(),
                "localuser" => self.q.local_user.to_string(),
                other => {
                    if !result {
                        continue;
                    }
                    return Err(format!(
                        "Match {other} is not supported by llmx (supported: all, host, originalhost, user, localuser); \
                         give the settings in a Host section"
                    ));
                }
            };
            let patterns: Vec<String> = value
                .split(',')
                .map(|p| if crit == "host" || crit == "originalhost" { p.to_ascii_lowercase() } else { p.to_string() })
                .collect();
            if pattern_list_matches(&patterns, &subject) == negate {
                result = false;
            }
        }
        Ok(result)
    }

    /// The host name as known so far (`Match host` compares it): `HostName` once set.
    fn current_host(&self) -> String {
        match &self.out.host_name {
            Some(h) => expand_host_name(h, self.q.alias),
            None => self.q.alias.to_string(),
        }
    }

    /// The remote user as known so far (`Match user`): the command line's, else `User` once set,
    /// else the local user.
    fn current_user(&self) -> &str {
        self.q.user.or(self.out.user.as_deref()).unwrap_or(self.q.local_user)
    }

    fn setting(&mut self, key: &str, args: &[String]) -> Result<(), String> {
        let first = || args.first().cloned().ok_or_else(|| format!("{key} needs a value"));
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
            let v = first()?;
            if harmless(key, &v) {
                return Ok(());
            }
            return Err(format!("{} is not supported: {why}; remove it for this host or use ssh", keyword_name(key)));
        }
        let o = &mut *self.out;
        let yes_no = |v: String| -> Result<bool, String> {
            match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => Err(format!("bad {} '{v}' (yes or no)", keyword_name(key))),
            }
        };
        let seconds = |v: String| -> Result<u64, String> {
            v.parse::<u64>().map_err(|_| format!("bad {} '{v}' (seconds)", keyword_name(key)))
        };
        match key {
            "hostname" if o.host_name.is_none() => o.host_name = Some(first()?),
            "user" if o.user.is_none() => o.user = Some(first()?),
            "port" if o.port.is_none() => {
                let v = first()?;
                o.port = Some(v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad Port '{v}'"))?);
            }
            "identityfile" => o.identity_files.push(first()?),
            "identitiesonly" if o.identities_only.is_none() => o.identities_only = Some(yes_no(first()?)?),
            "identityagent" if o.identity_agent.is_none() => o.identity_agent = Some(first()?),
            "hashknownhosts" if o.hash_known_hosts.is_none() => o.hash_known_hosts = Some(yes_no(first()?)?),
            "proxyjump" if o.proxy_jump.is_none() && o.proxy_command.is_none() => o.proxy_jump = Some(first()?),
            // The rest of the line is the command, as OpenSSH takes it.
            "proxycommand" if o.proxy_command.is_none() && o.proxy_jump.is_none() => {
                if args.is_empty() {
                    return Err("ProxyCommand needs a value".into());
                }
                o.proxy_command = Some(args.join(" "));
            }
            "hostkeyalias" if o.host_key_alias.is_none() => o.host_key_alias = Some(first()?),
            "userknownhostsfile" if o.user_known_hosts.is_none() => {
                first()?;
                o.user_known_hosts = Some(args.to_vec());
            }
            "globalknownhostsfile" if o.global_known_hosts.is_none() => {
                first()?;
                o.global_known_hosts = Some(args.to_vec());
            }
            "stricthostkeychecking" if o.strict_host_key_checking.is_none() => {
                let v = first()?;
                o.strict_host_key_checking = Some(match v.to_ascii_lowercase().as_str() {
                    "yes" | "ask" | "true" => Strict::Yes,
                    "accept-new" | "no" | "off" | "false" => Strict::AcceptNew,
                    _ => return Err(format!("bad StrictHostKeyChecking '{v}' (yes, accept-new, no, ask)")),
                });
            }
            "connecttimeout" if o.connect_timeout.is_none() => {
                let v = first()?;
                o.connect_timeout = Some(if v.eq_ignore_ascii_case("none") { 0 } else { seconds(v)? });
            }
            "serveraliveinterval" if o.server_alive_interval.is_none() => {
                o.server_alive_interval = Some(seconds(first()?)?)
            }
            "serveralivecountmax" if o.server_alive_count_max.is_none() => {
                let v = first()?;
                o.server_alive_count_max =
                    Some(v.parse::<u32>().map_err(|_| format!("bad ServerAliveCountMax '{v}'"))?);
            }
            _ => {}
        }
        Ok(())
    }
}

/// The keyword as the manual spells it, for messages.
fn keyword_name(lower: &str) -> &str {
    const NAMES: &[&str] = &[
        "CertificateFile",
        "BindAddress",
        "BindInterface",
        "KnownHostsCommand",
        "CanonicalizeHostname",
        "ProxyUseFdpass",
        "AddressFamily",
        "IdentitiesOnly",
        "HashKnownHosts",
        "ConnectTimeout",
        "ServerAliveInterval",
    ];
    NAMES.iter().find(|n| n.eq_ignore_ascii_case(lower)).copied().unwrap_or(lower)
}

/// `Include` names: `~/` is the home, a relative name is under `~/.ssh` (`base`).
fn include_path(pattern: &str, base: &Path) -> PathBuf {
    if let Some(rest) = pattern.strip_prefix("~/") {
        let home = base.parent().map(Path::to_path_buf).unwrap_or_else(|| base.to_path_buf());
        return home.join(rest);
    }
    let p = Path::new(pattern);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// The files matching a path whose components may hold `*` and `?`, sorted as glob(3) sorts them;
/// a name without wildcards is returned as is when it exists (a missing Include file is skipped,
/// as OpenSSH does).
fn glob(path: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    for comp in path.components() {
        let name = comp.as_os_str().to_string_lossy();
        if matches!(comp, std::path::Component::RootDir) {
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            if name.contains(['*', '?']) {
                let Ok(rd) = std::fs::read_dir(dir) else { continue };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') && wildcard(name.as_bytes(), n.as_bytes()))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            } else {
                next.push(dir.join(&*name));
            }
        }
        found = next;
    }
    found.into_iter().filter(|p| p.is_file()).collect()
}

/// `Keyword value` or `Keyword=value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (key, rest)
}

/// Whitespace-separated arguments; double quotes group.
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    args.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unclosed quote".to_string());
    }
    if in_word {
        args.push(cur);
    }
    Ok(args)
}

/// A `Host` line applies when some pattern matches and no negated one does.
fn host_matches(patterns: &[String], host: &str) -> bool {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
    pattern_list_matches(&patterns, &host.to_ascii_lowercase())
}

/// OpenSSH's pattern lists (`ssh_config` Host lines, known_hosts host fields): some pattern
/// matches and no `!negated` one does. Case is the caller's business.
pub(crate) fn pattern_list_matches(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if wildcard(p.as_bytes(), name.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` glob matching, as in OpenSSH's `match_pattern`.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Why a host name that did not come from ssh_config may not go into a `ProxyCommand`, as
/// OpenSSH 9.6's `valid_hostname`: a leading `-`, whitespace, controls, or one of
/// `' ` " $ \ ; & < > | ( ) { }` (the shell would run or split it). `None`: safe.
pub fn shell_unsafe_host(name: &str) -> Option<String> {
    if name.starts_with('-') {
        return Some("it starts with '-'".into());
    }
    name.chars()
        .find(|c| "'`\"$\\;&<>|(){}".contains(*c) || c.is_whitespace() || c.is_control())
        .map(|c| format!("it holds {}", shown_char(c)))
}

/// The same for a user name, as OpenSSH 9.6's `valid_ruser`: a leading `-`, a control, one of
/// `' ` " ; & < > | ( ) { }`, a trailing `\`; and, stricter than OpenSSH (which lets them
/// through), any whitespace and a `$` anywhere but at the end (where a Samba machine account
/// has it).
pub fn shell_unsafe_user(name: &str) -> Option<String> {
    if name.starts_with('-') {
        return Some("it starts with '-'".into());
    }
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let bad = "'`\";&<>|(){}".contains(c)
            || c.is_control()
            || c.is_whitespace()
            || (c == '\\' && next.is_none())
            || (c == '$' && next.is_some());
        if bad {
            return Some(format!("it holds {}", shown_char(c)));
        }
    }
    None
}

fn shown_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() { format!("U+{:04X}", u32::from(c)) } else { format!("'{c}'") }
}

/// `HostName` with `%h` (the name as typed) and `%%`.
pub fn expand_host_name(raw: &str, alias: &str) -> String {
    expand(raw, &Tokens { host: alias, original: alias, ..Tokens::default() }).to_string_lossy().into_owned()
}

/// The values `%` tokens stand for.
#[derive(Debug, Clone, Default)]
pub struct Tokens<'a> {
    /// `%d`: the local home directory; also what a leading `~` means.
    pub home: Option<&'a Path>,
    /// `%u`: the local user.
    pub local_user: &'a str,
    /// `%h`: the remote host name (after `HostName`).
    pub host: &'a str,
    /// `%n`: the name as typed.
    pub original: &'a str,
    /// `%r`: the remote user.
    pub user: &'a str,
    /// `%p`: the port.
    pub port: u16,
}

/// Expand `~` (when a home is given), `%d`, `%u`, `%h`, `%n`, `%r`, `%p` and `%%`. An unknown
/// token is kept as written.
pub fn expand(raw: &str, t: &Tokens<'_>) -> PathBuf {
    let home_s = t.home.map(|h| h.to_string_lossy().into_owned());
    let mut out = String::new();
    let mut rest = raw;
    if let Some(home) = &home_s {
        if let Some(r) = rest.strip_prefix("~/") {
            out.push_str(home);
            out.push('/');
            rest = r;
        } else if rest == "~" {
            return PathBuf::from(home);
        }
    }
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') if home_s.is_some() => out.push_str(home_s.as_deref().unwrap_or_default()),
            Some('u') => out.push_str(t.local_user),
            Some('h') => out.push_str(t.host),
            Some('n') => out.push_str(t.original),
            Some('r') => out.push_str(t.user),
            Some('p') => out.push_str(&t.port.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    PathBuf::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "\
# comment
Host web prod-*  !prod-db
    HostName 10.0.0.%h
    User deploy
    Port=2222
    IdentityFile ~/.ssh/web_key

Host \"quoted alias\"
  Hostname q.example

Match host x exec \"false\"
  User never

Host *
  User fallback
  IdentityFile %d/.ssh/id_%r
  IdentitiesOnly yes
";

    fn q(alias: &str) -> Query<'_> {
        Query { alias, user: None, local_user: "me" }
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = parse(CONF, &q("web")).unwrap();
        assert_eq!(c.host_name.as_deref(), Some("10.0.0.%h"));
        assert_eq!(c.user.as_deref(), Some("deploy"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(c.identity_files, vec!["~/.ssh/web_key", "%d/.ssh/id_%r"]);
        assert_eq!(c.identities_only, Some(true));
    }

    #[test]
    fn patterns_negation_and_quotes() {
        assert_eq!(parse(CONF, &q("prod-app")).unwrap().user.as_deref(), Some("deploy"));
        assert_eq!(parse(CONF, &q("PROD-APP")).unwrap().user.as_deref(), Some("deploy"));
        assert_eq!(parse(CONF, &q("prod-db")).unwrap().user.as_deref(), Some("fallback"));
        assert_eq!(parse(CONF, &q("quoted alias")).unwrap().host_name.as_deref(), Some("q.example"));
        let other = parse(CONF, &q("elsewhere")).unwrap();
        assert_eq!(other.host_name, None);
        assert_eq!(other.port, None);
        assert_eq!(other.user.as_deref(), Some("fallback"), "Match host x does not apply: exec never asked");
    }

    #[test]
    fn match_exec_that_could_apply_is_an_error_naming_it() {
        let e = parse(CONF, &q("x")).unwrap_err();
        assert!(e.contains("line 11") && e.contains("Match exec is not supported"), "{e}");
    }

    #[test]
    fn match_host_originalhost_user_localuser_and_negation() {
        let conf = "\
Host short
  HostName long.example
Match host long.example user deploy
  Port 2201
Match originalhost short !localuser me
  Port 2202
Match originalhost short localuser me
  IdentityFile k_me
Match all
  Port 2203
";
        let c = parse(conf, &Query { alias: "short", user: Some("deploy"), local_user: "me" }).unwrap();
        assert_eq!((c.port, c.identity_files.clone()), (Some(2201), vec!["k_me".to_string()]));
        let c = parse(conf, &Query { alias: "short", user: Some("other"), local_user: "me" }).unwrap();
        assert_eq!(c.port, Some(2203));
        let c = parse(conf, &Query { alias: "short", user: None, local_user: "you" }).unwrap();
        assert_eq!(c.port, Some(2202));
        // `Match user` sees a User set earlier in the file.
        let c = parse("Host a\n User deploy\nMatch user deploy\n Port 7\n", &q("a")).unwrap();
        assert_eq!(c.port, Some(7));
    }

    #[test]
    fn routing_and_trust_keywords_first_wins() {
        let conf = "\
Host inner
  ProxyJump bastion,jump2
  ProxyCommand nc %h %p
  HostKeyAlias inner-key
  UserKnownHostsFile ~/.ssh/kh1 %d/kh2
  GlobalKnownHostsFile none
  StrictHostKeyChecking accept-new
  ConnectTimeout 7
  ServerAliveInterval 3
  ServerAliveCountMax 2
Host *
  ProxyJump none
  StrictHostKeyChecking yes
";
        let c = parse(conf, &q("inner")).unwrap();
        assert_eq!(c.proxy_jump.as_deref(), Some("bastion,jump2"));
        assert_eq!(c.proxy_command, None, "the first of ProxyJump/ProxyCommand wins");
        assert_eq!(c.host_key_alias.as_deref(), Some("inner-key"));
        assert_eq!(c.user_known_hosts, Some(vec!["~/.ssh/kh1".into(), "%d/kh2".into()]));
        assert_eq!(c.global_known_hosts, Some(vec!["none".into()]));
        assert_eq!(c.strict_host_key_checking, Some(Strict::AcceptNew));
        assert_eq!((c.connect_timeout, c.server_alive_interval, c.server_alive_count_max), (Some(7), Some(3), Some(2)));
        let c = parse(conf, &q("other")).unwrap();
        assert_eq!((c.proxy_jump.as_deref(), c.strict_host_key_checking), (Some("none"), Some(Strict::Yes)));
        let c = parse("Host a\n ProxyCommand ssh -W %h:%p bastion\n", &q("a")).unwrap();
        assert_eq!(c.proxy_command.as_deref(), Some("ssh -W %h:%p bastion"));
    }

    #[test]
    fn unsupported_routing_keywords_are_errors_naming_them_where_they_apply() {
        for (line, name) in [
            ("CertificateFile ~/.ssh/id-cert.pub", "CertificateFile"),
            ("BindAddress 10.0.0.1", "BindAddress"),
            ("KnownHostsCommand /bin/true", "KnownHostsCommand"),
            ("CanonicalizeHostname yes", "CanonicalizeHostname"),
            ("AddressFamily inet", "AddressFamily"),
        ] {
            let conf = format!("Host a\n  {line}\n");
            let e = parse(&conf, &q("a")).unwrap_err();
            assert!(e.starts_with("line 2: ") && e.contains(&format!("{name} is not supported")), "{e}");
            assert!(parse(&conf, &q("b")).is_ok(), "{line} for another host does not matter");
        }
        assert!(parse("CanonicalizeHostname no\nAddressFamily any\n", &q("a")).is_ok());
    }

    #[test]
    fn include_globs_relative_to_ssh_dir_and_only_where_active() {
        let t = tempfile::tempdir().unwrap();
        let ssh = t.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        std::fs::write(ssh.join("conf.d/b.conf"), "Host web\n  Port 2002\n").unwrap();
        std::fs::write(ssh.join("conf.d/a.conf"), "Host web\n  User from-a\nHost db\n  User db-user\n").unwrap();
        std::fs::write(ssh.join("conf.d/a.txt"), "Host web\n  User never\n").unwrap();
        std::fs::write(ssh.join("other"), "Port 9\n").unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host nomatch\n  Include other\nHost *\n  Include conf.d/*.conf ~/.ssh/missing\n  HostName h.example\n",
        )
        .unwrap();
        let c = load(&[&ssh.join("config")], &q("web")).unwrap();
        assert_eq!((c.user.as_deref(), c.port), (Some("from-a"), Some(2002)));
        assert_eq!(c.host_name.as_deref(), Some("h.example"), "the enclosing section goes on after an Include");
        let c = load(&[&ssh.join("config")], &q("db")).unwrap();
        assert_eq!((c.user.as_deref(), c.port), (Some("db-user"), None));
        std::fs::write(ssh.join("config"), "Include config\n").unwrap();
        let e = load(&[&ssh.join("config")], &q("web")).unwrap_err().to_string();
        assert!(e.contains("Include nested deeper"), "{e}");
    }

    #[test]
    fn the_system_file_comes_after_the_users_and_includes_beside_itself() {
        let t = tempfile::tempdir().unwrap();
        let (ssh, etc) = (t.path().join(".ssh"), t.path().join("etc-ssh"));
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::create_dir_all(etc.join("ssh_config.d")).unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host web
  Port 2002
",
        )
        .unwrap();
        std::fs::write(
            etc.join("ssh_config.d/site.conf"),
            "Host web db
  User site-user
",
        )
        .unwrap();
        std::fs::write(
            etc.join("ssh_config"),
            "Include ssh_config.d/*.conf
Host *
  Port 22
  HostName sys.example
",
        )
        .unwrap();
        let (user, system) = (ssh.join("config"), etc.join("ssh_config"));
        let c = load(&[&user, &system], &q("web")).unwrap();
        assert_eq!(
            (c.port, c.user.as_deref(), c.host_name.as_deref()),
            (Some(2002), Some("site-user"), Some("sys.example")),
            "the user's Port wins; what only the system file says applies"
        );
        let c = load(&[&user, &system], &q("db")).unwrap();
        assert_eq!((c.port, c.user.as_deref()), (Some(22), Some("site-user")));
        std::fs::write(
            &system,
            "Host *
  CertificateFile ~/.ssh/cert
",
        )
        .unwrap();
        let e = load(&[&user, &system], &q("web")).unwrap_err().to_string();
        assert!(e.contains("CertificateFile") && e.contains("etc-ssh/ssh_config"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("Host a\n Port x\n", &q("a")).unwrap_err(), "line 2: bad Port 'x'");
        assert!(parse("Host \"a\n", &q("a")).unwrap_err().contains("line 1"));
    }

    #[test]
    fn names_a_shell_would_run_are_unsafe_for_a_proxy_command() {
        for bad in [
            "$(id)", "`id`", "a;id", "a|id", "a&id", "a>f", "a<f", "'a'", "\"a\"", "a\\b", "${IFS}", "-oX", "a b",
            "a\tb",
        ] {
            assert!(shell_unsafe_host(bad).is_some(), "{bad}");
        }
        for bad in ["$(id)", "`id`", "a;id", "a|id", "a&id", "a>f", "${IFS}", "$HOME", "-l", "a b", "a\\", "{a}"] {
            assert!(shell_unsafe_user(bad).is_some(), "{bad}");
        }
        for good in ["build-1.internal", "10.0.0.7", "::1", "i-0123456789abcdef0", "host_name%x"] {
            assert_eq!(shell_unsafe_host(good), None, "{good}");
        }
        for good in ["deploy", "machine$", "DOMAIN\\user", "first.last", "user@realm"] {
            assert_eq!(shell_unsafe_user(good), None, "{good}");
        }
        assert_eq!(shell_unsafe_host("a;b").as_deref(), Some("it holds ';'"));
        assert_eq!(shell_unsafe_host("a\tb").as_deref(), Some("it holds U+0009"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"a*c", b"abbbc"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
        assert!(!wildcard(b"abc", b"abcd"));
    }

    #[test]
    fn tokens_expand() {
        let t = Tokens {
            home: Some(Path::new("/home/me")),
            local_user: "me",
            host: "h1",
            original: "alias",
            user: "deploy",
            port: 2222,
        };
        assert_eq!(expand("~/.ssh/id_%r@%h%%", &t), PathBuf::from("/home/me/.ssh/id_deploy@h1%"));
        assert_eq!(expand("%d/k_%u", &t), PathBuf::from("/home/me/k_me"));
        assert_eq!(expand("nc %h %p # %n %x", &t), PathBuf::from("nc h1 2222 # alias %x"));
        assert_eq!(expand_host_name("%h.example", "web"), "web.example");
    }
}
