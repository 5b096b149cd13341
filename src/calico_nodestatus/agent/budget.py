"""Keeping a CalicoNodeStatus under a serialised-size budget (pure).

etcd refuses requests over 1.5 MiB by default and the API server has similar limits, and a status
write that fails for size would fail forever. So the agent sizes the object before writing and,
when routes do not fit, keeps FIB routes first, then RIB routes, and records per family how many
were left out (annotation ``ROUTES_OMITTED_ANNOTATION``). Nothing else is ever cut.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico_nodestatus.collect.sections import select_within_budget

DEFAULT_SIZE_BUDGET_BYTES = 1024 * 1024
ROUTES_OMITTED_ANNOTATION = "nodestatus.projectcalico.org/routes-omitted"
# Room kept free for what changes after sizing: lastUpdated, resourceVersion, the annotation.
HEADROOM_BYTES = 512
MIN_SIZE_BUDGET_BYTES = 4 * 1024


# The smallest route BIRD can produce on the wire: no route is cheaper, so no more than
# `max_routes_within(budget)` routes can ever be kept in an object.
_SMALLEST_ROUTE = {"type": "FIB", "destination": "::/0", "gateway": "N/A", "learnedFrom": {}}


def max_routes_within(budget_bytes: int) -> int:
    """An upper bound on the routes an object of ``budget_bytes`` can hold; the agent never holds
    more per family and route type, however large BIRD's table (memory stays bounded)."""
    return budget_bytes // (serialised_size(_SMALLEST_ROUTE) + 1)


# One encoder for every size check: json.dumps() with options builds a new encoder per call,
# which cost more than the encoding itself for a route (bench/collect_routes.py).
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def serialised_size(document: Mapping[str, Any]) -> int:
    """Bytes of the compact JSON encoding, the form datastores store and send."""
    text = _COMPACT.encode(document)
    return len(text) if text.isascii() else len(text.encode())


@dataclass(frozen=True, slots=True)
class RouteSelection:
    keep_v4: list[int]  # indices into the family's route list, in their original order
    keep_v6: list[int]
    omitted_v4: int
    omitted_v6: int

    @property
    def omitted(self) -> dict[str, int]:
        return {"v4": self.omitted_v4, "v6": self.omitted_v6} if self.omitted_v4 or self.omitted_v6 else {}


def select_routes(
    routes_v4: Sequence[Mapping[str, Any]], routes_v6: Sequence[Mapping[str, Any]], available_bytes: int
) -> RouteSelection:
    """Which routes fit in ``available_bytes``, by the collector's one rule (FIB first, families
    sharing fairly), each family's order kept."""
    keep = select_within_budget(
        [
            [(route.get("type") == "FIB", serialised_size(route) + 1) for route in routes]  # +1: the comma
            for routes in (routes_v4, routes_v6)
        ],
        available_bytes,
    )
    kept = ([i for i, k in enumerate(keep[0]) if k], [i for i, k in enumerate(keep[1]) if k])
    keep_v4, keep_v6 = kept
    return RouteSelection(
        keep_v4=keep_v4,
        keep_v6=keep_v6,
        omitted_v4=len(routes_v4) - len(keep_v4),
        omitted_v6=len(routes_v6) - len(keep_v6),
    )


def annotation_value(omitted: Mapping[str, int], cut_short: Collection[str] = ()) -> str | None:
    """The annotation's value (compact JSON, e.g. ``{"v4":120,"v6":0}``), None when nothing is
    omitted. ``cut_short`` names the families whose list BIRD's reply cut short (``"cutShort":
    ["v4"]``): their count includes the routes never read, as far as the agent knows the table."""
    if not any(omitted.values()) and not cut_short:
        return None
    value: dict[str, Any] = {"v4": omitted.get("v4", 0), "v6": omitted.get("v6", 0)}
    if cut_short:
        value["cutShort"] = sorted(cut_short)
    return json.dumps(value, separators=(",", ":"))


def read_annotation(value: str | None) -> tuple[dict[str, int], frozenset[str]]:
    """The counts per family and the cut-short families of an annotation value; unreadable: none."""
    try:
        parsed = json.loads(value) if value else {}
        counts = {family: int(parsed.get(family, 0)) for family in ("v4", "v6")}
        cut_short = parsed.get("cutShort") or []
        return counts, frozenset(str(family) for family in cut_short if family in ("v4", "v6"))
    except (ValueError, TypeError, AttributeError):
        return {}, frozenset()


# Bytes fit_routes() charges for everything but the routes of the smallest possible object; no
# real object is smaller.
_SMALLEST_OBJECT = {
    "kind": "CalicoNodeStatus",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "a"},
    "spec": {"node": "a", "updatePeriodSeconds": 0},
    "status": {
        "lastUpdated": None,
        "agent": {"birdV4": {}, "birdV6": {}},
        "bgp": {
            "numberEstablishedV4": 0,
            "numberNotEstablishedV4": 0,
            "numberEstablishedV6": 0,
            "numberNotEstablishedV6": 0,
        },
        "routes": {},
    },
}
_LIST_OVERHEAD = len('"routesV4":[],') * 2  # empty lists are omitted: each kept family adds these


def route_bytes_within(budget_bytes: int) -> int:
    """The most bytes of routes (each with its separating comma) any object of ``budget_bytes``
    can hold: what fit_routes() leaves for routes in the smallest object. Collecting routes only up
    to this loses none that could fit, and spares the common case fit_routes()'s per-route work
    (~3 µs a route), which it needed whenever the routes alone filled the budget."""
    return budget_bytes - HEADROOM_BYTES - serialised_size(_SMALLEST_OBJECT) - _LIST_OVERHEAD


def fit_routes(object_wire: Mapping[str, Any], budget_bytes: int) -> RouteSelection | None:
    """None when the object fits as it is; otherwise the routes to keep so that it does."""
    limit = budget_bytes - HEADROOM_BYTES
    if serialised_size(object_wire) <= limit:
        return None
    status = dict(object_wire.get("status") or {})
    routes = dict(status.get("routes") or {})
    routes_v4 = list(routes.get("routesV4") or [])
    routes_v6 = list(routes.get("routesV6") or [])
    without_routes = {**object_wire, "status": {**status, "routes": {}}}
    available = limit - serialised_size(without_routes) - _LIST_OVERHEAD
    return select_routes(routes_v4, routes_v6, max(0, available))
