"""The one datastore interface. Every backend (embedded, etcdv3, kubernetes) implements it and
passes the same contract suite (tests/datastore/test_contract.py).

Semantics every backend keeps:
- resourceVersion is an opaque decimal string that changes on every write of the object.
- ``update`` writes metadata (labels, annotations) and spec, keeps the stored status, and bumps
  ``generation`` only when the spec changed. ``update_status`` writes status only and keeps spec,
  labels and generation. ``update_annotations`` sets or removes the named annotations only (what
  the agent reports beside the status: on Kubernetes a merge patch, so the agent needs no right to
  rewrite a spec). All are compare-and-swap on ``metadata.resource_version``: a stale one raises
  ``Conflict``.
- ``watch`` yields every change after ``resource_version`` in order; when that revision is gone
  (compacted) it raises ``WatchExpired`` and the caller re-lists. A lost connection raises
  ``Unavailable``; watching again from the last event's ``resource_version`` resumes without gaps.
- A missing or malformed resourceVersion on a conditional write raises ``InvalidResourceVersion``.
- Liveness records are cheap per-node heartbeats that never rewrite a CalicoNodeStatus; an expired
  record (not renewed within its TTL) reads as absent.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from calico_nodestatus.api import CalicoNodeStatus

KIND = "CalicoNodeStatus"


class DatastoreError(Exception):
    """Base of every datastore failure; the message is what a user sees."""


class NotFound(DatastoreError):
    def __init__(self, name: str, detail: str = "not found") -> None:
        super().__init__(f"resource does not exist: {KIND}({name}) with error: {detail}")
        self.name = name


class AlreadyExists(DatastoreError):
    def __init__(self, name: str, detail: str = "already exists") -> None:
        super().__init__(f"resource already exists: {KIND}({name}) with error: {detail}")
        self.name = name


class Conflict(DatastoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"update conflict: {KIND}({name})")
        self.name = name


class InvalidResourceVersion(DatastoreError):
    """update/update_status/delete got a resourceVersion that is missing or not one of ours."""

    def __init__(self, value: str | None, operation: str = "an Update") -> None:
        reason = "field must be set" if not value else "expected a decimal revision"
        super().__init__(
            f"error with field Metadata.ResourceVersion = '{value or ''}' ({reason} for {operation} request)"
        )
        self.value = value


class WatchExpired(DatastoreError):
    """The requested revision is no longer available (compacted); re-list and watch again."""


class Unavailable(DatastoreError):
    """The datastore cannot be reached or timed out; retry with backoff."""


class PermissionDenied(DatastoreError):
    """The datastore refused the request for this identity (Kubernetes RBAC, etcd auth). Retrying
    will not help until an operator grants it; the message names what was refused."""

    MARKER = "permission denied"

    def __init__(self, detail: str, remedy: str) -> None:
        super().__init__(f"{self.MARKER}: {detail}; {remedy}")


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    object: CalicoNodeStatus
    # The revision after this event; watching again from it resumes right after the event.
    resource_version: str


@dataclass(frozen=True, slots=True)
class LivenessRecord:
    node: str
    holder: str  # identity of the agent process (hostname/pid) that renews it
    renewed_at: datetime  # UTC
    ttl_seconds: float

    def is_alive(self, now: datetime) -> bool:
        return (now - self.renewed_at).total_seconds() <= self.ttl_seconds


class Datastore(abc.ABC):
    """Async access to CalicoNodeStatus objects and agent liveness records."""

    @abc.abstractmethod
    async def get(self, name: str) -> CalicoNodeStatus: ...

    @abc.abstractmethod
    async def list(self, node: str | None = None) -> tuple[list[CalicoNodeStatus], str]:
        """All objects (only those whose spec.node == node, if given) and the list's revision."""

    @abc.abstractmethod
    async def create(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        """Stores a new object; uid, creationTimestamp, generation=1 and resourceVersion are set
        by the store, status is dropped. Raises AlreadyExists."""

    @abc.abstractmethod
    async def update(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        """Spec/metadata update, CAS on obj.metadata.resource_version. Raises Conflict, NotFound."""

    @abc.abstractmethod
    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        """Status-only update, CAS on obj.metadata.resource_version. Raises Conflict, NotFound."""

    @abc.abstractmethod
    async def update_annotations(
        self, obj: CalicoNodeStatus, changes: Mapping[str, str | None]
    ) -> CalicoNodeStatus:
        """Sets (a value) or removes (None) the annotations in ``changes`` and nothing else, CAS on
        obj.metadata.resource_version; generation is kept. Raises Conflict, NotFound."""

    @abc.abstractmethod
    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        """Deletes and returns the last stored object. Raises NotFound, Conflict (stale rv)."""

    @abc.abstractmethod
    def watch(self, resource_version: str, node: str | None = None) -> AsyncIterator[WatchEvent]:
        """Changes after resource_version, in order; raises WatchExpired when it is gone."""

    @abc.abstractmethod
    async def renew_liveness(self, node: str, holder: str, ttl_seconds: float) -> None:
        """Creates or refreshes this node's liveness record."""

    @abc.abstractmethod
    async def release_liveness(self, node: str, holder: str) -> None:
        """Removes the record if `holder` owns it (clean agent shutdown)."""

    @abc.abstractmethod
    async def get_liveness(self, node: str) -> LivenessRecord | None:
        """This node's record, or None when there is none or it expired."""

    @abc.abstractmethod
    async def list_liveness(self) -> list[LivenessRecord]:
        """Every unexpired record, ordered by node."""

    async def list_nodes(self) -> list[str]:
        """The cluster's node names where the backend has them (Kubernetes Node objects, Calico's
        node resources on etcd), sorted; none on the embedded datastore. Agents' liveness records
        name the other known nodes."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends override it
        """Releases connections."""

    async def __aenter__(self) -> Datastore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
