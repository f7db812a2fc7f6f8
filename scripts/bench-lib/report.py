#!/usr/bin/env python3
"""scripts/bench-lib/report.py — turns the results of one scripts/bench run into its table.

Reads results.tsv and figures.tsv (see common.sh) and meta.env from the run's work directory,
prints the tables (markdown, readable as plain text) to stdout, and writes the whole report as
markdown to the file named by the second argument (unless it is "-").
"""
import os
import sys

work, out = sys.argv[1], sys.argv[2]

meta = {}
for line in open(os.path.join(work, "meta.env"), encoding="utf-8"):
    k, _, v = line.rstrip("\n").partition("=")
    meta[k] = v

rows = []
for line in open(os.path.join(work, "results.tsv"), encoding="utf-8"):
    f = line.rstrip("\n").split("\t")
    f += [""] * (10 - len(f))
    rows.append(dict(case=f[0], size=int(f[1]), tool=f[2], runs=f[3], median=f[4], status=f[5], note=f[6],
                     cpu=f[7], server=f[8], client=f[9]))
figures = []
if os.path.exists(os.path.join(work, "figures.tsv")):
    for line in open(os.path.join(work, "figures.tsv"), encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        f += [""] * (6 - len(f))
        figures.append(dict(name=f[0], value=f[1], unit=f[2], target=f[3], verdict=f[4], note=f[5]))

LABEL = {
    "llmx_ssh": "`llmx auth push` (one command, default --jobs)",
    "ssh_loop": "OpenSSH loop, `xargs -P16 ssh … 'mkdir -p ~/.llmx && cat > ~/.llmx/auth.json'`",
    "ansible": "Ansible `copy`, forks=16",
    "llmx_docker": "`llmx auth push` (one command, default --jobs)",
    "docker_recipe": "seed's recipe, `xargs -P16` (exec mkdir + cp + exec chown)",
    "docker_cp": "bare `docker cp`, `xargs -P16`",
    "llmx_k8s": "`llmx auth push k8s:NS/label=…`",
    "kubectl_exec": "`xargs -P16 kubectl exec -i … cat >`",
    "slow_path": "llmx over a root-owned auth.json (slow path)",
    "fast_path": "llmx over its own auth.json (fast path)",
    "llmx_wan": "`llmx auth push` (one command, defaults)",
    "ssh_wan16": "OpenSSH loop, `xargs -P16 ssh … 'umask 077; mkdir -p ~/.llmx; cat > ~/.llmx/auth.json'`",
    "ssh_wan64": "OpenSSH loop, the same with `xargs -P64`",
    "ansible_wan": "Ansible `copy`, forks=16",
}
OURS = {"llmx_ssh", "llmx_docker", "llmx_k8s", "slow_path", "llmx_wan"}
RTT = meta.get("WAN_RTT", "?")
KIND = {"ssh": "SSH", "docker": "Docker", "k8s": "Kubernetes", "docker-owner": "Docker, owner",
        "wan": f"SSH, {RTT} ms RTT"}
UNIT = {"ssh": "targets", "docker": "containers", "k8s": "pods", "docker-owner": "containers", "wan": "hosts"}


def target_for(case, size, tool):
    """The issue's targets for llmx/peer (None: no stated target, the ratio is shown only)."""
    if case == "ssh" and tool == "ssh_loop" and size <= 64:
        return 0.15
    if case == "docker-owner" and tool == "fast_path":
        return 1.5
    if case == "k8s" and tool == "kubectl_exec":
        return 0.5
    if case == "wan" and tool == "ssh_wan16" and size >= 64:
        return 0.25
    return None


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


lines = []
p = lines.append
p("# Benchmarks")
p("")
p(f"Produced by `{meta.get('COMMAND', 'scripts/bench')}` on {meta.get('DATE', '?')}, "
  f"in {meta.get('WALL', '?')} s of wall time.")
p("")
p(f"**Machine load: {meta.get('LOAD_BEFORE', '?')} before, {meta.get('LOAD_AFTER', '?')} after** "
  f"(1/5/15-minute load averages on {meta.get('NPROC', '?')} cores). "
  + ("Other work ran on this machine during this run: the absolute times and the ratios are noisy; "
     "rerun on a quiet machine for the figures to quote."
     if num(meta.get("LOAD_BEFORE", "0").split()[0]) is not None
     and num(meta.get("LOAD_BEFORE", "0").split()[0]) >= 0.5 * int(meta.get("NPROC", "1") or 1)
     else "A quiet machine."))
p("")
p("| machine | |")
p("|---|---|")
p(f"| cores (nproc) | {meta.get('NPROC', '?')} |")
p(f"| RAM | {meta.get('RAM', '?')} |")
p(f"| kernel | {meta.get('KERNEL', '?')} |")
p(f"| OS | {meta.get('OS', '?')} |")
p(f"| llmx | {meta.get('LLMX_VERSION', '?')}, commit {meta.get('COMMIT', '?')} (release build) |")
p(f"| OpenSSH | {meta.get('OPENSSH', '?')} |")
p(f"| Ansible | {meta.get('ANSIBLE', 'not used')} |")
p(f"| Docker | {meta.get('DOCKER', 'not used')} |")
p(f"| Kubernetes | {meta.get('K8S', 'not used')} |")
p(f"| RLIMIT_NOFILE | {meta.get('NOFILE', '?')} (soft limit llmx ran with; the script does not raise it) |")
p("")

p("## Push: llmx beside the tools people use instead")
p("")
p("Medians of the timed runs (after one untimed warm-up round); the tools take turns run by run; "
  "each tool writes to its own targets and every run writes a new auth.json, checked afterwards. "
  "`llmx/peer` below 1 means llmx is faster.")
p("")
p("| kind | size | tool | runs | median | per target | CPU / target | server CPU / target | llmx/peer | target | result |")
p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
groups = {}
for r in rows:
    groups.setdefault((r["case"], r["size"]), []).append(r)
order = {"ssh": 0, "wan": 1, "docker": 2, "docker-owner": 3, "k8s": 4}
missed = []
for (case, size), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
    ours = next((r for r in rs if r["tool"] in OURS), None)
    ours_ms = num(ours["median"]) / 1000 if ours and ours["status"] == "ok" and num(ours["median"]) else None
    for r in rs:
        label = LABEL.get(r["tool"], r["tool"])
        kind = f"{KIND.get(case, case)}"
        sz = f"{size} {UNIT.get(case, '')}"
        if r["status"] != "ok":
            p(f"| {kind} | {sz} | {label} | {r['runs']} | - | - | - | - | - | - | **{r['status']}**: {r['note']} |")
            if r["status"] == "FAILED":
                missed.append(f"{kind} {sz} {r['tool']}: {r['note']}")
            continue
        m = num(r["median"]) / 1000
        per = m / size
        ratio, tgt, res = "-", "-", "ok"
        if r is not ours and ours_ms is not None:
            q = ours_ms / m
            ratio = f"{q:.2f}×"
            t = target_for(case, size, r["tool"])
            if t is not None:
                tgt = f"≤ {t}×"
                res = "ok" if q <= t else "MISSED"
                if res == "MISSED":
                    missed.append(f"{kind} {sz}: llmx/{r['tool']} = {q:.2f}× (target ≤ {t}×)")
        note = f" ({r['note']})" if r["note"] else ""
        cpu = f"{num(r['cpu']) / size:.1f} ms" if num(r["cpu"]) is not None else "-"
        server = f"{num(r['server']) / size:.1f} ms" if num(r["server"]) is not None else "-"
        p(f"| {kind} | {sz} | {label} | {r['runs']} | {m:.1f} ms | {per:.2f} ms | {cpu} | {server} | {ratio} "
          f"| {tgt} | {res}{note} |")
p("")

p("CPU / target: the CPU time the whole machine spent in a run (client, servers, everything; from "
  "/proc/stat), per target. Server CPU / target: the part spent by the servers (the sshds with their "
  "per-connection children and the user's shell and commands; the Docker Engine, containerd and the "
  "shims with runc), per target. On this machine client and servers share the same cores.")
p("")

floors = []
for (case, size), rs in sorted(groups.items()):
    ours = next((r for r in rs if r["tool"] in OURS and r["status"] == "ok"), None)
    if not ours or num(ours["server"]) is None:
        continue
    cores = int(meta.get("NPROC", "1") or 1)
    floor_ms = num(ours["server"]) / cores
    for r in rs:
        t = target_for(case, size, r["tool"])
        if r is ours or r["status"] != "ok" or t is None or not num(r["median"]):
            continue
        peer_ms = num(r["median"]) / 1000
        floors.append(f"| {KIND.get(case, case)} | {size} {UNIT.get(case, '')} | {num(ours['server']) / size:.1f} ms "
                      f"| {floor_ms:.0f} ms | {peer_ms:.0f} ms | {floor_ms / peer_ms:.2f}× | ≤ {t}× |")
if floors:
    p("## The servers' own floor")
    p("")
    p("What llmx's run cost the servers alone (CPU time), spread over this machine's cores, against "
      "the peer's wall time: the ratio llmx could reach if its own client cost nothing and the "
      "servers kept their cost. When that floor is above the target, the target cannot be met on "
      "this machine by the client's work alone.")
    p("")
    p("| kind | size | llmx's server CPU / target | servers' floor (CPU / cores) | peer's median | floor/peer | target |")
    p("|---|---:|---:|---:|---:|---:|---:|")
    for f in floors:
        p(f)
    p("")

wan = {r["size"]: r for r in rows if r["case"] == "wan" and r["tool"] == "llmx_wan" and r["status"] == "ok"}
if wan and num(RTT):
    p("## WAN: llmx in round-trip times and against the servers' floor")
    p("")
    p(f"A push's wall time in RTTs ({RTT} ms) and, beside it, the CPU floors of the same run, over this "
      "machine's cores (on this machine the sshds, the delay proxy and the kernel's work for both share "
      "the client's two cores; on a real WAN none of it costs the client anything):")
    p("")
    p("- *attributed*: the CPU time of the sshds (with every process of their sessions) and of the delay "
      "proxy;")
    p("- *everything but llmx*: the whole machine's CPU time (/proc/stat) less llmx's own (its user and "
      "system time): also the kernel's work not charged to any process (loopback and veth traffic, "
      "process set-up and teardown). It is the time the run could take if llmx's client cost nothing;")
    p("- *machine busy*: the whole machine's CPU time over the wall time and the cores: near 100 % the "
      "run is bound by this machine's CPU, not by the network.")
    p("")
    p("| hosts | llmx median | in RTTs | llmx's own CPU | attributed floor | llmx/attributed | "
      "everything but llmx | llmx/that | machine busy | bound |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    cores = int(meta.get("NPROC", "1") or 1)
    for size, r in sorted(wan.items()):
        m = num(r["median"]) / 1000
        server, cpu, own = num(r["server"]), num(r["cpu"]), num(r["client"])
        floor = server / cores if server is not None else None
        rest = (cpu - own) / cores if cpu is not None and own is not None else None
        busy = cpu / cores / m if cpu is not None else None
        in_rtt = m / num(RTT)
        q = m / floor if floor else None
        q2 = m / rest if rest else None
        bound = "this machine's CPU" if busy and busy >= 0.8 else "round trips (network)"
        p(f"| {size} | {m:.0f} ms | {in_rtt:.1f} | {f'{own:.0f} ms' if own is not None else '-'} "
          f"| {f'{floor:.0f} ms' if floor else '-'} | {f'{q:.2f}×' if q else '-'} "
          f"| {f'{rest:.0f} ms' if rest else '-'} | {f'{q2:.2f}×' if q2 else '-'} "
          f"| {f'{busy * 100:.0f} %' if busy else '-'} | {bound} |")
        if size == 16 and in_rtt > 10:
            missed.append(f"WAN 16 hosts: {in_rtt:.1f} RTT of wall time (target ≤ 10)")
        if size >= 256 and q2 and q2 > 1.5:
            missed.append(f"WAN {size} hosts: {q2:.2f}× the CPU floor of everything but llmx (target ≤ 1.5×)")
    p("")

p("## Growth from the smallest to the largest size (llmx)")
p("")
p("Time must grow no worse than linearly: time(largest)/time(smallest) ≤ largest/smallest.")
p("")
p("| kind | sizes | llmx medians | time ratio | size ratio | result |")
p("|---|---|---|---:|---:|---|")
for case, tool in (("ssh", "llmx_ssh"), ("wan", "llmx_wan"), ("docker", "llmx_docker"), ("k8s", "llmx_k8s")):
    ok = sorted((r["size"], num(r["median"]) / 1000) for r in rows
                if r["case"] == case and r["tool"] == tool and r["status"] == "ok" and num(r["median"]))
    if len(ok) < 2:
        p(f"| {KIND[case]} | {', '.join(str(s) for s, _ in ok) or '-'} | - | - | - | not measured (one size only) |")
        continue
    (s0, t0), (s1, t1) = ok[0], ok[-1]
    g, lin = t1 / t0, s1 / s0
    res = "ok" if g <= lin else "MISSED"
    if res == "MISSED":
        missed.append(f"{KIND[case]} growth {s0}→{s1}: {g:.1f}× for {lin:.0f}× the targets")
    p(f"| {KIND[case]} | {' → '.join(str(s) for s, _ in ok)} | {' → '.join(f'{t:.0f} ms' for _, t in ok)} "
      f"| {g:.2f}× | {lin:.0f}× | {res} |")
p("")

p("## Start-up, memory, ownership")
p("")
p("| figure | value | target | result | how |")
p("|---|---:|---:|---|---|")
for f in figures:
    unit = f" {f['unit']}" if f["unit"] else ""
    tgt = f"≤ {f['target']}{unit}" if num(f["target"]) is not None else f["target"]
    p(f"| {f['name']} | {f['value']}{unit} | {tgt} | {f['verdict']} | {f['note']} |")
    if f["verdict"] not in ("ok", "", "n/a"):
        missed.append(f"{f['name']}: {f['value']}{unit} (target {tgt})")
p("")
p("## Missed targets and failures")
p("")
if missed:
    for m in missed:
        p(f"- {m}")
else:
    p("None.")
p("")
skips = [r for r in rows if r["status"] == "SKIPPED"]
for r in skips:
    p(f"- {KIND.get(r['case'], r['case'])}: {r['note']}")
if skips:
    p("")

report = "\n".join(lines) + "\n"
sys.stdout.write(report)
if out != "-":
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks-notes.md")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(report)
        if os.path.exists(notes):
            fh.write(open(notes, encoding="utf-8").read())
