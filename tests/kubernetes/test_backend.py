"""KubernetesDatastore on the session's real kube-apiserver: what the server itself does to the
requests the backend sends (CAS conflicts, the /status subresource, generation, CRD validation and
pruning, selectable fields, bookmarks, compaction, Leases, a real watch stream), checked through
the backend and, where it matters, with kubectl as an independent client. Both CRD modes where the
two differ or could. The faults a real apiserver cannot make on demand are test_backend_faults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from calico_nodestatus.agent.budget import ROUTES_OMITTED_ANNOTATION
from calico_nodestatus.api import CalicoNodeStatus, reverse_uid
from calico_nodestatus.api.crd import build_crd
from calico_nodestatus.api.crd_v1 import CRD_V1_GROUP
from calico_nodestatus.datastore import kubernetes
from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    DatastoreError,
    EventType,
    InvalidResourceVersion,
    NotFound,
    PermissionDenied,
    Unavailable,
    WatchEvent,
    WatchExpired,
)
from calico_nodestatus.datastore.kubernetes import (
    LEASE_NAME_PREFIX,
    V1_API_VERSION,
    V3_API_VERSION,
    choose_api_version,
    node_field_selector,
    node_view_event,
)
from calico_nodestatus.lab.controlplane import ADMIN_USER, ControlPlane, free_port
from tests.kubernetes.conftest import (
    DatastoreFactory,
    kubectl_json,
    resource,
    set_v1_crd,
    write_kubeconfig,
)
from tests.plugins.agent import wait_for
from tests.plugins.kubernetes import AGENT_NAMESPACE, KUBE_API_VERSIONS, restart_apiserver

pytestmark = pytest.mark.kubernetes

both_modes = pytest.mark.parametrize("mode", KUBE_API_VERSIONS)


# --- pure rules ----------------------------------------------------------------------------------


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


# --- helpers -------------------------------------------------------------------------------------


def new_object(name: str = "node-a-status", node: str = "node-a", period: int = 10) -> CalicoNodeStatus:
    return CalicoNodeStatus.from_wire(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "CalicoNodeStatus",
            "metadata": {"name": name, "labels": {"team": "net"}},
            "spec": {"node": node, "classes": ["Agent", "BGP"], "updatePeriodSeconds": period},
        }
    )


def with_status(obj: CalicoNodeStatus, established: int, routes: int = 0) -> CalicoNodeStatus:
    wire = obj.to_wire()
    wire["status"] = {
        "lastUpdated": "2026-03-02T10:16:00Z",
        "agent": {"birdV4": {"state": "Ready", "routerID": "198.18.0.1"}},
        "bgp": {
            "numberEstablishedV4": established,
            "numberNotEstablishedV4": 0,
            "numberEstablishedV6": 0,
            "numberNotEstablishedV6": 0,
        },
        "routes": {
            "routesV4": [
                {
                    "type": "FIB",
                    "destination": f"198.18.{i // 256}.{i % 256}/32",
                    "gateway": "198.18.0.2",
                    "interface": "eth0",
                    "learnedFrom": {"sourceType": "NodeMesh", "peerIP": "198.18.0.2"},
                }
                for i in range(routes)
            ]
        },
    }
    return CalicoNodeStatus.from_wire(wire)


def with_spec(obj: CalicoNodeStatus, **changes: Any) -> CalicoNodeStatus:
    return obj.model_copy(update={"spec": obj.spec.model_copy(update=changes)})


def stored(plane: ControlPlane, mode: str, name: str) -> dict[str, Any]:
    """The object as kubectl reads it: what the server really keeps."""
    document: dict[str, Any] = kubectl_json(plane, "get", resource(mode), name)
    return document


def admin_requests(plane: ControlPlane, since: int, verb: str) -> list[dict[str, list[str]]]:
    """The query of every `verb` request the admin sent on CalicoNodeStatuses since audit event
    number `since`, from the apiserver's audit log (what really reached the server)."""
    requests = {}  # a watch is audited when it starts and again when it ends: once per auditID
    for event in plane.audit_events(ADMIN_USER)[since:]:
        if event["verb"] == verb and (event.get("objectRef") or {}).get("resource") == "caliconodestatuses":
            requests.setdefault(event["auditID"], parse_qs(urlsplit(event["requestURI"]).query))
    return list(requests.values())


async def next_event(events: AsyncIterator[WatchEvent], within: float = 10.0) -> WatchEvent:
    return await asyncio.wait_for(anext(events), within)


# --- API group ---------------------------------------------------------------------------------


async def test_discovery_on_a_server_with_both_groups_picks_v1(open_store: DatastoreFactory) -> None:
    store = await open_store(api_version=None)
    assert await store.api_version() == V1_API_VERSION


async def test_unreachable_server_falls_back_to_v1_and_is_unavailable(
    open_store: DatastoreFactory, plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = write_kubeconfig(
        tmp_path / "nowhere", f"https://127.0.0.1:{free_port()}", {"token": "t"}, plane.ca_file
    )
    store = await open_store(api_version=None, kubeconfig=nowhere)
    assert await store.api_version() == V1_API_VERSION
    with pytest.raises(Unavailable, match="unreachable"):
        await store.get("x")
    monkeypatch.setenv("CALICO_API_GROUP", V3_API_VERSION)
    assert await (await open_store(api_version=None, kubeconfig=nowhere)).api_version() == V3_API_VERSION


# --- objects -----------------------------------------------------------------------------------


async def test_v1_mode_translates_metadata_and_reads_the_live_generation(
    open_store: DatastoreFactory, plane: ControlPlane
) -> None:
    """A CR as libcalico-go leaves it (the v3 metadata in an annotation, a stale generation there)."""
    carried = json.dumps(
        {"creationTimestamp": "2026-03-02T10:15:00Z", "generation": 7, "labels": {"team": "net"}}
    )
    plane.apply(
        f"apiVersion: {V1_API_VERSION}\nkind: CalicoNodeStatus\n"
        "metadata:\n  name: made-by-calico\n  labels: {projectcalico.org/owner: ops}\n"
        f"  annotations: {{projectcalico.org/metadata: '{carried}'}}\n"
        "spec: {node: node-a, classes: [Agent, BGP], updatePeriodSeconds: 10}\n"
    )
    store = await open_store()
    obj = await store.get("made-by-calico")
    cr = stored(plane, V1_API_VERSION, "made-by-calico")
    assert obj.metadata.uid == reverse_uid(cr["metadata"]["uid"]) != cr["metadata"]["uid"]
    assert obj.metadata.resource_version == cr["metadata"]["resourceVersion"]
    assert obj.metadata.labels == {"team": "net", "projectcalico.org/owner": "ops"}
    assert obj.metadata.generation == 1  # the server's, not the annotation's 7
    plane.kubectl("patch", resource(V1_API_VERSION), "made-by-calico", "--type", "merge",
                  "-p", '{"spec": {"updatePeriodSeconds": 20}}')  # fmt: skip
    plane.kubectl("label", resource(V1_API_VERSION), "made-by-calico", "projectcalico.org/zone=a")
    edited = await store.get("made-by-calico")
    assert (edited.spec.update_period_seconds, edited.metadata.generation) == (20, 2)
    await store.update_status(with_status(edited, 1))
    assert (await store.get("made-by-calico")).metadata.generation == 2  # status is not spec


async def test_v3_mode_uses_the_native_crd_as_is(open_store: DatastoreFactory, plane: ControlPlane) -> None:
    created = await (await open_store(api_version=V3_API_VERSION)).create(new_object())
    cr = stored(plane, V3_API_VERSION, "node-a-status")
    assert cr["apiVersion"] == V3_API_VERSION
    assert created.metadata.uid == cr["metadata"]["uid"]
    assert cr["metadata"]["labels"] == {"team": "net"}
    assert "annotations" not in cr["metadata"]
    assert not kubectl_json(plane, "get", resource(V1_API_VERSION))["items"]


@both_modes
async def test_create_drops_status_and_the_server_sets_its_fields(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    store = await open_store(api_version=mode)
    created = await store.create(with_status(new_object(), 3))
    cr = stored(plane, mode, "node-a-status")
    assert "status" not in cr
    assert created.metadata.generation == cr["metadata"]["generation"] == 1
    assert created.metadata.resource_version == cr["metadata"]["resourceVersion"]
    assert created.metadata.creation_timestamp is not None
    with pytest.raises(AlreadyExists, match="already exists"):
        await store.create(new_object())
    with pytest.raises(NotFound, match=r"CalicoNodeStatus\(gone\).*not found"):
        await store.get("gone")


@both_modes
async def test_a_stale_resource_version_gets_409_on_every_write(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    store = await open_store(api_version=mode)
    stale = await store.create(new_object())
    plane.kubectl("label", resource(mode), "node-a-status", "edited=meanwhile")
    before = stored(plane, mode, "node-a-status")
    with pytest.raises(Conflict):
        await store.update(with_spec(stale, update_period_seconds=99))
    with pytest.raises(Conflict):
        await store.update_status(with_status(stale, 1))
    with pytest.raises(Conflict):
        await store.update_annotations(stale, {ROUTES_OMITTED_ANNOTATION: '{"v4":1,"v6":0}'})
    with pytest.raises(Conflict):
        await store.delete("node-a-status", stale.metadata.resource_version)
    assert stored(plane, mode, "node-a-status") == before


@both_modes
async def test_status_subresource_ignores_spec_and_the_main_put_ignores_status(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    store = await open_store(api_version=mode)
    created = await store.create(new_object())
    # A status write that also carries another spec: the server keeps the stored spec.
    written = await store.update_status(with_spec(with_status(created, 2), update_period_seconds=99))
    cr = stored(plane, mode, "node-a-status")
    assert cr["spec"]["updatePeriodSeconds"] == written.spec.update_period_seconds == 10
    assert cr["status"]["bgp"]["numberEstablishedV4"] == 2
    assert cr["metadata"]["generation"] == 1
    # A spec write that also carries another status: the server keeps the stored status.
    updated = await store.update(with_status(with_spec(written, update_period_seconds=30), 5))
    cr = stored(plane, mode, "node-a-status")
    assert cr["spec"]["updatePeriodSeconds"] == 30
    assert cr["status"]["bgp"]["numberEstablishedV4"] == updated.status.bgp.number_established_v4 == 2
    assert cr["metadata"]["generation"] == updated.metadata.generation == 2


@both_modes
async def test_the_crd_schema_refuses_with_422_naming_the_field(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    """The backend's model would refuse these too; the server is the last line when a client
    skips it, and its answer must reach the caller with the field named."""
    store = await open_store(api_version=mode)
    created = await store.create(new_object())
    with pytest.raises(DatastoreError, match=r"\(422\).*spec\.updatePeriodSeconds.*86400"):
        await store.update(with_spec(created, update_period_seconds=90000))
    with pytest.raises(DatastoreError, match=r"\(422\).*spec\.node"):
        await store.create(with_spec(new_object("bad-node"), node="Not_A_Node"))
    assert stored(plane, mode, "node-a-status")["spec"]["updatePeriodSeconds"] == 10


@both_modes
async def test_unknown_fields_are_pruned(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    plane.kubectl(
        "apply", "--validate=false", "-f", "-",
        stdin=f"apiVersion: {mode}\nkind: CalicoNodeStatus\nmetadata: {{name: future}}\n"
        "spec: {node: node-a, classes: [Agent], updatePeriodSeconds: 10, reportFlaps: true}\n"
        "extra: {kept: no}\n",
    )  # fmt: skip
    cr = stored(plane, mode, "future")
    assert "reportFlaps" not in cr["spec"] and "extra" not in cr
    obj = await (await open_store(api_version=mode)).get("future")
    assert obj.spec.update_period_seconds == 10


async def test_an_object_kubectl_made_invalid_is_skipped_in_lists_and_an_error_on_get(
    open_store: DatastoreFactory, plane: ControlPlane
) -> None:
    """In v1 mode libcalico-go's metadata annotation is free text to the schema."""
    for name, carried in (("broken", "not json"), ("fine", "{}")):
        plane.apply(
            f"apiVersion: {V1_API_VERSION}\nkind: CalicoNodeStatus\n"
            f"metadata: {{name: {name}, annotations: {{projectcalico.org/metadata: '{carried}'}}}}\n"
            "spec: {node: node-a, classes: [Agent], updatePeriodSeconds: 10}\n"
        )
    store = await open_store()
    objects, _ = await store.list(node="node-a")
    assert [o.name for o in objects] == ["fine"]
    # A DatastoreError naming it, like the other backends: callers (the agent's re-read after a
    # conflict) handle it as a datastore failure, never as an exception they die of.
    with pytest.raises(DatastoreError, match="caliconodestatuses broken is not a valid"):
        await store.get("broken")


@both_modes
async def test_delete_returns_the_object_and_honours_the_precondition(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    store = await open_store(api_version=mode)
    created = await store.create(new_object())
    written = await store.update_status(with_status(created, 2))
    with pytest.raises(Conflict):
        await store.delete("node-a-status", created.metadata.resource_version)
    assert (
        stored(plane, mode, "node-a-status")["metadata"]["resourceVersion"]
        == written.metadata.resource_version
    )
    deleted = await store.delete("node-a-status", written.metadata.resource_version)
    assert deleted.status.bgp.number_established_v4 == 2
    assert deleted.metadata.resource_version == written.metadata.resource_version
    with pytest.raises(NotFound):
        await store.get("node-a-status")
    with pytest.raises(NotFound):
        await store.delete("node-a-status")


@pytest.mark.parametrize("revision", [None, "", "rv-7"])
async def test_conditional_writes_need_a_revision(open_store: DatastoreFactory, revision: str | None) -> None:
    store = await open_store()
    obj = new_object()
    obj.metadata.resource_version = revision
    with pytest.raises(InvalidResourceVersion, match=r"Metadata\.ResourceVersion"):
        await store.update(obj)
    with pytest.raises(InvalidResourceVersion):
        await store.update_status(obj)
    if revision is not None:
        with pytest.raises(InvalidResourceVersion, match="a Delete request"):
            await store.delete("node-a-status", revision)


async def test_a_forbidden_request_is_permission_denied(
    open_store: DatastoreFactory, plane: ControlPlane
) -> None:
    plane.kubectl("create", "serviceaccount", "nodestatus-nobody", "-n", AGENT_NAMESPACE)
    try:
        kubeconfig = plane.service_account_kubeconfig(
            AGENT_NAMESPACE, "nodestatus-nobody", plane.workdir / "nobody.kubeconfig"
        )
        store = await open_store(kubeconfig=kubeconfig)
        with pytest.raises(PermissionDenied, match=r"403.*cannot get.*caliconodestatuses.*rbac\.yaml"):
            await store.get("x")
    finally:
        plane.kubectl("delete", "serviceaccount", "nodestatus-nobody", "-n", AGENT_NAMESPACE)


# --- lists and field selectors ---------------------------------------------------------------------


@both_modes
async def test_selectable_fields_filter_lists_on_the_server_page_by_page(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(api_version=mode)
    for index in range(3):
        await store.create(new_object(f"a{index}", "node-a"))
        await store.create(new_object(f"b{index}", "node-b"))
    monkeypatch.setattr(kubernetes, "LIST_PAGE_SIZE", 2)
    since = len(plane.audit_events(ADMIN_USER))
    objects, revision = await store.list(node="node-a")
    assert [o.name for o in objects] == ["a0", "a1", "a2"]
    assert revision.isdecimal()
    first, *more = admin_requests(plane, since, "list")
    assert more, "one page of at most 2 cannot hold 3 objects"
    assert all(page["fieldSelector"] == ["spec.node=node-a"] for page in (first, *more))
    assert "continue" not in first and all("continue" in page for page in more)


async def test_without_selectable_fields_the_node_filter_runs_client_side(
    legacy_crd: ControlPlane, open_store: DatastoreFactory
) -> None:
    plane = legacy_crd
    store = await open_store()
    await store.create(new_object("a1", "node-a"))
    await store.create(new_object("b1", "node-b"))
    since = len(plane.audit_events(ADMIN_USER))
    assert [o.name for o in (await store.list(node="node-a"))[0]] == ["a1"]
    assert [o.name for o in (await store.list(node="node-b"))[0]] == ["b1"]
    # The server's refusal of the selector is recognised once, then remembered.
    assert ["fieldSelector" in q for q in admin_requests(plane, since, "list")] == [True, False, False]
    _, revision = await store.list(node="node-a")
    async with contextlib.aclosing(store.watch(revision, node="node-a")) as events:
        b1 = await store.get("b1")
        await store.update(with_spec(b1, node="node-a"))
        a1 = await store.get("a1")
        await store.update(with_spec(a1, node="node-b"))
        seen = [await next_event(events), await next_event(events)]
    assert [(e.type, e.object.name) for e in seen] == [(EventType.ADDED, "b1"), (EventType.DELETED, "a1")]


# --- the /status subresource missing (Calico's CRD before 2026) --------------------------------------


async def test_without_the_status_subresource_status_writes_keep_the_stored_spec(
    legacy_crd: ControlPlane, open_store: DatastoreFactory
) -> None:
    """The real 404 of a missing subresource names the object, like a missing object's: the backend
    tells them apart by reading the object, then writes status on the main resource."""
    plane = legacy_crd
    store = await open_store()
    created = await store.create(new_object())
    written = await store.update_status(with_spec(with_status(created, 4), update_period_seconds=99))
    cr = stored(plane, V1_API_VERSION, "node-a-status")
    assert cr["status"]["bgp"]["numberEstablishedV4"] == written.status.bgp.number_established_v4 == 4
    assert cr["spec"]["updatePeriodSeconds"] == 10
    with pytest.raises(Conflict):
        await store.update_status(with_status(created, 5))  # the fallback is compare-and-swap too
    await store.delete("node-a-status")
    with pytest.raises(NotFound):
        await store.update_status(with_status(written, 6))


async def test_a_crd_gaining_the_status_subresource_keeps_status_writes_working(
    legacy_crd: ControlPlane, open_store: DatastoreFactory
) -> None:
    """Upgrading the CRD under a running agent: from then on the main resource ignores status, so
    a backend that remembered "no subresource" would lose every status write without an error."""
    plane = legacy_crd
    store = await open_store()
    created = await store.create(new_object())
    first = await store.update_status(with_status(created, 1))
    await set_v1_crd(plane, build_crd(CRD_V1_GROUP), legacy=False)
    second = await store.update_status(with_status(first, 2))
    assert stored(plane, V1_API_VERSION, "node-a-status")["status"]["bgp"]["numberEstablishedV4"] == 2
    assert second.status.bgp.number_established_v4 == 2


# --- watches ---------------------------------------------------------------------------------------


@both_modes
async def test_a_watch_the_server_ends_resumes_from_the_last_revision(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server ends each watch request after `timeoutSeconds`; the backend asks again from the
    revision of the last event (or bookmark) it got, so nothing is lost or repeated across it."""
    monkeypatch.setattr(kubernetes, "WATCH_SERVER_TIMEOUT_SECONDS", 2)
    store = await open_store(api_version=mode)
    mine = await store.create(new_object("a1", "node-a"))
    since = len(plane.audit_events(ADMIN_USER))
    async with contextlib.aclosing(store.watch(mine.metadata.resource_version, node="node-a")) as events:
        first = asyncio.ensure_future(next_event(events, within=30))
        written = await store.update(with_spec(mine, update_period_seconds=20))
        assert (await first).resource_version == written.metadata.resource_version
        second = asyncio.ensure_future(next_event(events, within=30))  # the watch runs on

        async def resumed() -> list[dict[str, list[str]]]:
            return admin_requests(plane, since, "watch")[1:]

        (again, *_) = await wait_for(resumed, 30, "the watch request after the server ended the first")
        assert int(again["resourceVersion"][0]) >= int(written.metadata.resource_version)
        updated = await store.update(with_spec(written, update_period_seconds=30))
        event = await second
    assert (event.type, event.object.spec.update_period_seconds, event.resource_version) == (
        EventType.MODIFIED,
        30,
        updated.metadata.resource_version,
    )


@both_modes
async def test_a_real_watch_stream_delivers_large_objects_and_bursts_whole(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    """A 2,000-route status (about 400 KB) spans many HTTP chunks; a burst of writes packs many
    events into few. Every event arrives whole, once, in order."""
    store = await open_store(api_version=mode)
    created = await store.create(new_object())
    async with contextlib.aclosing(store.watch(created.metadata.resource_version)) as events:
        big = await store.update_status(with_status(created, 1, routes=2000))
        event = await next_event(events)
        assert len(json.dumps(event.object.to_wire())) > 300_000
        assert event.object == big
        current = big
        written = []
        for period in range(11, 41):
            current = await store.update(with_spec(current, update_period_seconds=period))
            written.append(current.metadata.resource_version)
        seen = [await next_event(events) for _ in written]
    assert [e.resource_version for e in seen] == written
    assert [e.object.spec.update_period_seconds for e in seen] == list(range(11, 41))


@both_modes
async def test_compaction_expires_a_watch_with_410(
    open_store: DatastoreFactory, plane: ControlPlane, mode: str
) -> None:
    """etcd compacted past the revision and the apiserver restarted (its watch cache, which would
    otherwise still serve the old revision, rebuilt from etcd): watching from it is a 410."""
    store = await open_store(api_version=mode)
    created = await store.create(new_object())
    for period in (11, 12):
        created = await store.update(with_spec(created, update_period_seconds=period))
    old = created.metadata.resource_version
    await store.update(with_spec(created, update_period_seconds=13))
    plane.compact_etcd()
    restart_apiserver(plane)
    with pytest.raises(WatchExpired, match="too old resource version"):
        async for _ in store.watch(old):
            pass
    objects, revision = await store.list()  # what a watcher does next: list again
    assert [o.spec.update_period_seconds for o in objects] == [13]
    assert int(revision) > int(old)


# --- Leases (the agents' liveness) ----------------------------------------------------------------


def lease(plane: ControlPlane, node: str) -> dict[str, Any]:
    document: dict[str, Any] = kubectl_json(
        plane, "get", "lease", f"{LEASE_NAME_PREFIX}{node}", "-n", AGENT_NAMESPACE
    )
    return document


async def test_liveness_is_a_lease_in_the_pod_namespace(
    open_store: DatastoreFactory, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", AGENT_NAMESPACE)
    store = await open_store()
    await store.renew_liveness("node-a", "node-a/1", 12.5)
    first = lease(plane, "node-a")
    assert first["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "calico-nodestatus"}
    assert first["metadata"]["annotations"]["projectcalico.org/nodestatus-node"] == "node-a"
    assert first["spec"]["holderIdentity"] == "node-a/1"
    assert first["spec"]["leaseDurationSeconds"] == 13
    await store.renew_liveness("node-a", "node-a/1", 12.5)
    renewed = lease(plane, "node-a")
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]  # same holder
    assert renewed["spec"]["renewTime"] > first["spec"]["renewTime"]
    await store.renew_liveness("node-a", "node-a/2", 12.5)  # the agent restarted
    taken = lease(plane, "node-a")
    assert taken["spec"]["holderIdentity"] == "node-a/2"
    assert taken["spec"]["acquireTime"] > first["spec"]["acquireTime"]
    await store.renew_liveness("node-b", "node-b/1", 30)
    assert [r.node for r in await store.list_liveness()] == ["node-a", "node-b"]
    await store.release_liveness("node-a", "node-a/1")  # not the holder: untouched
    assert lease(plane, "node-a")["spec"]["holderIdentity"] == "node-a/2"
    await store.release_liveness("node-a", "node-a/2")
    assert "holderIdentity" not in lease(plane, "node-a")["spec"]
    assert await store.get_liveness("node-a") is None
    assert [r.node for r in await store.list_liveness()] == ["node-b"]


async def test_concurrent_renewals_of_one_lease_settle_on_409(
    open_store: DatastoreFactory, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents for one node renewing at once: the server's 409s are re-read, never raised."""
    monkeypatch.setenv("POD_NAMESPACE", AGENT_NAMESPACE)
    stores = [await open_store() for _ in range(2)]
    for _ in range(5):
        await asyncio.gather(*(s.renew_liveness("node-a", f"node-a/{i}", 10) for i, s in enumerate(stores)))
    record = await stores[0].get_liveness("node-a")
    assert record is not None and record.holder in {"node-a/0", "node-a/1"}
