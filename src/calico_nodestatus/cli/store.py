"""From the global options to an open datastore, for any command that needs one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.datastore.base import Datastore, DatastoreError
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.factory import open_datastore

T = TypeVar("T")
DATASTORE_LOGGER = "calico_nodestatus.datastore"


def datastore_config(ctx: CliContext) -> DatastoreConfig:
    """The global options as datastore settings; options left unset fall back to the environment."""
    return DatastoreConfig.from_env(
        type=ctx.datastore_type,
        db_path=ctx.db_path,
        etcd_endpoints=ctx.etcd_endpoints,
        etcd_ca_cert_file=ctx.etcd_ca_cert_file,
        etcd_cert_file=ctx.etcd_cert_file,
        etcd_key_file=ctx.etcd_key_file,
        kubeconfig=ctx.kubeconfig,
    )


class _HeldRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _backend_logs_unless_failed() -> Iterator[None]:
    """Holds the backend's log records back until the operation ends. When it fails, its one error
    line says it all, so the retry/failover warnings leading up to it are dropped (unless the user
    asked for info/debug logs); when it succeeds they are shown (e.g. a failover that worked)."""
    logger = logging.getLogger(DATASTORE_LOGGER)
    held = _HeldRecords()
    logger.addHandler(held)
    logger.propagate = False
    failed = False
    try:
        yield
    except DatastoreError:
        failed = True
        raise
    finally:
        logger.removeHandler(held)
        logger.propagate = True
        if not failed or logger.getEffectiveLevel() < logging.WARNING:
            for record in held.records:
                if logger.parent is not None:
                    logger.parent.handle(record)


def run_with_datastore(ctx: CliContext, operation: Callable[[Datastore], Awaitable[T]]) -> T:
    """Opens the configured datastore, runs `operation` on it in a fresh event loop, closes it."""

    async def run() -> T:
        async with open_datastore(datastore_config(ctx)) as datastore:
            return await operation(datastore)

    with _backend_logs_unless_failed():
        return asyncio.run(run())
