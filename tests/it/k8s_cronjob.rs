//! The shipped deploy/kubernetes/ (image recipe, RBAC, CronJob) end to end on the test bed: a Job
//! made from the CronJob runs llmx in a pod with its service account (in-cluster config, no
//! kubeconfig in the image), reads the owner's full login from one Secret, refreshes it once at
//! the test issuer, renews the lease Secret and writes the refreshed login back to the owner
//! Secret; the Role allows exactly those two Secrets.
//!
//! Test-bed specifics, applied to the shipped manifests here and nowhere else: the API server
//! listens only on 127.0.0.1:16443 and this cluster has no kube-proxy (the `kubernetes` Service's
//! 10.0.0.1:443 leads nowhere), so the pod runs with `hostNetwork` and KUBERNETES_SERVICE_HOST/PORT
//! set to 127.0.0.1:16443 (the API server's certificate names 127.0.0.1); with `hostNetwork` it also
//! reaches the test issuer on 127.0.0.1 (`-c auth_issuer=…`). Kubernetes 1.20 serves CronJob as
//! batch/v1beta1; the CronJob is suspended so that only the test's Job runs.

use crate::support::harness::LLMX;
use crate::support::k8s::*;
use crate::support::login::logged_in;
use base64::Engine as _;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The llmx image, built once per test run by the shipped deploy/kubernetes/build-image.
fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let tag = "llmx-test-sync:1".to_string();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/build-image");
        let out = Command::new(&script).args([LLMX, &tag]).output().unwrap();
        assert!(out.status.success(), "build-image: {}", String::from_utf8_lossy(&out.stderr));
        tag
    })
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes").join(name)).unwrap()
}

/// The shipped manifests for namespace `ns`, the test image and the test bed (see the top).
fn manifests(ns: &str, issuer: &str) -> String {
    let rbac = shipped("rbac.yaml");
    let cron = shipped("cronjob.yaml")
        .replace("apiVersion: batch/v1 ", "apiVersion: batch/v1beta1 ")
        .replace("spec:\n  schedule:", "spec:\n  suspend: true\n  schedule:")
        .replace("image: llmx:0.20.0", &format!("image: {}", image()))
        .replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Never")
        .replace("args: [auth, sync,", &format!("args: [-c, \"auth_issuer={issuer}\", auth, sync,"))
        .replace(
            "          restartPolicy: OnFailure\n",
            "          restartPolicy: OnFailure\n          hostNetwork: true\n",
        )
        .replace(
            "            - {name: LLMX_HOME, value: /run/llmx/home}\n",
            "            - {name: LLMX_HOME, value: /run/llmx/home}\n            \
             - {name: KUBERNETES_SERVICE_HOST, value: 127.0.0.1}\n            \
             - {name: KUBERNETES_SERVICE_PORT, value: \"16443\"}\n",
        );
    assert!(cron.contains("suspend: true") && cron.contains("hostNetwork: true") && cron.contains("16443"), "{cron}");
    format!("{rbac}---\n{cron}")
        .replace("namespace: agents", &format!("namespace: {ns}"))
        .replace("k8s:agents/", &format!("k8s:{ns}/"))
}

/// Put `bytes` under the key auth.json of Secret `name`, owned by llmx's field manager (as
/// `llmx auth push` from outside would leave it).
fn seed(ns: &Namespace, name: &str, bytes: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {}}}\ntype: Opaque\ndata: {{auth.json: {b64}}}\n",
        ns.name
    );
    kubectl(&["apply", "--server-side", "--field-manager=llmx", "-f", "-"], Some(yaml.as_bytes()));
}

fn secret_json(ns: &Namespace, name: &str) -> Value {
    let b64 = kubectl(&["-n", &ns.name, "get", "secret", name, "-o", "jsonpath={.data.auth\\.json}"], None);
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap()).unwrap()
}

fn tokens(v: &Value, key: &str) -> String {
    v["tokens"][key].as_str().unwrap_or_else(|| panic!("tokens.{key} in {v}")).to_string()
}

/// `kubectl auth can-i VERB RESOURCE` as the CronJob's service account.
fn can_i(ns: &Namespace, verb: &str, resource: &str) -> bool {
    let who = format!("system:serviceaccount:{}:llmx-sync", ns.name);
    let o = kubectl_raw(&["-n", &ns.name, "auth", "can-i", verb, resource, "--as", &who], None);
    String::from_utf8_lossy(&o.stdout).trim() == "yes"
}

/// Wait (without blocking the runtime the test issuer runs on) until job `name` has `condition`.
async fn wait_job(ns: &Namespace, name: &str, condition: &str) -> String {
    let (n, name, condition) = (ns.name.clone(), name.to_string(), condition.to_string());
    tokio::task::spawn_blocking(move || {
        let o = kubectl_raw(
            &["-n", &n, "wait", &format!("--for=condition={condition}"), &format!("job/{name}"), "--timeout=120s"],
            None,
        );
        let logs = kubectl_raw(&["-n", &n, "logs", &format!("job/{name}")], None);
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
        assert!(o.status.success(), "job {name} not {condition}: {}\n{logs}", String::from_utf8_lossy(&o.stderr));
        logs
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_cronjob_renews_the_lease_secret_and_writes_the_owner_back_under_least_privilege_rbac() {
    kubeconfig();
    let (issuer, home) = logged_in().await;
    let owner = home.read_auth().unwrap();
    let before: Value = serde_json::from_slice(&owner).unwrap();
    let (old_rt, old_at) = (tokens(&before, "refresh_token"), tokens(&before, "access_token"));
    // The lease the agents mount: the owner's file with an empty refresh token. Its access
    // token (the test issuer's live an hour) expires within the renewal window (2 days).
    let mut lease = before.clone();
    lease["tokens"]["refresh_token"] = "".into();
    let lease = serde_json::to_vec_pretty(&lease).unwrap();

    let ns = Namespace::new("cron");
    seed(&ns, "llmx-owner", &owner);
    seed(&ns, "llmx-lease", &lease);
    seed(&ns, "llmx-other", &owner);
    kubectl(&["apply", "-f", "-"], Some(manifests(&ns.name, &issuer.base_url()).as_bytes()));

    // The Role: exactly get and patch of the two named Secrets.
    assert!(can_i(&ns, "get", "secret/llmx-owner") && can_i(&ns, "patch", "secret/llmx-lease"));
    for (verb, what) in [
        ("get", "secret/llmx-other"),
        ("patch", "secret/llmx-other"),
        ("list", "secrets"),
        ("create", "secrets"),
        ("delete", "secret/llmx-lease"),
        ("get", "pods"),
    ] {
        assert!(!can_i(&ns, verb, what), "the service account may {verb} {what}");
    }

    let started = std::time::Instant::now();
    kubectl(&["-n", &ns.name, "create", "job", "--from=cronjob/llmx-sync", "renew"], None);
    let logs = wait_job(&ns, "renew", "complete").await;
    eprintln!("the Job ran and completed in {:?} (pod start included)", started.elapsed());
    assert_eq!(issuer.issuer.stats().refreshes, 1, "one issuer refresh per run: {logs}");
    assert!(logs.contains("owner  seeded k8s:") && logs.contains("owner  written-back k8s:"), "{logs}");

    // The owner Secret: the refreshed full login (a new refresh token; the old one is spent).
    let owner_now = secret_json(&ns, "llmx-owner");
    let new_rt = tokens(&owner_now, "refresh_token");
    let new_at = tokens(&owner_now, "access_token");
    assert!(!new_rt.is_empty() && new_rt != old_rt && new_at != old_at, "{owner_now}");
    assert_eq!(owner_now["tokens"]["account_id"], before["tokens"]["account_id"]);
    // The lease Secret: the new access token, still no refresh token (DESIGN.md §10). This needs
    // `auth sync` to write leases to lease holders (issue 22 item 2); a full copy fails here.
    let lease_now = secret_json(&ns, "llmx-lease");
    assert_eq!(tokens(&lease_now, "access_token"), new_at, "the lease carries the new access token");
    assert_eq!(lease_now["last_refresh"], owner_now["last_refresh"]);
    assert_eq!(tokens(&lease_now, "refresh_token"), "", "a lease never holds the refresh token (needs the lease sync)");
    // Nothing secret in the pod's log; the other Secret untouched.
    for secret in [&old_rt, &new_rt, &old_at, &new_at] {
        assert!(!logs.contains(secret.as_str()), "a token in the pod log: {logs}");
    }
    assert_eq!(secret_json(&ns, "llmx-other"), before);

    // From inside the pod, with the same service account, any other Secret is refused.
    ns.apply(&format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: forbidden}}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      \
         serviceAccountName: llmx-sync\n      restartPolicy: Never\n      hostNetwork: true\n      containers:\n      \
         - name: status\n        image: {}\n        imagePullPolicy: Never\n        \
         args: [auth, status, \"k8s:{}/secret/llmx-other\"]\n        env:\n        - {{name: LLMX_HOME, value: /tmp/h}}\n        \
         - {{name: KUBERNETES_SERVICE_HOST, value: 127.0.0.1}}\n        - {{name: KUBERNETES_SERVICE_PORT, value: \"16443\"}}\n",
        image(),
        ns.name
    ));
    let refused = wait_job(&ns, "forbidden", "failed").await;
    let who = format!("system:serviceaccount:{}:llmx-sync", ns.name);
    assert!(
        refused.contains(&format!("RBAC: forbidden to get secrets in namespace {} for {who}", ns.name)),
        "{refused}"
    );
}

/// The owner's write-back is a compare-and-swap: a Secret written by someone else since it was
/// read is refused and left as they wrote it; writes that follow each other go through.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_owner_secret_write_is_refused_when_the_secret_changed_since_it_was_read() {
    use llmx::targets::Target;
    use llmx::targets::k8s::{Cluster, K8sOptions, SecretTarget};
    let ns = Namespace::new("cas");
    seed(&ns, "llmx-owner", b"{\"first\": 1}");
    let opts = K8sOptions { kubeconfig: Some(kubeconfig().into()), ..Default::default() };
    let cluster = Cluster::connect(&opts).await.unwrap();
    let mut owner = SecretTarget::new(cluster, ns.name.clone(), "llmx-owner".into()).compare_and_swap();
    let loc = owner.locate(None, &|_| {}).await.unwrap();
    owner.write(&loc, b"{\"second\": 2}", &|_| {}).await.unwrap();
    owner.write(&loc, b"{\"third\": 3}", &|_| {}).await.unwrap();

    seed(&ns, "llmx-owner", b"{\"someone\": \"else\"}");
    let e = owner.write(&loc, b"{\"fourth\": 4}", &|_| {}).await.unwrap_err();
    assert!(e.message.contains(&format!("secret {}/llmx-owner changed since it was read", ns.name)), "{e:?}");
    assert_eq!(secret_json(&ns, "llmx-owner"), serde_json::json!({"someone": "else"}));
}

/// A refresh that was saved in the scratch home but not written back (the container died and
/// restarted in the same pod, so its emptyDir survived) is written back first by the next run,
/// never replaced by the owner Secret's older copy.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_sync_owner_writes_back_a_refresh_an_earlier_run_left_in_the_home() {
    let (issuer, home) = logged_in().await;
    let stale = home.read_auth().unwrap();
    let iss = format!("auth_issuer={}", issuer.base_url());
    let refreshed = home.llmx(["-c", &iss, "auth", "refresh"]).run().await;
    assert_eq!(refreshed.code(), 0, "{refreshed:?}");
    let newer = home.read_auth().unwrap();
    assert_ne!(newer, stale);

    let ns = Namespace::new("owner");
    seed(&ns, "llmx-owner", &stale);
    let owner = format!("k8s:{}/secret/llmx-owner", ns.name);
    let run = home.llmx(["-c", &iss, "auth", "sync", "--owner", &owner]).env("KUBECONFIG", kubeconfig()).run().await;
    assert_eq!(run.code(), 0, "{run:?}");
    eprintln!("auth sync --owner from outside the cluster took {:?}", run.elapsed);
    assert!(run.stderr.contains(&format!("owner  wrote-back {owner}")), "{run:?}");
    let now = secret_json(&ns, "llmx-owner");
    let mine: Value = serde_json::from_slice(&home.read_auth().unwrap()).unwrap();
    assert_eq!(now, mine, "the owner Secret holds this home's newest login");
    let stale: Value = serde_json::from_slice(&stale).unwrap();
    assert_ne!(tokens(&now, "refresh_token"), tokens(&stale, "refresh_token"), "not the spent refresh token");
}
