"""The embedded datastore has one schema: a new file gets it, a file with another version is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from calico_nodestatus.cli.main import cli
from calico_nodestatus.datastore.base import DatastoreError
from calico_nodestatus.datastore.embedded import SCHEMA_VERSION, EmbeddedDatastore
from tests.datastore.conftest import make_status


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


async def test_new_file_gets_the_schema_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "datastore.db"
    async with EmbeddedDatastore(path) as store:
        await store.create(make_status())
    assert _user_version(path) == SCHEMA_VERSION
    async with EmbeddedDatastore(path) as store:
        assert (await store.get("status-a")).spec.node == "node-1"


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION + 1])
def test_unknown_schema_version_is_refused_naming_the_file(tmp_path: Path, version: int) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {version}")

    async def list_objects() -> None:
        async with EmbeddedDatastore(path) as store:
            await store.list()

    with pytest.raises(DatastoreError) as raised:
        asyncio.run(list_objects())
    message = str(raised.value)
    assert str(path) in message
    assert f"unknown schema version {version} (expected {SCHEMA_VERSION})" in message
    assert _tables(path) == [] and _user_version(path) == version  # nothing written into it

    result = CliRunner().invoke(cli, ["--db", str(path), "get", "caliconodestatus"])
    assert result.exit_code != 0
    assert f"{path}: unknown schema version {version}" in result.output
