"""The Kubernetes backend against faults a real apiserver cannot produce on demand, replayed by the
scripted server (tests/kubernetes/apiserver.py) with bodies recorded from the session's real
kube-apiserver: silence in the middle of a body, a malformed chunk and garbled lines in a watch
stream, a garbled body, and 5xx/429 answers. Each must be an `Unavailable` the agent retries,
never an exception it dies of, and the next good reply must work again."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from calico_nodestatus.datastore import kubernetes
from calico_nodestatus.datastore.base import EventType, Unavailable
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION
from calico_nodestatus.lab.controlplane import ControlPlane
from tests.kubernetes.apiserver import ReplayApiServer, Reply, chunk, status_body
from tests.kubernetes.conftest import DatastoreFactory, collection_path, resource
from tests.plugins.kubernetes import clean_kubernetes

pytestmark = pytest.mark.kubernetes

PATH = collection_path(V1_API_VERSION)
NAME = "recorded"
ITEM = f"{PATH}/{NAME}"


@dataclass(frozen=True)
class Recorded:
    """What the real apiserver answered: an object, and a watch stream of two spec changes."""

    body: dict[str, object]
    watch_from: str
    watch_lines: list[bytes]


@pytest.fixture(scope="module")
def recorded(control_plane: ControlPlane) -> Iterator[Recorded]:
    plane = control_plane
    plane.apply(
        f"apiVersion: {V1_API_VERSION}\nkind: CalicoNodeStatus\nmetadata: {{name: {NAME}}}\n"
        "spec: {node: node-a, classes: [Agent], updatePeriodSeconds: 10}\n"
    )
    try:
        body = json.loads(plane.kubectl("get", "--raw", ITEM).stdout)
        watch_from = body["metadata"]["resourceVersion"]
        for period in (20, 30):
            plane.kubectl(
                "patch", resource(V1_API_VERSION), NAME, "--type", "merge",
                "-p", json.dumps({"spec": {"updatePeriodSeconds": period}}),
            )  # fmt: skip
        stream = plane.kubectl(
            "get", "--raw", f"{PATH}?watch=true&resourceVersion={watch_from}&timeoutSeconds=2"
        ).stdout
        lines = [line.encode() + b"\n" for line in stream.splitlines() if line.strip()]
        assert [json.loads(line)["type"] for line in lines] == ["MODIFIED", "MODIFIED"], stream
        yield Recorded(body, watch_from, lines)
    finally:
        clean_kubernetes(plane)


def revision_of(line: bytes) -> str:
    return str(json.loads(line)["object"]["metadata"]["resourceVersion"])


async def test_silence_in_the_middle_of_a_body_is_unavailable_then_recovers(
    apiserver: ReplayApiServer,
    open_replay_store: DatastoreFactory,
    recorded: Recorded,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kubernetes, "REQUEST_TIMEOUT_SECONDS", 1.0)
    half = len(json.dumps(recorded.body)) // 2
    apiserver.expect("GET", ITEM, Reply(body=recorded.body, hang_after=half), Reply(body=recorded.body))
    store = await open_replay_store()
    with pytest.raises(Unavailable, match="unreachable"):
        await store.get(NAME)
    assert (await store.get(NAME)).spec.node == "node-a"


async def test_a_garbled_body_is_unavailable(
    apiserver: ReplayApiServer, open_replay_store: DatastoreFactory, recorded: Recorded
) -> None:
    garbled = (
        chunk(json.dumps(recorded.body).encode()[:-40]) + chunk(b"<html>bad gateway</html>") + b"0\r\n\r\n"
    )
    apiserver.expect("GET", ITEM, Reply(chunked=garbled), Reply(body=recorded.body))
    store = await open_replay_store()
    with pytest.raises(Unavailable, match="malformed reply"):
        await store.get(NAME)
    assert (await store.get(NAME)).metadata.name == NAME


async def test_a_malformed_watch_chunk_is_unavailable_and_the_watch_resumes(
    apiserver: ReplayApiServer, open_replay_store: DatastoreFactory, recorded: Recorded
) -> None:
    first, second = recorded.watch_lines
    broken = chunk(first) + b"zz-not-a-size\r\n" + second
    apiserver.expect("GET", PATH, Reply(chunked=broken), Reply(chunked=chunk(second) + b"0\r\n\r\n"))
    store = await open_replay_store()
    seen: list[tuple[EventType, int]] = []
    revision = recorded.watch_from
    with pytest.raises(Unavailable, match="watch"):
        async for event in store.watch(revision, node="node-a"):
            seen.append((event.type, event.object.spec.update_period_seconds))
            revision = event.resource_version
    assert seen == [(EventType.MODIFIED, 20)]
    async with contextlib.aclosing(store.watch(revision, node="node-a")) as resumed:
        event = await anext(resumed)
    assert (event.type, event.object.spec.update_period_seconds) == (EventType.MODIFIED, 30)
    assert [r.query["resourceVersion"] for r in apiserver.sent("GET", PATH)] == [
        recorded.watch_from,
        revision_of(first),
    ]


@pytest.mark.parametrize(
    "garbled",
    [
        pytest.param(lambda line: line[: len(line) // 2] + b"\n", id="cut-line"),
        pytest.param(lambda line: b'{"type": "MODIFIED"}\n', id="no-object"),
        pytest.param(lambda line: line.replace(b'"MODIFIED"', b'"RENAMED"'), id="unknown-type"),
        pytest.param(lambda line: line.replace(b'"resourceVersion"', b'"rv"'), id="no-revision"),
        pytest.param(lambda line: b"[1, 2]\n", id="not-an-object"),
    ],
)
async def test_a_garbled_watch_line_is_unavailable(
    apiserver: ReplayApiServer, open_replay_store: DatastoreFactory, recorded: Recorded, garbled
) -> None:
    first, second = recorded.watch_lines
    apiserver.expect("GET", PATH, Reply(chunked=chunk(first) + chunk(garbled(second)) + b"0\r\n\r\n"))
    store = await open_replay_store()
    seen = []
    with pytest.raises(Unavailable, match="malformed event"):
        async for event in store.watch(recorded.watch_from, node="node-a"):
            seen.append(event.object.spec.update_period_seconds)
    assert seen == [20]


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (500, "InternalError", "etcdserver: request timed out"),
        (429, "TooManyRequests", "storage is (re)initializing"),
        (503, "ServiceUnavailable", "the server is currently unable to handle the request"),
    ],
)
async def test_server_overload_answers_are_unavailable(
    apiserver: ReplayApiServer, open_replay_store: DatastoreFactory, code: int, reason: str, message: str
) -> None:
    apiserver.expect("GET", ITEM, Reply(code, status_body(code, reason, message)))
    with pytest.raises(Unavailable, match=re.escape(f"unavailable ({code}): {message}")):
        await (await open_replay_store()).get(NAME)


async def test_the_watch_resumes_from_a_bookmark(
    apiserver: ReplayApiServer, open_replay_store: DatastoreFactory, recorded: Recorded
) -> None:
    """kube-apiserver v1.37 here sent no bookmark within 30 s of a watch (its pre-timeout bookmark
    never came), so this one is scripted, in the shape the API defines: an object holding only its
    kind and the revision. The next request must resume from that revision."""
    first, second = recorded.watch_lines
    marked = str(int(revision_of(second)) - 1)
    mark = {
        "type": "BOOKMARK",
        "object": {
            "kind": "CalicoNodeStatus",
            "apiVersion": V1_API_VERSION,
            "metadata": {"resourceVersion": marked},
        },
    }
    apiserver.expect(
        "GET",
        PATH,
        Reply(chunked=chunk(first) + chunk(json.dumps(mark).encode() + b"\n") + b"0\r\n\r\n"),
        Reply(chunked=chunk(second) + b"0\r\n\r\n"),
    )
    store = await open_replay_store()
    async with contextlib.aclosing(store.watch(recorded.watch_from, node="node-a")) as events:
        seen = [await anext(events), await anext(events)]
    assert [e.object.spec.update_period_seconds for e in seen] == [20, 30]
    assert [r.query["resourceVersion"] for r in apiserver.sent("GET", PATH)] == [recorded.watch_from, marked]
