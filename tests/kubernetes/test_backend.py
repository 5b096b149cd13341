"""KubernetesDatastore against replayed kube-apiserver responses: requests built, responses mapped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from calico_nodestatus.api import CalicoNodeStatus, reverse_uid
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    DatastoreError,
    EventType,
    InvalidResourceVersion,
    NotFound,
    Unavailable,
    WatchExpired,
)
from calico_nodestatus.datastore.kubernetes import (
    V1_API_VERSION,
    V3_API_VERSION,
    choose_api_version,
    node_field_selector,
    node_view_event,
)
from tests.kubernetes.apiserver import ReplayApiServer, Reply, status_body
from tests.kubernetes.conftest import TOKEN, DatastoreFactory
from tests.kubernetes.shapes import (
    CR_UID,
    LEASES_PATH,
    V1_PATH,
    V3_PATH,
    already_exists,
    bookmark,
    conflict,
    cr_list,
    event,
    gone,
    lease,
    not_found,
    v1_cr,
    v3_cr,
)

UNSUPPORTED_SELECTOR = status_body(400, "BadRequest", "field label not supported: spec.node")


@pytest.mark.parametrize(
    ("env_value", "groups", "expected"),
    [
        ("projectcalico.org/v3", None, V3_API_VERSION),
        ("crd.projectcalico.org/v1", ["projectcalico.org"], V1_API_VERSION),
        (None, ["apps", "crd.projectcalico.org"], V1_API_VERSION),
        (None, ["projectcalico.org"], V3_API_VERSION),
        # The aggregated API server serves v3 but stores in the v1 CRD.
        (None, ["projectcalico.org", "crd.projectcalico.org"], V1_API_VERSION),
        (None, None, V1_API_VERSION),
    ],
)
def test_api_version_choice_follows_libcalico(env_value, groups, expected) -> None:
    assert choose_api_version(env_value, groups) == expected


@pytest.mark.parametrize(
    ("groups", "expected"),
    [(["apps", "projectcalico.org"], V3_API_VERSION), (["crd.projectcalico.org"], V1_API_VERSION)],
)
async def test_discovery_picks_the_group(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory, groups, expected
) -> None:
    apiserver.expect(
        "GET",
        "/apis",
        Reply(body={"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": g} for g in groups]}),
    )
    store = await open_datastore(api_version=None)
    assert await store.api_version() == expected
    assert await store.api_version() == expected  # decided once
    assert len(apiserver.sent("GET", "/apis")) == 1


async def test_discovery_failure_falls_back_to_v1(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect(
        "GET", "/apis", Reply(503, status_body(503, "ServiceUnavailable", "etcd leader changed"))
    )
    assert await (await open_datastore(api_version=None)).api_version() == V1_API_VERSION


async def test_env_group_skips_discovery(
    open_datastore: DatastoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALICO_API_GROUP", "projectcalico.org/v3")
    assert await (await open_datastore(api_version=None)).api_version() == V3_API_VERSION


async def test_get_translates_v1_metadata(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect(
        "GET", f"{V1_PATH}/node-a-status", Reply(body=v1_cr("node-a-status", "node-a", "4107", generation=3))
    )
    obj = await (await open_datastore()).get("node-a-status")
    assert apiserver.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert obj.metadata.uid == reverse_uid(CR_UID) != CR_UID
    assert obj.metadata.resource_version == "4107"
    # The live generation, not the annotation's (which has none): spec edits stay detectable.
    assert obj.metadata.generation == 3
    assert obj.metadata.labels == {"team": "net", "projectcalico.org/owner": "ops"}
    assert obj.spec.node == "node-a"
    assert obj.status.bgp.peers_v4[0].peer_ip == "198.18.0.2"


async def test_get_missing_is_not_found(apiserver: ReplayApiServer, open_datastore: DatastoreFactory) -> None:
    apiserver.expect("GET", f"{V1_PATH}/gone", Reply(404, not_found("gone")))
    with pytest.raises(NotFound, match=r"CalicoNodeStatus\(gone\).*not found"):
        await (await open_datastore()).get("gone")


async def test_list_pages_and_server_side_node_filter(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect(
        "GET",
        V1_PATH,
        Reply(body=cr_list(V1_API_VERSION, [v1_cr("a1", "node-a", "10")], "20", cont="page2")),
        Reply(body=cr_list(V1_API_VERSION, [v1_cr("a2", "node-a", "12")], "20")),
    )
    objects, revision = await (await open_datastore()).list(node="node-a")
    assert [o.metadata.name for o in objects] == ["a1", "a2"]
    assert revision == "20"
    first, second = apiserver.sent("GET", V1_PATH)
    assert first.query == {"limit": "500", "fieldSelector": "spec.node=node-a"}
    assert second.query == {"limit": "500", "fieldSelector": "spec.node=node-a", "continue": "page2"}


async def test_list_filters_client_side_without_selectable_fields(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    everything = cr_list(V1_API_VERSION, [v1_cr("a1", "node-a", "10"), v1_cr("b1", "node-b", "11")], "30")
    apiserver.expect(
        "GET", V1_PATH, Reply(400, UNSUPPORTED_SELECTOR), Reply(body=everything), Reply(body=everything)
    )
    store = await open_datastore()
    assert [o.metadata.name for o in (await store.list(node="node-a"))[0]] == ["a1"]
    assert [o.metadata.name for o in (await store.list(node="node-b"))[0]] == ["b1"]
    # The unsupported selector is tried once, then remembered.
    assert ["fieldSelector" in r.query for r in apiserver.sent("GET", V1_PATH)] == [True, False, False]


async def test_list_skips_objects_kubectl_made_invalid(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    broken = v1_cr("broken", "node-a", "10", annotated=False)
    broken["spec"]["classes"] = ["Agent", "Agent"]
    apiserver.expect(
        "GET", V1_PATH, Reply(body=cr_list(V1_API_VERSION, [broken, v1_cr("ok", "node-a", "11")], "12"))
    )
    objects, _ = await (await open_datastore()).list()
    assert [o.metadata.name for o in objects] == ["ok"]


def new_object(name: str = "node-a-status") -> CalicoNodeStatus:
    return CalicoNodeStatus.from_wire(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "CalicoNodeStatus",
            "metadata": {"name": name, "labels": {"team": "net"}},
            "spec": {"node": "node-a", "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10},
        }
    )


async def test_create_posts_v1_cr_without_status(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect("POST", V1_PATH, Reply(201, v1_cr("node-a-status", "node-a", "500")))
    created = await (await open_datastore()).create(new_object())
    body = apiserver.sent("POST", V1_PATH)[0].body
    assert body["apiVersion"] == "crd.projectcalico.org/v1"
    assert "status" not in body
    assert set(body["metadata"]) == {"name", "annotations"}
    assert json.loads(body["metadata"]["annotations"]["projectcalico.org/metadata"]) == {
        "labels": {"team": "net"}
    }
    assert created.metadata.resource_version == "500"
    assert created.metadata.generation == 1


async def test_create_existing_is_already_exists(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect("POST", V1_PATH, Reply(409, already_exists("node-a-status")))
    with pytest.raises(AlreadyExists, match="already exists"):
        await (await open_datastore()).create(new_object())


async def test_update_sends_cr_uid_and_maps_conflict(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    path = f"{V1_PATH}/node-a-status"
    apiserver.expect("GET", path, Reply(body=v1_cr("node-a-status", "node-a", "600")))
    apiserver.expect("PUT", path, Reply(409, conflict("node-a-status")))
    store = await open_datastore()
    obj = await store.get("node-a-status")
    with pytest.raises(Conflict, match=r"update conflict: CalicoNodeStatus\(node-a-status\)"):
        await store.update(obj)
    sent = apiserver.sent("PUT", path)[0].body
    assert sent["metadata"]["uid"] == CR_UID  # transformed back to the CR's own uid
    assert sent["metadata"]["resourceVersion"] == "600"
    assert sent["metadata"]["labels"] == {"projectcalico.org/owner": "ops"}


async def test_update_status_uses_the_subresource(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    path = f"{V1_PATH}/node-a-status"
    apiserver.expect("GET", path, Reply(body=v1_cr("node-a-status", "node-a", "700")))
    apiserver.expect(
        "PUT",
        f"{path}/status",
        Reply(body=v1_cr("node-a-status", "node-a", "701")),
        Reply(404, not_found("node-a-status")),
    )
    store = await open_datastore()
    written = await store.update_status(await store.get("node-a-status"))
    assert written.metadata.resource_version == "701"
    assert apiserver.sent("PUT", f"{path}/status")[0].body["status"]["bgp"]["numberEstablishedV4"] == 1
    with pytest.raises(NotFound):
        await store.update_status(written)
    assert not apiserver.sent("PUT", path)


async def test_update_status_without_subresource_keeps_stored_spec(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    path = f"{V1_PATH}/node-a-status"
    stored = v1_cr("node-a-status", "node-a", "800")
    edited = v1_cr("node-a-status", "node-a", "800")
    edited["spec"]["updatePeriodSeconds"] = 99
    edited["status"]["bgp"]["numberEstablishedV4"] = 5
    no_such_url = status_body(404, "NotFound", "the server could not find the requested resource", {})
    apiserver.expect("PUT", f"{path}/status", Reply(404, no_such_url))
    apiserver.expect("GET", path, Reply(body=stored), Reply(body=v1_cr("node-a-status", "node-a", "801")))
    apiserver.expect("PUT", path, Reply(body=v1_cr("node-a-status", "node-a", "801")))
    store = await open_datastore()
    await store.update_status(CalicoNodeStatus.from_crd_v1(edited))
    sent = apiserver.sent("PUT", path)[0].body
    assert sent["spec"]["updatePeriodSeconds"] == 10
    assert sent["status"]["bgp"]["numberEstablishedV4"] == 5
    assert sent["metadata"]["resourceVersion"] == "800"
    # Remembered: the next status write goes straight to the fallback, which checks the revision.
    with pytest.raises(Conflict):
        await store.update_status(CalicoNodeStatus.from_crd_v1(edited))
    assert len(apiserver.sent("PUT", f"{path}/status")) == 1
    assert len(apiserver.sent("PUT", path)) == 1


async def test_delete_with_precondition_returns_the_object(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    path = f"{V1_PATH}/node-a-status"
    apiserver.expect(
        "DELETE",
        path,
        Reply(body=v1_cr("node-a-status", "node-a", "900")),
        Reply(409, conflict("node-a-status")),
    )
    store = await open_datastore()
    deleted = await store.delete("node-a-status", resource_version="900")
    assert deleted.spec.node == "node-a"
    assert apiserver.sent("DELETE", path)[0].body["preconditions"] == {"resourceVersion": "900"}
    with pytest.raises(Conflict):
        await store.delete("node-a-status", resource_version="1")


async def test_watch_resumes_from_bookmarks_and_maps_410(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect(
        "GET",
        V1_PATH,
        Reply(
            events=[
                event("ADDED", v1_cr("a1", "node-a", "101")),
                bookmark("150"),
                event("MODIFIED", v1_cr("a1", "node-a", "160")),
            ]
        ),
        Reply(events=[bookmark("170")]),
        Reply(events=[event("ERROR", gone("170"))]),
    )
    store = await open_datastore()
    seen = []
    with pytest.raises(WatchExpired, match="too old resource version"):
        async for watch_event in store.watch("100", node="node-a"):
            seen.append((watch_event.type, watch_event.object.metadata.name, watch_event.resource_version))
    assert seen == [(EventType.ADDED, "a1", "101"), (EventType.MODIFIED, "a1", "160")]
    requests = apiserver.sent("GET", V1_PATH)
    assert [r.query["resourceVersion"] for r in requests] == ["100", "160", "170"]
    assert all(r.query["allowWatchBookmarks"] == "true" and r.query["watch"] == "true" for r in requests)
    assert all(r.query["fieldSelector"] == "spec.node=node-a" for r in requests)


async def test_watch_http_410_is_expired(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect("GET", V1_PATH, Reply(410, gone("5")))
    with pytest.raises(WatchExpired):
        async for _ in (await open_datastore()).watch("5"):
            pass


async def test_watch_filters_client_side_like_a_field_selector(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect(
        "GET",
        V1_PATH,
        Reply(400, UNSUPPORTED_SELECTOR),
        Reply(body=cr_list(V1_API_VERSION, [v1_cr("a1", "node-a", "10"), v1_cr("b1", "node-b", "11")], "12")),
        Reply(
            events=[
                event("MODIFIED", v1_cr("b1", "node-b", "13")),
                event("MODIFIED", v1_cr("a1", "node-b", "14")),
                event("MODIFIED", v1_cr("b1", "node-a", "15")),
                event("ERROR", gone("15")),
            ]
        ),
    )
    seen = []
    with pytest.raises(WatchExpired):
        async for watch_event in (await open_datastore()).watch("12", node="node-a"):
            seen.append((watch_event.type, watch_event.object.metadata.name))
    assert seen == [(EventType.DELETED, "a1"), (EventType.ADDED, "b1")]
    assert "fieldSelector" not in apiserver.sent("GET", V1_PATH)[-1].query


@pytest.mark.parametrize(
    ("event_type", "obj_node", "known", "expected", "known_after"),
    [
        (EventType.ADDED, "n1", set(), EventType.ADDED, {"x"}),
        (EventType.ADDED, "n2", set(), None, set()),
        (EventType.MODIFIED, "n1", {"x"}, EventType.MODIFIED, {"x"}),
        (EventType.MODIFIED, "n1", set(), EventType.ADDED, {"x"}),
        (EventType.MODIFIED, "n2", {"x"}, EventType.DELETED, set()),
        (EventType.MODIFIED, "n2", set(), None, set()),
        (EventType.DELETED, "n1", {"x"}, EventType.DELETED, set()),
        (EventType.DELETED, "n2", set(), None, set()),
    ],
)
def test_node_view_event(event_type, obj_node, known, expected, known_after) -> None:
    assert node_view_event(event_type, "x", obj_node, "n1", known) == expected
    assert known == known_after


def test_node_field_selector_escapes_separators() -> None:
    assert node_field_selector("a,b=c\\") == "spec.node=a\\,b\\=c\\\\"


async def test_v3_mode_uses_the_native_crd(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    apiserver.expect("POST", V3_PATH, Reply(201, v3_cr("node-a-status", "node-a", "42")))
    created = await (await open_datastore(api_version=V3_API_VERSION)).create(new_object())
    body = apiserver.sent("POST", V3_PATH)[0].body
    assert body["apiVersion"] == "projectcalico.org/v3"
    assert body["metadata"] == {"name": "node-a-status", "labels": {"team": "net"}}
    # No translation in v3 mode: the CR uid is the object's uid; server-only fields are dropped.
    assert created.metadata.uid == CR_UID


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            500,
            status_body(500, "InternalError", "etcdserver: request timed out"),
            Unavailable,
            "request timed out",
        ),
        (
            429,
            status_body(429, "TooManyRequests", "storage is (re)initializing"),
            Unavailable,
            "initializing",
        ),
        (
            403,
            status_body(403, "Forbidden", 'caliconodestatuses.crd.projectcalico.org "x" is forbidden'),
            DatastoreError,
            "forbidden",
        ),
    ],
)
async def test_api_errors_are_mapped(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory, status, body, error, message
) -> None:
    apiserver.expect("GET", f"{V1_PATH}/x", Reply(status, body))
    with pytest.raises(error, match=message):
        await (await open_datastore()).get("x")


async def test_unreachable_server_is_unavailable(
    open_datastore: DatastoreFactory, apiserver: ReplayApiServer
) -> None:
    store = await open_datastore()
    store._http.base_url = "http://127.0.0.1:9"  # discard port: nothing listens there
    with pytest.raises(Unavailable, match="unreachable"):
        await store.get("x")


async def test_renew_creates_then_updates_the_lease(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    path = f"{LEASES_PATH}/calico-nodestatus-node-a"
    apiserver.expect(
        "GET",
        path,
        Reply(
            404,
            status_body(404, "NotFound", 'leases.coordination.k8s.io "calico-nodestatus-node-a" not found'),
        ),
    )
    apiserver.expect("POST", LEASES_PATH, Reply(201, lease("node-a", "node-a/1", "1")))
    apiserver.expect("GET", path, Reply(body=lease("node-a", "node-a/1", "1")))
    apiserver.expect("PUT", path, Reply(body=lease("node-a", "node-a/1", "2")))
    store = await open_datastore()
    before = datetime.now(UTC)
    await store.renew_liveness("node-a", "node-a/1", 12.5)
    await store.renew_liveness("node-a", "node-a/1", 12.5)
    created = apiserver.sent("POST", LEASES_PATH)[0].body
    assert created["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "calico-nodestatus"}
    assert created["spec"]["holderIdentity"] == "node-a/1"
    assert created["spec"]["leaseDurationSeconds"] == 13
    updated = apiserver.sent("PUT", path)[0].body
    assert updated["metadata"]["resourceVersion"] == "1"
    assert datetime.fromisoformat(updated["spec"]["renewTime"]) >= before
    assert updated["spec"]["acquireTime"] == "2026-03-02T10:00:00.000000Z"  # same holder: not re-acquired


async def test_leases_live_in_pod_namespace(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "kube-system")
    apiserver.expect(
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/calico-nodestatus-node-a",
        Reply(body=lease("node-a", "h", "3", micro_time(datetime.now(UTC)))),
    )
    record = await (await open_datastore()).get_liveness("node-a")
    assert record is not None and record.holder == "h"


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_liveness_records_and_release(
    apiserver: ReplayApiServer, open_datastore: DatastoreFactory
) -> None:
    path = f"{LEASES_PATH}/calico-nodestatus-node-a"
    renewed = datetime.now(UTC).replace(microsecond=123456) - timedelta(seconds=5)
    fresh = micro_time(renewed)
    expired = micro_time(renewed - timedelta(seconds=60))
    apiserver.expect(
        "GET",
        path,
        Reply(body=lease("node-a", "node-a/1", "7", fresh)),
        Reply(body=lease("node-a", "node-a/1", "7", expired)),
        Reply(body=lease("node-a", "node-a/1", "7", fresh)),
        Reply(body=lease("node-a", "other", "8", fresh)),
    )
    apiserver.expect("PUT", path, Reply(body=lease("node-a", None, "8", fresh)))
    leases = [
        lease("node-b", "node-b/4", "5", fresh),
        lease("node-a", None, "8", fresh),
        lease("node-c", "c", "6", expired),
    ]
    apiserver.expect(
        "GET",
        LEASES_PATH,
        Reply(
            body={
                "kind": "LeaseList",
                "apiVersion": "coordination.k8s.io/v1",
                "metadata": {"resourceVersion": "9"},
                "items": leases,
            }
        ),
    )
    store = await open_datastore()
    record = await store.get_liveness("node-a")
    assert record is not None
    assert (record.node, record.holder, record.ttl_seconds, record.renewed_at) == (
        "node-a",
        "node-a/1",
        30.0,
        renewed,
    )
    assert await store.get_liveness("node-a") is None  # not renewed within its 30 s: absent
    await store.release_liveness("node-a", "node-a/1")
    assert "holderIdentity" not in apiserver.sent("PUT", path)[0].body["spec"]
    await store.release_liveness("node-a", "node-a/1")  # someone else holds it now: untouched
    assert len(apiserver.sent("PUT", path)) == 1
    # Released (no holder) and expired leases are not records.
    assert [r.node for r in await store.list_liveness()] == ["node-b"]
    assert apiserver.sent("GET", LEASES_PATH)[0].query == {
        "labelSelector": "app.kubernetes.io/managed-by=calico-nodestatus"
    }


@pytest.mark.parametrize("revision", [None, "", "rv-7"])
async def test_conditional_writes_need_a_revision(
    open_datastore: DatastoreFactory, revision: str | None
) -> None:
    store = await open_datastore()
    obj = new_object()
    obj.metadata.resource_version = revision
    with pytest.raises(InvalidResourceVersion, match=r"Metadata\.ResourceVersion"):
        await store.update(obj)
    with pytest.raises(InvalidResourceVersion):
        await store.update_status(obj)
    if revision is not None:
        with pytest.raises(InvalidResourceVersion, match="a Delete request"):
            await store.delete("node-a-status", revision)
