"""Shared pytest set-up: fixtures for real parts live in tests/plugins/ (one module per part)."""

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.plugins.lab",
    "tests.plugins.etcd",
    "tests.plugins.kubernetes",
    "tests.plugins.agent",
    "tests.plugins.image",
    "tests.plugins.skips",
    "tests.plugins.hypothesis_profiles",
]

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def bird_fixtures() -> Path:
    """Real BIRD 1.6.8 / 2.0.12 control-socket transcripts (see fixtures/bird/README.md)."""
    return FIXTURES / "bird"
