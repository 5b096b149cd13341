"""Async client for BIRD's control socket (BIRD 1.6 and 2.x) and Calico's socket discovery.

One command at a time per connection. Replies are framed by BIRD's 4-digit codes: a reply ends
with its first line of the form `NNNN ` (code + space). Since the client never pipelines, that
line is always the last complete line received, so only the tail of each read is inspected.

`show route` replies are streamed and handled as they arrive, so memory stays bounded by a few
read buffers, not by the table. They are read on the event loop in 1 MiB reads, in blocks of
complete lines (`route_blocks`): a caller that only counts most of the table (the agent) can do
so on the bytes, which keeps up with BIRD, so no reader thread is needed to keep BIRD writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
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
# Explicit socket overrides from the environment (`lab exec` sets them for a lab node).
SOCKET_ENV_V4 = "CALICO_NODESTATUS_BIRD_SOCKET"
SOCKET_ENV_V6 = "CALICO_NODESTATUS_BIRD6_SOCKET"

DEFAULT_READ_TIMEOUT = 2.0  # seconds per read, as Calico
DEFAULT_DEADLINE = 30.0  # seconds per command, which Calico lacks
DEFAULT_READ_SIZE = 256 * 1024
# Streamed `show route` replies are read this much at a time: big reads mean few loop turns.
ROUTE_READ_SIZE = 1024 * 1024
MAX_LINE = 64 * 1024  # BIRD's own lines are far shorter; longer means garbage
MAX_REPLY = 16 * 1024 * 1024  # for replies held whole (everything but streamed routes)


def socket_candidates(family: int, override: str | None = None) -> tuple[str, ...]:
    """Socket paths to try for an IP family (4 or 6): the explicit override alone, or Calico's."""
    if override:
        return (override,)
    return CALICO_SOCKETS_V4 if family == 4 else CALICO_SOCKETS_V6


def _is_final_line(line: bytes) -> bool:
    """`NNNN ` (code + space) starts the last line of a reply; `NNNN-` and ` …` lines continue it."""
    return len(line) >= 5 and line[4:5] == b" " and line[:4].isdigit()  # bytes.isdigit: ASCII only


class _Framer:
    """Splits the byte stream of one reply into complete text lines and spots the final line."""

    __slots__ = ("_partial", "final")

    def __init__(self) -> None:
        self._partial = b""
        self.final: str | None = None

    def feed_block(self, data: bytes) -> bytes:
        """The complete lines in `data` (plus what was left over) as one block of bytes, each
        line ending in `\\n`, the final line excluded (it is kept in `final`)."""
        buf = self._partial + data if self._partial else data
        end = buf.rfind(b"\n") + 1
        self._partial = buf[end:]
        if len(self._partial) > MAX_LINE:
            raise BirdProtocolError(f"BIRD sent a line longer than {MAX_LINE} bytes")
        if not end:
            return b""
        last = buf.rfind(b"\n", 0, end - 1) + 1
        if _is_final_line(buf[last:end]):
            self.final = buf[last : end - 1].decode("utf-8", "replace")
            if self._partial:
                raise BirdProtocolError(f"BIRD sent data after the end of a reply: {self._partial[:80]!r}")
            return buf[:last]
        return buf if end == len(buf) else buf[:end]

    def feed(self, data: bytes) -> list[str]:
        """Complete lines in `data` (plus what was left over), the final line excluded."""
        return parse.block_lines(self.feed_block(data))


def _silence_error(path: str, timeout: float, command: str) -> BirdTimeout:
    return BirdTimeout(f"BIRD at {path} sent nothing for {timeout:.3g}s while answering {command!r}")


def _deadline_error(path: str, deadline: float, command: str) -> BirdTimeout:
    return BirdTimeout(f"BIRD at {path} did not finish {command!r} within {deadline}s")


def _closed_error(path: str, command: str) -> BirdProtocolError:
    return BirdProtocolError(f"BIRD at {path} closed the connection before the reply to {command!r} ended")


def _read_error(path: str, exc: OSError) -> BirdProtocolError:
    return BirdProtocolError(f"reading from BIRD socket {path} failed: {exc}")


class BirdClient:
    """A connection to one BIRD control socket. Use `await BirdClient.connect(paths)` (or
    `connect_any`), then the typed query methods, then `close()` (or `async with`)."""

    def __init__(
        self,
        sock: socket.socket,
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
        self._sock = sock  # non-blocking, read by the event loop
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
        loop = asyncio.get_running_loop()
        for path in candidates:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(read_timeout):
                    await loop.sock_connect(sock, path)
            except (OSError, TimeoutError) as exc:
                sock.close()
                failures.append((path, _describe(exc)))
                continue
            client = cls(sock, path, read_timeout=read_timeout, deadline=deadline, read_size=read_size)
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
        self._sock.close()

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
            async with contextlib.aclosing(self.route_blocks(command)) as blocks:
                async for block in blocks:
                    batch = parser.feed(parse.block_lines(block))
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

    def route_blocks(self, command: str = "show route") -> AsyncIterator[bytes]:
        """The reply's bytes in blocks of complete lines (final line excluded), read in
        ROUTE_READ_SIZE reads; errors as for `stream`."""
        return self._stream(command, ROUTE_READ_SIZE)

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
        async with contextlib.aclosing(self._stream(command, self.read_size)) as blocks:
            async for block in blocks:
                yield parse.block_lines(block)

    async def _stream(self, command: str, read_size: int) -> AsyncIterator[bytes]:
        if "\n" in command or len(command) > 1000:
            raise ValueError(f"BIRD command must be one line under 1000 characters, got {command!r}")
        if self._broken is not None:
            raise BirdProtocolError(f"connection to {self.path} is unusable after: {self._broken}")
        if self._busy:
            raise RuntimeError("BirdClient runs one command at a time")
        self._busy = True
        finished = False
        loop = asyncio.get_running_loop()
        try:
            try:
                await loop.sock_sendall(self._sock, command.encode() + b"\n")
            except OSError as exc:
                raise BirdProtocolError(f"unable to write to BIRD socket {self.path}: {exc}") from exc
            framer = _Framer()
            deadline = loop.time() + self.deadline
            while framer.final is None:
                block = framer.feed_block(await self._read(deadline, command, read_size))
                if block:
                    yield block
                    # A read of data already waiting does not suspend: give other tasks a turn.
                    await asyncio.sleep(0)
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

    async def _read(self, deadline: float, command: str, read_size: int | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        timeout = min(self.read_timeout, remaining)
        if timeout <= 0:
            raise _deadline_error(self.path, self.deadline, command)
        try:
            async with asyncio.timeout(timeout):
                data = await loop.sock_recv(self._sock, read_size or self.read_size)
        except TimeoutError:
            raise _silence_error(self.path, timeout, command) from None
        except OSError as exc:
            raise _read_error(self.path, exc) from exc
        if not data:
            raise _closed_error(self.path, command)
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
