"""The agent's BIRD collector: one ``collect.gather`` call per tick for the union of the classes
every due object asks for (``gather`` itself sends each BIRD command once per family).

Routes are not capped here (``route_limit=None``): the agent's size budget decides what is left
out, FIB first, and counts it in the routes-omitted annotation.
"""

from __future__ import annotations

from calico_nodestatus.agent.content import CollectedSections
from calico_nodestatus.agent.runner import Collector
from calico_nodestatus.api import NodeStatusClass
from calico_nodestatus.collect.gather import BirdSockets, CollectionResult, gather


def sections_from(result: CollectionResult, classes: frozenset[NodeStatusClass]) -> CollectedSections:
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
        result=result,
    )


def bird_collector(bird_socket: str | None = None, bird6_socket: str | None = None) -> Collector:
    """A collector for this node's BIRD; None sockets mean Calico's socket discovery."""
    sockets = BirdSockets.from_overrides(bird_socket, bird6_socket)

    async def collect(classes: frozenset[NodeStatusClass]) -> CollectedSections:
        return sections_from(await gather(sockets, classes, route_limit=None), classes)

    return collect
