"""`calico-nodestatus health` and `node ip` through the real CLI entry point."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from calico_nodestatus.cli.health import DURATION
from calico_nodestatus.cli.main import cli
from calico_nodestatus.health.statusfile import StatusFileWriter


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def status_file(tmp_path: Path) -> Path:
    path = tmp_path / "status" / "status.json"
    writer = StatusFileWriter(path)
    now = datetime.now(UTC)
    writer.update("bird", ready=True, live=True, reason="", now=now)
    writer.update("datastore", ready=False, live=True, reason="etcd unreachable", now=now)
    return path


@pytest.fixture
def listening_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A real Unix socket that would accept a connection: it shows whether anyone dialled it."""
    path = tmp_path / "v4.ctl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.setblocking(False)
    try:
        yield str(path), server
    finally:
        server.close()


def test_no_check_selected() -> None:
    code, out = run("health")
    assert code == 1
    assert out.startswith("calico/node check error: must specify at least one of --bird-ready")


def test_every_failure_is_reported_not_only_the_first(tmp_path: Path) -> None:
    v4, v6 = tmp_path / "bird.ctl", tmp_path / "bird6.ctl"
    code, out = run(
        "health",
        "--bird-live",
        "--bird-ready",
        "--bird6-live",
        "--bird-socket",
        str(v4),
        "--bird6-socket",
        str(v6),
    )
    assert code == 1
    assert out.splitlines() == [
        f"calico/node is not ready: bird is not live: unable to connect to BIRD socket {v4}: "
        "No such file or directory",
        f"calico/node is not ready: BIRD is not ready: error querying BIRD: unable to connect to BIRD socket "
        f"{v4}: No such file or directory",
        f"calico/node is not ready: bird6 is not live: unable to connect to BIRD socket {v6}: "
        "No such file or directory",
    ]


def test_ipv6_checks_never_dial_the_ipv4_socket(tmp_path: Path, listening_socket) -> None:
    v4_path, server = listening_socket
    code, out = run(
        "health",
        "--bird6-ready",
        "--bird6-live",
        "--bird-socket",
        v4_path,
        "--bird6-socket",
        str(tmp_path / "bird6.ctl"),
        "-o",
        "json",
    )
    assert code == 1
    assert [c["check"] for c in json.loads(out)["checks"]] == ["bird6-live", "bird6-ready"]
    with pytest.raises(BlockingIOError):
        server.accept()
    # The same listener does see a connection when the IPv4 check is selected.
    run("health", "--bird-live", "--bird-socket", v4_path)
    connection, _ = server.accept()
    connection.close()


def test_status_file_checks(status_file: Path) -> None:
    code, out = run("health", "--status-file", str(status_file))
    assert code == 1
    assert out.splitlines() == [
        "status file not ready: datastore: etcd unreachable",
        "status file: bird, datastore live",
    ]
    code, out = run("health", "--status-file", str(status_file), "--status-live", "--status-max-age", "1m")
    assert (code, out) == (0, "status file: bird, datastore live\n")
    code, out = run("health", "--status-file", str(status_file), "--status-ready", "-o", "json")
    document = json.loads(out)
    assert code == 1 and document["ok"] is False
    assert document["checks"][0]["details"]["components"]["datastore"]["reason"] == "etcd unreachable"


def test_status_file_problems(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    code, out = run("health", "--status-file", str(missing), "--status-ready")
    assert code == 1
    assert out == f"failed to read status file {missing}: file does not exist (has the agent started?)\n"
    code, out = run("health", "--status-live")
    assert code == 2 and "--status-ready, --status-live and --status-max-age need --status-file" in out


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("0", 0)]
)
def test_go_durations(text: str, seconds: float) -> None:
    assert DURATION.convert(text, None, None).total_seconds() == seconds


def test_bad_duration_names_the_option() -> None:
    code, out = run("health", "--bird-ready", "--threshold-time", "30")
    assert code == 2
    assert "Invalid value for '--threshold-time': '30' is not a duration; expected e.g. 30s" in out


def test_node_ip_explains_the_pick(host: str) -> None:
    code, out = run("node", "ip", "--netns", host, "--method", "interface=eth.*", "--method", "first-found")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "IPv4 interface=eth.*: 198.18.14.1/24 on veth7"
    assert "  Using autodetected IPv4 address 198.18.14.1/24 on matching interface veth7" in lines
    assert any(line.startswith("  warning: interface regex 'eth.*' also matches veth7") for line in lines)
    assert "IPv4 first-found: 198.18.12.1/24 on eth1" in lines
    assert any(
        line.split()[:2] == ["skipped", "veth7"] and "default exclusion '^veth.*'" in line for line in lines
    )


def test_node_ip_json_ipv6_and_failure(host: str) -> None:
    code, out = run(
        "node", "ip", "--netns", host, "--ipv6", "--method", "cidr=2001:db8:10::/64", "-o", "json"
    )
    assert code == 0
    [detection] = json.loads(out)
    assert (detection["family"], detection["address"], detection["interface"]) == (
        "IPv6",
        "2001:db8:10::1/64",
        "eth0",
    )
    code, out = run("node", "ip", "--netns", host, "--method", "can-reach=198.18.99.1")
    assert code == 1
    assert "no route to 198.18.99.1: Network is unreachable" in out


def test_node_ip_default_method_from_the_environment(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IP_AUTODETECTION_METHOD", "cidr=198.18.10.0/24")
    code, out = run("node", "ip", "--netns", host)
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("IPv4 ")]
    assert headings == [
        "IPv4 cidr=198.18.10.0/24: 198.18.10.1/24 on eth0",
        "IPv4 first-found: 198.18.12.1/24 on eth1",
    ]


def test_node_ip_kubernetes_node_file(host: str, tmp_path: Path) -> None:
    node = tmp_path / "node.yaml"
    node.write_text("kind: Node\nstatus:\n  addresses:\n  - {type: InternalIP, address: 198.18.10.2}\n")
    code, out = run(
        "node", "ip", "--netns", host, "--method", "kubernetes-internal-ip", "--kubernetes-node", str(node)
    )
    assert code == 0 and out.startswith("IPv4 kubernetes-internal-ip: 198.18.10.2/24 on eth0")
    node.write_text("kind: Node\nstatus: {}\n")
    code, out = run(
        "node", "ip", "--netns", host, "--method", "kubernetes-internal-ip", "--kubernetes-node", str(node)
    )
    assert code == 2 and "expected a Kubernetes Node object with status.addresses" in out


def test_node_ip_input_errors() -> None:
    code, out = run("node", "ip", "--method", "interface=(")
    assert code == 2 and "Invalid value for --method: IP autodetection method 'interface=('" in out
    code, out = run("node", "ip", "--netns", "cnst-h6-absent")
    assert code == 1 and "Error: network namespace 'cnst-h6-absent' does not exist" in out
