//! The Kubernetes kind: `k8s:` targets through the Kubernetes API (the `kube` crate; kubectl is
//! never run). [`spec`] parses the forms; [`cluster`] loads the kubeconfig (or the in-cluster
//! config) once per command and turns API failures into one-line reasons; [`pod`] writes into a
//! container through the exec API ([`session`] adapts kube's exec streams to the shell
//! conversation every exec runtime shares); [`secret`] keeps auth.json in an Opaque Secret by
//! server-side apply.
//!
//! No client is built unless a `k8s:` target is named: resolution of other kinds never touches
//! this module, so start-up stays fast.

pub mod cluster;
pub mod pod;
pub mod secret;
pub mod session;
pub mod spec;

pub use cluster::{Cluster, K8sOptions};
pub use pod::PodTarget;
pub use secret::SecretTarget;
pub use spec::{K8sObject, K8sSpec};

use crate::targets::resolve::FailedTarget;
use crate::targets::{Target, TargetError};

/// Expand one `k8s:` spec into targets, pushing each label not yet in `seen`.
pub async fn expand(cluster: &Cluster, spec: &K8sSpec, seen: &mut Vec<String>, out: &mut Vec<Box<dyn Target>>) {
    let ns = spec.namespace.clone().unwrap_or_else(|| cluster.default_namespace().to_string());
    let mut add = |t: Box<dyn Target>, out: &mut Vec<Box<dyn Target>>| {
        if !seen.contains(&t.label()) {
            seen.push(t.label());
            out.push(t);
        }
    };
    let label = format!("k8s:{spec}");
    match &spec.object {
        K8sObject::Pod { name, container } => {
            add(Box::new(PodTarget::new(cluster.clone(), ns, name.clone(), container.clone())), out)
        }
        K8sObject::Secret(name) => add(Box::new(SecretTarget::new(cluster.clone(), ns, name.clone())), out),
        K8sObject::Label { key, value } => {
            let selector = K8sSpec::label_selector(key, value.as_deref());
            match cluster.ready_pods(&ns, &selector).await {
                Ok(pods) if pods.is_empty() => out.push(failed(
                    label,
                    TargetError::new(format!("no Running, ready pod in namespace {ns} has label {selector}"))
                        .with_hint(format!("kubectl get pods -n {ns} -l {selector}")),
                )),
                Ok(pods) => pods
                    .into_iter()
                    .for_each(|p| add(Box::new(PodTarget::new(cluster.clone(), ns.clone(), p, None)), out)),
                Err(e) => out.push(failed(label, e)),
            }
        }
        K8sObject::Deploy(name) => match cluster.deployment_pods(&ns, name).await {
            Ok(pods) if pods.is_empty() => out.push(failed(
                label,
                TargetError::new(format!("deployment {ns}/{name} has no Running, ready pod"))
                    .with_hint(format!("kubectl rollout status -n {ns} deploy/{name}")),
            )),
            Ok(pods) => {
                pods.into_iter().for_each(|p| add(Box::new(PodTarget::new(cluster.clone(), ns.clone(), p, None)), out))
            }
            Err(e) => out.push(failed(label, e)),
        },
    }
}

fn failed(label: String, e: TargetError) -> Box<dyn Target> {
    Box::new(FailedTarget::new(label, e))
}
