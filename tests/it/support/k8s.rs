//! The Kubernetes test bed (scripts/k8s-testbed, started by scripts/test): its KUBECONFIG and
//! kubectl, a namespace per test (deleted on drop, pass or fail), manifests applied through
//! kubectl, and what a container holds, read with `kubectl exec`. The images are the test bed's
//! own, built from local files: `k8sbox:1` (busybox) and `k8spause:3.2` (no shell).
//! No cluster is a test failure with the reason, never a skip.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BOX: &str = "k8sbox:1";
/// A container image with no shell at all (only /pause).
pub const NO_SHELL: &str = "k8spause:3.2";

/// The test bed's admin kubeconfig; panics with how to start it when there is none.
pub fn kubeconfig() -> String {
    let k = std::env::var("KUBECONFIG").unwrap_or_default();
    assert!(
        !k.is_empty() && std::path::Path::new(&k).is_file(),
        "no Kubernetes test bed: KUBECONFIG is unset or missing ({k:?}); run `scripts/k8s-testbed up` and \
         `eval \"$(scripts/k8s-testbed env)\"`, or run scripts/test, which does"
    );
    k
}

pub fn kubectl_raw(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kubectl (the test bed's, on PATH from `scripts/k8s-testbed env`): {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// kubectl that must succeed; its stdout.
pub fn kubectl(args: &[&str], stdin: Option<&[u8]>) -> String {
    let o = kubectl_raw(args, stdin);
    assert!(o.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A namespace of this test's own.
pub struct Namespace {
    pub name: String,
}

static N: AtomicUsize = AtomicUsize::new(0);

impl Namespace {
    pub fn new(tag: &str) -> Namespace {
        let name = format!("llmx-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        kubectl(&["create", "namespace", &name], None);
        // The controller creates the default service account shortly after; pods need it.
        for _ in 0..100 {
            if kubectl_raw(&["-n", &name, "get", "serviceaccount", "default"], None).status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Namespace { name }
    }

    pub fn apply(&self, yaml: &str) {
        kubectl(&["-n", &self.name, "apply", "-f", "-"], Some(yaml.as_bytes()));
    }

    pub fn wait(&self, what: &str, condition: &str) {
        kubectl(&["-n", &self.name, "wait", &format!("--for=condition={condition}"), what, "--timeout=120s"], None);
    }

    /// `sh -c SCRIPT` in a container; its stdout.
    pub fn exec(&self, pod: &str, container: &str, script: &str) -> String {
        kubectl(&["-n", &self.name, "exec", pod, "-c", container, "--", "sh", "-c", script], None)
    }

    /// Content, uid, gid and mode of `path` in a container (`None`: missing).
    pub fn stat(&self, pod: &str, container: &str, path: &str) -> Option<(String, u32, u32, u32)> {
        let o = kubectl_raw(
            &[
                "-n",
                &self.name,
                "exec",
                pod,
                "-c",
                container,
                "--",
                "sh",
                "-c",
                "stat -c '%u %g %a' \"$1\" && cat \"$1\"",
                "sh",
                path,
            ],
            None,
        );
        if !o.status.success() {
            return None;
        }
        let out = String::from_utf8(o.stdout).unwrap();
        let (head, body) = out.split_once('\n').unwrap();
        let f: Vec<&str> = head.split(' ').collect();
        Some((body.to_string(), f[0].parse().unwrap(), f[1].parse().unwrap(), u32::from_str_radix(f[2], 8).unwrap()))
    }

    /// The names of the pods with a label, sorted.
    pub fn pods(&self, selector: &str) -> Vec<String> {
        let out = kubectl(
            &["-n", &self.name, "get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"],
            None,
        );
        let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    }

    /// A pod of one root container `main` (busybox; HOME=/root, as the image has no /etc/passwd).
    pub fn pod(&self, name: &str, labels: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  \
             terminationGracePeriodSeconds: 0\n  containers:\n  - {{name: main, image: {BOX}, imagePullPolicy: Never, env: [{{name: HOME, value: /root}}]}}\n"
        ));
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl_raw(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}
