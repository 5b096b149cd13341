"""The one place that decodes Calico's BIRD protocol names into peer type and peer IP.

Calico names BGP protocols `<Kind>_<ip with . or : replaced by _>[_port_<n>]`:
`Mesh_198_18_0_2`, `Node_10_0_0_1_port_8179`, `Global_2001_db8__4`, `Local_Workload_10_0_0_7`.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from functools import lru_cache


def _is_uint(text: str) -> bool:
    return text.isascii() and text.isdecimal()


class PeerKind(enum.StrEnum):
    MESH = "Mesh"
    NODE = "Node"
    GLOBAL = "Global"
    LOCAL_WORKLOAD = "Local_Workload"


# Longest first so "Local_Workload_" is not mistaken for a shorter prefix.
_PREFIXES = tuple(sorted(((k.value + "_", k) for k in PeerKind), key=lambda p: -len(p[0])))
_PORT_MARK = "_port_"


@dataclass(frozen=True, slots=True)
class PeerName:
    kind: PeerKind
    ip: str  # canonical text of the peer address
    port: int | None


@lru_cache(maxsize=4096)
def decode_peer_name(name: str) -> PeerName | None:
    """PeerName for a Calico BGP protocol name; None when the name is not one (kernel1, a custom
    protocol, a mangled name). Cached: route parsing asks for the same few names many times."""
    for prefix, kind in _PREFIXES:  # noqa: B007 - `kind` is used after the loop
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            break
    else:
        return None
    port: int | None = None
    head, mark, tail = rest.rpartition(_PORT_MARK)
    if mark and _is_uint(tail):
        rest, port = head, int(tail)
    ip = _decode_ip(rest)
    return PeerName(kind, ip, port) if ip is not None else None


def _decode_ip(encoded: str) -> str | None:
    # IPv4 has exactly four decimal groups; anything else is IPv6 with ':' written as '_'.
    groups = encoded.split("_")
    candidate = ".".join(groups) if len(groups) == 4 and all(_is_uint(g) for g in groups) else None
    if candidate is None:
        candidate = ":".join(groups)
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None
