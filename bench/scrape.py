"""Scrape time of our /metrics vs prometheus-bird-exporter's on the same lab node (issue 7).

A 3-node BIRD 1.6.8 lab (IPv4+IPv6, Calico's generation) where node 1 also has explicit Global_
peers (pointing nowhere, so per-peer series exist) and learns extra routes. Ours: one collection
through collect.gather fed into MetricsState as the agent does, served by MetricsServer; a scrape
reads the latest view and never touches BIRD. prometheus-bird-exporter asks BIRD on every scrape.
Both listen on 127.0.0.1 and are scraped alternately over fresh HTTP connections.

    python bench/scrape.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import ipaddress
import time
from datetime import UTC, datetime

from benchlib import (
    Result,
    at_most,
    bench_lab,
    child,
    free_port,
    machine,
    median,
    percentile,
    print_results,
    run_main,
    wait_for_port,
)
from calico_nodestatus.collect.gather import BirdSockets, CollectionResult, gather
from calico_nodestatus.lab import Lab, Peer, PeerType
from calico_nodestatus.metrics.exporter import MetricsServer, build_registry
from calico_nodestatus.metrics.state import MetricsState

EXPORTER = "/usr/bin/prometheus-bird-exporter"
GOAL_MS = 10.0
GLOBAL_PEERS = 10
EXTRA_ROUTES = 2000


def scrape(port: int) -> tuple[float, int]:
    """(seconds, body bytes) of one GET /metrics on a fresh connection, as Prometheus does."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"127.0.0.1:{port}/metrics answered {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started, len(body)


def record(state: MetricsState, result: CollectionResult) -> None:
    """What the agent records after a collection."""
    status = result.status
    route_counts = {
        (family, kind, source): n
        for family, tallies in result.route_tallies.items()
        for source, tally in tallies.items()
        for kind, n in (("FIB", tally.fib), ("RIB", tally.rib))
    }
    peer_routes = {
        (family, details.neighbor_address.split("%", 1)[0]): details.routes
        for family, protocols in result.protocols.items()
        for details in protocols
        if details.neighbor_address and details.routes is not None
    }
    state.record_collection(
        datetime.now(UTC),
        agent=status.agent,
        bgp=status.bgp,
        route_counts=route_counts,
        family_errors={family: str(error) for (family, _), error in result.errors.items()},
        durations={str(cls): seconds for cls, seconds in result.durations.items()},
        peer_routes=peer_routes,
    )


def prepare(lab: Lab) -> BirdSockets:
    v4 = ipaddress.IPv4Address("198.18.2.1")
    v6 = ipaddress.IPv6Address("2001:db8:0:2::1")
    peers = [Peer(type=PeerType.GLOBAL, ip=v4 + i) for i in range(GLOBAL_PEERS // 2)]
    peers += [Peer(type=PeerType.GLOBAL, ip=v6 + i) for i in range(GLOBAL_PEERS // 2)]
    lab.add_peers(1, peers)
    lab.set_routes(2, EXTRA_ROUTES)
    node = lab.node(1)
    return BirdSockets(v4=(str(node.socket_v4),), v6=(str(node.socket_v6),))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 scrapes each instead of 500")
    args = parser.parse_args()
    scrapes = 100 if args.quick else 500
    print(machine())
    results: list[Result] = []
    with bench_lab("bnscrape", nodes=3, bird="1.6", ipv6=True) as lab:
        sockets = prepare(lab)
        time.sleep(2)  # let node 1 learn node 2's extra routes
        state = MetricsState(lab.node(1).name)
        result = asyncio.run(gather(sockets))
        assert not result.failed, result.errors
        record(state, result)
        theirs_port = free_port()
        argv = [
            EXPORTER,
            f"-web.listen-address=127.0.0.1:{theirs_port}",
            f"-bird.socket={sockets.v4[0]}",
            f"-bird.socket6={sockets.v6[0]}",
        ]
        with MetricsServer(build_registry(state), host="127.0.0.1", port=0) as server, child(argv):
            wait_for_port(theirs_port)
            ports = {"ours": server.port, "prometheus-bird-exporter": theirs_port}
            times: dict[str, list[float]] = {name: [] for name in ports}
            sizes: dict[str, int] = {}
            for port in ports.values():  # warm-up (first-request costs)
                scrape(port)
            for _ in range(scrapes):
                for name, port in ports.items():
                    seconds, sizes[name] = scrape(port)
                    times[name].append(seconds)
        print(
            f"\nnode {lab.node(1).name}: {len(result.status.bgp.peers_v4) + len(result.status.bgp.peers_v6)} "
            f"BGP peers, {sum(result.routes_total.values())} routes; {scrapes} alternating scrapes each"
        )
        print(f"  {'exporter':<26} {'median ms':>9} {'p99 ms':>8} {'bytes':>7}")
        for name, values in times.items():
            print(
                f"  {name:<26} {median(values) * 1000:>9.2f} {percentile(values, 0.99) * 1000:>8.2f} "
                f"{sizes[name]:>7}"
            )
        ours = median(times["ours"]) * 1000
        theirs = median(times["prometheus-bird-exporter"]) * 1000
        print(f"  ratio ours / prometheus-bird-exporter (median): {ours / theirs:.2f}")
    results.append(at_most("scrape_ms_median", ours, GOAL_MS, "ms"))
    results.append(at_most("scrape_ms_p99", percentile(times["ours"], 0.99) * 1000, GOAL_MS, "ms"))
    results.append(Result("scrape_ratio_vs_bird_exporter", ours / theirs, "report", True))
    print_results(results)
    return 0


if __name__ == "__main__":
    run_main(main)
