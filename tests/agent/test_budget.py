"""Size budget: FIB kept before RIB, per-family omitted counts, result really under budget."""

import json

from calico_nodestatus.agent.budget import (
    HEADROOM_BYTES,
    annotation_value,
    fit_routes,
    route_bytes_within,
    select_routes,
    serialised_size,
)


def _route(i: int, kind: str, family: int) -> dict:
    dest = f"198.19.{i // 256}.{i % 256}/32" if family == 4 else f"2001:db8:1::{i:x}/128"
    return {"type": kind, "destination": dest, "gateway": "N/A", "interface": "eth0", "learnedFrom": {}}


def _object(v4: list[dict], v6: list[dict]) -> dict:
    return {
        "kind": "CalicoNodeStatus",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "n1"},
        "spec": {"node": "n1", "classes": ["Routes"], "updatePeriodSeconds": 10},
        "status": {"lastUpdated": None, "agent": {}, "bgp": {}, "routes": {"routesV4": v4, "routesV6": v6}},
    }


def test_small_object_fits_untouched() -> None:
    assert fit_routes(_object([_route(1, "FIB", 4)], []), 64 * 1024) is None


def test_fib_routes_kept_before_rib_and_counts_per_family() -> None:
    v4 = [_route(i, "RIB" if i % 2 else "FIB", 4) for i in range(2000)]
    v6 = [_route(i, "FIB", 6) for i in range(500)]
    budget = 64 * 1024
    selection = fit_routes(_object(v4, v6), budget)
    assert selection is not None
    kept_v4 = [v4[i] for i in selection.keep_v4]
    kept_v6 = [v6[i] for i in selection.keep_v6]
    # Every FIB route is accounted for before any RIB route is kept.
    fib_total = sum(r["type"] == "FIB" for r in v4) + len(v6)
    fib_kept = sum(r["type"] == "FIB" for r in kept_v4) + len(kept_v6)
    rib_kept = sum(r["type"] == "RIB" for r in kept_v4)
    assert rib_kept == 0 or fib_kept == fib_total
    assert selection.omitted_v4 == 2000 - len(kept_v4) and selection.omitted_v4 > 0
    assert selection.omitted == {"v4": selection.omitted_v4, "v6": selection.omitted_v6}
    assert selection.keep_v4 == sorted(selection.keep_v4)  # order kept
    final = _object(kept_v4, kept_v6)
    assert serialised_size(final) <= budget - HEADROOM_BYTES
    assert serialised_size(final) > budget / 2  # the budget is used, not wasted


def test_route_bytes_within_is_what_the_smallest_object_leaves_for_routes() -> None:
    from calico_nodestatus.api import CalicoNodeStatus

    budget = 16 * 1024
    smallest = CalicoNodeStatus.model_validate(
        {"metadata": {"name": "a"}, "spec": {"node": "a", "classes": [], "updatePeriodSeconds": 0}}
    ).to_wire()
    room = route_bytes_within(budget)
    routes = []
    while sum(serialised_size(r) + 1 for r in [*routes, _route(len(routes), "FIB", 4)]) <= room:
        routes.append(_route(len(routes), "FIB", 4))
    fitting = {**smallest, "status": {**smallest["status"], "routes": {"routesV4": routes}}}
    assert fit_routes(fitting, budget) is None  # routes filling `room` fit the smallest object
    one_more = [*routes, {**_route(len(routes), "FIB", 4), "destination": "2001:db8:ffff::/48" + " " * 40}]
    overflowing = {**smallest, "status": {**smallest["status"], "routes": {"routesV4": one_more}}}
    assert fit_routes(overflowing, budget) is not None


def test_rib_included_once_all_fib_fit() -> None:
    v4 = [_route(i, "FIB", 4) for i in range(10)] + [_route(i, "RIB", 4) for i in range(10, 400)]
    selection = select_routes(v4, [], available_bytes=serialised_size({"r": v4[:20]}))
    assert set(range(10)) <= set(selection.keep_v4)
    assert len(selection.keep_v4) > 10


def test_annotation_value() -> None:
    assert annotation_value({}) is None
    assert annotation_value({"v4": 0, "v6": 0}) is None
    assert json.loads(annotation_value({"v4": 3}) or "") == {"v4": 3, "v6": 0}
