"""Structured logs: one line per event, ``event=NAME key=value ...``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

_NEEDS_QUOTES = frozenset(' ="\t\n')


def format_value(value: object) -> str:
    text = str(value)
    if text == "" or any(ch in _NEEDS_QUOTES for ch in text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def format_event(event: str, fields: Mapping[str, object]) -> str:
    parts = [f"event={format_value(event)}"]
    parts.extend(f"{key}={format_value(value)}" for key, value in fields.items() if value is not None)
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, "%s", format_event(event, fields))
