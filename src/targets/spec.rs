//! The target syntax, spelled once: [`KINDS`] lists every kind's prefix, its forms and what each
//! means, and its parser. Parsing, `--help`, error messages and the docs (checked by a test) all
//! come from this table. Validation happens here, before anything connects, so a malformed target
//! is a usage error that touches nothing.

use crate::ssh::SshAddress;
use std::fmt;
use std::str::FromStr;

/// One kind of target as the user writes it.
pub struct Kind {
    /// What comes before the colon: `docker`, `ssh`.
    pub prefix: &'static str,
    /// Every form of this kind, with what it selects.
    pub forms: &'static [Form],
    /// Parse what follows `prefix:`; the error is a reason, without the input.
    parse: fn(&str) -> Result<TargetSpec, String>,
}

/// One form of a kind: `docker:label=KEY[=VALUE]` and what it means.
pub struct Form {
    pub syntax: &'static str,
    pub meaning: &'static str,
}

/// Every target kind. A new kind is a module under `targets/` plus one row here (and its variant
/// of [`TargetSpec`], which the compiler then asks `resolve` to handle).
pub const KINDS: &[Kind] = &[
    Kind {
        prefix: "docker",
        forms: &[
            Form { syntax: "docker:NAME|ID", meaning: "a container, running or stopped" },
            Form { syntax: "docker:label=KEY[=VALUE]", meaning: "every running container with the label" },
            Form {
                syntax: "docker:compose=PROJECT[/SERVICE]",
                meaning: "the running containers of a Compose project (one service of it)",
            },
        ],
        parse: parse_docker,
    },
    Kind {
        prefix: "ssh",
        forms: &[
            Form {
                syntax: "ssh:[user@]host[:port]",
                meaning: "an SSH host (an ~/.ssh/config alias works; IPv6 as [::1])",
            },
            Form { syntax: "ssh://[user@]host[:port]", meaning: "the same, as an ssh:// URI" },
        ],
        parse: parse_ssh,
    },
    Kind {
        prefix: "k8s",
        forms: &[
            Form {
                syntax: "k8s:[NS/]pod/NAME[/CONTAINER]",
                meaning: "a Running pod's container (default: its default-container annotation, else the first)",
            },
            Form { syntax: "k8s:[NS/]label=KEY[=VALUE]", meaning: "every Running, ready pod with the label" },
            Form { syntax: "k8s:[NS/]deploy/NAME", meaning: "every Running, ready pod of a Deployment" },
            Form { syntax: "k8s:[NS/]secret/NAME", meaning: "an Opaque Secret (key auth.json) to mount into pods" },
        ],
        parse: crate::targets::k8s::spec::parse,
    },
];

/// Every form, for messages: "docker:NAME|ID, docker:label=KEY[=VALUE] or ssh:[user@]host[:port]".
pub fn forms_list() -> String {
    let all: Vec<&str> = KINDS.iter().flat_map(|k| k.forms.iter().map(|f| f.syntax)).collect();
    match all.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The forms as an indented table, for `--help`.
pub fn forms_help() -> String {
    let width = KINDS.iter().flat_map(|k| k.forms).map(|f| f.syntax.len()).max().unwrap_or(0);
    let rows: Vec<String> =
        KINDS.iter().flat_map(|k| k.forms).map(|f| format!("  {:width$}  {}", f.syntax, f.meaning)).collect();
    format!("Targets:\n{}", rows.join("\n"))
}

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
    K8s(crate::targets::k8s::spec::K8sSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerSelector {
    /// A container name or (prefix of an) ID.
    Container(String),
    /// Every running container with this label (and value, when given).
    Label { key: String, value: Option<String> },
    /// The running containers of a Compose project (and service), by the labels Compose sets
    /// (`com.docker.compose.project`, `com.docker.compose.service`).
    Compose { project: String, service: Option<String> },
}

impl DockerSelector {
    /// The label filters (`KEY[=VALUE]`) that select the containers, for a selector that is not
    /// one container.
    pub fn label_filters(&self) -> Vec<String> {
        match self {
            DockerSelector::Container(_) => Vec::new(),
            DockerSelector::Label { key, value: None } => vec![key.clone()],
            DockerSelector::Label { key, value: Some(v) } => vec![format!("{key}={v}")],
            DockerSelector::Compose { project, service } => {
                let mut f = vec![format!("com.docker.compose.project={project}")];
                f.extend(service.iter().map(|s| format!("com.docker.compose.service={s}")));
                f
            }
        }
    }
}

impl FromStr for TargetSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<TargetSpec, SpecError> {
        let err = |reason: String| SpecError { input: s.to_string(), reason };
        let kind =
            s.split_once(':').and_then(|(prefix, rest)| KINDS.iter().find(|k| k.prefix == prefix).map(|k| (k, rest)));
        match kind {
            Some((k, rest)) => (k.parse)(rest).map_err(err),
            None => Err(err(format!("expected {}", forms_list()))),
        }
    }
}

fn parse_docker(rest: &str) -> Result<TargetSpec, String> {
    if let Some(c) = rest.strip_prefix("compose=") {
        let (project, service) = match c.split_once('/') {
            Some((p, s)) => (p, Some(s)),
            None => (c, None),
        };
        // Compose project names: lowercase letters, digits, '-', '_'; service names as containers.
        let ok = |s: &str| valid_container_ref(s);
        if !ok(project) || service.is_some_and(|s| !ok(s)) {
            return Err(
                "expected docker:compose=PROJECT or docker:compose=PROJECT/SERVICE (letters, digits, '_', '.', '-')"
                    .into(),
            );
        }
        return Ok(TargetSpec::Docker(DockerSelector::Compose {
            project: project.to_string(),
            service: service.map(str::to_string),
        }));
    }
    if let Some(label) = rest.strip_prefix("label=") {
        let (key, value) = match label.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (label, None),
        };
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("expected docker:label=KEY[=VALUE] with a non-empty KEY".into());
        }
        // A value may hold spaces (Docker allows them) but no control character: it is shown in
        // every outcome line and would otherwise fake one of its own.
        if value.as_deref().is_some_and(|v| v.chars().any(char::is_control)) {
            return Err("a docker:label=KEY=VALUE value may not hold control characters".into());
        }
        return Ok(TargetSpec::Docker(DockerSelector::Label { key: key.to_string(), value }));
    }
    if !valid_container_ref(rest) {
        return Err("expected docker:NAME or docker:ID (letters, digits, '_', '.', '-')".into());
    }
    Ok(TargetSpec::Docker(DockerSelector::Container(rest.to_string())))
}

fn parse_ssh(rest: &str) -> Result<TargetSpec, String> {
    SshAddress::parse(rest).map(TargetSpec::Ssh)
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
            TargetSpec::Docker(DockerSelector::Compose { project, service: None }) => {
                write!(f, "docker:compose={project}")
            }
            TargetSpec::Docker(DockerSelector::Compose { project, service: Some(s) }) => {
                write!(f, "docker:compose={project}/{s}")
            }
            TargetSpec::Ssh(a) => write!(f, "ssh:{a}"),
            TargetSpec::K8s(k) => write!(f, "k8s:{k}"),
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
            "docker:compose=shop",
            "docker:compose=shop/web",
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
    fn every_form_in_the_table_is_in_the_docs_and_the_help() {
        let docs = include_str!("../../docs/headless.md");
        for f in KINDS.iter().flat_map(|k| k.forms) {
            assert!(docs.contains(f.syntax), "docs/headless.md does not mention {}", f.syntax);
            assert!(forms_help().contains(f.syntax) && forms_list().contains(f.syntax));
        }
        assert!(forms_list().starts_with("docker:NAME|ID, docker:label=KEY[=VALUE], "), "{}", forms_list());
        assert!(forms_list().contains("ssh:[user@]host[:port], ssh://[user@]host[:port]"), "{}", forms_list());
        assert!(forms_list().ends_with(" or k8s:[NS/]secret/NAME"), "{}", forms_list());
        assert_eq!(ok("ssh://deploy@web:2222"), ok("ssh:deploy@web:2222"));
        let e = "kube:pod".parse::<TargetSpec>().unwrap_err().to_string();
        assert!(e.contains(&forms_list()), "{e}");
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
            "docker:compose=",
            "docker:compose=/web",
            "docker:compose=shop/",
            "docker:compose=shop/a/b",
            "ssh://u@h/path",
        ] {
            assert!(s.parse::<TargetSpec>().is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn labels_with_control_characters_and_doubled_at_signs_are_refused() {
        for s in [
            "ssh:u@@h",
            "docker:label=env=prod\n\u{2713} docker:x  created",
            "docker:label=a=\u{1b}[2J",
            "docker:label=a=b\u{9b}c",
            "docker:label=a\tb=c",
            "k8s:label=a=b\nc",
        ] {
            assert!(s.parse::<TargetSpec>().is_err(), "{s:?} should be rejected");
        }
        assert!("docker:label=note=two words".parse::<TargetSpec>().is_ok());
    }
}
