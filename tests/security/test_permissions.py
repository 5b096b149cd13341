"""The embedded database and the status file are private to their owner: files 0600, the
directory holding them (when the product creates it) 0700 — whatever the process umask (here 0,
the worst case). Directories further up are created with the umask's mode (see RELIABILITY.md)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.health.statusfile import StatusFileWriter
from tests.plugins.agent import node_status
from tests.reliability.conftest import NODE


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_embedded_database_is_private(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "dir" / "datastore.db"
    async with EmbeddedDatastore(db) as store:
        await store.create(node_status("private", NODE, ["Agent"], 0))
        await store.renew_liveness(NODE, "test/1", 5)
        files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
        assert db in files and len(files) >= 2, files  # the database and SQLite's WAL files
        for path in files:
            assert _mode(path) == 0o600, f"{path.name}: {oct(_mode(path))}"
    assert _mode(db.parent) == 0o700


def test_status_file_is_private(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "nodestatus" / "status.json"
    writer = StatusFileWriter(path)
    writer.update("agent", ready=True, live=True, reason="", now=datetime.now(UTC))
    writer.update("bird", ready=False, live=True, reason="down", now=datetime.now(UTC))
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temp file left behind
