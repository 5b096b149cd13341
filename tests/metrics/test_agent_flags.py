"""The agent's metrics flags: bad values and an address already in use are refused up front with
an error naming the flag, before the agent starts."""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner

from calico_nodestatus.cli.main import cli


def _agent(tmp_path: Path, *flags: str) -> tuple[int, str]:
    args = ["--db", str(tmp_path / "status.db"), "agent", "--node", "n1"]
    args += ["--bird-socket", str(tmp_path / "no-bird.ctl"), *flags]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def test_a_metrics_port_out_of_range_is_refused(tmp_path: Path) -> None:
    code, output = _agent(tmp_path, "--metrics-port", "70000")
    assert code == 2
    assert "--metrics-port" in output and "0<=x<=65535" in output


def test_a_busy_metrics_port_stops_the_agent_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _agent(tmp_path, "--metrics-host", "127.0.0.1", "--metrics-port", str(port))
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "--metrics-port" in output
