"""The BIRD lab: real BIRD daemons in network namespaces forming a Calico-style iBGP mesh.

`Lab.up(name, nodes=3, bird="2"|"1.6", ipv6=True)` builds it, `Lab.open(name)` reattaches,
`lab.down()` / `Lab.destroy(name)` remove everything. See lab.py for the layout and fault levers.
"""

from calico_nodestatus.lab.lab import (
    DEFAULT_LAB_NAME,
    LAB_ROOT_ENV,
    Daemon,
    Lab,
    LabNode,
    Session,
    lab_root,
)
from calico_nodestatus.lab.model import BirdVersion, LabError, Peer, PeerType

__all__ = [
    "DEFAULT_LAB_NAME",
    "LAB_ROOT_ENV",
    "BirdVersion",
    "Daemon",
    "Lab",
    "LabError",
    "LabNode",
    "Peer",
    "PeerType",
    "Session",
    "lab_root",
]
