"""Bad input from BIRD: byte-level mutations of the whole corpus of real transcripts, and hostile
field contents through the agent into a real datastore.

tests/bird/test_parse_properties.py already fuzzes six seed replies line by line; this adds the
byte level (bit flips, truncation at any byte, duplicated lines, control characters) over EVERY
parsed transcript, for the whole-reply parsers and the streamed route parser with random chunk
boundaries. Budget: 3,000 + 1,500 examples here (about 6,000 with the BIRD suite's)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_nodestatus.agent.budget import ROUTES_OMITTED_ANNOTATION, serialised_size
from calico_nodestatus.agent.collection import bird_collector
from calico_nodestatus.bird import parse
from calico_nodestatus.bird.errors import BirdParseError
from calico_nodestatus.collect.sections import MAX_TEXT_CHARS
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from tests.bird.transcripts import all_transcripts, parser_for
from tests.faults.replay import Fault, ReplayServer, huge_route_reply, transcript
from tests.plugins.agent import node_status, wait_for
from tests.plugins.hypothesis_profiles import examples
from tests.reliability.conftest import NODE, running_agent

SEEDS: list[tuple[Path, Callable[[list[str]], Any]]] = [
    (path, parser)
    for path in all_transcripts()
    if (parser := parser_for(path)) is not None and path.stat().st_size < 64 * 1024
]
CORPUS: list[tuple[Callable[[list[str]], Any], bytes]] = [
    (parser, path.read_bytes()) for path, parser in SEEDS
]
# Every route `via ... on eth0` in the mesh3 transcripts (bird and bird6): the ones made hostile.
HOSTILE_DESTINATIONS = {"198.19.0.64/26", "198.19.0.128/26", "2001:db8:1::80/122", "2001:db8:1::40/122"}
ROUTE_REPLIES = [data for parser, data in CORPUS if parser is parse.parse_routes]
CONTROL = st.sampled_from([b"\x00", b"\x07", b"\x1b[2J", b"\r", b"\x7f", b"\xff", b"\xc3(", b"\t", b"\x0b"])


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """A real reply with 1-4 byte-level faults."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "duplicate", "control", "drop_newline"]))
        at = draw(st.integers(0, max(0, len(buf) - 1)))
        if action == "flip" and buf:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del buf[at:]
        elif action == "duplicate":
            start = buf.rfind(b"\n", 0, at) + 1
            end = buf.find(b"\n", at)
            end = len(buf) if end < 0 else end + 1
            buf[start:start] = buf[start:end]
        elif action == "control":
            buf[at:at] = draw(CONTROL)
        elif buf and buf[at : at + 1] == b"\n":
            del buf[at]
    return bytes(buf)


@st.composite
def mutated_reply(draw: st.DrawFn) -> tuple[Callable[[list[str]], Any], bytes]:
    parser, data = draw(st.sampled_from(CORPUS))
    return parser, draw(mutated_bytes(data))


def test_corpus_is_real_and_parses() -> None:
    """The seeds are real and read as BIRD meant them, each by the parser meant for it: every reply
    of every command parses to something, and BIRD's real error replies are refused as such."""
    assert len(CORPUS) > 100
    assert {parser.__name__ for parser, _ in CORPUS} == {
        "parse_status",
        "parse_protocols",
        "parse_protocols_all",
        "parse_routes",
        "parse_route_count",
    }
    refused = 0
    for path, parser in SEEDS:
        lines = parse.reply_lines(path.read_bytes())
        if lines[-1][:1] in ("8", "9"):  # BIRD's own error replies (8xxx/9xxx): refused, naming them
            with pytest.raises(BirdParseError, match=lines[-1][:4]):
                parser(lines)
            refused += 1
        else:
            assert parser(lines), f"{path} parsed to nothing by {parser.__name__}"
    assert 0 < refused < len(SEEDS) // 4


@pytest.mark.fuzz
@settings(max_examples=examples(3000))
@given(mutated_reply())
def test_mutated_corpus_raises_only_parse_errors(case: tuple[Callable[[list[str]], Any], bytes]) -> None:
    parser, data = case
    with contextlib.suppress(BirdParseError):
        parser(parse.reply_lines(data))


@pytest.mark.fuzz
@settings(max_examples=examples(1500))
@given(st.data())
def test_mutated_routes_streamed_in_random_chunks(data: st.DataObject) -> None:
    """The streamed parser sees the same mutated bytes split at arbitrary line boundaries."""
    reply = parse.reply_lines(data.draw(mutated_bytes(data.draw(st.sampled_from(ROUTE_REPLIES)))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(reply)), max_size=6)))
    parser = parse.RouteParser()
    with contextlib.suppress(BirdParseError):
        for start, end in zip([0, *cuts], [*cuts, len(reply)], strict=True):
            parser.feed(reply[start:end])
        parser.finish()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


@pytest.mark.parametrize("budget", [1024 * 1024, 8 * 1024])
async def test_hostile_fields_never_reach_the_datastore(
    replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path, budget: int
) -> None:
    """Terminal escapes and a 60,000-char interface name in BIRD's real `show route` reply: the
    real agent writes a sanitised object to a real embedded datastore, within the size budget."""
    bird, bird6 = replayed_bird
    async with EmbeddedDatastore(tmp_path / "db.sqlite") as store:
        bird.fault = bird6.fault = Fault.HOSTILE
        collector = bird_collector(str(bird.path), str(bird6.path), budget)
        async with running_agent(store, collector, size_budget_bytes=budget):
            await store.create(node_status("hostile", NODE, ["Agent", "BGP", "Routes"], 60))

            async def filled() -> Any:
                obj = await store.get("hostile")
                return obj if obj.status.routes.routes_v4 else None

            obj = await wait_for(filled, 10, "status written")
    wire = obj.to_wire()
    texts = _strings(wire["status"])
    assert all(text.isprintable() and len(text) <= MAX_TEXT_CHARS for text in texts)
    # The routes the reply made hostile (escapes glued to `eth0`, the first also 60,000 chars long)
    # are stored, sanitised: not dropped, and with no control character left.
    routes = obj.status.routes.routes_v4 + obj.status.routes.routes_v6
    hostile = [r for r in routes if r.destination in HOSTILE_DESTINATIONS]
    assert sorted(r.destination for r in hostile) == sorted(HOSTILE_DESTINATIONS)
    for route in hostile:
        assert route.interface.startswith("eth0") and route.interface != "eth0", route.interface
        assert route.interface.isprintable() and route.destination.isprintable(), route
        assert len(route.interface) <= MAX_TEXT_CHARS
    assert serialised_size(wire) <= budget
    assert obj.status.agent.bird_v4.state == "Ready"
    # Sanitised, the whole table fits either budget: nothing may be reported as left out.
    assert ROUTES_OMITTED_ANNOTATION not in obj.metadata.annotations


async def test_huge_table_fits_the_budget(
    replayed_bird: tuple[ReplayServer, ReplayServer], tmp_path: Path
) -> None:
    """A 5 MB table (real route lines repeated) against a 64 KiB budget: the object fits, the
    annotation counts every route left out (also those the collector never held), and the other
    classes are whole."""
    budget = 64 * 1024
    bird, bird6 = replayed_bird
    async with EmbeddedDatastore(tmp_path / "db.sqlite") as store:
        bird.fault, bird.huge_bytes = Fault.HUGE, 5 * 1024 * 1024
        collector = bird_collector(str(bird.path), str(bird6.path), budget)
        async with running_agent(store, collector, size_budget_bytes=budget):
            await store.create(node_status("huge", NODE, ["Agent", "BGP", "Routes"], 60))

            async def annotated() -> Any:
                obj = await store.get("huge")
                return obj if ROUTES_OMITTED_ANNOTATION in obj.metadata.annotations else None

            obj = await wait_for(annotated, 20, "routes-omitted annotation written")
    assert serialised_size(obj.to_wire()) <= budget
    assert obj.status.bgp.number_established_v4 == 2 and obj.status.bgp.number_established_v6 == 2
    assert obj.status.agent.bird_v6.state == "Ready"
    sent_v4 = b"".join(huge_route_reply(transcript("1.6.8", "mesh3", "show_route"), bird.huge_bytes))
    total_v4 = sent_v4.count(b"\n") - 1  # one route per line (no multipath here), final line aside
    kept_v4, kept_v6 = obj.status.routes.routes_v4, obj.status.routes.routes_v6
    assert kept_v4 and len(kept_v6) == 4  # FIB first; the families share the room fairly
    omitted = json.loads(obj.metadata.annotations[ROUTES_OMITTED_ANNOTATION])
    assert omitted == {"v4": total_v4 - len(kept_v4), "v6": 4 - len(kept_v6)}
