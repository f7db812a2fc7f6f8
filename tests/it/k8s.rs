//! `llmx auth push/status/where k8s:…` against the real Kubernetes test bed (scripts/k8s-testbed:
//! a v1.20 API server, kubelet and dockershim on this machine's Docker Engine). Each test has its
//! own namespace, deleted pass or fail.

use crate::support::docker::{Local, assert_no_secret, chatgpt_auth, creds, lease_text};
use crate::support::k8s::*;
use std::time::{Duration, Instant};

/// Result lines as `TARGET  OUTCOME …`: without the terminal-independent mark (✓ - ✗) and with
/// the alignment padding collapsed, so assertions do not depend on the longest label.
trait Plain {
    fn plain(&self) -> String;
}

impl Plain for String {
    fn plain(&self) -> String {
        self.lines()
            .map(|l| {
                let l =
                    l.strip_prefix("✓ ").or_else(|| l.strip_prefix("✗ ")).or_else(|| l.strip_prefix("- ")).unwrap_or(l);
                let mut out = String::new();
                let mut spaces = 0;
                for c in l.chars() {
                    if c == ' ' {
                        spaces += 1;
                        continue;
                    }
                    if spaces > 0 {
                        out.push_str(if spaces >= 2 { "  " } else { " " });
                        spaces = 0;
                    }
                    out.push(c);
                }
                out
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const OLD: &str = "2025-01-01T00:00:00Z";

/// A pod of one container `main` running `image` (never pulled).
fn pod_of(ns: &Namespace, name: &str, image: &str) {
    ns.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 0
  containers: [{{name: main, image: {image}, imagePullPolicy: Never}}]
"#
    ));
}

/// A pod with a root `main` container and a `side` container running as uid 1000 whose HOME is an
/// emptyDir; `side` is listed first and `main` is the default container by annotation. (The test
/// bed's busybox image has no /etc/passwd, so HOME is set as an image's passwd would.)
fn agent_pod(ns: &Namespace, name: &str) {
    ns.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{kubectl.kubernetes.io/default-container: main}}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{{name: home, emptyDir: {{}}}}]
  containers:
  - name: side
    image: {BOX}
    imagePullPolicy: Never
    securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
    env: [{{name: HOME, value: /home/agent}}]
    volumeMounts: [{{name: home, mountPath: /home/agent}}]
  - {{name: main, image: {BOX}, imagePullPolicy: Never, env: [{{name: HOME, value: /root}}]}}
"#
    ));
}

#[test]
fn push_writes_the_default_container_and_a_named_sidecar_as_their_users() {
    let ns = Namespace::new("pod");
    agent_pod(&ns, "agent");
    ns.wait("pod/agent", "Ready");
    let local = Local::new();
    let c = creds("acc-1", "k8spod");
    let text = chatgpt_auth(&c, "acc-1", OLD);
    local.write_auth(&text);
    // What lands in the pod: the lease.
    let text = lease_text(&text, &c);
    let main = format!("k8s:{}/pod/agent", ns.name);
    let side = format!("k8s:{}/pod/agent/side", ns.name);

    let r = local.llmx(&["auth", "push", &main, &side], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.plain().contains(&format!("{main}  created /root/.llmx/auth.json")), "{}", r.stdout);
    assert!(r.stdout.plain().contains(&format!("{side}  created /home/agent/.llmx/auth.json")), "{}", r.stdout);
    assert_eq!(ns.stat("agent", "main", "/root/.llmx/auth.json"), Some((text.clone(), 0, 0, 0o600)));
    assert_eq!(ns.stat("agent", "side", "/home/agent/.llmx/auth.json"), Some((text.clone(), 1000, 1000, 0o600)));
    assert_eq!(ns.exec("agent", "side", "stat -c '%u %a' /home/agent/.llmx"), "1000 700\n");
    assert_eq!(ns.exec("agent", "side", "ls -a /home/agent/.llmx").split_whitespace().count(), 3, "no temp file left");

    // Equal bytes: unchanged; a new login: updated.
    let again = local.llmx(&["auth", "push", &main, &side], &[]);
    assert!(again.stdout.plain().contains("2 targets: 2 unchanged"), "{}", again.all());
    let c2 = creds("acc-1", "k8spod2");
    let text2 = chatgpt_auth(&c2, "acc-1", "2025-02-01T00:00:00Z");
    local.write_auth(&text2);
    let text2 = lease_text(&text2, &c2);
    let up = local.llmx(&["auth", "push", &side], &[]);
    assert!(up.stdout.plain().contains(&format!("{side}  updated")), "{}", up.all());
    assert_eq!(ns.stat("agent", "side", "/home/agent/.llmx/auth.json").map(|s| s.0), Some(text2));

    let s = local.llmx(&["auth", "status", &side], &[]);
    assert_eq!(s.code(), 0, "{}", s.all());
    assert!(s.stdout.plain().contains("Logged in using ChatGPT") && s.stdout.plain().contains("acc-1"), "{}", s.stdout);
    assert!(s.stdout.plain().contains("owner 1000:1000, mode 0600"), "{}", s.stdout);
    assert_no_secret(&format!("{}{}{}", r.all(), up.all(), s.all()), &c);
    assert_no_secret(&up.all(), &c2);
}

/// The ledger records the pod's UID: a pod recreated under the same name (as a StatefulSet
/// does) is "replaced" in `where`, and `sync` writes nothing into it. The UID is known before the
/// exec, so this holds right after the new pod is Ready (when the kubelet may still send an exec to
/// the old container) and for a new pod that cannot be read at all (no shell).
#[test]
fn a_pod_recreated_under_the_same_name_is_replaced_not_written_by_sync() {
    let ns = Namespace::new("podrc");
    agent_pod(&ns, "agent");
    ns.wait("pod/agent", "Ready");
    let local = Local::new();
    let c = creds("acc-1", "k8src");
    local.write_auth(&chatgpt_auth(&c, "acc-1", OLD));
    let main = format!("k8s:{}/pod/agent", ns.name);
    let r = local.llmx(&["auth", "push", &main], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    kubectl(&["delete", "pod", "-n", &ns.name, "agent", "--wait=true"], None);
    agent_pod(&ns, "agent");
    ns.wait("pod/agent", "Ready");

    // At once, no waiting for exec to answer.
    let w = local.llmx(&["auth", "where", "--json"], &[]);
    assert_eq!(w.code(), 1, "{}", w.all());
    assert_eq!(w.json()["holders"][0]["state"], "replaced", "{}", w.stdout);
    assert!(w.stdout.contains("the pod the ledger records (UID"), "{}", w.stdout);
    let r = local.llmx(&["auth", "sync"], &[]);
    assert_eq!(r.code(), 1, "{}", r.all());
    // (The check reads the new pod through kubectl exec, which needs the new container to answer.)
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubectl_raw(&["-n", &ns.name, "exec", "agent", "-c", "main", "--", "true"], None).status.success() {
        assert!(Instant::now() < deadline, "the recreated pod never answered exec");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ns.stat("agent", "main", "/root/.llmx/auth.json"), None, "sync wrote into the new pod");

    // Recreated again, from an image without a shell: it cannot be read, and it is still
    // "replaced" (not "unreachable"), because its UID says so.
    kubectl(&["delete", "pod", "-n", &ns.name, "agent", "--wait=true"], None);
    pod_of(&ns, "agent", NO_SHELL);
    ns.wait("pod/agent", "Ready");
    let w = local.llmx(&["auth", "where", "--json"], &[]);
    assert_eq!(w.code(), 1, "{}", w.all());
    assert_eq!(w.json()["holders"][0]["state"], "replaced", "{}", w.stdout);
}

#[test]
fn a_deployment_by_deploy_and_by_label_reaches_every_replica() {
    let ns = Namespace::new("deploy");
    ns.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: workers}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: workers}}}}
  template:
    metadata: {{labels: {{app: workers}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: main, image: {BOX}, imagePullPolicy: Never, env: [{{name: HOME, value: /root}}]}}]
"#
    ));
    ns.wait("deploy/workers", "Available");
    let pods = ns.pods("app=workers");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let local = Local::new();
    let c = creds("acc-1", "k8sdep");
    let text = chatgpt_auth(&c, "acc-1", OLD);
    local.write_auth(&text);
    let text = lease_text(&text, &c);

    let r = local.llmx(&["auth", "push", &format!("k8s:{}/deploy/workers", ns.name)], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.plain().contains("2 targets: 2 created"), "{}", r.stdout);
    for p in &pods {
        assert!(r.stdout.plain().contains(&format!("k8s:{}/pod/{p}  created", ns.name)), "{}", r.stdout);
        assert_eq!(ns.stat(p, "main", "/root/.llmx/auth.json"), Some((text.clone(), 0, 0, 0o600)));
    }
    // The same pods by label: each named once, both unchanged.
    let l = local.llmx(
        &["auth", "push", &format!("k8s:{}/label=app=workers", ns.name), &format!("k8s:{}/deploy/workers", ns.name)],
        &[],
    );
    assert_eq!(l.code(), 0, "{}", l.all());
    assert!(l.stdout.plain().contains("2 targets: 2 unchanged"), "{}", l.stdout);
}

#[test]
fn a_secret_is_created_updated_unchanged_and_the_update_reaches_a_pod_that_mounts_it() {
    let ns = Namespace::new("secret");
    let local = Local::new();
    let c = creds("acc-1", "k8ssec");
    let text = chatgpt_auth(&c, "acc-1", OLD);
    local.write_auth(&text);
    // A Secret target gets a lease too: agents mount it; the owner's login stays here.
    let text = lease_text(&text, &c);
    let target = format!("k8s:{}/secret/llmx-auth", ns.name);

    let r = local.llmx(&["auth", "push", &target], &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.plain().contains(&format!("{target}  created")), "{}", r.stdout);
    let got = kubectl(&["-n", &ns.name, "get", "secret", "llmx-auth", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v["type"], "Opaque");
    assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/managed-by"], "llmx");
    assert!(v["metadata"]["managedFields"].as_array().unwrap().iter().any(|m| m["manager"] == "llmx"), "{v}");
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.decode(v["data"]["auth.json"].as_str().unwrap()).unwrap();
    assert_eq!(String::from_utf8(data).unwrap(), text);

    // A pod mounts it as docs/headless.md shows: the whole Secret, 0400, no subPath.
    ns.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{{name: llmx, secret: {{secretName: llmx-auth, defaultMode: 0400}}}}]
  containers:
  - name: main
    image: {BOX}
    imagePullPolicy: Never
    env: [{{name: LLMX_HOME, value: /var/run/llmx}}]
    volumeMounts: [{{name: llmx, mountPath: /var/run/llmx, readOnly: true}}]
"#
    ));
    ns.wait("pod/reader", "Ready");
    assert_eq!(ns.exec("reader", "main", "cat /var/run/llmx/auth.json"), text);

    assert!(local.llmx(&["auth", "push", &target], &[]).stdout.plain().contains(&format!("{target}  unchanged")));
    let c2 = creds("acc-1", "k8ssec2");
    let text2 = chatgpt_auth(&c2, "acc-1", "2025-02-01T00:00:00Z");
    local.write_auth(&text2);
    let text2 = lease_text(&text2, &c2);
    let u = local.llmx(&["auth", "push", &target], &[]);
    assert!(u.stdout.plain().contains(&format!("{target}  updated")), "{}", u.all());
    let started = Instant::now();
    while ns.exec("reader", "main", "cat /var/run/llmx/auth.json") != text2 {
        assert!(started.elapsed() < Duration::from_secs(90), "the pod never saw the updated Secret");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("updated Secret visible in the mounting pod after {:?}", started.elapsed());

    let s = local.llmx(&["auth", "status", &target], &[]);
    assert_eq!(s.code(), 0, "{}", s.all());
    assert!(s.stdout.plain().contains("Logged in using ChatGPT") && s.stdout.plain().contains("acc-1"), "{}", s.stdout);
    assert!(s.stdout.plain().contains("Access token expires: 2100-01-01"), "{}", s.stdout);

    // A Secret whose key another field manager owns is reported, never forced.
    kubectl(&["-n", &ns.name, "create", "secret", "generic", "byhand", "--from-literal=auth.json=x"], None);
    let byhand = format!("k8s:{}/secret/byhand", ns.name);
    let conflict = local.llmx(&["auth", "push", &byhand], &[]);
    assert!(conflict.stdout.plain().contains("server-side apply conflict"), "{}", conflict.all());
    // Removing: the Secret held only auth.json, so it is deleted.
    let rm = local.llmx(&["auth", "remove", &target], &[]);
    assert!(rm.stdout.plain().contains(&format!("{target}  removed")), "{}", rm.all());
    assert!(!kubectl_raw(&["-n", &ns.name, "get", "secret", "llmx-auth"], None).status.success());
    assert_no_secret(&format!("{}{}{}", r.all(), u.all(), s.all()), &c);
}

#[test]
fn missing_namespace_pod_shell_less_and_pending_pods_are_one_line_each_and_nothing_is_written() {
    let ns = Namespace::new("errors");
    pod_of(&ns, "noshell", NO_SHELL);
    pod_of(&ns, "pending", "llmx-absent-image:1");
    ns.wait("pod/noshell", "Ready");
    let local = Local::new();
    local.write_auth(&chatgpt_auth(&creds("acc-1", "k8serr"), "acc-1", OLD));
    let n = &ns.name;
    let targets = [
        "k8s:llmx-no-such-namespace/pod/x".to_string(),
        format!("k8s:{n}/pod/missing"),
        format!("k8s:{n}/pod/noshell"),
        format!("k8s:{n}/pod/pending"),
        format!("k8s:{n}/label=app=nothing"),
    ];
    let args: Vec<&str> = ["auth", "push"].into_iter().chain(targets.iter().map(String::as_str)).collect();
    let r = local.llmx(&args, &[]);
    assert_ne!(r.code(), 0, "{}", r.all());
    let line = |t: &str| {
        r.stdout
            .plain()
            .lines()
            .find(|l| l.starts_with(&format!("{t}  failed")))
            .unwrap_or_else(|| panic!("no line for {t}: {}", r.all()))
            .to_string()
    };
    assert!(line(&targets[0]).contains("namespace llmx-no-such-namespace not found"), "{}", r.all());
    assert!(line(&targets[1]).contains(&format!("pod missing not found in namespace {n}")), "{}", r.all());
    let noshell = line(&targets[2]);
    assert!(noshell.contains("has no shell"), "{}", r.all());
    assert!(r.all().contains(&format!("llmx auth push k8s:{n}/secret/NAME")), "the way for it: {}", r.all());
    assert!(line(&targets[3]).contains("is Pending, not Running"), "{}", r.all());
    assert!(line(&targets[4]).contains("no Running, ready pod"), "{}", r.all());
    assert!(r.stdout.plain().contains("5 targets: 5 failed"), "{}", r.stdout);
}

#[test]
fn rbac_denial_through_an_impersonated_service_account_names_the_verb_and_resource() {
    let ns = Namespace::new("rbac");
    let n = &ns.name;
    ns.pod("target", "app: t");
    // May read pods, nothing else: no pods/exec, no secrets.
    ns.apply(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: limited}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-pods}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: limited-read-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-pods}
subjects: [{kind: ServiceAccount, name: limited}]
"#,
    );
    ns.wait("pod/target", "Ready");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("limited.kubeconfig");
    let admin = std::fs::read_to_string(kubeconfig()).unwrap();
    // The admin's own credentials, impersonating the service account (as `kubectl --as` does).
    let limited =
        admin.replace("    client-key:", &format!("    as: system:serviceaccount:{n}:limited\n    client-key:"));
    std::fs::write(&kc, limited).unwrap();
    let local = Local::new();
    local.write_auth(&chatgpt_auth(&creds("acc-1", "k8srbac"), "acc-1", OLD));
    let pod = format!("k8s:{n}/pod/target");
    let secret = format!("k8s:{n}/secret/llmx-auth");
    let r = local.llmx(&["auth", "push", "--kubeconfig", kc.to_str().unwrap(), &pod, &secret], &[]);
    assert_ne!(r.code(), 0, "{}", r.all());
    assert!(
        r.stdout.plain().contains(&format!("{pod}  failed: RBAC: forbidden to create pods/exec in namespace {n}")),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.plain().contains(&format!(
            "{secret}  failed: RBAC: forbidden to get secrets in namespace {n} for system:serviceaccount:{n}:limited"
        )),
        "{}",
        r.all()
    );
    assert!(r.all().contains(&format!("kubectl auth can-i create pods/exec -n {n}")), "{}", r.all());
    assert_eq!(ns.stat("target", "main", "/root/.llmx/auth.json"), None, "nothing written");
}

#[test]
fn unreachable_silent_and_untrusted_api_servers_fail_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::fs::read_to_string(kubeconfig()).unwrap();
    let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    // Nothing listens; a listener that never answers; the right server with another CA.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let refused = write("refused", admin.replace(&server, &format!("https://127.0.0.1:{closed_port}")));
    let quiet = write("silent", admin.replace(&server, &format!("https://127.0.0.1:{silent_port}")));
    let ca = dir.path().join("other-ca.crt");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other-ca", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let ca_line = admin.lines().find(|l| l.trim().starts_with("certificate-authority:")).unwrap();
    let untrusted = write("untrusted", admin.replace(ca_line, &format!("    certificate-authority: {}", ca.display())));

    let local = Local::new();
    local.write_auth(&chatgpt_auth(&creds("acc-1", "k8snet"), "acc-1", OLD));
    let push = |kc: &str| {
        let started = Instant::now();
        let r = local.llmx(&["auth", "push", "--kubeconfig", kc, "--connect-timeout", "2", "k8s:default/pod/x"], &[]);
        (r, started.elapsed())
    };
    // An API server that does not answer is exit 3 for a one-target command, as SSH and Docker.
    for kc in [&refused, &quiet] {
        let st =
            local.llmx(&["auth", "status", "--kubeconfig", kc, "--connect-timeout", "2", "k8s:default/pod/x"], &[]);
        assert_eq!(st.code(), 3, "{}", st.all());
    }
    let (r, _) = push(&refused);
    assert_ne!(r.code(), 0);
    assert!(
        r.stdout.plain().contains("k8s:default/pod/x  failed: cannot reach the API server https://127.0.0.1:"),
        "{}",
        r.all()
    );
    let (r, took) = push(&quiet);
    assert!(r.stdout.plain().contains("did not answer within 2 s (--connect-timeout)"), "{}", r.all());
    assert!(took < Duration::from_secs(8), "{took:?}");
    drop(silent);
    let (r, _) = push(&untrusted);
    assert!(r.stdout.plain().contains("failed: TLS failure talking to the API server"), "{}", r.all());
    // No configuration at all: one line, and a hint naming --kubeconfig.
    let none = local.llmx(&["auth", "status", "k8s:pod/x"], &[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    assert_ne!(none.code(), 0);
    assert!(none.all().contains("--kubeconfig"), "{}", none.all());
}
