"""`make demo`: a 3-node BIRD lab (IPv4+IPv6), one agent per node, a CalicoNodeStatus filled live,
then one BGP object per node (`apply --all-nodes --ttl`) and the mesh matrix they fill.

`make demo-down` (this script with --down) stops the agents, deletes the demo's object, stops the
demo's etcd or control plane and removes the lab. Agents run in the background with their logs, pid
and status files under the lab directory. On the default embedded datastore plain
`calico-nodestatus get ...` sees the demo; with `--datastore etcdv3` the demo starts a private etcd
on loopback (data under the lab directory), with `--datastore kubernetes` a private kube-apiserver
(lab.controlplane) with deploy/'s CRD, RBAC and admission policy applied as shipped; the agents then
run as the DaemonSet's ServiceAccount, the object is applied with kubectl and printed as
`kubectl get -o yaml` shows it. The demo prints the variables that point the CLI at its datastore.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from calico_nodestatus.lab.controlplane import ControlPlane
from calico_nodestatus.lab.lab import Lab, LabNode, lab_root
from calico_nodestatus.lab.model import LabError, validate_lab_name

DEFAULT_NAME = "demo"
DATASTORES = ("embedded", "etcdv3", "kubernetes")
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
AGENT_NAMESPACE = "calico-system"
AGENT_SERVICE_ACCOUNT = "calico-nodestatus"
NODES = 3
PERIOD_SECONDS = 10
FILL_TIMEOUT_SECONDS = 60
ETCD_START_TIMEOUT_SECONDS = 15
STOP_TIMEOUT_SECONDS = 5
CLI = [sys.executable, "-m", "calico_nodestatus"]
LOOPBACK = "127.0.0.1"
ETCD = "/usr/bin/etcd"
# Every variable that selects a datastore: the demo sets the ones it uses and clears the others.
DATASTORE_ENV = (
    "DATASTORE_TYPE",
    "ETCD_ENDPOINTS",
    "ETCD_CA_CERT_FILE",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "KUBECONFIG",
    "CALICO_API_GROUP",
    "POD_NAMESPACE",
)


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


@dataclass(frozen=True)
class Demo:
    """One demo: its lab name, and where its agents, etcd and recorded datastore live."""

    name: str

    @property
    def directory(self) -> Path:
        return lab_root() / self.name

    @property
    def agents_dir(self) -> Path:
        return self.directory / "agents"

    @property
    def etcd_dir(self) -> Path:
        return self.directory / "etcd"

    @property
    def control_plane_dir(self) -> Path:
        return self.directory / "kubernetes"

    @property
    def state_file(self) -> Path:
        # What --down needs to know about the datastore the demo used.
        return self.directory / "demo.json"

    def object_name(self, node: str) -> str:
        return f"{node}-status"


def datastore_env(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment with the datastore selection replaced by `settings`."""
    env = {key: value for key, value in os.environ.items() if key not in DATASTORE_ENV}
    return env | settings


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, text=True, capture_output=True, check=check, env=env)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _running(pid: int, *args: str) -> bool:
    """Whether `pid` is alive (not a zombie) with every one of `args` in its argv; a reused pid
    belongs to someone else and fails the check."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and all(arg in argv for arg in args)


def _stop_pids(pids: list[int], *args: str) -> None:
    """SIGTERM, then SIGKILL whatever still runs after STOP_TIMEOUT_SECONDS."""
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while any(_running(pid, *args) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _running(pid, *args):
            os.kill(pid, signal.SIGKILL)


def _spawn(argv: list[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Starts a background process in its own session (it outlives this script), logging to a file."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    return process.pid


def _read_pid(pid_file: Path) -> int:
    try:
        return int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


# --- etcd -----------------------------------------------------------------------------------------


def start_etcd(demo: Demo) -> str:
    """A single-member etcd on free loopback ports with its data under the lab directory; its URL."""
    if not Path(ETCD).is_file():
        raise SystemExit(f"error: --datastore etcdv3 needs {ETCD} (Debian etcd-server; make system-deps)")
    stop_etcd(demo)  # a re-run replaces the previous demo's etcd
    demo.etcd_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    endpoint = f"http://{LOOPBACK}:{free_loopback_port()}"
    peer = f"http://{LOOPBACK}:{free_loopback_port()}"
    argv = [
        ETCD,
        f"--name={demo.name}",
        _etcd_data_dir_arg(demo),
        f"--listen-client-urls={endpoint}",
        f"--advertise-client-urls={endpoint}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={demo.name}={peer}",
        "--log-level=warn",
    ]
    pid = _spawn(argv, demo.etcd_dir / "etcd.log")
    (demo.etcd_dir / "etcd.pid").write_text(f"{pid}\n")
    deadline = time.monotonic() + ETCD_START_TIMEOUT_SECONDS
    while not _etcd_healthy(endpoint):
        if not _running(pid, ETCD) or time.monotonic() > deadline:
            stop_etcd(demo)
            raise SystemExit(
                f"error: etcd did not become healthy on {endpoint}; see {demo.etcd_dir}/etcd.log"
            )
        time.sleep(0.1)
    return endpoint


def _etcd_healthy(endpoint: str) -> bool:
    try:
        # The endpoint is the http:// loopback URL start_etcd built.
        with urllib.request.urlopen(f"{endpoint}/health", timeout=1) as reply:  # noqa: S310
            return b'"true"' in reply.read()
    except OSError:
        return False


def _etcd_data_dir_arg(demo: Demo) -> str:
    return f"--data-dir={demo.etcd_dir / 'data'}"


def stop_etcd(demo: Demo) -> None:
    pid = _read_pid(demo.etcd_dir / "etcd.pid")
    if pid and _running(pid, ETCD, _etcd_data_dir_arg(demo)):
        _stop_pids([pid], ETCD)
        step("stopped the demo's etcd")
    shutil.rmtree(demo.etcd_dir, ignore_errors=True)


# --- kubernetes -----------------------------------------------------------------------------------


def start_control_plane(demo: Demo) -> tuple[ControlPlane, Path]:
    """A private kube-apiserver with deploy/ applied; (it, the agents' ServiceAccount kubeconfig)."""
    stop_control_plane(demo)  # a re-run replaces the previous demo's control plane
    try:
        plane = ControlPlane(demo.control_plane_dir)
        plane.start()
        plane.install_nodestatus(DEPLOY)
        agent_kubeconfig = plane.service_account_kubeconfig(
            AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, demo.control_plane_dir / "agent.kubeconfig"
        )
    except LabError as exc:
        stop_control_plane(demo)
        raise SystemExit(f"error: --datastore kubernetes: {exc}") from exc
    return plane, agent_kubeconfig


def stop_control_plane(demo: Demo) -> None:
    if not demo.control_plane_dir.is_dir():
        return
    try:
        ControlPlane.open(demo.control_plane_dir).stop()
        step("stopped the demo's kube-apiserver and etcd")
    except LabError:
        pass  # nothing recorded: nothing running
    shutil.rmtree(demo.control_plane_dir, ignore_errors=True)


def kubectl_wait_filled(plane: ControlPlane, name: str, logs: Path) -> None:
    deadline = time.monotonic() + FILL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        result = plane.kubectl("get", "caliconodestatus", name, "-o", "json", check=False)
        if result.returncode == 0 and (json.loads(result.stdout).get("status") or {}).get("lastUpdated"):
            return
        time.sleep(0.5)
    raise SystemExit(f"error: {name} was not filled within {FILL_TIMEOUT_SECONDS}s; see {logs}/*.log")


# --- agents ---------------------------------------------------------------------------------------


def start_agent(demo: Demo, env: dict[str, str], node: LabNode, metrics_port: int) -> int:
    directory = demo.agents_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [*CLI, "--log-level", "info", "agent", "--node", node.name, "--bird-socket", str(node.socket_v4)]
    if node.socket_v6 is not None:  # BIRD 1.6 runs a separate IPv6 daemon
        argv += ["--bird6-socket", str(node.socket_v6)]
    argv += ["--status-file", str(directory / f"{node.name}.status.json")]
    argv += ["--ip", str(node.ipv4)] + (["--ip6", str(node.ipv6)] if node.ipv6 else [])
    # Agents side by side on one machine: each its own exporter port, on loopback only.
    argv += ["--metrics-host", LOOPBACK, "--metrics-port", str(metrics_port)]
    pid = _spawn(argv, directory / f"{node.name}.log", env)
    (directory / f"{node.name}.pid").write_text(f"{pid}\n")
    return pid


AGENT_ARGS = ("calico_nodestatus", "agent")


def _our_agent(pid: int) -> bool:
    return _running(pid, *AGENT_ARGS)


def stop_agents(demo: Demo) -> None:
    if not demo.agents_dir.is_dir():
        return
    pids = []
    for pid_file in sorted(demo.agents_dir.glob("*.pid")):
        pid = _read_pid(pid_file)
        if pid and _our_agent(pid):
            pids.append(pid)
        pid_file.unlink()
    _stop_pids(pids, *AGENT_ARGS)
    if pids:
        step(f"stopped {len(pids)} agents")


# --- up and down ----------------------------------------------------------------------------------


def manifest(name: str, node: str, api_version: str = "projectcalico.org/v3") -> str:
    return (
        f"apiVersion: {api_version}\n"
        "kind: CalicoNodeStatus\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        "  classes:\n    - Agent\n    - BGP\n    - Routes\n"
        f"  node: {node}\n"
        f"  updatePeriodSeconds: {PERIOD_SECONDS}\n"
    )


def wait_filled(env: dict[str, str], name: str, logs: Path) -> None:
    deadline = time.monotonic() + FILL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        result = cli(env, "get", "caliconodestatus", name, "-o", "json", check=False)
        if result.returncode == 0 and (json.loads(result.stdout).get("status") or {}).get("lastUpdated"):
            return
        time.sleep(0.5)
    raise SystemExit(f"error: {name} was not filled within {FILL_TIMEOUT_SECONDS}s; see {logs}/*.log")


def up(demo: Demo, datastore: str) -> None:
    started = time.monotonic()
    if os.geteuid() != 0:
        raise SystemExit("error: the demo builds network namespaces and needs root (run it with sudo)")
    step(f"lab up: {NODES} nodes, BIRD 1.6 like calico-node, IPv4+IPv6 (lab '{demo.name}')")
    subprocess.run(
        [*CLI, "lab", "up", "--nodes", str(NODES), "--name", demo.name, "--bird", "1.6", "--ipv6"], check=True
    )
    nodes = Lab.open(demo.name).nodes
    stop_agents(demo)  # a re-run replaces the previous demo's agents
    settings = {"DATASTORE_TYPE": datastore}
    agent_settings: dict[str, str] = {}
    plane: ControlPlane | None = None
    if datastore == "etcdv3":
        settings["ETCD_ENDPOINTS"] = start_etcd(demo)
        step(f"etcd started on {settings['ETCD_ENDPOINTS']} (data and log in {demo.etcd_dir})")
    elif datastore == "kubernetes":
        plane, agent_kubeconfig = start_control_plane(demo)
        settings["KUBECONFIG"] = str(plane.admin_kubeconfig)
        agent_settings = {"KUBECONFIG": str(agent_kubeconfig), "POD_NAMESPACE": AGENT_NAMESPACE}
        step(
            f"kube-apiserver started on {plane.server} with deploy/ applied "
            f"(agents run as ServiceAccount {AGENT_NAMESPACE}/{AGENT_SERVICE_ACCOUNT}; "
            f"logs in {demo.control_plane_dir})"
        )
    demo.state_file.write_text(json.dumps({"datastore": settings}))
    env = datastore_env(settings)
    pids = {}
    for node in nodes:
        port = free_loopback_port()
        pids[node.name] = pid = start_agent(demo, env | agent_settings, node, port)
        step(
            f"agent for {node.name} started (pid {pid}, log {demo.agents_dir / (node.name + '.log')}, "
            f"metrics http://{LOOPBACK}:{port}/metrics)"
        )
    first = nodes[0].name
    name = demo.object_name(first)
    step(f"apply CalicoNodeStatus {name} for {first}: classes [Agent, BGP, Routes], period {PERIOD_SECONDS}s")
    if plane is not None:
        plane.apply(manifest(name, first, "crd.projectcalico.org/v1"))
        kubectl_wait_filled(plane, name, demo.agents_dir)
    else:
        cli(env, "apply", "-f", "-", stdin=manifest(name, first))
        wait_filled(env, name, demo.agents_dir)
    dead = [node for node, pid in pids.items() if not _our_agent(pid)]
    if dead:
        raise SystemExit(f"error: the agents of {', '.join(dead)} exited; see {demo.agents_dir}/<node>.log")
    elapsed = time.monotonic() - started
    if plane is not None:
        step(f"filled after {elapsed:.0f}s: kubectl get caliconodestatus {name} -o yaml")
        print(plane.kubectl("get", "caliconodestatus", name, "-o", "yaml").stdout)
    else:
        step(f"filled after {elapsed:.0f}s: calico-nodestatus get caliconodestatus {name} -o yaml")
        print(cli(env, "get", "caliconodestatus", name, "-o", "yaml").stdout)
    show_mesh(env, demo)
    print(_explore_hints(demo, settings, first, nodes[1].name))


MESH_TTL = "1h"


def show_mesh(env: dict[str, str], demo: Demo) -> None:
    """One BGP object per node (the first node's object already reports BGP and is kept), then the
    matrix once every node has reported."""
    step(f"apply --all-nodes --classes BGP --ttl {MESH_TTL}: a BGP status per node for the mesh view")
    applied = cli(
        env, "apply", "--all-nodes", "--classes", "BGP", "--period", str(PERIOD_SECONDS), "--ttl", MESH_TTL
    )
    print(applied.stdout, end="")
    deadline = time.monotonic() + FILL_TIMEOUT_SECONDS
    while (mesh := cli(env, "mesh", check=False)).returncode != 0:
        if time.monotonic() > deadline:
            print(mesh.stdout)
            raise SystemExit(
                f"error: the mesh did not fill within {FILL_TIMEOUT_SECONDS}s; see {demo.agents_dir}/*.log"
            )
        time.sleep(1)
    step("calico-nodestatus mesh: both ends of every BGP session")
    print(mesh.stdout)


def _explore_hints(demo: Demo, settings: dict[str, str], first: str, second: str) -> str:
    lines = ["Explore (CLI: .venv/bin/calico-nodestatus):"]
    if settings["DATASTORE_TYPE"] != "embedded":
        exports = " ".join(f"{key}={value}" for key, value in settings.items())
        lines.append(f"  export {exports}   # point the CLI at the demo's datastore")
    if settings["DATASTORE_TYPE"] == "kubernetes":
        lines.append("  vendor-k8s/bin/kubectl get caliconodestatuses          # kubectl sees it too")
    stop = (
        "make demo-down"
        if demo.name == DEFAULT_NAME
        else f".venv/bin/python scripts/demo.py --down --name {demo.name}"
    )
    lines += [
        "  calico-nodestatus get caliconodestatus -o wide      # every object, agent alive/stale",
        "  calico-nodestatus summary                          # the fleet view, unhealthy first",
        "  calico-nodestatus mesh --watch                     # the matrix, redrawn on every change",
        f"  calico-nodestatus lab exec {first} -- calico-nodestatus node status   # calicoctl's view",
        f"  calico-nodestatus lab bird stop {second}        # a session fails; within "
        f"{PERIOD_SECONDS}s the status shows it",
        f"  calico-nodestatus lab bird start {second}",
        f"  agent logs: {demo.agents_dir}/<node>.log",
        f"Stop everything: {stop}",
    ]
    return "\n".join(lines)


def down(demo: Demo) -> None:
    stop_agents(demo)
    try:
        settings: dict[str, str] = json.loads(demo.state_file.read_text())["datastore"]
    except (OSError, ValueError, KeyError):
        settings = {}
    # The etcd's objects go with its data directory; the embedded file outlives the demo.
    if settings.get("DATASTORE_TYPE") == "embedded":
        env = datastore_env(settings)
        for node in (f"{demo.name}-node-{index}" for index in range(1, NODES + 1)):
            for name in (demo.object_name(node), f"nodestatus-{node}"):  # the status, the mesh's
                if cli(env, "delete", "caliconodestatus", name, check=False).returncode == 0:
                    step(f"deleted {name}")
    stop_etcd(demo)
    stop_control_plane(demo)
    subprocess.run([*CLI, "lab", "down", "--name", demo.name], check=False)
    step("demo removed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--down", action="store_true", help="stop the demo and remove the lab")
    parser.add_argument(
        "--datastore",
        choices=DATASTORES,
        default="embedded",
        help="where the agents write: the embedded file (default), or a private etcd or "
        "kube-apiserver the demo starts",
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"lab name (1-12 lowercase letters/digits; default {DEFAULT_NAME}); --down takes the same name",
    )
    args = parser.parse_args()
    try:
        demo = Demo(validate_lab_name(args.name))
    except LabError as exc:
        parser.error(f"--name: {exc}")
    run: Callable[[], None] = (lambda: down(demo)) if args.down else (lambda: up(demo, args.datastore))
    try:
        run()
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip() if isinstance(exc.stderr, str) else ""
        raise SystemExit(f"error: {' '.join(map(str, exc.cmd))} failed ({exc.returncode}) {detail}") from exc


if __name__ == "__main__":
    main()
