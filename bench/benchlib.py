"""Shared helpers of the benchmark scripts: RESULT lines, statistics, /proc readings, and labs and
child processes that are always cleaned up (also on Ctrl-C, SIGTERM or a failure).

Every script prints its figures and ends with one line per headline figure:
`RESULT <name> <value> goal <goal> <ok|miss>`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico_nodestatus.lab import Lab

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
VENV_PYTHON = str(VENV_BIN / "python")


@dataclass(frozen=True, slots=True)
class Result:
    """One headline figure. `ok` compares `value` with the goal (lower is better unless told)."""

    name: str
    value: float | str
    goal: str
    ok: bool

    def line(self) -> str:
        value = f"{self.value:.4g}" if isinstance(self.value, float) else str(self.value)
        return f"RESULT {self.name} {value} goal {self.goal} {'ok' if self.ok else 'miss'}"


def at_most(name: str, value: float, goal: float, unit: str = "") -> Result:
    return Result(name, value, f"<={goal:g}{unit}", value <= goal)


def print_results(results: Sequence[Result]) -> None:
    print()
    for result in results:
        print(result.line(), flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"Python {platform.python_version()}, load average {load}"
    )


# ---- /proc readings ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (fields 14/15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (current) and VmHWM (peak RSS) in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def self_peak_rss_mib() -> float:
    return memory_kib(os.getpid())["VmHWM"] / 1024


# ---- cleanup -----------------------------------------------------------------------------------


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main: Callable[[], int]) -> None:
    """Runs a benchmark's main with SIGTERM turned into KeyboardInterrupt, so every `finally`
    (labs, etcd, agents) runs whichever way the script ends."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = main()
    except KeyboardInterrupt:
        say("interrupted; cleaned up")
        code = 130
    sys.exit(code)


@contextlib.contextmanager
def bench_lab(name: str, **options: object) -> Iterator[Lab]:
    """A lab owned by this process (name must start with `bn`), destroyed on exit."""
    assert name.startswith("bn"), "benchmark labs are named bn…"
    say(f"lab {name}: up {options}")
    started = time.monotonic()
    lab = Lab.up(name, owner_pid=os.getpid(), timeout=60.0, **options)  # type: ignore[arg-type]
    say(f"lab {name}: ready in {time.monotonic() - started:.1f} s")
    try:
        yield lab
    finally:
        Lab.destroy(name)


@contextlib.contextmanager
def child(argv: Sequence[str], **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, terminated (then killed) on exit."""
    process = subprocess.Popen(list(argv), **popen)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class Etcd:
    endpoint: str
    pid: int
    data_dir: Path

    def db_size_mib(self) -> float:
        return (self.data_dir / "member" / "snap" / "db").stat().st_size / 2**20


@contextlib.contextmanager
def etcd_server(quota_bytes: int = 8 * 2**30) -> Iterator[Etcd]:
    """A real etcd on loopback with a temporary data dir, stopped and removed on exit."""
    import shutil
    import tempfile
    import urllib.request

    data_dir = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    client, peer = free_port(), free_port()
    argv = [
        "/usr/bin/etcd",
        "--name=bench",
        f"--data-dir={data_dir}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=bench=http://127.0.0.1:{peer}",
        f"--quota-backend-bytes={quota_bytes}",
        "--log-level=error",
    ]
    try:
        with child(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
            endpoint = f"http://127.0.0.1:{client}"
            deadline = time.monotonic() + 15
            while True:
                try:
                    with urllib.request.urlopen(f"{endpoint}/health", timeout=1) as reply:
                        if b"true" in reply.read():
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("etcd did not become healthy within 15 s")
                time.sleep(0.1)
            yield Etcd(endpoint, process.pid, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
