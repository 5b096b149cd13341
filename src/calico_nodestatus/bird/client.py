"""Async client for BIRD's control socket (BIRD 1.6 and 2.x) and Calico's socket discovery.

One command at a time per connection. Replies are framed by BIRD's 4-digit codes: a reply ends
with its first line of the form `NNNN ` (code + space). Since the client never pipelines, that
line is always the last complete line received, so only the tail of each read is inspected.
`show route` replies are streamed: read in large chunks, split into complete lines and handed to
the parser as they arrive, so memory stays bounded by the chunk size, not the table size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from calico_nodestatus.bird import parse
from calico_nodestatus.bird.errors import (
    BirdError,
    BirdProtocolError,
    BirdReconfigurationInterrupt,
    BirdTimeout,
    BirdUnavailable,
    command_error,
)
from calico_nodestatus.bird.types import DaemonStatus, Protocol, ProtocolDetails, Route, RouteCount

# Calico's sockets: the calico-node container's first, then a host-installed BIRD's.
CALICO_SOCKETS_V4 = ("/var/run/calico/bird.ctl", "/var/run/bird/bird.ctl")
CALICO_SOCKETS_V6 = ("/var/run/calico/bird6.ctl", "/var/run/bird/bird6.ctl")

DEFAULT_READ_TIMEOUT = 2.0  # seconds per read, as Calico
DEFAULT_DEADLINE = 30.0  # seconds per command, which Calico lacks
DEFAULT_READ_SIZE = 256 * 1024
MAX_LINE = 64 * 1024  # BIRD's own lines are far shorter; longer means garbage
MAX_REPLY = 16 * 1024 * 1024  # for replies held whole (everything but streamed routes)


def socket_candidates(family: int, override: str | None = None) -> tuple[str, ...]:
    """Socket paths to try for an IP family (4 or 6): the explicit override alone, or Calico's."""
    if override:
        return (override,)
    return CALICO_SOCKETS_V4 if family == 4 else CALICO_SOCKETS_V6


class _Framer:
    """Splits the byte stream of one reply into complete text lines and spots the final line."""

    __slots__ = ("_partial", "final")

    def __init__(self) -> None:
        self._partial = b""
        self.final: str | None = None

    def feed(self, data: bytes) -> list[str]:
        """Complete lines in `data` (plus what was left over), the final line excluded."""
        buf = self._partial + data if self._partial else data
        end = buf.rfind(b"\n") + 1
        self._partial = buf[end:]
        if len(self._partial) > MAX_LINE:
            raise BirdProtocolError(f"BIRD sent a line longer than {MAX_LINE} bytes")
        if not end:
            return []
        lines = buf[:end].decode("utf-8", "replace").split("\n")
        lines.pop()  # the empty string after the last "\n"
        last = lines[-1]
        if len(last) >= 5 and last[4] == " " and last[:4].isdigit() and last[:4].isascii():
            self.final = lines.pop()
            if self._partial:
                raise BirdProtocolError(f"BIRD sent data after the end of a reply: {self._partial[:80]!r}")
        return lines


class BirdClient:
    """A connection to one BIRD control socket. Use `await BirdClient.connect(paths)` (or
    `connect_any`), then the typed query methods, then `close()` (or `async with`)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        read_size: int = DEFAULT_READ_SIZE,
    ) -> None:
        self.path = path
        self.greeting = ""
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.read_size = read_size
        self._reader = reader
        self._writer = writer
        self._busy = False
        self._broken: BirdError | None = None
        self.last_final = ""  # final line of the last completed reply, e.g. "0000 "

    @classmethod
    async def connect(
        cls,
        paths: str | Sequence[str],
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        read_size: int = DEFAULT_READ_SIZE,
    ) -> BirdClient:
        """Connect to the first reachable socket of `paths` and read the greeting.
        Raises BirdUnavailable listing every path tried with its error."""
        candidates = (paths,) if isinstance(paths, str) else tuple(paths)
        failures: list[tuple[str, str]] = []
        for path in candidates:
            try:
                async with asyncio.timeout(read_timeout):
                    reader, writer = await asyncio.open_unix_connection(path, limit=2 * read_size)
            except (OSError, TimeoutError) as exc:
                failures.append((path, _describe(exc)))
                continue
            client = cls(
                reader, writer, path, read_timeout=read_timeout, deadline=deadline, read_size=read_size
            )
            try:
                client.greeting = await client._read_greeting()
            except BirdError as exc:
                await client.close()
                failures.append((path, str(exc)))
                continue
            return client
        raise BirdUnavailable(tuple(failures))

    @property
    def major_version(self) -> int | None:
        """BIRD's major version from the greeting (`BIRD 2.0.12 ready.` → 2; Calico's fork
        `BIRD v0.3.3+birdv1.6.8 ready.` → 1)."""
        words = self.greeting.split()
        if len(words) < 2:
            return None
        version = words[1].rsplit("bird", 1)[-1].lstrip("v")
        head = version.split(".", 1)[0]
        return int(head) if head.isascii() and head.isdecimal() else None

    async def __aenter__(self) -> BirdClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        # The peer may already have reset the connection; nothing is left to release then.
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # -- typed queries ---------------------------------------------------------------------------

    async def show_status(self) -> DaemonStatus:
        return parse.parse_status(await self.command("show status"))

    async def show_protocols(self) -> list[Protocol]:
        return parse.parse_protocols(await self.command("show protocols"))

    async def show_protocols_all(self) -> list[ProtocolDetails]:
        """Every protocol with details in ONE query (upstream asks once per peer)."""
        return parse.parse_protocols_all(await self.command("show protocols all"))

    async def show_route_count(self) -> RouteCount:
        return parse.parse_route_count(await self.command("show route count"))

    async def routes(self, command: str = "show route") -> AsyncIterator[list[Route]]:
        """Routes in batches as the reply streams in. A `8004 Stopped due to reconfiguration`
        raises BirdReconfigurationInterrupt after every batch read before it was yielded."""
        parser = parse.RouteParser()
        try:
            async for lines in self.stream(command):
                batch = parser.feed(lines)
                if batch:
                    yield batch
        except BirdReconfigurationInterrupt:
            # The route read last is complete too: no more next-hop lines can follow it.
            tail = parser.finish()
            if tail:
                yield tail
            raise
        tail = parser.finish()
        if tail:
            yield tail

    # -- raw protocol ----------------------------------------------------------------------------

    async def command(self, command: str) -> list[str]:
        """Send one command and return its whole reply as raw lines, final line included.
        8xxx/9xxx replies raise BirdCommandError (8004: BirdReconfigurationInterrupt)."""
        lines: list[str] = []
        size = 0
        async for chunk in self.stream(command):
            lines.extend(chunk)
            size += sum(len(line) for line in chunk)
            if size > MAX_REPLY:
                self._broken = BirdProtocolError(f"reply to {command!r} exceeds {MAX_REPLY} bytes")
                raise self._broken
        lines.append(self.last_final)
        return lines

    async def stream(self, command: str) -> AsyncIterator[list[str]]:
        """Send one command; yield the reply's lines (final line excluded) chunk by chunk."""
        if "\n" in command or len(command) > 1000:
            raise ValueError(f"BIRD command must be one line under 1000 characters, got {command!r}")
        if self._broken is not None:
            raise BirdProtocolError(f"connection to {self.path} is unusable after: {self._broken}")
        if self._busy:
            raise RuntimeError("BirdClient runs one command at a time")
        self._busy = True
        finished = False
        try:
            try:
                self._writer.write(command.encode() + b"\n")
                await self._writer.drain()
            except OSError as exc:
                raise BirdProtocolError(f"unable to write to BIRD socket {self.path}: {exc}") from exc
            framer = _Framer()
            deadline = asyncio.get_running_loop().time() + self.deadline
            while framer.final is None:
                lines = framer.feed(await self._read(deadline, command))
                if lines:
                    yield lines
            final = framer.final
            finished = True
            self.last_final = final
            code = int(final[:4])
            if code >= 8000:
                raise command_error(code, final[5:].strip(), command)
        except (BirdProtocolError, BirdTimeout) as exc:
            self._broken = exc  # the stream position is unknown: no further command can be framed
            raise
        finally:
            self._busy = False
            if not finished and self._broken is None:
                # Abandoned mid-reply: the rest of it is still in the socket.
                self._broken = BirdProtocolError(f"reply to {command!r} was not read to its end")

    async def _read(self, deadline: float, command: str) -> bytes:
        remaining = deadline - asyncio.get_running_loop().time()
        timeout = min(self.read_timeout, remaining)
        if timeout <= 0:
            raise BirdTimeout(f"BIRD at {self.path} did not finish {command!r} within {self.deadline}s")
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(self.read_size)
        except TimeoutError:
            raise BirdTimeout(
                f"BIRD at {self.path} sent nothing for {timeout:.3g}s while answering {command!r}"
            ) from None
        except OSError as exc:
            raise BirdProtocolError(f"reading from BIRD socket {self.path} failed: {exc}") from exc
        if not data:
            raise BirdProtocolError(
                f"BIRD at {self.path} closed the connection before the reply to {command!r} ended"
            )
        return data

    async def _read_greeting(self) -> str:
        framer = _Framer()
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        lines: list[str] = []
        while framer.final is None:
            lines.extend(framer.feed(await self._read(deadline, "<greeting>")))
        final = framer.final
        if lines or not final.startswith("0001 "):
            raise BirdProtocolError(f"unexpected greeting from {self.path}: {(lines or [final])[0]!r}")
        return final[5:].strip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
