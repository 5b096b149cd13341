"""A failed piece of a collection never replaces good data with emptiness (pure).

A piece is one IP family of one class: ``(6, BGP)`` is bird6's peers and their counts. When its
query fails, the object keeps that piece's last good content, which is what is stored (the agent
only ever stores good content or content kept this way), and the
``COLLECTION_ERRORS_ANNOTATION`` says so: which piece, since when, with what BIRD error, and what
the object holds for it instead:

- ``stale``: the last good content, kept;
- ``partial``: no earlier content, and the routes read before the failure (a ``show route`` cut
  short); the routes-omitted annotation then marks the family ``cutShort``;
- ``missing``: no earlier content and nothing read: the piece is left out.

The Agent piece of a daemon that cannot be queried still says ``NotReady``, which is true; its
last known version, router ID and times are kept. A daemon that is not running
(``PieceError.daemon_down``) is marked only where it leaves content stale: a node without bird6
is not marked forever, its Agent section says NotReady.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from calico_nodestatus.agent.content import rfc3339_now
from calico_nodestatus.api import BGPDaemonState, CalicoNodeStatusStatus, NodeStatusClass

COLLECTION_ERRORS_ANNOTATION = "nodestatus.projectcalico.org/collection-errors"

Piece = tuple[int, NodeStatusClass]  # (IP family 4 or 6, class)


@dataclass(frozen=True, slots=True)
class PieceError:
    """Why a piece was not collected: BIRD's error, and whether the daemon was simply not running."""

    reason: str
    daemon_down: bool = False


def piece_name(piece: Piece) -> str:
    """``BGP/v6``: how annotations, logs and the CLI name a piece."""
    family, cls = piece
    return f"{cls}/v{family}"


def _suffix(family: int) -> str:
    return f"v{family}"


def _daemon_attribute(family: int) -> str:
    return f"bird_{_suffix(family)}"


def _has_content(status: CalicoNodeStatusStatus, piece: Piece) -> bool:
    family, cls = piece
    if cls is NodeStatusClass.AGENT:
        daemon = getattr(status.agent, _daemon_attribute(family))
        return bool(daemon.version or daemon.router_id or daemon.last_boot_time)
    if cls is NodeStatusClass.BGP:
        return bool(getattr(status.bgp, f"peers_{_suffix(family)}"))
    return bool(getattr(status.routes, f"routes_{_suffix(family)}"))


def _with_piece_of(
    desired: CalicoNodeStatusStatus, stored: CalicoNodeStatusStatus, piece: Piece
) -> CalicoNodeStatusStatus:
    """``desired`` with ``piece`` taken from ``stored`` (an Agent piece stays NotReady)."""
    family, cls = piece
    suffix = _suffix(family)
    if cls is NodeStatusClass.AGENT:
        attribute = _daemon_attribute(family)
        daemon = getattr(stored.agent, attribute).model_copy(update={"state": BGPDaemonState.NOT_READY})
        return desired.model_copy(update={"agent": desired.agent.model_copy(update={attribute: daemon})})
    if cls is NodeStatusClass.BGP:
        names = (f"peers_{suffix}", f"number_established_{suffix}", f"number_not_established_{suffix}")
        bgp = desired.bgp.model_copy(update={name: getattr(stored.bgp, name) for name in names})
        return desired.model_copy(update={"bgp": bgp})
    name = f"routes_{suffix}"
    routes = desired.routes.model_copy(update={name: getattr(stored.routes, name)})
    return desired.model_copy(update={"routes": routes})


@dataclass(frozen=True, slots=True)
class KeptStatus:
    """The status to store, and what it holds for each failed piece."""

    status: CalicoNodeStatusStatus
    stale: frozenset[Piece] = frozenset()  # the last good content, kept
    partial: frozenset[Piece] = frozenset()  # routes read before the failure, no earlier content
    missing: frozenset[Piece] = frozenset()  # nothing: left out
    errors: Mapping[Piece, PieceError] = field(default_factory=dict)

    def content(self, piece: Piece) -> str:
        return "stale" if piece in self.stale else "partial" if piece in self.partial else "missing"

    @property
    def marked(self) -> tuple[Piece, ...]:
        """The failed pieces worth telling: all but a not-running daemon's empty ones."""
        return tuple(
            sorted(
                piece
                for piece, error in self.errors.items()
                if piece in self.stale or piece in self.partial or not error.daemon_down
            )
        )


def keep_last_good(
    desired: CalicoNodeStatusStatus, stored: CalicoNodeStatusStatus, errors: Mapping[Piece, PieceError]
) -> KeptStatus:
    """``desired`` (freshly collected) with every failed piece replaced by ``stored``'s content for
    it. Only the failed pieces of classes ``desired`` is built for should be passed."""
    status = desired
    stale, partial, missing = set(), set(), set()
    for piece in sorted(errors):
        if _has_content(stored, piece):
            status = _with_piece_of(status, stored, piece)
            stale.add(piece)
        elif piece[1] is NodeStatusClass.ROUTES and _has_content(desired, piece):
            partial.add(piece)
        else:
            status = _with_piece_of(status, stored, piece)  # empty: left out (an Agent one NotReady)
            missing.add(piece)
    return KeptStatus(status, frozenset(stale), frozenset(partial), frozenset(missing), dict(errors))


def read_collection_errors(value: str | None) -> dict[str, dict[str, Any]]:
    """The annotation's entries by piece name; anything unreadable reads as none."""
    try:
        entries = json.loads(value) if value else {}
    except ValueError:
        return {}
    if not isinstance(entries, dict):
        return {}
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict)}


def collection_errors_value(kept: KeptStatus, previous: str | None, now: datetime) -> str | None:
    """The annotation's value (compact JSON, by piece name), None when every piece was collected.
    ``since`` is when the piece first failed in its current run of failures (kept from the stored
    annotation), so it changes only when a piece starts or stops failing, or BIRD's error does."""
    before = read_collection_errors(previous)
    entries = {}
    for piece in kept.marked:
        name = piece_name(piece)
        since = before.get(name, {}).get("since")
        entries[name] = {
            "since": since if isinstance(since, str) else rfc3339_now(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "error": kept.errors[piece].reason,
            "content": kept.content(piece),
        }
    return json.dumps(entries, separators=(",", ":")) if entries else None


def stale_pieces(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The pieces an object's annotation names, for `get -o wide` and `summary`."""
    return tuple(sorted(read_collection_errors(annotations.get(COLLECTION_ERRORS_ANNOTATION))))
