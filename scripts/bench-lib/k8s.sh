# shellcheck shell=bash
# scripts/bench-lib/k8s.sh — the Kubernetes case of scripts/bench, only when a cluster answers
# (`scripts/k8s-testbed status`; kubectl and KUBECONFIG from `scripts/k8s-testbed env`): llmx
# (one push to k8s:NS/label=app=bench-llmx) vs `xargs -P16 kubectl exec -i POD -- sh -c 'umask 077;
# mkdir -p ~/.llmx && cat > ~/.llmx/auth.json'`, each on its own Deployment's pods.

K8S_NS=
K8S_AUTH() { echo "$W/k8s-llmx/auth.json"; }
k8s_cleanup() { [ -z "$K8S_NS" ] || kubectl delete namespace "$K8S_NS" --wait=false >/dev/null 2>&1 || true; }

# probe_k8s: CPU time (ms) of the cluster's side so far: apiserver, etcd, kubelet (with dockershim)
# and the Docker Engine under it (see probe_docker).
probe_k8s() {
  # shellcheck disable=SC2046
  echo $(($(proc_cpu_ms $(pgrep -x kube-apiserver) $(pgrep -x etcd) $(pgrep -x kubelet)) + $(probe_docker)))
}

k8s_available() {
  [ "${BENCH_SKIP_K8S:-0}" = 1 ] && { K8S_SKIP="BENCH_SKIP_K8S=1"; return 1; }
  if ! "$REPO/scripts/k8s-testbed" status >/dev/null 2>&1; then
    K8S_SKIP="no cluster (scripts/k8s-testbed status fails; bring one up with scripts/k8s-testbed up)"
    return 1
  fi
  eval "$("$REPO/scripts/k8s-testbed" env)"
  export KUBECONFIG
}

k8s_setup() { # N: both Deployments at N pods (the first call makes the namespace, a later one scales)
  if [ -z "$K8S_NS" ]; then
    K8S_NS="llmx-bench-$$"
    kubectl create namespace "$K8S_NS" >/dev/null || return 1
    for _ in $(seq 50); do kubectl -n "$K8S_NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  local d
  for d in bench-llmx bench-kubectl; do
    kubectl -n "$K8S_NS" apply -f - >/dev/null <<YAML || return 1
apiVersion: apps/v1
kind: Deployment
metadata: {name: $d}
spec:
  replicas: $1
  selector: {matchLabels: {app: $d}}
  template:
    metadata: {labels: {app: $d}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: main, image: k8sbox:1, imagePullPolicy: Never, env: [{name: HOME, value: /root}]}]
YAML
  done
  log "k8s: waiting for 2 x $1 pods"
  for d in bench-llmx bench-kubectl; do
    kubectl -n "$K8S_NS" wait --for=condition=Available "deploy/$d" --timeout=300s >/dev/null || return 1
    for _ in $(seq 300); do
      [ "$(kubectl -n "$K8S_NS" get deploy "$d" -o jsonpath='{.status.readyReplicas}')" = "$1" ] && break
      sleep 1
    done
    kubectl -n "$K8S_NS" wait --for=condition=Ready pod -l "app=$d" --timeout=300s >/dev/null || return 1
  done
  K8S_PODS=$(kubectl -n "$K8S_NS" get pods -l app=bench-kubectl -o jsonpath='{.items[*].metadata.name}')
  [ "$(echo "$K8S_PODS" | wc -w)" -eq "$1" ] || return 1
  mkdir -p "$W/k8s-llmx"
  chmod 700 "$W/k8s-llmx"
  K8S_VERSION=$(kubectl version --short 2>/dev/null | tr '\n' ' ' || true)
}

K8S_RECIPE='umask 077; mkdir -p "$HOME/.llmx" && cat > "$HOME/.llmx/auth.json"'
prep_llmx_k8s() { fresh_auth "$(K8S_AUTH)"; }
do_llmx_k8s() { LLMX_HOME=$W/k8s-llmx "$LLMX" auth push --json "k8s:$K8S_NS/label=app=bench-llmx"; }
check_llmx_k8s() { llmx_all_written "$W/out" "$1"; }
prep_kubectl_exec() { fresh_auth "$(K8S_AUTH)"; }
do_kubectl_exec() {
  echo "$K8S_PODS" | tr ' ' '\n' | xargs -P 16 -I{} sh -c \
    "kubectl -n '$K8S_NS' exec -i {} -- sh -c '$K8S_RECIPE' <'$(K8S_AUTH)'"
}
# kubectl's recipe checks nothing itself; read back two pods (first and last).
check_kubectl_exec() {
  local p bad=0
  for p in $(echo "$K8S_PODS" | tr ' ' '\n' | sed -n '1p;$p'); do
    kubectl -n "$K8S_NS" exec "$p" -- cat /root/.llmx/auth.json 2>/dev/null | cmp -s "$(K8S_AUTH)" - || bad=$((bad + 1))
  done
  [ "$bad" -eq 0 ] || { echo "$bad of 2 pods read back do not hold the new auth.json"; return 1; }
}

k8s_cases() { # SIZES... (pods per tool; the test bed's kubelet takes up to 300 pods)
  if ! k8s_available; then
    log "k8s: skipped: $K8S_SKIP"
    printf 'k8s\t%s\t-\t0\t\tSKIPPED\t%s\n' "$1" "$K8S_SKIP" >>"$W/results.tsv"
    return 0
  fi
  local n
  for n in "$@"; do
    if ! k8s_setup "$n"; then
      log "k8s: could not set up the pods"
      printf 'k8s\t%s\t-\t0\t\tFAILED\tcould not start 2 x %s pods in the cluster\n' "$n" "$n" >>"$W/results.tsv"
      return 0
    fi
    log "k8s: $n pods, $RUNS runs"
    run_case k8s "$n" "$RUNS" llmx_k8s kubectl_exec
  done
  LLMX_HOME=$W/k8s-llmx push_rss "${*: -1} pods" "$(K8S_AUTH)" "k8s:$K8S_NS/label=app=bench-llmx"
}
