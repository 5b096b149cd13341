"""pytest fixtures: real BIRD labs in network namespaces (see calico_nodestatus.lab).

- `lab_mesh` (session scope, parametrized "1.6" / "2"): a 3-node IPv4+IPv6 mesh, every Mesh
  session Established. Shared: use it read-only (or undo what you change). Tests using it run
  once per BIRD version.
- `lab_mesh_bird16`, `lab_mesh_bird2`: the same labs, for tests about one version.
- `bird_mesh`: the BIRD 1.6 mesh for tests that need a real BIRD pair (bird + bird6, like
  calico-node) but no BIRD fault; such a test changes BIRD's answer by loading extra routes on
  node 1 (`set_routes(1, n)`), which are removed after it.
- `lab_factory` (function scope): `lab_factory(nodes=3, bird="2", ipv6=True, **Lab.up kwargs)`
  builds a private lab for fault tests; everything it built is torn down after the test.
- `built_lab(bird, **Lab.up kwargs)`: a context manager for labs of a module's or session's own.
- `lab_name_factory`: unique lab names (`lab_name_factory()`), for tests that drive the CLI.

Every lab name is unique to this pytest process and records it as owner, so parallel sessions
never collide and labs of a killed session are removed (as stale) when the next session starts.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from calico_nodestatus.lab import Lab, LabError
from calico_nodestatus.lab.model import BirdVersion
from calico_nodestatus.lab.system import bird_binaries

LabFactory = Callable[..., Lab]

_counter = itertools.count(1)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def unique_lab_name() -> str:
    """`t<pid>x<n>` in base 36: unique per process and call, at most 12 characters."""
    return f"t{_base36(os.getpid())}x{_base36(next(_counter))}"


def _lab_unavailable(bird: str) -> str | None:
    if os.geteuid() != 0:
        return "the BIRD lab needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps)"
    try:
        bird_binaries(BirdVersion(bird))
    except LabError as exc:
        return str(exc)
    return None


def _build(bird: str, name: str, **kwargs: Any) -> Lab:
    reason = _lab_unavailable(bird)
    if reason:
        pytest.skip(reason)
    return Lab.up(name, bird=bird, owner_pid=os.getpid(), **kwargs)


@contextmanager
def built_lab(bird: str, **kwargs: Any) -> Iterator[Lab]:
    """A lab under a unique name (`Lab.up` kwargs), torn down when the block ends; skips the test
    when labs cannot run here."""
    lab = _build(bird, unique_lab_name(), **kwargs)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session", autouse=True)
def _remove_stale_labs() -> None:
    """Labs left behind by killed test or benchmark runs (owner process gone) are removed first."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    for name in Lab.stale_names():
        Lab.destroy(name)


@pytest.fixture(scope="session")
def lab_mesh_bird16() -> Iterator[Lab]:
    with built_lab("1.6", nodes=3, ipv6=True) as lab:
        yield lab


@pytest.fixture(scope="session")
def lab_mesh_bird2() -> Iterator[Lab]:
    with built_lab("2", nodes=3, ipv6=True) as lab:
        yield lab


@pytest.fixture(scope="session", params=["1.6", "2"], ids=["bird1.6", "bird2"])
def lab_mesh(request: pytest.FixtureRequest) -> Lab:
    name = "lab_mesh_bird16" if request.param == "1.6" else "lab_mesh_bird2"
    lab: Lab = request.getfixturevalue(name)
    return lab


@pytest.fixture
def bird_mesh(lab_mesh_bird16: Lab) -> Iterator[Lab]:
    """The shared BIRD 1.6 mesh; node 1's extra routes and daemons are restored after the test."""
    try:
        yield lab_mesh_bird16
    finally:
        if lab_mesh_bird16.node(1).state.extra_routes_v4:
            lab_mesh_bird16.set_routes(1, 0)
        lab_mesh_bird16.bird_start(1)


@pytest.fixture
def lab_name_factory() -> Iterator[Callable[[], str]]:
    """Unique lab names; any lab created under them is destroyed after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(unique_lab_name())
        return names[-1]

    try:
        yield make
    finally:
        for name in names:
            Lab.destroy(name)


@pytest.fixture
def lab_factory(lab_name_factory: Callable[[], str]) -> LabFactory:
    """`lab_factory(nodes=3, bird="2", ipv6=True, wait=True, ...)` -> a private, torn-down Lab."""

    def make(*, bird: str = "2", **kwargs: Any) -> Lab:
        return _build(bird, lab_name_factory(), **kwargs)

    return make
