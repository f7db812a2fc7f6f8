# shellcheck shell=bash
# scripts/bench-lib/wan.sh — the WAN case of scripts/bench: SSH pushes to hosts WAN_RTT ms away.
#
# Each simulated host is one port of the delay proxy (delay_proxy.py) on 127.0.0.1, which holds
# every chunk RTT/2 in each direction and counts the direction changes of every connection. Behind
# it are the sshd hosts of ssh.sh (BENCH_HOSTS network namespaces): target i of a tool is port
# base+i, i.e. account i/HOSTS on sshd host i%HOSTS. A real host has its own sshd and sees one
# connection from a push; here one sshd stands for many hosts, so the sshds' MaxStartups is raised
# (WAN_MAX_STARTUPS) for this case only: the per-host limit llmx must respect is not what is
# measured here (the LAN case keeps the stock limits). Tools: llmx with its defaults, OpenSSH's
# client in `xargs -P16` and `xargs -P64` loops of `ssh … 'umask 077; mkdir -p ~/.llmx; cat >
# ~/.llmx/auth.json'`, and Ansible's `copy` (forks=16) at 16 hosts. Round trips per host come from
# the proxy's log: the median over the connections of a run, then over the runs.

# WAN_TRACE=FILE: the proxy writes every chunk there (delay_proxy.py --trace); WAN_TOOLS="llmx_wan …":
# only these tools (default: all).
WAN_RTT=${WAN_RTT:-100}
WAN_MAX_STARTUPS=${WAN_MAX_STARTUPS:-4000}
WAN_PROXY_PID=

wan_cleanup() {
  [ -z "$WAN_PROXY_PID" ] || { kill "$WAN_PROXY_PID" 2>/dev/null; wait "$WAN_PROXY_PID" 2>/dev/null || true; }
  WAN_PROXY_PID=
}

# wan_free_base N: a first port of N consecutive free ones on 127.0.0.1.
wan_free_base() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    sys.exit(0)
sys.exit("no free port range")
PY
}

wan_setup() { # MAX_SIZE
  local max=$1 i k
  SSHD_EXTRA="MaxStartups $WAN_MAX_STARTUPS" ssh_setup "$max"
  WAN_BASE=$(wan_free_base "$max") || die "wan: no $max free ports on 127.0.0.1"
  : >"$W/wan.map"
  for ((i = 0; i < max; i++)); do
    k=$((i % SSH_HOSTS))
    echo "$((WAN_BASE + i)) $(ssh_host "$k") 22" >>"$W/wan.map"
    echo "[127.0.0.1]:$((WAN_BASE + i)) $(cut -d' ' -f1,2 "$W/hosts/$k/host_ed25519.pub")" >>"$CLIENT/.ssh/known_hosts"
  done
  : >"$W/wan.log"
  python3 "$LIB/delay_proxy.py" --rtt "$WAN_RTT" --map "$W/wan.map" --log "$W/wan.log" --ready "$W/wan.ready" \
    ${WAN_TRACE:+--trace "$WAN_TRACE"} 2>"$W/wan-proxy.err" &
  WAN_PROXY_PID=$!
  for _ in $(seq 1 300); do [ -f "$W/wan.ready" ] && break; sleep 0.05; done
  [ -f "$W/wan.ready" ] || die "wan: the delay proxy did not start: $(tail -n3 "$W/wan-proxy.err")"
  log "wan: delay proxy up ($WAN_RTT ms RTT) on 127.0.0.1:$WAN_BASE-$((WAN_BASE + max - 1)), sshd MaxStartups $WAN_MAX_STARTUPS"
}

# wan_targets TOOL N [PREFIX]: "PREFIXaccount@127.0.0.1:port" for the first N targets of TOOL, one
# a line (no process per target).
wan_targets() {
  local i a
  for ((i = 0; i < $2; i++)); do
    ssh_account_to a "$1" $((i / SSH_HOSTS))
    echo "${3:-}$a@127.0.0.1:$((WAN_BASE + i))"
  done
}
# wan_list TOOL N [PREFIX]: the same into $W/targets.TOOL, made by a prep_ function: the timed
# do_ function only reads it, so that neither the wall time nor the tool's CPU holds the list's
# making.
wan_list() { wan_targets "$@" >"$W/targets.$1"; }

# The proxy's lines of one run: marked before it, read (after the last connection's close has had
# time to travel) by the check.
wan_mark() { wc -l <"$W/wan.log" >"$W/wan.mark"; }
# wan_round_trips TOOL N: the median round trips of the run's connections into $W/rt.TOOL.N, the
# number of connections into $W/conns.TOOL.N.
wan_round_trips() {
  local from
  sleep "$(awk -v r="$WAN_RTT" 'BEGIN {print r / 1000 + 0.3}')"
  from=$(($(cat "$W/wan.mark") + 1))
  tail -n +"$from" "$W/wan.log" | cut -f3 | median >>"$W/rt.$1.$2"
  tail -n +"$from" "$W/wan.log" | grep -c . >>"$W/conns.$1.$2" || true
}

prep_llmx_wan() { fresh_auth "$(SSH_AUTH)" && wan_list llmx "$1" ssh: && wan_mark; }
do_llmx_wan() {
  local t=()
  mapfile -t t <"$W/targets.llmx"
  HOME=$CLIENT LLMX_HOME=$CLIENT/.llmx "$LLMX" auth push --json ${BENCH_JOBS:+-j "$BENCH_JOBS"} "${t[@]}"
}
check_llmx_wan() { llmx_all_written "$W/out" "$1" && ssh_same llmx "$1" && wan_round_trips llmx "$1"; }

wan_put() {
  ssh -F /dev/null -i "$CLIENT/.ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$CLIENT/.ssh/known_hosts" -p "${1##*:}" \
    "${1%:*}" 'umask 077; mkdir -p ~/.llmx; cat > ~/.llmx/auth.json' <"$(SSH_AUTH)"
}
prep_ssh_wan16() { fresh_auth "$(SSH_AUTH)" && wan_list ssh "$1" && wan_mark; }
do_ssh_wan16() { xargs -P 16 -I{} bash -c 'wan_put "$1"' _ {} <"$W/targets.ssh"; }
check_ssh_wan16() { ssh_same ssh "$1" && wan_round_trips ssh "$1"; }
prep_ssh_wan64() { prep_ssh_wan16 "$1"; }
do_ssh_wan64() { xargs -P 64 -I{} bash -c 'wan_put "$1"' _ {} <"$W/targets.ssh"; }
check_ssh_wan64() { check_ssh_wan16 "$@"; }
# The WAN case's floor: the sshds and the delay proxy, which stands for the network and, on this
# machine, takes its CPU from the same two cores (on a real WAN it costs the client nothing).
# llmx does not wait for a connection's close, so when it exits the sshds may still be ending the
# sessions: the probe waits (up to 5 s) until no connection process is left, so that their CPU is
# counted (it is reaped into the listener's cutime/cstime then).
probe_wan() {
  local k i pids=()
  for ((k = 0; k < SSH_HOSTS; k++)); do pids+=("$(cat "$W/hosts/$k/sshd.pid" 2>/dev/null)"); done
  for ((i = 0; i < 100; i++)); do
    for k in "${pids[@]}"; do pgrep -P "$k" >/dev/null && break; done || break
    sleep 0.05
  done
  echo $(($(probe_ssh) + $(proc_cpu_ms "$WAN_PROXY_PID")))
}

# Ansible `copy`, forks=16, at 16 hosts only (its connections persist between runs: its default).
prep_ansible_wan() { fresh_auth "$(SSH_AUTH)" && ansible_inventory "$W/ansible-wan-$1.ini" < <(wan_targets ansible "$1"); }
do_ansible_wan() { ansible_copy "$W/ansible-wan-$1.ini"; }
check_ansible_wan() { ssh_same ansible "$1"; }

# wan_limits N: one more llmx push to N hosts, sampled every 20 ms: peak RSS, open descriptors
# and threads, as figures.
wan_limits() {
  local n=$1 t=() pid fds=0 thr=0 hwm=0 f th h c cpu=0 t0 t1
  fresh_auth "$(SSH_AUTH)"
  mapfile -t t < <(wan_targets llmx "$n" ssh:)
  HOME=$CLIENT LLMX_HOME=$CLIENT/.llmx "$LLMX" auth push --json ${BENCH_JOBS:+-j "$BENCH_JOBS"} "${t[@]}" >"$W/out" 2>&1 &
  pid=$!
  t0=$(now_us)
  while kill -0 "$pid" 2>/dev/null; do
    f=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l || true)
    th=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    c=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true)
    [ -z "$c" ] || cpu=$c
    [ "${f:-0}" -le "$fds" ] || fds=$f
    [ "${th:-0}" -le "$thr" ] || thr=$th
    [ "${h:-0}" -le "$hwm" ] || hwm=$h
    # (A process that just ended has no /proc entry: its last sample is the one before.)
    sleep 0.02
  done
  wait "$pid" || log "wan: the sampled push to $n hosts failed: $(tail -n2 "$W/out")"
  t1=$(now_us)
  figure "llmx's own CPU (user+system), llmx auth push, $n WAN hosts" "$((cpu * 1000 / CLK_TCK))" ms "" n/a \
    "/proc/PID/stat, last sample before exit; the push took $(((t1 - t0) / 1000)) ms; $(awk -v c="$cpu" -v hz="$CLK_TCK" -v n="$n" 'BEGIN {printf "%.1f", c * 1000 / hz / n}') ms a host"
  figure "peak RSS, llmx auth push, $n WAN hosts" "$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')" MB 40 "" \
    "VmHWM, sampled every 20 ms"
  figure "open descriptors (peak), llmx auth push, $n WAN hosts" "$fds" "" "" n/a "/proc/PID/fd, sampled every 20 ms"
  figure "threads (peak), llmx auth push, $n WAN hosts" "$thr" "" "" n/a "/proc/PID/status, sampled every 20 ms"
}

wan_cases() { # SIZES...
  local n tools runs rt conns
  export -f wan_put SSH_AUTH
  export CLIENT
  [ -n "${BENCH_NO_ANSIBLE:-}" ] && ANSIBLE_MISSING=1
  [ -n "${ANSIBLE_MISSING:-}" ] || ansible_setup || ANSIBLE_MISSING=1
  for n in "$@"; do
    # shellcheck disable=SC2206
    tools=(${WAN_TOOLS:-llmx_wan ssh_wan16 ssh_wan64})
    if [ "$n" -eq 16 ] && [ -z "${ANSIBLE_MISSING:-}" ] && [ -z "${WAN_TOOLS:-}" ]; then tools+=(ansible_wan); fi
    runs=$RUNS_WAN
    log "wan: $n hosts at $WAN_RTT ms RTT, $runs runs (tools: ${tools[*]})"
    run_case wan "$n" "$runs" "${tools[@]}"
    for t in llmx ssh; do
      rt=$(median <"$W/rt.$t.$n" 2>/dev/null || true)
      conns=$(median <"$W/conns.$t.$n" 2>/dev/null || true)
      if [ "$t" = llmx ]; then
        figure "round trips per host, llmx auth push, $n WAN hosts" "${rt:--}" "" 7 "" \
          "proxy: direction changes / 2, median over connections and runs; $conns connections per run"
      else
        figure "round trips per host, OpenSSH ssh … cat >, $n WAN hosts" "${rt:--}" "" "" n/a \
          "the same, over both xargs loops' runs; $conns connections per run"
      fi
    done
  done
  wan_status
  wan_limits "${*: -1}"
}

# wan_status: the round trips of `llmx auth status` (a read: connect, the script's header, close)
# and of `llmx auth where` over 16 hosts, as figures.
wan_status() {
  local t=() n=16
  mapfile -t t < <(wan_targets llmx "$n" ssh:)
  : >"$W/rt.status.1"
  : >"$W/rt.where.$n"
  for _ in 1 2 3; do
    wan_mark
    HOME=$CLIENT LLMX_HOME=$CLIENT/.llmx "$LLMX" auth status --json "${t[0]}" >"$W/out" 2>&1 \
      || log "wan: llmx auth status failed: $(tail -n2 "$W/out" | cut -c1-300)"
    wan_round_trips status 1
    wan_mark
    # (Its exit status says whether every holder matches this machine's login: not asked here.)
    HOME=$CLIENT LLMX_HOME=$CLIENT/.llmx "$LLMX" auth where --json "${t[@]}" >"$W/out" 2>&1 || true
    wan_round_trips where "$n"
  done
  figure "round trips, llmx auth status, 1 WAN host" "$(median <"$W/rt.status.1")" "" 6 "" "proxy, median of 3 runs"
  figure "round trips per host, llmx auth where, $n WAN hosts" "$(median <"$W/rt.where.$n")" "" 6 "" \
    "proxy, median over connections and 3 runs"
}
