"""Kubernetes datastore (`DATASTORE_TYPE=kubernetes`): CalicoNodeStatus custom resources.

Calico's default mode stores the objects in the `crd.projectcalico.org/v1` CRD (translated with the
`projectcalico.org/metadata` annotation and the UID transform, see the api package); clusters with
the native `projectcalico.org/v3` CRD are used directly. The group comes from `CALICO_API_GROUP` or,
like libcalico-go, from API discovery. Liveness records are `coordination.k8s.io/v1` Leases in the
agent's namespace (`POD_NAMESPACE`, default `calico-system`).

lightkube supplies the configuration (in-cluster service account, `KUBECONFIG`), authentication and
TLS; the requests themselves are plain REST on its HTTP client, because the contract needs what the
typed client does not expose: delete preconditions returning the deleted object, watch bookmarks,
and a `/status` fallback for CRDs created without the status subresource.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx2
from lightkube.config.client_adapter import AsyncClient as adapter_client
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.api.crd_v1 import crd_v1_to_wire, is_calico_key
from calico_nodestatus.api.errors import ValidationFailure
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    Datastore,
    DatastoreError,
    EventType,
    InvalidResourceVersion,
    LivenessRecord,
    NotFound,
    PermissionDenied,
    Unavailable,
    WatchEvent,
    WatchExpired,
)

if TYPE_CHECKING:
    from calico_nodestatus.datastore.config import DatastoreConfig

log = logging.getLogger(__name__)

V1_API_VERSION: Final = "crd.projectcalico.org/v1"
V3_API_VERSION: Final = "projectcalico.org/v3"
PLURAL: Final = "caliconodestatuses"
API_GROUP_ENV: Final = "CALICO_API_GROUP"
NAMESPACE_ENV: Final = "POD_NAMESPACE"
DEFAULT_NAMESPACE: Final = "calico-system"
LEASE_NAME_PREFIX: Final = "calico-nodestatus-"
LEASE_NODE_ANNOTATION: Final = "projectcalico.org/nodestatus-node"
LEASE_MANAGED_BY: Final = ("app.kubernetes.io/managed-by", "calico-nodestatus")
# The server ends each watch request after this long; the watch then resumes from the last revision.
WATCH_SERVER_TIMEOUT_SECONDS: Final = 300
LIST_PAGE_SIZE: Final = 500
REQUEST_TIMEOUT_SECONDS: Final = 10.0
MERGE_PATCH: Final = "application/merge-patch+json"
RBAC_REMEDY: Final = (
    "grant the rules of deploy/rbac.yaml to this identity (the agent's ServiceAccount needs get, list, "
    "watch, patch and delete on caliconodestatuses, update on caliconodestatuses/status, and its Lease)"
)
_UNSUPPORTED_FIELD_LABEL: Final = "field label not supported"
# ObjectMeta fields the v3 model carries; the server adds others (managedFields, ...).
_V3_METADATA_KEYS: Final = (
    "name",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "labels",
    "annotations",
)


def choose_api_version(env_value: str | None, discovered_groups: Iterable[str] | None) -> str:
    """libcalico-go's rule: the env var decides if set; otherwise v3 only when discovery shows
    `projectcalico.org` without `crd.projectcalico.org`; a failed discovery (None) means v1."""
    if env_value:
        return V3_API_VERSION if env_value == V3_API_VERSION else V1_API_VERSION
    groups = set(discovered_groups or ())
    if "projectcalico.org" in groups and "crd.projectcalico.org" not in groups:
        return V3_API_VERSION
    return V1_API_VERSION


def node_field_selector(node: str) -> str:
    """`spec.node=<node>` with the selector syntax's special characters escaped."""
    escaped = node.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    return f"spec.node={escaped}"


def node_view_event(
    event_type: EventType, name: str, obj_node: str, node: str, known: set[str]
) -> EventType | None:
    """What a watch filtered server-side on `spec.node` would deliver for this event, tracking
    in `known` the names currently on `node`: an object moving onto the node is ADDED, one moving
    away is DELETED, changes of other nodes' objects are dropped (None)."""
    was_on_node = name in known
    on_node = obj_node == node and event_type is not EventType.DELETED
    if on_node:
        known.add(name)
    else:
        known.discard(name)
    if event_type is EventType.DELETED:
        return event_type if (was_on_node or obj_node == node) else None
    if on_node:
        return EventType.MODIFIED if was_on_node else EventType.ADDED
    return EventType.DELETED if was_on_node else None


def wire_from_cr(api_version: str, cr: dict[str, Any]) -> dict[str, Any]:
    """The v3 wire dict of a custom resource read from the API server.

    In v1 mode the generation is the CR's live one (Kubernetes bumps it on spec changes only), not
    the stale copy in the metadata annotation that libcalico-go reads, so spec edits are detectable.
    """
    cr_meta = cr.get("metadata") or {}
    if api_version == V1_API_VERSION:
        wire = crd_v1_to_wire(cr)
        if "generation" in cr_meta:
            wire["metadata"]["generation"] = cr_meta["generation"]
        return wire
    return {**cr, "metadata": {key: cr_meta[key] for key in _V3_METADATA_KEYS if key in cr_meta}}


def checked_revision(value: str | None, operation: str) -> str:
    """The resourceVersion of a conditional write, which must be one of ours (decimal)."""
    if not value or not value.isdecimal():
        raise InvalidResourceVersion(value, operation)
    return value


def status_message(body: object) -> str:
    """The message of a Kubernetes `Status` body (or the raw text when it is not one)."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(body)


def error_for_status(code: int, body: object, name: str, *, creating: bool = False) -> DatastoreError:
    """Maps an API failure (HTTP code + `Status` body) onto the datastore's error types."""
    message = status_message(body)
    if code == 404:
        return NotFound(name, message)
    if code == 409:
        return AlreadyExists(name, message) if creating else Conflict(name)
    if code == 410:
        return WatchExpired(message)
    if code == 403:
        return PermissionDenied(f"the kubernetes API answered 403: {message}", RBAC_REMEDY)
    if code == 429 or code >= 500:
        return Unavailable(f"kubernetes API unavailable ({code}): {message}")
    return DatastoreError(f"kubernetes API rejected the request ({code}): {message}")


def lease_record(lease: dict[str, Any]) -> LivenessRecord | None:
    """A liveness record from a Lease; None for a released lease (no holder), a foreign one, or one
    whose fields are not of the Lease's types. Expiry is the caller's test (`LivenessRecord.is_alive`)."""
    spec = _mapping(lease.get("spec"))
    node = _mapping(_mapping(lease.get("metadata")).get("annotations")).get(LEASE_NODE_ANNOTATION)
    holder, renewed = spec.get("holderIdentity"), spec.get("renewTime")
    duration = spec.get("leaseDurationSeconds") or 0
    if not (isinstance(node, str) and isinstance(holder, str) and isinstance(renewed, str)):
        return None
    if not (node and holder) or isinstance(duration, bool) or not isinstance(duration, int | float):
        return None
    try:
        renewed_at = datetime.fromisoformat(renewed).astimezone(UTC)
    except ValueError:
        return None
    return LivenessRecord(node=node, holder=holder, renewed_at=renewed_at, ttl_seconds=float(duration))


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _micro_time(moment: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _load_kube_config(kubeconfig: str | None) -> KubeConfig:
    try:
        return KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except (ConfigError, OSError) as exc:
        source = kubeconfig or "in-cluster service account or KUBECONFIG"
        raise DatastoreError(f"kubernetes datastore: cannot load configuration from {source}: {exc}") from exc


class KubernetesDatastore(Datastore):
    """CalicoNodeStatus objects as custom resources, liveness records as Leases."""

    def __init__(
        self,
        config: DatastoreConfig,
        *,
        api_version: str | None = None,
        namespace: str | None = None,
    ) -> None:
        kube_config = _load_kube_config(config.kubeconfig).get()
        if kube_config is None:
            raise DatastoreError("kubernetes datastore: the kubeconfig has no current context")
        self._server = kube_config.cluster.server
        self._http = adapter_client(
            kube_config, ConnectionParams(timeout=httpx2.Timeout(REQUEST_TIMEOUT_SECONDS))
        )
        self._api_version = api_version
        self._configured_group = config.kube_api_group
        self._namespace = namespace or os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE
        # Learnt on first use: whether the CRD declares spec.node selectable.
        self._server_node_filter = True

    # --- plumbing -------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: object = None,
        content_type: str | None = None,
    ) -> httpx2.Response:
        try:
            if content_type is None:
                return await self._http.request(method, path, params=params, json=body)
            return await self._http.request(
                method, path, params=params, content=json.dumps(body), headers={"Content-Type": content_type}
            )
        except httpx2.TransportError as exc:
            raise Unavailable(f"kubernetes API {self._server} unreachable: {exc}") from exc

    async def _cr_request(
        self,
        method: str,
        path: str,
        name: str,
        *,
        params: dict[str, str] | None = None,
        body: object = None,
        creating: bool = False,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        response = await self._send(method, path, params=params, body=body, content_type=content_type)
        if not response.is_success:
            raise error_for_status(response.status_code, _json_or_text(response), name, creating=creating)
        return reply_object(response, name)

    async def api_version(self) -> str:
        """The CRD group/version in use (decided once, on first use)."""
        if self._api_version is None:
            env_value = self._configured_group or os.environ.get(API_GROUP_ENV)
            groups: list[str] | None = None
            if not env_value:
                try:
                    response = await self._http.get("/apis")
                    response.raise_for_status()
                    groups = [group["name"] for group in response.json().get("groups", [])]
                except (httpx2.HTTPError, ValueError, KeyError, TypeError):
                    groups = None  # libcalico-go falls back to v1 on any discovery error
            self._api_version = choose_api_version(env_value, groups)
        return self._api_version

    async def _collection(self) -> str:
        return f"/apis/{await self.api_version()}/{PLURAL}"

    async def _item(self, name: str) -> str:
        return f"{await self._collection()}/{quote(name, safe='')}"

    async def _to_body(self, obj: CalicoNodeStatus) -> dict[str, Any]:
        if await self.api_version() == V1_API_VERSION:
            return obj.to_crd_v1()
        return obj.to_wire()

    async def _decode(self, body: dict[str, Any]) -> CalicoNodeStatus:
        return CalicoNodeStatus.from_wire(wire_from_cr(await self.api_version(), body))

    async def _from_body(self, body: dict[str, Any]) -> CalicoNodeStatus:
        """The object of one reply; one edited into an invalid state (kubectl) is a DatastoreError
        naming it, as on the other backends, so callers handle it like any datastore failure."""
        try:
            return await self._decode(body)
        except ValidationFailure as exc:
            name = (body.get("metadata") or {}).get("name")
            raise DatastoreError(f"{PLURAL} {name} is not a valid CalicoNodeStatus: {exc}") from exc

    async def _valid_objects(self, bodies: Iterable[dict[str, Any]]) -> list[CalicoNodeStatus]:
        """Decoded objects; ones edited into an invalid state with kubectl are skipped, logged."""
        objects = []
        for body in bodies:
            try:
                objects.append(await self._decode(body))
            except ValidationFailure as exc:
                log.warning(
                    "ignoring invalid %s %s: %s", PLURAL, (body.get("metadata") or {}).get("name"), exc
                )
        return objects

    # --- CalicoNodeStatus -------------------------------------------------------------------------

    async def get(self, name: str) -> CalicoNodeStatus:
        return await self._from_body(await self._cr_request("GET", await self._item(name), name))

    async def _list_pages(
        self, field_selector: str | None, at_revision: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        params = {"limit": str(LIST_PAGE_SIZE)}
        if field_selector:
            params["fieldSelector"] = field_selector
        if at_revision is not None:
            params |= {"resourceVersion": at_revision, "resourceVersionMatch": "Exact"}
        items: list[dict[str, Any]] = []
        revision = ""
        while True:
            page = await self._cr_request("GET", await self._collection(), PLURAL, params=params)
            items.extend(page.get("items") or [])
            revision = revision or page["metadata"]["resourceVersion"]
            cont = page["metadata"].get("continue")
            if not cont:
                return items, revision
            params["continue"] = cont  # the token carries the revision, which may not be repeated
            params.pop("resourceVersion", None)
            params.pop("resourceVersionMatch", None)

    async def list(self, node: str | None = None) -> tuple[list[CalicoNodeStatus], str]:
        items: list[dict[str, Any]] | None = None
        if node is not None and self._server_node_filter:
            try:
                items, revision = await self._list_pages(node_field_selector(node))
            except DatastoreError as exc:
                if _UNSUPPORTED_FIELD_LABEL not in str(exc):
                    raise
                self._server_node_filter = False  # CRD without selectableFields (Kubernetes < 1.31)
        if items is None:
            items, revision = await self._list_pages(None)
        objects = await self._valid_objects(items)
        if node is not None:
            objects = [obj for obj in objects if obj.spec.node == node]
        return objects, revision

    async def create(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        # Server-managed metadata is the server's to set; dropped before translation (in v1 mode a
        # client's uid would otherwise be transformed, and refused if it is not a UUID).
        server_managed = dict.fromkeys(("uid", "resource_version", "creation_timestamp", "generation"))
        body = await self._to_body(
            obj.model_copy(update={"metadata": obj.metadata.model_copy(update=server_managed)})
        )
        body.pop("status", None)
        name = obj.metadata.name
        created = await self._cr_request("POST", await self._collection(), name, body=body, creating=True)
        return await self._from_body(created)

    async def update(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        name = obj.metadata.name
        checked_revision(obj.metadata.resource_version, "an Update")
        body = await self._to_body(obj)
        return await self._from_body(await self._cr_request("PUT", await self._item(name), name, body=body))

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        name = obj.metadata.name
        checked_revision(obj.metadata.resource_version, "an Update")
        item = await self._item(name)
        body = await self._to_body(obj)
        response = await self._send("PUT", f"{item}/status", body=body)
        if response.is_success:
            return await self._from_body(reply_object(response, name))
        if response.status_code != 404:
            raise error_for_status(response.status_code, _json_or_text(response), name)
        # A CRD without the status subresource (Calico before 2026) answers 404 naming the object,
        # exactly as for a missing object: the GET below tells them apart (it raises NotFound).
        # Nothing is remembered, since the CRD may gain the subresource at any time, and from then
        # on a PUT of the main resource would silently drop the status.
        stored = await self._cr_request("GET", item, name)
        if stored["metadata"].get("resourceVersion") != body["metadata"].get("resourceVersion"):
            raise Conflict(name)
        stored["status"] = body.get("status")
        return await self._from_body(await self._cr_request("PUT", item, name, body=stored))

    async def update_annotations(
        self, obj: CalicoNodeStatus, changes: Mapping[str, str | None]
    ) -> CalicoNodeStatus:
        # A JSON merge patch of the annotations alone, conditioned on the resourceVersion: the
        # agent's RBAC then needs `patch`, never `update`, on the main resource.
        name = obj.metadata.name
        revision = checked_revision(obj.metadata.resource_version, "an Update")
        if await self.api_version() == V1_API_VERSION and not all(map(is_calico_key, changes)):
            # Other keys travel inside libcalico-go's metadata annotation, which a patch cannot edit.
            raise DatastoreError(
                f"kubernetes datastore: only Calico annotation keys can be patched, got {sorted(changes)}"
            )
        patch = {"metadata": {"resourceVersion": revision, "annotations": dict(changes)}}
        patched = await self._cr_request(
            "PATCH", await self._item(name), name, body=patch, content_type=MERGE_PATCH
        )
        return await self._from_body(patched)

    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        # A custom resource's DELETE answers with a `Status`, not the object: the object is read
        # first and deleted on that read's resourceVersion, so what is returned is what was deleted.
        expected = None if resource_version is None else checked_revision(resource_version, "a Delete")
        item = await self._item(name)
        while True:
            stored = await self._cr_request("GET", item, name)
            revision = stored["metadata"].get("resourceVersion")
            if expected is not None and revision != expected:
                raise Conflict(name)
            options = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "preconditions": {"resourceVersion": revision},
            }
            try:
                await self._cr_request("DELETE", item, name, body=options)
            except Conflict:
                if expected is not None:
                    raise
                continue  # written in between: read again
            return await self._from_body(stored)

    async def _names_on_node_at(self, node: str, revision: str) -> set[str]:
        """The objects on `node` at exactly `revision`, where a client-side filtered watch starts:
        a list of now would miss an object that left the node in between (its DELETED never
        delivered). A compacted revision is a 410, WatchExpired, as for the watch itself."""
        items, _ = await self._list_pages(None, at_revision=revision)
        return {obj.metadata.name for obj in await self._valid_objects(items) if obj.spec.node == node}

    async def watch(self, resource_version: str, node: str | None = None) -> AsyncIterator[WatchEvent]:
        collection = await self._collection()
        revision = resource_version
        known: set[str] | None = None  # names on `node`, when filtering client-side
        if node is not None and not self._server_node_filter:
            known = await self._names_on_node_at(node, revision)
        timeout = httpx2.Timeout(REQUEST_TIMEOUT_SECONDS, read=WATCH_SERVER_TIMEOUT_SECONDS + 30)
        while True:
            params = {
                "watch": "true",
                "resourceVersion": revision,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(WATCH_SERVER_TIMEOUT_SECONDS),
            }
            if node is not None and known is None:
                params["fieldSelector"] = node_field_selector(node)
            try:
                async with self._http.stream("GET", collection, params=params, timeout=timeout) as response:
                    if not response.is_success:
                        await response.aread()
                        detail = _json_or_text(response)
                        if (
                            node is not None
                            and known is None
                            and _UNSUPPORTED_FIELD_LABEL in status_message(detail)
                        ):
                            self._server_node_filter = False
                            known = await self._names_on_node_at(node, revision)
                            continue
                        raise error_for_status(response.status_code, detail, PLURAL)
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        event_name, raw = watch_line(line)
                        if event_name == "ERROR":
                            raise error_for_status(int(raw.get("code") or 500), raw, PLURAL)
                        revision = raw["metadata"]["resourceVersion"]
                        if event_name == "BOOKMARK":
                            continue
                        decoded = await self._valid_objects([raw])
                        if not decoded:
                            continue
                        obj = decoded[0]
                        event_type: EventType | None = EventType(event_name)
                        if known is not None and node is not None:
                            event_type = node_view_event(
                                EventType(event_name), obj.metadata.name, obj.spec.node, node, known
                            )
                        if event_type is not None:
                            yield WatchEvent(event_type, obj, revision)
            except httpx2.TransportError as exc:
                raise Unavailable(f"kubernetes watch on {self._server} failed: {exc}") from exc

    # --- liveness (Leases) ------------------------------------------------------------------------

    def _leases(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{quote(self._namespace, safe='')}/leases"

    def _lease(self, node: str) -> str:
        return f"{self._leases()}/{quote(LEASE_NAME_PREFIX + node, safe='')}"

    async def _lease_request(
        self, method: str, path: str, node: str, body: object = None
    ) -> dict[str, Any] | None:
        """The Lease, or None when the API answers 404 (GET) / 409 (POST, PUT: someone else wrote)."""
        response = await self._send(method, path, body=body)
        if response.is_success:
            return reply_object(response, LEASE_NAME_PREFIX + node)
        if response.status_code in (404, 409):
            return None
        raise error_for_status(response.status_code, _json_or_text(response), LEASE_NAME_PREFIX + node)

    async def renew_liveness(self, node: str, holder: str, ttl_seconds: float) -> None:
        now = _micro_time(datetime.now(UTC))
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, math.ceil(ttl_seconds)),
            "renewTime": now,
        }
        # Two rounds: a concurrent create or update by the same node's agent is settled by re-reading.
        for _ in range(2):
            lease = await self._lease_request("GET", self._lease(node), node)
            if lease is None:
                new_lease = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": LEASE_NAME_PREFIX + node,
                        "labels": dict([LEASE_MANAGED_BY]),
                        "annotations": {LEASE_NODE_ANNOTATION: node},
                    },
                    "spec": {**spec, "acquireTime": now},
                }
                if await self._lease_request("POST", self._leases(), node, new_lease) is not None:
                    return
                continue
            if lease["spec"].get("holderIdentity") != holder:
                lease["spec"]["acquireTime"] = now
            lease["spec"].update(spec)
            if await self._lease_request("PUT", self._lease(node), node, lease) is not None:
                return
        raise Conflict(LEASE_NAME_PREFIX + node)

    async def release_liveness(self, node: str, holder: str) -> None:
        # Released by clearing the holder (an update, not a delete: the agent's Role has no delete).
        lease = await self._lease_request("GET", self._lease(node), node)
        if lease is None or lease["spec"].get("holderIdentity") != holder:
            return
        lease["spec"].pop("holderIdentity", None)
        await self._lease_request("PUT", self._lease(node), node, lease)

    async def get_liveness(self, node: str) -> LivenessRecord | None:
        lease = await self._lease_request("GET", self._lease(node), node)
        record = None if lease is None else lease_record(lease)
        return record if record is not None and record.is_alive(datetime.now(UTC)) else None

    async def list_liveness(self) -> list[LivenessRecord]:
        label, value = LEASE_MANAGED_BY
        response = await self._send("GET", self._leases(), params={"labelSelector": f"{label}={value}"})
        if not response.is_success:
            raise error_for_status(response.status_code, _json_or_text(response), "leases")
        now = datetime.now(UTC)
        records = (lease_record(lease) for lease in reply_object(response, "leases").get("items") or [])
        alive = (record for record in records if record is not None and record.is_alive(now))
        return sorted(alive, key=lambda record: record.node)

    async def list_nodes(self) -> list[str]:
        params = {"limit": str(LIST_PAGE_SIZE)}
        names: list[str] = []
        while True:
            page = await self._cr_request("GET", "/api/v1/nodes", "nodes", params=params)
            names += [item["metadata"]["name"] for item in page.get("items") or []]
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return sorted(names)
            params["continue"] = cont

    async def close(self) -> None:
        await self._http.aclose()


def reply_object(response: httpx2.Response, what: str) -> dict[str, Any]:
    """The JSON object of a successful reply. One garbled on the way (a proxy, a cut) is
    Unavailable, to be retried like any transport fault, never an exception the agent dies of."""
    try:
        body = response.json()
    except ValueError as exc:
        raise Unavailable(f"kubernetes API sent a malformed reply for {what}: {exc}") from exc
    if not isinstance(body, dict):
        raise Unavailable(f"kubernetes API sent a malformed reply for {what}: not a JSON object")
    return body


_WATCH_EVENT_TYPES: Final = frozenset({*EventType, "BOOKMARK", "ERROR"})


def watch_line(line: str) -> tuple[str, dict[str, Any]]:
    """(type, object) of one watch event line; a malformed line is Unavailable (the caller
    watches again from the last revision)."""
    try:
        event = json.loads(line)
        kind, raw = event["type"], event["object"]
        if kind not in _WATCH_EVENT_TYPES or not isinstance(raw, dict):
            raise ValueError(f"unexpected event type {kind!r} or object")
        if kind != "ERROR" and not isinstance(raw["metadata"]["resourceVersion"], str):
            raise ValueError("no metadata.resourceVersion")
    except (ValueError, KeyError, TypeError) as exc:
        raise Unavailable(f"kubernetes watch sent a malformed event: {exc}: {line[:200]!r}") from exc
    return kind, raw


def _json_or_text(response: httpx2.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
