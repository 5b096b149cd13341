"""The mesh view on the lab: a 4-node BIRD 1.6 mesh (IPv4 + IPv6), one real agent process per node
(on Kubernetes as the DaemonSet's ServiceAccount), the objects made by `apply --all-nodes`, the
matrix read back by `calico-nodestatus mesh` from the datastore alone, on every datastore.

One test walks the faults in turn on one set of agents (each fault undone before the next):
block-bgp between two nodes -> pair broken naming both (and the doctor on one of them quotes the
other's view of the session); bird stop -> node isolated; set-as -> AS
mismatch quoting BIRD at both ends; a one-sided explicit peer -> asymmetric configuration; a killed
agent -> stale agent, its row "no data" and never "down". The other: `apply --all-nodes --ttl 20s`
fills every node, the agents delete the objects at expiry, and an edit before then renews one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.api.annotations import EXPIRES_AT_ANNOTATION, format_expiry, parse_expiry
from calico_nodestatus.datastore.base import Datastore, NotFound
from calico_nodestatus.lab.model import Peer, PeerType
from calico_nodestatus.mesh import Mesh, VerdictKind, build_mesh
from tests.agent.conftest import HEARTBEAT_SECONDS, on_every_datastore, wait_for
from tests.plugins.agent import agent_argv, agent_process
from tests.plugins.lab import built_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

NODES = 4
OTHER_AS = 64513
FAULT_WITHIN = 60.0  # BIRD's retry timers and a period of 1 s are far inside this


@pytest.fixture(scope="module")
def mesh_lab() -> Iterator[Any]:
    with built_lab("1.6", nodes=NODES, ipv6=True) as lab:
        yield lab


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calico_nodestatus", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def agents(lab: Any, env: dict[str, str], logs: Path) -> AsyncIterator[dict[str, Any]]:
    """One agent process per lab node, telling its addresses; {node name: process}."""
    async with contextlib.AsyncExitStack() as stack:
        processes = {}
        for node in lab.nodes:
            argv = agent_argv(
                node.name, node.socket_v4, node.socket_v6,
                "--ip", str(node.ipv4), "--ip6", str(node.ipv6),
                "--heartbeat-seconds", str(HEARTBEAT_SECONDS), "--metrics-port", "0",
            )  # fmt: skip
            log = logs / f"agent-{node.name}.log"
            processes[node.name] = await stack.enter_async_context(agent_process(argv, env, log))
        yield processes


async def current_mesh(store: Datastore) -> Mesh:
    objects, _ = await store.list()
    now = datetime.now(UTC)
    alive = frozenset(r.node for r in await store.list_liveness() if r.is_alive(now))
    return build_mesh(objects, alive, now)


async def wait_mesh(store: Datastore, what: str, check: Any) -> Mesh:
    last: list[Mesh] = []

    async def probe() -> Mesh | None:
        mesh = await current_mesh(store)
        last[:] = [mesh]
        return mesh if check(mesh) else None

    def explain() -> str:
        from calico_nodestatus.mesh import render_text

        return render_text(last[0]) if last else ""

    result: Mesh = await wait_for(probe, FAULT_WITHIN, what, interval=0.5, explain=explain)
    return result


def healthy(mesh: Mesh) -> bool:
    return len(mesh.nodes) == NODES and all(v.has_data for v in mesh.nodes) and mesh.exit_code == 0


def only(kind: VerdictKind, nodes: tuple[str, ...] | None = None) -> Any:
    def check(mesh: Mesh) -> bool:
        return [v.kind for v in mesh.verdicts] == [kind] and (
            nodes is None or mesh.verdicts[0].nodes == nodes
        )

    return check


def show(env: dict[str, str], title: str) -> str:
    """The CLI's matrix and verdicts (printed: a failing run shows them)."""
    result = cli(env, "mesh")
    print(f"==== {title} (exit {result.returncode})\n{result.stdout}{result.stderr}")
    return result.stdout


@on_every_datastore
async def test_mesh_verdicts_for_each_fault(
    mesh_lab: Any, datastore_env: dict[str, str], agent_env: dict[str, str], store: Datastore, tmp_path: Path
) -> None:
    lab = mesh_lab
    one, two, three, four = (node.name for node in lab.nodes)
    async with agents(lab, agent_env, tmp_path) as processes:
        await wait_for(lambda: _live_count(store), 20, "every agent's liveness record")
        applied = cli(
            datastore_env, "apply", "--all-nodes", "--classes", "BGP", "--period", "1", "--ttl", "1h"
        )
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.count("created") == NODES, applied.stdout
        await wait_mesh(store, "a healthy 4-node mesh", healthy)
        assert cli(datastore_env, "mesh").returncode == 0

        lab.block_bgp(one, two)
        try:
            mesh = await wait_mesh(store, "pair broken", only(VerdictKind.PAIR_BROKEN, (one, two)))
            text = show(datastore_env, "block-bgp node-1 node-2")
            assert f"pair broken: {one} and {two} do not peer, while both have other sessions up" in text
            evidence = "\n".join(mesh.verdicts[0].evidence)
            assert f"{one}: v4 Mesh_198_18_0_2" in evidence and f"{two}: v4 Mesh_198_18_0_1" in evidence
            down = {(c.row, c.column) for c in mesh.cells if c.status == "down"}
            assert down == {(one, two), (two, one)}  # every other pair is up
            # The doctor on node-2 adds node-1's own view of the session (from the datastore).
            node = lab.node(two)
            doctor = cli(
                datastore_env, "doctor", "--node", two, "--bird-socket", str(node.socket_v4),
                "--bird6-socket", str(node.socket_v6), "--connect-timeout", "0.2",
            )  # fmt: skip
            far_end = f"198.18.0.1 ({one}) sees this node as Passive: it never received our connection"
            assert far_end in doctor.stdout, doctor.stdout
        finally:
            lab.unblock_bgp(one, two)
        await wait_mesh(store, "healthy after unblock", healthy)

        lab.bird_stop(four)
        try:
            mesh = await wait_mesh(store, "node isolated", only(VerdictKind.NODE_ISOLATED, (four,)))
            text = show(datastore_env, "bird stop node-4")
            assert f"node isolated: {four} has no BGP session up, seen from every side" in text
            evidence = mesh.verdicts[0].evidence
            assert evidence[0].startswith(f"{four} itself: BIRD v4:")
            assert {line.split(" ", 1)[0] for line in evidence[1:]} == {one, two, three}
        finally:
            lab.bird_start(four)
        lab.wait_established(timeout=60)
        await wait_mesh(store, "healthy after bird start", healthy)

        lab.set_as(three, OTHER_AS)
        try:
            # BIRD's text at node-3 and at each of its peers (the AS numbers BIRD 1.6 prints), once
            # every peer has retried: the first attempt may still be under way at some of them.
            expects = "(expects AS 64512 of the peer)"
            texts = [f"{three} {expects}: v4 Mesh_198_18_0_1: BIRD says 'Received: Bad peer AS'"]
            texts += [
                f"{peer} {expects}: v4 Mesh_198_18_0_3: BIRD says 'BGP Error: Bad peer AS'"
                for peer in (one, two, four)
            ]

            def mismatch_from_both_ends(mesh: Mesh) -> bool:
                return only(VerdictKind.AS_MISMATCH)(mesh) and all(
                    text in mesh.verdicts[0].evidence for text in texts
                )

            mesh = await wait_mesh(store, "AS mismatch quoting both ends", mismatch_from_both_ends)
            show(datastore_env, "set-as node-3")
            assert mesh.verdicts[0].nodes == (three, one, two, four)
        finally:
            lab.set_as(three, 64512)
        lab.wait_established(timeout=60)
        await wait_mesh(store, "healthy after set-as back", healthy)

        lab.add_peers(one, [Peer(type=PeerType.NODE, ip=lab.node(two).ipv4)])
        try:
            listed = f"{one} lists {two} as NodePeer (v4 Node_198_18_0_2"

            def asymmetric(mesh: Mesh) -> bool:  # once the agent's annotation names the protocol too
                verdicts = [v for v in mesh.verdicts if v.kind is VerdictKind.ASYMMETRIC]
                return bool(verdicts) and verdicts[0].evidence[0].startswith(listed)

            mesh = await wait_mesh(store, "asymmetric configuration", asymmetric)
            show(datastore_env, "one-sided explicit peer node-1 -> node-2")
            (verdict,) = [v for v in mesh.verdicts if v.kind is VerdictKind.ASYMMETRIC]
            assert verdict.nodes == (one, two)
            assert verdict.evidence[0].endswith(f"{two} does not list {one} as NodePeer")
        finally:
            lab.remove_peers(one)
        await wait_mesh(store, "healthy after removing the peer", healthy)

        processes[two].kill()
        await processes[two].wait()
        mesh = await wait_mesh(store, "stale agent", only(VerdictKind.STALE_AGENT, (two,)))
        show(datastore_env, "killed agent of node-2")
        row = [c for c in mesh.cells if c.row == two]
        assert row and all(c.forward is None for c in row)
        assert all(c.status != "down" for c in mesh.cells)
        assert cli(datastore_env, "mesh").returncode == 2


async def _expiry(store: Datastore, name: str) -> datetime | None:
    try:
        obj = await store.get(name)
    except NotFound:
        return None
    return parse_expiry(obj.metadata.annotations.get(EXPIRES_AT_ANNOTATION))


@on_every_datastore
async def test_all_nodes_with_a_ttl_fill_then_clean_up_and_an_edit_renews(
    mesh_lab: Any, datastore_env: dict[str, str], agent_env: dict[str, str], store: Datastore, tmp_path: Path
) -> None:
    names = [f"nodestatus-{node.name}" for node in mesh_lab.nodes]
    async with agents(mesh_lab, agent_env, tmp_path):
        await wait_for(lambda: _live_count(store), 20, "every agent's liveness record")
        applied = cli(
            datastore_env, "apply", "--all-nodes", "--classes", "BGP", "--period", "1", "--ttl", "20s"
        )
        assert applied.returncode == 0, applied.stderr
        started = time.monotonic()

        async def filled() -> bool:
            objects, _ = await store.list()
            return sorted(o.name for o in objects if o.status.last_updated) == names

        await wait_for(filled, 20, "every node's object filled")
        expiries = {name: await _expiry(store, name) for name in names}
        assert all(expiries.values()), expiries
        wide = cli(datastore_env, "get", "cns", "-o", "wide").stdout
        assert format_expiry(expiries[names[0]]) in wide  # type: ignore[arg-type]
        assert format_expiry(expiries[names[0]]) in cli(datastore_env, "summary").stdout  # type: ignore[arg-type]

        # Renewed before it expires: a later expiry, written by an edit the agent has not seen.
        renewed = names[0]
        obj = await store.get(renewed)
        later = datetime.now(UTC) + timedelta(minutes=10)
        annotations = {**obj.metadata.annotations, EXPIRES_AT_ANNOTATION: format_expiry(later)}
        metadata = obj.metadata.model_copy(update={"annotations": annotations})
        await store.update(obj.model_copy(update={"metadata": metadata}))
        assert time.monotonic() - started < 20, "the edit came after the expiry; the machine is too slow"

        async def expired_gone() -> bool:
            gone = [name for name in names[1:] if await _expiry(store, name) is None]
            for name in gone:  # never before its expiry (the annotation has whole seconds)
                assert datetime.now(UTC) >= expiries[name], f"{name} deleted before {expiries[name]}"
            return len(gone) == len(names) - 1

        await wait_for(expired_gone, 60, "the expired objects deleted by their agents")
        assert await _expiry(store, renewed) == later.replace(microsecond=0)


async def _live_count(store: Datastore) -> bool:
    now = datetime.now(UTC)
    return len([r for r in await store.list_liveness() if r.is_alive(now)]) == NODES
