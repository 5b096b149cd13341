"""The doctor's data: the evidence the I/O layer gathers, and the verdicts the diagnosis returns.

Evidence is plain frozen data (no behaviour beyond small views), so the diagnosis can be tested
from hand-built or transcript-parsed evidence without sockets, namespaces or a datastore.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.bird.types import DaemonStatus, ProtocolDetails
from calico_nodestatus.datastore.base import LivenessRecord
from calico_nodestatus.health.autodetect import HostInterface, RouteLookup

BGP_PORT = 179
ESTABLISHED = "Established"

# --- evidence -----------------------------------------------------------------------------------


class ConnectOutcome(enum.StrEnum):
    """How a TCP connect to a peer's BGP port ended."""

    CONNECTED = "connected"  # something accepted the connection: the port is reachable
    REFUSED = "refused"  # the host answered with a reset: nothing listens there
    TIMEOUT = "timeout"  # no answer at all: a firewall drops the packets somewhere
    BLOCKED = "blocked"  # this node's own firewall rejected the packet (EPERM/EACCES)
    UNREACHABLE = "unreachable"  # no route, or the network/host is unreachable
    ERROR = "error"  # anything else (the detail says what)


@dataclass(frozen=True, slots=True)
class ConnectProbe:
    address: str
    port: int
    outcome: ConnectOutcome
    detail: str  # the OS error text, or "connected"
    seconds: float
    timeout: float


@dataclass(frozen=True, slots=True)
class DaemonEvidence:
    """One family's BIRD daemon as seen through its control socket."""

    family: int
    candidates: tuple[str, ...]  # socket paths tried, in order
    explicit: bool  # the user named the socket (flag or environment), so it must answer
    socket: str | None  # the socket that answered
    status: DaemonStatus | None  # `show status`; None when unreachable or the query failed
    unavailable: tuple[tuple[str, str], ...] = ()  # (path, OS error) per socket that did not answer
    errors: tuple[str, ...] = ()  # failed queries on a daemon that did answer
    shared_with: int | None = None  # BIRD 2: the other family's daemon is this same process

    @property
    def missing(self) -> bool:
        """No socket file exists at all (as opposed to one that refuses connections)."""
        return bool(self.unavailable) and all(
            error == "No such file or directory" for _, error in self.unavailable
        )


@dataclass(frozen=True, slots=True)
class PeerEvidence:
    """One Calico BGP session with what the doctor found out about its peer."""

    family: int
    ip: str
    port: int
    details: ProtocolDetails
    probe: ConnectProbe | None = None  # only for sessions that are not Established
    route: RouteLookup | None = None  # the kernel's route from this node to the peer
    route_error: str | None = None

    @property
    def protocol(self) -> str:
        return self.details.protocol.name

    @property
    def bgp_state(self) -> str:
        return self.details.bgp_state or self.details.protocol.bgp_state or self.details.protocol.state

    @property
    def established(self) -> bool:
        return self.bgp_state == ESTABLISHED

    @property
    def bird_error(self) -> str | None:
        """BIRD's own words for why the session is not up: `Last error`, else the info column's
        text after the state (e.g. `Socket: Connection refused`)."""
        if self.details.last_error:
            return self.details.last_error
        rest = self.details.protocol.info.partition(" ")[2].strip()
        return rest or None


@dataclass(frozen=True, slots=True)
class AddressEvidence:
    """The node's interfaces and routes, and the configured autodetection method (text)."""

    method: str  # IP_AUTODETECTION_METHOD as configured ("" = first-found)
    interfaces: tuple[HostInterface, ...] = ()
    routes: dict[str, RouteLookup] = field(default_factory=dict)  # destination IP → lookup
    error: str | None = None  # the interfaces could not be read


@dataclass(frozen=True, slots=True)
class DatastoreEvidence:
    configured: bool
    description: str  # which datastore, for messages ("embedded /var/lib/...", "etcdv3 http://...")
    now: datetime
    error: str | None = None  # set when it was configured but could not be read
    liveness: LivenessRecord | None = None  # this node's record (None: absent or expired)
    statuses: tuple[CalicoNodeStatus, ...] = ()  # every node's CalicoNodeStatus
    alive: frozenset[str] = frozenset()  # nodes whose agent's liveness record is current


@dataclass(frozen=True, slots=True)
class ComponentState:
    ready: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentStatusEvidence:
    """What the agent of this node says of itself in its status file (`--status-file`): the only
    place its own datastore errors (a permission its identity lacks) are visible from the node."""

    path: str | None = None  # None: the doctor was not given a status file
    components: dict[str, ComponentState] = field(default_factory=dict)
    error: str | None = None  # the file could not be read


@dataclass(frozen=True, slots=True)
class Evidence:
    node: str
    daemons: dict[int, DaemonEvidence]
    peers: tuple[PeerEvidence, ...]
    address: AddressEvidence
    datastore: DatastoreEvidence
    agent: AgentStatusEvidence = field(default_factory=AgentStatusEvidence)


# --- verdicts -----------------------------------------------------------------------------------


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class Check(BaseModel):
    """One finding: what was checked, the verdict, the evidence that led to it, what to do."""

    model_config = ConfigDict(frozen=True)

    check: str  # stable identifier: bird-socket, bgp-session, bgp-address, duplicates, datastore, agent
    subject: str  # what it is about: "IPv4", "198.18.0.2 (Mesh_198_18_0_2)", node name
    verdict: Verdict
    summary: str
    evidence: list[str] = Field(default_factory=list)
    remedy: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)

    node: str
    checks: list[Check]

    @property
    def exit_code(self) -> int:
        """0 all ok, 1 any failure, 2 warnings only."""
        verdicts = {c.verdict for c in self.checks}
        if Verdict.FAIL in verdicts:
            return 1
        return 2 if Verdict.WARN in verdicts else 0

    def counts(self) -> dict[str, int]:
        return {v.value: sum(1 for c in self.checks if c.verdict is v) for v in Verdict}

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "exitCode": self.exit_code,
            "counts": self.counts(),
            "checks": [c.model_dump(mode="json") for c in self.checks],
        }
