# shellcheck shell=bash
# scripts/bench-lib/ssh.sh — the SSH cases of scripts/bench: BENCH_HOSTS (default 4) sshd hosts,
# each in its own network namespace behind a veth pair (10.231.K.2, host side 10.231.K.1) and its
# own mount namespace, so that an account's home on one host is not its home on another. A target
# is an account on a host: target i of a tool is account i/HOSTS on host i%HOSTS, and every tool
# (llmx, the OpenSSH loop, Ansible) has its own accounts. The sshd hosts keep OpenSSH's stock
# limits (MaxStartups 10:30:100, MaxSessions 10): nothing is raised for llmx.

SSH_NET=${BENCH_NET:-10.231}
SSH_HOSTS=${BENCH_HOSTS:-4}
SSH_TOOLS=(llmx ssh ansible)
SSH_USERS=()
SSH_NS=()
ANSIBLE_VENV=${BENCH_CACHE:-/var/cache/llmx-bench}/venv

ssh_cleanup() {
  # Ansible's ControlPersist masters (ours: their sockets are under our client's HOME).
  local s ns pid
  for s in "$W"/client/.ansible/cp/*; do
    [ -S "$s" ] && ssh -o ControlPath="$s" -O exit bench >/dev/null 2>&1 || true
  done
  for ns in "${SSH_NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  for ns in "${SSH_NS[@]}"; do
    for _ in $(seq 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
    ip link del "${ns}h" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for u in "${SSH_USERS[@]}"; do userdel -f "$u" 2>/dev/null || true; done
}

# probe_ssh: CPU time (ms) of the sshd hosts so far, with the per-connection children they reaped
# (each connection's sshd, its privilege-separated children and the user's shell and commands).
probe_ssh() {
  local k pids=()
  for ((k = 0; k < SSH_HOSTS; k++)); do pids+=("$(cat "$W/hosts/$k/sshd.pid" 2>/dev/null)"); done
  proc_cpu_ms "${pids[@]}"
}

ssh_account_to() { printf -v "$1" '%s' "${PFX}${2:0:1}$3"; } # VAR TOOL J: VAR := the account (no subshell)
ssh_account() { local a; ssh_account_to a "$1" "$2"; echo "$a"; } # TOOL J
ssh_host() { echo "$SSH_NET.$1.2"; }         # K
# ssh_targets TOOL N: "user@address" for the first N targets of TOOL.
ssh_targets() {
  local i
  for ((i = 0; i < $2; i++)); do echo "$(ssh_account "$1" $((i / SSH_HOSTS)))@$(ssh_host $((i % SSH_HOSTS)))"; done
}
# ssh_files TOOL N: where those targets' auth.json are, seen from this machine.
ssh_files() {
  local i
  for ((i = 0; i < $2; i++)); do
    echo "$W/hosts/$((i % SSH_HOSTS))/homes/$(ssh_account "$1" $((i / SSH_HOSTS)))/.llmx/auth.json"
  done
}

ssh_setup() { # MAX_SIZE
  local max=$1 per k j u tool ns
  per=$(((max + SSH_HOSTS - 1) / SSH_HOSTS))
  if ip -4 addr | grep -q " $SSH_NET\."; then die "$SSH_NET.0.0/16 is in use on this machine: set BENCH_NET=10.x"; fi
  mkdir -p /run/sshd "$W/h"
  CLIENT=$W/client
  mkdir -p "$CLIENT/.ssh" "$CLIENT/.llmx"
  chmod 700 "$CLIENT/.ssh" "$CLIENT/.llmx"
  ssh-keygen -q -t ed25519 -N '' -C bench -f "$CLIENT/.ssh/id_ed25519"
  install -m 644 "$CLIENT/.ssh/id_ed25519.pub" "$W/authorized_keys"
  : >"$CLIENT/.ssh/known_hosts"
  : >"$CLIENT/.ssh/config"
  log "ssh: $((per * ${#SSH_TOOLS[@]})) accounts ($per per tool, each on $SSH_HOSTS hosts)"
  for tool in "${SSH_TOOLS[@]}"; do
    for ((j = 0; j < per; j++)); do
      u=$(ssh_account "$tool" "$j")
      useradd -M -N -p '*' -d "$W/h/$u" -s /bin/sh "$u" || die "useradd $u failed"
      SSH_USERS+=("$u")
    done
  done
  for ((k = 0; k < SSH_HOSTS; k++)); do
    ns="${PFX}n$k"
    mkdir -p "$W/hosts/$k/homes"
    chmod 755 "$W/hosts/$k" "$W/hosts/$k/homes"
    for u in "${SSH_USERS[@]}"; do
      install -d -m 700 -o "$u" -g users "$W/hosts/$k/homes/$u"
      case $u in "${PFX}a"*) install -d -m 700 -o "$u" -g users "$W/hosts/$k/homes/$u/.llmx" ;; esac
    done
    ssh-keygen -q -t ed25519 -N '' -f "$W/hosts/$k/host_ed25519"
    echo "$(ssh_host "$k") $(cut -d' ' -f1,2 "$W/hosts/$k/host_ed25519.pub")" >>"$CLIENT/.ssh/known_hosts"
    cat >"$W/hosts/$k/sshd_config" <<CFG
Port 22
ListenAddress $(ssh_host "$k")
HostKey $W/hosts/$k/host_ed25519
PidFile $W/hosts/$k/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $W/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
AllowUsers ${PFX}*
${SSHD_EXTRA:-}
CFG
    ip netns add "$ns"
    SSH_NS+=("$ns")
    ip -n "$ns" link set lo up
    ip link add "${ns}h" type veth peer name eth0 netns "$ns"
    ip addr add "$SSH_NET.$k.1/30" dev "${ns}h"
    ip link set "${ns}h" up
    ip -n "$ns" addr add "$(ssh_host "$k")/30" dev eth0
    ip -n "$ns" link set eth0 up
    # Its own mount namespace: this host's homes appear at $W/h, where passwd says they are.
    ip netns exec "$ns" unshare -m --propagation private sh -c \
      "mount --bind '$W/hosts/$k/homes' '$W/h' && exec /usr/sbin/sshd -D -e -f '$W/hosts/$k/sshd_config'" \
      2>"$W/hosts/$k/sshd.log" &
  done
  for ((k = 0; k < SSH_HOSTS; k++)); do
    local banner=""
    for _ in $(seq 1 500); do
      banner=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/22" && read -r -t 2 b <&3 && echo "$b"' _ "$(ssh_host "$k")" 2>/dev/null || true)
      case "$banner" in SSH-*) break ;; esac
      sleep 0.02
    done
    case "$banner" in SSH-*) ;; *) die "sshd on $(ssh_host "$k") did not answer: $(tail -n3 "$W/hosts/$k/sshd.log")" ;; esac
  done
  log "ssh: $SSH_HOSTS sshd hosts up on $SSH_NET.{0..$((SSH_HOSTS - 1))}.2 (stock MaxStartups/MaxSessions)"
}

ansible_setup() {
  if [ ! -x "$ANSIBLE_VENV/bin/ansible" ]; then
    log "ansible: installing ansible-core from PyPI into $ANSIBLE_VENV"
    mkdir -p "$(dirname "$ANSIBLE_VENV")"
    /usr/bin/python3 -m venv "$ANSIBLE_VENV" >"$W/venv.log" 2>&1 \
      && "$ANSIBLE_VENV/bin/pip" install -q ansible-core >>"$W/venv.log" 2>&1 \
      || { log "ansible: install failed: $(tail -n2 "$W/venv.log" | tr '\n' ' ')"; return 1; }
  fi
  ANSIBLE_VERSION=$("$ANSIBLE_VENV/bin/ansible" --version 2>/dev/null | sed -n 1p)
  export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=$W/ansible-tmp \
    ANSIBLE_PRIVATE_KEY_FILE=$CLIENT/.ssh/id_ed25519 ANSIBLE_RETRY_FILES_ENABLED=False \
    ANSIBLE_SSH_COMMON_ARGS="-F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$CLIENT/.ssh/known_hosts"
}

# ---- the three tools ------------------------------------------------------------------------------
SSH_AUTH() { echo "$CLIENT/.llmx/auth.json"; }

prep_llmx_ssh() { fresh_auth "$(SSH_AUTH)"; }
do_llmx_ssh() {
  local t=()
  mapfile -t t < <(ssh_targets llmx "$1" | sed 's/^/ssh:/')
  HOME=$CLIENT LLMX_HOME=$CLIENT/.llmx "$LLMX" auth push --json ${BENCH_JOBS:+-j "$BENCH_JOBS"} "${t[@]}"
}
check_llmx_ssh() { llmx_all_written "$W/out" "$1" && ssh_same llmx "$1"; }

ssh_put() {
  ssh -F /dev/null -i "$CLIENT/.ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$CLIENT/.ssh/known_hosts" \
    "$1" 'mkdir -p ~/.llmx && cat > ~/.llmx/auth.json' <"$(SSH_AUTH)"
}
prep_ssh_loop() { fresh_auth "$(SSH_AUTH)"; }
do_ssh_loop() { ssh_targets ssh "$1" | xargs -P 16 -I{} bash -c 'ssh_put "$1"' _ {}; }
check_ssh_loop() { ssh_same ssh "$1"; }

prep_ansible() { fresh_auth "$(SSH_AUTH)" && ansible_inventory "$W/ansible-$1.ini" < <(ssh_targets ansible "$1"); }
do_ansible() { ansible_copy "$W/ansible-$1.ini"; }
# ansible_inventory FILE: the inventory of the targets on stdin (USER@HOST or USER@HOST:PORT), once.
ansible_inventory() {
  local t i=0 u hp
  [ -f "$1" ] && return 0
  {
    echo "[fleet]"
    while read -r t; do
      u=${t%@*} hp=${t#*@}
      case $hp in *:*) hp="${hp%:*} ansible_port=${hp##*:}" ;; esac
      echo "t$i ansible_host=$hp ansible_user=$u home=$W/h/$u"
      i=$((i + 1))
    done
    echo "[fleet:vars]"
    echo "ansible_python_interpreter=/usr/bin/python3"
  } >"$1"
}
# ansible_copy INVENTORY: Ansible's copy of auth.json to every host of it, forks=16.
ansible_copy() {
  HOME=$CLIENT "$ANSIBLE_VENV/bin/ansible" fleet -i "$1" -f 16 -o -m copy \
    -a "src=$(SSH_AUTH) dest={{ home }}/.llmx/auth.json mode=0600"
}
check_ansible() { ssh_same ansible "$1"; }

# ssh_same TOOL N: every one of TOOL's first N targets holds exactly the current auth.json.
ssh_same() {
  local f bad=0 first=""
  while read -r f; do
    cmp -s "$(SSH_AUTH)" "$f" || { bad=$((bad + 1)); [ -n "$first" ] || first=$f; }
  done < <(ssh_files "$1" "$2")
  [ "$bad" -eq 0 ] || { echo "$bad of $2 targets do not hold the new auth.json (first: $first)"; return 1; }
}

ssh_cases() { # SIZES...
  local n
  export -f ssh_put SSH_AUTH
  export CLIENT
  [ -n "${BENCH_NO_ANSIBLE:-}" ] && ANSIBLE_MISSING=1
  [ -n "${ANSIBLE_MISSING:-}" ] || ansible_setup || ANSIBLE_MISSING=1
  for n in "$@"; do
    local tools=(llmx_ssh ssh_loop) runs=$RUNS
    [ "$n" -le 64 ] || runs=$RUNS_LARGE
    if [ -z "${ANSIBLE_MISSING:-}" ]; then
      tools+=(ansible)
      if [ "$n" -gt "${ANSIBLE_FULL_MAX:-64}" ]; then CAP_ansible=1; else unset CAP_ansible; fi
    elif [ -n "${BENCH_NO_ANSIBLE:-}" ]; then
      printf 'ssh\t%s\tansible\t0\t\tSKIPPED\tnot run (BENCH_NO_ANSIBLE=1)\n' "$n" >>"$W/results.tsv"
    else
      printf 'ssh\t%s\tansible\t0\t\tFAILED\tansible-core could not be installed (see log)\n' "$n" >>"$W/results.tsv"
    fi
    log "ssh: $n targets, $runs runs (tools: ${tools[*]})"
    run_case ssh "$n" "$runs" "${tools[@]}"
  done
  unset CAP_ansible
  local big=${*: -1} t=()
  mapfile -t t < <(ssh_targets llmx "$big" | sed 's/^/ssh:/')
  HOME=$CLIENT LLMX_HOME=$CLIENT/.llmx push_rss "$big SSH targets" "$(SSH_AUTH)" "${t[@]}"
}
