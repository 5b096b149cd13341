"""Exponential backoff with full jitter, for datastore retries."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delay n is uniform in [base*2^n / 2, base*2^n] capped at ``cap`` (half jitter: never zero,
    so a flapping datastore is not hammered, and agents spread out)."""

    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    rand: Callable[[], float] = random.random
    attempts: int = field(default=0)

    def next_delay(self) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * (2**self.attempts))
        self.attempts += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.attempts = 0
