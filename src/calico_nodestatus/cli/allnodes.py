"""`apply --all-nodes`: one CalicoNodeStatus per known node in one command, optionally expiring.

Known nodes: the backend's node list (Kubernetes Node objects, Calico's node resources on etcd)
and every node with a live agent (its liveness record). Per node, the object ``nodestatus-<node>``
is created, or updated when its spec or expiry differ; a node that already has another object
reporting every requested class is left alone (its owner's object is not touched, expiry neither).
The writes are all-or-nothing, like ``apply -f``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import click

from calico_nodestatus.api import (
    CalicoNodeStatus,
    CalicoNodeStatusSpec,
    Manifest,
    NodeStatusClass,
    ObjectMeta,
)
from calico_nodestatus.api.annotations import EXPIRES_AT_ANNOTATION, format_expiry
from calico_nodestatus.cli.resources import WriteMode, write_manifests
from calico_nodestatus.datastore.base import Datastore, PermissionDenied

OBJECT_PREFIX = "nodestatus-"
_TTL_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TTL(click.ParamType):
    """A duration: ``20s``, ``30m``, ``2h``, ``1d`` or plain seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _TTL_RE.match(str(value))
        if not match or int(match.group(1)) == 0:
            self.fail(
                f"{value!r} is not a duration: expected e.g. 20s, 30m, 2h or 1d (more than 0)", param, ctx
            )
        return timedelta(seconds=int(match.group(1)) * _TTL_UNITS[match.group(2) or ""])


class Classes(click.ParamType):
    """A comma-separated list of classes: ``BGP`` or ``Agent,BGP``."""

    name = "classes"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[NodeStatusClass]:
        if isinstance(value, list):
            return value
        names = [part.strip() for part in str(value).split(",") if part.strip()]
        known = {cls.value.lower(): cls for cls in NodeStatusClass}
        unknown = [name for name in names if name.lower() not in known]
        if unknown or not names:
            self.fail(
                f"{value!r}: expected a comma-separated list of "
                f"{', '.join(c.value for c in NodeStatusClass)}",
                param,
                ctx,
            )
        return list(dict.fromkeys(known[name.lower()] for name in names))


@dataclass(frozen=True, slots=True)
class NodePlan:
    node: str
    name: str
    action: str  # created, updated, unchanged, kept
    desired: CalicoNodeStatus | None  # what to write (None: nothing)


def with_expiry(obj: CalicoNodeStatus, expires_at: datetime | None) -> CalicoNodeStatus:
    """``obj`` with the expiry annotation set (``expires_at`` None: left as it is)."""
    if expires_at is None:
        return obj
    annotations = {**obj.metadata.annotations, EXPIRES_AT_ANNOTATION: format_expiry(expires_at)}
    return obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"annotations": annotations})})


def plan_all_nodes(
    existing: Sequence[CalicoNodeStatus],
    nodes: Sequence[str],
    classes: Sequence[NodeStatusClass],
    period: int,
    expires_at: datetime | None,
) -> list[NodePlan]:
    """What to write for each node (pure). Raises ValidationFailure for a node name that makes no
    valid object name."""
    by_name = {obj.name: obj for obj in existing}
    plans = []
    for node in nodes:
        name = OBJECT_PREFIX + node
        spec = CalicoNodeStatusSpec(node=node, classes=list(classes), update_period_seconds=period)
        own = by_name.get(name)
        if own is None:
            covering = sorted(
                obj.name
                for obj in existing
                if obj.spec.node == node and set(classes) <= set(obj.spec.classes)
            )
            if covering:
                plans.append(NodePlan(node, covering[0], "kept", None))
                continue
            created = CalicoNodeStatus.from_wire(
                {"metadata": ObjectMeta(name=name).to_wire(), "spec": spec.to_wire()}
            )
            plans.append(NodePlan(node, name, "created", with_expiry(created, expires_at)))
            continue
        desired = with_expiry(own.model_copy(update={"spec": spec}), expires_at)
        same = desired.spec == own.spec and desired.metadata.annotations == own.metadata.annotations
        plans.append(NodePlan(node, name, "unchanged" if same else "updated", None if same else desired))
    return plans


async def known_nodes(datastore: Datastore) -> tuple[list[str], str | None]:
    """(node names, a warning when the backend's node list could not be read)."""
    warning = None
    try:
        listed = await datastore.list_nodes()
    except PermissionDenied as exc:
        listed, warning = [], f"the node list could not be read ({exc}); using the agents' liveness records"
    alive = [record.node for record in await datastore.list_liveness()]
    return sorted({*listed, *alive}), warning


async def apply_all_nodes(
    datastore: Datastore, classes: Sequence[NodeStatusClass], period: int, expires_at: datetime | None
) -> tuple[list[NodePlan], str | None]:
    nodes, warning = await known_nodes(datastore)
    existing, _revision = await datastore.list()
    plans = plan_all_nodes(existing, nodes, classes, period, expires_at)
    writes = [plan.desired for plan in plans if plan.desired is not None]
    await write_manifests(
        datastore, WriteMode.APPLY, [Manifest(obj, index, None) for index, obj in enumerate(writes, 1)]
    )
    return plans, warning
