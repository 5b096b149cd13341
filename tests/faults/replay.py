"""A BIRD control socket that replays REAL transcripts (tests/fixtures/bird) with one fault injected.

The only fake in the reliability suite: a real BIRD cannot be made to hang mid-reply, cut a line
in half, send garbage or a 100 MB reply on demand. Everything it sends is a real transcript (or
real route lines repeated); only the fault is made up. `fault` may be changed between commands,
so the same server shows the client recovering once the fault is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bird"
CHUNK = 256 * 1024


class Fault(enum.StrEnum):
    NONE = "none"
    HANG = "hang"  # accept the command, never answer
    CUT = "cut"  # send half the reply, cut mid-line, close the connection
    GARBAGE = "garbage"  # real reply with a line replaced by undecodable/control bytes
    HUGE = "huge"  # a `show route` reply of `huge_bytes`, real route lines repeated
    HOSTILE = "hostile"  # real reply with terminal escapes in fields and a 60,000-char interface


def transcript(version: str, scenario: str, name: str) -> bytes:
    return (FIXTURES / version / scenario / f"{name}.txt").read_bytes()


def daemon_replies(version: str, scenario: str, prefix: str = "") -> dict[str, bytes]:
    """The replies of one real daemon by command (`prefix` is `bird6__` for BIRD 1.6's IPv6 one)."""
    commands = {
        "show status": "show_status",
        "show protocols": "show_protocols",
        "show protocols all": "show_protocols_all",
        "show route": "show_route",
        "show route count": "show_route_count",
    }
    return {command: transcript(version, scenario, prefix + name) for command, name in commands.items()}


def _route_body(reply: bytes) -> tuple[bytes, bytes, bytes]:
    """(first line, continuation lines, final line) of a real `show route` reply."""
    lines = reply.splitlines(keepends=True)
    first, final = lines[0], lines[-1]
    body = b"".join(lines[1:-1])
    return first, body, final


def huge_route_reply(reply: bytes, size: int) -> Iterator[bytes]:
    """A `show route` reply of at least `size` bytes, in chunks: the real reply's route lines repeated."""
    first, body, final = _route_body(reply)
    block = body * max(1, CHUNK // max(1, len(body)))
    yield first
    sent = len(first)
    while sent < size:
        yield block
        sent += len(block)
    yield final


def garbage_reply(reply: bytes) -> bytes:
    """The real reply with its second line replaced by undecodable and control bytes."""
    lines = reply.splitlines(keepends=True)
    at = min(1, len(lines) - 2)
    lines[at] = b" \x00\xff\xfe\x1b[31m\x07garbage\r\x7f\xc3\x28\n"
    return b"".join(lines)


ESCAPES = "\x1b[2J\x1b]0;owned\x07\x08\x7f"
LONG_FIELD = 60_000  # under the client's 64 KiB line limit, so it reaches the parser


def hostile_reply(reply: bytes) -> bytes:
    """The real reply with escapes glued to every interface name and the first one 60,000 chars."""
    text = reply.decode()
    first = text.index(" on eth0")
    text = text[:first] + " on eth0" + "x" * LONG_FIELD + text[first + len(" on eth0") :]
    return text.replace(" on eth0", " on eth0" + ESCAPES).encode()


@dataclass
class ReplayServer:
    path: Path
    greeting: bytes
    replies: dict[str, bytes]
    fault: Fault = Fault.NONE
    fault_on: frozenset[str] = frozenset({"show route"})  # the commands the fault applies to
    huge_bytes: int = 100 * 1024 * 1024
    commands: list[str] = field(default_factory=list)  # every command received, in order
    huge_sent: int = 0

    async def _answer(self, command: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Writes the reply; False when the connection must end (cut, hang)."""
        reply = self.replies.get(command, b"9001 syntax error\n")
        fault = self.fault if command in self.fault_on else Fault.NONE
        if fault is Fault.HANG:
            await reader.read()  # say nothing until the client gives up and closes
            return False
        if fault is Fault.CUT:
            half = reply[: len(reply) // 2]
            writer.write(half[: half.rfind(b"\n") + 6])  # a line cut a few bytes in
            await writer.drain()
            return False
        if fault is Fault.GARBAGE:
            reply = garbage_reply(reply)
        if fault is Fault.HOSTILE:
            reply = hostile_reply(reply)
        if fault is Fault.HUGE:
            for chunk in huge_route_reply(reply, self.huge_bytes):
                writer.write(chunk)
                self.huge_sent += len(chunk)
                await writer.drain()
            return True
        writer.write(reply)
        await writer.drain()
        return True

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.greeting)
            await writer.drain()
            while line := await reader.readline():
                command = line.decode().strip()
                self.commands.append(command)
                if not await self._answer(command, reader, writer):
                    break
        except (ConnectionError, BrokenPipeError):
            pass  # the client gave up mid-reply: what a real BIRD sees too
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def replaying(
    path: Path, version: str = "1.6.8", scenario: str = "mesh3", prefix: str = ""
) -> AsyncIterator[ReplayServer]:
    """A ReplayServer for one real daemon's transcripts, listening on `path` until the block ends."""
    greeting = transcript(version, scenario, prefix + "greeting")
    server = ReplayServer(path, greeting, daemon_replies(version, scenario, prefix))
    listener = await asyncio.start_unix_server(server.serve, str(path))
    try:
        yield server
    finally:
        listener.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(listener.wait_closed(), 1)
