"""The agent's status file: per-component readiness/liveness, replaced atomically.

Upstream kube-controllers truncates and rewrites its status file in place, so a probe that reads
at the wrong moment sees an empty or partial document ("unexpected end of JSON input"). Here the
writer builds the whole document in a temporary file in the same directory, fsyncs it, renames it
over the old one and fsyncs the directory: a reader opens either the old or the new inode, never a
partial one, and the new content survives a crash once ``write_status_file`` returns.

Document (camelCase JSON, one object)::

    {"version": 1, "writtenAt": "...", "ready": true, "live": true,
     "components": {"bird": {"ready": true, "live": true, "reason": "",
                             "changedAt": "...", "updatedAt": "..."}}}

``ready``/``live`` at the top are derived (all components ready/live, and at least one component)
for consumers that only want one bit; readers recompute them from ``components``.
``writtenAt`` is refreshed on every write, so a reader can tell a dead writer by its age.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field
from pydantic.alias_generators import to_camel

from calico_nodestatus.health.result import CheckResult
from calico_nodestatus.privatedirs import make_private_dirs

FORMAT_VERSION = 1
FILE_MODE = 0o600


class StatusFileError(Exception):
    """The status file is missing, unreadable or not a valid status document."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ComponentHealth(_Model):
    """One component's state. ``changed_at``: when (ready, live, reason) last changed."""

    ready: bool
    live: bool
    reason: str = ""
    changed_at: datetime
    updated_at: datetime


class StatusReport(_Model):
    version: int = Field(default=FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    written_at: datetime
    components: dict[str, ComponentHealth]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ready(self) -> bool:
        return bool(self.components) and all(c.ready for c in self.components.values())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def live(self) -> bool:
        return bool(self.components) and all(c.live for c in self.components.values())

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


def write_status_file(path: Path, report: StatusReport) -> None:
    """Replaces ``path`` with ``report`` atomically (mode 0600; missing directories are made 0700)."""
    directory = path.parent
    make_private_dirs(directory)
    data = report.to_json().encode()
    # mkstemp creates the file 0600 and with a unique name, so concurrent writers never share one.
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_status_file(path: Path) -> StatusReport:
    """Reads and validates the status file; every failure is a ``StatusFileError`` naming the path."""
    prefix = f"failed to read status file {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StatusFileError(f"{prefix}: file does not exist (has the agent started?)") from None
    except OSError as exc:
        raise StatusFileError(f"{prefix}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise StatusFileError(f"{prefix}: file is empty")
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatusFileError(f"{prefix}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise StatusFileError(f"{prefix}: expected a JSON object, got {type(document).__name__}")
    try:
        return StatusReport.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise StatusFileError(
            f"{prefix}: field {field!r}: {first['msg']} (got {first.get('input')!r})"
        ) from None


class StatusFileWriter:
    """Keeps the components' state in memory and rewrites the whole file on every update.

    Every update rewrites (even when nothing changed) so ``writtenAt`` doubles as a heartbeat.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._components: dict[str, ComponentHealth] = {}

    def update(self, component: str, *, ready: bool, live: bool, reason: str, now: datetime) -> StatusReport:
        previous = self._components.get(component)
        unchanged = previous is not None and (previous.ready, previous.live, previous.reason) == (
            ready,
            live,
            reason,
        )
        self._components[component] = ComponentHealth(
            ready=ready,
            live=live,
            reason=reason,
            changed_at=previous.changed_at if unchanged and previous else now,
            updated_at=now,
        )
        report = StatusReport(written_at=now, components=dict(self._components))
        write_status_file(self.path, report)
        return report


def _not_ok_reasons(report: StatusReport, attribute: str) -> str:
    # Sorted by component name so the probe message is stable between runs (upstream: map order).
    return "; ".join(
        f"{name}: {health.reason or f'not {attribute}'}"
        for name, health in sorted(report.components.items())
        if not getattr(health, attribute)
    )


def evaluate_status_report(
    report: StatusReport, *, now: datetime, max_age: timedelta | None
) -> list[CheckResult]:
    """Readiness and liveness as the status file states them.

    With ``max_age``, a file not rewritten within that time fails both (its writer is gone or
    stuck, so whatever it last said no longer holds).
    """
    age = now - report.written_at
    details = {
        "writtenAt": report.written_at.isoformat(),
        "ageSeconds": round(age.total_seconds(), 3),
        "components": {
            name: health.model_dump(mode="json", by_alias=True) for name, health in report.components.items()
        },
    }
    results = []
    for attribute, check in (("ready", "status-file-ready"), ("live", "status-file-live")):
        if max_age is not None and age > max_age:
            message = (
                f"status file not {attribute}: last written {age.total_seconds():.0f}s ago, "
                f"more than the allowed {max_age.total_seconds():.0f}s"
            )
            ok = False
        elif not report.components:
            message, ok = f"status file not {attribute}: no components reported", False
        elif getattr(report, attribute):
            message, ok = f"status file: {', '.join(sorted(report.components))} {attribute}", True
        else:
            message, ok = f"status file not {attribute}: {_not_ok_reasons(report, attribute)}", False
        results.append(CheckResult(check=check, ok=ok, message=message, details=details))
    return results
