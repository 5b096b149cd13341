"""What BIRD says about each BGP session beyond Calico's status (pure): the report the agent writes
as the bgp-sessions annotation (api.annotations.BGPSessionsReport) for the mesh view and the
doctor's far end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from calico_nodestatus.api.annotations import BGPSessionsReport, SessionDetail, bounded
from calico_nodestatus.bird.types import DaemonStatus, ProtocolDetails
from calico_nodestatus.collect.sections import clean_text, is_bgp_peer, peer_ip


def bird_error(details: ProtocolDetails) -> str | None:
    """BIRD's error for a session: ``Last error``, else the text after the state in the info column
    (``Active  Socket: Connection refused``)."""
    if details.last_error:
        return clean_text(details.last_error)
    words = details.protocol.info.split(" ", 1)
    return clean_text(words[1]) if len(words) == 2 else None


def session_detail(details: ProtocolDetails) -> SessionDetail | None:
    address = peer_ip(details)
    if not is_bgp_peer(details) or address is None:
        return None
    return SessionDetail(
        peer_ip=clean_text(address) or "",
        protocol=clean_text(details.protocol.name) or "",
        bird_state=clean_text(details.bgp_state or details.protocol.bgp_state),
        local_as=details.local_as,
        peer_as=details.neighbor_as,
        peer_id=clean_text(details.neighbor_id),
        error=bird_error(details),
    )


def sessions_report(
    protocols: Mapping[int, Iterable[ProtocolDetails]],
    daemons: Mapping[int, DaemonStatus | None],
    family_errors: Mapping[int, str],
    addresses: Iterable[str],
) -> BGPSessionsReport:
    """The report of one collection: ``protocols`` and ``daemons`` per family as gathered,
    ``family_errors`` why a family gave no data, ``addresses`` the node's own BGP addresses."""
    sessions = [
        detail
        for family in sorted(protocols)
        for details in protocols[family]
        if (detail := session_detail(details)) is not None
    ]
    router_id = next((d.router_id for _, d in sorted(daemons.items()) if d and d.router_id), None)
    return bounded(
        BGPSessionsReport(
            addresses=list(dict.fromkeys(addresses)),
            router_id=router_id,
            bird_errors={f"v{family}": error for family, error in sorted(family_errors.items())},
            sessions=sessions,
        )
    )
