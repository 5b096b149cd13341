"""The agent as a real process, seen from outside:

- its metrics endpoint binds only where configured and serves only /metrics and /healthz;
- with etcd TLS client certificates (real etcd requiring them) it never logs the key, also at
  debug level and when the datastore fails.
The TLS handshake itself (client certs required, plaintext to a TLS endpoint refused, missing
client certificate refused) is tested by the datastore suite: tests/datastore/test_etcd.py."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore
from calico_nodestatus.lab import Lab
from tests.plugins.agent import agent_argv, agent_process, embedded_env, node_status, wait_for
from tests.plugins.etcd import EtcdServer, free_port
from tests.reliability.conftest import NODE


def _agent(
    lab: Lab, env: dict[str, str], log: Path, *options: str
) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """The agent logging at debug level (the most it could ever leak) on a lab node's real BIRD pair."""
    node = lab.node(1)
    argv = agent_argv(NODE, node.socket_v4, node.socket_v6, *options, log_level="debug")
    return agent_process(argv, env, log)


async def _logged(log: Path, *events: str) -> None:
    """Waits until the agent's log shows each event (`event=NAME`): the code path ran."""

    async def all_there() -> bool:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        return all(f"event={event} " in text for event in events)

    tail = lambda: log.read_text(errors="replace")[-3000:]  # noqa: E731 - the failure's explanation
    await wait_for(all_there, 60, f"{', '.join(events)} in {log.name}", explain=tail)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_metrics_endpoint_binds_where_configured_and_serves_only_its_paths(
    bird_mesh: Lab, tmp_path: Path
) -> None:
    port = free_port()
    env = embedded_env(tmp_path / "db")
    options = ("--metrics-host", "127.0.0.1", "--metrics-port", str(port))
    async with _agent(bird_mesh, env, tmp_path / "agent.log", *options):
        base = f"http://127.0.0.1:{port}"

        async def serving() -> bool:
            try:
                return (await asyncio.to_thread(_get, f"{base}/healthz"))[0] == 200
            except OSError:
                return False

        await wait_for(serving, 15, "metrics endpoint up", interval=0.2)
        status, body = await asyncio.to_thread(_get, f"{base}/metrics")
        assert status == 200 and b"# TYPE" in body
        for path in ("/", "/debug", "/metrics/../etc/passwd", "/healthz/x", "/favicon.ico", "/%2e%2e/"):
            assert (await asyncio.to_thread(_get, base + path))[0] == 404, path
        request = urllib.request.Request(f"{base}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(urllib.request.urlopen, request, None, 2)
        assert refused.value.code in (404, 405, 501)
        # Bound to 127.0.0.1 only: another loopback address of this host gets no answer.
        with socket.socket() as probe:
            probe.settimeout(1)
            assert probe.connect_ex(("127.0.0.2", port)) != 0


def _secret_lines(key_file: Path) -> list[str]:
    """The key material: every base64 line of the PEM (the BEGIN/END markers are not secret)."""
    return [line for line in key_file.read_text().splitlines() if line and not line.startswith("-----")]


@pytest.mark.etcd
async def test_etcd_client_key_never_logged(
    bird_mesh: Lab, etcd_tls_server: EtcdServer, tmp_path: Path
) -> None:
    tls = etcd_tls_server.tls
    assert tls is not None
    env = etcd_tls_server.datastore_env() | {"CALICO_NODESTATUS_METRICS_PORT": "0"}
    async with open_datastore(DatastoreConfig.from_env(environ=env)) as store:
        await store.create(node_status("tls", NODE, ["Agent", "BGP", "Routes"], 1))
        try:
            async with _agent(bird_mesh, env, tmp_path / "ok.log"):

                async def filled() -> bool:
                    return bool((await store.get("tls")).status.routes.routes_v4)

                await wait_for(filled, 15, "status written over TLS")
        finally:
            await store.delete("tls")
    # Failing on purpose: a wrong endpoint (errors are logged with their details) and a key that
    # does not match the certificate (the TLS library's error path).
    # Each runs until its failures are logged: the watch's and the heartbeat's (then the error
    # details have been formatted and written, the moment a key could leak).
    broken = env | {"ETCD_ENDPOINTS": f"https://127.0.0.1:{free_port()}"}
    async with _agent(bird_mesh, broken, tmp_path / "unreachable.log"):
        await _logged(tmp_path / "unreachable.log", "watch_failed", "liveness_renew_failed")
    mismatched = env | {"ETCD_CERT_FILE": str(tls.server_cert_file)}
    async with _agent(bird_mesh, mismatched, tmp_path / "mismatch.log"):
        await _logged(tmp_path / "mismatch.log", "watch_failed", "liveness_renew_failed")
    secrets = _secret_lines(tls.key_file) + _secret_lines(tls.server_key_file)
    for log in ("ok.log", "unreachable.log", "mismatch.log"):
        text = (tmp_path / log).read_text(errors="replace")
        assert text.strip(), f"{log} is empty: the test would prove nothing"
        leaked = [line for line in secrets if line in text or line[:24] in text]
        assert not leaked, f"key material in {log}"
    assert "event=status_written" in (tmp_path / "ok.log").read_text()
