"""The agent's BIRD collector: one ``collect.gather`` call per tick for the union of the classes
every due object asks for (``gather`` itself sends each BIRD command once per family).

Routes are held only up to what the size budget could ever hold, per family and FIB/RIB type (so
a 100 MB table never sits in memory), and only those whose JSON fits what the budget leaves for
routes in the smallest object (``route_bytes_within``), FIB first, become status routes; the
runner's exact size check then trims what the rest of the object crowds out.
Both cuts are counted in the routes-omitted annotation.

With the BGP class, ``show status`` is queried too (one cheap command per daemon): the router ID
goes into the bgp-sessions annotation with the node's addresses (``--ip``/``--ip6``), which is how
the mesh view knows which node a peer IP is.
"""

from __future__ import annotations

from calico_nodestatus.agent.budget import DEFAULT_SIZE_BUDGET_BYTES, max_routes_within, route_bytes_within
from calico_nodestatus.agent.content import CollectedSections
from calico_nodestatus.agent.runner import Collector
from calico_nodestatus.agent.stale import PieceError
from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.bird.errors import BirdUnavailable
from calico_nodestatus.collect.gather import BirdSockets, CollectionResult, gather
from calico_nodestatus.collect.sections import clean_text
from calico_nodestatus.collect.sessions import sessions_report


def sections_from(
    result: CollectionResult, classes: frozenset[NodeStatusClass], addresses: tuple[str, ...] = ()
) -> CollectedSections:
    family_errors: dict[int, str] = {}
    for (family, _cls), error in sorted(result.errors.items(), key=lambda item: item[0][0]):
        family_errors.setdefault(family, str(error))
    status = result.status
    return CollectedSections(
        agent=status.agent if NodeStatusClass.AGENT in classes else None,
        bgp=status.bgp if NodeStatusClass.BGP in classes else None,
        routes=status.routes if NodeStatusClass.ROUTES in classes else None,
        family_errors=family_errors,
        timings={str(cls): seconds for cls, seconds in result.durations.items()},
        routes_truncated=dict(result.routes_truncated) if NodeStatusClass.ROUTES in classes else {},
        result=result,
        piece_errors={
            piece: PieceError(
                clean_text(str(error)) or type(error).__name__, daemon_down=isinstance(error, BirdUnavailable)
            )
            for piece, error in result.errors.items()
        },
        bgp_sessions=(
            sessions_report(result.protocols, result.daemons, family_errors, addresses).encode()
            if NodeStatusClass.BGP in classes
            else None
        ),
    )


def bird_collector(
    bird_socket: str | None = None,
    bird6_socket: str | None = None,
    size_budget_bytes: int = DEFAULT_SIZE_BUDGET_BYTES,
    addresses: tuple[str, ...] = (),
) -> Collector:
    """A collector for this node's BIRD; None sockets mean Calico's socket discovery; ``addresses``
    are the node's own BGP addresses, reported in the bgp-sessions annotation."""
    sockets = BirdSockets.from_overrides(bird_socket, bird6_socket)
    route_limit = max_routes_within(size_budget_bytes)

    async def collect(classes: frozenset[NodeStatusClass]) -> CollectedSections:
        queried = classes | {NodeStatusClass.AGENT} if NodeStatusClass.BGP in classes else classes
        result = await gather(
            sockets,
            queried,
            route_limit=route_limit,
            route_limit_per_type=True,
            route_bytes=route_bytes_within(size_budget_bytes),
        )
        return sections_from(result, classes, addresses)

    return collect
