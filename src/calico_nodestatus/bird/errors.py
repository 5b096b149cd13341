"""Errors of the BIRD layer. Everything that goes wrong talking to or parsing BIRD is a `BirdError`."""

from __future__ import annotations


class BirdError(Exception):
    """Base of every BIRD client/parser failure; the message is what a user sees."""


class BirdParseError(BirdError):
    """A reply line the parsers do not understand (unknown shape, malformed field, bad framing)."""

    def __init__(self, reason: str, line: str | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"{reason}: {line!r}" if line is not None else reason)


class BirdCommandError(BirdError):
    """BIRD answered a command with an 8xxx (run-time) or 9xxx (parse-time) reply code."""

    def __init__(self, code: int, text: str, command: str = "") -> None:
        self.code = code
        self.text = text
        self.command = command
        where = f" to {command!r}" if command else ""
        super().__init__(f"BIRD replied {code:04d} {text}{where}")


class BirdReconfigurationInterrupt(BirdCommandError):
    """`8004 Stopped due to reconfiguration`: the reply was cut short by a BIRD reconfigure.

    Whatever was read before the interruption is still valid; callers keep it or retry."""


class BirdTimeout(BirdError):
    """A read took longer than the per-read timeout, or the command overran its deadline."""


class BirdUnavailable(BirdError):
    """No BIRD control socket could be reached. `failures` lists every socket tried with its own
    error, so the message names the path that really failed (not just the last fallback)."""

    def __init__(self, failures: tuple[tuple[str, str], ...]) -> None:
        self.failures = failures
        self.path = failures[0][0] if failures else ""
        detail = "; ".join(f"{path}: {error}" for path, error in failures) or "no socket path given"
        super().__init__(f"unable to connect to BIRD socket {detail}")


class BirdProtocolError(BirdError):
    """The byte stream broke BIRD's framing: a cut reply, an over-long line, undecodable bytes."""


def command_error(code: int, text: str, command: str = "") -> BirdCommandError:
    """The typed error for an 8xxx/9xxx final reply line."""
    if code == 8004:
        return BirdReconfigurationInterrupt(code, text, command)
    return BirdCommandError(code, text, command)
