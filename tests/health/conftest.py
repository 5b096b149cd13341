"""Network namespaces for the health tests (prefix cnst-h6-), always removed, also on failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True)


@contextmanager
def network_namespace(suffix: str) -> Iterator[str]:
    name = f"cnst-h6-{suffix}-{os.getpid()}"
    # A namespace left by a killed earlier run with the same pid would make `add` fail.
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        ip(name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture(scope="session")
def host() -> Iterator[str]:
    """A host for autodetection (created in this order, so ifindex grows down the list):

    eth0  198.18.10.1/24, 198.18.10.2/24, 2001:db8:10::1/64   (peer lom0 198.18.13.1/24)
    eth1  198.18.12.1/24 (IPv6: link-local only)             (peer p1, no address)
    veth7 198.18.14.1/24                                      (peer p2, no address)
    Routes: 198.18.50.0/24 via 198.18.10.254 src 198.18.10.2; 2001:db8:50::/64 via 2001:db8:10::fe.
    """
    with network_namespace("ad") as ns:
        for name, peer in (("eth0", "lom0"), ("eth1", "p1"), ("veth7", "p2")):
            ip(ns, "link", "add", name, "type", "veth", "peer", "name", peer)
            ip(ns, "link", "set", name, "up")
            ip(ns, "link", "set", peer, "up")
        ip(ns, "addr", "add", "198.18.10.1/24", "dev", "eth0")
        ip(ns, "addr", "add", "198.18.10.2/24", "dev", "eth0")
        ip(ns, "-6", "addr", "add", "2001:db8:10::1/64", "dev", "eth0", "nodad")
        ip(ns, "addr", "add", "198.18.13.1/24", "dev", "lom0")
        ip(ns, "addr", "add", "198.18.12.1/24", "dev", "eth1")
        ip(ns, "addr", "add", "198.18.14.1/24", "dev", "veth7")
        ip(ns, "route", "add", "198.18.50.0/24", "via", "198.18.10.254", "src", "198.18.10.2")
        ip(ns, "-6", "route", "add", "2001:db8:50::/64", "via", "2001:db8:10::fe")
        yield ns
