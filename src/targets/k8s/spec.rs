//! The `k8s:` forms (one row of [`crate::targets::spec::KINDS`]): parsing and printing of
//! `k8s:[NS/]pod/NAME[/CONTAINER]`, `k8s:[NS/]label=KEY[=VALUE]`, `k8s:[NS/]deploy/NAME` and
//! `k8s:[NS/]secret/NAME`. kubectl's resource words come first, so nothing is ambiguous: a first
//! segment that is `pod`, `deploy`, `secret` or starts with `label=` is the resource, otherwise it
//! is the namespace. Names are checked as Kubernetes checks them, before anything connects.

use std::fmt;

/// A `k8s:` target as named: the namespace (`None`: the context's) and what in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sSpec {
    pub namespace: Option<String>,
    pub object: K8sObject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum K8sObject {
    /// One pod; `container` `None`: the default container.
    Pod { name: String, container: Option<String> },
    /// Every Running, ready pod with the label (and value, when given).
    Label { key: String, value: Option<String> },
    /// Every Running, ready pod matched by the Deployment's selector.
    Deploy(String),
    /// An Opaque Secret holding auth.json.
    Secret(String),
}

/// Parse what follows `k8s:`; the error is a reason, without the input.
pub fn parse(rest: &str) -> Result<crate::targets::TargetSpec, String> {
    parse_k8s(rest).map(crate::targets::TargetSpec::K8s)
}

fn parse_k8s(rest: &str) -> Result<K8sSpec, String> {
    const EXPECTED: &str = "expected k8s:[NS/]pod/NAME[/CONTAINER], k8s:[NS/]label=KEY[=VALUE], k8s:[NS/]deploy/NAME or k8s:[NS/]secret/NAME";
    let resource_first =
        |s: &str| s.starts_with("label=") || ["pod/", "deploy/", "secret/"].iter().any(|w| s.starts_with(w));
    let (namespace, what) = if resource_first(rest) {
        (None, rest)
    } else {
        match rest.split_once('/') {
            Some((ns, what)) if resource_first(what) => {
                if !dns_label(ns) {
                    return Err(format!("namespace '{ns}' is not a valid name (lowercase letters, digits, '-')"));
                }
                (Some(ns.to_string()), what)
            }
            _ => return Err(EXPECTED.into()),
        }
    };
    let object = if let Some(label) = what.strip_prefix("label=") {
        let (key, value) = match label.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (label, None),
        };
        if !label_key(key) {
            return Err(format!("'{key}' is not a valid label key (expected [PREFIX/]NAME)"));
        }
        if let Some(v) = value.filter(|v| !label_value(v)) {
            return Err(format!("'{v}' is not a valid label value"));
        }
        K8sObject::Label { key: key.to_string(), value: value.map(str::to_string) }
    } else {
        let parts: Vec<&str> = what.split('/').collect();
        let name_ok = |n: &str| dns_subdomain(n).then(|| n.to_string()).ok_or(format!("'{n}' is not a valid name"));
        match parts.as_slice() {
            ["pod", name] => K8sObject::Pod { name: name_ok(name)?, container: None },
            ["pod", name, c] if dns_label(c) => K8sObject::Pod { name: name_ok(name)?, container: Some(c.to_string()) },
            ["pod", _, c] => return Err(format!("'{c}' is not a valid container name")),
            ["deploy", name] => K8sObject::Deploy(name_ok(name)?),
            ["secret", name] => K8sObject::Secret(name_ok(name)?),
            _ => return Err(EXPECTED.into()),
        }
    };
    Ok(K8sSpec { namespace, object })
}

/// RFC 1123 label: namespaces, container names.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: pod, Deployment and Secret names.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// `[PREFIX/]NAME`: PREFIX a subdomain, NAME up to 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(dns_subdomain) && !name.is_empty() && label_value(name)
}

fn label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_none_or(|c| c.is_ascii_alphanumeric())
        && b.last().is_none_or(|c| c.is_ascii_alphanumeric())
}

impl K8sSpec {
    /// The selector of a label form, as the API takes it (`app=web`, or `app` for "has the key").
    pub fn label_selector(key: &str, value: Option<&str>) -> String {
        match value {
            Some(v) => format!("{key}={v}"),
            None => key.to_string(),
        }
    }
}

impl fmt::Display for K8sSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        match &self.object {
            K8sObject::Pod { name, container: None } => write!(f, "pod/{name}"),
            K8sObject::Pod { name, container: Some(c) } => write!(f, "pod/{name}/{c}"),
            K8sObject::Label { key, value } => write!(f, "label={}", K8sSpec::label_selector(key, value.as_deref())),
            K8sObject::Deploy(name) => write!(f, "deploy/{name}"),
            K8sObject::Secret(name) => write!(f, "secret/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::TargetSpec;

    #[test]
    fn k8s_forms_parse_and_print_back() {
        for s in [
            "k8s:pod/web",
            "k8s:pod/web/side",
            "k8s:agents/pod/web-0",
            "k8s:agents/pod/web-0.x/main",
            "k8s:label=app",
            "k8s:label=app=llmx",
            "k8s:label=app.kubernetes.io/name=agent",
            "k8s:agents/label=app.kubernetes.io/name=agent",
            "k8s:deploy/workers",
            "k8s:agents/deploy/workers",
            "k8s:secret/llmx-auth",
            "k8s:agents/secret/llmx-auth",
        ] {
            let spec: TargetSpec = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            parse_k8s("agents/pod/web/side").unwrap(),
            K8sSpec {
                namespace: Some("agents".into()),
                object: K8sObject::Pod { name: "web".into(), container: Some("side".into()) }
            }
        );
        // The resource word comes first: `pod/pod/x` is pod "pod", container "x".
        assert_eq!(
            parse_k8s("pod/pod/x").unwrap().object,
            K8sObject::Pod { name: "pod".into(), container: Some("x".into()) }
        );
    }

    #[test]
    fn malformed_k8s_targets_are_errors() {
        for s in [
            "k8s:",
            "k8s:web",
            "k8s:pod/",
            "k8s:pod/Web",
            "k8s:pod/a/b/c",
            "k8s:pod/a/B",
            "k8s:NS/pod/a",
            "k8s:-ns/pod/a",
            "k8s:a/b/pod/x",
            "k8s:label=",
            "k8s:label==v",
            "k8s:label=a b",
            "k8s:label=k=v=w",
            "k8s:deploy/",
            "k8s:deploy/a/b",
            "k8s:secret/a_b",
            "k8s:svc/web",
            "k8s:ns/",
        ] {
            assert!(s.parse::<TargetSpec>().is_err(), "{s} should be rejected");
        }
    }
}
