"""A pass-through between a client and a REAL BIRD control socket that pauses a `show route` reply
after its first bytes and runs an action there (kill BIRD, `birdc configure`), then relays the rest.

Nothing is made up: every byte is the real daemon's. The relay only makes the moment of the fault
deterministic — a real collection reads a 20,000-route table in well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

PAUSE_AFTER_BYTES = 64 * 1024


@dataclass
class PausingRelay:
    path: Path
    target: Path
    action: Callable[[], None]  # blocking (runs in a thread while the reply is paused)
    times: int = 1  # how many `show route` replies get the action (may be changed while serving)
    fired: int = 0
    relayed: bytearray = field(default_factory=bytearray)  # every byte the daemon sent, in order
    show_routes: int = 0  # `show route` commands the client sent (a retry counts again)
    interrupted: int = 0  # replies BIRD ended with `8004` (stopped due to reconfiguration)

    async def _pump_replies(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, commands: list[str]
    ) -> None:
        relayed, answered = 0, 0  # bytes of the current reply; commands whose reply began
        tail = b"\n"  # the end of the bytes before: a reply code may span two reads
        try:
            while data := await source.read(16 * 1024):
                if len(commands) != answered:
                    relayed, answered = 0, len(commands)
                relayed += len(data)
                self.relayed += data
                self.interrupted += (tail + data).count(b"\n8004 ")
                tail = data[-5:]
                sink.write(data)
                await sink.drain()
                due = commands and commands[-1] == "show route" and relayed >= PAUSE_AFTER_BYTES
                if due and self.fired < self.times:
                    self.fired += 1
                    relayed = -(2**62)  # once per reply
                    await asyncio.to_thread(self.action)
        finally:
            sink.close()  # BIRD went away: so does the client's connection, as with a real socket

    async def serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        commands: list[str] = []
        try:
            bird_reader, bird_writer = await asyncio.open_unix_connection(str(self.target))
        except OSError:
            client_writer.close()
            return
        pump = asyncio.create_task(self._pump_replies(bird_reader, client_writer, commands))
        try:
            while line := await client_reader.readline():
                commands.append(line.decode().strip())
                self.show_routes += commands[-1] == "show route"
                bird_writer.write(line)
                await bird_writer.drain()
            pump.cancel()
        except (ConnectionError, BrokenPipeError):
            pump.cancel()
        finally:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, BrokenPipeError):
                await pump
            bird_writer.close()
            client_writer.close()


@contextlib.asynccontextmanager
async def pausing_relay(
    path: Path, target: Path, action: Callable[[], None], times: int = 1
) -> AsyncIterator[PausingRelay]:
    relay = PausingRelay(path, target, action, times)
    listener = await asyncio.start_unix_server(relay.serve, str(path))
    try:
        yield relay
    finally:
        listener.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.wait_closed(), 1)
