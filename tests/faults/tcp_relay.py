"""A TCP pass-through to a real server (etcd) that can cut every connection and refuse new ones,
then come back on the same port: a network partition between the agent and its datastore while
the server itself keeps running (so a test can change data and compact behind the agent's back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class TcpRelay:
    port: int
    target_port: int
    host: str = "127.0.0.1"
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)

    async def cut(self) -> None:
        """Drops every live connection (the watch stream included) and refuses new ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )
        self._writers.difference_update((client_writer, server_writer))


@contextlib.asynccontextmanager
async def tcp_relay(port: int, target_port: int) -> AsyncIterator[TcpRelay]:
    relay = TcpRelay(port, target_port)
    await relay.restore()
    try:
        yield relay
    finally:
        await relay.cut()
