"""Property tests: whatever bytes arrive, the parsers raise BirdParseError or return records."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_nodestatus.bird import parse
from calico_nodestatus.bird.errors import BirdParseError
from calico_nodestatus.bird.names import decode_peer_name
from tests.bird.transcripts import lines
from tests.plugins.hypothesis_profiles import examples

SEEDS: dict[str, tuple[Callable[[list[str]], Any], list[str]]] = {
    "status": (parse.parse_status, lines("2.0.12", "gr", "c00_0s_after_restart__show_status")),
    "protocols": (parse.parse_protocols, lines("1.6.8", "peerdown", "t2_3s_after_stop__show_protocols")),
    "protocols_all": (
        parse.parse_protocols_all,
        lines("2.0.12", "peertypes", "show_protocols_all_Mesh_198_18_0_2"),
    ),
    "routes_16": (parse.parse_routes, lines("1.6.8", "peertypes", "show_route")),
    "routes_2": (parse.parse_routes, lines("2.0.12", "peertypes", "show_route_all")),
    "count": (parse.parse_route_count, lines("2.0.12", "peertypes", "show_route_count")),
}
PROFILE = settings(max_examples=examples(300))
pytestmark = pytest.mark.fuzz
LINE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=60)


def _only_parse_errors(parser: Callable[[list[str]], Any], reply: list[str]) -> None:
    with contextlib.suppress(BirdParseError):
        parser(reply)


@st.composite
def mutated(draw: st.DrawFn, seed: list[str]) -> list[str]:
    """A real reply with a few lines replaced, cut, duplicated, or with characters flipped."""
    reply = list(seed)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(reply) - 1))
        action = draw(st.sampled_from(["replace", "cut", "delete", "duplicate", "splice", "words"]))
        if action == "replace":
            reply[i] = draw(LINE_TEXT)
        elif action == "cut":
            reply[i] = reply[i][: draw(st.integers(0, len(reply[i])))]
        elif action == "delete" and len(reply) > 1:
            del reply[i]
        elif action == "duplicate":
            reply.insert(i, reply[i])
        elif action == "splice":
            at = draw(st.integers(0, len(reply[i])))
            reply[i] = reply[i][:at] + draw(LINE_TEXT) + reply[i][at:]
        else:
            words = reply[i].split(" ")
            draw(st.randoms()).shuffle(words)
            reply[i] = " ".join(words)
    return reply


@pytest.mark.parametrize("name", list(SEEDS))
def test_mutated_replies_raise_only_parse_errors(name: str) -> None:
    parser, seed = SEEDS[name]

    @PROFILE
    @given(mutated(seed))
    def check(reply: list[str]) -> None:
        _only_parse_errors(parser, reply)

    check()


@pytest.mark.parametrize("name", list(SEEDS))
def test_random_lines_raise_only_parse_errors(name: str) -> None:
    parser, _ = SEEDS[name]

    @settings(max_examples=examples(150))
    @given(st.lists(LINE_TEXT, max_size=8))
    def check(reply: list[str]) -> None:
        _only_parse_errors(parser, reply)

    check()


@PROFILE
@given(st.lists(LINE_TEXT, max_size=10), st.integers(1, 5))
def test_route_feeder_on_random_chunks(body: list[str], chunk: int) -> None:
    parser = parse.RouteParser()
    try:
        for start in range(0, len(body), chunk):
            parser.feed(body[start : start + chunk])
        parser.finish()
    except BirdParseError:
        pass


@PROFILE
@given(st.text(max_size=40))
def test_peer_names_never_raise(name: str) -> None:
    decoded = decode_peer_name(name)
    assert decoded is None or decoded.ip


@PROFILE
@given(st.binary(max_size=200))
def test_reply_lines_accept_any_bytes(data: bytes) -> None:
    assert all("\n" not in line for line in parse.reply_lines(data))
