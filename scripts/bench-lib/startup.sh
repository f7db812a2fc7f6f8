# shellcheck shell=bash
# scripts/bench-lib/startup.sh — start-up figures of scripts/bench: the median wall time of a whole
# `llmx --version` (target 3 ms) and `llmx login status` on a ChatGPT-shaped login (decodes the
# id_token; target 5 ms), with hyperfine when it is there, else a loop of the same runs.

startup_login() { # DIR: a ChatGPT-shaped auth.json (unsigned JWTs, an expiry far ahead)
  mkdir -p "$1"
  chmod 700 "$1"
  python3 - "$1/auth.json" <<'PY'
import base64, json, os, sys, time
b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
exp = int(time.time()) + 30 * 86400
claims = {"email": "bench@example.com", "exp": exp,
          "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "acct-bench"}}
jwt = lambda c: f'{b64({"alg": "none", "typ": "JWT"})}.{b64(c)}.sig'
doc = {"OPENAI_API_KEY": None,
       "tokens": {"id_token": jwt(claims), "access_token": jwt({"exp": exp}), "refresh_token": "rt-bench",
                  "account_id": "acct-bench"},
       "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
PY
}

# startup_median NAME RUNS CMD...: the median in ms, by hyperfine (-N: no shell) or a loop.
startup_median() {
  local name=$1 runs=$2
  shift 2
  "$@" >/dev/null 2>&1 || { echo "-"; return 1; }
  if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 20 --runs "$runs" --export-json "$W/hf-$name.json" "$*" >"$W/hf-$name.txt" 2>&1 || { echo "-"; return 1; }
    python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$W/hf-$name.json"
  else
    local i t0
    : >"$W/loop-$name"
    for ((i = 0; i < runs; i++)); do
      t0=$(date +%s%N)
      "$@" >/dev/null 2>&1
      echo $(($(date +%s%N) - t0)) >>"$W/loop-$name"
    done
    median <"$W/loop-$name" | awk '{printf "%.2f", $1 / 1e6}'
  fi
}

startup_cases() {
  local runs=${STARTUP_RUNS:-300} how v s
  how=$(command -v hyperfine >/dev/null && hyperfine --version || echo "a shell loop (date +%s%N; includes fork/exec of the loop)")
  startup_login "$W/status-home"
  log "startup: $runs runs each ($how)"
  v=$(startup_median version "$runs" "$LLMX" --version)
  s=$(LLMX_HOME=$W/status-home startup_median status "$runs" "$LLMX" login status)
  figure "start-up: llmx --version, median" "$v" ms 3 "$(verdict "$v" 3)" "$runs runs, $how"
  figure "start-up: llmx login status (ChatGPT login), median" "$s" ms 5 "$(verdict "$s" 5)" "$runs runs, $how"
}
