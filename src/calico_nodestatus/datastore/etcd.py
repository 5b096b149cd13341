"""The etcdv3 datastore, in Calico's own layout, so calicoctl and this backend read each other's objects.

- Key ``/calico/resources/v3/projectcalico.org/caliconodestatuses/<name>``; value the v3 object as
  compact JSON without ``resourceVersion``, which is the key's mod_revision.
- create is a transaction on version == 0; update, update_status and delete are compare-and-swap
  transactions on mod_revision. etcd has no status subresource, so both updates read the stored
  object and write it back merged (spec kept on status writes, status kept on spec writes).
- Liveness records are keys under ``/calico/nodestatus/v1/liveness/`` attached to a lease: when the
  agent stops renewing, etcd deletes them. Renewals go over ONE ``LeaseKeepAlive`` stream kept
  open (opening a stream per renewal was the largest share of an idle agent's CPU).

Per-node index (why: etcd cannot filter a watch by a value's field, so with every agent watching
every object each status write reached every agent — N² traffic that broke a 1,000-node fleet;
see BENCHMARKS.md). Every write through this backend also writes the empty key
``/calico/nodestatus/v1/bynode/<spec.node>/<name>`` in the same transaction (same revision): create
and every update put it, a move to another node deletes the old node's key, delete removes it.
``watch(rv, node=...)`` watches only that node's index prefix and reads the object at each event's
revision: an index put is ADDED (version 1: created or moved in) or MODIFIED, an index delete is
DELETED carrying the object as it is at that revision (moved away) or as last stored (deleted).
One watcher per node, so events stay in revision order and resume from any event's revision.
``list(node=...)`` reads the node's index keys and their objects at one revision.

Objects written by Calico's own tools have no index key. ``list(node=...)`` compares the number of
objects with the number of index keys; when they differ it rebuilds the index from a full scan
(adds missing keys, removes orphans; an object without a readable spec.node is indexed under
``_``, so the counts match and it is not rescanned), and an indexed object whose spec.node no longer
matches is re-indexed when its old node lists. Such foreign edits reach a node's watch on the next list
(the agent re-lists every 30 s), and the object's first write through this backend indexes it.
``list()`` without a node is a plain paginated scan and never writes.

Channels: one gRPC channel per datastore, shared by all its requests and watches. A request that
finds its endpoint unreachable moves the datastore to the next endpoint on a fresh channel; the old
channel is closed with a grace period, so requests still in flight on it finish (a failing request
never cancels unrelated ones), and watches on it resume from their last revision on the new one.
aetcd's generated gRPC stubs are used over our own channel, because its high-level client has no TLS.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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
    merge_annotations,
    merge_status,
    merge_update,
    parse_resource_version,
    prepare_create,
    with_resource_version,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/caliconodestatuses/"
INDEX_PREFIX = "/calico/nodestatus/v1/bynode/"
LIVENESS_PREFIX = "/calico/nodestatus/v1/liveness/"
# Calico's own node resources (calico/node registers each node there).
NODE_PREFIX = "/calico/resources/v3/projectcalico.org/nodes/"
# Index "node" of objects without a readable spec.node; "_" is never in a node name, so no watch sees it.
UNDECODABLE = "_"
DEFAULT_REQUEST_TIMEOUT_S = 5.0
# Objects per list page: a status is capped near 1 MiB, so a page stays under the receive limit.
LIST_PAGE_SIZE = 50
# Ranges per transaction when reading a node's objects (etcd's default --max-txn-ops is 128).
READS_PER_TXN = 100
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


def index_prefix(node: str) -> str:
    return f"{INDEX_PREFIX}{node}/"


def index_key(node: str, name: str) -> str:
    return index_prefix(node) + name


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


@dataclass(frozen=True, eq=False)
class _Connection:
    channel: grpc.aio.Channel
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


def _put(key: str, value: bytes = b"") -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value))


def _delete(key: str, *, prev_kv: bool = False) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode(), prev_kv=prev_kv))


def _mod_equals(key: str, revision: int) -> Any:
    """Compare: the key was last written at `revision` (0: the key does not exist)."""
    return rpc.Compare(
        key=key.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def _own_cancellation() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class EtcdDatastore(Datastore):
    def __init__(
        self, config: DatastoreConfig, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    ) -> None:
        self._targets = [urlsplit(endpoint).netloc for endpoint in config.etcd_endpoints]
        self._config = config
        self._request_timeout = request_timeout
        self._current = 0
        self._connection: _Connection | None = None
        self._retired: dict[_Connection, asyncio.Task[None]] = {}  # closing after a grace period
        self._credentials: grpc.ChannelCredentials | None = None
        self._leases: dict[str, tuple[int, int]] = {}  # node -> (lease id, lease TTL) this process holds
        # The open keepalive stream and the channel it runs on (renewals take turns on it).
        self._keepalive: tuple[_Connection, Any] | None = None
        self._keepalive_turn = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        """The endpoint in use (or tried next)."""
        return self._config.etcd_endpoints[self._current]

    # -- channel, failover and error mapping --------------------------------------------------

    def _connect(self) -> _Connection:
        if self._connection is None:
            target = self._targets[self._current]
            if self._config.etcd_uses_tls:
                if self._credentials is None:
                    self._credentials = grpc.ssl_channel_credentials(
                        root_certificates=_read_pem("etcd_ca_cert_file", self._config.etcd_ca_cert_file),
                        private_key=_read_pem("etcd_key_file", self._config.etcd_key_file),
                        certificate_chain=_read_pem("etcd_cert_file", self._config.etcd_cert_file),
                    )
                channel = grpc.aio.secure_channel(target, self._credentials, options=CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._connection = _Connection(
                channel, rpc.KVStub(channel), rpc.WatchStub(channel), rpc.LeaseStub(channel)
            )
        return self._connection

    def _fail_over(self, failed: _Connection, error: grpc.aio.AioRpcError) -> None:
        """Moves to the next endpoint on a fresh channel, once per failed channel: concurrent
        requests failing on the same channel do not skip endpoints or close newer channels."""
        if self._connection is not failed:
            return
        endpoint = self.endpoint
        self._connection = None
        self._current = (self._current + 1) % len(self._targets)
        # Other requests may still be in flight on the old channel: they get their own deadline to
        # finish instead of being cancelled by this request's failure.
        closing = asyncio.get_running_loop().create_task(failed.channel.close(grace=self._request_timeout))
        self._retired[failed] = closing
        closing.add_done_callback(lambda _: self._retired.pop(failed, None))
        log.warning("etcd endpoint %s unavailable (%s); next: %s", endpoint, error.details(), self.endpoint)

    def _moves_on(self, error: grpc.aio.AioRpcError) -> bool:
        """A refused connection always moves on (a fresh channel skips gRPC's reconnect backoff);
        a timeout only when there is another endpoint: one busy server is not helped by a new channel."""
        code = error.code()
        return code == grpc.StatusCode.UNAVAILABLE or (
            code == grpc.StatusCode.DEADLINE_EXCEEDED and len(self._targets) > 1
        )

    def _map_error(self, error: grpc.aio.AioRpcError) -> DatastoreError:
        endpoints = ",".join(self._config.etcd_endpoints)
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Unavailable(f"etcd at {self.endpoint} did not answer within {self._request_timeout:g}s")
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"etcd unreachable at {endpoints}: {error.details()}")
        if error.code() == grpc.StatusCode.OUT_OF_RANGE:
            return WatchExpired(f"etcd at {self.endpoint}: {error.details()}; list again")
        return DatastoreError(
            f"etcd at {self.endpoint} refused the request: {error.code().name}: {error.details()}"
        )

    async def _call(self, invoke: Callable[[_Connection], Awaitable[T]]) -> T:
        """Runs one RPC, moving on to the next endpoint while the current one cannot be reached."""
        for attempt in range(len(self._targets)):
            connection = self._connect()
            try:
                return await invoke(connection)
            except grpc.aio.AioRpcError as error:
                mapped = self._map_error(error)
                if error.code() not in UNREACHABLE:
                    raise mapped from error
                if self._moves_on(error):
                    self._fail_over(connection, error)
                # Only a request that never reached a server is safe to resend: not after a timeout.
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED or attempt == len(self._targets) - 1:
                    raise mapped from error
        raise AssertionError("unreachable: the loop returns or raises")

    async def _range(self, request: Any) -> Any:
        return await self._call(lambda c: c.kv.Range(request, timeout=self._request_timeout))

    async def _range_key(self, key: str, *, prefix: bool = False, **options: Any) -> Any:
        request = rpc.RangeRequest(key=key.encode(), **options)
        if prefix:
            request.range_end = _range_end(key.encode())
        return await self._range(request)

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._call(lambda c: c.kv.Txn(request, timeout=self._request_timeout))

    async def _scan(self, prefix: str, **options: Any) -> tuple[list[Any], int]:
        """Every key under `prefix` at one revision, page by page (no single huge reply or deadline)."""
        while True:
            kvs: list[Any] = []
            start, end, revision = prefix.encode(), _range_end(prefix.encode()), 0
            try:
                while True:
                    request = rpc.RangeRequest(
                        key=start, range_end=end, limit=LIST_PAGE_SIZE, revision=revision, **options
                    )
                    response = await self._range(request)
                    revision = revision or response.header.revision
                    kvs.extend(response.kvs)
                    if not response.more:
                        return kvs, revision
                    start = response.kvs[-1].key + b"\0"
            except WatchExpired:
                continue  # compacted between two pages: scan again at the newest revision

    # -- the Datastore interface --------------------------------------------------------------

    async def get(self, name: str) -> CalicoNodeStatus:
        response = await self._range_key(object_key(name))
        if not response.kvs:
            raise NotFound(name)
        kv = response.kvs[0]
        return decode_value(kv.key, kv.value, kv.mod_revision)

    async def list(self, node: str | None = None) -> tuple[list[CalicoNodeStatus], str]:
        if node is not None:
            return await self._list_node(node)
        kvs, revision = await self._scan(RESOURCE_PREFIX)
        return [obj for kv in kvs if (obj := _decode_or_skip(kv, kv.mod_revision)) is not None], str(revision)

    async def _list_node(self, node: str) -> tuple[list[CalicoNodeStatus], str]:
        for attempt in range(2):
            counts = await self._txn(
                [],
                [
                    rpc.RequestOp(request_range=_prefix_range(RESOURCE_PREFIX, count_only=True)),
                    rpc.RequestOp(request_range=_prefix_range(INDEX_PREFIX, count_only=True)),
                    rpc.RequestOp(request_range=_prefix_range(index_prefix(node), keys_only=True)),
                ],
                [],
            )
            objects, indexed, members = (op.response_range for op in counts.responses)
            if objects.count == indexed.count or attempt:
                break
            await self.repair_index()  # written by other tools (or left behind by them): re-index first
        revision = counts.header.revision
        names = [kv.key.decode().removeprefix(index_prefix(node)) for kv in members.kvs]
        found: list[CalicoNodeStatus] = []
        for first in range(0, len(names), READS_PER_TXN):
            reads = [
                rpc.RequestOp(
                    request_range=rpc.RangeRequest(key=object_key(name).encode(), revision=revision)
                )
                for name in names[first : first + READS_PER_TXN]
            ]
            response = await self._txn([], reads, [])
            for op in response.responses:
                for kv in op.response_range.kvs:
                    obj = _decode_or_skip(kv, kv.mod_revision)
                    if obj is not None and obj.spec.node == node:
                        found.append(obj)
                    elif obj is not None:
                        await self._move_index(kv, node, obj.spec.node)  # moved by another tool
        return found, str(revision)

    async def repair_index(self) -> None:
        """Makes the per-node index match the objects: adds missing keys, removes stale ones.
        Each change is conditioned on the object being unchanged, so it never undoes a write."""
        objects, revision = await self._scan(RESOURCE_PREFIX)
        index, _ = await self._scan(INDEX_PREFIX, keys_only=True)
        stored = {kv.key.decode().removeprefix(RESOURCE_PREFIX): kv for kv in objects}
        wanted = {index_key(_stored_node(kv.value) or UNDECODABLE, name): kv for name, kv in stored.items()}
        existing = {entry.key.decode() for entry in index}
        for key in wanted.keys() - existing:
            kv = wanted[key]
            await self._txn([_mod_equals(kv.key.decode(), kv.mod_revision)], [_put(key)], [])
        for key in existing - wanted.keys():
            name = key.rsplit("/", 1)[-1]
            kv = stored.get(name)
            await self._txn([_mod_equals(object_key(name), kv.mod_revision if kv else 0)], [_delete(key)], [])
        log.info("rebuilt the per-node index at revision %d: %d objects", revision, len(wanted))

    async def _move_index(self, kv: Any, stale_node: str, node: str) -> None:
        """Points the index at the object's current node, unless the object changed meanwhile."""
        name = kv.key.decode().removeprefix(RESOURCE_PREFIX)
        moves = [_put(index_key(node, name)), _delete(index_key(stale_node, name))]
        await self._txn([_mod_equals(kv.key.decode(), kv.mod_revision)], moves, [])

    async def create(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        new = prepare_create(obj, str(uuid.uuid4()), datetime.now(UTC))
        key = object_key(obj.name)
        absent = rpc.Compare(
            key=key.encode(), target=rpc.Compare.VERSION, result=rpc.Compare.EQUAL, version=0
        )
        response = await self._txn(
            [absent], [_put(key, encode_value(new)), _put(index_key(new.spec.node, new.name))], []
        )
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
        # The index key is written on every change: it is what a node-scoped watch sees.
        writes = [_put(key, encode_value(merged)), _put(index_key(merged.spec.node, obj.name))]
        if stored.spec.node != merged.spec.node:
            writes.append(_delete(index_key(stored.spec.node, obj.name)))
        reread = rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))
        response = await self._txn([_mod_equals(key, expected)], writes, [reread])
        if not response.succeeded:
            if response.responses[0].response_range.kvs:
                raise Conflict(obj.name)
            raise NotFound(obj.name)
        return with_resource_version(merged, response.header.revision)

    async def update(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._replace(obj, merge_update)

    async def update_status(self, obj: CalicoNodeStatus) -> CalicoNodeStatus:
        return await self._replace(obj, merge_status)

    async def update_annotations(
        self, obj: CalicoNodeStatus, changes: Mapping[str, str | None]
    ) -> CalicoNodeStatus:
        return await self._replace(obj, lambda stored, _incoming: merge_annotations(stored, changes))

    async def delete(self, name: str, resource_version: str | None = None) -> CalicoNodeStatus:
        expected = None if resource_version is None else parse_resource_version(resource_version, "a Delete")
        key = object_key(name)
        while True:
            response = await self._range_key(key)
            if not response.kvs:
                raise NotFound(name)
            kv = response.kvs[0]
            if expected is not None and kv.mod_revision != expected:
                raise Conflict(name)
            deletes = [_delete(key)]
            if node := _stored_node(kv.value):
                deletes.append(_delete(index_key(node, name)))
            if (await self._txn([_mod_equals(key, kv.mod_revision)], deletes, [])).succeeded:
                return decode_value(kv.key, kv.value, kv.mod_revision)
            # Written in between: read again (a conditional delete then reports the conflict).

    async def compact(self, revision: str) -> None:
        """Drops the history before `revision` (watching from older revisions expires)."""
        request = rpc.CompactionRequest(revision=parse_resource_version(revision, "a Compact"), physical=True)
        await self._call(lambda c: c.kv.Compact(request, timeout=self._request_timeout))

    async def watch(self, resource_version: str, node: str | None = None) -> AsyncIterator[WatchEvent]:
        after = parse_resource_version(resource_version, "a Watch")
        prefix = (RESOURCE_PREFIX if node is None else index_prefix(node)).encode()
        failures = 0
        while True:
            create = rpc.WatchCreateRequest(
                key=prefix, range_end=_range_end(prefix), start_revision=after + 1, prev_kv=node is None
            )
            connection = self._connect()
            call = connection.watch.Watch(_hold_open(rpc.WatchRequest(create_request=create)))
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
                        watch_event = (
                            _to_watch_event(event) if node is None else await self._node_event(event)
                        )
                        after = event.kv.mod_revision
                        if watch_event:
                            yield watch_event
                # The server ended the stream without an error: reconnect from where we are.
            except grpc.aio.AioRpcError as error:
                mapped = self._map_error(error)
                if error.code() not in UNREACHABLE:
                    raise mapped from error
                if self._moves_on(error):
                    self._fail_over(connection, error)
                failures += 1
                if failures >= len(self._targets):
                    raise mapped from error
            except asyncio.CancelledError:
                # The stream's channel was retired because some request failed over: resume on
                # the current channel. Only a cancellation of the caller's own task ends the watch.
                if _own_cancellation() or connection is self._connection:
                    raise
            finally:
                call.cancel()

    async def _node_event(self, event: Any) -> WatchEvent | None:
        """An index key's change as the node's watch reports it, with the object at that revision."""
        revision = event.kv.mod_revision
        name = event.kv.key.decode().rsplit("/", 1)[-1]
        current = await self._object_at(name, revision)
        if event.type != rpc.Event.DELETE:
            if current is None:
                return None  # an index key without its object (removed by another tool)
            return WatchEvent(
                EventType.ADDED if event.kv.version == 1 else EventType.MODIFIED, current, str(revision)
            )
        # Removed from this node: moved elsewhere (the object exists now) or deleted (its last state).
        last = current or await self._object_at(name, revision - 1)
        if last is None:
            return None
        return WatchEvent(EventType.DELETED, with_resource_version(last, revision), str(revision))

    async def _object_at(self, name: str, revision: int) -> CalicoNodeStatus | None:
        response = await self._range_key(object_key(name), revision=revision)
        return _decode_or_skip(response.kvs[0], response.kvs[0].mod_revision) if response.kvs else None

    # -- liveness -------------------------------------------------------------------------------

    async def renew_liveness(self, node: str, holder: str, ttl_seconds: float) -> None:
        lease_ttl = max(1, math.ceil(ttl_seconds))
        lease_id = await self._keep_alive(node, lease_ttl)
        if lease_id is None:
            grant = rpc.LeaseGrantRequest(TTL=lease_ttl)
            granted = await self._call(lambda c: c.lease.LeaseGrant(grant, timeout=self._request_timeout))
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
        await self._call(lambda c: c.kv.Put(put, timeout=self._request_timeout))

    async def _keep_alive(self, node: str, lease_ttl: int) -> int | None:
        """Refreshes the lease this process holds for `node`; None when there is none to refresh."""
        held = self._leases.get(node)
        if held is None or held[1] != lease_ttl:
            return None
        request = rpc.LeaseKeepAliveRequest(ID=held[0])

        async def renew(connection: _Connection) -> int:
            async with self._keepalive_turn:
                # A stream the server ended (EOF) is replaced once, on the same channel.
                for _attempt in range(2):
                    kept = self._keepalive
                    if kept is None or kept[0] is not connection or kept[1].done():
                        self._close_keepalive()
                        # No deadline on the stream itself (it lives on); each renewal has one below.
                        kept = self._keepalive = (connection, connection.lease.LeaseKeepAlive())
                    try:
                        async with asyncio.timeout(self._request_timeout):
                            await kept[1].write(request)
                            reply = await kept[1].read()
                    except BaseException:
                        self._close_keepalive()  # its position is unknown: the next renewal opens a new one
                        raise
                    if reply is not grpc.aio.EOF:
                        return int(reply.TTL)
                    self._close_keepalive()
                return 0

        try:
            ttl = await self._call(renew)
        except TimeoutError as error:
            raise Unavailable(
                f"etcd at {self.endpoint} did not renew the lease within {self._request_timeout:g}s"
            ) from error
        return held[0] if ttl > 0 else None

    def _close_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive[1].cancel()
            self._keepalive = None

    async def _revoke(self, lease_id: int) -> None:
        request = rpc.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call(lambda c: c.lease.LeaseRevoke(request, timeout=self._request_timeout))
        except Unavailable:
            raise
        except DatastoreError:
            pass  # already expired: nothing left to revoke

    async def release_liveness(self, node: str, holder: str) -> None:
        response = await self._range_key(liveness_key(node))
        if not response.kvs:
            return
        kv = response.kvs[0]
        if _liveness_value(kv.value).get("holder") != holder:
            return
        self._leases.pop(node, None)
        key = kv.key.decode()
        await self._txn([_mod_equals(key, kv.mod_revision)], [_delete(key)], [])
        if kv.lease:
            await self._revoke(kv.lease)

    async def get_liveness(self, node: str) -> LivenessRecord | None:
        response = await self._range_key(liveness_key(node))
        return _liveness_record(response.kvs[0]) if response.kvs else None

    async def list_liveness(self) -> list[LivenessRecord]:
        kvs, _ = await self._scan(LIVENESS_PREFIX)
        return [record for kv in kvs if (record := _liveness_record(kv)) is not None]

    async def list_nodes(self) -> list[str]:
        kvs, _ = await self._scan(NODE_PREFIX, keys_only=True)
        return sorted(kv.key.decode().removeprefix(NODE_PREFIX) for kv in kvs)

    async def close(self) -> None:
        self._close_keepalive()
        connection, self._connection = self._connection, None
        retired, self._retired = dict(self._retired), {}
        for closing in retired.values():
            closing.cancel()
        for channel in [c.channel for c in retired] + ([connection.channel] if connection else []):
            await channel.close()


def _prefix_range(prefix: str, **options: Any) -> Any:
    return rpc.RangeRequest(key=prefix.encode(), range_end=_range_end(prefix.encode()), **options)


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


def _stored_node(value: bytes) -> str | None:
    """spec.node of a stored value without building the object (None when it has none)."""
    try:
        spec = json.loads(value).get("spec") or {}
    except (ValueError, AttributeError):
        return None
    node = spec.get("node") if isinstance(spec, dict) else None
    return node if isinstance(node, str) and node else None


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
