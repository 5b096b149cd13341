"""From the global options to an open datastore, for any command that needs one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from calico_nodestatus.cli.context import CliContext
from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig, open_datastore

T = TypeVar("T")


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


def run_with_datastore(ctx: CliContext, operation: Callable[[Datastore], Awaitable[T]]) -> T:
    """Opens the configured datastore, runs `operation` on it in a fresh event loop, closes it."""

    async def run() -> T:
        async with open_datastore(datastore_config(ctx)) as datastore:
            return await operation(datastore)

    return asyncio.run(run())
