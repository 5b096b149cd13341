"""The agent end to end: real BIRD daemons in the lab, a real datastore, agents in-process or as
real processes. Periods are 1-3 s to keep the suite fast. Every test runs on the embedded datastore
(or all on etcd or kubernetes: AGENT_E2E_DATASTORE=etcd|kubernetes); the core ones on all three:
create, class/period changes, period 0, quiet node with its lease, kill/restart, the node-filtered
watch's delete and hand-over, and a table above the budget (its annotation written under the
ServiceAccount's shipped RBAC on Kubernetes)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from calico_nodestatus.agent.budget import ROUTES_OMITTED_ANNOTATION, serialised_size
from calico_nodestatus.agent.stale import COLLECTION_ERRORS_ANNOTATION
from calico_nodestatus.api import CalicoNodeStatus, NodeStatusClass
from calico_nodestatus.datastore.base import Datastore, NotFound
from tests.agent.conftest import node_status, on_every_datastore, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALL = ["Agent", "BGP", "Routes"]


async def _filled(store: Datastore, name: str, after: str | None = None) -> CalicoNodeStatus | None:
    obj = await store.get(name)
    if obj.status.last_updated is None:
        return None
    return obj if after is None or obj.metadata.resource_version != after else None


async def _settled(store: Datastore, name: str, quiet_for: float) -> CalicoNodeStatus:
    """The object once its resourceVersion stayed the same for `quiet_for` seconds: sessions of a
    just-restarted BIRD change state (and `since`) for a moment, which are real changes."""
    deadline = time.monotonic() + 20
    obj = await store.get(name)
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_for:
        assert time.monotonic() < deadline, f"{name} kept changing for 20 s"
        await asyncio.sleep(0.2)
        current = await store.get(name)
        if current.metadata.resource_version != obj.metadata.resource_version:
            obj, quiet_since = current, time.monotonic()
    return obj


def _other(lab: Any, node: Any) -> list[Any]:
    return [n for n in lab.nodes if n.name != node.name]


@on_every_datastore
async def test_create_fills_every_field_within_one_period(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    node = lab.nodes[0]
    async with agent_factory(node):
        started = time.monotonic()
        await store.create(node_status("full", node.name, ALL, 3))
        obj = await wait_for(lambda: _filled(store, "full"), 3 + 2, "status filled")
        assert time.monotonic() - started <= 5
    status = obj.status
    for daemon in (status.agent.bird_v4, status.agent.bird_v6):
        assert daemon.state == "Ready"
        assert daemon.router_id == str(node.ipv4)
        assert daemon.last_boot_time
    others = _other(lab, node)
    assert status.bgp.number_established_v4 == 2 and status.bgp.number_not_established_v4 == 0
    assert status.bgp.number_established_v6 == 2 and status.bgp.number_not_established_v6 == 0
    assert {p.peer_ip for p in status.bgp.peers_v4} == {str(n.ipv4) for n in others}
    assert {p.peer_ip for p in status.bgp.peers_v6} == {str(n.ipv6) for n in others}
    assert {(p.type, p.state) for p in status.bgp.peers_v4 + status.bgp.peers_v6} == {
        ("NodeMesh", "Established")
    }
    routes_v4 = {r.destination: r for r in status.routes.routes_v4}
    for other in others:  # the other nodes' pod blocks, learned over the mesh
        route = routes_v4[str(other.state.block_v4)]
        assert (route.type, route.gateway, route.learned_from.source_type) == (
            "FIB",
            str(other.ipv4),
            "NodeMesh",
        )
        assert route.learned_from.peer_ip == str(other.ipv4)
        route6 = {r.destination: r for r in status.routes.routes_v6}[str(other.state.block_v6)]
        assert route6.learned_from.peer_ip == str(other.ipv6)
    own = routes_v4[str(node.state.block_v4)]
    assert (own.interface, own.learned_from.source_type) == ("blackhole", "Static")
    assert obj.metadata.annotations.get(ROUTES_OMITTED_ANNOTATION) is None


@on_every_datastore
async def test_class_and_period_changes_take_effect_at_once(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    node = lab.nodes[0]
    async with agent_factory(node) as agent:
        created = await store.create(node_status("change", node.name, ALL, 60))
        obj = await wait_for(lambda: _filled(store, "change"), 3, "status filled")
        assert obj.status.routes.routes_v4 and obj.status.agent.bird_v4.state == "Ready"
        spec = obj.spec.model_copy(update={"classes": [NodeStatusClass.BGP]})
        await store.update(obj.model_copy(update={"spec": spec}))

        async def bgp_only() -> bool:
            current = await store.get("change")
            return not current.status.routes.routes_v4 and current.status.agent.bird_v4.state is None

        await wait_for(bgp_only, 3, "Agent and Routes sections cleared")
        current = await store.get("change")
        assert current.status.bgp.number_established_v4 == 2
        assert created.metadata.generation is not None
        # Period 60 -> 1: collections now happen every second instead of never within the test.
        before = agent.snapshot().counters.collections
        await asyncio.sleep(2)
        assert agent.snapshot().counters.collections == before
        current = await store.get("change")
        await store.update(
            current.model_copy(update={"spec": current.spec.model_copy(update={"update_period_seconds": 1})})
        )

        async def collecting_every_second() -> bool:  # at a period of 60 s, none would come for a minute
            return agent.snapshot().counters.collections - before >= 3

        await wait_for(collecting_every_second, 30, "three collections at the new period")


@on_every_datastore
async def test_period_zero_writes_once_even_when_bird_changes(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    node, peer = lab.nodes[0], lab.nodes[1]
    async with agent_factory(node) as agent:
        await store.create(node_status("once", node.name, ALL, 0))
        obj = await wait_for(lambda: _filled(store, "once"), 3, "status filled")
        writes = agent.snapshot().counters.writes
        lab.bird_stop(peer.index, 4)
        await asyncio.sleep(3)
        after = await store.get("once")
        assert after.metadata.resource_version == obj.metadata.resource_version
        assert after.status.bgp.number_established_v4 == 2  # the old report, as asked
        assert agent.snapshot().counters.writes == writes


async def test_peer_bird_stop_shows_session_down_within_a_period(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    node, peer = lab.nodes[0], lab.nodes[2]
    async with agent_factory(node):
        await store.create(node_status("peerdown", node.name, ["BGP"], 2))
        await wait_for(lambda: _filled(store, "peerdown"), 4, "status filled")
        lab.bird_stop(peer.index, 4)

        async def session_down() -> Any:
            status = (await store.get("peerdown")).status
            states = {p.peer_ip: p.state for p in status.bgp.peers_v4}
            return states.get(str(peer.ipv4)) != "Established" and status.bgp.number_not_established_v4 == 1

        await wait_for(session_down, 2 + 2, "session to the stopped peer non-Established")
        v6 = (await store.get("peerdown")).status.bgp
        assert v6.number_established_v6 == 2  # the IPv6 daemon of the peer still runs


@on_every_datastore
async def test_quiet_node_keeps_resource_version_while_liveness_stays_fresh(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    node = lab.nodes[1]
    async with agent_factory(node) as agent:
        await store.create(node_status("quiet", node.name, ALL, 1))
        await wait_for(lambda: _filled(store, "quiet"), 3, "status filled")
        obj = await _settled(store, "quiet", quiet_for=1.5)
        collections = agent.snapshot().counters.collections
        renewals: set[float] = set()

        async def renewed_while_collecting() -> bool:
            """The record is renewed again and again, alive by its own TTL at every look, while
            the agent keeps collecting (it did look, every period) without writing."""
            record = await store.get_liveness(node.name)
            assert record is not None and record.is_alive(datetime.now(UTC)), record
            renewals.add(record.renewed_at.timestamp())
            return len(renewals) >= 4 and agent.snapshot().counters.collections - collections >= 3

        await wait_for(renewed_while_collecting, 30, "three renewals and three collections")
        assert (await store.get("quiet")).metadata.resource_version == obj.metadata.resource_version


@on_every_datastore
async def test_killed_agent_goes_stale_and_restart_resumes_without_a_write(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    node = lab.nodes[2]
    first = agent_factory(node, in_process=False)
    await store.create(node_status("restart", node.name, ALL, 1))
    await wait_for(
        lambda: _filled(store, "restart"), 8, "status filled by the agent process", explain=first.output
    )
    obj = await _settled(store, "restart", quiet_for=2.5)
    await wait_for(lambda: store.get_liveness(node.name), 3, "liveness record")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(5)

    async def stale() -> bool:
        return await store.get_liveness(node.name) is None

    await wait_for(stale, 3, "liveness stale after kill")
    second = agent_factory(node, in_process=False)
    await wait_for(lambda: store.get_liveness(node.name), 8, "liveness after restart")
    await asyncio.sleep(2.5)
    resumed = await store.get("restart")
    assert resumed.metadata.resource_version == obj.metadata.resource_version, second.output()
    # SIGTERM: clean stop within 2 s, liveness released.
    second.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert second.process.wait(5) == 0, second.output()
    assert time.monotonic() - started < 2
    assert await store.get_liveness(node.name) is None
    assert "event=status_written" not in second.output()


@on_every_datastore
async def test_delete_stops_work_and_moving_node_hands_over(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    one, two = lab.nodes[0], lab.nodes[1]
    async with agent_factory(one) as agent_one, agent_factory(two) as agent_two:
        await store.create(node_status("moving", one.name, ["Agent"], 1))
        obj = await wait_for(lambda: _filled(store, "moving"), 3, "status filled")
        assert obj.status.agent.bird_v4.router_id == str(one.ipv4)
        await store.update(obj.model_copy(update={"spec": obj.spec.model_copy(update={"node": two.name})}))

        async def taken_over() -> bool:
            return (await store.get("moving")).status.agent.bird_v4.router_id == str(two.ipv4)

        await wait_for(taken_over, 3, "node two's agent writing its data")
        await wait_for(lambda: _dropped(agent_one, "moving"), 3, "node one's agent dropping the object")
        writes_one = agent_one.snapshot().counters.writes
        await asyncio.sleep(2)
        assert (await store.get("moving")).status.agent.bird_v4.router_id == str(two.ipv4)
        assert agent_one.snapshot().counters.writes == writes_one

        await store.delete("moving")
        await wait_for(
            lambda: _dropped(agent_two, "moving"), 2, "node two's agent dropping the deleted object"
        )
        writes_two = agent_two.snapshot().counters.writes
        await asyncio.sleep(2)
        assert agent_two.snapshot().counters.writes == writes_two
        with pytest.raises(NotFound):
            await store.get("moving")


async def _dropped(agent: Any, name: str) -> bool:
    return name not in agent.snapshot().objects


@on_every_datastore
@pytest.mark.parametrize("budget", [64 * 1024, None], ids=["64KiB", "default-1MiB"])
async def test_large_route_table_stays_under_budget(
    lab: Any, store: Datastore, agent_factory: Any, budget: int | None
) -> None:
    node, origin = lab.nodes[0], lab.nodes[1]
    extra = 20_000
    lab.set_routes(origin.index, extra)
    async with agent_factory(node, size_budget=budget):
        await store.create(node_status("big", node.name, ALL, 3))

        async def omitted() -> Any:
            # BIRD learns the 20,000 routes over a few seconds; wait for the whole table.
            obj = await store.get("big")
            raw = obj.metadata.annotations.get(ROUTES_OMITTED_ANNOTATION)
            counts = json.loads(raw) if raw else {}
            complete = len(obj.status.routes.routes_v4) + counts.get("v4", 0) >= extra
            return (obj, counts) if counts and complete else None

        obj, counts = await wait_for(omitted, 30, "routes-omitted annotation counting the whole table")
    limit = budget or 1024 * 1024
    assert serialised_size(obj.to_wire()) <= limit
    kept_v4 = obj.status.routes.routes_v4
    learned = sum(ipaddress.ip_network(r.destination).prefixlen >= 24 for r in kept_v4)
    assert learned and counts["v4"] > 0
    assert obj.status.agent.bird_v4.state == "Ready" and obj.status.bgp.number_established_v4 == 2
    # FIB kept first: no RIB route written while a FIB route was left out.
    assert all(r.type == "FIB" for r in kept_v4) or counts["v4"] == 0


@on_every_datastore
async def test_own_bird6_stopped_keeps_the_last_good_v6_data_marked_stale(
    lab: Any, store: Datastore, agent_factory: Any
) -> None:
    """bird6 of the agent's own node stops: the v6 pieces keep their last good content (no zeros),
    bird6 is NotReady, and the collection-errors annotation names the pieces (on Kubernetes written
    as the ServiceAccount, through the shipped RBAC and admission policy); bird6 back: cleared."""
    node = lab.nodes[2]
    async with agent_factory(node):
        await store.create(node_status("own6", node.name, ALL, 1))

        async def good() -> CalicoNodeStatus | None:
            obj = await store.get("own6")
            bgp = obj.status.bgp
            return obj if bgp.number_established_v6 == 2 and obj.status.routes.routes_v6 else None

        before = await wait_for(good, 10, "complete v6 data")
        lab.bird_stop(node.index, 6)

        async def marked() -> CalicoNodeStatus | None:
            obj = await store.get("own6")
            return obj if COLLECTION_ERRORS_ANNOTATION in obj.metadata.annotations else None

        during = await wait_for(marked, 10, "collection-errors annotation")
        entries = json.loads(during.metadata.annotations[COLLECTION_ERRORS_ANNOTATION])
        assert set(entries) == {"Agent/v6", "BGP/v6", "Routes/v6"}
        assert {entry["content"] for entry in entries.values()} == {"stale"}
        assert all("unable to connect to BIRD socket" in entry["error"] for entry in entries.values())
        status = during.status
        assert status.agent.bird_v6.state == "NotReady"
        assert status.agent.bird_v6.router_id == before.status.agent.bird_v6.router_id
        assert status.bgp.number_established_v6 == 2
        assert status.bgp.peers_v6 == before.status.bgp.peers_v6
        assert status.routes.routes_v6 == before.status.routes.routes_v6
        assert status.agent.bird_v4.state == "Ready" and status.bgp.number_established_v4 == 2
        lab.bird_start(node.index, 6)

        async def cleared() -> CalicoNodeStatus | None:
            obj = await store.get("own6")
            back = obj.status.agent.bird_v6.state == "Ready"
            return obj if back and COLLECTION_ERRORS_ANNOTATION not in obj.metadata.annotations else None

        await wait_for(cleared, 10, "bird6 Ready again and the marker cleared")
