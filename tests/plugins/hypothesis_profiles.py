"""Hypothesis profiles. `ci` (the default, what `make test` runs): derandomised, so every run tries
the same examples, no example database, a fixed budget that keeps the property tests to seconds.
`fuzz` (`make fuzz`, or HYPOTHESIS_PROFILE=fuzz): random examples, FUZZ_FACTOR times as many,
failures saved in .hypothesis/ so the next run replays them first."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 100
FUZZ_FACTOR = 50

settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=CI_EXAMPLES * FUZZ_FACTOR,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(ci: int) -> int:
    """A test's example budget: `ci` under the CI profile, scaled like the loaded profile's."""
    return max(1, ci * settings().max_examples // CI_EXAMPLES)
