"""`mesh`: exit codes, piped output without colour, and `--watch` redrawing from the datastore's
watch, on every datastore. The objects are written as the agents write them (status, then the
bgp-sessions annotation) by hand; the lab tests cover real agents and BIRD."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.datastore.base import Datastore, NotFound
from tests.cli.conftest import DATASTORE_ENV, CliTarget
from tests.mesh.test_analysis import full_mesh, node

WITHIN_SECONDS = 30.0


async def _write(datastore: Datastore, wanted: CalicoNodeStatus) -> None:
    """Creates or refreshes the object with ``wanted``'s status and annotations (an agent's write)."""
    try:
        current = await datastore.get(wanted.name)
    except NotFound:
        current = await datastore.create(wanted)
    current = await datastore.update_status(current.model_copy(update={"status": wanted.status}))
    await datastore.update_annotations(current, dict(wanted.metadata.annotations))


def _put(target: CliTarget, sessions: dict[int, list[Any]], ttl: dict[int, float]) -> None:
    async def run(datastore: Datastore) -> None:
        for index, listed in sessions.items():
            await datastore.renew_liveness(f"node-{index}", f"test/{index}", ttl.get(index, 3600))
            await _write(datastore, node(index, listed))

    target.on_datastore(run)


def _cli_env(target: CliTarget) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in DATASTORE_ENV}
    return env | target.env


def test_mesh_exit_codes_and_plain_output_when_piped(target: CliTarget) -> None:
    empty = target.run("mesh")
    assert empty.exit_code == 2 and "nothing to show" in empty.output
    _put(target, full_mesh(3), {})
    healthy = target.run("mesh")
    assert healthy.exit_code == 0, healthy.output
    assert "\x1b[" not in healthy.output and "all 3 nodes healthy" in healthy.output
    sessions = full_mesh(3)
    sessions[1] = [(p, f, "Passive" if p == 2 else s, e) for p, f, s, e in sessions[1]]
    sessions[2] = [
        (p, f, "Active" if p == 1 else s, "Socket: Connection timed out") for p, f, s, e in sessions[2]
    ]
    _put(target, sessions, {})
    broken = target.run("mesh", "-o", "json")
    assert broken.exit_code == 1
    assert [v["kind"] for v in json.loads(broken.output)["verdicts"]] == ["pair broken"]
    assert "\x1b[31m" in target.run("mesh", "--color").output  # red, when asked for


def _frames(process: subprocess.Popen[str]) -> queue.Queue[dict[str, Any]]:
    frames: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            frames.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    return frames


def _next_frame(frames: queue.Queue[dict[str, Any]], what: str, check: Any) -> dict[str, Any]:
    seen = []
    while True:
        try:
            frame = frames.get(timeout=WITHIN_SECONDS)
        except queue.Empty:
            raise AssertionError(f"no redraw with {what} within {WITHIN_SECONDS}s; saw {seen}") from None
        seen.append([v["kind"] for v in frame["verdicts"]])
        if check(frame):
            return frame


def test_watch_redraws_on_every_change_and_when_a_liveness_record_runs_out(target: CliTarget) -> None:
    _put(target, full_mesh(2), {})
    argv = [sys.executable, "-m", "calico_nodestatus", *target.global_args, "mesh", "--watch", "-o", "json"]
    process = subprocess.Popen(argv, env=_cli_env(target), stdout=subprocess.PIPE, text=True)
    try:
        frames = _frames(process)
        _next_frame(frames, "a healthy mesh", lambda f: f["exitCode"] == 0 and len(f["nodes"]) == 2)
        # node-2's liveness now runs out in 3 s unless renewed: nothing writes any object then.
        sessions = full_mesh(2)
        sessions[1] = [(p, f, "Passive", None) for p, f, _s, _e in sessions[1]]
        sessions[2] = [(p, f, "Active", "Socket: Connection timed out") for p, f, _s, _e in sessions[2]]
        _put(target, sessions, {2: 3})
        _next_frame(frames, "the broken pair", lambda f: f["exitCode"] == 1)
        stale = _next_frame(
            frames, "node-2 gone stale", lambda f: "stale agent" in [v["kind"] for v in f["verdicts"]]
        )
        (row,) = [n for n in stale["nodes"] if n["node"] == "node-2"]
        assert row["hasData"] is False
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode in (1, 2)
