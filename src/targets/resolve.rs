//! From what the user typed ([`TargetSpec`]s) to the targets to push to.
//!
//! A label or Compose selector expands to every running container that carries the labels,
//! each its own target. A spec that cannot be expanded (no container matches, the engine is unreachable)
//! becomes a [`FailedTarget`], so it is reported as a failed outcome like any other target and
//! the other targets still run. One engine connection is shared by every Docker target.

use crate::ssh::SshOptions;
use crate::targets::SshTarget;
use crate::targets::deadline::{Bounded, DEFAULT_TARGET_DEADLINE};
use crate::targets::docker::connect::Engine;
use crate::targets::docker::{DockerTarget, containers_with_labels};
use crate::targets::{DockerSelector, Identity, Location, RemoteFile, StepFn, Target, TargetError, TargetSpec};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// What the kinds need to reach their targets: one field per kind that has options.
#[derive(Clone, Default)]
pub struct ResolveOptions {
    /// How SSH targets connect.
    pub ssh: SshOptions,
    /// Which Kubernetes cluster `k8s:` targets are in (loaded only when one is named).
    pub k8s: crate::targets::k8s::K8sOptions,
    /// How Docker targets reach their engine (`--insecure-engine`).
    pub docker: crate::targets::docker::connect::DockerOptions,
    /// The overall budget of each target (see [`crate::targets::deadline`]); `None`:
    /// [`DEFAULT_TARGET_DEADLINE`], stretched to leave 2 minutes beyond a longer connect timeout.
    pub deadline: Option<Duration>,
}

impl ResolveOptions {
    /// The budget each target gets: every call on it ends by this much after the first.
    pub fn target_deadline(&self) -> Duration {
        self.deadline.unwrap_or_else(|| {
            let connect = self.ssh.connect_timeout.max(self.k8s.connect_timeout);
            DEFAULT_TARGET_DEADLINE.max(connect + Duration::from_secs(120))
        })
    }
}

/// Expand `specs` into targets, in order; the same container or host named twice is pushed once.
/// Each target is [`Bounded`]: everything done on it ends within [`ResolveOptions::target_deadline`]
/// of the first call.
pub async fn resolve(specs: &[TargetSpec], opts: &ResolveOptions) -> Vec<Box<dyn Target>> {
    let budget = opts.target_deadline();
    expand(specs, opts).await.into_iter().map(|t| Box::new(Bounded::new(t, budget)) as Box<dyn Target>).collect()
}

async fn expand(specs: &[TargetSpec], opts: &ResolveOptions) -> Vec<Box<dyn Target>> {
    let mut engine: Option<Engine> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut seen_ssh: Vec<String> = Vec::new();
    let mut cluster: Option<Result<crate::targets::k8s::Cluster, TargetError>> = None;
    let mut out: Vec<Box<dyn Target>> = Vec::new();
    let mut push_docker = |out: &mut Vec<Box<dyn Target>>, engine: &Engine, name: String| {
        if !seen.contains(&name) {
            seen.push(name.clone());
            out.push(Box::new(DockerTarget::new(engine.clone(), name)));
        }
    };
    for spec in specs {
        match spec {
            TargetSpec::Docker(sel) => {
                let engine = engine.get_or_insert_with(|| Engine::from_env(&opts.docker, &opts.ssh)).clone();
                match sel {
                    DockerSelector::Container(name) => push_docker(&mut out, &engine, name.clone()),
                    DockerSelector::Label { .. } | DockerSelector::Compose { .. } => {
                        match containers_with_labels(&engine, &sel.label_filters()).await {
                            Ok(names) if names.is_empty() => {
                                let hint = match sel {
                                    DockerSelector::Compose { project, .. } => {
                                        format!("docker compose -p {project} ps")
                                    }
                                    _ => format!("docker ps {}", filter_args(sel)),
                                };
                                let what = spec.to_string().trim_start_matches("docker:").to_string();
                                out.push(Box::new(FailedTarget::new(
                                    spec.to_string(),
                                    TargetError::new(format!("no running container has {what}")).with_hint(hint),
                                )));
                            }
                            Ok(names) => names.into_iter().for_each(|n| push_docker(&mut out, &engine, n)),
                            Err(e) => out.push(Box::new(FailedTarget::new(spec.to_string(), e))),
                        }
                    }
                }
            }
            // Connects lazily in `locate`, so an unreachable host fails alone.
            TargetSpec::Ssh(addr) => {
                let label = spec.to_string();
                if !seen_ssh.contains(&label) {
                    seen_ssh.push(label);
                    out.push(Box::new(SshTarget::new(addr.clone(), opts.ssh.clone())));
                }
            }
            TargetSpec::K8s(k) => {
                if cluster.is_none() {
                    cluster = Some(crate::targets::k8s::Cluster::connect(&opts.k8s).await);
                }
                match cluster.as_ref() {
                    Some(Ok(c)) => crate::targets::k8s::expand(c, k, &mut seen_ssh, &mut out).await,
                    Some(Err(e)) => out.push(Box::new(FailedTarget::new(spec.to_string(), e.clone()))),
                    None => {}
                }
            }
        }
    }
    out
}

/// `--filter label=…` arguments of `docker ps` for a selector, for hints.
fn filter_args(sel: &DockerSelector) -> String {
    sel.label_filters().iter().map(|f| format!("--filter label={f}")).collect::<Vec<_>>().join(" ")
}

/// A target that could not be resolved: it fails in `locate` with the reason.
pub struct FailedTarget {
    label: String,
    error: TargetError,
}

impl FailedTarget {
    pub fn new(label: String, error: TargetError) -> FailedTarget {
        FailedTarget { label, error }
    }
}

impl Target for FailedTarget {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn locate<'a>(&'a mut self, _: Option<&'a str>, _: StepFn<'a>) -> BoxFuture<'a, Result<Location, TargetError>> {
        let e = self.error.clone();
        Box::pin(async move { Err(e) })
    }

    fn read<'a>(&'a mut self, _: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
        let e = self.error.clone();
        Box::pin(async move { Err(e) })
    }

    fn write<'a>(&'a mut self, _: &'a Location, _: &'a [u8], _: StepFn<'a>) -> BoxFuture<'a, Result<(), TargetError>> {
        let e = self.error.clone();
        Box::pin(async move { Err(e) })
    }

    fn identity(&self) -> Option<Identity> {
        None
    }

    fn remove<'a>(&'a mut self, _: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
        let e = self.error.clone();
        Box::pin(async move { Err(e) })
    }
}
