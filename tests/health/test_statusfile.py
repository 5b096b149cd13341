"""The status file: atomic replacement under a concurrent reader process, modes, reader errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calico_nodestatus.health.statusfile import (
    StatusFileError,
    StatusFileWriter,
    StatusReport,
    evaluate_status_report,
    read_status_file,
    write_status_file,
)

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

# Runs in a separate process: reads the file as fast as it can until the stop file appears and
# reports how many reads failed and how many distinct documents it saw.
READER = r"""
import json, sys
from pathlib import Path
from calico_nodestatus.health.statusfile import StatusFileError, read_status_file

path, stop = Path(sys.argv[1]), Path(sys.argv[2])
reads, failures, seen = 0, [], set()
print("started", flush=True)
while not stop.exists():
    try:
        report = read_status_file(path)
    except StatusFileError as exc:
        failures.append(str(exc))
    else:
        seen.add(report.components["bird"].reason)
    reads += 1
print(json.dumps({"reads": reads, "failures": failures[:5], "failureCount": len(failures),
                  "distinct": len(seen)}))
"""


def test_reader_process_never_sees_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "status" / "status.json"
    stop = tmp_path / "stop"
    writer = StatusFileWriter(path)
    writer.update("bird", ready=True, live=True, reason="initial", now=NOW)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "started"
        rewrites = 3000
        for i in range(rewrites):
            # Varying sizes: a torn read of a shorter or longer version would not parse.
            reason = f"rewrite {i} " + "x" * (i % 257)
            writer.update("bird", ready=i % 2 == 0, live=True, reason=reason, now=NOW + timedelta(seconds=i))
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    result = json.loads(out)
    assert result["failureCount"] == 0, result["failures"]
    assert result["reads"] >= 1000
    # The reader really raced the writer: it observed many different versions.
    assert result["distinct"] >= 50
    assert read_status_file(path).components["bird"].reason.startswith(f"rewrite {rewrites - 1} ")
    # No temporary files left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["status.json"]


def test_modes_and_directory_creation(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "status.json"
    StatusFileWriter(path).update("bird", ready=True, live=True, reason="", now=NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document = json.loads(path.read_text())
    assert document["ready"] is True and document["live"] is True
    assert document["components"]["bird"]["changedAt"] == "2026-11-25T12:00:00Z"


def test_changed_at_only_moves_when_state_changes(tmp_path: Path) -> None:
    writer = StatusFileWriter(tmp_path / "s.json")
    reason = "BGP not established with 198.18.0.2"
    writer.update("bird", ready=False, live=True, reason=reason, now=NOW)
    later = NOW + timedelta(seconds=10)
    same = writer.update("bird", ready=False, live=True, reason=reason, now=later)
    assert same.components["bird"].changed_at == NOW
    assert same.components["bird"].updated_at == later
    assert same.written_at == later
    changed = writer.update("bird", ready=True, live=True, reason="", now=later + timedelta(seconds=1))
    assert changed.components["bird"].changed_at == later + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file does not exist"),
        (b"", "file is empty"),
        (b'{"version": 1, "writtenAt": "2026-11-25T12:00:00Z", "compo', "not valid JSON"),
        (b"[]", "expected a JSON object, got list"),
        (
            b'{"writtenAt": "2026-11-25T12:00:00Z", "components": {"bird": {"ready": "maybe"}}}',
            "field 'components.bird.ready'",
        ),
        (b'{"version": 7, "writtenAt": "2026-11-25T12:00:00Z", "components": {}}', "field 'version'"),
    ],
)
def test_reader_errors_name_the_problem(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "status.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StatusFileError) as info:
        read_status_file(path)
    assert str(info.value).startswith(f"failed to read status file {path}: ")
    assert expected in str(info.value)


def _report(**components: tuple[bool, bool, str]) -> StatusReport:
    return StatusReport(
        written_at=NOW,
        components={
            name: {"ready": ready, "live": live, "reason": reason, "changedAt": NOW, "updatedAt": NOW}
            for name, (ready, live, reason) in components.items()
        },
    )


def test_evaluation_reports_every_not_ready_component_in_stable_order(tmp_path: Path) -> None:
    report = _report(
        zeta=(False, True, "datastore unreachable"), bird=(False, True, "BGP down"), api=(True, True, "")
    )
    write_status_file(tmp_path / "s.json", report)
    ready, live = evaluate_status_report(read_status_file(tmp_path / "s.json"), now=NOW, max_age=None)
    assert (ready.check, ready.ok) == ("status-file-ready", False)
    assert ready.message == "status file not ready: bird: BGP down; zeta: datastore unreachable"
    assert (live.check, live.ok) == ("status-file-live", True)


def test_evaluation_fails_a_stale_or_empty_file() -> None:
    healthy = _report(bird=(True, True, ""))
    fresh = evaluate_status_report(healthy, now=NOW + timedelta(seconds=5), max_age=timedelta(seconds=30))
    assert all(r.ok for r in fresh)
    stale = evaluate_status_report(healthy, now=NOW + timedelta(seconds=90), max_age=timedelta(seconds=30))
    assert [r.ok for r in stale] == [False, False]
    assert "last written 90s ago, more than the allowed 30s" in stale[0].message
    empty = evaluate_status_report(_report(), now=NOW, max_age=None)
    assert [r.message for r in empty] == [
        "status file not ready: no components reported",
        "status file not live: no components reported",
    ]
