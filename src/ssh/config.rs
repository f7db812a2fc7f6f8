//! The subset of `ssh_config(5)` that decides where and as whom we connect: `Host` sections with
//! patterns (`*`, `?`, `!negation`), `HostName` (`%h`), `User`, `Port`, `IdentityFile` (`~`, `%d`,
//! `%h`, `%r`, `%u`, `%%`), `IdentitiesOnly` and `HashKnownHosts`. As in OpenSSH the first value
//! obtained for a keyword wins, except `IdentityFile`, which accumulates.
//!
//! Not supported, on purpose for now: `Match` blocks (their settings are ignored, except
//! `Match all`), `Include`, `ProxyCommand`/`ProxyJump` (a host that needs them fails to connect
//! with a clear error rather than being reached some other way).

use crate::ssh::SshError;
use std::path::{Path, PathBuf};

/// What the config says about one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Raw values, tokens not yet expanded (see [`expand_identity`]).
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub hash_known_hosts: Option<bool>,
}

/// Read `path` (missing: empty) and look up `alias`.
pub fn load(path: &Path, alias: &str) -> Result<HostConfig, SshError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, alias).map_err(|reason| SshError::Config { path: path.to_path_buf(), reason }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostConfig::default()),
        Err(e) => Err(SshError::Config { path: path.to_path_buf(), reason: e.to_string() }),
    }
}

/// Look up `alias` in the text of a config file.
pub fn parse(text: &str, alias: &str) -> Result<HostConfig, String> {
    let mut out = HostConfig::default();
    let mut active = true; // settings before the first Host line apply to every host
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = split_keyword(line);
        let args = split_args(rest).map_err(|e| format!("line {}: {e}", n + 1))?;
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "host" => {
                active = host_matches(&args, alias);
                continue;
            }
            "match" => {
                active = args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                continue;
            }
            _ => {}
        }
        if !active {
            continue;
        }
        let first = || args.first().cloned().ok_or_else(|| format!("line {}: {key} needs a value", n + 1));
        match key.as_str() {
            "hostname" if out.host_name.is_none() => out.host_name = Some(first()?),
            "user" if out.user.is_none() => out.user = Some(first()?),
            "port" if out.port.is_none() => {
                let v = first()?;
                out.port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("line {}: bad Port '{v}'", n + 1))?,
                );
            }
            "identityfile" => out.identity_files.push(first()?),
            "identitiesonly" if out.identities_only.is_none() => {
                out.identities_only = Some(first()?.eq_ignore_ascii_case("yes"))
            }
            "hashknownhosts" if out.hash_known_hosts.is_none() => {
                out.hash_known_hosts = Some(first()?.eq_ignore_ascii_case("yes"))
            }
            _ => {}
        }
    }
    Ok(out)
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

/// Expand `~`, `%d` (local home), `%u` (local user), `%h` (remote host name), `%r` (remote user)
/// and `%%` in an IdentityFile value.
pub fn expand_identity(raw: &str, home: &Path, local_user: &str, host: &str, remote_user: &str) -> PathBuf {
    let home_s = home.to_string_lossy();
    let mut out = String::new();
    let mut rest = raw;
    if let Some(r) = rest.strip_prefix("~/") {
        out.push_str(&home_s);
        out.push('/');
        rest = r;
    } else if rest == "~" {
        return home.to_path_buf();
    }
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home_s),
            Some('u') => out.push_str(local_user),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(remote_user),
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

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = parse(CONF, "web").unwrap();
        assert_eq!(c.host_name.as_deref(), Some("10.0.0.%h"));
        assert_eq!(c.user.as_deref(), Some("deploy"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(c.identity_files, vec!["~/.ssh/web_key", "%d/.ssh/id_%r"]);
        assert_eq!(c.identities_only, Some(true));
    }

    #[test]
    fn patterns_negation_and_quotes() {
        assert_eq!(parse(CONF, "prod-app").unwrap().user.as_deref(), Some("deploy"));
        assert_eq!(parse(CONF, "PROD-APP").unwrap().user.as_deref(), Some("deploy"));
        assert_eq!(parse(CONF, "prod-db").unwrap().user.as_deref(), Some("fallback"));
        assert_eq!(parse(CONF, "quoted alias").unwrap().host_name.as_deref(), Some("q.example"));
        let other = parse(CONF, "elsewhere").unwrap();
        assert_eq!(other.host_name, None);
        assert_eq!(other.port, None);
        assert_eq!(other.user.as_deref(), Some("fallback"), "Match blocks are not applied");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("Host a\n Port x\n", "a").unwrap_err(), "line 2: bad Port 'x'");
        assert!(parse("Host \"a\n", "a").unwrap_err().contains("line 1"));
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
    fn identity_tokens_expand() {
        let p = expand_identity("~/.ssh/id_%r@%h%%", Path::new("/home/me"), "me", "h1", "deploy");
        assert_eq!(p, PathBuf::from("/home/me/.ssh/id_deploy@h1%"));
        let p = expand_identity("%d/k_%u", Path::new("/home/me"), "me", "h", "r");
        assert_eq!(p, PathBuf::from("/home/me/k_me"));
    }
}
