"""BIRD configs the lab renders: Calico's naming and mesh rules, and real BIRD accepts them."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

from calico_nodestatus.lab import BirdVersion, LabError, Peer, PeerType
from calico_nodestatus.lab.birdconf import (
    bgp_sessions,
    extra_routes_networks,
    render_bird2,
    render_bird16,
    render_extra_routes,
)
from calico_nodestatus.lab.lab import Lab, parse_bgp_rows
from calico_nodestatus.lab.system import bird_binaries


def _state(tmp_path: Path, nodes: int, bird: BirdVersion = BirdVersion.V1_6):
    state = Lab.plan(name="cfg", version=bird, count=nodes, ipv6=True, calico_timers=True, owner=None)
    for node in state.nodes:
        node.directory = tmp_path / node.name
    return state


def test_mesh_names_sources_and_passive_rule(tmp_path: Path) -> None:
    state = _state(tmp_path, 10)
    node2 = state.nodes[1]
    v4 = {s.name: s for s in bgp_sessions(state, node2, 4)}
    assert sorted(v4) == sorted(f"Mesh_198_18_0_{i}" for i in (1, 3, 4, 5, 6, 7, 8, 9, 10))
    assert {str(s.source) for s in v4.values()} == {"198.18.0.2"}
    # Calico compares IP *strings*: "198.18.0.10" sorts before "198.18.0.2", so node 2 dials it.
    assert not v4["Mesh_198_18_0_1"].passive
    assert not v4["Mesh_198_18_0_10"].passive
    assert v4["Mesh_198_18_0_3"].passive
    v6 = {s.name: s for s in bgp_sessions(state, node2, 6)}
    assert "Mesh_2001_db8__1" in v6
    assert v6["Mesh_2001_db8__1"].neighbor == ipaddress.ip_address("2001:db8::1")
    assert "Mesh_2001_db8__a" in v6  # node 10's address is 2001:db8::a


def test_bird16_config_matches_calico_layout(tmp_path: Path) -> None:
    state = _state(tmp_path, 3)
    node1 = state.nodes[0]
    node1.peers = [Peer(type=PeerType.GLOBAL, ip="198.18.250.1", as_number=64600, port=8179)]
    text = render_bird16(state, node1, 4)
    assert "router id 198.18.0.1;" in text
    assert "route 198.19.0.0/26 blackhole;" in text
    assert "if ( net = 198.19.0.0/26 ) then { accept; }" in text
    mesh = r"protocol bgp Mesh_198_18_0_2 from bgp_template \{\n  neighbor 198.18.0.2 as 64512;"
    assert re.search(mesh, text)
    assert "protocol bgp Global_198_18_250_1_port_8179 from bgp_template" in text
    assert "neighbor 198.18.250.1 port 8179 as 64600;" in text
    assert "connect retry time 5;" in text  # calico_timers
    text6 = render_bird16(state, state.nodes[2], 6)
    assert "route 2001:db8:1::80/122 blackhole;" in text6
    assert "Global_" not in text6


@pytest.mark.parametrize("bird", ["1.6", "2"])
def test_real_bird_accepts_rendered_configs(tmp_path: Path, bird: str) -> None:
    try:
        binaries = bird_binaries(BirdVersion(bird))
    except LabError as exc:
        pytest.skip(str(exc))
    state = _state(tmp_path, 3, BirdVersion(bird))
    node = state.nodes[0]
    node.peers = [
        Peer(type=PeerType.NODE, ip="198.18.0.9", port=8179),
        Peer(type=PeerType.GLOBAL, ip="2001:db8:250::1", as_number=64600),
    ]
    node.directory.mkdir(parents=True)
    for family in (4, 6):
        (node.directory / f"extra_routes{family}.conf").write_text(render_extra_routes(bird, family, 50))
    configs = (
        {"bird.conf": (binaries.daemon_v4, render_bird2(state, node))}
        if bird == "2"
        else {
            "bird.conf": (binaries.daemon_v4, render_bird16(state, node, 4)),
            "bird6.conf": (binaries.daemon_v6, render_bird16(state, node, 6)),
        }
    )
    for filename, (daemon, text) in configs.items():
        path = node.directory / filename
        path.write_text(text)
        result = subprocess.run(
            [str(daemon), "-p", "-c", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{filename}: {result.stderr}"


def test_extra_routes_are_distinct_inside_the_lab_ranges() -> None:
    v4 = extra_routes_networks(4, 100_000)
    assert len(set(v4)) == 100_000
    nets = [ipaddress.ip_network(n) for n in v4[::997]]
    assert all(n.subnet_of(ipaddress.ip_network("198.18.0.0/15")) for n in nets)
    assert not any(n.overlaps(ipaddress.ip_network("198.18.0.0/24")) for n in nets)
    v6 = extra_routes_networks(6, 300_000)
    assert len(set(v6)) == 300_000
    assert all(ipaddress.ip_network(n).subnet_of(ipaddress.ip_network("2001:db8::/32")) for n in v6[::9973])
    with pytest.raises(LabError, match="count: at most"):
        extra_routes_networks(4, 300_000)


def test_extra_routes_protocol_text() -> None:
    assert render_extra_routes("1.6", 4, 0).startswith("#")
    text = render_extra_routes("2", 6, 3)
    assert text.splitlines()[:2] == ["protocol static lab_routes6 {", "  ipv6;"]
    assert text.count("blackhole;") == 3


def test_parse_bgp_rows_reads_birdc_output_of_both_versions() -> None:
    rows_16 = [
        "name     proto    table    state  since       info",
        "kernel1  Kernel   master   up     01:20:09    ",
        "Mesh_198_18_0_2 BGP      master   start  01:20:10    Active        Socket: Connection refused",
    ]
    rows_2 = [
        "Name       Proto      Table      State  Since         Info",
        "Mesh_2001_db8__2 BGP        ---        up     00:09:30.727  Established   ",
    ]
    parsed = parse_bgp_rows(rows_16 + rows_2)
    assert set(parsed) == {"Mesh_198_18_0_2", "Mesh_2001_db8__2"}
    assert parsed["Mesh_198_18_0_2"].bgp_state == "Active"
    assert parsed["Mesh_198_18_0_2"].info == "Socket: Connection refused"
    assert parsed["Mesh_2001_db8__2"].established


def test_bad_input_is_named() -> None:
    with pytest.raises(LabError, match="lab name"):
        Lab.open("Bad-Name")
    with pytest.raises(ValueError, match=r"inside 198\.18\.0\.0/15"):
        Peer(type=PeerType.NODE, ip="10.0.0.1")
