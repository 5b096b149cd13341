"""A skipped test fails the run unless the allow-list says why it may skip (`--allowed-skips FILE`,
which `make test` passes): a lab, etcd, Prometheus or kube-apiserver test that skips because its
binary, root or network namespaces are missing means a broken install, not a pass.

The allow-list has one entry a line, `<node-id glob> | <reason>`; `#` starts a comment. An entry
without a reason is an error, and so is an entry that matched tests of the run but none of them
skipped (it is stale).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class AllowedSkip:
    pattern: str
    reason: str


def read_allow_list(path: Path) -> list[AllowedSkip]:
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, _, reason = (part.strip() for part in line.partition("|"))
        if not pattern or not reason:
            raise pytest.UsageError(f"{path}:{number}: expected `<node-id glob> | <reason>`, got {raw!r}")
        entries.append(AllowedSkip(pattern, reason))
    return entries


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--allowed-skips",
        metavar="FILE",
        type=Path,
        help="fail the run when a test skips without an entry in FILE (`<node-id glob> | <reason>`)",
    )


class SkipGate:
    def __init__(self, allowed: list[AllowedSkip]) -> None:
        self.allowed = allowed
        self.unexpected: list[tuple[str, str]] = []
        self.used: set[str] = set()
        self.collected: list[str] = []

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.collected = [item.nodeid for item in items]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        matches = [
            entry.pattern for entry in self.allowed if fnmatch.fnmatchcase(report.nodeid, entry.pattern)
        ]
        self.used.update(matches)
        if not matches:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.unexpected.append((report.nodeid, reason))

    def stale(self) -> list[str]:
        """Entries for tests that ran (were collected) without skipping."""
        return [
            entry.pattern
            for entry in self.allowed
            if entry.pattern not in self.used and fnmatch.filter(self.collected, entry.pattern)
        ]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.OK and (self.unexpected or self.stale()):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.unexpected:
            terminalreporter.section("unexpected skips (not in the allow-list): the run fails", red=True)
            for nodeid, reason in self.unexpected:
                terminalreporter.line(f"{nodeid}: {reason}")
        if self.stale():
            terminalreporter.section(
                "allow-list entries that matched no skipped test: the run fails", red=True
            )
            for pattern in self.stale():
                terminalreporter.line(pattern)


def pytest_configure(config: pytest.Config) -> None:
    path: Path | None = config.getoption("--allowed-skips")
    if path is not None:
        config.pluginmanager.register(SkipGate(read_allow_list(path)), "skip-gate")
