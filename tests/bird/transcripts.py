"""Loading the real BIRD transcripts (tests/fixtures/bird) and picking the parser for each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from calico_nodestatus.bird import parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bird"


def lines(version: str, scenario: str, name: str) -> list[str]:
    return parse.reply_lines((FIXTURES / version / scenario / f"{name}.txt").read_bytes())


def parser_for(path: Path) -> Callable[[list[str]], Any] | None:
    """The parser for a transcript, from the command in its file name (None: not a parsed command)."""
    command = path.name.removesuffix(".txt").split("__")[-1]
    if command.startswith("show_route_count"):
        return parse.parse_route_count
    if command.startswith("show_route"):
        return parse.parse_routes
    if command.startswith("show_protocols_all"):
        return parse.parse_protocols_all
    if command.startswith("show_protocols"):
        return parse.parse_protocols
    if command.startswith("show_status"):
        return parse.parse_status
    return None


def all_transcripts() -> list[Path]:
    return sorted(FIXTURES.glob("*/*/*.txt"))
