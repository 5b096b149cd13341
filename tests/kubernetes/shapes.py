"""Bodies shaped like kube-apiserver's for CalicoNodeStatus CRs and Leases (server-set fields included)."""

from __future__ import annotations

import json
from typing import Any

from tests.kubernetes.apiserver import status_body

V1_PATH = "/apis/crd.projectcalico.org/v1/caliconodestatuses"
V3_PATH = "/apis/projectcalico.org/v3/caliconodestatuses"
CR_UID = "1d54e3f5-0f6e-4b1a-9c2e-6a7b8c9d0e1f"
LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/calico-system/leases"


def v1_cr(
    name: str, node: str, resource_version: str, *, generation: int = 1, annotated: bool = True
) -> dict:
    """A v1 CR as libcalico-go leaves it (metadata annotation) or as kubectl creates it."""
    metadata: dict[str, Any] = {
        "name": name,
        "uid": CR_UID,
        "resourceVersion": resource_version,
        "generation": generation,
        "creationTimestamp": "2026-03-02T10:15:00Z",
        "labels": {"projectcalico.org/owner": "ops"},
        "managedFields": [
            {"manager": "calicoctl", "operation": "Update", "apiVersion": "crd.projectcalico.org/v1"}
        ],
    }
    if annotated:
        metadata["annotations"] = {
            "projectcalico.org/metadata": json.dumps(
                {"creationTimestamp": "2026-03-02T10:15:00Z", "labels": {"team": "net"}}
            )
        }
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "CalicoNodeStatus",
        "metadata": metadata,
        "spec": {"node": node, "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10},
        "status": {
            "lastUpdated": "2026-03-02T10:16:00Z",
            "agent": {"birdV4": {"state": "Ready", "routerID": "198.18.0.1"}, "birdV6": {}},
            "bgp": {
                "numberEstablishedV4": 1,
                "numberNotEstablishedV4": 0,
                "numberEstablishedV6": 0,
                "numberNotEstablishedV6": 0,
                "peersV4": [
                    {"peerIP": "198.18.0.2", "type": "NodeMesh", "state": "Established", "since": "10:15:30"}
                ],
            },
            "routes": {},
        },
    }


def v3_cr(name: str, node: str, resource_version: str, *, generation: int = 1) -> dict:
    cr = v1_cr(name, node, resource_version, generation=generation, annotated=False)
    cr["apiVersion"] = "projectcalico.org/v3"
    cr["metadata"]["managedFields"][0]["apiVersion"] = "projectcalico.org/v3"
    return cr


def cr_list(api_version: str, items: list[dict], resource_version: str, cont: str = "") -> dict:
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if cont:
        metadata["continue"] = cont
    return {"apiVersion": api_version, "kind": "CalicoNodeStatusList", "metadata": metadata, "items": items}


def event(kind: str, obj: dict) -> dict:
    return {"type": kind, "object": obj}


def bookmark(resource_version: str) -> dict:
    return event(
        "BOOKMARK",
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "CalicoNodeStatus",
            "metadata": {"resourceVersion": resource_version},
        },
    )


def gone(resource_version: str) -> dict:
    return status_body(410, "Expired", f"too old resource version: {resource_version} (9000)")


def not_found(name: str, group: str = "crd.projectcalico.org") -> dict:
    return status_body(
        404,
        "NotFound",
        f'caliconodestatuses.{group} "{name}" not found',
        {"name": name, "group": group, "kind": "caliconodestatuses"},
    )


def conflict(name: str) -> dict:
    return status_body(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on caliconodestatuses.crd.projectcalico.org "{name}": '
        "the object has been "
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": "crd.projectcalico.org", "kind": "caliconodestatuses"},
    )


def already_exists(name: str) -> dict:
    return status_body(
        409,
        "AlreadyExists",
        f'caliconodestatuses.crd.projectcalico.org "{name}" already exists',
        {"name": name, "group": "crd.projectcalico.org", "kind": "caliconodestatuses"},
    )


def lease(
    node: str, holder: str | None, resource_version: str, renew_time: str = "2026-03-02T10:20:00.000000Z"
) -> dict:
    spec: dict[str, Any] = {
        "leaseDurationSeconds": 30,
        "acquireTime": "2026-03-02T10:00:00.000000Z",
        "renewTime": renew_time,
    }
    if holder is not None:
        spec["holderIdentity"] = holder
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": f"calico-nodestatus-{node}",
            "namespace": "calico-system",
            "uid": "6f1c2b3a-1111-4222-8333-944455556666",
            "resourceVersion": resource_version,
            "creationTimestamp": "2026-03-02T10:00:00Z",
            "labels": {"app.kubernetes.io/managed-by": "calico-nodestatus"},
            "annotations": {"projectcalico.org/nodestatus-node": node},
        },
        "spec": spec,
    }
