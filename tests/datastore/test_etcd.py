"""etcdv3 backend against a real etcd: Calico's key layout both ways, the per-node index, TLS,
failover, outages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from calico_nodestatus.api import (
    BGPDaemonState,
    BGPDaemonStatus,
    CalicoNodeAgentStatus,
    CalicoNodeStatus,
    CalicoNodeStatusStatus,
)
from calico_nodestatus.datastore import etcd as etcd_module
from calico_nodestatus.datastore.base import Conflict, DatastoreError, EventType, Unavailable
from calico_nodestatus.datastore.config import DatastoreConfig
from calico_nodestatus.datastore.etcd import EtcdDatastore
from tests.datastore.conftest import collect, make_status, nothing_more
from tests.plugins.etcd import EtcdServer, free_port

KEY = "/calico/resources/v3/projectcalico.org/caliconodestatuses/status-a"
INDEX = "/calico/nodestatus/v1/bynode/"

# A value shaped the way libcalico-go stores it: no resourceVersion, no generation.
CALICO_WRITTEN = {
    "kind": "CalicoNodeStatus",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {
        "name": "status-a",
        "uid": "4c8f4e2e-9d0b-4a59-a0b4-9b1a3c2d1e0f",
        "creationTimestamp": "2021-10-18T13:22:00Z",
    },
    "spec": {"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10},
    "status": {
        "lastUpdated": "2021-10-18T13:22:03Z",
        "agent": {"birdV4": {"state": "Ready", "version": "v0.3.3+birdv1.6.8"}, "birdV6": {}},
        "bgp": {
            "numberEstablishedV4": 0,
            "numberNotEstablishedV4": 1,
            "numberEstablishedV6": 0,
            "numberNotEstablishedV6": 0,
            "peersV4": [{"peerIP": "198.18.0.2", "type": "NodeMesh", "state": "Active", "since": "13:21:50"}],
        },
        "routes": {},
    },
}


def config_for(server: EtcdServer, **overrides: object) -> DatastoreConfig:
    return DatastoreConfig.from_env(environ=server.datastore_env(), **overrides)


@pytest.fixture
async def etcd_datastore(etcd: EtcdServer) -> AsyncIterator[EtcdDatastore]:
    datastore = EtcdDatastore(config_for(etcd))
    yield datastore
    await datastore.close()


def mod_revision(server: EtcdServer, key: str) -> int:
    reply = json.loads(server.etcdctl("get", key, "-w", "json"))
    return int(reply["kvs"][0]["mod_revision"])


async def test_etcdctl_sees_calicos_key_and_json(etcd: EtcdServer, etcd_datastore: EtcdDatastore) -> None:
    created = await etcd_datastore.create(make_status())
    key, value = etcd.etcdctl("get", "--prefix", "/calico/resources/").splitlines()
    assert key == KEY
    assert etcd.etcdctl("get", "--prefix", "--keys-only", INDEX).split() == [INDEX + "node-1/status-a"]
    stored = json.loads(value)
    assert list(stored) == ["kind", "apiVersion", "metadata", "spec", "status"]
    assert "resourceVersion" not in stored["metadata"]
    assert stored["metadata"]["uid"] == created.metadata.uid
    assert stored["spec"] == {"node": "node-1", "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10}
    assert stored["status"]["bgp"]["numberEstablishedV4"] == 0
    assert int(created.metadata.resource_version or 0) == mod_revision(etcd, KEY)


async def test_reads_and_updates_what_calico_wrote(etcd: EtcdServer, etcd_datastore: EtcdDatastore) -> None:
    etcd.etcdctl("put", KEY, json.dumps(CALICO_WRITTEN, separators=(",", ":")))
    revision = mod_revision(etcd, KEY)

    read = await etcd_datastore.get("status-a")
    assert read.metadata.resource_version == str(revision)
    assert read.metadata.uid == CALICO_WRITTEN["metadata"]["uid"]
    assert read.status.bgp.peers_v4[0].peer_ip == "198.18.0.2"
    on_wire = read.to_wire()
    del on_wire["metadata"]["resourceVersion"]
    assert on_wire == CALICO_WRITTEN

    spec = read.spec.model_copy(update={"update_period_seconds": 20})
    updated = await etcd_datastore.update(read.model_copy(update={"spec": spec}))
    assert updated.status == read.status
    stored = json.loads(etcd.etcdctl("get", KEY, "--print-value-only"))
    assert stored["spec"]["updatePeriodSeconds"] == 20
    assert stored["status"] == CALICO_WRITTEN["status"]
    assert updated.metadata.resource_version == str(mod_revision(etcd, KEY))


async def test_watch_sees_a_raw_etcdctl_put(etcd: EtcdServer, etcd_datastore: EtcdDatastore) -> None:
    _, start = await etcd_datastore.list()
    events = etcd_datastore.watch(start)
    try:
        etcd.etcdctl("put", KEY, json.dumps(CALICO_WRITTEN))
        etcd.etcdctl("put", KEY + "-not-json", "garbage")  # skipped, not fatal
        etcd.etcdctl("del", KEY)
        seen = await collect(events, 2)
    finally:
        await events.aclose()
    assert [(e.type, e.object.name) for e in seen] == [
        (EventType.ADDED, "status-a"),
        (EventType.DELETED, "status-a"),
    ]


async def test_undecodable_foreign_value_is_named_on_get(
    etcd: EtcdServer, etcd_datastore: EtcdDatastore
) -> None:
    etcd.etcdctl("put", KEY, '{"kind":"CalicoNodeStatus","spec":{"node":"Not_A_Name"}}')
    with pytest.raises(DatastoreError, match=KEY):
        await etcd_datastore.get("status-a")
    objects, _ = await etcd_datastore.list()
    assert objects == []
    # Indexed under the node it names, or apart from every node when it names none, so the index
    # stays complete and later lists do not rescan.
    etcd.etcdctl("put", KEY + "-garbage", "not json")
    assert (await etcd_datastore.list(node="node-1"))[0] == []
    assert index_keys(etcd) == [INDEX + "Not_A_Name/status-a", INDEX + "_/status-a-garbage"]


async def test_liveness_key_is_attached_to_a_lease(etcd: EtcdServer, etcd_datastore: EtcdDatastore) -> None:
    await etcd_datastore.renew_liveness("node-1", "host-a/100", 30)
    reply = json.loads(etcd.etcdctl("get", "/calico/nodestatus/v1/liveness/node-1", "-w", "json"))
    kv = reply["kvs"][0]
    assert int(kv["lease"]) != 0
    value = json.loads(etcd.etcdctl("get", "/calico/nodestatus/v1/liveness/node-1", "--print-value-only"))
    assert value["holder"] == "host-a/100" and value["ttlSeconds"] == 30
    lease = etcd.etcdctl("lease", "timetolive", format(int(kv["lease"]), "x"))
    assert "remaining" in lease and "granted with TTL(30s)" in lease


async def test_fails_over_to_the_next_endpoint(etcd: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    datastore = EtcdDatastore(config_for(etcd, etcd_endpoints=[dead, etcd.endpoint]))
    try:
        created = await datastore.create(make_status())
        assert datastore.endpoint == etcd.endpoint
        assert (await datastore.get("status-a")) == created
    finally:
        await datastore.close()


async def test_no_reachable_endpoint_is_unavailable(etcd_server: EtcdServer) -> None:
    endpoints = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    datastore = EtcdDatastore(DatastoreConfig(type="etcdv3", etcd_endpoints=endpoints))
    started = time.monotonic()
    with pytest.raises(Unavailable, match="etcd unreachable"):
        await datastore.list()
    assert time.monotonic() - started < 5
    await datastore.close()


async def test_stopped_server_is_unavailable_then_recovers(etcd_factory: Callable[..., EtcdServer]) -> None:
    server = etcd_factory()
    datastore = EtcdDatastore(config_for(server), request_timeout=2)
    try:
        created = await datastore.create(make_status())
        server.stop()
        with pytest.raises(Unavailable):
            await datastore.get("status-a")
        server.start()
        assert await datastore.get("status-a") == created
    finally:
        await datastore.close()


async def test_tls_with_client_certificate(etcd_tls_server: EtcdServer) -> None:
    datastore = EtcdDatastore(config_for(etcd_tls_server))
    try:
        created = await datastore.create(make_status("status-tls"))
        assert (await datastore.get("status-tls")) == created
        assert "status-tls" in etcd_tls_server.etcdctl("get", "--prefix", "--keys-only", "/calico/")
        await datastore.delete("status-tls")
    finally:
        await datastore.close()


async def test_plaintext_to_tls_endpoint_is_refused(etcd_tls_server: EtcdServer) -> None:
    plaintext = etcd_tls_server.endpoint.replace("https://", "http://")
    datastore = EtcdDatastore(DatastoreConfig(type="etcdv3", etcd_endpoints=[plaintext]), request_timeout=3)
    with pytest.raises(Unavailable):
        await datastore.list()
    await datastore.close()


async def test_tls_without_client_certificate_is_refused(etcd_tls_server: EtcdServer) -> None:
    assert etcd_tls_server.tls is not None
    config = DatastoreConfig(
        type="etcdv3",
        etcd_endpoints=[etcd_tls_server.endpoint],
        etcd_ca_cert_file=etcd_tls_server.tls.ca_cert_file,
    )
    datastore = EtcdDatastore(config, request_timeout=3)
    with pytest.raises(Unavailable):
        await datastore.list()
    await datastore.close()


def index_keys(server: EtcdServer) -> list[str]:
    return server.etcdctl("get", "--prefix", "--keys-only", INDEX).split()


async def test_index_follows_the_object_through_move_and_delete(
    etcd: EtcdServer, etcd_datastore: EtcdDatastore
) -> None:
    created = await etcd_datastore.create(make_status(node="node-1"))
    moved = await etcd_datastore.update(
        created.model_copy(update={"spec": created.spec.model_copy(update={"node": "node-2"})})
    )
    assert index_keys(etcd) == [INDEX + "node-2/status-a"]
    # The index key changes in the object's own transaction: one revision for both.
    reply = json.loads(etcd.etcdctl("get", INDEX + "node-2/status-a", "-w", "json"))
    assert str(reply["kvs"][0]["mod_revision"]) == moved.metadata.resource_version
    await etcd_datastore.delete("status-a")
    assert index_keys(etcd) == []


async def test_objects_written_by_calico_are_indexed_on_node_list(
    etcd: EtcdServer, etcd_datastore: EtcdDatastore
) -> None:
    etcd.etcdctl("put", KEY, json.dumps(CALICO_WRITTEN))
    on_node, revision = await etcd_datastore.list(node="node-1")
    assert [obj.name for obj in on_node] == ["status-a"]
    assert index_keys(etcd) == [INDEX + "node-1/status-a"]

    # Now indexed, the node's watch sees its changes; other nodes' watches see nothing.
    node_1, node_2 = (
        etcd_datastore.watch(revision, node="node-1"),
        etcd_datastore.watch(revision, node="node-2"),
    )
    try:
        written = await etcd_datastore.update_status(
            on_node[0].model_copy(update={"status": CalicoNodeStatusStatus()})
        )
        (event,) = await collect(node_1, 1)
        assert (event.type, event.object) == (EventType.MODIFIED, written)
        assert await nothing_more(node_2)
    finally:
        await node_1.aclose()
        await node_2.aclose()

    # Moved and then removed by Calico's tools: the stale index keys are repaired on the next list.
    moved = dict(CALICO_WRITTEN, spec=dict(CALICO_WRITTEN["spec"], node="node-2"))
    etcd.etcdctl("put", KEY, json.dumps(moved))
    assert (await etcd_datastore.list(node="node-1"))[0] == []
    assert [obj.name for obj in (await etcd_datastore.list(node="node-2"))[0]] == ["status-a"]
    assert index_keys(etcd) == [INDEX + "node-2/status-a"]
    etcd.etcdctl("del", KEY)
    assert (await etcd_datastore.list(node="node-2"))[0] == []
    assert index_keys(etcd) == []


async def test_list_reads_page_by_page_at_one_revision(
    etcd: EtcdServer, etcd_datastore: EtcdDatastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 2 objects; between two pages another client changes an object not read yet, adds
    one and deletes one: the list is still the one state of the first page's revision."""
    monkeypatch.setattr(etcd_module, "LIST_PAGE_SIZE", 2)
    names = [f"status-{i}" for i in range(5)]
    for name in names:
        await etcd_datastore.create(make_status(name))
    before = {obj.name: obj for obj in (await etcd_datastore.list())[0]}
    other = EtcdDatastore(config_for(etcd))
    pages = 0
    read_page = etcd_datastore._range

    async def page_then_write(request: Any) -> Any:
        nonlocal pages
        response = await read_page(request)
        pages += 1
        if pages == 1:
            changed = before["status-4"].model_copy(deep=True)
            changed.spec.update_period_seconds = 99
            await other.update(changed)
            await other.create(make_status("status-9"))
            await other.delete("status-3")
        return response

    monkeypatch.setattr(etcd_datastore, "_range", page_then_write)
    try:
        objects, revision = await etcd_datastore.list()
    finally:
        await other.close()
    assert pages == 3
    assert [obj.name for obj in objects] == names
    assert [obj.spec.update_period_seconds for obj in objects] == [
        before[name].spec.update_period_seconds for name in names
    ]
    assert int(revision) == max(int(obj.metadata.resource_version or 0) for obj in objects)
    current = [obj.name for obj in (await etcd_datastore.list())[0]]
    assert current == ["status-0", "status-1", "status-2", "status-4", "status-9"]  # the writes happened


def _signal(server: EtcdServer, signum: signal.Signals) -> None:
    assert server._process is not None
    os.kill(server._process.pid, signum)


async def test_a_timed_out_request_does_not_cancel_others_in_flight(
    etcd_factory: Callable[..., EtcdServer],
) -> None:
    """Regression: failing over used to close the channel every request and watch shares, so
    requests in flight ended in CancelledError and the watch died with them."""
    server = etcd_factory()
    # The same server twice: a timeout moves to the "next" endpoint on a fresh channel.
    datastore = EtcdDatastore(config_for(server, etcd_endpoints=[server.endpoint] * 2), request_timeout=1)
    try:
        created = await datastore.create(make_status())
        _, start = await datastore.list()
        events = datastore.watch(start, node="node-1")
        watching = asyncio.create_task(collect(events, 1, within=20))
        await asyncio.sleep(0.3)  # the watch is established
        _signal(server, signal.SIGSTOP)  # a hung etcd: requests time out
        try:
            in_flight = []
            for _ in range(3):  # the first times out and fails over while the others wait
                in_flight.append(asyncio.create_task(datastore.get("status-a")))
                await asyncio.sleep(0.3)
            outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            _signal(server, signal.SIGCONT)
        assert [type(outcome) for outcome in outcomes] == [Unavailable] * 3
        written = await datastore.update_status(
            created.model_copy(update={"status": CalicoNodeStatusStatus()})
        )
        (event,) = await watching
        assert (event.type, event.object) == (EventType.MODIFIED, written)
        await events.aclose()
    finally:
        await datastore.close()


async def test_a_write_between_the_read_and_the_transaction_conflicts(
    etcd: EtcdServer, etcd_datastore: EtcdDatastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd has no status subresource: update_status reads the stored object, puts the new status
    in it and writes it back in a transaction. A spec edit by another client that lands after
    that read must make the transaction fail (its compare on the key's mod_revision), not be
    overwritten with the spec that was read."""
    held = await etcd_datastore.create(make_status())
    read = etcd_datastore.get
    async with EtcdDatastore(config_for(etcd)) as other:

        async def read_then_another_client_writes(name: str) -> CalicoNodeStatus:
            stored = await read(name)
            spec = stored.spec.model_copy(update={"update_period_seconds": 99})
            await other.update(stored.model_copy(update={"spec": spec}))
            return stored

        monkeypatch.setattr(etcd_datastore, "get", read_then_another_client_writes)
        status = CalicoNodeStatusStatus(
            agent=CalicoNodeAgentStatus(bird_v4=BGPDaemonStatus(state=BGPDaemonState.READY))
        )
        with pytest.raises(Conflict):
            await etcd_datastore.update_status(held.model_copy(update={"status": status}))
    stored = await read("status-a")
    assert stored.spec.update_period_seconds == 99, "the edit that landed in between was lost"
    assert stored.status.agent.bird_v4.state is None
