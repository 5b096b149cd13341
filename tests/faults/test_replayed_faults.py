"""BIRD faults a real daemon cannot produce on demand, replayed from real transcripts through the
BIRD client and `collect.gather`: hang, cut mid-line, garbage, a 100 MB+ reply. Each leaves the
other family and the other classes intact, reports the failure per family, and the next
collection (fault gone) is complete again.

Topology: BIRD 1.6 like calico-node, `bird` (IPv4, faulty) and `bird6` (IPv6, healthy), from the
`mesh3` transcripts."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from calico_nodestatus.agent.budget import (
    DEFAULT_SIZE_BUDGET_BYTES,
    HEADROOM_BYTES,
    route_bytes_within,
    serialised_size,
)
from calico_nodestatus.api import BGPDaemonState, NodeStatusClass
from calico_nodestatus.bird import parse
from calico_nodestatus.bird.errors import BirdParseError, BirdProtocolError, BirdTimeout
from calico_nodestatus.collect.gather import ALL_CLASSES, BirdSockets, CollectionResult, gather
from calico_nodestatus.collect.sections import DEFAULT_ROUTE_LIMIT, api_route
from tests.faults.replay import Fault, ReplayServer, huge_route_reply
from tests.plugins.agent import REPO

ROUTES = NodeStatusClass.ROUTES
READ_TIMEOUT = 0.3


async def _collect(bird: ReplayServer, bird6: ReplayServer) -> CollectionResult:
    sockets = BirdSockets(v4=(str(bird.path),), v6=(str(bird6.path),))
    return await gather(sockets, ALL_CLASSES, read_timeout=READ_TIMEOUT, deadline=5.0)


def _assert_complete(result: CollectionResult) -> None:
    """What the mesh3 transcripts hold, for both families: nothing missing."""
    assert result.errors == {}
    status = result.status
    assert status.agent.bird_v4.state is BGPDaemonState.READY
    assert status.agent.bird_v6.state is BGPDaemonState.READY
    assert status.bgp.number_established_v4 == 2 and status.bgp.number_established_v6 == 2
    assert len(status.routes.routes_v4) == 4 and len(status.routes.routes_v6) == 4


def _assert_only_v4_routes_failed(result: CollectionResult, error: type[Exception]) -> None:
    assert set(result.errors) == {(4, ROUTES)}
    assert isinstance(result.errors[(4, ROUTES)], error)
    assert result.failed
    status = result.status
    # The IPv4 daemon's other classes (asked before routes) and the whole IPv6 family are intact.
    assert status.agent.bird_v4.state is BGPDaemonState.READY
    assert status.bgp.number_established_v4 == 2
    assert status.agent.bird_v6.state is BGPDaemonState.READY
    assert len(status.routes.routes_v6) == 4
    assert status.routes.routes_v4 == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.HANG, BirdTimeout),
        (Fault.CUT, BirdProtocolError),
        (Fault.GARBAGE, BirdParseError),
    ],
)
async def test_fault_is_per_family_and_the_next_collection_recovers(
    replayed_bird: tuple[ReplayServer, ReplayServer], fault: Fault, error: type[Exception]
) -> None:
    bird, bird6 = replayed_bird
    bird.fault = fault
    started = asyncio.get_running_loop().time()
    _assert_only_v4_routes_failed(await _collect(bird, bird6), error)
    assert asyncio.get_running_loop().time() - started < 3, "a fault must not stall the collection"
    bird.fault = Fault.NONE
    _assert_complete(await _collect(bird, bird6))


async def test_hang_on_the_first_command_leaves_the_other_family(
    replayed_bird: tuple[ReplayServer, ReplayServer],
) -> None:
    """A daemon that accepts and never answers anything: its whole family fails, the other is whole."""
    bird, bird6 = replayed_bird
    bird.fault, bird.fault_on = Fault.HANG, frozenset({"show status"})
    result = await _collect(bird, bird6)
    assert {family for family, _ in result.errors} == {4}
    assert isinstance(result.errors[(4, NodeStatusClass.AGENT)], BirdTimeout)
    # The stream position is lost after a timeout: the later classes fail fast, not after timeouts.
    assert all(isinstance(e, BirdProtocolError | BirdTimeout) for e in result.errors.values())
    assert result.status.agent.bird_v4.state is not BGPDaemonState.READY
    assert result.status.agent.bird_v6.state is BGPDaemonState.READY
    assert len(result.status.routes.routes_v6) == 4
    bird.fault = Fault.NONE
    _assert_complete(await _collect(bird, bird6))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gather", "agent"])
async def test_100mb_reply_keeps_memory_bounded(
    replayed_bird: tuple[ReplayServer, ReplayServer], mode: str
) -> None:
    """A 100 MB `show route` (real route lines repeated) is streamed: the collecting process's peak
    RSS grows by a small fraction of the reply. `gather` is what node show, the doctor and metrics
    use; `agent` is the agent's collector (routes beyond the size budget are never held)."""
    bird, bird6 = replayed_bird
    bird.fault = Fault.HUGE
    replies = bird.replies
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.gather_worker",
        str(bird.path),
        str(bird6.path),
        mode,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(worker.communicate(), 120)
    assert worker.returncode == 0
    report = json.loads(stdout)
    assert bird.huge_sent >= bird.huge_bytes
    growth = report["peak_rss"] - report["baseline_rss"]
    assert growth < bird.huge_bytes // 3, f"peak RSS grew by {growth / 2**20:.0f} MiB for a 100 MiB reply"
    assert report["errors"] == {}
    # Every route read is counted, and exactly the documented cap of them is kept.
    sent_lines = sum(chunk.count(b"\n") for chunk in huge_route_reply(replies["show route"], bird.huge_bytes))
    routes_sent = sent_lines - 1  # one route per line (no multipath here), the final `0000` aside
    assert report["total"] == {"4": routes_sent, "6": 4}
    assert report["truncated"] == {"4": routes_sent - report["kept"]["4"], "6": 0}
    assert report["kept"]["6"] == 4
    if mode == "gather":
        assert report["kept"]["4"] == DEFAULT_ROUTE_LIMIT
    else:
        # As many as the default budget's room for routes holds: the IPv6 four (the family needing
        # less goes first), then IPv4 routes until not even the smallest one fits any more.
        room = route_bytes_within(DEFAULT_SIZE_BUDGET_BYTES)
        used = report["kept_bytes"]["4"] + report["kept_bytes"]["6"]
        smallest = min(
            serialised_size(api_route(r).to_wire()) + 1
            for r in parse.parse_routes(parse.reply_lines(replies["show route"]))
        )
        assert used <= room < used + smallest, (used, room, smallest)
        # ...and that room is the budget's: all but its headroom and the rest of an object (< 1 KiB).
        without_headroom = DEFAULT_SIZE_BUDGET_BYTES - HEADROOM_BYTES
        assert without_headroom - 1024 < room < without_headroom
