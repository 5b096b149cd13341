"""v3 ⇄ `crd.projectcalico.org/v1` translation, as libcalico-go stores v3 objects in the v1 CRD.

The CR keeps only name, resourceVersion, a transformed uid and the labels/annotations that belong to
Calico (`projectcalico.org/`, `operator.tigera.io/`); the rest of the v3 metadata travels as JSON in
the `projectcalico.org/metadata` annotation. Works on wire dicts so it stays independent of the model.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from calico_nodestatus.api.errors import ValidationFailure

CRD_V1_GROUP: Final = "crd.projectcalico.org"
CRD_V1_API_VERSION: Final = "crd.projectcalico.org/v1"
METADATA_ANNOTATION: Final = "projectcalico.org/metadata"
_CALICO_KEY_MARKERS: Final = ("projectcalico.org/", "operator.tigera.io/")
# UUID bytes holding the version and variant bits; the transform leaves them alone.
_UUID_FIXED_BYTES: Final = frozenset({6, 8})
# Order of Kubernetes' ObjectMeta, which the annotation's JSON follows.
_ANNOTATION_KEYS: Final = ("generation", "creationTimestamp", "labels", "annotations")


def reverse_uid(uid: str) -> str:
    """libcalico-go's v1 CR uid ⇄ v3 uid transform: every byte bit-reversed except bytes 6 and 8.

    It is its own inverse.
    """
    try:
        raw = uuid.UUID(uid).bytes
    except ValueError:
        raise ValidationFailure("Metadata.UID", "expected a UUID", uid) from None
    flipped = bytes(
        byte if index in _UUID_FIXED_BYTES else int(f"{byte:08b}"[::-1], 2) for index, byte in enumerate(raw)
    )
    return str(uuid.UUID(bytes=flipped))


def is_calico_key(key: str) -> bool:
    """Whether a label/annotation key belongs to Calico (kept on the v1 CR itself)."""
    return any(marker in key for marker in _CALICO_KEY_MARKERS)


def _split(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(Calico-owned entries kept on the CR, the rest)."""
    calico = {key: value for key, value in values.items() if is_calico_key(key)}
    rest = {key: value for key, value in values.items() if not is_calico_key(key)}
    return calico, rest


def wire_to_crd_v1(wire: dict[str, Any]) -> dict[str, Any]:
    """A v3 wire dict (from `CalicoNodeStatus.to_wire()`) → the v1 custom resource dict."""
    meta = wire["metadata"]
    cr_labels, other_labels = _split(meta.get("labels", {}))
    cr_annotations, other_annotations = _split(meta.get("annotations", {}))
    carried = {
        "generation": meta.get("generation") or None,
        "creationTimestamp": meta.get("creationTimestamp"),
        "labels": other_labels or None,
        "annotations": other_annotations or None,
    }
    carried = {key: value for key, value in carried.items() if value is not None}
    cr_meta: dict[str, Any] = {"name": meta["name"]}
    if meta.get("resourceVersion"):
        cr_meta["resourceVersion"] = meta["resourceVersion"]
    if meta.get("uid"):
        cr_meta["uid"] = reverse_uid(meta["uid"])
    if cr_labels:
        cr_meta["labels"] = cr_labels
    cr_meta["annotations"] = {
        **cr_annotations,
        METADATA_ANNOTATION: json.dumps(carried, separators=(",", ":")),
    }
    return {
        "apiVersion": CRD_V1_API_VERSION,
        "kind": wire["kind"],
        "metadata": cr_meta,
        "spec": wire["spec"],
        "status": wire["status"],
    }


def _carried_metadata(text: object) -> dict[str, Any]:
    """The v3 metadata libcalico-go serialised into the metadata annotation."""
    try:
        carried = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        carried = None
    if not isinstance(carried, dict):
        field = f"Metadata.Annotations[{METADATA_ANNOTATION}]"
        raise ValidationFailure(field, "expected a JSON object of metadata", text)
    return carried


def crd_v1_to_wire(cr: object) -> dict[str, Any]:
    """A v1 custom resource dict → the v3 wire dict (validate it with `CalicoNodeStatus.from_wire`)."""
    if not isinstance(cr, dict) or not isinstance(cr.get("metadata"), dict):
        raise ValidationFailure("Metadata", "expected a custom resource with a metadata mapping")
    cr_meta: dict[str, Any] = cr["metadata"]
    annotations = dict(cr_meta.get("annotations") or {})
    carried_json = annotations.pop(METADATA_ANNOTATION, None)
    if carried_json is None:
        # Made with kubectl straight against the v1 CRD: its own metadata is the v3 metadata.
        carried = {key: cr_meta[key] for key in _ANNOTATION_KEYS if key in cr_meta}
        carried["annotations"] = annotations
    else:
        carried = _carried_metadata(carried_json)
        carried = {key: carried[key] for key in (*_ANNOTATION_KEYS, "name") if key in carried}
        if "creationTimestamp" not in carried and "creationTimestamp" in cr_meta:
            carried["creationTimestamp"] = cr_meta["creationTimestamp"]
        carried["labels"] = {**carried.get("labels", {}), **(cr_meta.get("labels") or {})}
        carried["annotations"] = {**carried.get("annotations", {}), **annotations}
    meta = {"name": carried.pop("name", cr_meta.get("name")), **carried}
    if cr_meta.get("resourceVersion"):
        meta["resourceVersion"] = cr_meta["resourceVersion"]
    if cr_meta.get("uid"):
        meta["uid"] = reverse_uid(cr_meta["uid"])
    meta = {key: value for key, value in meta.items() if value not in (None, {}, "")}
    wire: dict[str, Any] = {"kind": cr.get("kind"), "apiVersion": "projectcalico.org/v3", "metadata": meta}
    wire["spec"] = cr.get("spec")
    if cr.get("status") is not None:
        wire["status"] = cr["status"]
    return wire
