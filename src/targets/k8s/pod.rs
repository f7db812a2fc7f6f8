//! A container of a pod, written through the exec API as the container's own user: one exec runs
//! the shell conversation ([`super::session`]) that reports the user and the credential home
//! (`--remote-home`, else the container's `LLMX_HOME`, else `$HOME/.llmx`), reads the current
//! auth.json, and on `write` creates the directory 0700, writes an exclusive 0600 temp file with
//! exactly the announced bytes, moves it over auth.json and reads it back (SHA-256, owner and mode
//! compared here). A container without a shell cannot be written this way: the error names the
//! Secret form, which needs no shell.

use super::cluster::{CallError, Cluster, Request, pod_ready};
use super::session::{self, OpenError, Session};
use crate::targets::conversation::WriteError;
use crate::targets::docker::{REMOVE_SCRIPT, clean_home, dir_link_refused, symlink_refused, unreadable_refused};
use crate::targets::{FileEntry, Identity, Location, RemoteFile, StepFn, Target, TargetError};
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use sha2::{Digest, Sha256};

/// The annotation kubectl reads for the default container.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// What `locate` learnt.
struct Resolved {
    container: String,
    uid: u32,
    gid: u32,
}

/// One container of one pod.
pub struct PodTarget {
    cluster: Cluster,
    namespace: String,
    pod: String,
    /// As named; `None`: the default container.
    container: Option<String>,
    resolved: Option<Resolved>,
    /// Which pod and container `locate` found (with the pod's UID: a pod recreated under the same
    /// name, as a StatefulSet does, is another place), known before the exec that may still fail.
    seen: Option<Identity>,
    session: Option<Session>,
    /// What the last write did with `--store file` (see [`Target::file_store_set`]).
    file_store_set: Option<bool>,
    prefetched: Option<Result<Option<FileEntry>, TargetError>>,
}

impl PodTarget {
    pub fn new(cluster: Cluster, namespace: String, pod: String, container: Option<String>) -> PodTarget {
        PodTarget {
            cluster,
            namespace,
            pod,
            container,
            resolved: None,
            seen: None,
            session: None,
            prefetched: None,
            file_store_set: None,
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.cluster.client.clone(), &self.namespace)
    }

    fn secret_hint(&self) -> String {
        format!(
            "a container without a shell gets its credential from a Secret: `llmx auth push k8s:{}/secret/NAME`, \
             mounted into the pod (docs/headless.md, Kubernetes)",
            self.namespace
        )
    }

    async fn do_locate(&mut self, remote_home: Option<&str>, step: StepFn<'_>) -> Result<Location, TargetError> {
        step("connecting");
        let ns = self.namespace.clone();
        let req = Request { verb: "get", resource: "pods", namespace: &ns };
        let pod = match self.cluster.call(req, self.api().get(&self.pod)).await {
            Ok(p) => p,
            Err(CallError::NotFound) => return Err(self.cluster.not_found(&ns, &format!("pod {}", self.pod)).await),
            Err(CallError::Other(e)) => return Err(e),
        };
        // Which pod this is, even if it cannot be used yet (Pending, or its exec fails).
        let container = self.pick_container(&pod)?;
        self.seen = Some(Identity::K8s {
            server: self.cluster.server.clone(),
            namespace: self.namespace.clone(),
            object: format!("pod/{}/{container}", self.pod),
            uid: pod.metadata.uid.clone(),
        });
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
        if phase != "Running" || pod.metadata.deletion_timestamp.is_some() {
            let state = if pod.metadata.deletion_timestamp.is_some() { "Terminating".to_string() } else { phase };
            return Err(TargetError::new(format!("pod {ns}/{} is {state}, not Running", self.pod))
                .with_hint(format!("kubectl describe pod -n {ns} {}", self.pod)));
        }
        let running = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == container))
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        if !running {
            return Err(TargetError::new(format!(
                "container {container} of pod {ns}/{} is not running{}",
                self.pod,
                if pod_ready(&pod) { "" } else { " (pod not ready)" }
            ))
            .with_hint(format!("kubectl describe pod -n {ns} {}", self.pod)));
        }
        step("reading through exec");
        let (session, h) = match session::open(&self.api(), &self.pod, &container, remote_home).await {
            Ok(s) => s,
            Err(OpenError::Exec(e)) => {
                let req = Request { verb: "create", resource: "pods/exec", namespace: &ns };
                return Err(self.cluster.describe(&e, req));
            }
            Err(OpenError::NoShell) => {
                return Err(TargetError::new(format!(
                    "container {container} of pod {ns}/{} has no shell (/bin/sh): llmx writes into pods through exec",
                    self.pod
                ))
                .with_hint(self.secret_hint()));
            }
            Err(OpenError::Script(why)) => {
                return Err(TargetError::new(format!("exec in {container}: {}", why.trim_end_matches("; "))));
            }
        };
        let home = clean_home(&h.home, "the credential home")?;
        let auth = format!("{}/{}", home.trim_end_matches('/'), crate::home::AUTH_FILE);
        self.prefetched = Some(match (h.dir_link, h.symlink, h.unreadable) {
            (true, _, _) => Err(dir_link_refused(&home)),
            (_, true, _) => Err(symlink_refused(&auth)),
            (_, _, true) => Err(unreadable_refused(&auth)),
            _ => Ok(h.current),
        });
        self.session = Some(session);
        self.resolved = Some(Resolved { container, uid: h.uid, gid: h.gid });
        Ok(Location { home, owner: Some((h.uid, h.gid)), store: h.store.clone(), file_store: false })
    }

    /// The named container, else the default-container annotation, else the first.
    fn pick_container(&self, pod: &Pod) -> Result<String, TargetError> {
        let names: Vec<&str> = pod.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.as_str())).collect();
        let annotated = pod.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CONTAINER)).map(String::as_str);
        let want = self.container.as_deref().or(annotated).or(names.first().copied());
        match want {
            Some(c) if names.contains(&c) => Ok(c.to_string()),
            Some(c) => Err(TargetError::new(format!(
                "pod {}/{} has no container {c} (it has {})",
                self.namespace,
                self.pod,
                names.join(", ")
            ))),
            None => Err(TargetError::new(format!("pod {}/{} has no containers", self.namespace, self.pod))),
        }
    }

    fn resolved(&self) -> Result<&Resolved, TargetError> {
        self.resolved.as_ref().ok_or_else(|| TargetError::new("internal error: pod used before it was located"))
    }

    /// A fresh conversation (a second read or write after the first one was used).
    async fn reopen(&mut self, loc: &Location) -> Result<(Session, Option<FileEntry>), TargetError> {
        let container = self.resolved()?.container.clone();
        match session::open(&self.api(), &self.pod, &container, Some(&loc.home)).await {
            Ok((s, h)) if h.dir_link => {
                drop(s);
                Err(dir_link_refused(&loc.home))
            }
            Ok((_, h)) if h.symlink => Err(symlink_refused(&loc.auth_path())),
            Ok((_, h)) if h.unreadable => Err(unreadable_refused(&loc.auth_path())),
            Ok((s, h)) => Ok((s, h.current)),
            Err(OpenError::Exec(e)) => Err(self
                .cluster
                .describe(&e, Request { verb: "create", resource: "pods/exec", namespace: &self.namespace })),
            Err(OpenError::NoShell) => Err(TargetError::new("the container's shell no longer runs")),
            Err(OpenError::Script(why)) => Err(TargetError::new(format!("exec in {container}: {why}"))),
        }
    }

    async fn do_read(&mut self, loc: &Location) -> Result<Option<RemoteFile>, TargetError> {
        let f = match self.prefetched.take() {
            Some(f) => f?,
            None => {
                let (s, f) = self.reopen(loc).await?;
                self.session = Some(s);
                f
            }
        };
        Ok(f.map(|f| RemoteFile { bytes: f.bytes, uid: Some(f.uid), gid: Some(f.gid), mode: Some(f.mode) }))
    }

    async fn do_write(&mut self, loc: &Location, bytes: &[u8], step: StepFn<'_>) -> Result<(), TargetError> {
        let session = match self.session.take() {
            Some(s) => s,
            None => self.reopen(loc).await?.0,
        };
        step("writing through exec");
        let written = session.write(bytes, loc.file_store).await.map_err(|e| match e {
            WriteError::Refused(e) | WriteError::Failed(e) => e,
        })?;
        self.file_store_set = written.file_store;
        let back = written.file;
        let r = self.resolved()?;
        let path = loc.auth_path();
        if Sha256::digest(&back.bytes) != Sha256::digest(bytes) {
            return Err(TargetError::new(format!("{path}: content read back differs from what was written")));
        }
        if back.mode != 0o600 || (back.uid, back.gid) != (r.uid, r.gid) {
            return Err(TargetError::new(format!(
                "{path}: owner {}:{} mode {:04o} after the write, expected {}:{} 0600",
                back.uid, back.gid, back.mode, r.uid, r.gid
            )));
        }
        Ok(())
    }

    async fn do_remove(&mut self, loc: &Location) -> Result<bool, TargetError> {
        // The conversation of `locate` ends (writing nothing) when its exec closes.
        self.session = None;
        let container = self.resolved()?.container.clone();
        let path = loc.auth_path();
        let cmd = vec!["/bin/sh".into(), "-c".into(), REMOVE_SCRIPT.into(), "sh".into(), path.clone()];
        let api = self.api();
        let req = Request { verb: "create", resource: "pods/exec", namespace: &self.namespace };
        let (code, output) =
            session::run(&api, &self.pod, &container, cmd).await.map_err(|e| self.cluster.describe(&e, req))?;
        match code {
            Some(0) => Ok(true),
            Some(5) => Ok(false),
            Some(4) => Err(symlink_refused(&path)),
            Some(c) => Err(TargetError::new(format!("removing {path}: exit status {c}: {}", output.trim()))),
            None => Err(TargetError::new(format!("removing {path}: the exec ended without an exit status"))),
        }
    }
}

impl Target for PodTarget {
    fn file_store_set(&self) -> Option<bool> {
        self.file_store_set
    }

    fn label(&self) -> String {
        match &self.container {
            Some(c) => format!("k8s:{}/pod/{}/{c}", self.namespace, self.pod),
            None => format!("k8s:{}/pod/{}", self.namespace, self.pod),
        }
    }

    fn locate<'a>(
        &'a mut self,
        remote_home: Option<&'a str>,
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<Location, TargetError>> {
        Box::pin(self.do_locate(remote_home, step))
    }

    fn read<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
        Box::pin(self.do_read(loc))
    }

    fn write<'a>(
        &'a mut self,
        loc: &'a Location,
        bytes: &'a [u8],
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.do_write(loc, bytes, step))
    }

    fn identity(&self) -> Option<Identity> {
        self.seen.clone()
    }

    fn remove<'a>(&'a mut self, loc: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
        Box::pin(self.do_remove(loc))
    }
}
