# shellcheck shell=bash
# scripts/bench-lib/common.sh — what every case of scripts/bench shares: logging, clocks, medians,
# fresh auth.json content, the check that an llmx run reported every target written, and the
# results file the report is made from.
#
# Results: one line per measured tool in $W/results.tsv, tab-separated:
#   case  size  tool  runs  median_us  status  note  cpu_ms  server_ms  client_ms
# (status: ok, or FAILED with the reason in note; cpu_ms: the median CPU time the whole machine
# spent per run, from /proc/stat: client, servers and all; server_ms: the median CPU time of the
# case's servers per run, from its probe_CASE function when it has one, e.g. the sshds;
# client_ms: the median CPU time of the tool's own processes, the shell's reaped children). Extra
# figures go to $W/figures.tsv:
#   name  value  unit  target  verdict  note

log() { printf '[bench %5ss] %s\n' "$(($(date +%s) - BENCH_T0))" "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# Wall clock in microseconds.
now_us() { local t; t=$(date +%s%N); echo $((t / 1000)); }

median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print ""; else print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { awk -v us="$1" 'BEGIN {printf "%.1f", us / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
# verdict VALUE MAX -> ok | MISSED
verdict() { awk -v v="$1" -v m="$2" 'BEGIN {print (v != "" && v != "-" && v + 0 <= m + 0) ? "ok" : "MISSED"}'; }

# fresh_auth FILE: a new API-key auth.json (0600), different bytes on every call, so that every
# run of every tool really writes.
fresh_auth() {
  local key
  key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  (umask 077 && printf '{\n  "OPENAI_API_KEY": "sk-bench-%s"\n}\n' "$key" >"$1.new" && mv "$1.new" "$1")
}

# llmx_all_written JSON_OUT N: the --json summary of an llmx push says ok and N targets created
# or updated (nothing unchanged, skipped or failed). Prints the reason when not.
llmx_all_written() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
summary, failed = None, []
for line in open(path, encoding="utf-8", errors="replace"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "summary":
        summary = o
    elif o.get("event") == "target" and o.get("outcome") not in ("created", "updated"):
        failed.append(f'{o.get("target")}: {o.get("outcome")} {o.get("reason") or ""}'.strip())
err = next((json.loads(l) for l in open(path) if l.startswith('{"error"')), None) if summary is None else None
if summary is None:
    print(f"no summary ({err['error'].get('message') if err else 'llmx printed no JSON'})")
    sys.exit(1)
c = summary.get("counts", {})
written = c.get("created", 0) + c.get("updated", 0)
if not summary.get("ok") or written != n or summary.get("targets") != n:
    print(f"{written}/{n} written, counts {c}; first: {'; '.join(failed[:3])}")
    sys.exit(1)
PY
}

# CPU time the whole machine has spent (user, nice, system, irq, softirq), in ms.
CLK_TCK=$(getconf CLK_TCK)
machine_cpu_ms() { awk -v hz="$CLK_TCK" '/^cpu / {printf "%d\n", ($2 + $3 + $4 + $7 + $8) * 1000 / hz}' /proc/stat; }
# proc_cpu_ms PID...: CPU time of the processes and of their waited-for children, in ms.
proc_cpu_ms() {
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $((t * 1000 / CLK_TCK))
}

# record CASE SIZE TOOL TIMES_FILE STATUS NOTE (the CPU medians come from TIMES_FILE.cpu/.server/.client)
record() {
  local med runs cpu server client
  runs=$(grep -c . "$4" 2>/dev/null || true)
  med=$(median <"$4" 2>/dev/null || true)
  cpu=$(median <"$4.cpu" 2>/dev/null || true)
  server=$(median <"$4.server" 2>/dev/null || true)
  client=$(median <"$4.client" 2>/dev/null || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${runs:-0}" "${med:-}" "$5" "$6" \
    "${cpu:-}" "${server:-}" "${client:-}" >>"$W/results.tsv"
}
# children_cpu: CHILDREN_MS := CPU time (user + system) of every child this shell has reaped so
# far, in ms. Called in the benchmark's own shell, never in $(…): a subshell has no children yet.
children_cpu() {
  times >"$W/times.out"
  CHILDREN_MS=$(awk 'NR == 2 {
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
    printf "%d\n", t * 1000 }' "$W/times.out")
}
# figure NAME VALUE UNIT TARGET VERDICT NOTE (an empty VERDICT: VALUE <= TARGET decides)
figure() {
  local v=$5
  [ -n "$v" ] || v=$(verdict "$2" "$4")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$v" "$6" >>"$W/figures.tsv"
}

# peak_rss_mb CMD...: GNU time's maximum resident set size of CMD, in MB (stdout of CMD dropped).
peak_rss_mb() {
  /usr/bin/time -v "$@" 2>"$W/time-v.txt" >/dev/null || true
  awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$W/time-v.txt"
}

# push_rss LABEL AUTH_FILE TARGET...: a fresh auth.json, then the peak RSS of one llmx push to the
# targets as a figure (target <= 40 MB). LLMX_HOME (and HOME) come from the caller's environment.
push_rss() {
  local label=$1 auth=$2
  shift 2
  fresh_auth "$auth"
  figure "peak RSS, llmx auth push, $label" "$(peak_rss_mb "$LLMX" auth push --json "$@")" MB 40 "" "GNU time -v"
}

# run_case CASE SIZE RUNS TOOL...: RUNS rounds, each running every TOOL once in turn (alternating),
# after an untimed warm-up round. For each TOOL the functions prep_TOOL (untimed: fresh content,
# reseeding), do_TOOL (timed; its output goes to $W/out) and check_TOOL (untimed; prints why not
# when a target was not written) must exist. A tool that fails is reported and left out of the
# later rounds; the case goes on. CAP_<tool>=K caps one slow tool: no warm-up, K timed runs.
run_case() {
  local case=$1 size=$2 runs=$3
  shift 3
  local tool r t0 t1 why
  declare -A failed=()
  local probe=""
  declare -F "probe_$case" >/dev/null && probe="probe_$case"
  for tool in "$@"; do
    : >"$W/t.$case.$size.$tool" && : >"$W/t.$case.$size.$tool.cpu" && : >"$W/t.$case.$size.$tool.server" && : >"$W/t.$case.$size.$tool.client"
  done
  for r in $(seq 0 "$runs"); do
    for tool in "$@"; do
      [ -z "${failed[$tool]:-}" ] || continue
      local cap_var="CAP_${tool//-/_}"
      local cap=${!cap_var:-}
      if [ -n "$cap" ]; then
        # capped tool: no warm-up, at most $cap timed runs
        [ "$r" -ge 1 ] && [ "$r" -le "$cap" ] || continue
      fi
      "prep_$tool" "$size" >"$W/prep.out" 2>&1 || { failed[$tool]="setup failed: $(tail -n1 "$W/prep.out")"; continue; }
      local c0 c1 s0=0 s1=0 k0 k1
      [ -z "$probe" ] || s0=$($probe)
      children_cpu; k0=$CHILDREN_MS
      c0=$(machine_cpu_ms)
      t0=$(now_us)
      if "do_$tool" "$size" >"$W/out" 2>&1; then
        t1=$(now_us)
        c1=$(machine_cpu_ms)
        children_cpu; k1=$CHILDREN_MS
        [ -z "$probe" ] || s1=$($probe)
        if why=$("check_$tool" "$size" 2>&1); then
          if [ "$r" -ne 0 ]; then
            echo $((t1 - t0)) >>"$W/t.$case.$size.$tool"
            echo $((c1 - c0)) >>"$W/t.$case.$size.$tool.cpu"
            [ -z "$probe" ] || echo $((s1 - s0)) >>"$W/t.$case.$size.$tool.server"
            echo $((k1 - k0)) >>"$W/t.$case.$size.$tool.client"
          fi
        else
          failed[$tool]="run $r: not every target written: ${why//$'\n'/ }"
        fi
      else
        failed[$tool]="run $r exited non-zero: $(grep -v '^{"event":"target"' "$W/out" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
      fi
      [ -z "${failed[$tool]:-}" ] || log "$case $size $tool: ${failed[$tool]}"
    done
    [ "$r" -eq 0 ] || log "$case $size: round $r/$runs done"
  done
  for tool in "$@"; do
    if [ -n "${failed[$tool]:-}" ]; then
      record "$case" "$size" "$tool" "$W/t.$case.$size.$tool" FAILED "${failed[$tool]}"
    else
      local cap_var="CAP_${tool//-/_}" note=""
      [ -z "${!cap_var:-}" ] || note="${!cap_var} timed run(s), no warm-up (capped: slow at this size)"
      record "$case" "$size" "$tool" "$W/t.$case.$size.$tool" ok "$note"
    fi
  done
}
