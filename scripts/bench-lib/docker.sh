# shellcheck shell=bash
# scripts/bench-lib/docker.sh — the Docker cases of scripts/bench: containers of an image built
# here from busybox-static (no registry: `docker import`), running as the user app (uid 1000,
# home /home/app), one pool per tool: llmx, the seed's recipe (docker exec mkdir + docker cp +
# docker exec chown, in parallel), a bare parallel docker cp, and one pool for the slow path
# (an auth.json that docker cp left owned by root, pushed over by llmx).

DOCKER_IMAGE=llmx-bench-app:1
DOCKER_BUILT_IMAGE=
DOCKER_AUTH() { echo "$W/docker-llmx/auth.json"; }

docker_cleanup() {
  docker ps -aq --filter "label=llmx.bench=$PFX" 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
  [ -z "$DOCKER_BUILT_IMAGE" ] || docker rmi "$DOCKER_BUILT_IMAGE" >/dev/null 2>&1 || true
}

docker_image() {
  docker image inspect "$DOCKER_IMAGE" >/dev/null 2>&1 && return 0
  local root=$W/rootfs bb
  bb=$(command -v busybox) || die "busybox missing (apt-get install busybox-static)"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home/app"
  cp "$bb" "$root/bin/busybox"
  for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\napp:x:1000:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  chown 1000:1000 "$root/home/app"
  tar --numeric-owner -C "$root" -cf "$W/rootfs.tar" .
  docker import -c 'CMD ["/bin/sleep","infinity"]' -c 'USER app' "$W/rootfs.tar" "$DOCKER_IMAGE" >/dev/null
  DOCKER_BUILT_IMAGE=$DOCKER_IMAGE
  rm -rf "$root" "$W/rootfs.tar"
}

# probe_docker: CPU time (ms) of the engine so far: dockerd, containerd and the containers' shims,
# with the children they reaped (runc for every exec, the engine's archive helpers).
probe_docker() {
  # shellcheck disable=SC2046
  proc_cpu_ms $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -f containerd-shim)
}
probe_docker-owner() { probe_docker; }

docker_name() { echo "$PFX-$1-$2"; } # POOL I
docker_names() { local i; for ((i = 0; i < $2; i++)); do docker_name "$1" "$i"; done; }

docker_setup() { # MAX_SIZE SLOW_SIZE
  docker info >/dev/null 2>&1 || die "no Docker Engine answers (start one, or set DOCKER_HOST)"
  docker_image
  mkdir -p "$W/docker-llmx" "$W/docker-slow"
  chmod 700 "$W/docker-llmx" "$W/docker-slow"
  local total=$((3 * $1 + $2))
  log "docker: starting $total containers ($1 per tool, $2 for the slow path)"
  {
    for p in llmx recipe cp; do docker_names "$p" "$1"; done
    docker_names slow "$2"
  } | xargs -P 4 -I{} docker run -d --pull never --network none --label "llmx.bench=$PFX" --name {} "$DOCKER_IMAGE" \
    >"$W/docker-run.log" 2>&1 || die "docker run failed: $(tail -n2 "$W/docker-run.log")"
  # The bare docker cp needs the directory (it is what the recipe's mkdir does).
  { docker_names cp "$1"; docker_names slow "$2"; } | xargs -P 8 -I{} docker exec {} mkdir -p /home/app/.llmx \
    || die "docker exec mkdir failed"
  DOCKER_VERSION=$(docker version --format 'Engine {{.Server.Version}}, API {{.Server.APIVersion}}')
}

docker_upper() { docker inspect -f '{{.GraphDriver.Data.UpperDir}}' "$1" 2>/dev/null; }
# docker_same POOL N [OWNER]: every one of POOL's first N containers holds exactly the current
# auth.json (and, with OWNER, owned by that uid). Reads it from the container's overlay upper dir
# when the storage driver has one, else through docker exec. Counts owners into $W/owners.
docker_same() {
  local c bad=0 first="" up f owner
  : >"$W/owners"
  while read -r c; do
    up=$(docker_upper "$c")
    f=$up/home/app/.llmx/auth.json
    if [ -n "$up" ] && [ -d "$up" ]; then
      owner=$(stat -c %u "$f" 2>/dev/null || echo none)
      echo "$owner" >>"$W/owners"
      cmp -s "$(DOCKER_AUTH)" "$f" && { [ -z "${3:-}" ] || [ "$owner" = "$3" ]; } && continue
    else
      owner=$(docker exec "$c" stat -c %u /home/app/.llmx/auth.json 2>/dev/null || echo none)
      echo "$owner" >>"$W/owners"
      docker exec "$c" cat /home/app/.llmx/auth.json 2>/dev/null | cmp -s "$(DOCKER_AUTH)" - \
        && { [ -z "${3:-}" ] || [ "$owner" = "$3" ]; } && continue
    fi
    bad=$((bad + 1))
    [ -n "$first" ] || first=$c
  done < <(docker_names "$1" "$2")
  [ "$bad" -eq 0 ] || { echo "$bad of $2 containers do not hold the new auth.json${3:+ owned by uid $3} (first: $first)"; return 1; }
}
# owners_seen: "uid 1000 x16" etc. for the last docker_same.
owners_seen() { sort "$W/owners" | uniq -c | awk '{printf "%suid %s x%s", (NR > 1 ? ", " : ""), $2, $1}'; }

llmx_docker() { # POOL N
  local t=()
  mapfile -t t < <(docker_names "$1" "$2" | sed 's/^/docker:/')
  LLMX_HOME=$W/docker-llmx "$LLMX" auth push --json "${t[@]}"
}
prep_llmx_docker() { fresh_auth "$(DOCKER_AUTH)"; }
do_llmx_docker() { llmx_docker llmx "$1"; }
check_llmx_docker() { llmx_all_written "$W/out" "$1" && docker_same llmx "$1" 1000; }

docker_recipe_one() {
  docker exec "$1" mkdir -p /home/app/.llmx \
    && docker cp "$(DOCKER_AUTH)" "$1:/home/app/.llmx/auth.json" \
    && docker exec -u 0 "$1" chown 1000:1000 /home/app/.llmx/auth.json
}
prep_docker_recipe() { fresh_auth "$(DOCKER_AUTH)"; }
do_docker_recipe() { docker_names recipe "$1" | xargs -P 16 -I{} bash -c 'docker_recipe_one "$1"' _ {}; }
check_docker_recipe() { docker_same recipe "$1" 1000; }

prep_docker_cp() { fresh_auth "$(DOCKER_AUTH)"; }
do_docker_cp() { docker_names cp "$1" | xargs -P 16 -I{} docker cp "$(DOCKER_AUTH)" "{}:/home/app/.llmx/auth.json"; }
check_docker_cp() { docker_same cp "$1"; }

# The slow path: before each run (untimed) docker cp puts an older auth.json there, owned by root,
# in the directory that belongs to app; llmx then pushes the new one over it.
prep_slow_path() {
  fresh_auth "$W/docker-slow/auth.json"
  docker_names slow "$1" | xargs -P 8 -I{} docker cp "$W/docker-slow/auth.json" "{}:/home/app/.llmx/auth.json" || return 1
  fresh_auth "$(DOCKER_AUTH)"
}
do_slow_path() { llmx_docker slow "$1"; }
# The owner llmx leaves is reported (the target is: corrected to app), not made a failure here.
check_slow_path() { llmx_all_written "$W/out" "$1" && docker_same slow "$1" && owners_seen >"$W/slow-owners"; }
# The fast path beside it: llmx's own pool, whose files llmx wrote (owned by app).
prep_fast_path() { fresh_auth "$(DOCKER_AUTH)"; }
do_fast_path() { llmx_docker llmx "$1"; }
check_fast_path() { llmx_all_written "$W/out" "$1" && docker_same llmx "$1" 1000; }

docker_cases() { # SLOW_SIZE SIZES...
  local slow=$1 n
  shift
  export -f docker_recipe_one DOCKER_AUTH
  for n in "$@"; do
    local runs=$RUNS
    [ "$n" -le 64 ] || runs=$RUNS_LARGE
    log "docker: $n containers, $runs runs"
    run_case docker "$n" "$runs" llmx_docker docker_recipe docker_cp
  done
  log "docker: slow path (root-owned auth.json) vs fast path, $slow containers, $RUNS runs"
  run_case docker-owner "$slow" "$RUNS" slow_path fast_path
  local owners v=MISSED
  owners=$(cat "$W/slow-owners" 2>/dev/null || echo "not measured (the slow path failed)")
  [ -s "$W/slow-owners" ] || v=n/a
  [ "$owners" != "uid 1000 x$slow" ] || v=ok
  figure "slow path: owner of auth.json after the push over a root-owned one" "$owners" "" "uid 1000 (app)" "$v" ""
  local big=${*: -1} t=()
  mapfile -t t < <(docker_names llmx "$big" | sed 's/^/docker:/')
  LLMX_HOME=$W/docker-llmx push_rss "$big containers" "$(DOCKER_AUTH)" "${t[@]}"
}
