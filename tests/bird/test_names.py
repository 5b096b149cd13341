from __future__ import annotations

import pytest

from calico_nodestatus.bird.names import PeerKind, PeerName, decode_peer_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Mesh_10_0_0_1", PeerName(PeerKind.MESH, "10.0.0.1", None)),
        ("Node_10_0_0_1_port_8179", PeerName(PeerKind.NODE, "10.0.0.1", 8179)),
        ("Mesh_2001_db8__2", PeerName(PeerKind.MESH, "2001:db8::2", None)),
        ("Mesh_2001__103", PeerName(PeerKind.MESH, "2001::103", None)),
        ("Mesh_fd80_24e2_f998_72d7__2", PeerName(PeerKind.MESH, "fd80:24e2:f998:72d7::2", None)),
        ("Global_2001_db8_250__1_port_1790", PeerName(PeerKind.GLOBAL, "2001:db8:250::1", 1790)),
        ("Local_Workload_198_19_0_7", PeerName(PeerKind.LOCAL_WORKLOAD, "198.19.0.7", None)),
        ("kernel1", None),
        ("Mesh_", None),
        ("Mesh_not_an_ip", None),
        ("bgp_template", None),
    ],
)
def test_decode(name: str, expected: PeerName | None) -> None:
    assert decode_peer_name(name) == expected
