"""Fuzzing the decoders between the datastores and the model, with an oracle.

Round trips over generated valid objects: the etcd value (`encode_value` / `decode_value`), the v1
custom resource with its `projectcalico.org/metadata` annotation, the Kubernetes response bodies
of both CRD modes (`wire_from_cr`), and CLI manifests (`dump_yaml` / `load_manifests`) give back
the same object. Structure-aware mutations (any value of the document replaced by any JSON value,
the annotation's JSON and the YAML text cut or spliced) give the documented error or an object,
nothing else. Each oracle is shown to catch a deliberately broken codec."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from calico_nodestatus.api import CalicoNodeStatus
from calico_nodestatus.api.crd_v1 import METADATA_ANNOTATION, crd_v1_to_wire, wire_to_crd_v1
from calico_nodestatus.api.errors import ManifestError, ValidationFailure
from calico_nodestatus.api.manifests import dump_yaml, load_manifests
from calico_nodestatus.datastore.base import DatastoreError
from calico_nodestatus.datastore.etcd import decode_value, encode_value
from calico_nodestatus.datastore.kubernetes import V1_API_VERSION, V3_API_VERSION, lease_record, wire_from_cr
from tests.plugins.hypothesis_profiles import examples

pytestmark = pytest.mark.fuzz
CATCH = settings(phases=[Phase.generate], max_examples=100)
KEY = b"/calico/resources/v3/projectcalico.org/caliconodestatuses/x"

# -- valid objects -------------------------------------------------------------------------------

LOWER = string.ascii_lowercase + string.digits


def dns_names(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.tuples(
        st.sampled_from(string.ascii_lowercase),
        st.text(LOWER + "-", max_size=max_size),
        st.sampled_from(LOWER),
    ).map("".join)


def ips(ipv6: bool) -> st.SearchStrategy[str]:
    if ipv6:
        return st.integers(0, 2**96 - 1).map(lambda n: f"2001:db8::{n % 65536:x}" if n % 3 else "2001:db8::1")
    return st.tuples(st.integers(18, 19), st.integers(0, 255), st.integers(0, 255)).map(
        lambda t: f"198.{t[0]}.{t[1]}.{t[2]}"
    )


TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
)
TEXT = (
    st.text(string.ascii_letters + string.digits + " :.-+", min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
LABELS = st.dictionaries(
    st.one_of(dns_names(10), st.tuples(dns_names(10), dns_names(10)).map("/".join)),
    st.one_of(st.just(""), dns_names(10)),
    max_size=3,
)
ANNOTATIONS = st.dictionaries(
    st.one_of(dns_names(10), st.tuples(dns_names(10), dns_names(10)).map(lambda p: f"{p[0]}.io/{p[1]}")),
    st.text(max_size=30),
    max_size=3,
)


def daemons() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"state": st.sampled_from(["Ready", "NotReady"])},
        optional={
            "version": TEXT,
            "routerID": ips(False),
            "lastBootTime": TEXT,
            "lastReconfigurationTime": TEXT,
        },
    )


def peers(ipv6: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "peerIP": ips(ipv6),
            "type": st.sampled_from(["NodeMesh", "NodePeer", "GlobalPeer"]),
            "state": st.sampled_from(["Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"]),
            "since": TEXT,
        },
    )


def routes(ipv6: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": st.sampled_from(["FIB", "RIB"]),
            "destination": ips(ipv6).map(lambda ip: f"{ip}/{128 if ':' in ip else 32}"),
            "gateway": st.one_of(st.just("N/A"), ips(ipv6)),
            "learnedFrom": st.fixed_dictionaries(
                {},
                optional={
                    "sourceType": st.sampled_from(["Kernel", "Static", "Direct", "NodeMesh", "BGPPeer"]),
                    "peerIP": ips(ipv6),
                },
            ),
        },
        optional={"interface": TEXT},
    )


WIRE = st.fixed_dictionaries(
    {
        "kind": st.just("CalicoNodeStatus"),
        "apiVersion": st.just("projectcalico.org/v3"),
        "metadata": st.fixed_dictionaries(
            {"name": dns_names()},
            optional={
                "uid": st.uuids().map(str),
                "creationTimestamp": TIMES,
                "generation": st.integers(1, 10**6),
                "resourceVersion": st.integers(1, 10**9).map(str),
                "labels": LABELS,
                "annotations": ANNOTATIONS,
            },
        ),
        "spec": st.fixed_dictionaries(
            {
                "node": dns_names(),
                "classes": st.lists(st.sampled_from(["Agent", "BGP", "Routes"]), min_size=1, unique=True),
                "updatePeriodSeconds": st.integers(0, 86400),
            }
        ),
        "status": st.fixed_dictionaries(
            {},
            optional={
                "lastUpdated": TIMES,
                "agent": st.fixed_dictionaries({}, optional={"birdV4": daemons(), "birdV6": daemons()}),
                "bgp": st.fixed_dictionaries(
                    {
                        f"number{s}V{f}": st.integers(0, 1000)
                        for s in ("Established", "NotEstablished")
                        for f in (4, 6)
                    },
                    optional={
                        "peersV4": st.lists(peers(False), min_size=1, max_size=3),
                        "peersV6": st.lists(peers(True), min_size=1, max_size=3),
                    },
                ),
                "routes": st.fixed_dictionaries(
                    {},
                    optional={
                        "routesV4": st.lists(routes(False), min_size=1, max_size=3),
                        "routesV6": st.lists(routes(True), min_size=1, max_size=3),
                    },
                ),
            },
        ),
    }
)
OBJECTS = WIRE.map(CalicoNodeStatus.from_wire)


# -- round trips ---------------------------------------------------------------------------------


def check_etcd(obj: CalicoNodeStatus, encode: Callable[[CalicoNodeStatus], bytes] = encode_value) -> None:
    decoded = decode_value(KEY, encode(obj), 4107)
    assert decoded.metadata.resource_version == "4107"
    assert decoded == obj.model_copy(
        update={"metadata": obj.metadata.model_copy(update={"resource_version": "4107"})}
    )


@settings(max_examples=examples(100))
@given(OBJECTS)
def test_etcd_value_round_trip(obj: CalicoNodeStatus) -> None:
    check_etcd(obj)


def check_v1(
    obj: CalicoNodeStatus, to_cr: Callable[[dict[str, Any]], dict[str, Any]] = wire_to_crd_v1
) -> None:
    cr = to_cr(obj.to_wire())
    assert json.loads(cr["metadata"]["annotations"][METADATA_ANNOTATION]).get("generation") == (
        obj.metadata.generation or None
    )
    assert CalicoNodeStatus.from_wire(crd_v1_to_wire(json.loads(json.dumps(cr)))) == obj


@settings(max_examples=examples(100))
@given(OBJECTS)
def test_v1_custom_resource_and_metadata_annotation_round_trip(obj: CalicoNodeStatus) -> None:
    check_v1(obj)


@settings(max_examples=examples(100))
@given(OBJECTS, st.integers(1, 10**6))
def test_kubernetes_bodies_round_trip(obj: CalicoNodeStatus, live_generation: int) -> None:
    """What the API server returns: the v1 CR with its own (live) generation, which wins over the
    annotation's; the native v3 object with server fields the model does not carry."""
    cr = wire_to_crd_v1(obj.to_wire())
    cr["metadata"] |= {"generation": live_generation, "managedFields": [{"manager": "kubectl"}]}
    read = CalicoNodeStatus.from_wire(wire_from_cr(V1_API_VERSION, cr))
    live = obj.metadata.model_copy(update={"generation": live_generation})
    assert read == obj.model_copy(update={"metadata": live})
    native = obj.to_wire()
    native["metadata"] |= {"managedFields": [{"manager": "kubectl"}], "selfLink": "/apis/x"}
    assert CalicoNodeStatus.from_wire(wire_from_cr(V3_API_VERSION, native)) == obj


@settings(max_examples=examples(100))
@given(st.lists(OBJECTS, min_size=1, max_size=3, unique_by=lambda o: o.name), st.booleans())
def test_manifests_round_trip(objects: list[CalicoNodeStatus], as_list: bool) -> None:
    wires = [o.to_wire() for o in objects]
    if as_list:
        text = dump_yaml(
            {"apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatusList", "items": wires}
        )
    else:
        text = "---\n".join(dump_yaml(w) for w in wires)
    assert load_manifests(text) == objects


# -- mutations: the documented error or an object, nothing else ---------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` with 1-3 values anywhere in it (the whole included) replaced by any JSON value,
    or a key removed."""
    for _ in range(draw(st.integers(1, 3))):
        path = []
        node = document
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append(key)
            node = node[key]
        if not path:
            document = draw(JSON)
            continue
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return document


@settings(max_examples=examples(200))
@given(st.data())
def test_mutated_etcd_values_fail_as_datastore_errors(data: st.DataObject) -> None:
    value = data.draw(mutated(data.draw(OBJECTS).to_wire()))
    raw = data.draw(
        st.sampled_from(
            [json.dumps(value).encode(), json.dumps(value).encode()[: data.draw(st.integers(0, 50))]]
        )
    )
    try:
        assert isinstance(decode_value(KEY, raw, 1), CalicoNodeStatus)
    except DatastoreError as error:
        assert KEY.decode() in str(error)


@settings(max_examples=examples(200))
@given(st.data())
def test_mutated_custom_resources_fail_as_validation_failures(data: st.DataObject) -> None:
    cr = data.draw(mutated(wire_to_crd_v1(data.draw(OBJECTS).to_wire())))
    api_version = data.draw(st.sampled_from([V1_API_VERSION, V3_API_VERSION]))
    try:
        CalicoNodeStatus.from_wire(wire_from_cr(api_version, cr) if isinstance(cr, dict) else cr)
    except ValidationFailure as failure:
        assert failure.field


@settings(max_examples=examples(200))
@given(st.data())
def test_mutated_metadata_annotations_fail_naming_the_annotation(data: st.DataObject) -> None:
    cr = wire_to_crd_v1(data.draw(OBJECTS).to_wire())
    carried = cr["metadata"]["annotations"][METADATA_ANNOTATION]
    action = data.draw(st.sampled_from(["cut", "json", "text"]))
    if action == "cut":
        carried = carried[: data.draw(st.integers(0, len(carried)))]
    elif action == "json":
        carried = json.dumps(data.draw(mutated(json.loads(carried))))
    else:
        carried = data.draw(st.text(max_size=40))
    cr["metadata"]["annotations"][METADATA_ANNOTATION] = carried
    try:
        CalicoNodeStatus.from_wire(crd_v1_to_wire(cr))
    except ValidationFailure as failure:
        assert failure.field


@settings(max_examples=examples(200))
@given(st.data())
def test_mutated_manifests_fail_as_manifest_errors(data: st.DataObject) -> None:
    text = dump_yaml(data.draw(mutated(data.draw(OBJECTS).to_wire())))
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(max_size=10)) + text[at + data.draw(st.integers(0, 5)) :]
    try:
        assert all(isinstance(obj, CalicoNodeStatus) for obj in load_manifests(text))
    except ManifestError as error:
        assert str(error)


LEASE = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {
                "name": dns_names(),
                "annotations": st.fixed_dictionaries({"nodestatus.projectcalico.org/node": dns_names()}),
            }
        ),
        "spec": st.fixed_dictionaries(
            {
                "holderIdentity": TEXT,
                "renewTime": TIMES.map(lambda t: t.replace("Z", ".000000Z")),
                "leaseDurationSeconds": st.integers(1, 3600),
            }
        ),
    }
)


@settings(max_examples=examples(200))
@given(st.data())
def test_mutated_lease_bodies_give_a_record_or_none(data: st.DataObject) -> None:
    """A Lease the API server returns, possibly foreign or garbled: a record or None."""
    lease = data.draw(mutated(data.draw(LEASE)))
    if isinstance(lease, dict):
        lease_record(lease)


# -- each oracle catches a broken codec ----------------------------------------------------------


def _fails(check: Callable[[], None]) -> None:
    with pytest.raises(AssertionError):
        check()


def test_etcd_oracle_catches_an_encoder_that_drops_the_routes() -> None:
    def broken(obj: CalicoNodeStatus) -> bytes:
        wire = json.loads(encode_value(obj))
        wire.get("status", {}).pop("routes", None)
        return json.dumps(wire).encode()

    @CATCH
    @given(OBJECTS)
    def run(obj: CalicoNodeStatus) -> None:
        check_etcd(obj, broken)

    _fails(run)


def test_v1_oracle_catches_a_uid_sent_untransformed() -> None:
    def broken(wire: dict[str, Any]) -> dict[str, Any]:
        cr = wire_to_crd_v1(wire)
        if "uid" in wire["metadata"]:
            cr["metadata"]["uid"] = wire["metadata"]["uid"]
        return cr

    @CATCH
    @given(OBJECTS)
    def run(obj: CalicoNodeStatus) -> None:
        check_v1(obj, broken)

    _fails(run)


def test_v1_oracle_catches_labels_left_out_of_the_annotation() -> None:
    def broken(wire: dict[str, Any]) -> dict[str, Any]:
        cr = wire_to_crd_v1(wire)
        carried = json.loads(cr["metadata"]["annotations"][METADATA_ANNOTATION])
        carried.pop("labels", None)
        cr["metadata"]["annotations"][METADATA_ANNOTATION] = json.dumps(carried)
        return cr

    @CATCH
    @given(OBJECTS)
    def run(obj: CalicoNodeStatus) -> None:
        check_v1(obj, broken)

    _fails(run)
