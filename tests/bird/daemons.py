"""Real BIRD daemons for the client tests: one per test module, in a network namespace of its own
(so the kernel protocol never touches the host), with a static table of known routes."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VENDOR_SBIN = Path(__file__).resolve().parents[2] / "vendor-bird" / "usr" / "sbin"
BIRD16 = VENDOR_SBIN / "bird"
BIRD16_V6 = VENDOR_SBIN / "bird6"
BIRD2 = Path("/usr/sbin/bird")
BIRDC2 = Path("/usr/sbin/birdc")


@dataclass(frozen=True)
class Daemon:
    socket: str
    version: str  # "1.6" or "2"
    family: int  # 4 or 6 for BIRD 1.6; 0 (both) for BIRD 2
    static_routes: tuple[str, ...]


def static_prefixes(count: int, family: int) -> tuple[str, ...]:
    """`count` distinct prefixes inside the lab ranges (198.18.0.0/15, 2001:db8::/32)."""
    if family == 4:
        base = int(ipaddress.IPv4Address("198.18.16.0"))
        return tuple(f"{ipaddress.IPv4Address(base + 4 * i)}/30" for i in range(count))
    base = int(ipaddress.IPv6Address("2001:db8:f000::"))
    return tuple(f"{ipaddress.IPv6Address(base + 4 * i)}/126" for i in range(count))


def _config(version: str, family: int, prefixes: tuple[str, ...], target: str) -> str:
    router_id = "router id 198.18.0.1;\n"
    routes = "".join(f"  route {p} {target};\n" for p in prefixes)
    if version == "1.6":
        return f"{router_id}protocol device {{ scan time 2; }}\nprotocol static {{\n{routes}}}\n"
    v4 = [p for p in prefixes if ":" not in p]
    v6 = [p for p in prefixes if ":" in p]
    r4 = "".join(f"  route {p} {target};\n" for p in v4)
    r6 = "".join(f"  route {p} {target};\n" for p in v6)
    return (
        f"{router_id}protocol device {{ scan time 2; }}\n"
        f"protocol static {{ ipv4;\n{r4}}}\nprotocol static {{ ipv6;\n{r6}}}\n"
    )


def _binary(version: str, family: int) -> Path:
    if version == "2":
        return BIRD2
    return BIRD16 if family == 4 else BIRD16_V6


def available(version: str) -> bool:
    return _binary(version, 4).exists() and os.geteuid() == 0


@contextlib.contextmanager
def bird_daemon(
    tmp: Path, version: str, family: int, prefixes: tuple[str, ...], target: str = "blackhole"
) -> Iterator[Daemon]:
    """Start BIRD in a fresh namespace with a static route to `target` (BIRD's syntax, e.g.
    `blackhole` or `via "lo"`) for each prefix; always stop it and delete the namespace."""
    ns = f"cnst-h3-{secrets.token_hex(3)}"
    conf = tmp / f"bird-{version}-{family}.conf"
    conf.write_text(_config(version, family, prefixes, target))
    sock = tmp / f"bird-{version}-{family}.ctl"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        argv = [
            "ip",
            "netns",
            "exec",
            ns,
            str(_binary(version, family)),
            "-f",
            "-c",
            str(conf),
            "-s",
            str(sock),
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for_routes(proc, sock, len(prefixes))
        yield Daemon(str(sock), version, family, prefixes)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _wait_for_routes(proc: subprocess.Popen[bytes], sock: Path, count: int) -> None:
    # The socket appears at once; the static table is complete once `show route count` says so.
    birdc = VENDOR_SBIN / "birdc"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"BIRD exited with {proc.returncode}: {err}")
        if sock.exists():
            out = subprocess.run(
                [str(birdc), "-s", str(sock), "show route count"], capture_output=True, text=True, check=False
            ).stdout
            if f"{count} of {count} routes" in out or f"Total: {count} of {count}" in out:
                return
        time.sleep(0.05)
    raise RuntimeError(f"BIRD at {sock} did not load {count} routes in time")
