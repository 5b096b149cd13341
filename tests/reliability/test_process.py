"""The agent as a real process (`python -m calico_nodestatus agent`): SIGTERM and SIGINT stop it
cleanly within 2 s — also while BIRD hangs mid-reply — and release its liveness record at once
(the record's TTL here is 15 s, so "gone" means released, not expired)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.faults.replay import Fault, ReplayServer, replaying
from tests.reliability.conftest import NODE, node_status, wait_for

STOP_WITHIN = 2.0
REPO = Path(__file__).resolve().parents[2]


def agent_env(db: Path) -> dict[str, str]:
    # No metrics exporter: several agents in one test run must not compete for its port.
    return {
        "DATASTORE_TYPE": "embedded",
        "CALICO_NODESTATUS_DB": str(db),
        "CALICO_NODESTATUS_METRICS_PORT": "0",
    }


@pytest.fixture
async def bird(tmp_path: Path) -> AsyncIterator[tuple[ReplayServer, ReplayServer]]:
    async with (
        replaying(tmp_path / "bird.ctl") as v4,
        replaying(tmp_path / "bird6.ctl", prefix="bird6__") as v6,
    ):
        yield v4, v6


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("bird_state", ["answering", "hung"])
async def test_signal_stops_cleanly_and_releases_liveness(
    bird: tuple[ReplayServer, ReplayServer], tmp_path: Path, signum: signal.Signals, bird_state: str
) -> None:
    db = tmp_path / "datastore.db"
    log = tmp_path / "agent.log"
    async with EmbeddedDatastore(db) as store:
        await store.create(node_status("proc", ["Agent", "BGP", "Routes"], 1))
        with log.open("wb") as out:
            agent = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "calico_nodestatus",
                "--log-level",
                "info",
                "agent",
                "--node",
                NODE,
                "--bird-socket",
                str(bird[0].path),
                "--bird6-socket",
                str(bird[1].path),
                "--heartbeat-seconds",
                "5",
                cwd=REPO,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **agent_env(db)},
            )
        try:

            async def working() -> bool:
                obj = await store.get("proc")
                return bool(obj.status.routes.routes_v4) and await store.get_liveness(NODE) is not None

            await wait_for(working, 15, "agent filled the status and holds its liveness record")
            if bird_state == "hung":
                bird[0].fault, bird[0].fault_on = Fault.HANG, frozenset({"show status"})
                await asyncio.sleep(1.2)  # the next collection is now waiting on BIRD
            sent = time.monotonic()
            agent.send_signal(signum)
            code = await asyncio.wait_for(agent.wait(), 10)
            took = time.monotonic() - sent
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
        output = log.read_text(errors="replace")
        assert took <= STOP_WITHIN, f"stopped after {took:.2f}s:\n{output[-2000:]}"
        assert code in (0, 128 + signum, -signum) and "Traceback" not in output, output[-2000:]
        assert "event=agent_stopped" in output
        assert await store.get_liveness(NODE) is None, "liveness record not released"
