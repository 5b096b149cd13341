"""The agent as a real process (`python -m calico_nodestatus agent`): SIGTERM and SIGINT stop it
cleanly within 2 s — also while BIRD hangs mid-reply — and release its liveness record at once
(the record's TTL here is 15 s, so "gone" means released, not expired)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.faults.replay import Fault, ReplayServer
from tests.plugins.agent import agent_argv, agent_process, embedded_env, node_status, wait_for
from tests.reliability.conftest import NODE

STOP_WITHIN = 2.0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("bird_state", ["answering", "hung"])
async def test_signal_stops_cleanly_and_releases_liveness(
    replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path, signum: signal.Signals, bird_state: str
) -> None:
    db = tmp_path / "datastore.db"
    log = tmp_path / "agent.log"
    # No metrics exporter: several agents in one test run must not compete for its port.
    env = embedded_env(db) | {"CALICO_NODESTATUS_METRICS_PORT": "0"}
    argv = agent_argv(NODE, replayed_bird[0].path, replayed_bird[1].path, "--heartbeat-seconds", "5")
    async with EmbeddedDatastore(db) as store:
        await store.create(node_status("proc", NODE, ["Agent", "BGP", "Routes"], 1))
        async with agent_process(argv, env, log) as agent:

            async def working() -> bool:
                obj = await store.get("proc")
                return bool(obj.status.routes.routes_v4) and await store.get_liveness(NODE) is not None

            await wait_for(working, 15, "agent filled the status and holds its liveness record")
            if bird_state == "hung":
                replayed_bird[0].fault, replayed_bird[0].fault_on = Fault.HANG, frozenset({"show status"})
                await asyncio.sleep(1.2)  # the next collection is now waiting on BIRD
            sent = time.monotonic()
            agent.send_signal(signum)
            code = await asyncio.wait_for(agent.wait(), 10)
            took = time.monotonic() - sent
        output = log.read_text(errors="replace")
        assert took <= STOP_WITHIN, f"stopped after {took:.2f}s:\n{output[-2000:]}"
        assert code in (0, 128 + signum, -signum) and "Traceback" not in output, output[-2000:]
        assert "event=agent_stopped" in output
        assert await store.get_liveness(NODE) is None, "liveness record not released"
