"""pytest fixtures for the agent's container image (Containerfile, built by scripts/build_image.py
with buildah on a debootstrap base).

- ``agent_image`` (session): the image's name, built unless current. The build is cached in
  buildah's storage (skipped when its inputs are unchanged), so `make image` and the tests pay
  for it once.
- ``image_environment(image)``: the environment the image's configuration sets.
- ``image_rootfs(image)``: a throwaway buildah container of the image; yields its mounted root
  filesystem and removes the container when the block ends, also on failure. Containers left by a
  killed run (their pytest process gone) are removed when the next session starts.

A missing buildah or debootstrap is a broken install (`make system-deps`): it fails, never skips.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from calico_nodestatus.lab.system import process_alive

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_image.py"
BUILD_TIMEOUT_SECONDS = 1800  # a cold build: debootstrap, the wheels, the image
CONTAINER_PREFIX = "nodestatus-test-"
_counter = itertools.count(1)


def _buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"buildah {' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


@pytest.fixture(scope="session")
def agent_image() -> str:
    """The agent's image (`make image`), built here unless current."""
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"the image build failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    name = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--print-image"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return name


@pytest.fixture(scope="session", autouse=True)
def _remove_stale_containers() -> None:
    """Test containers whose pytest process is gone (a killed run) are removed first."""
    if subprocess.run(["sh", "-c", "command -v buildah"], capture_output=True, check=False).returncode:
        return  # no buildah: the image tests fail on their own, with the reason
    names = _buildah("containers", "--format", "{{.ContainerName}}").split()
    for name in names:
        owner = name.removeprefix(CONTAINER_PREFIX).split("-", 1)[0]
        if name.startswith(CONTAINER_PREFIX) and owner.isdecimal() and not process_alive(int(owner)):
            _buildah("rm", name)


def image_environment(image: str) -> dict[str, str]:
    """The environment the image's configuration sets (its `ENV` lines), as a runtime applies it."""
    config = json.loads(_buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    return dict(item.split("=", 1) for item in config.get("Env") or [])


@contextmanager
def image_rootfs(image: str) -> Iterator[Path]:
    """A new container of `image` (never pulled), its root filesystem mounted read-write."""
    name = f"{CONTAINER_PREFIX}{os.getpid()}-{next(_counter)}"
    _buildah("from", "--pull-never", "--name", name, image)
    try:
        yield Path(_buildah("mount", name))
    finally:
        _buildah("rm", name)
