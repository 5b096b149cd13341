"""The mesh analysis and its renderings, from hand-built objects (the lab tests use real BIRD).

Objects are built the way the agent writes them: Calico's status plus the bgp-sessions annotation;
the BIRD texts are the ones the transcripts show (../fixtures/bird)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from calico_nodestatus.api import (
    CalicoNodeBGPStatus,
    CalicoNodePeer,
    CalicoNodeStatus,
    CalicoNodeStatusSpec,
    CalicoNodeStatusStatus,
    NodeStatusClass,
    ObjectMeta,
)
from calico_nodestatus.api.annotations import BGP_SESSIONS_ANNOTATION, BGPSessionsReport, SessionDetail
from calico_nodestatus.mesh import CellStatus, Mesh, VerdictKind, build_mesh, render_dot, render_text, to_data

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "mesh.schema.json").read_text())


def ip(index: int) -> str:
    return f"198.18.0.{index}"


def ip6(index: int) -> str:
    return f"2001:db8::{index}"


# (peer, family, BIRD state, error, peer type, local AS, peer AS); a peer is a node index or an IP.
Session = tuple[int | str, int, str, str | None]


def node(
    index: int,
    sessions: list[Session],
    *,
    local_as: int = 64512,
    bird_errors: dict[str, str] | None = None,
    router_id: str | None = None,
    kinds: dict[int | str, str] | None = None,
) -> CalicoNodeStatus:
    """Node-<index>'s object as its agent writes it."""
    peers: dict[int, list[CalicoNodePeer]] = {4: [], 6: []}
    details = []
    for peer, family, bird_state, error in sessions:
        address = peer if isinstance(peer, str) else (ip(peer) if family == 4 else ip6(peer))
        kind = (kinds or {}).get(peer, "NodeMesh")
        prefix = {"NodeMesh": "Mesh", "NodePeer": "Node", "GlobalPeer": "Global"}[kind]
        state = "Active" if bird_state == "Passive" else bird_state
        peers[family].append(CalicoNodePeer(peer_ip=address, type=kind, state=state, since="19:59:00"))
        details.append(
            SessionDetail(
                peer_ip=address,
                protocol=f"{prefix}_{address.replace('.', '_').replace(':', '_')}",
                bird_state=bird_state,
                local_as=local_as,
                peer_as=64512,
                peer_id=ip(peer) if bird_state == "Established" and isinstance(peer, int) else None,
                error=error,
            )
        )
    report = BGPSessionsReport(
        addresses=[ip(index), ip6(index)],
        router_id=router_id or ip(index),
        bird_errors=bird_errors or {},
        sessions=details,
    )
    established = {f: sum(p.state == "Established" for p in peers[f]) for f in (4, 6)}
    return CalicoNodeStatus(
        metadata=ObjectMeta(
            name=f"nodestatus-node-{index}", annotations={BGP_SESSIONS_ANNOTATION: report.encode()}
        ),
        spec=CalicoNodeStatusSpec(
            node=f"node-{index}", classes=[NodeStatusClass.BGP], update_period_seconds=30
        ),
        status=CalicoNodeStatusStatus(
            last_updated=NOW - timedelta(seconds=5),
            bgp=CalicoNodeBGPStatus(
                number_established_v4=established[4],
                number_not_established_v4=len(peers[4]) - established[4],
                number_established_v6=established[6],
                number_not_established_v6=len(peers[6]) - established[6],
                peers_v4=peers[4],
                peers_v6=peers[6],
            ),
        ),
    )  # fmt: skip


def up_to(index: int, others: list[int]) -> list[Session]:
    return [(other, family, "Established", None) for other in others for family in (4, 6) if other != index]


def full_mesh(count: int) -> dict[int, list[Session]]:
    return {i: up_to(i, list(range(1, count + 1))) for i in range(1, count + 1)}


ALL_ALIVE = frozenset(f"node-{i}" for i in range(1, 5))


def mesh_of(
    sessions: dict[int, list[Session]],
    alive: frozenset[str] = ALL_ALIVE,
    options: dict[int, dict[str, Any]] | None = None,
) -> Mesh:
    """The mesh of node-<i> objects; ``options[i]``: node()'s keyword arguments for node i."""
    objects = [node(i, s, **(options or {}).get(i, {})) for i, s in sessions.items()]
    return build_mesh(objects, alive, NOW)


def kinds(mesh: Mesh) -> list[VerdictKind]:
    return [v.kind for v in mesh.verdicts]


def test_a_healthy_mesh_has_no_verdict_and_exit_0() -> None:
    mesh = mesh_of(full_mesh(4))
    assert mesh.verdicts == () and mesh.exit_code == 0
    assert {c.status for c in mesh.cells} == {CellStatus.UP}
    assert len(mesh.cells) == 2 * 4 * 3  # two families, every ordered pair
    text = render_text(mesh)
    assert "up|up" in text and "all 4 nodes healthy" in text


def _break(
    sessions: dict[int, list[Session]], a: int, b: int, a_state: str, b_state: str, error: str
) -> None:
    for x, y, state in ((a, b, a_state), (b, a, b_state)):
        sessions[x] = [(p, f, state, error) if p == y else (p, f, s, e) for p, f, s, e in sessions[x]]


def test_one_blocked_pair_is_pair_broken_naming_both_ends() -> None:
    sessions = full_mesh(4)
    _break(sessions, 1, 2, "Passive", "Active", "Socket: Connection timed out")
    mesh = mesh_of(sessions)
    (verdict,) = mesh.verdicts
    assert verdict.kind is VerdictKind.PAIR_BROKEN and verdict.nodes == ("node-1", "node-2")
    evidence = "\n".join(verdict.evidence)
    assert "node-1: v4 Mesh_198_18_0_2 Passive" in evidence
    assert "node-2: v4 Mesh_198_18_0_1 Active (Socket: Connection timed out)" in evidence
    assert "node-1 is Passive: node-1 never received node-2's connection" in evidence
    assert mesh.exit_code == 1
    down = {(c.row, c.column) for c in mesh.cells if c.status is CellStatus.DOWN}
    assert down == {("node-1", "node-2"), ("node-2", "node-1")}


def test_a_node_down_everywhere_is_isolated_not_n_broken_pairs() -> None:
    sessions = full_mesh(4)
    sessions[4] = []
    errors = {"v4": "BIRD unreachable", "v6": "BIRD unreachable"}
    for other in (1, 2, 3):
        sessions[other] = [
            (p, f, "Active", "Socket: Connection refused") if p == 4 else (p, f, s, e)
            for p, f, s, e in sessions[other]
        ]
    mesh = mesh_of(sessions, options={4: {"bird_errors": errors}})
    (verdict,) = mesh.verdicts
    assert verdict.kind is VerdictKind.NODE_ISOLATED and verdict.nodes == ("node-4",)
    assert verdict.evidence[0] == "node-4 itself: BIRD v4: BIRD unreachable; BIRD v6: BIRD unreachable"
    assert any(line.startswith("node-1 sees it: v4 Mesh_198_18_0_4 Active (Socket: Connection refused)")
               for line in verdict.evidence)  # fmt: skip


def test_bad_peer_as_is_an_as_mismatch_quoting_both_ends_not_an_isolated_node() -> None:
    sessions = full_mesh(4)
    for other in (1, 2, 3):
        _break(sessions, other, 4, "Idle", "Active", "BGP Error: Bad peer AS")
    sessions[4] = [(p, f, "Active", "Received: Bad peer AS") for p, f, _s, _e in sessions[4]]
    mesh = mesh_of(sessions, options={4: {"local_as": 64513}})
    (verdict,) = mesh.verdicts
    assert verdict.kind is VerdictKind.AS_MISMATCH
    assert verdict.nodes == ("node-4", "node-1", "node-2", "node-3")
    evidence = "\n".join(verdict.evidence)
    assert (
        "node-1 (runs AS 64512, expects AS 64512 of the peer): v4 Mesh_198_18_0_4: "
        "BIRD says 'BGP Error: Bad peer AS'" in evidence
    )
    assert (
        "node-4 (runs AS 64513, expects AS 64512 of the peer): v4 Mesh_198_18_0_1: "
        "BIRD says 'Received: Bad peer AS'" in evidence
    )


def test_a_stale_agent_is_no_data_never_down() -> None:
    mesh = mesh_of(full_mesh(4), alive=ALL_ALIVE - {"node-3"})
    (verdict,) = mesh.verdicts
    assert verdict.kind is VerdictKind.STALE_AGENT and verdict.severity == "warn" and mesh.exit_code == 2
    assert "no data" in verdict.summary
    row = [c for c in mesh.cells if c.row == "node-3"]
    assert {c.forward for c in row} == {None}
    assert {c.status for c in row} == {CellStatus.UP}  # the live ends still see the sessions up
    assert "?|up" in render_text(mesh)


def test_a_peer_listed_at_one_end_only_is_asymmetric_configuration() -> None:
    sessions = full_mesh(3)
    sessions[1].append(("198.18.0.2", 4, "Active", "Socket: Connection refused"))
    mesh = mesh_of(sessions, options={1: {"kinds": {"198.18.0.2": "NodePeer"}}})
    assert kinds(mesh) == [VerdictKind.ASYMMETRIC]
    (line,) = mesh.verdicts[0].evidence
    assert line.startswith("node-1 lists node-2 as NodePeer (v4 Node_198_18_0_2, Active")
    assert line.endswith("node-2 does not list node-1 as NodePeer")


def test_duplicate_router_ids_from_what_the_peers_see() -> None:
    mesh = mesh_of(full_mesh(3), options={3: {"router_id": ip(2)}})
    (verdict,) = mesh.verdicts
    assert verdict.kind is VerdictKind.DUPLICATE_ROUTER_ID and verdict.nodes == ("node-2", "node-3")
    assert "share router ID 198.18.0.2" in verdict.summary


def test_global_peers_are_columns_of_their_own() -> None:
    sessions = full_mesh(2)
    for index in (1, 2):
        sessions[index].append(("198.18.250.1", 4, "Active", "Socket: Network is unreachable"))
    global_peer = {"kinds": {"198.18.250.1": "GlobalPeer"}}
    mesh = mesh_of(sessions, alive=frozenset({"node-1", "node-2"}), options={1: global_peer, 2: global_peer})
    assert [p.label for p in mesh.externals] == ["global 198.18.250.1"]
    header = next(line for line in render_text(mesh).splitlines() if line.startswith("IPv4"))
    assert header.split() == ["IPv4", "node-1", "node-2", "global", "198.18.250.1"]


def test_colour_only_when_asked() -> None:
    sessions = full_mesh(4)
    _break(sessions, 1, 2, "Passive", "Active", "Socket: Connection timed out")
    mesh = mesh_of(sessions)
    assert "\x1b[" not in render_text(mesh)
    coloured = render_text(mesh, lambda text, fg: f"<{fg}>{text}</>" if fg else text)
    assert "<red>pasv|act" in coloured and "<green>up|up" in coloured


@pytest.mark.parametrize("stale", [False, True])
def test_json_and_yaml_follow_the_documented_schema(stale: bool) -> None:
    sessions = full_mesh(4)
    _break(sessions, 1, 2, "Passive", "Active", "Socket: Connection timed out")
    mesh = mesh_of(sessions, alive=ALL_ALIVE - ({"node-4"} if stale else set()))
    data = to_data(mesh)
    jsonschema.validate(json.loads(json.dumps(data)), SCHEMA)
    assert data["exitCode"] == 1 and data["verdicts"][0]["kind"] == "pair broken"
    jsonschema.validate(yaml.safe_load(yaml.safe_dump(data)), SCHEMA)


def test_the_schema_rejects_what_it_documents_as_wrong() -> None:
    data = to_data(mesh_of(full_mesh(2), alive=frozenset({"node-1", "node-2"})))
    data["cells"][0]["status"] = "broken"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_dot_renders_to_a_png_with_graphviz(tmp_path: Path) -> None:
    dot = shutil.which("dot")
    assert dot, "Graphviz's dot is missing (Debian graphviz; make system-deps)"
    sessions = full_mesh(4)
    _break(sessions, 1, 2, "Passive", "Active", "Socket: Connection timed out")
    text = render_dot(mesh_of(sessions, alive=ALL_ALIVE - {"node-4"}))
    assert '"node-1" -- "node-2" [color=red' in text
    png = tmp_path / "mesh.png"
    subprocess.run([dot, "-Tpng", "-o", str(png)], input=text, text=True, check=True, timeout=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
