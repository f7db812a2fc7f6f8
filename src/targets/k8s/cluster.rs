//! One connection to a Kubernetes API server per command: the kubeconfig (`--kubeconfig`, else
//! `KUBECONFIG`, else `~/.kube/config`, each with `--context` or the current context) or, when
//! there is none, the in-cluster service account; exec-plugin and impersonation (`as:`) work as
//! kube supports them. Owns the translation of API failures into one-line reasons: not found
//! (which of namespace or object), RBAC 403 (which verb on which resource), 401, TLS, and an API
//! server that does not answer within `--connect-timeout`.

use crate::targets::{ErrorKind, TargetError};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the cluster; plain data, so building [`crate::targets::resolve::ResolveOptions`]
/// costs nothing when no `k8s:` target is named.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// `--kubeconfig`: this file only.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: instead of the kubeconfig's current context.
    pub context: Option<String>,
    /// How long the API server may take to accept a connection and answer one request.
    pub connect_timeout: Duration,
}

impl Default for K8sOptions {
    fn default() -> K8sOptions {
        K8sOptions { kubeconfig: None, context: None, connect_timeout: Duration::from_secs(15) }
    }
}

/// A client for one cluster, with its default namespace; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) client: kube::Client,
    /// The API server's URL, for messages and identities.
    pub(crate) server: String,
    timeout: Duration,
}

/// What a failed request was doing: `get` `pods` `x` in `ns`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
}

impl Cluster {
    /// Load the configuration and build the client. Nothing is sent to the server yet.
    pub async fn connect(opts: &K8sOptions) -> Result<Cluster, TargetError> {
        let kopts = KubeConfigOptions { context: opts.context.clone(), ..Default::default() };
        let hint = "name one with --kubeconfig PATH (and --context NAME), or set KUBECONFIG";
        let config = match &opts.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    TargetError::new(format!("reading kubeconfig {}: {}", path.display(), chain(&e))).with_hint(hint)
                })?;
                Config::from_custom_kubeconfig(kc, &kopts).await.map_err(|e| {
                    TargetError::new(format!("kubeconfig {}: {}", path.display(), chain(&e))).with_hint(hint)
                })?
            }
            None => match Config::from_kubeconfig(&kopts).await {
                Ok(c) => c,
                // No usable kubeconfig: a pod's own service account, as kubectl does.
                Err(e) if opts.context.is_none() => Config::incluster().map_err(|_| {
                    TargetError::new(format!("no Kubernetes configuration: {} (and not inside a cluster)", chain(&e)))
                        .with_hint(hint)
                })?,
                Err(e) => return Err(TargetError::new(format!("kubeconfig: {}", chain(&e))).with_hint(hint)),
            },
        };
        let mut config = config;
        config.connect_timeout = Some(opts.connect_timeout);
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = kube::Client::try_from(config)
            .map_err(|e| TargetError::new(format!("Kubernetes client for {server}: {}", chain(&e))))?;
        Ok(Cluster { client, server, timeout: opts.connect_timeout })
    }

    pub fn default_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    /// Run one request within the timeout, its failure described for `req`.
    pub async fn call<T>(
        &self,
        req: Request<'_>,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(CallError::Other(self.silent())),
            Ok(Ok(t)) => Ok(t),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => Err(CallError::NotFound),
            Ok(Err(e)) => Err(CallError::Other(self.describe(&e, req))),
        }
    }

    /// A failure other than "not found" as one line.
    pub fn describe(&self, e: &kube::Error, req: Request<'_>) -> TargetError {
        let Request { verb, resource, namespace } = req;
        match e {
            kube::Error::Api(s) if s.code == 403 => self.forbidden(req, &s.message),
            kube::Error::Api(s) if s.code == 401 => {
                TargetError::new(format!("the API server {} refused the credentials (401 Unauthorized)", self.server))
                    .with_hint("check the user of the kubeconfig context (`kubectl auth whoami`)")
            }
            kube::Error::Api(s) => TargetError::new(format!(
                "{verb} {resource} in namespace {namespace}: {} ({} {})",
                s.message, s.code, s.reason
            )),
            kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(code))
                if code.as_u16() == 403 =>
            {
                self.forbidden(req, "")
            }
            other => {
                // hyper's and tower's wrappers say nothing the reader needs.
                let why = chain(other).replace("ServiceError: ", "").replace("client error (Connect): ", "");
                let lower = why.to_ascii_lowercase();
                if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
                    TargetError::new(format!("TLS failure talking to the API server {}: {why}", self.server))
                        .with_hint("check certificate-authority(-data) and the server address in the kubeconfig")
                } else if lower.contains("timed out") || lower.contains("elapsed") {
                    self.silent()
                } else if lower.contains("connect") || lower.contains("dns") {
                    TargetError::new(format!("cannot reach the API server {}: {why}", self.server))
                        .with_hint("is the cluster up? `kubectl cluster-info`")
                        .with_kind(ErrorKind::Unreachable)
                } else {
                    TargetError::new(format!("{verb} {resource} in namespace {namespace}: {why}"))
                }
            }
        }
    }

    fn silent(&self) -> TargetError {
        TargetError::new(format!(
            "the API server {} did not answer within {} s (--connect-timeout)",
            self.server,
            self.timeout.as_secs()
        ))
        .with_hint("is the cluster up? `kubectl cluster-info`")
        .with_kind(ErrorKind::Unreachable)
    }

    fn forbidden(&self, req: Request<'_>, server_says: &str) -> TargetError {
        let Request { verb, resource, namespace } = req;
        let who = server_says
            .split_once("User \"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(u, _)| format!(" for {u}"))
            .unwrap_or_default();
        TargetError::new(format!("RBAC: forbidden to {verb} {resource} in namespace {namespace}{who}"))
            .with_hint(format!("kubectl auth can-i {verb} {resource} -n {namespace}"))
    }

    /// Why `what` (e.g. `pod web`) was not found: its namespace is missing, or it is.
    pub async fn not_found(&self, namespace: &str, what: &str) -> TargetError {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let req = Request { verb: "get", resource: "namespaces", namespace };
        match self.call(req, api.get(namespace)).await {
            Err(CallError::NotFound) => {
                TargetError::new(format!("namespace {namespace} not found")).with_hint("kubectl get namespaces")
            }
            _ => TargetError::new(format!("{what} not found in namespace {namespace}"))
                .with_hint(format!("kubectl get {} -n {namespace}", what.split(' ').next().unwrap_or(what))),
        }
    }

    /// Names of the Running pods matching `selector` whose containers are all ready (pods being
    /// deleted excluded), sorted.
    pub async fn ready_pods(&self, namespace: &str, selector: &str) -> Result<Vec<String>, TargetError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let req = Request { verb: "list", resource: "pods", namespace };
        let list = match self.call(req, api.list(&ListParams::default().labels(selector))).await {
            Ok(l) => l,
            Err(CallError::NotFound) => return Err(self.not_found(namespace, "pods").await),
            Err(CallError::Other(e)) => return Err(e),
        };
        if list.items.is_empty() {
            // A missing namespace lists as empty: say which it is.
            let e = self.not_found(namespace, "pods").await;
            if e.message.starts_with("namespace ") {
                return Err(e);
            }
        }
        let mut names: Vec<String> =
            list.items.iter().filter(|p| pod_ready(p)).filter_map(|p| p.metadata.name.clone()).collect();
        names.sort();
        Ok(names)
    }

    /// The ready pods a Deployment's selector matches.
    pub async fn deployment_pods(&self, namespace: &str, name: &str) -> Result<Vec<String>, TargetError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let req = Request { verb: "get", resource: "deployments.apps", namespace };
        let d = match self.call(req, api.get(name)).await {
            Ok(d) => d,
            Err(CallError::NotFound) => return Err(self.not_found(namespace, &format!("deployment {name}")).await),
            Err(CallError::Other(e)) => return Err(e),
        };
        let selector = d.spec.map(|s| selector_string(&s.selector)).unwrap_or_default();
        if selector.is_empty() {
            return Err(TargetError::new(format!("deployment {namespace}/{name} has no pod selector")));
        }
        self.ready_pods(namespace, &selector).await
    }
}

/// A request's failure: "not found" is for the caller to word.
pub enum CallError {
    NotFound,
    Other(TargetError),
}

/// Running, not being deleted, every container ready.
pub fn pod_ready(p: &Pod) -> bool {
    let status = p.status.as_ref();
    p.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
}

/// A LabelSelector in the API's string syntax.
fn selector_string(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// An error and its sources, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        next = s.source();
    }
    out.replace('\n', " ")
}
