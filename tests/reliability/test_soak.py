"""Soak: the agent (a real process) in a real BIRD lab for SOAK_SECONDS (default 3600) while BIRD
daemons are restarted every SOAK_RESTART_SECONDS (default 30). RSS is sampled every 5 s and must
not grow: the median of the last quarter may exceed that of the first quarter (after warm-up) by
at most max(5 MiB, 10 %). Run with `make soak`; the result is written as JSON to SOAK_REPORT."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.plugins.agent import REPO, agent_argv, embedded_env, node_status

pytestmark = [pytest.mark.soak, pytest.mark.lab]

SAMPLE_SECONDS = 5.0


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _create(db: Path, name: str, node: str) -> None:
    async with EmbeddedDatastore(db) as store:
        await store.create(node_status(name, node, ["Agent", "BGP", "Routes"], 2))


async def _filled(db: Path, name: str) -> bool:
    async with EmbeddedDatastore(db) as store:
        obj = await store.get(name)
        return obj.status.agent.bird_v4.state == "Ready" and bool(obj.status.routes.routes_v4)


def test_agent_rss_does_not_grow_over_bird_restarts(lab_factory: Any, tmp_path: Path) -> None:
    duration = float(os.environ.get("SOAK_SECONDS", "3600"))
    restart_every = float(os.environ.get("SOAK_RESTART_SECONDS", "30"))
    report_path = Path(os.environ.get("SOAK_REPORT", str(tmp_path / "soak.json")))
    lab = lab_factory(nodes=2, bird="1.6", ipv6=True)
    node = lab.node(1)
    db = tmp_path / "datastore.db"
    asyncio.run(_create(db, "soak", node.name))
    argv = agent_argv(node.name, node.socket_v4, node.socket_v6, log_level="warning")
    env = {**os.environ, **embedded_env(db), "CALICO_NODESTATUS_METRICS_PORT": "0"}
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    samples: list[tuple[float, int]] = []
    restarts = 0
    try:
        started = time.monotonic()
        next_restart = started + restart_every
        while (now := time.monotonic()) - started < duration:
            assert agent.poll() is None, "the agent exited"
            samples.append((now - started, _rss_bytes(agent.pid)))
            if now >= next_restart:
                # Alternate: this node's own daemons (a crash), then the peer's (a clean stop).
                target, sig = (1, signal.SIGKILL) if restarts % 2 == 0 else (2, signal.SIGTERM)
                lab.bird_restart(target, sig=sig)
                restarts += 1
                next_restart = now + restart_every
            time.sleep(SAMPLE_SECONDS)
        lab.wait_established(timeout=60)
        time.sleep(5)
        assert asyncio.run(_filled(db, "soak")), "status not filled at the end of the soak"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(5)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        log.close()
    quarter = max(1, len(samples) // 4)
    warm = [rss for _, rss in samples[quarter : 2 * quarter]] or [samples[0][1]]
    last = [rss for _, rss in samples[-quarter:]]
    growth = statistics.median(last) - statistics.median(warm)
    allowed = max(5 * 2**20, 0.10 * statistics.median(warm))
    result = {
        "duration_seconds": duration,
        "bird_restarts": restarts,
        "samples": len(samples),
        "rss_start_mib": round(samples[0][1] / 2**20, 1),
        "rss_warm_median_mib": round(statistics.median(warm) / 2**20, 1),
        "rss_last_quarter_median_mib": round(statistics.median(last) / 2**20, 1),
        "rss_max_mib": round(max(rss for _, rss in samples) / 2**20, 1),
        "growth_mib": round(growth / 2**20, 2),
        "allowed_growth_mib": round(allowed / 2**20, 2),
        "passed": growth <= allowed,
    }
    report_path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert growth <= allowed, result
