"""`make demo`: a 3-node BIRD lab (IPv4+IPv6), one agent per node, a CalicoNodeStatus filled live.

`make demo-down` (this script with --down) stops the agents, deletes the demo's object and removes
the lab. Agents run in the background with their logs, pid and status files under the lab
directory; they use the default embedded datastore, so plain `calico-nodestatus get ...` sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from calico_nodestatus.lab.lab import Lab, lab_root

LAB = "demo"
NODES = 3
OBJECT = "demo-node1-status"
PERIOD_SECONDS = 10
FILL_TIMEOUT_SECONDS = 60
CLI = [sys.executable, "-m", "calico_nodestatus"]
METRICS_HOST = "127.0.0.1"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def cli(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, text=True, capture_output=True, check=check)


def agents_dir() -> Path:
    return lab_root() / LAB / "agents"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((METRICS_HOST, 0))
        return int(probe.getsockname()[1])


def start_agent(name: str, socket_v4: Path, socket_v6: Path | None, metrics_port: int) -> int:
    directory = agents_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [*CLI, "--log-level", "info", "agent", "--node", name, "--bird-socket", str(socket_v4)]
    if socket_v6 is not None:  # BIRD 1.6 runs a separate IPv6 daemon
        argv += ["--bird6-socket", str(socket_v6)]
    argv += ["--status-file", str(directory / f"{name}.status.json")]
    # Agents side by side on one machine: each its own exporter port, on loopback only.
    argv += ["--metrics-host", METRICS_HOST, "--metrics-port", str(metrics_port)]
    with (directory / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (directory / f"{name}.pid").write_text(f"{process.pid}\n")
    return process.pid


def manifest(node: str) -> str:
    return (
        "apiVersion: projectcalico.org/v3\n"
        "kind: CalicoNodeStatus\n"
        "metadata:\n"
        f"  name: {OBJECT}\n"
        "spec:\n"
        "  classes:\n    - Agent\n    - BGP\n    - Routes\n"
        f"  node: {node}\n"
        f"  updatePeriodSeconds: {PERIOD_SECONDS}\n"
    )


def wait_filled() -> None:
    deadline = time.monotonic() + FILL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        result = cli("get", "caliconodestatus", OBJECT, "-o", "json", check=False)
        if result.returncode == 0:
            document = json.loads(result.stdout)
            item = document["items"][0] if "items" in document else document
            if (item.get("status") or {}).get("lastUpdated"):
                return
        time.sleep(0.5)
    raise SystemExit(
        f"error: {OBJECT} was not filled within {FILL_TIMEOUT_SECONDS}s; see {agents_dir()}/*.log"
    )


def up() -> None:
    started = time.monotonic()
    if os.geteuid() != 0:
        raise SystemExit("error: the demo builds network namespaces and needs root (run it with sudo)")
    step(f"lab up: {NODES} nodes, BIRD 1.6 like calico-node, IPv4+IPv6 (lab '{LAB}')")
    subprocess.run(
        [*CLI, "lab", "up", "--nodes", str(NODES), "--name", LAB, "--bird", "1.6", "--ipv6"], check=True
    )
    nodes = Lab.open(LAB).nodes
    stop_agents()  # a re-run replaces the previous demo's agents
    pids = {}
    for node in nodes:
        port = free_loopback_port()
        pids[node.name] = pid = start_agent(node.name, node.socket_v4, node.socket_v6, port)
        step(
            f"agent for {node.name} started (pid {pid}, log {agents_dir() / (node.name + '.log')}, "
            f"metrics http://{METRICS_HOST}:{port}/metrics)"
        )
    first = nodes[0].name
    step(
        f"apply CalicoNodeStatus {OBJECT} for {first}: classes [Agent, BGP, Routes], period {PERIOD_SECONDS}s"
    )
    cli("apply", "-f", "-", stdin=manifest(first))
    wait_filled()
    dead = [name for name, pid in pids.items() if not _our_agent(pid)]
    if dead:
        raise SystemExit(f"error: the agents of {', '.join(dead)} exited; see {agents_dir()}/<node>.log")
    elapsed = time.monotonic() - started
    step(f"filled after {elapsed:.0f}s: calico-nodestatus get caliconodestatus {OBJECT} -o yaml")
    print(cli("get", "caliconodestatus", OBJECT, "-o", "yaml").stdout)
    others = [node.name for node in nodes[1:]]
    print(
        "Explore (CLI: .venv/bin/calico-nodestatus):\n"
        f"  calico-nodestatus get caliconodestatus -o wide      # every object, agent alive/stale\n"
        f"  calico-nodestatus summary                          # the fleet view, unhealthy first\n"
        f"  calico-nodestatus lab exec {first} -- calico-nodestatus node status   # calicoctl's view\n"
        f"  calico-nodestatus lab bird stop {others[0]}              # a session fails; within "
        f"{PERIOD_SECONDS}s the status shows it\n"
        f"  calico-nodestatus lab bird start {others[0]}\n"
        f"  agent logs: {agents_dir()}/<node>.log\n"
        "Stop everything: make demo-down"
    )


def _our_agent(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"calico_nodestatus" in argv and b"agent" in argv


def stop_agents() -> None:
    directory = agents_dir()
    if not directory.is_dir():
        return
    pids = []
    for pid_file in sorted(directory.glob("*.pid")):
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _our_agent(pid):
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        pid_file.unlink()
    deadline = time.monotonic() + 5
    while any(_our_agent(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _our_agent(pid):
            os.kill(pid, signal.SIGKILL)
    if pids:
        step(f"stopped {len(pids)} agents")


def down() -> None:
    stop_agents()
    if cli("delete", "caliconodestatus", OBJECT, check=False).returncode == 0:
        step(f"deleted {OBJECT}")
    subprocess.run([*CLI, "lab", "down", "--name", LAB], check=False)
    step("demo removed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--down", action="store_true", help="stop the demo and remove the lab")
    args = parser.parse_args()
    try:
        down() if args.down else up()
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip() if isinstance(exc.stderr, str) else ""
        raise SystemExit(f"error: {' '.join(map(str, exc.cmd))} failed ({exc.returncode}) {detail}") from exc


if __name__ == "__main__":
    main()
