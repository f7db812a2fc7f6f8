//! Parsing of target specs: `docker:NAME|ID`, `docker:label=KEY[=VALUE]` and
//! `ssh:[user@]host[:port]` (IPv6 as `[::1]`). Validation happens here, before anything connects,
//! so a malformed target is a usage error that touches nothing.

use crate::ssh::SshAddress;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target '{input}': {reason}")]
pub struct SpecError {
    pub input: String,
    pub reason: String,
}

/// What the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Docker(DockerSelector),
    Ssh(SshAddress),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerSelector {
    /// A container name or (prefix of an) ID.
    Container(String),
    /// Every running container with this label (and value, when given).
    Label { key: String, value: Option<String> },
}

impl FromStr for TargetSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<TargetSpec, SpecError> {
        let err = |reason: &str| SpecError { input: s.to_string(), reason: reason.to_string() };
        if let Some(rest) = s.strip_prefix("docker:") {
            if let Some(label) = rest.strip_prefix("label=") {
                let (key, value) = match label.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (label, None),
                };
                if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(err("expected docker:label=KEY[=VALUE] with a non-empty KEY"));
                }
                return Ok(TargetSpec::Docker(DockerSelector::Label { key: key.to_string(), value }));
            }
            if !valid_container_ref(rest) {
                return Err(err("expected docker:NAME or docker:ID (letters, digits, '_', '.', '-')"));
            }
            return Ok(TargetSpec::Docker(DockerSelector::Container(rest.to_string())));
        }
        if let Some(rest) = s.strip_prefix("ssh:") {
            return SshAddress::parse(rest).map(TargetSpec::Ssh).map_err(|reason| err(&reason));
        }
        Err(err("expected docker:NAME, docker:label=KEY[=VALUE] or ssh:[user@]host[:port]"))
    }
}

fn valid_container_ref(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Docker(DockerSelector::Container(c)) => write!(f, "docker:{c}"),
            TargetSpec::Docker(DockerSelector::Label { key, value: None }) => write!(f, "docker:label={key}"),
            TargetSpec::Docker(DockerSelector::Label { key, value: Some(v) }) => write!(f, "docker:label={key}={v}"),
            TargetSpec::Ssh(a) => write!(f, "ssh:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> TargetSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_prints_back() {
        for s in [
            "docker:web",
            "docker:3f2a9c",
            "docker:label=llmx",
            "docker:label=env=prod",
            "ssh:host",
            "ssh:u@host",
            "ssh:u@host:2222",
            "ssh:[::1]",
            "ssh:u@[::1]:22",
            "ssh:10.0.0.2:22",
        ] {
            assert_eq!(ok(s).to_string(), s);
        }
        assert_eq!(
            ok("ssh:deploy@[fe80::1]:2200"),
            TargetSpec::Ssh(SshAddress { user: Some("deploy".into()), host: "fe80::1".into(), port: Some(2200) })
        );
    }

    #[test]
    fn malformed_targets_are_errors() {
        for s in [
            "",
            "web",
            "docker:",
            "docker:-x",
            "docker:a b",
            "docker:label=",
            "docker:label==v",
            "ssh:",
            "ssh:@h",
            "ssh:u@",
            "ssh:h:0",
            "ssh:h:99999",
            "ssh:h:x",
            "ssh:::1",
            "ssh:[::1",
            "ssh:[nothost]",
            "ssh:-oProxyCommand=x",
            "ssh:h/x",
            "ssh:u@h@",
            "kube:pod",
            "ssh:[::1]x",
        ] {
            assert!(s.parse::<TargetSpec>().is_err(), "{s} should be rejected");
        }
    }
}
