"""The embedded datastore: one SQLite file, shared safely by several processes.

- WAL journal, so readers never wait for a writer; every write is a short ``BEGIN IMMEDIATE``
  transaction, so compare-and-swap is atomic across processes.
- One global revision counter; each write appends to an event log that ``watch`` tails. A watcher
  sleeps until the WAL file changes (inotify: every commit writes to it), then checks
  ``PRAGMA data_version`` (changes only when another connection commits), reads the head revision
  (one row) and reads the log only when that moved. So an idle watch costs no wake-ups, and other
  agents' liveness renewals (commits that add no event) cost one row. A wake that shows no new
  ``data_version`` (the commit is not published yet) is looked at again briefly. Where inotify is
  not available it polls instead (every 50 ms while events flow, every 0.5 s once idle).
- A new file is switched to WAL and given its schema by whichever process gets there first; the
  switch needs the file to itself, so a process that finds it busy retries within ``busy_timeout``.
- Missing directories above the file are created 0700, the file 0600.
- Each event records the object's node before and after the change, so a node-filtered watch
  sees an object moving away as DELETED and one moving in as ADDED.
- The log is bounded (by count and age); a watch older than the retained log gets WatchExpired.
- SQLite is synchronous, so every query but the watch's version check runs in a worker thread;
  a database locked by another process surfaces as Unavailable after ``busy_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import inotify_simple

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    Datastore,
    DatastoreError,
    EventType,
    LivenessRecord,
    NotFound,
    Unavailable,
    WatchEvent,
    WatchExpired,
)
from calico_nodestatus.datastore.rules import (
    merge_annotations,
    merge_status,
    merge_update,
    node_filtered_event,
    parse_resource_version,
    prepare_create,
    with_resource_version,
)
from calico_nodestatus.privatedirs import make_private_dirs

T = TypeVar("T")

SCHEMA_VERSION = 2  # 1 was a pre-release layout; any other version is refused
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS objects (
    name TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_node ON objects (node);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    node TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    prev_node TEXT
);
CREATE TABLE IF NOT EXISTS liveness (
    node TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    renewed_at REAL NOT NULL,
    ttl_seconds REAL NOT NULL
);
"""

DEFAULT_BUSY_TIMEOUT_S = 5.0
DEFAULT_EVENT_RETENTION = 1000
DEFAULT_EVENT_MAX_AGE_S = 300.0
# Without inotify: polls every 50 ms while events are flowing (and for WATCH_HOT_SECONDS after),
# twice a second once idle (the poll was most of an idle agent's CPU).
WATCH_POLL_INTERVAL_S = 0.05
WATCH_IDLE_POLL_INTERVAL_S = 0.5
WATCH_HOT_SECONDS = 1.0
# With inotify the watch also looks once a minute on its own, in case a change never reached the
# WAL file it watches (the file replaced behind its back).
WATCH_SAFETY_INTERVAL_S = 60.0
# A commit writes its WAL frames (the inotify wake) before it publishes them in the shared-memory
# index, so a watch woken early sees no new data_version: it looks again this many times, every
# WATCH_WAKE_RECHECK_S, before it sleeps until the next wake.
WATCH_WAKE_RECHECKS = 10
WATCH_WAKE_RECHECK_S = 0.05
# Every commit writes to the WAL; the file being removed or replaced ends that watch.
WAL_EVENTS = (
    inotify_simple.flags.MODIFY
    | inotify_simple.flags.DELETE_SELF
    | inotify_simple.flags.MOVE_SELF
    | inotify_simple.flags.ATTRIB
)
WATCH_BATCH = 256
WAL_SWITCH_RETRY_S = 0.02

log = logging.getLogger(__name__)


def _encode(obj: CalicoNodeStatus) -> str:
    wire = obj.to_wire()
    wire["metadata"].pop("resourceVersion", None)
    return json.dumps(wire, separators=(",", ":"))


def _decode(body: str, revision: int) -> CalicoNodeStatus:
    return with_resource_version(CalicoNodeStatus.model_validate_json(body), revision)


class _CommitSignal:
    """Wakes a watch when the database's WAL file changes (a commit), through inotify on the
    event loop: an idle watch then costs no wake-ups. Without inotify (another OS, no watch left,
    no WAL file) it falls back to polling; with it, it still looks every WATCH_SAFETY_INTERVAL_S."""

    def __init__(self, wal: Path) -> None:
        self._wal = wal
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._inotify: inotify_simple.INotify | None = None
        try:
            self._inotify = inotify_simple.INotify(nonblocking=True)
            self._inotify.add_watch(wal, WAL_EVENTS)
        except OSError:
            self.close()
            return
        self._loop.add_reader(self._inotify.fileno(), self._on_events)

    def _on_events(self) -> None:
        assert self._inotify is not None
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            events = []
        if any(event.mask & ~inotify_simple.flags.MODIFY for event in events):
            # Removed, moved or unlinked: watch whatever file has the name now.
            try:
                self._inotify.add_watch(self._wal, WAL_EVENTS)
            except OSError:
                self.close()
        self._changed.set()

    async def wait(self, *, hot: bool) -> bool:
        """Until the next commit (or the safety interval); polling intervals without inotify.
        True when the WAL file changed (inotify woke it)."""
        if self._inotify is None:
            await asyncio.sleep(WATCH_POLL_INTERVAL_S if hot else WATCH_IDLE_POLL_INTERVAL_S)
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WATCH_SAFETY_INTERVAL_S):
                await self._changed.wait()
        woken = self._changed.is_set()
        self._changed.clear()
        return woken

    def close(self) -> None:
        if self._inotify is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None


class EmbeddedDatastore(Datastore):
    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        event_retention: int = DEFAULT_EVENT_RETENTION,
        event_max_age: float = DEFAULT_EVENT_MAX_AGE_S,
    ) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout = busy_timeout
        self.event_retention = event_retention
        self.event_max_age = event_max_age
        self._conn: sqlite3.Connection | None = None
        # One connection per instance; the lock keeps worker threads from sharing it concurrently.
        self._lock = threading.Lock()

    # -- connection and transactions (worker-thread side) -------------------------------------

    def _connect(self) -> sqlite3.Connection:
        make_private_dirs(self.path.parent)
        if not self.path.exists():
            # Create the file ourselves so it never exists with default (world-readable) permissions.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._create_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switches a new file to WAL (the mode is stored in the file, so this happens once).
        SQLite answers "database is locked" at once, without its busy handler, when another
        connection is in the file during the switch: two processes opening a new file together
        hit that, so it is retried here for up to ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        refused = False
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    return
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if ("locked" not in str(error) and "busy" not in str(error)) or time.monotonic() > deadline:
                    raise
                if not refused:  # once per open: contention worth seeing, not every retry
                    log.debug(
                        "event=wal_switch_busy path=%s error=%r retry_for=%gs",
                        self.path,
                        str(error),
                        self.busy_timeout,
                    )
                    refused = True
            time.sleep(WAL_SWITCH_RETRY_S)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        # The version is read again under the write lock: processes opening a new file at the same
        # time create the schema once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # a new file (SQLite's initial user_version)
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise DatastoreError(
                    f"embedded datastore {self.path}: unknown schema version {version} "
                    f"(expected {SCHEMA_VERSION}); it was not written by this version of "
                    "calico-nodestatus — move it away or choose another file (--db / CALICO_NODESTATUS_DB)"
                )
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                return result
            except sqlite3.Error as error:
                raise self._unavailable(error) from error

    def _unavailable(self, error: sqlite3.Error) -> DatastoreError:
        if isinstance(error, sqlite3.OperationalError):
            if "locked" in str(error) or "busy" in str(error):
                return Unavailable(
                    f"embedded datastore {self.path} is locked by another process "
                    f"(waited {self.busy_timeout:g}s); retry later"
                )
            return Unavailable(f"embedded datastore {self.path}: {error}")
        return DatastoreError(f"embedded datastore {self.path} is unusable: {error}")

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, work, write=False)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, work, write=True)

    # -- helpers run inside a transaction -----------------------------------------------------

    @staticmethod
    def _stored(conn: sqlite3.Connection, name: str) -> CalicoNodeStatus | None:
        row = conn.execute("SELECT body, revision FROM objects WHERE name = ?", (name,)).fetchone()
        return _decode(row[0], row[1]) if row else None

    def _record(
        self, conn: sqlite3.Connection, event: EventType, obj: CalicoNodeStatus, previous_node: str | None
    ) -> int:
        """Bumps the global revision, writes the object (or removes it) and appends the event;
        `previous_node` is the stored object's node before it (None on create)."""
        revision = int(
            conn.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value"
            ).fetchone()[0]
        )
        body = _encode(obj)
        if event is EventType.DELETED:
            conn.execute("DELETE FROM objects WHERE name = ?", (obj.name,))
        else:
            conn.execute(
                "INSERT INTO objects (name, node, revision, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET node = excluded.node, revision = excluded.revision, "
                "body = excluded.body",
                (obj.name, obj.spec.node, revision, body),
            )
        now = time.time()
        conn.execute(
            "INSERT INTO events (revision, type, name, node, body, created_at, prev_node) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (revision, str(event), obj.name, obj.spec.node, body, now, previous_node),
        )
        # Bound the log: keep at most `event_retention` events, none older than `event_max_age`.
        oldest_recent = conn.execute(
            "SELECT revision FROM events WHERE created_at >= ? ORDER BY revision LIMIT 1",
            (now - self.event_max_age,),
        ).fetchone()[0]
        self._compact(conn, max(revision - self.event_retention + 1, int(oldest_recent)))
        return revision

    @staticmethod
    def _compact(conn: sqlite3.Connection, below: int) -> None:
        conn.execute("DELETE FROM events WHERE revision < ?", (below,))
        conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'compacted'", (below,))

    @staticmethod
    def _check_revision(stored: CalicoNodeStatus | None, name: str, expected: int | None) -> CalicoNodeStatus:
        if stored is None:
            raise NotFound(name)
        if expected is not None and int(stored.metadata.resource_version or 0) != expected:
            raise Conflict(name)
        return stored

    # -- the Datastore interface --------------------------------------------------------------

    async def get(self, name: str) -> CalicoNodeStatus:
        stored = await self._read(lambda conn: self._stored(conn, name))
        if stored is None:
            raise NotFound(name)
        return stored

    async def list(self, node: str | None = None) -> tuple[list[CalicoNodeStatus], str]:
        def work(conn: sqlite3.Connection) -> tuple[list[CalicoNodeStatus], str]:
            if node is None:
                rows = conn.execute("SELECT body, revision FROM objects ORDER BY name").fetchall()
            else:
                rows = conn.execute(
                    "SELECT body, revision FROM objects WHERE node = ? ORDER BY name", (node,)
                ).fetchall()
            revision = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
            return [_decode(body, rev) for body, rev in rows], str(revision)

        return await self._read(work)

    async def create(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        new = prepare_create(obj, str(uuid.uuid4()), datetime.now(UTC))

        def work(conn: sqlite3.Connection) -> CalicoNodeStatus:
            if self._stored(conn, obj.name) is not None:
                raise AlreadyExists(obj.name)
            return with_resource_version(new, self._record(conn, EventType.ADDED, new, None))

        return await self._write(work)

    async def _replace(
        self, obj: CalicoNodeStatus, merge: Callable[[CalicoNodeStatus, CalicoNodeStatus], CalicoNodeStatus]
    ) -> CalicoNodeStatus:
        expected = parse_resource_version(obj.metadata.resource_version)

        def work(conn: sqlite3.Connection) -> CalicoNodeStatus:
            stored = self._check_revision(self._stored(conn, obj.name), obj.name, expected)
            merged = merge(stored, obj)
            revision = self._record(conn, EventType.MODIFIED, merged, stored.spec.node)
            return with_resource_version(merged, revision)

        return await self._write(work)

    async def update(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._replace(obj, merge_update)

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._replace(obj, merge_status)

    async def update_annotations(
        self, obj: CalicoNodeStatus, changes: Mapping[str, str | None]
    ) -> CalicoNodeStatus:
        return await self._replace(obj, lambda stored, _incoming: merge_annotations(stored, changes))

    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        expected = None if resource_version is None else parse_resource_version(resource_version, "a Delete")

        def work(conn: sqlite3.Connection) -> CalicoNodeStatus:
            stored = self._check_revision(self._stored(conn, name), name, expected)
            self._record(conn, EventType.DELETED, stored, stored.spec.node)
            return stored

        return await self._write(work)

    async def compact(self, revision: str) -> None:
        """Drops the event history before `revision` (watching from older revisions expires)."""
        below = parse_resource_version(revision, "a Compact")
        await self._write(lambda conn: self._compact(conn, below))

    async def watch(self, resource_version: str, node: str | None = None) -> AsyncIterator[WatchEvent]:
        after = parse_resource_version(resource_version, "a Watch")
        conn = await asyncio.to_thread(self._watch_connection)
        # A cancelled poll may still be running in its thread: closing waits for it to finish.
        in_use = threading.Lock()
        # Watching starts before the first look, so a commit in between still wakes the watch.
        commits = _CommitSignal(Path(f"{self.path}-wal"))
        try:
            seen_data_version: int | None = None
            last_rows_at = time.monotonic()
            woken, rechecks = False, 0
            while True:
                # The version check runs on the loop (a few µs, WAL readers never wait for writers);
                # only reading the log after a commit goes through a worker thread.
                data_version = self._data_version(conn, in_use)
                wake_not_yet_visible = woken and data_version == seen_data_version
                rows: list[tuple[int, str, str, str | None, str | None]] = []
                if (
                    data_version != seen_data_version
                    and seen_data_version is not None
                    and self._head_revision(conn, in_use) == after
                ):
                    seen_data_version = data_version  # a commit without events (liveness)
                if data_version != seen_data_version:
                    rows = await asyncio.to_thread(self._poll_events, conn, in_use, after, node)
                    # A full batch means more may be waiting: forget the version so the next look reads on.
                    seen_data_version = None if len(rows) == WATCH_BATCH else data_version
                for revision, event_type, current_node, previous_node, body in rows:
                    after = revision
                    seen_as: EventType | None = EventType(event_type)
                    if node is not None and seen_as is not None:
                        seen_as = node_filtered_event(seen_as, previous_node, current_node, node)
                    if seen_as is not None and body is not None:
                        yield WatchEvent(seen_as, _decode(body, revision), str(revision))
                if rows:
                    last_rows_at = time.monotonic()
                if seen_data_version is None and rows:
                    continue  # a full batch: read on at once
                if wake_not_yet_visible and rechecks < WATCH_WAKE_RECHECKS:
                    rechecks += 1
                    await asyncio.sleep(WATCH_WAKE_RECHECK_S)
                    continue
                rechecks = 0
                woken = await commits.wait(hot=time.monotonic() - last_rows_at < WATCH_HOT_SECONDS)
        finally:
            commits.close()

            def close() -> None:
                with in_use:
                    conn.close()

            # Not awaited: a generator that awaits while closing is still "running", and an
            # event loop shutting down meanwhile fails to aclose() it. The default executor is
            # drained when the loop shuts down, so the connection is closed all the same.
            asyncio.get_running_loop().run_in_executor(None, close)

    def _watch_connection(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.Error as error:
            raise self._unavailable(error) from error

    def _data_version(self, conn: sqlite3.Connection, in_use: threading.Lock) -> int:
        """Changes only when another connection commits."""
        with in_use:
            try:
                return int(conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as error:
                raise self._unavailable(error) from error

    def _head_revision(self, conn: sqlite3.Connection, in_use: threading.Lock) -> int:
        """The newest revision (one row; runs on the loop like the version check)."""
        with in_use:
            try:
                return int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])
            except sqlite3.Error as error:
                raise self._unavailable(error) from error

    def _poll_events(
        self, conn: sqlite3.Connection, in_use: threading.Lock, after: int, node: str | None
    ) -> list[tuple[int, str, str, str | None, str | None]]:
        """Up to WATCH_BATCH events after `after`, bodies only for those touching `node`."""
        with in_use:
            try:
                conn.execute("BEGIN")
                try:
                    compacted = conn.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()[0]
                    if after + 1 < compacted:
                        raise WatchExpired(
                            f"revision {after} is older than the retained event log (starts at {compacted}); "
                            "list again and watch from the list's revision"
                        )
                    return conn.execute(
                        "SELECT revision, type, node, prev_node, "
                        "CASE WHEN :node IS NULL OR :node IN (node, prev_node) THEN body END "
                        "FROM events WHERE revision > :after ORDER BY revision LIMIT :limit",
                        {"node": node, "after": after, "limit": WATCH_BATCH},
                    ).fetchall()
                finally:
                    conn.execute("ROLLBACK")
            except sqlite3.Error as error:
                raise self._unavailable(error) from error

    # -- liveness -------------------------------------------------------------------------------

    async def renew_liveness(self, node: str, holder: str, ttl_seconds: float) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO liveness (node, holder, renewed_at, ttl_seconds) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET holder = excluded.holder, "
                "renewed_at = excluded.renewed_at, ttl_seconds = excluded.ttl_seconds",
                (node, holder, time.time(), ttl_seconds),
            )

        await self._write(work)

    async def release_liveness(self, node: str, holder: str) -> None:
        await self._write(
            lambda conn: conn.execute("DELETE FROM liveness WHERE node = ? AND holder = ?", (node, holder))
        )

    async def get_liveness(self, node: str) -> LivenessRecord | None:
        records = await self._live_records(node)
        return records[0] if records else None

    async def list_liveness(self) -> list[LivenessRecord]:
        return await self._live_records(None)

    async def _live_records(self, node: str | None) -> list[LivenessRecord]:
        def work(conn: sqlite3.Connection) -> list[LivenessRecord]:
            rows = conn.execute(
                "SELECT node, holder, renewed_at, ttl_seconds FROM liveness "
                "WHERE (:node IS NULL OR node = :node) AND renewed_at + ttl_seconds >= :now ORDER BY node",
                {"node": node, "now": time.time()},
            ).fetchall()
            return [
                LivenessRecord(row[0], row[1], datetime.fromtimestamp(row[2], UTC), float(row[3]))
                for row in rows
            ]

        return await self._read(work)

    async def close(self) -> None:
        def work() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(work)
