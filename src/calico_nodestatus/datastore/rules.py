"""The write rules every backend applies (pure: the clock and uid come in as arguments).

They mirror the Kubernetes status-subresource strategy Calico's API server uses: create clears
status, update keeps the stored status, update_status keeps the stored spec/labels/generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from calico_nodestatus.api import CalicoNodeStatus, CalicoNodeStatusStatus
from calico_nodestatus.datastore.base import EventType, InvalidResourceVersion


def parse_resource_version(value: str | None, operation: str = "an Update") -> int:
    """The revision a write is conditioned on; missing or non-decimal values are refused."""
    if not value or not value.isdecimal():
        raise InvalidResourceVersion(value, operation)
    return int(value)


def prepare_create(obj: CalicoNodeStatus, uid: str, now: datetime) -> CalicoNodeStatus:
    """The object as first stored: server-managed metadata set, incoming status dropped."""
    created = now.replace(microsecond=0)  # Kubernetes times have second precision on the wire
    metadata = obj.metadata.model_copy(
        update={"uid": uid, "creation_timestamp": created, "generation": 1, "resource_version": None}
    )
    return obj.model_copy(update={"metadata": metadata, "status": CalicoNodeStatusStatus()})


def merge_update(stored: CalicoNodeStatus, incoming: CalicoNodeStatus) -> CalicoNodeStatus:
    """Spec, labels and annotations from `incoming`; identity and status from `stored`."""
    generation = stored.metadata.generation or 0
    if incoming.spec != stored.spec:
        generation += 1
    metadata = stored.metadata.model_copy(
        update={
            "labels": dict(incoming.metadata.labels),
            "annotations": dict(incoming.metadata.annotations),
            "generation": generation,
            "resource_version": None,
        }
    )
    return stored.model_copy(update={"metadata": metadata, "spec": incoming.spec})


def merge_status(stored: CalicoNodeStatus, incoming: CalicoNodeStatus) -> CalicoNodeStatus:
    """Status from `incoming`; everything else as stored."""
    metadata = stored.metadata.model_copy(update={"resource_version": None})
    return stored.model_copy(update={"metadata": metadata, "status": incoming.status})


def merge_annotations(stored: CalicoNodeStatus, changes: Mapping[str, str | None]) -> CalicoNodeStatus:
    """The stored object with the annotations in `changes` set (a value) or removed (None)."""
    annotations = dict(stored.metadata.annotations)
    for key, value in changes.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    metadata = stored.metadata.model_copy(update={"annotations": annotations, "resource_version": None})
    return stored.model_copy(update={"metadata": metadata})


def with_resource_version(obj: CalicoNodeStatus, revision: int) -> CalicoNodeStatus:
    return obj.model_copy(
        update={"metadata": obj.metadata.model_copy(update={"resource_version": str(revision)})}
    )


def node_filtered_event(
    event_type: EventType, previous_node: str | None, current_node: str, node: str
) -> EventType | None:
    """How a change looks to a watch of the objects whose spec.node is `node` (Kubernetes'
    field-selector semantics): an object entering the set is ADDED, one leaving it is DELETED
    (carrying the object as it now is), changes outside the set are not seen (None).
    `previous_node` is the stored object's node before the change, None when it did not exist."""
    if event_type is EventType.DELETED:
        return event_type if current_node == node else None
    was_on_node, is_on_node = previous_node == node, current_node == node
    if is_on_node:
        return EventType.MODIFIED if was_on_node else EventType.ADDED
    return EventType.DELETED if was_on_node else None
