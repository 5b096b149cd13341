"""Runs one `collect.gather` (or the agent's collector) in a fresh process and prints what it found
with the process's peak RSS, so a test can measure memory without its own heap in the way: per
family the routes kept, their bytes in an object's compact JSON, every route counted, and the
routes left out.

usage: python -m tests.faults.gather_worker SOCKET_V4 SOCKET_V6 (gather|agent) [ROUTE_LIMIT]
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from calico_nodestatus.agent.budget import serialised_size
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.api import CalicoNodeRoute, NodeStatusClass
from calico_nodestatus.collect.gather import ALL_CLASSES, BirdSockets, CollectionResult, gather


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _wire_bytes(routes: list[CalicoNodeRoute]) -> int:
    return sum(serialised_size(route.to_wire()) + 1 for route in routes)  # +1: the separating comma


async def run(v4: str, v6: str, mode: str) -> dict[str, object]:
    baseline = peak_rss_bytes()
    result: CollectionResult | None
    if mode == "agent":
        sections = await bird_collector(v4, v6)(frozenset(ALL_CLASSES))
        assert sections.routes is not None
        routes, result = sections.routes, sections.result
        errors = {str(family): error for family, error in sections.family_errors.items()}
    else:
        result = await gather(BirdSockets(v4=(v4,), v6=(v6,)), ALL_CLASSES)
        routes = result.status.routes
        errors = {f"{family}/{cls}": str(error) for (family, cls), error in result.errors.items()}
        assert NodeStatusClass.ROUTES in result.classes
    assert result is not None
    peak = peak_rss_bytes()
    return {
        "baseline_rss": baseline,
        "peak_rss": peak,
        "kept": {"4": len(routes.routes_v4), "6": len(routes.routes_v6)},
        "kept_bytes": {"4": _wire_bytes(routes.routes_v4), "6": _wire_bytes(routes.routes_v6)},
        "total": {str(family): count for family, count in result.routes_total.items()},
        "truncated": {str(family): count for family, count in result.routes_truncated.items()},
        "errors": errors,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3]))))
