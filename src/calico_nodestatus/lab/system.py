"""The lab's contact with the machine: iproute2, nftables, BIRD binaries and processes (argv lists only)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calico_nodestatus.lab.model import BirdVersion, LabError

BIRD1_DIR_ENV = "CALICO_NODESTATUS_BIRD1_DIR"
BIRD2_SBIN = Path("/usr/sbin")
_REPO_ROOT = Path(__file__).resolve().parents[3]


def run(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs one command; a failure becomes a LabError quoting the command and its stderr."""
    try:
        result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: not found ({exc.strerror}); run `make system-deps`") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` failed (exit {result.returncode}): {detail}")
    return result


def ip_batch(namespace: str | None, commands: Sequence[str]) -> None:
    """Feeds iproute2 commands to one `ip -batch` process (optionally inside a namespace)."""
    argv = ["ip", *(["-n", namespace] if namespace else []), "-batch", "-"]
    run(argv, stdin="\n".join(commands) + "\n")


def in_namespace(namespace: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def list_namespaces() -> list[str]:
    output = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in output.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    result = run(["ip", "netns", "pids", namespace], check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def delete_namespace(namespace: str) -> None:
    """Deletes the namespace; tolerates another cleaner having deleted it first."""
    result = run(["ip", "netns", "delete", namespace], check=False)
    if result.returncode != 0 and namespace in list_namespaces():
        raise LabError(f"cannot delete namespace {namespace}: {result.stderr.strip()}")


def nft_apply(namespace: str, script: str) -> None:
    run(in_namespace(namespace, ["nft", "-f", "-"]), stdin=script)


# ---- processes -------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def terminate(pids: Sequence[int], sig: signal.Signals = signal.SIGTERM, grace: float = 3.0) -> None:
    """Sends `sig` to every pid, waits up to `grace` seconds, then SIGKILLs what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


# ---- BIRD binaries ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BirdBinaries:
    daemon_v4: Path
    daemon_v6: Path
    client_v4: Path
    client_v6: Path


def _bird1_sbin() -> Path:
    configured = os.environ.get(BIRD1_DIR_ENV)
    base = Path(configured) if configured else _REPO_ROOT / "vendor-bird"
    # Accept either the unpacked package root or its usr/sbin directory.
    return base if (base / "bird").exists() else base / "usr" / "sbin"


def bird_binaries(version: BirdVersion) -> BirdBinaries:
    if version is BirdVersion.V1_6:
        sbin = _bird1_sbin()
        found = BirdBinaries(sbin / "bird", sbin / "bird6", sbin / "birdc", sbin / "birdc6")
        hint = f"BIRD 1.6.8 is unpacked by `make system-deps` into vendor-bird/ (or set {BIRD1_DIR_ENV})"
    else:
        found = BirdBinaries(*(BIRD2_SBIN / n for n in ("bird", "bird", "birdc", "birdc")))
        hint = "install Debian's bird2 (`make system-deps`)"
    for path in (found.daemon_v4, found.daemon_v6, found.client_v4):
        if not os.access(path, os.X_OK):
            raise LabError(f"BIRD {version}: {path} is not an executable file; {hint}")
    return found


def birdc(client: Path, socket: Path, command: str, timeout: float = 30.0) -> list[str]:
    """One command through birdc; returns its output lines without the greeting."""
    try:
        result = subprocess.run(
            [str(client), "-s", str(socket), command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"birdc -s {socket} {command!r}: no answer within {timeout} s") from exc
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines or not lines[0].startswith("BIRD "):
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"birdc -s {socket} {command!r} failed (exit {result.returncode}): {detail}")
    return lines[1:]
