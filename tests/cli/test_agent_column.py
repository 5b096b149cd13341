"""`get -o wide`'s AGENT column from real liveness records: alive, stale after expiry, none."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from calico_nodestatus.api import CalicoNodeStatusStatus
from calico_nodestatus.datastore.base import Datastore
from tests.cli.conftest import CliTarget, manifest

TTL_S = 1.0
HOLDER = "test-agent/1"


def agent_column(target: CliTarget) -> dict[str, str]:
    """name -> AGENT cell of `get -o wide`."""
    header, *rows = target.ok("get", "cns", "-o", "wide").stdout.splitlines()[:-1]
    agent = header.split().index("AGENT")
    return {row.split()[0]: row.split()[agent] for row in rows}


async def report_status(datastore: Datastore) -> None:
    """What an agent does: write status for `reported` and heartbeat for nodes n1 and n3."""
    obj = await datastore.get("reported")
    await datastore.update_status(
        obj.model_copy(update={"status": CalicoNodeStatusStatus(last_updated=datetime.now(UTC))})
    )
    for node in ("n1", "n3"):
        await datastore.renew_liveness(node, HOLDER, TTL_S)


def test_agent_is_alive_then_stale_or_none_once_the_record_expires(target: CliTarget) -> None:
    objects = [manifest("reported", node="n1"), manifest("waiting", node="n2"), manifest("picked", node="n3")]
    target.ok("create", "-f", "-", stdin="---\n".join(objects))
    assert agent_column(target) == {"picked": "none", "reported": "none", "waiting": "none"}
    target.on_datastore(report_status)
    assert agent_column(target) == {"picked": "alive", "reported": "alive", "waiting": "none"}
    (single,) = target.ok("get", "cns", "reported", "-o", "wide").stdout.splitlines()[1:-1]
    assert "alive" in single.split()
    deadline = time.monotonic() + TTL_S + 5
    # n1 and n3 were renewed one after the other, so they expire a moment apart: wait for both.
    while "alive" in (agents := agent_column(target)).values() and time.monotonic() < deadline:
        time.sleep(0.2)
    # The reporting agent stopped renewing: stale. The other never wrote status: none again.
    assert agents == {"picked": "none", "reported": "stale", "waiting": "none"}
