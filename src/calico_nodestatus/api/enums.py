"""The CalicoNodeStatus enums; each member's value is the exact wire string."""

from __future__ import annotations

import enum


class NodeStatusClass(enum.StrEnum):
    """What a CalicoNodeStatus asks the agent to report (`spec.classes[]`)."""

    AGENT = "Agent"
    BGP = "BGP"
    ROUTES = "Routes"


class BGPDaemonState(enum.StrEnum):
    READY = "Ready"
    NOT_READY = "NotReady"


class BGPPeerType(enum.StrEnum):
    NODE_MESH = "NodeMesh"
    NODE_PEER = "NodePeer"
    GLOBAL_PEER = "GlobalPeer"


class BGPSessionState(enum.StrEnum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"
    CLOSE = "Close"


class CalicoNodeRouteType(enum.StrEnum):
    FIB = "FIB"
    RIB = "RIB"


class CalicoNodeRouteSourceType(enum.StrEnum):
    KERNEL = "Kernel"
    STATIC = "Static"
    DIRECT = "Direct"
    NODE_MESH = "NodeMesh"
    BGP_PEER = "BGPPeer"
