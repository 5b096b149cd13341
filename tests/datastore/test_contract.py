"""The datastore contract: every backend (embedded, etcdv3, kubernetes) passes these same tests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from calico_nodestatus.api import CalicoNodeStatus, CalicoNodeStatusStatus, NodeStatusClass
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    Datastore,
    EventType,
    InvalidResourceVersion,
    NotFound,
    WatchExpired,
)
from tests.datastore.conftest import collect, eventually, make_status, nothing_more


def reported_status(established: int) -> CalicoNodeStatusStatus:
    return CalicoNodeStatusStatus.model_validate(
        {
            "lastUpdated": "2024-05-01T10:00:00Z",
            "agent": {"birdV4": {"state": "Ready", "version": "v0.3.3+birdv1.6.8", "routerID": "198.18.0.1"}},
            "bgp": {
                "numberEstablishedV4": established,
                "peersV4": [{"peerIP": "198.18.0.2", "type": "NodeMesh", "state": "Established"}],
            },
        }
    )


def with_spec(obj: CalicoNodeStatus, **changes: object) -> CalicoNodeStatus:
    return obj.model_copy(update={"spec": obj.spec.model_copy(update=changes)})


def with_labels(obj: CalicoNodeStatus, labels: dict[str, str]) -> CalicoNodeStatus:
    return obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"labels": labels})})


def with_status(obj: CalicoNodeStatus, status: CalicoNodeStatusStatus) -> CalicoNodeStatus:
    return obj.model_copy(update={"status": status})


# -- create / get ---------------------------------------------------------------------------------


async def test_create_sets_server_fields_and_drops_status(datastore: Datastore) -> None:
    incoming = make_status()
    incoming = incoming.model_copy(
        update={
            "metadata": incoming.metadata.model_copy(
                update={"uid": "client-chosen", "generation": 7, "resource_version": "999999"}
            ),
            "status": reported_status(3),
        }
    )
    before = datetime.now(UTC).replace(microsecond=0)
    created = await datastore.create(incoming)

    assert created.metadata.uid not in (None, "client-chosen")
    uuid.UUID(created.metadata.uid or "")
    assert created.metadata.generation == 1
    assert created.metadata.creation_timestamp is not None
    assert before <= created.metadata.creation_timestamp <= datetime.now(UTC)
    assert (created.metadata.resource_version or "").isdecimal()
    assert created.metadata.resource_version != "999999"
    assert created.status.is_empty()
    assert created.spec == incoming.spec

    fetched = await datastore.get("status-a")
    assert fetched == created


async def test_create_existing_raises_already_exists(datastore: Datastore) -> None:
    await datastore.create(make_status())
    with pytest.raises(AlreadyExists) as caught:
        await datastore.create(make_status(period=30))
    assert str(caught.value).startswith("resource already exists: CalicoNodeStatus(status-a) with error:")
    assert (await datastore.get("status-a")).spec.update_period_seconds == 10


async def test_get_missing_raises_not_found(datastore: Datastore) -> None:
    with pytest.raises(NotFound) as caught:
        await datastore.get("absent")
    assert str(caught.value).startswith("resource does not exist: CalicoNodeStatus(absent) with error:")


# -- update / update_status -----------------------------------------------------------------------


async def test_generation_increments_on_spec_changes_only(datastore: Datastore) -> None:
    created = await datastore.create(make_status())

    relabelled = await datastore.update(with_labels(created, {"team": "net"}))
    assert relabelled.metadata.labels == {"team": "net"}
    assert relabelled.metadata.generation == 1
    assert relabelled.metadata.resource_version != created.metadata.resource_version

    respecced = await datastore.update(with_spec(relabelled, update_period_seconds=60))
    assert respecced.metadata.generation == 2
    assert respecced.spec.update_period_seconds == 60

    reported = await datastore.update_status(with_status(respecced, reported_status(1)))
    assert reported.metadata.generation == 2

    again = await datastore.update(with_spec(reported, classes=[NodeStatusClass.ROUTES]))
    assert again.metadata.generation == 3
    assert (await datastore.get("status-a")).metadata.generation == 3


async def test_update_annotations_touches_only_the_named_annotations(datastore: Datastore) -> None:
    created = await datastore.create(make_status())
    labelled = await datastore.update(
        created.model_copy(
            update={
                "metadata": created.metadata.model_copy(
                    update={"labels": {"team": "net"}, "annotations": {"owner": "ops"}}
                )
            }
        )
    )
    reported = await datastore.update_status(with_status(labelled, reported_status(2)))
    key = "nodestatus.projectcalico.org/routes-omitted"

    annotated = await datastore.update_annotations(reported, {key: '{"v4":3,"v6":0}'})
    assert annotated.metadata.annotations == {"owner": "ops", key: '{"v4":3,"v6":0}'}
    assert annotated.metadata.resource_version != reported.metadata.resource_version
    assert annotated.metadata.generation == reported.metadata.generation
    stored = await datastore.get("status-a")
    assert stored.metadata.annotations == annotated.metadata.annotations
    assert stored.metadata.labels == {"team": "net"}
    assert stored.spec == created.spec
    assert stored.status.bgp.number_established_v4 == 2

    with pytest.raises(Conflict):
        await datastore.update_annotations(reported, {key: None})  # stale resourceVersion
    cleared = await datastore.update_annotations(annotated, {key: None})
    assert cleared.metadata.annotations == {"owner": "ops"}
    assert (await datastore.get("status-a")).metadata.annotations == {"owner": "ops"}
    with pytest.raises(NotFound):
        await datastore.update_annotations(
            make_status("absent").model_copy(
                update={
                    "metadata": make_status("absent").metadata.model_copy(update={"resource_version": "1"})
                }
            ),
            {key: "x"},
        )


async def test_update_keeps_stored_status(datastore: Datastore) -> None:
    created = await datastore.create(make_status())
    reported = await datastore.update_status(with_status(created, reported_status(2)))

    # A spec edit carrying a stale (here: empty) status must not wipe what the agent reported.
    edited = await datastore.update(
        with_status(with_spec(reported, update_period_seconds=5), CalicoNodeStatusStatus())
    )
    assert edited.status == reported_status(2)
    assert edited.spec.update_period_seconds == 5
    assert (await datastore.get("status-a")).status == reported_status(2)


async def test_update_status_keeps_spec_labels_and_generation(datastore: Datastore) -> None:
    created = await datastore.create(make_status())
    labelled = await datastore.update(with_labels(created, {"team": "net"}))

    # A status writer holding an object with a different spec and labels must not change them.
    tampered = with_labels(with_spec(labelled, node="node-9", update_period_seconds=99), {})
    reported = await datastore.update_status(with_status(tampered, reported_status(4)))

    assert reported.status == reported_status(4)
    stored = await datastore.get("status-a")
    assert stored.spec == created.spec
    assert stored.metadata.labels == {"team": "net"}
    assert stored.metadata.generation == 1
    assert stored.metadata.uid == created.metadata.uid
    assert stored.status == reported_status(4)
    assert stored.metadata.resource_version == reported.metadata.resource_version


async def test_stale_resource_version_conflicts(datastore: Datastore) -> None:
    created = await datastore.create(make_status())
    await datastore.update(with_spec(created, update_period_seconds=20))

    with pytest.raises(Conflict) as caught:
        await datastore.update(with_spec(created, update_period_seconds=30))
    assert str(caught.value) == "update conflict: CalicoNodeStatus(status-a)"
    with pytest.raises(Conflict):
        await datastore.update_status(with_status(created, reported_status(1)))
    with pytest.raises(Conflict):
        await datastore.delete("status-a", created.metadata.resource_version)

    stored = await datastore.get("status-a")
    assert stored.spec.update_period_seconds == 20
    assert stored.status.is_empty()


async def test_update_of_missing_object_raises_not_found(datastore: Datastore) -> None:
    created = await datastore.create(make_status())
    await datastore.delete("status-a")
    with pytest.raises(NotFound):
        await datastore.update(created)
    with pytest.raises(NotFound):
        await datastore.update_status(created)


@pytest.mark.parametrize("resource_version", [None, "", "abc"])
async def test_update_needs_a_resource_version(datastore: Datastore, resource_version: str | None) -> None:
    created = await datastore.create(make_status())
    unversioned = created.model_copy(
        update={"metadata": created.metadata.model_copy(update={"resource_version": resource_version})}
    )
    with pytest.raises(InvalidResourceVersion) as caught:
        await datastore.update(unversioned)
    assert "Metadata.ResourceVersion" in str(caught.value)
    assert (await datastore.get("status-a")).metadata.resource_version == created.metadata.resource_version


# -- delete / list --------------------------------------------------------------------------------


async def test_delete_returns_last_object(datastore: Datastore) -> None:
    created = await datastore.create(make_status())
    reported = await datastore.update_status(with_status(created, reported_status(1)))

    deleted = await datastore.delete("status-a", reported.metadata.resource_version)
    assert deleted.status == reported_status(1)
    assert deleted.metadata.uid == created.metadata.uid
    with pytest.raises(NotFound):
        await datastore.get("status-a")
    with pytest.raises(NotFound):
        await datastore.delete("status-a")


async def test_list_filters_by_node(datastore: Datastore) -> None:
    empty, _ = await datastore.list()
    assert empty == []
    a = await datastore.create(make_status("status-a", node="node-1"))
    b = await datastore.create(make_status("status-b", node="node-2"))
    c = await datastore.create(make_status("status-c", node="node-1"))

    everything, revision = await datastore.list()
    assert sorted(obj.name for obj in everything) == ["status-a", "status-b", "status-c"]
    assert int(revision) >= max(int(o.metadata.resource_version or 0) for o in (a, b, c))

    on_node_1, _ = await datastore.list(node="node-1")
    assert sorted(obj.name for obj in on_node_1) == ["status-a", "status-c"]
    nothing, _ = await datastore.list(node="node-3")
    assert nothing == []


# -- watch ----------------------------------------------------------------------------------------


async def test_watch_delivers_changes_in_order(datastore: Datastore) -> None:
    _, start = await datastore.list()
    events = datastore.watch(start)
    try:
        created = await datastore.create(make_status())
        updated = await datastore.update(with_spec(created, update_period_seconds=20))
        reported = await datastore.update_status(with_status(updated, reported_status(1)))
        await datastore.delete("status-a")

        seen = await collect(events, 4)
        assert [event.type for event in seen] == [
            EventType.ADDED,
            EventType.MODIFIED,
            EventType.MODIFIED,
            EventType.DELETED,
        ]
        assert seen[0].object == created
        assert seen[1].object == updated
        assert seen[2].object == reported
        assert seen[3].object.status == reported_status(1)
        revisions = [int(event.resource_version) for event in seen]
        assert revisions == sorted(revisions) and len(set(revisions)) == 4
        assert [e.object.metadata.resource_version for e in seen[:3]] == [
            e.resource_version for e in seen[:3]
        ]
        assert await nothing_more(events)
    finally:
        await events.aclose()


async def test_watch_resumes_without_gaps_or_duplicates(datastore: Datastore) -> None:
    _, start = await datastore.list()
    created = await datastore.create(make_status())
    first = await datastore.update(with_spec(created, update_period_seconds=20))
    second = await datastore.update(with_spec(first, update_period_seconds=30))

    events = datastore.watch(start)
    try:
        seen = await collect(events, 2)
    finally:
        await events.aclose()
    assert [e.object.spec.update_period_seconds for e in seen] == [10, 20]

    third = await datastore.update(with_spec(second, update_period_seconds=40))
    resumed = datastore.watch(seen[-1].resource_version)
    try:
        rest = await collect(resumed, 2)
        assert [e.object.spec.update_period_seconds for e in rest] == [30, 40]
        assert rest[-1].object == third
        assert await nothing_more(resumed)
    finally:
        await resumed.aclose()


async def test_watch_filters_by_node(datastore: Datastore) -> None:
    _, start = await datastore.list()
    events = datastore.watch(start, node="node-2")
    try:
        await datastore.create(make_status("status-a", node="node-1"))
        await datastore.create(make_status("status-b", node="node-2"))
        await datastore.delete("status-a")
        await datastore.delete("status-b")
        seen = await collect(events, 2)
        assert [(e.type, e.object.name) for e in seen] == [
            (EventType.ADDED, "status-b"),
            (EventType.DELETED, "status-b"),
        ]
        assert await nothing_more(events)
    finally:
        await events.aclose()


async def test_node_filtered_watch_sees_objects_move_in_and_out(datastore: Datastore) -> None:
    """Like a Kubernetes field-selector watch: an object whose spec.node moves away is DELETED
    for the old node's watch, ADDED for the new node's. Kubernetes' DELETED carries the object's
    last content that matched (spec.node still the old node); the other backends carry it as it
    now is: the name, type and revision are the contract."""
    created = await datastore.create(make_status("status-a", node="node-1"))
    _, start = await datastore.list()
    old_node = datastore.watch(start, node="node-1")
    new_node = datastore.watch(start, node="node-2")
    try:
        moved = await datastore.update(with_spec(created, node="node-2"))
        back = await datastore.update(with_spec(moved, node="node-1"))
        (left,) = await collect(old_node, 1)
        assert (left.type, left.object.name) == (EventType.DELETED, "status-a")
        assert left.resource_version == moved.metadata.resource_version
        (entered,) = await collect(new_node, 1)
        assert (entered.type, entered.object.spec.node) == (EventType.ADDED, "node-2")
        (returned,) = await collect(old_node, 1)
        assert (returned.type, returned.resource_version) == (EventType.ADDED, back.metadata.resource_version)
        (gone,) = await collect(new_node, 1)
        assert (gone.type, gone.resource_version) == (EventType.DELETED, back.metadata.resource_version)
        await datastore.update(with_spec(back, update_period_seconds=5))
        (changed,) = await collect(old_node, 1)
        assert (changed.type, changed.object.spec.update_period_seconds) == (EventType.MODIFIED, 5)
        assert await nothing_more(new_node)
    finally:
        await old_node.aclose()
        await new_node.aclose()


async def test_watch_from_compacted_revision_expires(compactable_datastore: Datastore) -> None:
    datastore = compactable_datastore
    compact = datastore.compact  # type: ignore[attr-defined]
    _, start = await datastore.list()
    created = await datastore.create(make_status())
    first = await datastore.update(with_spec(created, update_period_seconds=20))
    second = await datastore.update(with_spec(first, update_period_seconds=30))
    await compact(second.metadata.resource_version)

    expired = datastore.watch(start)
    with pytest.raises(WatchExpired):
        await collect(expired, 1)

    # The revision just before the compaction point is still complete: the next event is kept.
    kept = datastore.watch(first.metadata.resource_version)
    try:
        assert [e.object for e in await collect(kept, 1)] == [second]
    finally:
        await kept.aclose()


# -- liveness -------------------------------------------------------------------------------------


async def test_liveness_renew_get_list_release(datastore: Datastore) -> None:
    assert await datastore.get_liveness("node-1") is None
    before = datetime.now(UTC)
    await datastore.renew_liveness("node-1", "host-a/100", 30)
    await datastore.renew_liveness("node-2", "host-b/200", 30)

    record = await datastore.get_liveness("node-1")
    assert record is not None
    assert (record.node, record.holder, record.ttl_seconds) == ("node-1", "host-a/100", 30)
    assert before.timestamp() - 1 <= record.renewed_at.timestamp() <= datetime.now(UTC).timestamp() + 1
    assert record.is_alive(datetime.now(UTC))

    await asyncio.sleep(0.05)
    await datastore.renew_liveness("node-1", "host-a/100", 30)
    renewed = await datastore.get_liveness("node-1")
    assert renewed is not None and renewed.renewed_at > record.renewed_at

    assert [(r.node, r.holder) for r in await datastore.list_liveness()] == [
        ("node-1", "host-a/100"),
        ("node-2", "host-b/200"),
    ]

    await datastore.release_liveness("node-1", "someone-else")
    assert await datastore.get_liveness("node-1") is not None
    await datastore.release_liveness("node-1", "host-a/100")
    assert await datastore.get_liveness("node-1") is None
    assert [r.node for r in await datastore.list_liveness()] == ["node-2"]


async def test_liveness_expires_when_not_renewed(datastore: Datastore) -> None:
    await datastore.renew_liveness("node-1", "host-a/100", 1)
    await datastore.renew_liveness("node-2", "host-b/200", 60)
    assert await datastore.get_liveness("node-1") is not None

    async def node_1_gone() -> bool:
        return await datastore.get_liveness("node-1") is None

    # etcd rounds lease TTLs up to its minimum (2 s here) and reaps expired leases every 0.5 s.
    assert await eventually(node_1_gone, within=6)
    assert [r.node for r in await datastore.list_liveness()] == ["node-2"]

    await datastore.renew_liveness("node-1", "host-a/101", 30)
    record = await datastore.get_liveness("node-1")
    assert record is not None and record.holder == "host-a/101"
