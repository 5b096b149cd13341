"""Runs one `collect.gather` (or the agent's collector) in a fresh process and prints what it found
with the process's peak RSS, so a test can measure memory without its own heap in the way.

usage: python -m tests.faults.gather_worker SOCKET_V4 SOCKET_V6 (gather|agent) [ROUTE_LIMIT]
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.collect.gather import ALL_CLASSES, BirdSockets, gather


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def run(v4: str, v6: str, mode: str) -> dict[str, object]:
    baseline = peak_rss_bytes()
    if mode == "agent":
        sections = await bird_collector(v4, v6)(frozenset(ALL_CLASSES))
        routes = sections.routes
        assert routes is not None
        kept = {"4": len(routes.routes_v4), "6": len(routes.routes_v6)}
        errors = {str(family): error for family, error in sections.family_errors.items()}
    else:
        result = await gather(BirdSockets(v4=(v4,), v6=(v6,)), ALL_CLASSES)
        kept = {"4": len(result.status.routes.routes_v4), "6": len(result.status.routes.routes_v6)}
        errors = {f"{family}/{cls}": str(error) for (family, cls), error in result.errors.items()}
        assert NodeStatusClass.ROUTES in result.classes
    return {"baseline_rss": baseline, "peak_rss": peak_rss_bytes(), "kept": kept, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3]))))
