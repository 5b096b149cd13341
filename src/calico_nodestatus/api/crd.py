"""The CustomResourceDefinition for CalicoNodeStatus, generated from the model.

Default group is `crd.projectcalico.org` (version v1, Calico's storage CRD); `projectcalico.org`
gives the v3 CRD. Unlike upstream's, ours enforces the validator's rules the schema can express:
required spec fields, the 0-86400 period range, the node name pattern; and it adds printer columns,
a status subresource and `.spec.node` as a selectable field.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from calico_nodestatus.api.crd_v1 import CRD_V1_GROUP
from calico_nodestatus.api.manifests import dump_yaml
from calico_nodestatus.api.model import (
    API_GROUP,
    KIND,
    LIST_KIND,
    MAX_UPDATE_PERIOD_SECONDS,
    NAME_PATTERN,
    CalicoNodeStatus,
)

PLURAL: Final = "caliconodestatuses"
SINGULAR: Final = "caliconodestatus"
_VERSION_OF_GROUP: Final = {CRD_V1_GROUP: "v1", API_GROUP: "v3"}

# Schema additions per wire path ("spec.classes", "status.bgp.peersV4", ...).
_FIELD_EXTRAS: Final[dict[str, dict[str, Any]]] = {
    "spec": {"description": "What to report about which node, and how often."},
    "spec.node": {
        "description": "The Calico node whose BIRD is queried.",
        "minLength": 1,
        "pattern": NAME_PATTERN,
    },
    "spec.classes": {
        "description": "The kinds of status to report: Agent, BGP, Routes.",
        "x-kubernetes-list-type": "set",
    },
    "spec.updatePeriodSeconds": {
        "description": "Seconds between status refreshes; 0 reports once. At most one day.",
        "format": "int32",
        "minimum": 0,
        "maximum": MAX_UPDATE_PERIOD_SECONDS,
    },
    "status": {"description": "Written by the node status agent; users do not set it."},
    "status.lastUpdated": {"description": "When the agent last wrote this status (UTC).", "nullable": True},
    # The counters are encoded even when zero, so the schema requires them (as upstream's does).
    "status.bgp": {
        "required": [
            "numberEstablishedV4",
            "numberNotEstablishedV4",
            "numberEstablishedV6",
            "numberNotEstablishedV6",
        ]
    },
    "status.bgp.peersV4": {"x-kubernetes-list-type": "atomic"},
    "status.bgp.peersV6": {"x-kubernetes-list-type": "atomic"},
    "status.routes.routesV4": {"x-kubernetes-list-type": "atomic"},
    "status.routes.routesV6": {"x-kubernetes-list-type": "atomic"},
}
_PRINTER_COLUMNS: Final = [
    {"name": "Node", "type": "string", "jsonPath": ".spec.node", "description": "The node reported on"},
    {"name": "Classes", "type": "string", "jsonPath": ".spec.classes", "description": "What is reported"},
    {"name": "Period", "type": "integer", "jsonPath": ".spec.updatePeriodSeconds", "description": "Seconds"},
    {"name": "Last-Updated", "type": "date", "jsonPath": ".status.lastUpdated"},
]


def build_crd(group: str = CRD_V1_GROUP) -> dict[str, Any]:
    """The CRD as a dict, for `crd.projectcalico.org` (v1) or `projectcalico.org` (v3)."""
    if group not in _VERSION_OF_GROUP:
        raise ValueError(f"unknown API group {group!r}; expected one of {', '.join(_VERSION_OF_GROUP)}")
    root = _object_schema(CalicoNodeStatus, "")
    root["properties"]["metadata"] = {"type": "object"}
    root["description"] = "Asks the agent on spec.node to report BIRD status into status."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": KIND, "listKind": LIST_KIND, "plural": PLURAL, "singular": SINGULAR},
            "scope": "Cluster",
            "versions": [
                {
                    "name": _VERSION_OF_GROUP[group],
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                    "selectableFields": [{"jsonPath": ".spec.node"}],
                }
            ],
        },
    }


def crd_yaml(group: str = CRD_V1_GROUP) -> str:
    """The CRD manifest text (what `calico-nodestatus crd` prints and deploy/crd.yaml holds)."""
    return dump_yaml(build_crd(group))


def _object_schema(model: type[BaseModel], path: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        child_path = f"{path}.{key}" if path else key
        properties[key] = {**_type_schema(field.annotation, child_path), **_FIELD_EXTRAS.get(child_path, {})}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = [field.alias or name for name, field in model.model_fields.items() if field.is_required()]
    if required:
        schema["required"] = required
    return schema


def _type_schema(annotation: Any, path: str) -> dict[str, Any]:
    annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _type_schema(item, path)}
    if origin is typing.Literal:
        return {"type": "string"}
    if origin is dict:
        return {"type": "object", "additionalProperties": {"type": "string"}}
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _object_schema(annotation, path)
        if issubclass(annotation, enum.Enum):
            return {"type": "string", "enum": [member.value for member in annotation]}
        if issubclass(annotation, datetime):
            return {"type": "string", "format": "date-time"}
        if issubclass(annotation, bool):
            return {"type": "boolean"}
        if issubclass(annotation, int):
            return {"type": "integer"}
        if issubclass(annotation, str):
            return {"type": "string"}
    raise TypeError(f"no CRD schema for {annotation!r} at {path}")


def _strip_optional(annotation: Any) -> Any:
    """`X | None` → X, and `Annotated[X, ...]` → X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation
