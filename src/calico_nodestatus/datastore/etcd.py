"""The etcdv3 datastore, in Calico's own layout, so calicoctl and this backend read each other's objects.

- Key ``/calico/resources/v3/projectcalico.org/caliconodestatuses/<name>``; value the v3 object as
  compact JSON without ``resourceVersion``, which is the key's mod_revision.
- create is a transaction on version == 0; update, update_status and delete are compare-and-swap
  transactions on mod_revision. etcd has no status subresource, so both updates read the stored
  object and write it back merged (spec kept on status writes, status kept on spec writes).
- Liveness records are keys under ``/calico/nodestatus/v1/liveness/`` attached to a lease: when the
  agent stops renewing, etcd deletes them.

aetcd's generated gRPC stubs are used over our own channel, because its high-level client has no TLS.
Endpoints are tried in order: a connection failure moves to the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from calico_nodestatus.api import CalicoNodeStatus, ValidationFailure
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    Datastore,
    DatastoreError,
    EventType,
    LivenessRecord,
    NotFound,
    Unavailable,
    WatchEvent,
    WatchExpired,
)
from calico_nodestatus.datastore.config import DatastoreConfig, DatastoreConfigError
from calico_nodestatus.datastore.rules import (
    merge_status,
    merge_update,
    node_filtered_event,
    parse_resource_version,
    prepare_create,
    with_resource_version,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/caliconodestatuses/"
LIVENESS_PREFIX = "/calico/nodestatus/v1/liveness/"
DEFAULT_REQUEST_TIMEOUT_S = 5.0
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Detect a dead server under a long-lived watch; etcd allows pings every 5 s or slower.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # Own subchannels per channel: a fresh channel after an outage must not inherit the shared
    # pool's reconnect backoff. Short backoffs so a restarted etcd is picked up within a second.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]


def object_key(name: str) -> str:
    return RESOURCE_PREFIX + name


def liveness_key(node: str) -> str:
    return LIVENESS_PREFIX + node


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def encode_value(obj: CalicoNodeStatus) -> bytes:
    """The stored JSON: the v3 object as Calico writes it, resourceVersion left out."""
    wire = obj.to_wire()
    wire["metadata"].pop("resourceVersion", None)
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode()


def decode_value(key: bytes, value: bytes, revision: int) -> CalicoNodeStatus:
    try:
        obj = CalicoNodeStatus.from_wire(json.loads(value))
    except (ValueError, ValidationFailure) as error:
        raise DatastoreError(
            f"etcd key {key.decode()} does not hold a valid CalicoNodeStatus: {error}"
        ) from error
    return with_resource_version(obj, revision)


def _decode_or_skip(kv: Any, revision: int) -> CalicoNodeStatus | None:
    """Lists and watches skip an undecodable foreign object instead of failing for every object."""
    try:
        return decode_value(kv.key, kv.value, revision)
    except DatastoreError as error:
        log.warning("skipping %s", error)
        return None


@dataclass(frozen=True)
class _Stubs:
    kv: rpc.KVStub
    watch: rpc.WatchStub
    lease: rpc.LeaseStub


def _read_pem(setting: str, path: object) -> bytes | None:
    if path is None:
        return None
    try:
        with open(str(path), "rb") as handle:
            return handle.read()
    except OSError as error:
        raise DatastoreConfigError(setting, str(path), f"a readable PEM file ({error.strerror})") from error


class EtcdDatastore(Datastore):
    def __init__(
        self, config: DatastoreConfig, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    ) -> None:
        self._targets = [urlsplit(endpoint).netloc for endpoint in config.etcd_endpoints]
        self._config = config
        self._request_timeout = request_timeout
        self._current = 0
        self._channel: grpc.aio.Channel | None = None
        self._stubs_cache: _Stubs | None = None
        self._credentials: grpc.ChannelCredentials | None = None
        self._leases: dict[str, tuple[int, int]] = {}  # node -> (lease id, lease TTL) this process holds

    @property
    def endpoint(self) -> str:
        """The endpoint in use (or tried next)."""
        return self._config.etcd_endpoints[self._current]

    # -- channel, failover and error mapping --------------------------------------------------

    def _stubs(self) -> _Stubs:
        if self._stubs_cache is None:
            target = self._targets[self._current]
            if self._config.etcd_uses_tls:
                if self._credentials is None:
                    self._credentials = grpc.ssl_channel_credentials(
                        root_certificates=_read_pem("etcd_ca_cert_file", self._config.etcd_ca_cert_file),
                        private_key=_read_pem("etcd_key_file", self._config.etcd_key_file),
                        certificate_chain=_read_pem("etcd_cert_file", self._config.etcd_cert_file),
                    )
                self._channel = grpc.aio.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._stubs_cache = _Stubs(
                rpc.KVStub(self._channel), rpc.WatchStub(self._channel), rpc.LeaseStub(self._channel)
            )
        return self._stubs_cache

    async def _drop_channel(self) -> None:
        channel, self._channel, self._stubs_cache = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def _fail_over(self, error: grpc.aio.AioRpcError) -> None:
        failed = self.endpoint
        await self._drop_channel()
        self._current = (self._current + 1) % len(self._targets)
        log.warning("etcd endpoint %s unavailable (%s); next: %s", failed, error.details(), self.endpoint)

    def _map_error(self, error: grpc.aio.AioRpcError) -> DatastoreError:
        endpoints = ",".join(self._config.etcd_endpoints)
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Unavailable(f"etcd at {self.endpoint} did not answer within {self._request_timeout:g}s")
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"etcd unreachable at {endpoints}: {error.details()}")
        return DatastoreError(
            f"etcd at {self.endpoint} refused the request: {error.code().name}: {error.details()}"
        )

    async def _call(self, invoke: Callable[[_Stubs], Awaitable[T]]) -> T:
        """Runs one RPC, moving on to the next endpoint while the current one cannot be reached."""
        for attempt in range(len(self._targets)):
            try:
                return await invoke(self._stubs())
            except grpc.aio.AioRpcError as error:
                mapped = self._map_error(error)
                if error.code() not in UNREACHABLE:
                    raise mapped from error
                # Next call goes to the next endpoint on a fresh channel (no gRPC reconnect backoff).
                await self._fail_over(error)
                # Only a request that never reached a server is safe to resend: not after a timeout.
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED or attempt == len(self._targets) - 1:
                    raise mapped from error
        raise AssertionError("unreachable: the loop returns or raises")

    async def _range(self, key: str, *, prefix: bool = False) -> Any:
        request = rpc.RangeRequest(key=key.encode())
        if prefix:
            request.range_end = _range_end(key.encode())
        return await self._call(lambda s: s.kv.Range(request, timeout=self._request_timeout))

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._call(lambda s: s.kv.Txn(request, timeout=self._request_timeout))

    @staticmethod
    def _mod_equals(key: str, revision: int) -> Any:
        return rpc.Compare(
            key=key.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
        )

    # -- the Datastore interface --------------------------------------------------------------

    async def get(self, name: str) -> CalicoNodeStatus:
        response = await self._range(object_key(name))
        if not response.kvs:
            raise NotFound(name)
        kv = response.kvs[0]
        return decode_value(kv.key, kv.value, kv.mod_revision)

    async def list(self, node: str | None = None) -> tuple[list[CalicoNodeStatus], str]:
        response = await self._range(RESOURCE_PREFIX, prefix=True)
        objects = [obj for kv in response.kvs if (obj := _decode_or_skip(kv, kv.mod_revision)) is not None]
        return [obj for obj in objects if node is None or obj.spec.node == node], str(
            response.header.revision
        )

    async def create(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        new = prepare_create(obj, str(uuid.uuid4()), datetime.now(UTC))
        key = object_key(obj.name)
        absent = rpc.Compare(
            key=key.encode(), target=rpc.Compare.VERSION, result=rpc.Compare.EQUAL, version=0
        )
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=encode_value(new)))
        response = await self._txn([absent], [put], [])
        if not response.succeeded:
            raise AlreadyExists(obj.name)
        return with_resource_version(new, response.header.revision)

    async def _replace(
        self, obj: CalicoNodeStatus, merge: Callable[[CalicoNodeStatus, CalicoNodeStatus], CalicoNodeStatus]
    ) -> CalicoNodeStatus:
        expected = parse_resource_version(obj.metadata.resource_version)
        stored = await self.get(obj.name)
        if int(stored.metadata.resource_version or 0) != expected:
            raise Conflict(obj.name)
        merged = merge(stored, obj)
        key = object_key(obj.name)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=encode_value(merged)))
        reread = rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))
        response = await self._txn([self._mod_equals(key, expected)], [put], [reread])
        if not response.succeeded:
            if response.responses[0].response_range.kvs:
                raise Conflict(obj.name)
            raise NotFound(obj.name)
        return with_resource_version(merged, response.header.revision)

    async def update(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._replace(obj, merge_update)

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._replace(obj, merge_status)

    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        key = object_key(name).encode()
        delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, prev_kv=True))
        compare = []
        if resource_version is not None:
            compare = [self._mod_equals(key.decode(), parse_resource_version(resource_version, "a Delete"))]
        reread = rpc.RequestOp(request_range=rpc.RangeRequest(key=key))
        response = await self._txn(compare, [delete], [reread])
        if not response.succeeded:
            if response.responses[0].response_range.kvs:
                raise Conflict(name)
            raise NotFound(name)
        previous = response.responses[0].response_delete_range.prev_kvs
        if not previous:
            raise NotFound(name)
        return decode_value(previous[0].key, previous[0].value, previous[0].mod_revision)

    async def compact(self, revision: str) -> None:
        """Drops the history before `revision` (watching from older revisions expires)."""
        request = rpc.CompactionRequest(revision=parse_resource_version(revision, "a Compact"), physical=True)
        await self._call(lambda s: s.kv.Compact(request, timeout=self._request_timeout))

    async def watch(self, resource_version: str, node: str | None = None) -> AsyncIterator[WatchEvent]:
        after = parse_resource_version(resource_version, "a Watch")
        prefix = RESOURCE_PREFIX.encode()
        failures = 0
        while True:
            create = rpc.WatchCreateRequest(
                key=prefix, range_end=_range_end(prefix), start_revision=after + 1, prev_kv=True
            )
            call = self._stubs().watch.Watch(_hold_open(rpc.WatchRequest(create_request=create)))
            try:
                async for response in call:
                    failures = 0
                    if response.compact_revision:
                        raise WatchExpired(
                            f"revision {after} was compacted (history from {response.compact_revision}); "
                            "list again and watch from the list's revision"
                        )
                    if response.canceled:
                        raise DatastoreError(f"etcd cancelled the watch: {response.cancel_reason}")
                    for event in response.events:
                        after = event.kv.mod_revision
                        watch_event = _to_watch_event(event)
                        if watch_event and node is not None:
                            watch_event = _as_seen_by(node, watch_event, event.prev_kv)
                        if watch_event:
                            yield watch_event
                # The server ended the stream without an error: reconnect from where we are.
            except grpc.aio.AioRpcError as error:
                mapped = self._map_error(error)
                if error.code() not in UNREACHABLE:
                    raise mapped from error
                await self._fail_over(error)
                failures += 1
                if failures >= len(self._targets):
                    raise mapped from error
            finally:
                call.cancel()

    # -- liveness -------------------------------------------------------------------------------

    async def renew_liveness(self, node: str, holder: str, ttl_seconds: float) -> None:
        lease_ttl = max(1, math.ceil(ttl_seconds))
        lease_id = await self._keep_alive(node, lease_ttl)
        if lease_id is None:
            grant = rpc.LeaseGrantRequest(TTL=lease_ttl)
            granted = await self._call(lambda s: s.lease.LeaseGrant(grant, timeout=self._request_timeout))
            lease_id = int(granted.ID)
            stale = self._leases.get(node)
            self._leases[node] = (lease_id, lease_ttl)
            if stale:
                await self._revoke(stale[0])
        value = json.dumps(
            {"holder": holder, "renewedAt": datetime.now(UTC).isoformat(), "ttlSeconds": ttl_seconds},
            separators=(",", ":"),
        ).encode()
        put = rpc.PutRequest(key=liveness_key(node).encode(), value=value, lease=lease_id)
        await self._call(lambda s: s.kv.Put(put, timeout=self._request_timeout))

    async def _keep_alive(self, node: str, lease_ttl: int) -> int | None:
        """Refreshes the lease this process holds for `node`; None when there is none to refresh."""
        held = self._leases.get(node)
        if held is None or held[1] != lease_ttl:
            return None
        request = rpc.LeaseKeepAliveRequest(ID=held[0])

        async def once(stubs: _Stubs) -> int:
            call = stubs.lease.LeaseKeepAlive(iter([request]), timeout=self._request_timeout)
            try:
                async for reply in call:
                    return int(reply.TTL)
                return 0
            finally:
                call.cancel()

        return held[0] if await self._call(once) > 0 else None

    async def _revoke(self, lease_id: int) -> None:
        request = rpc.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call(lambda s: s.lease.LeaseRevoke(request, timeout=self._request_timeout))
        except Unavailable:
            raise
        except DatastoreError:
            pass  # already expired: nothing left to revoke

    async def release_liveness(self, node: str, holder: str) -> None:
        response = await self._range(liveness_key(node))
        if not response.kvs:
            return
        kv = response.kvs[0]
        if _liveness_value(kv.value).get("holder") != holder:
            return
        self._leases.pop(node, None)
        key = kv.key
        delete = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))
        await self._txn([self._mod_equals(key.decode(), kv.mod_revision)], [delete], [])
        if kv.lease:
            await self._revoke(kv.lease)

    async def get_liveness(self, node: str) -> LivenessRecord | None:
        response = await self._range(liveness_key(node))
        return _liveness_record(response.kvs[0]) if response.kvs else None

    async def list_liveness(self) -> list[LivenessRecord]:
        response = await self._range(LIVENESS_PREFIX, prefix=True)
        return [record for kv in response.kvs if (record := _liveness_record(kv)) is not None]

    async def close(self) -> None:
        await self._drop_channel()


async def _hold_open(request: Any) -> AsyncIterator[Any]:
    """The watch's request stream: one create request, then stay open until the call ends."""
    yield request
    await asyncio.Event().wait()


def _to_watch_event(event: Any) -> WatchEvent | None:
    revision = event.kv.mod_revision
    if event.type == rpc.Event.DELETE:
        if not event.prev_kv.key:
            log.warning("skipping deletion of %s: its last value was compacted", event.kv.key.decode())
            return None
        obj = _decode_or_skip(event.prev_kv, revision)
        event_type = EventType.DELETED
    else:
        obj = _decode_or_skip(event.kv, revision)
        event_type = EventType.ADDED if event.kv.version == 1 else EventType.MODIFIED
    return WatchEvent(event_type, obj, str(revision)) if obj else None


def _as_seen_by(node: str, event: WatchEvent, prev_kv: Any) -> WatchEvent | None:
    """The event as a watch of `node`'s objects sees it (etcd cannot filter on a value's field)."""
    previous_node = _stored_node(prev_kv.value) if prev_kv.key else None
    seen_as = node_filtered_event(event.type, previous_node, event.object.spec.node, node)
    return None if seen_as is None else WatchEvent(seen_as, event.object, event.resource_version)


def _stored_node(value: bytes) -> str | None:
    try:
        spec = json.loads(value).get("spec") or {}
    except (ValueError, AttributeError):
        return None
    node = spec.get("node") if isinstance(spec, dict) else None
    return node if isinstance(node, str) else None


def _liveness_value(value: bytes) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _liveness_record(kv: Any) -> LivenessRecord | None:
    data = _liveness_value(kv.value)
    try:
        return LivenessRecord(
            node=kv.key.decode().removeprefix(LIVENESS_PREFIX),
            holder=str(data["holder"]),
            renewed_at=datetime.fromisoformat(data["renewedAt"]),
            ttl_seconds=float(data["ttlSeconds"]),
        )
    except (KeyError, TypeError, ValueError):
        log.warning("skipping malformed liveness record %s", kv.key.decode())
        return None
