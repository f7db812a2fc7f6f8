//! `llmx auth sync --owner k8s:NS/secret/NAME`: the owner's full login lives in a Secret and this
//! home is scratch (a CronJob's emptyDir). Before the sync the Secret's copy becomes this home's
//! login; after it, a changed login is written back to the Secret by compare-and-swap
//! (`llmx::family::owner`; deploy/kubernetes/ and docs/kubernetes.md show the CronJob).

use crate::cli::{Ctx, Failure, Kind, output};
use clap::Args;
use llmx::family::owner::{self, Owner, OwnerError};
use llmx::push::Outcome;
use llmx::targets::TargetSpec;
use llmx::targets::k8s::{Cluster, K8sObject, K8sOptions, SecretTarget};
use serde_json::json;

#[derive(Debug, Clone, Args)]
pub struct OwnerArgs {
    /// Where the owner's full login lives (a Secret no agent mounts): read it into this home
    /// first, write it back after a refresh (compare-and-swap); for a CronJob's scratch home
    #[arg(long, value_name = "k8s:NS/secret/NAME", conflicts_with = "dry_run")]
    pub owner: Option<String>,
}

/// Run `sync` between adopting the owner's login and writing it back; without `--owner`, just `sync`.
pub fn around(
    ctx: &Ctx,
    args: &OwnerArgs,
    k8s: K8sOptions,
    json: bool,
    sync: impl FnOnce() -> Result<u8, Failure>,
) -> Result<u8, Failure> {
    let Some(spec) = &args.owner else { return sync() };
    let target = secret(spec)?;
    let store = ctx.store_at(&ctx.home.auth_path())?;
    let rt = crate::cli::runtime()?;
    let (mut owner, adopted) = rt.block_on(async {
        let cluster = Cluster::connect(&k8s).await.map_err(|e| Failure::target(&format!("--owner {spec}"), e))?;
        let t = match target {
            (Some(ns), name) => SecretTarget::new(cluster, ns, name),
            (None, name) => {
                let ns = cluster.default_namespace().to_string();
                SecretTarget::new(cluster, ns, name)
            }
        };
        owner::adopt(Box::new(t.compare_and_swap()), &store).await.map_err(failure)
    })?;
    report(&owner, adopted.as_str(), json)?;
    // Whatever the sync did (also when it failed after a refresh), a changed login goes back.
    let synced = sync();
    let back = rt.block_on(owner.write_back(&store));
    match back {
        Ok(outcome) => {
            report(&owner, if outcome == Outcome::Updated { "written-back" } else { "unchanged" }, json)?;
            synced
        }
        Err(e) => {
            // Both failed: the sync's failure as a warning, the write-back's decides the exit.
            if let Err(s) = &synced {
                output::warning(&format!("sync: {}", s.message), s.hint.as_deref());
            }
            Err(failure(e).hint(format!(
                "the newest login is {} in this home: keep it (`llmx auth push --full {}`), or the next run writes it back",
                store.describe(),
                owner.label()
            )))
        }
    }
}

/// `k8s:[NS/]secret/NAME` → (namespace, name).
fn secret(spec: &str) -> Result<(Option<String>, String), Failure> {
    let wrong = || Failure::usage(format!("--owner {spec}: the owner must be a Secret, k8s:NS/secret/NAME"));
    match spec.parse::<TargetSpec>() {
        Ok(TargetSpec::K8s(k)) => match k.object {
            K8sObject::Secret(name) => Ok((k.namespace, name)),
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
}

/// One line (or JSON event) about the owner.
fn report(owner: &Owner, state: &str, json: bool) -> Result<(), Failure> {
    if json {
        return output::json_line(&json!({"event": "owner", "target": owner.label(), "state": state}));
    }
    output::note(&[format!("owner  {state} {}", owner.label())]);
    Ok(())
}

fn failure(e: OwnerError) -> Failure {
    let hint = e.hint().map(str::to_string);
    let kind = match &e {
        OwnerError::Target { error, .. } => Kind::of_target(error),
        OwnerError::Empty { .. } | OwnerError::NotFull { .. } => Kind::NotLoggedIn,
        _ => Kind::Failed,
    };
    let f = Failure::of(kind, e.to_string());
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}
