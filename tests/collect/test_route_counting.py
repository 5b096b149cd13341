"""Routes beyond what the collector keeps are counted on the reply's bytes (`count_route_block`)
instead of parsed: the counts must equal those of the full parse, exactly, however the reply is
cut into reads, and the routes kept must be the same ones."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from calico_nodestatus.bird import parse
from calico_nodestatus.bird.client import _Framer
from calico_nodestatus.collect.sections import RouteAccumulator
from tests.bird.transcripts import FIXTURES

BIG = {version: FIXTURES / version / "big" / "show_route_v4_10k.txt.gz" for version in ("1.6.8", "2.0.12")}


def _reply(version: str) -> bytes:
    return gzip.decompress(BIG[version].read_bytes())


def _mixed_reply(routes: int = 3000) -> bytes:
    """A BIRD 2 reply with every shape the counter has to get right, from one protocol: marked
    `*`, `!` and unmarked routes, blank-prefix lines (more routes for a prefix), ECMP next hops,
    dev and blackhole routes; a second protocol in a stretch of the middle; two tables."""
    rng = random.Random(7)
    out = ["1007-Table master4:"]
    for table, family in (("master4", 4), ("master6", 6)):
        if table == "master6":
            out += [" ", " Table master6:"]
        for n in range(routes):
            prefix = f"198.18.{n // 256}.{n % 256}/32" if family == 4 else f"2001:db8:1::{n:x}/128"
            gateway = "198.18.0.2" if family == 4 else "2001:db8::2"
            proto = "Global_198_18_0_9" if routes // 3 < n < routes // 3 + 40 else "Mesh_198_18_0_2"
            mark = rng.choice(["*", "*", "*", "!", ""])
            marked = f"{mark} " if mark else ""
            shape = rng.random()
            if shape < 0.7:
                out += [
                    f" {prefix:<20} unicast [{proto} 00:32:08.892] {marked}(100) [i]",
                    f" \tvia {gateway} on eth0",
                ]
            elif shape < 0.8:  # ECMP
                out += [
                    f" {prefix:<20} unicast [{proto} 00:32:08.892] {marked}(100) [i]",
                    f" \tvia {gateway} on eth0 weight 1",
                    f" \tvia {gateway} on eth1 weight 1",
                ]
            elif shape < 0.9:  # the same prefix twice
                out += [
                    f" {prefix:<20} unicast [{proto} 00:32:08.892] * (100) [i]",
                    f" \tvia {gateway} on eth0",
                    f" {'':<20} unicast [{proto} 00:32:09.001] (100) [AS65001i]",
                    f" \tvia {gateway} on eth1",
                ]
            elif shape < 0.95:
                out += [f" {prefix:<20} blackhole [{proto} 00:32:07.221] {marked}(200)"]
            else:
                out += [f" {prefix:<20} unicast [{proto} 00:32:07.221] {marked}(240)", " \tdev eth0"]
    out.append("0000 ")
    return ("\n".join(out) + "\n").encode()


def _blocks(reply: bytes, rng: random.Random, largest: int) -> list[bytes]:
    """The reply as the client hands it over: reads of random sizes, framed into line blocks."""
    framer = _Framer()
    blocks = []
    position = 0
    while framer.final is None:
        size = rng.randint(1, largest)
        block = framer.feed_block(reply[position : position + size])
        position += size
        if block:
            blocks.append(block)
    assert framer.final == "0000 "
    return blocks


def _reference(reply: bytes, limit: int) -> RouteAccumulator:
    accumulator = RouteAccumulator(limit, limit_per_type=True)
    accumulator.add(parse.parse_routes(parse.reply_lines(reply)))
    return accumulator


def _read(blocks: list[bytes], limit: int) -> RouteAccumulator:
    accumulator = RouteAccumulator(limit, limit_per_type=True)
    for block in blocks:
        accumulator.read(block)
    accumulator.finish()
    return accumulator


def _same(counted: RouteAccumulator, parsed: RouteAccumulator) -> None:
    for ipv6 in (False, True):
        assert counted.total(ipv6) == parsed.total(ipv6)
        assert counted.tallies(ipv6) == parsed.tallies(ipv6)
        assert counted.routes(ipv6) == parsed.routes(ipv6)
    assert counted.unknown_protocols() == parsed.unknown_protocols()


@pytest.mark.parametrize("version", ["1.6.8", "2.0.12"])
@pytest.mark.parametrize("seed", range(6))
def test_counts_of_a_real_table_equal_the_full_parse(version: str, seed: int) -> None:
    reply = _reply(version)
    rng = random.Random(seed)
    limit = rng.choice([0, 1, 50, 700, 20_000])
    largest = rng.choice([200, 5_000, 64 * 1024, 1024 * 1024])
    _same(_read(_blocks(reply, rng, largest), limit), _reference(reply, limit))


@pytest.mark.parametrize("seed", range(12))
def test_counts_of_every_route_shape_equal_the_full_parse(seed: int) -> None:
    reply = _mixed_reply()
    rng = random.Random(seed)
    limit = rng.choice([0, 3, 100, 1_000, 5_000])
    largest = rng.choice([300, 4_000, 64 * 1024])
    _same(_read(_blocks(reply, rng, largest), limit), _reference(reply, limit))


TRANSCRIPTS = sorted(
    path
    for path in FIXTURES.glob("*/*/*show_route*.txt")
    if "show_route_count" not in path.name and path.read_bytes().rstrip().endswith(b"0000")
)


def _name(path: Path) -> str:
    return f"{path.parts[-3]}/{path.parts[-2]}/{path.stem}"


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=_name)
@pytest.mark.parametrize("limit", [0, 1, 4])
def test_counts_of_every_transcript_equal_the_full_parse(path: Path, limit: int) -> None:
    """Every real `show route` reply in the corpus (`all`, `primary`, per table, per protocol),
    read in small pieces so that some blocks are counted."""
    reply = path.read_bytes()
    for seed in range(3):
        _same(_read(_blocks(reply, random.Random(seed), 160), limit), _reference(reply, limit))


def test_routes_beyond_the_limit_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of counting: with 50 routes of room, nearly all of the 10,000-route table is
    counted without being split into lines or parsed."""
    parsed_lines = 0
    feed = parse.RouteParser.feed

    def counting_feed(self: parse.RouteParser, lines: list[str]) -> list[parse.Route]:
        nonlocal parsed_lines
        parsed_lines += len(lines)
        return feed(self, lines)

    monkeypatch.setattr(parse.RouteParser, "feed", counting_feed)
    reply = _reply("2.0.12")
    accumulator = _read(_blocks(reply, random.Random(1), 64 * 1024), 50)
    assert accumulator.total(False) == 10_003
    assert parsed_lines < reply.count(b"\n") // 4  # the first read, the last table


def test_a_block_is_counted_only_when_every_line_is_understood() -> None:
    hop = b" \tvia 198.18.0.2 on eth0\n"
    route = b" 198.18.1.0/24        unicast [Mesh_198_18_0_2 00:32:08.892] * (100) [i]\n" + hop
    rib = b" 198.18.2.0/24        unicast [Mesh_198_18_0_2 00:32:08.892] (100) [i]\n" + hop
    failed = b" 198.18.3.0/24        unicast [Mesh_198_18_0_2 00:32:08.892] ! (100) [i]\n" + hop
    assert parse.count_route_block(route * 3 + rib + failed) == parse.BlockCount("Mesh_198_18_0_2", 3, 1, 1)
    assert parse.count_route_block(hop + route) == parse.BlockCount("Mesh_198_18_0_2", 1, 0, 0)
    other = route.replace(b"Mesh_198_18_0_2", b"Mesh_198_18_0_3")
    for block in (
        route + other,  # two protocols
        route + b" \n Table master6:\n" + route,  # a table header
        b"1007-" + route[1:],  # a reply code
        route + b" garbage\n",  # a line that is no route
        route + b"1008-\tType: BGP univ\n",  # attribute lines
    ):
        assert parse.count_route_block(block) is None, block
