"""Route collection vs BIRD's own speed (issue 9, part 1), for BIRD 1.6.8 and BIRD 2.

A two-node lab: node 1 originates K routes, node 2 learns them over BGP and is queried. In one run,
alternating, at least 5 times each:
  floor      send `show route` and only drain the reply: our own connection and reads
             (BirdClient.route_blocks, 1 MiB reads on the event loop), FLOOR_REPEATS times per
             round, so its minimum and median are stable figures; ratios are against its median
  ours       the agent's Routes collection as its runner does it: agent.collection.bird_collector
             (read + parse + routes held within the size budget + status section), then the
             runner's size check (the object's wire form and agent.budget.fit_routes)
  ours-gather  collect.gather with its default route limit (what `node show` and the doctor use)
  ours-parse   BirdClient.routes() only: read + parse into Route tuples, nothing kept
  naive      references: drain the bytes, then one regular expression per line
  pybird     PyPI pybird's get_routes() (it asks `show route all`); pybird-peer: only node 1's routes
Peak memory is measured in a fresh subprocess per method (tracemalloc peak and RSS growth).
Then the cost of the mesh size: with 10, 100 and 500 Global_ peers pointing nowhere, one
`show protocols all` query (and, at 100, upstream's one query per peer), and the CPU time of the
agent's whole Agent+BGP cycle (collection and status section), with the cost per peer.

    python bench/collect_routes.py           # K = 10k, 100k, 300k; 10, 100, 500 peers
    python bench/collect_routes.py --quick   # K = 300k only, 3 rounds; 10, 100 peers
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import subprocess
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchlib import (
    VENV_PYTHON,
    Result,
    at_most,
    bench_lab,
    machine,
    median,
    memory_kib,
    print_results,
    run_main,
    say,
)
from calico_nodestatus.agent.budget import DEFAULT_SIZE_BUDGET_BYTES, fit_routes
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.agent.content import build_status
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.bird.client import DEFAULT_READ_SIZE, BirdClient
from calico_nodestatus.bird.parse import parse_protocols_all
from calico_nodestatus.collect.gather import BirdSockets, gather
from calico_nodestatus.lab import Lab, Peer, PeerType
from calico_nodestatus.lab.model import Family

ROUNDS = 5
QUICK_ROUNDS = 3
FLOOR_REPEATS = 3  # floor runs per round
ROUTES = frozenset({NodeStatusClass.ROUTES})
AGENT_BGP = frozenset({NodeStatusClass.AGENT, NodeStatusClass.BGP})
GOAL_K = 300_000  # the ratio goals hold at this table size; smaller tables are reported
GOALS = {"1.6": 1.05, "2": 1.3}  # ours / floor (medians) at GOAL_K
MEMORY_GOAL_MIB = 100.0
PEER_COUNTS = (10, 100, 500)
QUICK_PEER_COUNTS = (10, 100)
UPSTREAM_PEERS = 100  # one query vs one per peer, at this mesh size
# The Agent+BGP cycle's CPU goal on BIRD 1.6.8: a fixed part plus a part per peer.
CYCLE_GOAL_FIXED_MS = 1.0
CYCLE_GOAL_PER_PEER_MS = 0.020
CYCLES = 20  # per round, for the cycle's CPU time
# The lab keeps IPv4 inside 198.18.0.0/15, which holds at most 188,411 extra routes; larger tables
# are IPv6 routes (BIRD 1.6: the bird6 daemon; BIRD 2: the same socket).
IPV4_CAPACITY = 188_000
SENDER = "Mesh_198_18_0_1"  # node 2's session with node 1, which originates the K routes
FINAL = b"\n0000 \n"


# ---- the methods -------------------------------------------------------------------------------


async def floor(socket: str) -> int:
    """Bytes of the `show route` reply, read through our own connection and reads, thrown away."""
    size = 0
    async with await BirdClient.connect(socket) as client:
        async for block in client.route_blocks():
            size += len(block)
    return size


# The object the agent writes to, for the size check.
_OBJECT = CalicoNodeStatus.from_wire(
    {
        "apiVersion": "projectcalico.org/v3",
        "kind": "CalicoNodeStatus",
        "metadata": {"name": "bench"},
        "spec": {"node": "bench", "classes": ["Routes"], "updatePeriodSeconds": 10},
    }
)


async def ours(socket: str) -> int:
    sections = await bird_collector(socket)(ROUTES)
    # An IPv4-only lab has no bird6: that family is "not running", a normal state, not a failure.
    assert sections.result is not None and not sections.result.failed, sections.family_errors
    candidate = _OBJECT.model_copy(update={"status": build_status(sections, ROUTES)})
    fit_routes(candidate.to_wire(), DEFAULT_SIZE_BUDGET_BYTES)
    return sum(sections.result.routes_total.values())


async def ours_gather(socket: str) -> int:
    result = await gather(BirdSockets(v4=(socket,), v6=()), ROUTES)
    assert not result.failed, result.errors
    return sum(result.routes_total.values())


async def ours_parse(socket: str) -> int:
    count = 0
    async with await BirdClient.connect(socket) as client:
        async for batch in client.routes():
            count += len(batch)
    return count


# Upstream-style: one regular expression per line over the whole reply, routes kept as tuples.
_NAIVE_ROUTE = re.compile(
    r"^(?:1007-)?(?P<prefix>[0-9a-f.:/]+)?\s+(?:via\s+(?P<gw>\S+)\s+on\s+(?P<dev>\S+)|dev\s+(?P<dev2>\S+)|\w+)"
    r"\s+\[(?P<proto>\S+)\s+[^\]]*\]\s*(?P<mark>[*!]?)"
)
_NAIVE_HOP = re.compile(r"^\s+via\s+(?P<gw>\S+)\s+on\s+(?P<dev>\S+)")


def naive_parse(data: bytes) -> list[tuple[str | None, ...]]:
    routes: list[tuple[str | None, ...]] = []
    prefix = None
    for line in data.decode().splitlines():
        if (m := _NAIVE_ROUTE.match(line)) is not None:
            prefix = m["prefix"] or prefix
            routes.append((prefix, m["gw"], m["dev"] or m["dev2"], m["proto"], m["mark"]))
        elif (h := _NAIVE_HOP.match(line)) is not None and routes:
            routes[-1] = (*routes[-1][:1], h["gw"], h["dev"], *routes[-1][3:])
    return routes


async def read_all(socket: str, command: bytes = b"show route\n") -> bytes:
    reader, writer = await asyncio.open_unix_connection(socket, limit=2 * DEFAULT_READ_SIZE)
    try:
        await reader.readline()
        writer.write(command)
        await writer.drain()
        chunks: list[bytes] = []
        tail = b""
        while tail != FINAL:
            data = await reader.read(DEFAULT_READ_SIZE)
            if not data:
                raise RuntimeError("BIRD closed the connection mid-reply")
            chunks.append(data)
            tail = (tail + data)[-len(FINAL) :]
        return b"".join(chunks)
    finally:
        writer.close()


async def naive(socket: str) -> int:
    return len(naive_parse(await read_all(socket)))


async def pybird(socket: str) -> int:
    from pybird import PyBird  # a reference only: not a dependency of the product

    return len(await asyncio.to_thread(PyBird(socket_file=socket).get_routes))


async def pybird_peer(socket: str) -> int:
    """pybird on the routes of the one peer that sends them (node 1), not the whole table."""
    from pybird import PyBird

    return len(await asyncio.to_thread(PyBird(socket_file=socket).get_routes, peer=SENDER))


METHODS: dict[str, Callable[[str], Awaitable[int]]] = {
    "floor": floor,
    "ours": ours,
    "ours-gather": ours_gather,
    "ours-parse": ours_parse,
    "naive": naive,
    "pybird": pybird,
    "pybird-peer": pybird_peer,
}


# ---- measuring ---------------------------------------------------------------------------------


def memory_of(method: str, socket: str) -> tuple[float, float] | str:
    """(tracemalloc peak MiB, RSS growth MiB) of one run of `method` in a fresh process."""
    argv = [VENV_PYTHON, __file__, "--memory-of", method, "--socket", socket]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["failed"])[-1]
    figures = json.loads(done.stdout)
    return figures["traced_mib"], figures["rss_growth_mib"]


def measure_memory(method: str, socket: str) -> None:
    """Child side of memory_of: one run, figures as JSON on stdout."""
    import os

    baseline = memory_kib(os.getpid())["VmRSS"]
    tracemalloc.start()
    asyncio.run(METHODS[method](socket))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = memory_kib(os.getpid())["VmHWM"]
    print(json.dumps({"traced_mib": peak / 2**20, "rss_growth_mib": (hwm - baseline) / 1024}))


def wait_routes(
    lab: Lab, socket: str, at_least: int, at_most: int | None = None, timeout: float = 300.0
) -> int:
    """Waits until node 2's table holds at_least..at_most routes (BGP propagation is asynchronous)."""

    async def count() -> int:
        async with await BirdClient.connect(socket) as client:
            counted = await client.show_route_count()
        return counted.total.routes if counted.total else sum(t.routes for t in counted.tables)

    deadline = time.monotonic() + timeout
    while not at_least <= (n := asyncio.run(count())) <= (at_most or n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{lab.name}: node 2 has {n} routes, expected {at_least}..{at_most}")
        time.sleep(0.5)
    return n


def timed_rounds(
    socket: str, methods: list[str], rounds: int, skip: set[str]
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Alternates the methods for `rounds` rounds; a failing method is noted and dropped."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    failures: dict[str, str] = {}
    for _ in range(rounds):
        for method in methods:
            if method in failures or method in skip:
                continue
            for _ in range(FLOOR_REPEATS if method == "floor" else 1):
                started = time.perf_counter()
                try:
                    asyncio.run(METHODS[method](socket))
                except Exception as exc:  # a reference parser failing is a finding, not a crash
                    failures[method] = f"{type(exc).__name__}: {str(exc)[:160]}"
                    break
                times[method].append(time.perf_counter() - started)
    return times, failures


def route_table(
    version: str, sizes: list[int], rounds: int, peer_counts: tuple[int, ...], results: list[Result]
) -> None:
    name = "bncr16" if version == "1.6" else "bncr2"
    with bench_lab(name, nodes=2, bird=version, ipv6=True) as lab:
        node = lab.node(2)
        base = {f: wait_routes(lab, str(node.socket_for(f)), 1) for f in (4, 6)}
        loaded: Family | None = None
        for k in sizes:
            family: Family = 4 if k <= IPV4_CAPACITY else 6
            socket = str(node.socket_for(family))
            say(f"BIRD {version}: loading {k} IPv{family} routes")
            if loaded is not None and loaded != family:
                lab.set_routes(1, 0, loaded)
                wait_routes(lab, str(node.socket_for(loaded)), base[loaded], base[loaded])
            lab.set_routes(1, k, family)
            loaded = family
            total = wait_routes(lab, socket, base[family] + k, base[family] + k)
            reply = asyncio.run(read_all(socket))
            lines = reply.count(b"\n")
            methods = list(METHODS)
            # pybird on the largest table takes long and proves nothing new after 100k.
            skip = {"pybird", "pybird-peer"} if k > 100_000 else set()
            times, failures = timed_rounds(socket, methods, rounds, skip)
            print(
                f"\nBIRD {version}, IPv{family}: {total} routes on {Path(socket).name}, "
                f"reply {len(reply) / 2**20:.1f} MiB, "
                f"{lines} lines, {rounds} alternating rounds"
            )
            floor_median = median(times["floor"])
            print(
                f"  floor: {len(times['floor'])} runs, min {min(times['floor']):.3f} s, "
                f"median {floor_median:.3f} s, max {max(times['floor']):.3f} s"
            )
            print("  method        median s    min s  x floor  min/min  peak MiB  RSS+ MiB")
            for method in methods:
                if method in skip:
                    print(f"  {method:<12} skipped above 100k routes")
                    continue
                if method in failures:
                    print(f"  {method:<12} FAILED: {failures[method]}")
                    continue
                memory = memory_of(method, socket) if method != "floor" else (0.0, 0.0)
                mem = (
                    f"{memory[0]:>9.1f} {memory[1]:>9.1f}"
                    if isinstance(memory, tuple)
                    else f"  memory run failed: {memory}"
                )
                m = median(times[method])
                low = min(times[method]) / min(times["floor"])
                print(
                    f"  {method:<12} {m:>9.3f} {min(times[method]):>8.3f} {m / floor_median:>8.2f} "
                    f"{low:>8.2f} {mem}"
                )
                if method == "ours":
                    tag = f"bird{version.replace('.', '')}_{k // 1000}k"
                    name = f"collect_ratio_{tag}"
                    ratio = m / floor_median
                    results.append(
                        at_most(name, ratio, GOALS[version])
                        if k == GOAL_K
                        else Result(name, ratio, "report", True)  # the goal is stated at GOAL_K
                    )
                    if isinstance(memory, tuple):
                        results.append(at_most(f"collect_peak_mib_{tag}", memory[0], MEMORY_GOAL_MIB))
        if loaded is not None:
            lab.set_routes(1, 0, loaded)
            wait_routes(lab, str(node.socket_for(loaded)), base[loaded], base[loaded])
        mesh_scaling(lab, version, rounds, peer_counts, results)


async def one_query(socket: str) -> int:
    async with await BirdClient.connect(socket) as client:
        return len(await client.show_protocols_all())


async def per_peer(socket: str) -> int:
    """Upstream's way: list the protocols, then `show protocols all <name>` for each BGP one."""
    async with await BirdClient.connect(socket) as client:
        names = [p.name for p in await client.show_protocols() if p.proto == "BGP"]
        for name in names:
            parse_protocols_all(await client.command(f"show protocols all {name}"))
        return len(names)


def cycle_cpu_ms(lab: Lab, cycles: int) -> float:
    """CPU time (this process) of one Agent+BGP cycle of node 2 as the agent runs it (both
    families): the collection and the status it builds from it."""
    node = lab.node(2)
    collect = bird_collector(str(node.socket_v4), str(node.socket_v6))

    async def run() -> float:
        await collect(AGENT_BGP)  # warm caches and imports
        started = time.process_time()
        for _ in range(cycles):
            build_status(await collect(AGENT_BGP), AGENT_BGP)
        return (time.process_time() - started) / cycles * 1000

    return asyncio.run(run())


def wait_protocols(socket: str, at_least: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (n := asyncio.run(one_query(socket))) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{socket}: {n} protocols, expected at least {at_least}")
        time.sleep(0.2)
    return n


def mesh_scaling(
    lab: Lab, version: str, rounds: int, peer_counts: tuple[int, ...], results: list[Result]
) -> None:
    """`show protocols all` and the Agent+BGP cycle at each mesh size, side by side."""
    base = ipaddress.IPv4Address("198.18.2.1")
    socket = str(lab.node(2).socket_v4)
    others = asyncio.run(one_query(socket))  # the mesh's own protocols
    tag = version.replace(".", "")
    print(f"\nBIRD {version}: mesh size (Global_ peers pointing nowhere, plus {others} protocols)")
    print("  peers  protocols  one query ms  per peer ms  Agent+BGP cycle CPU ms (min)  goal ms")
    cycles: dict[int, float] = {}
    added = 0
    for peers in peer_counts:
        lab.add_peers(2, [Peer(type=PeerType.GLOBAL, ip=base + i) for i in range(added, peers)])
        added = peers
        protocols = wait_protocols(socket, others + peers)
        one: list[float] = []
        each: list[float] = []
        cycle: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            asyncio.run(one_query(socket))
            one.append(time.perf_counter() - started)
            if peers == UPSTREAM_PEERS:
                started = time.perf_counter()
                asyncio.run(per_peer(socket))
                each.append(time.perf_counter() - started)
            cycle.append(cycle_cpu_ms(lab, CYCLES))
        cycles[peers] = median(cycle)
        goal = CYCLE_GOAL_FIXED_MS + CYCLE_GOAL_PER_PEER_MS * peers
        per_peer_ms = f"{median(each) * 1000:>11.1f}" if each else f"{'-':>11}"
        print(
            f"  {peers:>5} {protocols:>10} {median(one) * 1000:>13.2f} {per_peer_ms} "
            f"{cycles[peers]:>22.2f} ({min(cycle):.2f}) {goal:>8.2f}"
        )
        if each:
            results.append(
                Result(
                    f"protocols_all_{peers}peers_bird{tag}_ms",
                    median(one) * 1000,
                    "<per-peer",
                    median(one) < median(each),
                )
            )
        name = f"cycle_cpu_ms_{peers}peers_bird{tag}"
        # The goal is BIRD 1.6.8's (Calico's BIRD); BIRD 2 is reported beside it.
        results.append(
            at_most(name, cycles[peers], goal)
            if version == "1.6"
            else Result(name, cycles[peers], "report", True)
        )
    low, high = peer_counts[0], peer_counts[-1]
    slope_us = (cycles[high] - cycles[low]) / (high - low) * 1000
    print(f"  cost per peer ({low} -> {high} peers): {slope_us:.1f} us CPU per peer per cycle")
    results.append(
        at_most(f"cycle_cpu_us_per_peer_bird{tag}", slope_us, CYCLE_GOAL_PER_PEER_MS * 1000)
        if version == "1.6"
        else Result(f"cycle_cpu_us_per_peer_bird{tag}", slope_us, "report", True)
    )
    lab.remove_peers(2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{GOAL_K:,} routes only, {QUICK_ROUNDS} rounds; 10, 100 peers"
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--bird", choices=["1.6", "2"], action="append", help="only this BIRD (repeatable)")
    parser.add_argument("--memory-of", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        measure_memory(args.memory_of, args.socket)
        return 0
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    if rounds < 1:
        parser.error("--rounds: expected 1 or more")
    sizes = [GOAL_K] if args.quick else [10_000, 100_000, GOAL_K]
    peer_counts = QUICK_PEER_COUNTS if args.quick else PEER_COUNTS
    print(machine())
    print(
        f"mode: {'quick' if args.quick else 'full'}; K = {', '.join(map(str, sizes))}; rounds = {rounds}; "
        f"floor {FLOOR_REPEATS}x per round; peers = {', '.join(map(str, peer_counts))}"
    )
    results: list[Result] = []
    started = time.monotonic()
    for version in args.bird or ["1.6", "2"]:
        route_table(version, sizes, rounds, peer_counts, results)
    print(f"\nelapsed {time.monotonic() - started:.0f} s; {machine().rsplit(', ', 1)[-1]} at the end")
    print_results(results)
    return 0


if __name__ == "__main__":
    run_main(main)
