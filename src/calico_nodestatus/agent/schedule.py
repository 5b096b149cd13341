"""When each object is due for a report (pure: the caller passes monotonic ``now``).

``updatePeriodSeconds`` semantics: a new object or a spec change is due at once; afterwards it is
due every period, keeping its phase (missed ticks collapse into one). Period 0 reports once after
create or spec change and never again.
"""

from __future__ import annotations

from dataclasses import dataclass

# Objects due within this window of each other share one BIRD collection.
COINCIDENCE_SECONDS = 0.25


@dataclass(slots=True)
class _Entry:
    period: int
    next_due: float | None


class Scheduler:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def track(self, name: str, period: int, now: float) -> None:
        """A new object or a changed spec: report now, then every ``period`` seconds."""
        self._entries[name] = _Entry(period=period, next_due=now)

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)

    def due(self, now: float) -> list[str]:
        horizon = now + COINCIDENCE_SECONDS
        return sorted(
            name
            for name, entry in self._entries.items()
            if entry.next_due is not None and entry.next_due <= horizon
        )

    def reported(self, name: str, now: float) -> None:
        """The object was reported at ``now``: schedule its next refresh."""
        entry = self._entries.get(name)
        if entry is None:
            return
        if entry.period == 0:
            entry.next_due = None
            return
        base = entry.next_due if entry.next_due is not None else now
        next_due = base + entry.period
        # A report slower than the period collapses the missed ticks into one.
        entry.next_due = next_due if next_due > now else now + entry.period

    def retry_at(self, name: str, when: float) -> None:
        """Re-collect at ``when`` (a failed report), whatever the period, 0 included."""
        entry = self._entries.get(name)
        if entry is not None:
            entry.next_due = when

    def next_due(self, name: str) -> float | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.next_due

    def next_deadline(self) -> float | None:
        dues = [e.next_due for e in self._entries.values() if e.next_due is not None]
        return min(dues, default=None)
