"""A second process for the embedded backend's multi-process tests, driven line by line.

python -m tests.datastore.embedded_worker writer DB NAME   # stdin: "read", "update <period>"
python -m tests.datastore.embedded_worker bump DB NAME COUNT  # after a stdin line: COUNT read-modify-writes
python -m tests.datastore.embedded_worker watch DB RV COUNT # prints COUNT events, then exits
python -m tests.datastore.embedded_worker lock DB           # holds a write lock until a stdin line
python -m tests.datastore.embedded_worker open DB NODE      # after a stdin line: opens DB, lists, renews
                                                            # NODE's liveness (its debug log on stdout)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.datastore.base import Conflict
from calico_nodestatus.datastore.embedded import EmbeddedDatastore


def say(line: str) -> None:
    print(line, flush=True)


async def writer(db: str, name: str) -> None:
    datastore = EmbeddedDatastore(db)
    held: CalicoNodeStatus | None = None
    for line in sys.stdin:
        command, *args = line.split()
        if command == "read":
            held = await datastore.get(name)
            say(held.metadata.resource_version or "")
        elif command == "update" and held is not None:
            spec = held.spec.model_copy(update={"update_period_seconds": int(args[0])})
            try:
                written = await datastore.update(held.model_copy(update={"spec": spec}))
            except Conflict:
                say("conflict")
            else:
                say(f"ok {written.metadata.resource_version}")
    await datastore.close()


async def bump(db: str, name: str, count: int) -> None:
    """Adds 1 to updatePeriodSeconds `count` times, re-reading after each conflict."""
    datastore = EmbeddedDatastore(db)
    await datastore.get(name)
    say("ready")
    sys.stdin.readline()  # start together with the other writers
    conflicts = 0
    for _ in range(count):
        while True:
            held = await datastore.get(name)
            spec = held.spec.model_copy(update={"update_period_seconds": held.spec.update_period_seconds + 1})
            try:
                await datastore.update(held.model_copy(update={"spec": spec}))
                break
            except Conflict:
                conflicts += 1
    say(f"done {conflicts}")
    await datastore.close()


async def watch(db: str, resource_version: str, count: int) -> None:
    datastore = EmbeddedDatastore(db)
    say("watching")
    seen = 0
    async for event in datastore.watch(resource_version):
        obj = event.object
        say(f"{event.type} {event.resource_version} {obj.name} {obj.spec.update_period_seconds}")
        seen += 1
        if seen == count:
            break
    await datastore.close()


async def open_new(db: str, node: str) -> None:
    """Opens the (new) file when told to, as one of several processes started together; the
    datastore's debug log (its busy retries) is printed with the replies. The busy timeout is long:
    the test decides when the file is free."""
    product_log = logging.getLogger("calico_nodestatus")
    product_log.setLevel(logging.DEBUG)
    product_log.addHandler(logging.StreamHandler(sys.stdout))
    say("ready")
    sys.stdin.readline()
    datastore = EmbeddedDatastore(db, busy_timeout=120)
    objects, _ = await datastore.list()
    await datastore.renew_liveness(node, "host/1", 30)
    say(f"ok {len(objects)}")
    await datastore.close()


def lock(db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    say("locked")
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()


def main(argv: list[str]) -> None:
    mode, db, *rest = argv
    if mode == "writer":
        asyncio.run(writer(db, rest[0]))
    elif mode == "bump":
        asyncio.run(bump(db, rest[0], int(rest[1])))
    elif mode == "watch":
        asyncio.run(watch(db, rest[0], int(rest[1])))
    elif mode == "lock":
        lock(db)
    elif mode == "open":
        asyncio.run(open_new(db, rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
