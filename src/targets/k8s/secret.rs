//! An Opaque Secret holding auth.json under the key `auth.json`, for pods that mount it (and for
//! containers without a shell). Written by server-side apply with field manager `llmx` and the
//! label `app.kubernetes.io/managed-by=llmx`: llmx owns that one key and the label, other keys of
//! the Secret are left alone, and a key another manager owns is a conflict, reported, never
//! forced. The push engine compares bytes first, so an equal Secret is `unchanged` and not
//! applied. After the apply the returned object's bytes are compared (SHA-256) with what was sent.
//!
//! [`SecretTarget::compare_and_swap`] makes every write conditional on the Secret still being the
//! one `locate` (or the previous write) saw: the apply carries its `resourceVersion`, the API's
//! compare-and-swap, so a Secret changed by someone else in between is refused, never overwritten
//! (the owner of a login, `auth sync --owner`, must not replace a newer login with an older one).

use super::cluster::{CallError, Cluster, Request};
use crate::targets::{Identity, Location, RemoteFile, StepFn, Target, TargetError};
use base64::Engine as _;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use sha2::{Digest, Sha256};

/// The key the credential is kept under (the file name pods see in the mounted directory).
pub const KEY: &str = "auth.json";
/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "llmx";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "llmx");

pub struct SecretTarget {
    cluster: Cluster,
    namespace: String,
    name: String,
    /// The Secret as `locate` found it (`None`: there is none).
    current: Option<Option<Secret>>,
    /// Write only over the `resourceVersion` last seen.
    compare_and_swap: bool,
}

impl SecretTarget {
    pub fn new(cluster: Cluster, namespace: String, name: String) -> SecretTarget {
        SecretTarget { cluster, namespace, name, current: None, compare_and_swap: false }
    }

    /// Every write only replaces the Secret as it was last read or written (its
    /// `resourceVersion`); a Secret that changed in between is a failure, not overwritten.
    pub fn compare_and_swap(mut self) -> SecretTarget {
        self.compare_and_swap = true;
        self
    }

    /// The `resourceVersion` of the Secret as last seen.
    fn seen_version(&self) -> Option<String> {
        self.current.as_ref()?.as_ref()?.metadata.resource_version.clone()
    }

    fn api(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), &self.namespace)
    }

    fn req<'a>(&'a self, verb: &'a str) -> Request<'a> {
        Request { verb, resource: "secrets", namespace: &self.namespace }
    }

    async fn get(&self) -> Result<Option<Secret>, TargetError> {
        match self.cluster.call(self.req("get"), self.api().get(&self.name)).await {
            Ok(s) => Ok(Some(s)),
            Err(CallError::NotFound) => {
                let e = self.cluster.not_found(&self.namespace, &format!("secret {}", self.name)).await;
                // A missing namespace is an error; a missing Secret is created by the write.
                if e.message.starts_with("namespace ") { Err(e) } else { Ok(None) }
            }
            Err(CallError::Other(e)) => Err(e),
        }
    }

    async fn do_locate(&mut self, step: StepFn<'_>) -> Result<Location, TargetError> {
        step("connecting");
        let s = self.get().await?;
        if let Some(t) = s.as_ref().and_then(|s| s.type_.as_deref()).filter(|t| *t != "Opaque") {
            return Err(TargetError::new(format!(
                "secret {}/{} is of type {t}, not Opaque: llmx keeps auth.json in an Opaque Secret",
                self.namespace, self.name
            ))
            .with_hint("name another Secret"));
        }
        self.current = Some(s);
        Ok(Location {
            home: format!("{}/secret/{}", self.namespace, self.name),
            owner: None,
            store: None,
            file_store: false,
        })
    }

    fn located(&self) -> Result<&Option<Secret>, TargetError> {
        self.current.as_ref().ok_or_else(|| TargetError::new("internal error: secret used before it was located"))
    }

    async fn do_write(&mut self, bytes: &[u8], step: StepFn<'_>) -> Result<(), TargetError> {
        self.located()?;
        step("applying the Secret");
        let mut manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            },
            "type": "Opaque",
            "data": { KEY: base64::engine::general_purpose::STANDARD.encode(bytes) },
        });
        let expected = self.seen_version().filter(|_| self.compare_and_swap);
        if let Some(v) = &expected {
            manifest["metadata"]["resourceVersion"] = v.clone().into();
        }
        let params = PatchParams::apply(FIELD_MANAGER);
        let applied =
            self.cluster.call(self.req("patch"), self.api().patch(&self.name, &params, &Patch::Apply(&manifest))).await;
        let applied = match applied {
            Ok(s) => s,
            Err(CallError::NotFound) => {
                return Err(self.cluster.not_found(&self.namespace, &format!("secret {}", self.name)).await);
            }
            Err(CallError::Other(e)) if e.message.contains("(409 Conflict)") && expected.is_some() => {
                if let Some(changed) = self.changed_since_read(expected.as_deref().unwrap_or_default()).await {
                    return Err(changed);
                }
                return Err(self.manager_conflict());
            }
            Err(CallError::Other(e)) if e.message.contains("(409 Conflict)") => return Err(self.manager_conflict()),
            Err(CallError::Other(e)) => return Err(e),
        };
        let back = key_bytes(&applied);
        if back.as_deref().map(Sha256::digest) != Some(Sha256::digest(bytes)) {
            return Err(TargetError::new(format!(
                "secret {}/{}: the applied {KEY} differs from what was sent",
                self.namespace, self.name
            )));
        }
        self.current = Some(Some(applied));
        Ok(())
    }

    fn manager_conflict(&self) -> TargetError {
        TargetError::new(format!(
            "secret {}/{}: its key {KEY} is managed by another field manager (server-side apply conflict)",
            self.namespace, self.name
        ))
        .with_hint(format!(
            "delete it (`kubectl delete secret -n {} {}`) and push again, or name another Secret",
            self.namespace, self.name
        ))
    }

    /// A compare-and-swap write got a conflict: when the Secret's `resourceVersion` moved on since
    /// it was read, say so (`None`: it did not; the conflict is another field manager's).
    async fn changed_since_read(&self, expected: &str) -> Option<TargetError> {
        let now = self.get().await.ok().flatten().and_then(|s| s.metadata.resource_version);
        if now.as_deref() == Some(expected) {
            return None;
        }
        Some(
            TargetError::new(format!(
                "secret {}/{} changed since it was read (resourceVersion {expected}, now {}): not overwritten",
                self.namespace,
                self.name,
                now.as_deref().unwrap_or("gone")
            ))
            .with_hint("someone else wrote it in between; run again to start from what it holds now"),
        )
    }

    /// Delete the Secret when auth.json is all it holds, else only its key.
    async fn do_remove(&mut self) -> Result<bool, TargetError> {
        let Some(current) = self.located()?.clone() else { return Ok(false) };
        if key_bytes(&current).is_none() {
            return Ok(false);
        }
        let only_key = current.data.as_ref().is_some_and(|d| d.len() == 1);
        if only_key {
            let (api, params) = (self.api(), DeleteParams::default());
            return match self.cluster.call(self.req("delete"), api.delete(&self.name, &params)).await {
                Ok(_) | Err(CallError::NotFound) => Ok(true),
                Err(CallError::Other(e)) => Err(e),
            };
        }
        let patch = serde_json::json!({ "data": { KEY: null } });
        let (api, params, patch) = (self.api(), PatchParams::default(), Patch::Merge(&patch));
        match self.cluster.call(self.req("patch"), api.patch(&self.name, &params, &patch)).await {
            Ok(_) => Ok(true),
            Err(CallError::NotFound) => Ok(false),
            Err(CallError::Other(e)) => Err(e),
        }
    }
}

/// The bytes under [`KEY`].
fn key_bytes(s: &Secret) -> Option<Vec<u8>> {
    s.data.as_ref()?.get(KEY).map(|b| b.0.clone())
}

impl Target for SecretTarget {
    fn label(&self) -> String {
        format!("k8s:{}/secret/{}", self.namespace, self.name)
    }

    fn locate<'a>(&'a mut self, _: Option<&'a str>, step: StepFn<'a>) -> BoxFuture<'a, Result<Location, TargetError>> {
        Box::pin(self.do_locate(step))
    }

    fn read<'a>(&'a mut self, _: &'a Location) -> BoxFuture<'a, Result<Option<RemoteFile>, TargetError>> {
        Box::pin(async move {
            let bytes = self.located()?.as_ref().and_then(key_bytes);
            Ok(bytes.map(|bytes| RemoteFile { bytes, uid: None, gid: None, mode: None }))
        })
    }

    fn write<'a>(
        &'a mut self,
        _: &'a Location,
        bytes: &'a [u8],
        step: StepFn<'a>,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.do_write(bytes, step))
    }

    fn identity(&self) -> Option<Identity> {
        self.current.as_ref().map(|_| Identity::K8s {
            server: self.cluster.server.clone(),
            namespace: self.namespace.clone(),
            object: format!("secret/{}", self.name),
            uid: None,
        })
    }

    fn remove<'a>(&'a mut self, _: &'a Location) -> BoxFuture<'a, Result<bool, TargetError>> {
        Box::pin(self.do_remove())
    }
}
