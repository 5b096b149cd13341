"""calico-node's BIRD readiness and liveness, as pure decisions plus one async probe per check.

Readiness (per family): no Calico BGP peers → ready. Inside the start-up window every peer must be
Established and BIRD must not be in graceful-restart recovery; after it, one Established peer is
enough. Liveness: BIRD answers `show status`.

Differences from upstream, on purpose:

- Peer IPs come from ``bird.names`` (``Node_10_0_0_1_port_8179`` is reported as ``10.0.0.1``,
  not ``10.0.0.1.port.179``).
- The start-up window is measured from BIRD's own ``Last reboot on`` time, compared with BIRD's
  ``Current server time`` from the same ``show status`` reply. Upstream uses the mtime of
  ``/var/lib/calico/nodename``, which only exists in the calico/node image, is written when the
  container starts rather than when BIRD starts (a BIRD crash and restart inside a running pod
  opens no new window), and compares a file time with the probe's clock. Both BIRD times come
  from one clock in one reply, so there is no time-zone or skew question (BIRD prints local
  time without a zone). A caller that wants upstream behaviour passes ``window_start_file``.
- Liveness talks to the socket directly instead of runit's ``sv status`` and ``birdcl``, so it
  works outside the calico/node image.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from calico_nodestatus.bird.client import DEFAULT_READ_TIMEOUT, BirdClient, socket_candidates
from calico_nodestatus.bird.errors import BirdError
from calico_nodestatus.bird.names import PeerKind, decode_peer_name
from calico_nodestatus.bird.types import DaemonStatus, Protocol
from calico_nodestatus.health.result import CheckResult

ESTABLISHED = "Established"
# The peers calico-node's readiness counts; Local_Workload peers are ignored as upstream does.
_COUNTED_KINDS = (PeerKind.MESH, PeerKind.NODE, PeerKind.GLOBAL)
# BIRD's default base time format (1.6: "%F %T"; 2.x adds milliseconds).
_BIRD_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")


def daemon_label(family: int) -> str:
    """`BIRD` / `BIRD6`, as in `BIRD is not ready`."""
    return "BIRD" if family == 4 else "BIRD6"


def not_ready_message(family: int, inner: str) -> str:
    return f"calico/node is not ready: {daemon_label(family)} is not ready: {inner}"


def not_live_message(family: int, inner: str) -> str:
    # Upstream says "not ready" even for liveness; kept so existing alerts keep matching.
    return f"calico/node is not ready: {daemon_label(family).lower()} is not live: {inner}"


@dataclass(frozen=True)
class PeerState:
    ip: str
    port: int | None
    protocol: str
    state: str  # BGP state: first word of the info column
    info: str  # the whole info column (state plus BIRD's error text)

    @property
    def established(self) -> bool:
        return self.state == ESTABLISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "peerIP": self.ip,
            "port": self.port,
            "protocol": self.protocol,
            "state": self.state,
            "info": self.info,
        }


def bgp_peers(protocols: Sequence[Protocol], family: int) -> list[PeerState]:
    """Calico BGP peers of ``family``, in BIRD's order.

    A ``down`` BGP row with an empty info column has no BGP state and is skipped (upstream needs
    six columns). Filtering by the decoded IP's family also makes one BIRD 2 socket serve both.
    """
    peers = []
    for protocol in protocols:
        state = protocol.bgp_state
        decoded = decode_peer_name(protocol.name)
        if state is None or decoded is None or decoded.kind not in _COUNTED_KINDS:
            continue
        if ipaddress.ip_address(decoded.ip).version != family:
            continue
        peers.append(PeerState(decoded.ip, decoded.port, protocol.name, state, protocol.info))
    return peers


def parse_bird_time(text: str) -> datetime:
    for layout in _BIRD_TIME_FORMATS:
        try:
            return datetime.strptime(text, layout)  # naive: BIRD prints local time, no zone
        except ValueError:
            continue
    raise ValueError(f"unrecognised BIRD time {text!r} (expected YYYY-MM-DD HH:MM:SS[.mmm])")


def bird_uptime(status: DaemonStatus) -> timedelta:
    """Time since BIRD started, by BIRD's own clock (server time minus last reboot)."""
    if status.server_time is None or status.last_reboot is None:
        raise ValueError("'show status' has no 'Current server time' or 'Last reboot' line")
    return parse_bird_time(status.server_time) - parse_bird_time(status.last_reboot)


def file_age(path: Path, now: datetime) -> timedelta:
    """Upstream's window clock: time since ``path`` (e.g. /var/lib/calico/nodename) was modified."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise ValueError(f"failed to stat() nodename file: stat {path}: {exc.strerror}") from None
    return now - datetime.fromtimestamp(mtime, tz=now.tzinfo)


def evaluate_readiness(
    family: int,
    protocols: Sequence[Protocol],
    *,
    elapsed: timedelta,
    threshold: timedelta,
    graceful_restart: bool,
    window_source: str = "BIRD uptime (show status)",
) -> CheckResult:
    """calico-node's readiness decision for one BIRD daemon (pure).

    ``elapsed``: time since the window started; ``graceful_restart``: BIRD reports recovery in
    progress (only consulted inside the window, as upstream).
    """
    peers = bgp_peers(protocols, family)
    established = [p for p in peers if p.established]
    pending = [p for p in peers if not p.established]
    within = elapsed < threshold
    details: dict[str, Any] = {
        "family": f"IPv{family}",
        "peers": len(peers),
        "established": len(established),
        "notEstablished": [p.to_dict() for p in pending],
        "elapsedSeconds": round(elapsed.total_seconds(), 3),
        "thresholdSeconds": threshold.total_seconds(),
        "withinStartupWindow": within,
        "windowSource": window_source,
        "gracefulRestart": graceful_restart,
    }
    check = "bird-ready" if family == 4 else "bird6-ready"
    label = daemon_label(family)
    not_established = "BGP not established with " + ",".join(p.ip for p in pending)
    if not peers:
        return CheckResult(check=check, ok=True, message=f"{label} is ready: no BGP peers", details=details)
    if within and pending:
        return CheckResult(
            check=check, ok=False, message=not_ready_message(family, not_established), details=details
        )
    if within and graceful_restart:
        return CheckResult(
            check=check,
            ok=False,
            message=not_ready_message(family, "graceful restart in progress"),
            details=details,
        )
    if not established:
        return CheckResult(
            check=check, ok=False, message=not_ready_message(family, not_established), details=details
        )
    summary = f"{label} is ready: BGP established with {len(established)} of {len(peers)} peers"
    if pending:
        summary += f" (start-up window passed; not established: {', '.join(p.ip for p in pending)})"
    return CheckResult(check=check, ok=True, message=summary, details=details)


def evaluate_liveness(family: int, status: DaemonStatus | None, error: BirdError | None) -> CheckResult:
    """Live when BIRD answered `show status` (pure; ``error`` is why it did not)."""
    check = "bird-live" if family == 4 else "bird6-live"
    if status is None:
        return CheckResult(
            check=check,
            ok=False,
            message=not_live_message(family, str(error) if error else "no reply to 'show status'"),
            details={"family": f"IPv{family}", "error": str(error) if error else None},
        )
    details = {
        "family": f"IPv{family}",
        "version": status.version,
        "routerID": status.router_id,
        "status": status.message,
        "lastReboot": status.last_reboot,
        "gracefulRestart": status.graceful_restart is not None,
    }
    return CheckResult(
        check=check,
        ok=True,
        message=f"{daemon_label(family).lower()} is live: BIRD {status.version or '?'}: {status.message}",
        details=details,
    )


async def probe_bird(
    family: int,
    *,
    ready: bool,
    live: bool,
    threshold: timedelta,
    socket_path: str | None = None,
    window_start_file: Path | None = None,
    now: datetime | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> list[CheckResult]:
    """Runs the requested checks of one BIRD daemon over a single connection to its socket only.

    Liveness and the readiness window both come from one `show status`; readiness adds
    `show protocols`. ``socket_path`` overrides Calico's socket discovery; ``window_start_file``
    switches the window clock to upstream's file mtime (``now`` defaults to the current time).
    """
    results: list[CheckResult] = []
    status: DaemonStatus | None = None
    rows: list[Protocol] = []
    error: BirdError | None = None
    try:
        async with await BirdClient.connect(
            socket_candidates(family, socket_path), read_timeout=read_timeout
        ) as client:
            status = await client.show_status()
            if ready:
                rows = await client.show_protocols()
    except BirdError as exc:
        error = exc
    if live:
        results.append(evaluate_liveness(family, status, error if status is None else None))
    if ready:
        results.append(
            _readiness_from(
                family, status, rows, error, threshold=threshold, window_start_file=window_start_file, now=now
            )
        )
    return results


def _readiness_from(
    family: int,
    status: DaemonStatus | None,
    rows: list[Protocol],
    error: BirdError | None,
    *,
    threshold: timedelta,
    window_start_file: Path | None,
    now: datetime | None,
) -> CheckResult:
    check = "bird-ready" if family == 4 else "bird6-ready"
    if error is not None or status is None:
        inner = f"error querying BIRD: {error}"
        return CheckResult(
            check=check, ok=False, message=not_ready_message(family, inner), details={"error": str(error)}
        )
    try:
        if window_start_file is not None:
            elapsed = file_age(window_start_file, now or datetime.now().astimezone())
            source = f"mtime of {window_start_file}"
        else:
            elapsed, source = bird_uptime(status), "BIRD uptime (show status)"
    except ValueError as exc:
        return CheckResult(check=check, ok=False, message=not_ready_message(family, str(exc)), details={})
    return evaluate_readiness(
        family,
        rows,
        elapsed=elapsed,
        threshold=threshold,
        graceful_restart=status.graceful_restart is not None,
        window_source=source,
    )
