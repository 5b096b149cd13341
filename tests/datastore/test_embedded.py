"""Embedded (SQLite) backend: several real processes on one file, locking, permissions, bounded log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from calico_nodestatus.datastore import embedded as embedded_module
from calico_nodestatus.datastore.base import DatastoreError, Unavailable, WatchExpired
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.datastore.conftest import collect, eventually, make_status

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A tests.datastore.embedded_worker process, talked to line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def receive(self, within: float = 10.0) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        assert line, "worker exited early"
        return line.decode().strip()


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., object]]:
    workers: list[Worker] = []

    async def start(*args: str) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.datastore.embedded_worker",
            *args,
            cwd=PROJECT_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = Worker(process)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.returncode is None:
            worker.process.kill()
        await worker.process.wait()


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[EmbeddedDatastore]:
    datastore = EmbeddedDatastore(tmp_path / "state" / "datastore.db")
    yield datastore
    await datastore.close()


async def test_files_are_private(embedded: EmbeddedDatastore) -> None:
    await embedded.create(make_status())
    assert stat.S_IMODE(embedded.path.parent.stat().st_mode) == 0o700
    for path in embedded.path.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


async def test_two_processes_racing_on_one_revision_one_wins(embedded: EmbeddedDatastore, spawn) -> None:
    await embedded.create(make_status())
    first, second = (
        await spawn("writer", str(embedded.path), "status-a"),
        await spawn("writer", str(embedded.path), "status-a"),
    )
    for round_number in range(5):
        await first.send("read")
        await second.send("read")
        read_revisions = {await first.receive(), await second.receive()}
        assert len(read_revisions) == 1, "both writers must start from the same revision"
        await first.send(f"update {100 + round_number}")
        await second.send(f"update {200 + round_number}")
        outcomes = sorted([await first.receive(), await second.receive()])
        assert outcomes[0] == "conflict"
        assert outcomes[1].startswith("ok ")
        assert int(outcomes[1].split()[1]) > int(read_revisions.pop())

    stored = await embedded.get("status-a")
    assert stored.metadata.generation == 1 + 5
    assert stored.spec.update_period_seconds in (104, 204)


async def test_concurrent_read_modify_write_loses_no_update(embedded: EmbeddedDatastore, spawn) -> None:
    await embedded.create(make_status(period=0))
    bumpers = [await spawn("bump", str(embedded.path), "status-a", "60") for _ in range(3)]
    for bumper in bumpers:
        assert await bumper.receive() == "ready"
    for bumper in bumpers:
        await bumper.send("go")
    replies = [await bumper.receive(within=60) for bumper in bumpers]
    assert all(reply.startswith("done ") for reply in replies)
    stored = await embedded.get("status-a")
    assert stored.spec.update_period_seconds == 180
    assert stored.metadata.generation == 181


async def test_watcher_in_another_process_sees_changes_in_order(embedded: EmbeddedDatastore, spawn) -> None:
    _, start = await embedded.list()
    watcher = await spawn("watch", str(embedded.path), start, "3")
    assert await watcher.receive() == "watching"

    created = await embedded.create(make_status())
    spec = created.spec.model_copy(update={"update_period_seconds": 42})
    updated = await embedded.update(created.model_copy(update={"spec": spec}))
    await embedded.delete("status-a")

    lines = [(await watcher.receive()).split() for _ in range(3)]
    assert [line[0] for line in lines] == ["ADDED", "MODIFIED", "DELETED"]
    assert [line[1] for line in lines[:2]] == [
        created.metadata.resource_version,
        updated.metadata.resource_version,
    ]
    assert int(lines[2][1]) > int(lines[1][1])
    assert [line[3] for line in lines] == ["10", "42", "42"]
    assert await asyncio.wait_for(watcher.process.wait(), 5) == 0


async def test_locked_database_is_unavailable_then_recovers(tmp_path: Path, spawn) -> None:
    path = tmp_path / "datastore.db"
    datastore = EmbeddedDatastore(path, busy_timeout=0.5)
    try:
        created = await datastore.create(make_status())
        locker = await spawn("lock", str(path))
        assert await locker.receive() == "locked"

        started = time.monotonic()
        with pytest.raises(Unavailable, match="locked by another process"):
            await datastore.update_status(created)
        assert time.monotonic() - started < 3.0
        assert (
            await datastore.get("status-a")
        ).metadata.resource_version == created.metadata.resource_version

        await locker.send("release")
        assert await asyncio.wait_for(locker.process.wait(), 5) == 0
        updated = await datastore.update_status(created)
        assert int(updated.metadata.resource_version or 0) > int(created.metadata.resource_version or 0)
    finally:
        await datastore.close()


async def test_event_log_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "datastore.db"
    datastore = EmbeddedDatastore(path, event_retention=5)
    try:
        _, start = await datastore.list()
        obj = await datastore.create(make_status(period=0))
        for period in range(1, 10):
            spec = obj.spec.model_copy(update={"update_period_seconds": period})
            obj = await datastore.update(obj.model_copy(update={"spec": spec}))

        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 5
        expired = datastore.watch(start)
        with pytest.raises(WatchExpired):
            await collect(expired, 1)
        oldest_kept = str(int(obj.metadata.resource_version or 0) - 5)
        kept = datastore.watch(oldest_kept)
        try:
            assert [e.object.spec.update_period_seconds for e in await collect(kept, 5)] == [5, 6, 7, 8, 9]
        finally:
            await kept.aclose()
    finally:
        await datastore.close()


async def test_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "datastore.db"
    path.write_bytes(b"this is not sqlite" * 100)
    datastore = EmbeddedDatastore(path)
    with pytest.raises(DatastoreError, match=str(path)):
        await datastore.list()
    await datastore.close()


@dataclass
class TracedWatch:
    """A watcher whose SQL statements are recorded, a second writer on the same file, and the
    names the watch delivered so far."""

    writer: EmbeddedDatastore
    statements: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    async def delivered(self, *names: str) -> None:
        assert await eventually(lambda: _true(self.seen == list(names)), within=5)


@pytest.fixture
async def traced_watch(tmp_path: Path) -> AsyncIterator[TracedWatch]:
    writer = EmbeddedDatastore(tmp_path / "datastore.db")
    traced = TracedWatch(writer)

    class TracedDatastore(EmbeddedDatastore):
        def _watch_connection(self) -> sqlite3.Connection:
            conn = super()._watch_connection()
            conn.set_trace_callback(traced.statements.append)
            return conn

    datastore = TracedDatastore(tmp_path / "datastore.db")

    async def consume() -> None:
        async for event in datastore.watch("0"):
            traced.seen.append(event.object.name)

    consumer = asyncio.create_task(consume())
    try:
        await writer.create(make_status())
        await traced.delivered("status-a")
        traced.statements.clear()
        yield traced
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await datastore.close()
        await writer.close()


async def _true(value: bool) -> bool:
    return value


async def test_idle_watch_sleeps_until_a_commit(traced_watch: TracedWatch) -> None:
    """Woken by the WAL file changing (inotify), an idle watch runs no statement at all; a
    commit by another connection wakes it."""
    await asyncio.sleep(1.0)  # two idle polls of the polling fallback
    assert traced_watch.statements == []

    await traced_watch.writer.create(make_status("status-b"))
    await traced_watch.delivered("status-a", "status-b")


async def test_a_commit_wakes_the_watch_without_any_poll(
    traced_watch: TracedWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every timer out of reach (the safety look and the polling fallback an hour away),
    only the WAL file's change can deliver the new object: commits after the watch started and
    after a checkpoint restarted the WAL from its beginning."""
    monkeypatch.setattr(embedded_module, "WATCH_SAFETY_INTERVAL_S", 3600.0)
    monkeypatch.setattr(embedded_module, "WATCH_IDLE_POLL_INTERVAL_S", 3600.0)
    monkeypatch.setattr(embedded_module, "WATCH_POLL_INTERVAL_S", 3600.0)
    await asyncio.sleep(0.2)  # the watch is now waiting with the patched timers
    await traced_watch.writer.create(make_status("status-b"))
    await traced_watch.delivered("status-a", "status-b")
    await asyncio.to_thread(_checkpoint, traced_watch.writer.path)
    await traced_watch.writer.create(make_status("status-c"))
    await traced_watch.delivered("status-a", "status-b", "status-c")


def _checkpoint(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def test_watch_polls_where_inotify_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(embedded_module.inotify_simple, "INotify", unavailable)
    writer = EmbeddedDatastore(tmp_path / "datastore.db")
    datastore = EmbeddedDatastore(tmp_path / "datastore.db")
    seen: list[str] = []

    async def consume() -> None:
        async for event in datastore.watch("0"):
            seen.append(event.object.name)

    await writer.create(make_status())
    consumer = asyncio.create_task(consume())
    try:
        assert await eventually(lambda: _true(seen == ["status-a"]), within=5)
        await writer.create(make_status("status-b"))
        assert await eventually(lambda: _true(seen == ["status-a", "status-b"]), within=5)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await datastore.close()
        await writer.close()


async def test_liveness_renewals_do_not_make_a_watch_read_the_log(traced_watch: TracedWatch) -> None:
    """Other agents' heartbeats commit to the same file: the watch notices the commit, reads the
    head revision (one row) and leaves the event log alone, then still delivers a real change."""
    for node in ("node-1", "node-2", "node-3"):
        await traced_watch.writer.renew_liveness(node, "host/1", 30)
        await asyncio.sleep(0.6)  # one idle poll after each commit
    statements = traced_watch.statements
    assert len([s for s in statements if "key = 'revision'" in s]) >= 3  # it saw the commits...
    assert not [s for s in statements if "FROM events" in s]  # ...without reading the log

    await traced_watch.writer.create(make_status("status-b"))
    await traced_watch.delivered("status-a", "status-b")


async def test_several_processes_opening_a_new_file_at_once(
    tmp_path: Path, spawn: Callable[..., Any]
) -> None:
    """Switching a new file to WAL needs it to itself; SQLite refuses at once (no busy wait) while
    another connection is writing in it. Eight processes open the same new file together while
    one is: each is refused, retries (its debug log says so), and once the writer is done all of
    them work on the one schema created once."""
    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the write lock another process's WAL switch would hold
    try:
        workers = [await spawn("open", str(path), f"node-{i}") for i in range(8)]
        for worker in workers:
            assert await worker.receive(60) == "ready"
        for worker in workers:
            await worker.send("go")
        for worker in workers:  # the file is held: the first thing each says is that it waits
            assert "event=wal_switch_busy" in await worker.receive(60)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    for worker in workers:
        assert await worker.receive(60) == "ok 0"
        assert await worker.process.wait() == 0
    async with EmbeddedDatastore(path) as store:
        nodes = sorted(record.node for record in await store.list_liveness())
    assert nodes == [f"node-{i}" for i in range(8)]


async def test_missing_parent_directories_are_private(tmp_path: Path) -> None:
    """Every directory the datastore creates is 0700, not only the last one (umask 0 here, so
    the umask cannot be what makes them private); an existing one is left as it is."""
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "a" / "b" / "c" / "datastore.db"
    previous = os.umask(0)
    try:
        async with EmbeddedDatastore(path) as datastore:
            await datastore.list()
    finally:
        os.umask(previous)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755
