"""Status building and change detection (pure).

Our rules, where upstream's are bugs (see the upstream gaps list, section A):
- Classes not in ``spec.classes`` have their sections cleared (upstream keeps stale data forever).
- Change detection compares content only: ``lastUpdated`` is ignored, an empty list/object/string
  or a zero counter equals an absent one, and list order is ignored (upstream's deep equality saw
  "changed" on every cycle whenever a family had no peers or routes, rewriting the object every
  period).
- BIRD 1.6 prints its times (a session's ``since``, ``HH:MM:SS``; the daemon's last boot and
  reconfiguration, ``YYYY-MM-DD HH:MM:SS``) computed from a relative clock, so the same moment
  comes out one second apart from one query to the next (seen in the lab: sessions flip between
  ``01:23:53`` and ``01:23:54``, a restarted daemon's boot time between ``01:33:35`` and
  ``01:33:36`` for as long as it runs). Such a jitter is not a change: the stored value is kept
  (``keep_stable_times``), or a quiet node would be rewritten every few periods.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from calico_nodestatus.api import (
    BGPDaemonStatus,
    CalicoNodeAgentStatus,
    CalicoNodeBGPRouteStatus,
    CalicoNodeBGPStatus,
    CalicoNodeStatusStatus,
    NodeStatusClass,
)

if TYPE_CHECKING:
    from calico_nodestatus.agent.stale import PieceError
    from calico_nodestatus.collect.gather import CollectionResult


@dataclass(frozen=True, slots=True)
class CollectedSections:
    """One BIRD collection: the sections of the classes that were collected (others None),
    the per-family errors (``{4: "..."}``) and per-piece ones, how long each class took, and the full
    ``collect.gather`` result for metrics and health (None when not collected from BIRD)."""

    agent: CalicoNodeAgentStatus | None = None
    bgp: CalicoNodeBGPStatus | None = None
    routes: CalicoNodeBGPRouteStatus | None = None
    family_errors: Mapping[int, str] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    # Routes BIRD listed that the collection itself left out (its memory bound), per family.
    routes_truncated: Mapping[int, int] = field(default_factory=dict)
    result: CollectionResult | None = None
    # Per (family, class) that was not collected: why (see agent/stale.py).
    piece_errors: Mapping[tuple[int, NodeStatusClass], PieceError] = field(default_factory=dict)
    # The bgp-sessions annotation's value for objects with the BGP class (None: BGP not collected).
    bgp_sessions: str | None = None


def build_status(
    collected: CollectedSections, classes: Collection[NodeStatusClass]
) -> CalicoNodeStatusStatus:
    """The status an object asking for ``classes`` should hold (``lastUpdated`` unset)."""
    wanted = set(classes)
    return CalicoNodeStatusStatus(
        last_updated=None,
        agent=(
            collected.agent
            if NodeStatusClass.AGENT in wanted and collected.agent
            else CalicoNodeAgentStatus()
        ),
        bgp=(collected.bgp if NodeStatusClass.BGP in wanted and collected.bgp else CalicoNodeBGPStatus()),
        routes=(
            collected.routes
            if NodeStatusClass.ROUTES in wanted and collected.routes
            else CalicoNodeBGPRouteStatus()
        ),
    )


TIME_JITTER_SECONDS = 1
_DAY_SECONDS = 24 * 3600


def _clock_seconds(text: str) -> int | None:
    parts = text.split(":")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    hours, minutes, seconds = (int(part) for part in parts)
    return hours * 3600 + minutes * 60 + seconds


def _same_moment(a: str, b: str) -> bool:
    """True when two BIRD times differ by at most the jitter: times of day (``HH:MM:SS``, across
    midnight too) or date-times; anything else (a bare date) must match exactly."""
    if a == b:
        return True
    clock_a, clock_b = _clock_seconds(a), _clock_seconds(b)
    if clock_a is not None and clock_b is not None:
        difference = abs(clock_a - clock_b) % _DAY_SECONDS
        return min(difference, _DAY_SECONDS - difference) <= TIME_JITTER_SECONDS
    try:
        moment_a, moment_b = datetime.fromisoformat(a), datetime.fromisoformat(b)
    except ValueError:
        return False
    has_time = ":" in a and ":" in b  # a bare date (an old session) is compared exactly
    return has_time and abs(moment_a - moment_b) <= timedelta(seconds=TIME_JITTER_SECONDS)


def _stable(stored: str | None, fresh: str | None) -> str | None:
    return stored if stored and fresh and _same_moment(stored, fresh) else fresh


def _stable_daemon(desired: BGPDaemonStatus, stored: BGPDaemonStatus) -> BGPDaemonStatus:
    identity = (desired.state, desired.version, desired.router_id)
    if identity != (stored.state, stored.version, stored.router_id):
        return desired
    return desired.model_copy(
        update={
            "last_boot_time": _stable(stored.last_boot_time, desired.last_boot_time),
            "last_reconfiguration_time": _stable(
                stored.last_reconfiguration_time, desired.last_reconfiguration_time
            ),
        }
    )


def keep_stable_times(
    desired: CalicoNodeStatusStatus, stored: CalicoNodeStatusStatus
) -> CalicoNodeStatusStatus:
    """``desired`` with BIRD's times replaced by the stored ones where they differ only by BIRD's
    rounding jitter: each peer's ``since`` (same peer, type and state) and each daemon's boot and
    reconfiguration times (same state, version and router ID)."""
    peer_updates = {}
    for attribute in ("peers_v4", "peers_v6"):
        previous = {(p.peer_ip, p.type, p.state): p.since for p in getattr(stored.bgp, attribute)}
        peer_updates[attribute] = [
            peer.model_copy(
                update={"since": _stable(previous.get((peer.peer_ip, peer.type, peer.state)), peer.since)}
            )
            for peer in getattr(desired.bgp, attribute)
        ]
    agent = desired.agent.model_copy(
        update={
            "bird_v4": _stable_daemon(desired.agent.bird_v4, stored.agent.bird_v4),
            "bird_v6": _stable_daemon(desired.agent.bird_v6, stored.agent.bird_v6),
        }
    )
    return desired.model_copy(update={"agent": agent, "bgp": desired.bgp.model_copy(update=peer_updates)})


def _is_empty(value: Any) -> bool:
    # A zero counter equals an absent one, like an empty list or string.
    return value is None or (isinstance(value, str | list | dict | int) and not value)


def _canonical(value: Any) -> Any:
    """Drops empty values and orders lists, so equal content compares equal."""
    if isinstance(value, Mapping):
        items = {key: _canonical(item) for key, item in value.items()}
        return {key: item for key, item in items.items() if not _is_empty(item)}
    if isinstance(value, list):
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def status_content(status_wire: Mapping[str, Any] | None) -> Any:
    """What a status says, without ``lastUpdated``, in a canonical comparable form."""
    if not status_wire:
        return {}
    return _canonical({key: value for key, value in status_wire.items() if key != "lastUpdated"})


def same_content(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return status_content(a) == status_content(b)


def rfc3339_now(now: datetime) -> datetime:
    """``lastUpdated``: UTC, second precision, as Calico serialises it."""
    return now.astimezone(UTC).replace(microsecond=0)
