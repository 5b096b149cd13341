"""Tolerant parsing: only framing errors fail a query. Unknown informational lines are skipped, a
detail value that does not parse loses that one field of that one peer, unknown route attributes
are skipped; and (property) removing or changing any one detail line of a real transcript never
empties a whole section. Every reply here is a real transcript with one line changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_nodestatus.bird import parse
from calico_nodestatus.bird.errors import BirdParseError
from calico_nodestatus.bird.types import DaemonStatus, ProtocolDetails
from calico_nodestatus.collect.sections import daemon_status, is_ipv6_peer, peer_section
from tests.bird.transcripts import FIXTURES, lines

STATUS_16 = lines("1.6.8", "peertypes", "show_status")
STATUS_GR = lines("2.0.12", "gr", "c00_0s_after_restart__show_status")
PROTOCOLS_ALL_16 = lines("1.6.8", "peertypes", "show_protocols_all")
PROTOCOLS_ALL_2 = lines("2.0.12", "peertypes", "show_protocols_all")
ROUTE_ALL_2 = lines("2.0.12", "peertypes", "show_route_all")


def _replace(reply: list[str], old: str, new: str) -> list[str]:
    """The reply with the one line equal to `old` replaced by `new` (None: removed)."""
    assert reply.count(old) == 1, old
    return [new if line == old else line for line in reply]


def _details(reply: list[str]) -> dict[str, ProtocolDetails]:
    return {d.protocol.name: d for d in parse.parse_protocols_all(reply)}


# -- show status ---------------------------------------------------------------------------------


def test_unknown_status_line_is_skipped() -> None:
    reply = _replace(STATUS_16, " Current server time is 2026-11-25 00:16:30", " Uptime is 10 days")
    status = parse.parse_status(reply)
    assert status.server_time is None
    assert (status.router_id, status.last_reboot) == ("198.18.0.1", "2026-11-25 00:16:20")
    assert daemon_status(status).state == "Ready"


def test_version_line_without_bird_is_skipped() -> None:
    status = parse.parse_status(_replace(STATUS_16, "1000-BIRD 1.6.8", "1000-Routing daemon 1.6.8"))
    assert status.version is None and status.router_id == "198.18.0.1" and status.is_up


def test_unused_informational_code_is_skipped() -> None:
    reply = [*STATUS_16[:1], "1099-Licensed to nobody", *STATUS_16[1:]]
    assert parse.parse_status(reply) == parse.parse_status(STATUS_16)


def test_status_lines_are_read_by_their_text_whatever_code_carries_them() -> None:
    """The `1011` code line lost: the continuation lines now carry `1000`, and still count."""
    status = parse.parse_status(
        _replace(STATUS_16, "1011-Router ID is 198.18.0.1", "1000-Router ID is 198.18.0.1")
    )
    assert status == parse.parse_status(STATUS_16)


def test_unknown_graceful_restart_text_is_skipped_and_a_bad_count_lost() -> None:
    reply = _replace(
        STATUS_GR, "   Waiting for 6 channels to recover", "   Waiting for some channels to recover"
    )
    reply.insert(reply.index("   Wait timer is 239.953/240"), "   Recovery started by SIGHUP")
    status = parse.parse_status(reply)
    assert status.graceful_restart is not None
    assert (status.graceful_restart.waiting_for, status.graceful_restart.wait_timer) == (None, "239.953/240")
    assert not status.is_up


# -- show protocols [all] ------------------------------------------------------------------------


def test_odd_routes_value_loses_that_field_of_that_peer_only() -> None:
    reply = PROTOCOLS_ALL_16.copy()
    mesh_row = reply.index("1002-Mesh_198_18_0_2 BGP      master   up     00:16:22    Established   ")
    at = next(i for i in range(mesh_row, len(reply)) if reply[i].strip().startswith("Routes:"))
    reply[at] = "   Routes:         3 imported, lots exported, 3 preferred"
    odd, real = _details(reply), _details(PROTOCOLS_ALL_16)
    assert odd["Mesh_198_18_0_2"].routes is None
    assert odd["Mesh_198_18_0_2"] == dataclasses.replace(real["Mesh_198_18_0_2"], routes=None)
    assert {n: d for n, d in odd.items() if n != "Mesh_198_18_0_2"} == {
        n: d for n, d in real.items() if n != "Mesh_198_18_0_2"
    }


def test_odd_channel_routes_value_loses_that_channel_count_only() -> None:
    reply = PROTOCOLS_ALL_2.copy()
    mesh_row = next(i for i, line in enumerate(reply) if line.startswith("1002-Mesh_198_18_0_2 "))
    at = next(i for i in range(mesh_row, len(reply)) if reply[i].strip().startswith("Routes:"))
    reply[at] = "     Routes:         3 imported, 1 exported"
    mesh = _details(reply)["Mesh_198_18_0_2"]
    assert mesh.routes is None and mesh.channels[0].routes is None
    assert (mesh.bgp_state, mesh.neighbor_address, mesh.neighbor_as) == ("Established", "198.18.0.2", 64512)


@pytest.mark.parametrize(
    ("label", "field", "odd"),
    [("Neighbor AS", "neighbor_as", "64512.5"), ("Local AS", "local_as", "-1"),
     ("Neighbor address", "neighbor_address", "nowhere")],
)  # fmt: skip
def test_odd_number_or_address_loses_that_field_of_that_peer_only(label: str, field: str, odd: str) -> None:
    reply = PROTOCOLS_ALL_2.copy()
    mesh_row = next(i for i, line in enumerate(reply) if line.startswith("1002-Mesh_2001_db8__2 "))
    at = next(i for i in range(mesh_row, len(reply)) if reply[i].strip().startswith(label + ":"))
    reply[at] = reply[at].split(":", 1)[0] + ":   " + odd
    changed, real = _details(reply), _details(PROTOCOLS_ALL_2)
    assert changed["Mesh_2001_db8__2"] == dataclasses.replace(real["Mesh_2001_db8__2"], **{field: None})
    assert sum(changed[n] != real[n] for n in real) == 1
    # Without its neighbour address the peer still goes by the address in its name: IPv6, same IP.
    peers = peer_section([changed["Mesh_2001_db8__2"]]).peers
    assert is_ipv6_peer(changed["Mesh_2001_db8__2"])
    assert peers == peer_section([real["Mesh_2001_db8__2"]]).peers


def test_unknown_bgp_state_word_falls_back_to_the_protocol_row() -> None:
    reply = PROTOCOLS_ALL_16.copy()
    reply[reply.index("   BGP state:          Established")] = "   BGP state:          Flapping"
    first, real = (
        next(d for d in parse.parse_protocols_all(r) if d.protocol.proto == "BGP")
        for r in (reply, PROTOCOLS_ALL_16)
    )
    assert first.bgp_state == "Flapping"
    assert peer_section([first]) == peer_section([real])


def test_unused_informational_codes_are_skipped_in_protocol_replies() -> None:
    plain = lines("1.6.8", "peertypes", "show_protocols")
    # At the end: continuation rows after it would carry its code (and be skipped with it).
    assert parse.parse_protocols(
        [*plain[:-1], "1099-a line we do not know", plain[-1]]
    ) == parse.parse_protocols(plain)
    assert parse.parse_protocols_all(
        [*PROTOCOLS_ALL_16[:1], "1099-a line we do not know", *PROTOCOLS_ALL_16[1:]]
    ) == parse.parse_protocols_all(PROTOCOLS_ALL_16)


def test_details_before_any_protocol_row_are_skipped() -> None:
    reply = [PROTOCOLS_ALL_16[0], "1006-  Preference:     10", *PROTOCOLS_ALL_16[1:]]
    assert parse.parse_protocols_all(reply) == parse.parse_protocols_all(PROTOCOLS_ALL_16)


# -- show route ----------------------------------------------------------------------------------


def test_unknown_route_attribute_blocks_are_skipped() -> None:
    at = ROUTE_ALL_2.index("1012-\tBGP.origin: IGP")
    unknown = ["1010-\tBGP.large_community: (64512, 1, 1)", " \tBGP.otc: 64512"]
    reply = [*ROUTE_ALL_2[:at], *unknown, *ROUTE_ALL_2[at:]]
    assert parse.parse_routes(reply) == parse.parse_routes(ROUTE_ALL_2)


def test_unknown_tab_line_under_a_route_is_skipped() -> None:
    plain = lines("2.0.12", "peertypes", "show_route")
    at = plain.index(" \tvia 198.18.0.2 on eth0 weight 1")
    with_attribute = [*plain[: at + 1], " \tmpls 100/200", *plain[at + 1 :]]
    assert parse.parse_routes(with_attribute) == parse.parse_routes(plain)
    blackhole = next(i for i, line in enumerate(plain) if " blackhole [" in line)
    after_blackhole = [*plain[: blackhole + 1], " \tsomething new", *plain[blackhole + 1 :]]
    assert parse.parse_routes(after_blackhole) == parse.parse_routes(plain)


def test_odd_next_hop_weight_loses_the_weight_only() -> None:
    plain = lines("2.0.12", "peertypes", "show_route")
    reply = plain.copy()
    ecmp_line = next(i for i, line in enumerate(plain) if line.startswith(" 198.18.110.0/24 "))
    assert reply[ecmp_line + 2] == " \tvia 198.18.0.3 on eth0 weight 1"
    reply[ecmp_line + 2] = " \tvia 198.18.0.3 on eth0 weight heavy"
    ecmp = next(r for r in parse.parse_routes(reply) if r.prefix == "198.18.110.0/24")
    assert [(h.gateway, h.weight) for h in ecmp.next_hops] == [("198.18.0.2", 1), ("198.18.0.3", None)]


# -- framing errors still fail the query ---------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "reply"),
    [
        (parse.parse_status, [*STATUS_16[:2], "Router ID is 198.18.0.9", *STATUS_16[2:]]),  # no code
        (parse.parse_status, [*STATUS_16[:2], "2002-name proto", *STATUS_16[2:]]),  # a header here
        (parse.parse_status, STATUS_16[:-1]),  # cut: no final line
        (parse.parse_status, [*STATUS_16, "0013 Daemon is up and running"]),  # after the final line
        (parse.parse_protocols_all, [*PROTOCOLS_ALL_16[:3], "0000-", *PROTOCOLS_ALL_16[3:]]),
        (parse.parse_protocols_all, [*PROTOCOLS_ALL_16[:-1], "0013 Daemon is up and running"]),
        (parse.parse_protocols_all, ["2002-Nom Protocole Table Etat", *PROTOCOLS_ALL_16[1:]]),
        (parse.parse_routes, [*ROUTE_ALL_2[:3], "8004-Stopped", *ROUTE_ALL_2[3:]]),
        (parse.parse_routes, [*ROUTE_ALL_2[:3], "\x00\ufffd garbage", *ROUTE_ALL_2[3:]]),
        (parse.parse_routes, [*ROUTE_ALL_2[:3], "1007-198.18.0.0/24 teleport [direct1 00:16:36.393] * (240)",
                              *ROUTE_ALL_2[3:]]),  # a route line of unknown shape
    ],
)  # fmt: skip
def test_framing_errors_still_fail(parser: Callable[[list[str]], Any], reply: list[str]) -> None:
    with pytest.raises(BirdParseError):
        parser(reply)


# -- property: one detail line removed or changed never empties a section ------------------------

TRANSCRIPTS = sorted(FIXTURES.glob("*/*/*.txt"))


def _replies(command: str) -> list[list[str]]:
    """Every successful real reply to `command` (file names as tests/fixtures/bird/README.md says)."""
    found = []
    for path in TRANSCRIPTS:
        name = path.name.removesuffix(".txt").split("__")[-1]
        if name == command or (command.endswith("*") and name.startswith(command[:-1])):
            reply = parse.reply_lines(path.read_bytes())
            if reply and reply[-1][:1] not in ("8", "9"):
                found.append(reply)
    assert found, command
    return found


def _show_route_all(path: Path) -> bool:
    name = path.name.removesuffix(".txt").split("__")[-1]
    return name.startswith("show_route") and name.endswith("_all") and "count" not in name


STATUS_REPLIES = _replies("show_status")
PROTOCOLS_ALL_REPLIES = _replies("show_protocols_all*")
ROUTE_ALL_REPLIES = [
    reply for path in TRANSCRIPTS if _show_route_all(path)
    if (reply := parse.reply_lines(path.read_bytes()))[-1][:1] not in ("8", "9")
]  # fmt: skip
UNUSED_CODES = ("1001", "1099", "1013", "1999")


def _codes(reply: list[str]) -> list[int | None]:
    return [code for code, _, _ in parse.coded_lines(reply)]


def _detail_lines(reply: list[str], codes: frozenset[int]) -> list[int]:
    return [i for i, code in enumerate(_codes(reply)) if code in codes and i < len(reply) - 1]


STATUS_DETAIL = frozenset((1000, 1011, 24))
PROTOCOL_DETAIL = frozenset((1006,))
ROUTE_ATTRIBUTES = frozenset((1008, 1012))


def _status_fields(status: DaemonStatus) -> tuple[object, ...]:
    return tuple(getattr(status, f.name) for f in dataclasses.fields(status))


def _check_status(original: list[str], mutated: list[str]) -> None:
    before, after = parse.parse_status(original), parse.parse_status(mutated)
    # At most the changed line's own field and the field its new text names, never the section.
    assert sum(a != b for a, b in zip(_status_fields(before), _status_fields(after), strict=True)) <= 2
    assert daemon_status(after).state is not None


def _owner(reply: list[str], index: int) -> str | None:
    """The protocol whose details line `index` belongs to."""
    codes = _codes(reply)
    row = next(i for i in range(index, -1, -1) if codes[i] == 1002)
    return reply[row][5:].split()[0]


def _peer_view(details: ProtocolDetails) -> tuple[object, ...]:
    return (*peer_section([details]).peers, is_ipv6_peer(details))


def _check_protocols(original: list[str], mutated: list[str], owner: str | None) -> None:
    before = {d.protocol.name: d for d in parse.parse_protocols_all(original) if d.protocol.proto == "BGP"}
    after = {d.protocol.name: d for d in parse.parse_protocols_all(mutated) if d.protocol.proto == "BGP"}
    assert list(after) == list(before)  # every peer is still there, no made-up one
    for name, details in before.items():
        if name != owner:
            assert _peer_view(after[name]) == _peer_view(details), name


def _check_routes(original: list[str], mutated: list[str]) -> None:
    assert parse.parse_routes(mutated) == parse.parse_routes(original)


CASES: list[tuple[str, list[list[str]], frozenset[int]]] = [
    ("status", STATUS_REPLIES, STATUS_DETAIL),
    ("protocols_all", PROTOCOLS_ALL_REPLIES, PROTOCOL_DETAIL),
    ("route_all", ROUTE_ALL_REPLIES, ROUTE_ATTRIBUTES),
]


def _check(kind: str, original: list[str], mutated: list[str], index: int) -> None:
    if kind == "status":
        _check_status(original, mutated)
    elif kind == "protocols_all":
        _check_protocols(original, mutated, _owner(original, index))
    else:
        _check_routes(original, mutated)


@pytest.mark.parametrize(("kind", "replies", "details"), CASES, ids=[c[0] for c in CASES])
def test_removing_any_one_detail_line_keeps_every_section(
    kind: str, replies: list[list[str]], details: frozenset[int]
) -> None:
    """Exhaustive: every detail line of every real transcript, removed in turn."""
    checked = 0
    for reply in replies:
        for index in _detail_lines(reply, details):
            _check(kind, reply, reply[:index] + reply[index + 1 :], index)
            checked += 1
    assert checked > 50


@pytest.mark.fuzz
@pytest.mark.parametrize(("kind", "replies", "details"), CASES, ids=[c[0] for c in CASES])
def test_changing_any_one_detail_line_keeps_every_section(
    kind: str, replies: list[list[str]], details: frozenset[int]
) -> None:
    """A detail line's text replaced, cut or spliced, or its code turned into one nobody uses;
    the line stays a line of the reply (its code prefix or continuation space is kept)."""

    @given(st.data())
    def check(data: st.DataObject) -> None:
        reply = data.draw(st.sampled_from([r for r in replies if _detail_lines(r, details)]))
        index = data.draw(st.sampled_from(_detail_lines(reply, details)))
        line = reply[index]
        head, text = (line[:1], line[1:]) if line.startswith(" ") else (line[:5], line[5:])
        text_strategy = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=60)
        action = data.draw(st.sampled_from(["replace", "cut", "splice", "code"]))
        if action == "replace":
            text = data.draw(text_strategy)
        elif action == "cut":
            text = text[: data.draw(st.integers(0, len(text)))]
        elif action == "splice":
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + data.draw(text_strategy) + text[at:]
        elif head != " ":
            head = data.draw(st.sampled_from(UNUSED_CODES)) + "-"
        mutated = [*reply[:index], head + text, *reply[index + 1 :]]
        _check(kind, reply, mutated, index)

    check()
