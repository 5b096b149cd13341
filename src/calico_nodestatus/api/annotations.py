"""Annotations of a CalicoNodeStatus that carry more than Calico's status has room for (pure).

- ``EXPIRES_AT_ANNOTATION``: an RFC 3339 time set by ``apply --ttl``; once it has passed, the agent
  of the object's node deletes the object (debugging objects clean up after themselves).
- ``BGP_SESSIONS_ANNOTATION``: written by the agent beside the status of an object with the BGP
  class, as compact JSON (``BGPSessionsReport``): the node's own addresses and, per session, what
  BIRD says beyond Calico's state enum (``Passive``, the AS numbers, the peer's router ID, the last
  error). The mesh view reads both ends of a session from it.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

EXPIRES_AT_ANNOTATION: Final = "nodestatus.projectcalico.org/expires-at"
BGP_SESSIONS_ANNOTATION: Final = "nodestatus.projectcalico.org/bgp-sessions"
# Sessions kept in the annotation; beyond it Established ones go first (their state is in the status).
MAX_REPORTED_SESSIONS: Final = 512


def parse_expiry(value: str | None) -> datetime | None:
    """The expiry an annotation value names, or None when it is absent or not an RFC 3339 time with
    a zone (an object with a malformed expiry is never deleted)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def format_expiry(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Compact(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, frozen=True)


class SessionDetail(_Compact):
    """One BGP protocol as BIRD reports it (``show protocols all``)."""

    peer_ip: str = Field(alias="peerIP")
    protocol: str
    bird_state: str | None = None  # BIRD's word: Established, Active, Connect, Passive, Idle, ...
    local_as: int | None = Field(default=None, alias="localAS")
    peer_as: int | None = Field(default=None, alias="peerAS")  # the AS this node expects the peer in
    peer_id: str | None = Field(default=None, alias="peerID")  # the peer's router ID, once it answered
    error: str | None = None  # BIRD's last error, e.g. "BGP Error: Bad peer AS"


class BGPSessionsReport(_Compact):
    addresses: list[str] = Field(default_factory=list)  # this node's own BGP addresses
    router_id: str | None = Field(default=None, alias="routerID")
    bird_errors: dict[str, str] = Field(default_factory=dict)  # "v4"/"v6" -> why BIRD gave no data
    sessions: list[SessionDetail] = Field(default_factory=list)
    omitted: int = 0  # sessions left out beyond MAX_REPORTED_SESSIONS

    def encode(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_defaults=True)

    @classmethod
    def decode(cls, value: str | None) -> BGPSessionsReport | None:
        """The report in an annotation value; None when absent or unreadable (hand-edited)."""
        if not value:
            return None
        try:
            return cls.model_validate_json(value)
        except ValidationError:
            return None


def bounded(report: BGPSessionsReport) -> BGPSessionsReport:
    """The report with at most MAX_REPORTED_SESSIONS sessions, the ones not Established kept first."""
    if len(report.sessions) <= MAX_REPORTED_SESSIONS:
        return report
    ordered = sorted(report.sessions, key=lambda s: s.bird_state == "Established")
    kept = ordered[:MAX_REPORTED_SESSIONS]
    return report.model_copy(
        update={"sessions": kept, "omitted": report.omitted + len(report.sessions) - len(kept)}
    )


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
