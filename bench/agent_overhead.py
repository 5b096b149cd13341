"""Agent overhead on a lab mesh (issue 9, part 2), side by side with prometheus-bird-exporter.

A BIRD 1.6.8 lab mesh (IPv4+IPv6), one real etcd (or, with `--datastore embedded`, one shared
SQLite file; with `--datastore kubernetes`, a real kube-apiserver with deploy/ applied, the agents
running as the DaemonSet's ServiceAccount), one CalicoNodeStatus per node with every class at
10 s, and one `calico-nodestatus agent` process per node (its exporter on a loopback port of its
own). Beside each agent runs a
prometheus-bird-exporter for the same node; both are scraped every 10 s. Both reach BIRD through a counting
proxy (a Unix socket relay in this process) so BIRD commands per minute are measured, not assumed.
Datastore writes are counted by a watch on the datastore. After a warm-up, per process: CPU as % of one
core (utime+stime from /proc/<pid>/stat over the window), peak RSS (VmHWM) and steady RSS (VmRSS
at the end). Finally the CPU time of one full collection cycle (all classes, both families).
The goals: the median agent's CPU at most the median exporter's in the same run, and an RSS
ceiling per datastore; the window and mesh size are printed with every goal line.

    python bench/agent_overhead.py           # 10 nodes, 300 s window
    python bench/agent_overhead.py --quick   # 4 nodes, 60 s window
    python bench/agent_overhead.py --datastore embedded     # agents on the embedded datastore
    python bench/agent_overhead.py --datastore kubernetes   # agents on a real kube-apiserver
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    ROOT,
    VENV_BIN,
    Result,
    at_most,
    bench_lab,
    child,
    cpu_seconds,
    etcd_server,
    free_port,
    machine,
    median,
    memory_kib,
    print_results,
    run_main,
    say,
    wait_for_port,
)
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.lab import Lab
from calico_nodestatus.lab.controlplane import ControlPlane
from scrape import scrape

EXPORTER = "/usr/bin/prometheus-bird-exporter"
PERIOD_S = 10
SCRAPE_EVERY_S = 10.0
CPU_GOAL_RATIO = 1.0  # the median agent's CPU over the median exporter's, same run
RSS_GOAL_MIB = {"embedded": 40.0, "etcdv3": 50.0, "kubernetes": 60.0}
ALL = frozenset(NodeStatusClass)
AGENT_NAMESPACE = "calico-system"  # deploy/: the DaemonSet's namespace and ServiceAccount
AGENT_SERVICE_ACCOUNT = "calico-nodestatus"


class CommandCounter:
    """Unix-socket relays in front of BIRD sockets, counting the commands clients send."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.commands: Counter[str] = Counter()
        self._thread = threading.Thread(target=self.loop.run_forever, name="relays", daemon=True)
        self._servers: list[asyncio.AbstractServer] = []

    def start(self) -> None:
        self._thread.start()

    def relay(self, key: str, listen: Path, target: Path) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(str(target))
            except OSError:
                writer.close()
                return

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
                with contextlib.suppress(OSError):
                    while data := await src.read(256 * 1024):
                        if count:
                            self.commands[key] += data.count(b"\n")
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        listen.unlink(missing_ok=True)

        async def serve() -> None:
            self._servers.append(await asyncio.start_unix_server(handle, str(listen)))

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return str(listen)

    def run(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()

        with contextlib.suppress(Exception):
            self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass(slots=True)
class Watched:
    """Status writes seen on etcd, per node, with their time."""

    events: list[tuple[float, str]]


async def watch_writes(config: DatastoreConfig, watched: Watched) -> None:
    datastore = open_datastore(config)
    try:
        _, revision = await datastore.list()
        async for event in datastore.watch(revision):
            watched.events.append((time.monotonic(), event.object.spec.node))
    finally:
        await datastore.close()


async def create_objects(config: DatastoreConfig, lab: Lab) -> None:
    datastore = open_datastore(config)
    try:
        for node in lab.nodes:
            await datastore.create(
                CalicoNodeStatus.from_wire(
                    {
                        "apiVersion": "projectcalico.org/v3",
                        "kind": "CalicoNodeStatus",
                        "metadata": {"name": f"{node.name}-status"},
                        "spec": {
                            "node": node.name,
                            "classes": ["Agent", "BGP", "Routes"],
                            "updatePeriodSeconds": PERIOD_S,
                        },
                    }
                )
            )
    finally:
        await datastore.close()


@dataclass(frozen=True, slots=True)
class Datastore:
    """Where the bench keeps the objects (`config`) and how the agents reach it."""

    config: DatastoreConfig
    agent_options: list[str]
    agent_env: dict[str, str]


@contextlib.contextmanager
def kubernetes_control_plane() -> Iterator[Datastore]:
    """A real kube-apiserver (and its etcd) with deploy/ applied; the agents authenticate as the
    DaemonSet's ServiceAccount. Stopped and removed on exit; the servers die with this process."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-controlplane-"))
    plane = ControlPlane(workdir / "plane", owned=True)
    try:
        say("kube-apiserver: starting")
        plane.start()
        plane.install_nodestatus(ROOT / "deploy")
        agent_kubeconfig = plane.service_account_kubeconfig(
            AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, workdir / "agent.kubeconfig"
        )
        yield Datastore(
            DatastoreConfig(type="kubernetes", kubeconfig=plane.admin_kubeconfig),
            ["--datastore-type=kubernetes", f"--kubeconfig={agent_kubeconfig}"],
            {"POD_NAMESPACE": AGENT_NAMESPACE},
        )
    finally:
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def datastore_for(kind: str, lab: Lab) -> Iterator[Datastore]:
    if kind == "etcdv3":
        with etcd_server() as etcd:
            yield Datastore(
                DatastoreConfig(type="etcdv3", etcd_endpoints=[etcd.endpoint]),
                ["--datastore-type=etcdv3", f"--etcd-endpoints={etcd.endpoint}"],
                {},
            )
    elif kind == "kubernetes":
        with kubernetes_control_plane() as datastore:
            yield datastore
    else:
        db_path = lab.directory / "agents.db"
        for end in ("", "-wal", "-shm"):  # a previous run's file in a reused lab directory
            Path(f"{db_path}{end}").unlink(missing_ok=True)
        yield Datastore(
            DatastoreConfig(type="embedded", db_path=db_path),
            ["--datastore-type=embedded", f"--db={db_path}"],
            {},
        )


@contextlib.contextmanager
def processes(
    lab: Lab, relays: CommandCounter, datastore: Datastore, logs: Path
) -> Iterator[dict[str, int]]:
    """One agent and one prometheus-bird-exporter per node; yields {"agent <node>": pid, ...}."""
    pids: dict[str, int] = {}
    ports: list[int] = []  # every /metrics endpoint: agents' and exporters'
    with contextlib.ExitStack() as stack:
        for node in lab.nodes:
            sockets = {}
            for who in ("agent", "exporter"):
                sockets[who] = (
                    relays.relay(f"{who} {node.name}", logs / f"{who}-{node.index}-4.ctl", node.socket_v4),
                    relays.relay(f"{who} {node.name}", logs / f"{who}-{node.index}-6.ctl", node.socket_v6),
                )
            agent_port = free_port()
            agent_argv = [
                str(VENV_BIN / "calico-nodestatus"),
                *datastore.agent_options,
                "agent",
                f"--node={node.name}",
                f"--bird-socket={sockets['agent'][0]}",
                f"--bird6-socket={sockets['agent'][1]}",
                "--metrics-host=127.0.0.1",
                f"--metrics-port={agent_port}",
            ]
            log = stack.enter_context((logs / f"agent-{node.index}.log").open("wb"))
            env = {**os.environ, **datastore.agent_env}
            agent = stack.enter_context(child(agent_argv, stdout=log, stderr=subprocess.STDOUT, env=env))
            port = free_port()
            exporter_argv = [
                EXPORTER,
                f"-web.listen-address=127.0.0.1:{port}",
                f"-bird.socket={sockets['exporter'][0]}",
                f"-bird.socket6={sockets['exporter'][1]}",
            ]
            exporter = stack.enter_context(
                child(exporter_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            pids[f"agent {node.name}"] = agent.pid
            pids[f"exporter {node.name}"] = exporter.pid
            ports += [agent_port, port]
        for port in ports:
            wait_for_port(port)
        stop = threading.Event()

        def scraper() -> None:
            while not stop.wait(SCRAPE_EVERY_S):
                for port in ports:
                    with contextlib.suppress(OSError, RuntimeError):
                        scrape(port)

        thread = threading.Thread(target=scraper, name="scraper", daemon=True)
        thread.start()
        try:
            yield pids
        finally:
            stop.set()
            thread.join(SCRAPE_EVERY_S + 5)


def check_running(pids: dict[str, int], logs: Path) -> None:
    """Every measured process must have lived through the window: a dead one's figures are void."""
    for name, pid in pids.items():
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] in "ZX":
            raise RuntimeError(f"{name} (pid {pid}) exited during the run; see the logs in {logs}")


def cycle_cpu_ms(lab: Lab, cycles: int = 20) -> float:
    """CPU time (this process) of one full collection: all classes, both families, node 1."""
    node = lab.node(1)
    collect = bird_collector(str(node.socket_v4), str(node.socket_v6))

    async def run() -> float:
        await collect(ALL)  # warm caches and imports
        started = time.process_time()
        for _ in range(cycles):
            await collect(ALL)
        return (time.process_time() - started) / cycles * 1000

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 nodes, 60 s window")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--seconds", type=float, help="measurement window after the warm-up")
    parser.add_argument(
        "--datastore",
        choices=["etcdv3", "embedded", "kubernetes"],
        default="etcdv3",
        help="where the agents keep their objects (default: one real etcd)",
    )
    args = parser.parse_args()
    nodes = args.nodes or (4 if args.quick else 10)
    window = args.seconds or (60.0 if args.quick else 300.0)
    warmup = 30.0
    print(machine())
    print(
        f"mode: {'quick' if args.quick else 'full'}; {nodes}-node BIRD 1.6.8 mesh, IPv4+IPv6, "
        f"datastore {args.datastore}, period {PERIOD_S} s, warm-up {warmup:.0f} s, window {window:.0f} s"
    )
    # RESULT names carry the datastore when it is not the default, so both runs can be recorded.
    suffix = "" if args.datastore == "etcdv3" else f"_{args.datastore}"
    relays = CommandCounter()
    relays.start()
    results: list[Result] = []
    try:
        with contextlib.ExitStack() as stack:
            lab = stack.enter_context(bench_lab("bnagent", nodes=nodes, bird="1.6", ipv6=True))
            datastore = stack.enter_context(datastore_for(args.datastore, lab))
            config = datastore.config
            relays.run(create_objects(config, lab))
            watched = Watched([])
            watcher = asyncio.run_coroutine_threadsafe(watch_writes(config, watched), relays.loop)
            with processes(lab, relays, datastore, lab.directory) as pids:
                say(f"{len(pids)} processes up; warming up {warmup:.0f} s")
                load_start = Path("/proc/loadavg").read_text().split()[:3]
                time.sleep(warmup)
                commands_before = Counter(relays.commands)
                cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                window_start = time.monotonic()
                say(f"measuring for {window:.0f} s")
                time.sleep(window)
                elapsed = time.monotonic() - window_start
                cpu = {
                    name: (cpu_seconds(pid) - cpu_before[name]) / elapsed * 100 for name, pid in pids.items()
                }
                memory = {name: memory_kib(pid) for name, pid in pids.items()}
                check_running(pids, lab.directory)
                commands = {k: relays.commands[k] - commands_before[k] for k in relays.commands}
            watcher.cancel()
            writes = Counter(node for at, node in watched.events if at >= window_start)
            first_writes = Counter(node for at, node in watched.events if at < window_start)
            cycle_ms = cycle_cpu_ms(lab)
            minutes = elapsed / 60
            print(f"\nwindow {elapsed:.0f} s; per process:")
            print("  process                      CPU %core  RSS MiB peak MiB BIRD cmd/min writes/min")
            for name in pids:
                who, node = name.split(" ", 1)
                rss = memory[name]["VmRSS"] / 1024
                peak = memory[name]["VmHWM"] / 1024
                per_min = commands.get(name, 0) / minutes
                write_rate = f"{writes[node] / minutes:>10.2f}" if who == "agent" else f"{'-':>10}"
                print(
                    f"  {name:<28} {cpu[name]:>9.3f} {rss:>8.1f} {peak:>8.1f} {per_min:>12.1f} {write_rate}"
                )
            print(f"  status writes before the window (first fill): {sum(first_writes.values())}")
            agents = [n for n in pids if n.startswith("agent ")]
            exporters = [n for n in pids if n.startswith("exporter ")]
            agent_cpu = median([cpu[n] for n in agents])
            exporter_cpu = median([cpu[n] for n in exporters])
            agent_rss = max(memory[n]["VmRSS"] for n in agents) / 1024
            agent_peak = max(memory[n]["VmHWM"] for n in agents) / 1024
            exporter_rss = median([memory[n]["VmRSS"] / 1024 for n in exporters])
            write_rate = sum(writes.values()) / minutes / len(agents)
            ratio = agent_cpu / exporter_cpu if exporter_cpu else float("inf")
            agent_spread = (min(cpu[n] for n in agents), max(cpu[n] for n in agents))
            exporter_spread = (min(cpu[n] for n in exporters), max(cpu[n] for n in exporters))
            print(
                f"\nmedian agent CPU {agent_cpu:.3f}% of a core "
                f"({agent_spread[0]:.3f}-{agent_spread[1]:.3f}) "
                f"vs prometheus-bird-exporter {exporter_cpu:.3f}% ({exporter_spread[0]:.3f}-"
                f"{exporter_spread[1]:.3f}): ratio {ratio:.2f}; agent RSS max {agent_rss:.1f} MiB "
                f"(peak {agent_peak:.1f}) vs exporter median {exporter_rss:.1f} MiB"
            )
            print(f"one full collection cycle (all classes, IPv4+IPv6): {cycle_ms:.2f} ms CPU")
            load_end = Path("/proc/loadavg").read_text().split()[:3]
            print(f"load average at the window's start {' '.join(load_start)}, end {' '.join(load_end)}")
    finally:
        relays.stop()
    size = f"@{nodes}nodes,{window:.0f}s"  # the goals hold at any size: say which one this is
    rss_goal = RSS_GOAL_MIB[args.datastore]
    results += [
        Result(
            f"agent_cpu_vs_exporter{suffix}", ratio, f"<={CPU_GOAL_RATIO:g}x{size}", ratio <= CPU_GOAL_RATIO
        ),
        Result(f"agent_cpu_pct_core{suffix}", agent_cpu, "report", True),
        Result(f"bird_exporter_cpu_pct_core{suffix}", exporter_cpu, "report", True),
        Result(f"agent_rss_mib{suffix}", agent_rss, f"<={rss_goal:g}MiB{size}", agent_rss <= rss_goal),
        Result(f"agent_peak_rss_mib{suffix}", agent_peak, f"<={rss_goal:g}MiB{size}", agent_peak <= rss_goal),
        at_most(f"agent_writes_per_min_steady{suffix}", write_rate, 0.0),
        Result(f"collection_cycle_cpu_ms{suffix}", cycle_ms, "report", True),
    ]
    print_results(results)
    return 0


if __name__ == "__main__":
    run_main(main)
