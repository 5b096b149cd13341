"""BirdClient against real BIRD 1.6.8 and 2 daemons (a reconfiguration in the middle of a reply
included); a replaying socket server only for faults a real BIRD cannot produce on demand
(silence, a cut reply, garbage, an endless line)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from calico_nodestatus.bird import parse
from calico_nodestatus.bird.client import BirdClient, socket_candidates
from calico_nodestatus.bird.errors import (
    BirdCommandError,
    BirdParseError,
    BirdProtocolError,
    BirdReconfigurationInterrupt,
    BirdTimeout,
    BirdUnavailable,
)
from calico_nodestatus.bird.types import RouteKind
from tests.bird.daemons import BIRDC2, Daemon, available, bird_daemon, static_prefixes
from tests.bird.transcripts import FIXTURES
from tests.faults.relay import pausing_relay

ROUTES = 20_000  # enough for many 256 KiB reads


@pytest.fixture(scope="module", params=["1.6", "2"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if not available(request.param):
        pytest.skip(f"BIRD {request.param} is not installed or not root")
    family = 4 if request.param == "1.6" else 0
    with bird_daemon(tmp_path_factory.mktemp("bird"), request.param, family, static_prefixes(ROUTES, 4)) as d:
        yield d


async def test_greeting_status_protocols(daemon: Daemon) -> None:
    async with await BirdClient.connect(daemon.socket) as client:
        assert client.major_version == (1 if daemon.version == "1.6" else 2)
        assert client.greeting.endswith("ready.")
        status = await client.show_status()
        assert status.router_id == "198.18.0.1" and status.is_up
        names = [p.name for p in await client.show_protocols()]
        assert "device1" in names and "static1" in names
        details = await client.show_protocols_all()
        assert {d.protocol.name for d in details} == set(names)
        static = next(d for d in details if d.protocol.name == "static1")
        assert static.routes is not None and static.routes.imported == ROUTES


async def test_streamed_routes_are_the_configured_table(daemon: Daemon) -> None:
    async with await BirdClient.connect(daemon.socket, read_size=64 * 1024) as client:
        batches = [batch async for batch in client.routes()]
        routes = [r for batch in batches for r in batch]
        assert len(batches) > 1  # parsed while streaming, not after buffering the whole reply
        assert sorted(r.prefix for r in routes) == sorted(daemon.static_routes)
        assert {(r.kind, r.protocol, r.primary) for r in routes} == {(RouteKind.BLACKHOLE, "static1", True)}
        count = await client.show_route_count()  # the connection stays usable afterwards
        assert (count.total or count.tables[0]).routes == ROUTES


async def test_error_reply_keeps_connection_usable(daemon: Daemon) -> None:
    async with await BirdClient.connect(daemon.socket) as client:
        with pytest.raises(BirdCommandError) as error:
            await client.command("show foo")
        assert error.value.code == 9001 and "syntax error" in error.value.text
        with pytest.raises(BirdCommandError) as error:
            await client.command('show protocols all "NoSuchProto"')
        assert (error.value.code, error.value.text) == (8003, "No protocols match")
        assert (await client.show_status()).is_up


async def test_unavailable_names_every_path_tried(tmp_path: Path) -> None:
    missing, refused = tmp_path / "calico-bird.ctl", tmp_path / "bird.ctl"
    refused.write_text("")  # exists but is no socket
    with pytest.raises(BirdUnavailable) as error:
        await BirdClient.connect([str(missing), str(refused)])
    assert error.value.path == str(missing)
    assert [p for p, _ in error.value.failures] == [str(missing), str(refused)]
    assert "No such file or directory" in str(error.value) and str(refused) in str(error.value)


def test_socket_discovery() -> None:
    assert socket_candidates(4) == ("/var/run/calico/bird.ctl", "/var/run/bird/bird.ctl")
    assert socket_candidates(6) == ("/var/run/calico/bird6.ctl", "/var/run/bird/bird6.ctl")
    assert socket_candidates(6, "/tmp/x.ctl") == ("/tmp/x.ctl",)


# -- faults, replayed from real transcripts ------------------------------------------------------

GREETING = (FIXTURES / "1.6.8" / "mesh3" / "greeting.txt").read_bytes()
ROUTE_REPLY = (FIXTURES / "1.6.8" / "peertypes" / "show_route.txt").read_bytes()


@contextlib.asynccontextmanager
async def replaying(tmp_path: Path, reply: bytes, *, close_after: bool = False) -> AsyncIterator[str]:
    """A socket that greets like BIRD and answers the first command with `reply`."""
    path = str(tmp_path / "fake.ctl")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        await reader.readline()
        writer.write(reply)
        await writer.drain()
        if close_after:
            writer.close()
        else:
            await reader.read()  # hold the connection open until the client leaves

    server = await asyncio.start_unix_server(serve, path)
    try:
        yield path
    finally:
        server.close()


async def test_silence_times_out(tmp_path: Path) -> None:
    async with replaying(tmp_path, ROUTE_REPLY[:300]) as path:
        client = await BirdClient.connect(path, read_timeout=0.2)
        with pytest.raises(BirdTimeout):
            async for _ in client.routes():
                pass
        with pytest.raises(BirdProtocolError):  # unusable once the stream position is lost
            await client.show_status()
        await client.close()


async def test_cut_reply(tmp_path: Path) -> None:
    async with (
        replaying(tmp_path, ROUTE_REPLY[:-20], close_after=True) as path,
        await BirdClient.connect(path) as client,
    ):
        with pytest.raises(BirdProtocolError, match="closed the connection"):
            async for _ in client.routes():
                pass


async def test_garbage_is_a_parse_error(tmp_path: Path) -> None:
    async with (
        replaying(tmp_path, ROUTE_REPLY.replace(b" 198.18.0.0/24 ", b"\x00\xff garbage ", 1)) as path,
        await BirdClient.connect(path) as client,
    ):
        with pytest.raises(BirdParseError):
            async for _ in client.routes():
                pass


async def test_endless_line(tmp_path: Path) -> None:
    async with (
        replaying(tmp_path, b"1007-" + b"x" * 200_000) as path,
        await BirdClient.connect(path) as client,
    ):
        with pytest.raises(BirdProtocolError, match="longer than"):
            await client.command("show route")


@pytest.fixture(scope="module")
def bird2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """BIRD 2 (BIRD 1.6.8 finishes a reply across a reconfiguration, BIRD 2 ends it with `8004
    Stopped due to reconfiguration`), its routes on an interface: each is printed with a next-hop
    line, so the route read last before the interruption still waits for more of them."""
    if not available("2"):
        pytest.skip("BIRD 2 is not installed or not root")
    prefixes = static_prefixes(ROUTES, 4)
    with bird_daemon(tmp_path_factory.mktemp("bird2"), "2", 0, prefixes, target='via "lo"') as d:
        yield d


async def test_reconfiguration_interrupt_keeps_routes_read(bird2: Daemon, tmp_path: Path) -> None:
    """The real daemon is reconfigured while its `show route` reply is paused in the relay."""

    def configure() -> None:
        reply = subprocess.run(
            [str(BIRDC2), "-s", bird2.socket, "configure"], capture_output=True, text=True, check=True
        )
        assert "Reconfigured" in reply.stdout, reply.stdout

    seen = []
    async with (
        pausing_relay(tmp_path / "bird.ctl", Path(bird2.socket), configure) as relay,
        await BirdClient.connect(str(relay.path)) as client,
    ):
        with pytest.raises(BirdReconfigurationInterrupt) as error:
            async for batch in client.routes():
                seen += batch
    assert relay.fired == 1
    greeting, *reply = parse.reply_lines(bytes(relay.relayed))
    assert greeting.startswith("0001 BIRD 2.") and reply[-1] == "8004 Stopped due to reconfiguration"
    assert (error.value.code, error.value.text) == (8004, "Stopped due to reconfiguration")
    # Every route BIRD sent before the interruption is kept, the last one included.
    assert seen == parse.parse_routes([*reply[:-1], "0000 "])
    assert 0 < len(seen) < ROUTES and {r.prefix for r in seen} <= set(bird2.static_routes)


async def test_abandoned_route_stream_stops_its_reader_thread(daemon: Daemon) -> None:
    threads = threading.active_count()
    async with await BirdClient.connect(daemon.socket) as client:
        async with contextlib.aclosing(client.routes()) as batches:
            async for _ in batches:
                break  # leave mid-reply: the rest of it stays unread
        assert threading.active_count() == threads  # the reader thread is gone
        with pytest.raises(BirdProtocolError, match="not read to its end"):
            await client.show_status()
