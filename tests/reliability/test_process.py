"""The agent as a real process (`python -m calico_nodestatus agent`): SIGTERM and SIGINT stop it
cleanly within 2 s — with BIRD answering (the real BIRD pair of the lab) and while BIRD hangs
mid-reply (the replay, tests/faults) — and release its liveness record at once (the record's TTL
here is 15 s, so "gone" means released, not expired).

The 2 s are the agent's own: from its log line for the signal to its last one. The process then
only has to exit, which a loaded machine may slow down; that is waited for, not timed."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from pathlib import Path

import pytest

from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.lab import Lab
from tests.faults.replay import Fault, ReplayServer
from tests.plugins.agent import agent_argv, agent_process, embedded_env, node_status, wait_for
from tests.reliability.conftest import NODE

STOP_WITHIN = 2.0
EXIT_DEADLINE = 30.0


def _logged_at(output: str, event: str) -> datetime:
    """When the agent logged `event` (the log line starts with its asctime, to the millisecond)."""
    [line] = [line for line in output.splitlines() if f" event={event} " in f"{line} "]
    day, clock = line.split()[:2]
    return datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S,%f")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("bird_state", ["answering", "hung"])
async def test_signal_stops_cleanly_and_releases_liveness(
    bird_mesh: Lab,
    replayed_bird: tuple[ReplayServer, ReplayServer],
    tmp_path: Path,
    signum: signal.Signals,
    bird_state: str,
) -> None:
    db = tmp_path / "datastore.db"
    log = tmp_path / "agent.log"
    # No metrics exporter: several agents in one test run must not compete for its port.
    env = embedded_env(db) | {"CALICO_NODESTATUS_METRICS_PORT": "0"}
    replay: ReplayServer | None = None
    if bird_state == "answering":
        node = bird_mesh.node(1)
        sockets = (node.socket_v4, node.socket_v6)
    else:
        replay, replay6 = replayed_bird
        sockets = (replay.path, replay6.path)
    argv = agent_argv(NODE, *sockets, "--heartbeat-seconds", "5")
    async with EmbeddedDatastore(db) as store:
        await store.create(node_status("proc", NODE, ["Agent", "BGP", "Routes"], 1))
        async with agent_process(argv, env, log) as agent:

            async def working() -> bool:
                obj = await store.get("proc")
                return bool(obj.status.routes.routes_v4) and await store.get_liveness(NODE) is not None

            await wait_for(working, 60, "agent filled the status and holds its liveness record")
            if replay is not None:
                asked = len(replay.commands)
                replay.fault, replay.fault_on = Fault.HANG, frozenset({"show status"})

                async def collection_hangs() -> bool:  # the next collection now waits on BIRD
                    return "show status" in replay.commands[asked:]

                await wait_for(collection_hangs, 30, "a collection waiting on the hung BIRD")
            agent.send_signal(signum)
            code = await asyncio.wait_for(agent.wait(), EXIT_DEADLINE)  # a deadline, not the promise
        output = log.read_text(errors="replace")
        assert code in (0, 128 + signum, -signum) and "Traceback" not in output, output[-2000:]
        assert f"signal={signum.name}" in output
        took = (_logged_at(output, "agent_stopped") - _logged_at(output, "stop_requested")).total_seconds()
        assert took <= STOP_WITHIN, f"stopped {took:.2f}s after the signal:\n{output[-2000:]}"
        assert await store.get_liveness(NODE) is None, "liveness record not released"
