"""The resource model: seeds round-trip, Calico's wire encoding, validation messages, v1 CRD form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from calico_nodestatus.api import (
    METADATA_ANNOTATION,
    BGPPeerType,
    CalicoNodePeer,
    CalicoNodeRoute,
    CalicoNodeStatus,
    CalicoNodeStatusSpec,
    CalicoNodeStatusStatus,
    NodeStatusClass,
    ObjectMeta,
    ValidationFailure,
    dump_yaml,
    load_manifests,
    reverse_uid,
)

SEEDS = Path(__file__).parent.parent / "fixtures" / "manifests" / "seed"


def _seed(name: str) -> str:
    return (SEEDS / name).read_text()


def _object(**spec: object) -> dict[str, object]:
    base = {"node": "node-1", "classes": ["Agent"], "updatePeriodSeconds": 10}
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "CalicoNodeStatus",
        "metadata": {"name": "status-1"},
        "spec": {**base, **spec},
    }


def test_read_back_seed_round_trips_without_losing_a_field() -> None:
    raw = yaml.safe_load(_seed("read-back.yaml"))
    objects = load_manifests(_seed("read-back.yaml"))
    assert [obj.to_wire() for obj in objects] == raw
    # ... and through our own YAML output as well.
    assert yaml.safe_load(dump_yaml([obj.to_wire() for obj in objects])) == raw


@pytest.mark.parametrize("text", ["a\rb", "a\x85b", "a\u2028b", "a\u2029b", "a\nb\x85c", "a\nb\n"])
def test_yaml_keeps_every_kind_of_line_break(text: str) -> None:
    # YAML readers fold CR, NEL, LS and PS into \n unless the writer escapes them.
    assert yaml.safe_load(dump_yaml({"note": text})) == {"note": text}


def test_read_back_seed_typed_values() -> None:
    (obj,) = load_manifests(_seed("read-back.yaml"))
    assert obj.metadata.generation == 139
    assert obj.metadata.creation_timestamp == datetime(2021, 10, 18, 10, 30, 43, tzinfo=UTC)
    assert obj.status.bgp.number_not_established_v4 == 1
    assert obj.status.bgp.peers_v4[2].state == "OpenSent"
    assert obj.status.agent.bird_v6.router_id == "10.128.0.240"
    assert obj.status.routes.routes_v4[3].gateway == "N/A"
    assert obj.status.routes.routes_v4[1].learned_from.peer_ip == "10.128.0.200"


def test_spec_seed_round_trips_and_gains_only_the_empty_status() -> None:
    raw = yaml.safe_load(_seed("spec.yaml"))
    (obj,) = load_manifests(_seed("spec.yaml"))
    wire = obj.to_wire()
    assert {key: value for key, value in wire.items() if key != "status"} == raw
    assert wire["status"] == {
        "lastUpdated": None,
        "agent": {"birdV4": {}, "birdV6": {}},
        "bgp": {
            "numberEstablishedV4": 0,
            "numberNotEstablishedV4": 0,
            "numberEstablishedV6": 0,
            "numberNotEstablishedV6": 0,
        },
        "routes": {},
    }


def test_wire_encoding_follows_calicos_omitempty_rules() -> None:
    obj = CalicoNodeStatus(
        metadata=ObjectMeta(name="s1"),
        spec=CalicoNodeStatusSpec(node="n1", classes=[NodeStatusClass.ROUTES], update_period_seconds=0),
        status=CalicoNodeStatusStatus(
            last_updated=datetime(2024, 5, 1, 14, 0, 7, 987654, tzinfo=timezone(timedelta(hours=2))),
        ),
    )
    obj.status.routes.routes_v6.append(CalicoNodeRoute(destination="2001:db8::/64"))
    obj.status.bgp.peers_v4.append(CalicoNodePeer(peer_ip="198.18.0.2", type=BGPPeerType.NODE_PEER, since=""))
    wire = obj.to_wire()
    assert wire["spec"]["updatePeriodSeconds"] == 0  # explicit 0 is serialised
    assert wire["metadata"] == {"name": "s1"}
    assert wire["status"]["lastUpdated"] == "2024-05-01T12:00:07Z"  # UTC, whole seconds
    assert wire["status"]["routes"] == {"routesV6": [{"destination": "2001:db8::/64", "learnedFrom": {}}]}
    assert wire["status"]["bgp"]["peersV4"] == [{"peerIP": "198.18.0.2", "type": "NodePeer"}]
    assert "peersV6" not in wire["status"]["bgp"]
    assert list(wire) == ["kind", "apiVersion", "metadata", "spec", "status"]
    assert CalicoNodeStatus.from_wire(json.loads(json.dumps(wire))) == obj


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"updatePeriodSeconds": 99999},
            "error with field Spec.UpdatePeriodSeconds = '99999' (expected an integer from 0 to 86400",
        ),
        ({"updatePeriodSeconds": 86400}, None),
        ({"updatePeriodSeconds": 0}, None),
        ({"classes": []}, None),  # Calico's `required` accepts an empty (non-nil) list
        ({"classes": ["Agent", "BGP", "Routes"]}, None),
        (
            {"classes": ["BGP", "BGP"]},
            "error with field Spec.Classes = '[BGP BGP]' (classes must be distinct",
        ),
        ({"classes": ["Routes", "routes"]}, "error with field Spec.Classes[1] = 'routes'"),
        ({"node": "a.b-c.d"}, None),
        # A Kubernetes node name: at most 253 characters (Calico itself sets no limit).
        ({"node": "a" * 253}, None),
        ({"node": "-a"}, "error with field Spec.Node = '-a' (name must consist of lower case"),
        ({"node": ""}, "error with field Spec.Node = '' (field must be set"),
    ],
)
def test_spec_rules(spec: dict[str, object], message: str | None) -> None:
    if message is None:
        assert CalicoNodeStatus.from_wire(_object(**spec)).spec.node
    else:
        with pytest.raises(ValidationFailure) as caught:
            CalicoNodeStatus.from_wire(_object(**spec))
        assert str(caught.value).startswith(message)


@pytest.mark.parametrize("length", [254, 300])
def test_node_longer_than_a_kubernetes_node_name_is_refused(length: int) -> None:
    with pytest.raises(ValidationFailure) as caught:
        CalicoNodeStatus.from_wire(_object(node="a" * length))
    assert caught.value.field == "Spec.Node"
    assert caught.value.reason == f"name is too long by {length - 253} bytes"


def test_failure_carries_field_value_and_reason() -> None:
    with pytest.raises(ValidationFailure) as caught:
        CalicoNodeStatus.from_wire(_object(updatePeriodSeconds=-5))
    assert caught.value.field == "Spec.UpdatePeriodSeconds"
    assert caught.value.value == -5
    assert "0 to 86400" in caught.value.reason


def test_metadata_rules() -> None:
    too_long = _object()
    too_long["metadata"] = {"name": "a" * 256}
    with pytest.raises(
        ValidationFailure, match=r"Metadata.Name = 'a+\.\.\.' \(name is too long by 3 bytes\)"
    ):
        CalicoNodeStatus.from_wire(too_long)
    labelled = _object()
    labelled["metadata"] = {
        "name": "x",
        "labels": {"app.kubernetes.io/name": "calico"},
        "annotations": {"A/b": ""},
    }
    assert CalicoNodeStatus.from_wire(labelled).metadata.labels == {"app.kubernetes.io/name": "calico"}
    labelled["metadata"] = {"name": "x", "labels": {"app": "not valid!"}}
    with pytest.raises(ValidationFailure, match=r"Metadata.Labels .*invalid value 'not valid!'"):
        CalicoNodeStatus.from_wire(labelled)


def test_wire_input_accepts_only_wire_names() -> None:
    data = _object()
    data["spec"] = {"node": "n", "classes": ["Agent"], "update_period_seconds": 5}
    with pytest.raises(ValidationFailure, match=r"Spec.UpdatePeriodSeconds \(field is required"):
        CalicoNodeStatus.from_wire(data)


@pytest.mark.parametrize("address", ["198.18.0.1", "2001:db8::1"])
def test_peer_ip_accepts_addresses(address: str) -> None:
    assert CalicoNodePeer.model_validate({"peerIP": address}).peer_ip == address


@pytest.mark.parametrize("address", ["fe80::1%eth0", "198.18.0.1.port.179", "198.18.0.0/24"])
def test_peer_ip_rejects_non_addresses(address: str) -> None:
    data = _object()
    data["status"] = {"bgp": {"peersV6": [{"peerIP": address}]}}
    with pytest.raises(ValidationFailure, match=r"Status.BGP.PeersV6\[0\].PeerIP = .*IPv4 or IPv6"):
        CalicoNodeStatus.from_wire(data)


def test_uid_transform_reverses_bits_except_version_and_variant() -> None:
    # Worked by hand: 0x6e=01101110 → 01110110=0x76; bytes 6 (0x41) and 8 (0xae) are kept.
    assert reverse_uid("6e3b676b-546a-41db-aeda-ad44f25ff73f") == "76dce6d6-2a56-41db-ae5b-b5224ffaeffc"
    assert (
        reverse_uid(reverse_uid("0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"))
        == "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"
    )
    with pytest.raises(ValidationFailure, match=r"Metadata\.UID"):
        reverse_uid("not-a-uuid")


def test_crd_v1_form_round_trips() -> None:
    (obj,) = load_manifests(_seed("read-back.yaml"))
    # The seed shows an old release's annotation; a v3 object from us never carries it.
    del obj.metadata.annotations[METADATA_ANNOTATION]
    obj.metadata.labels.update({"projectcalico.org/owned": "yes", "team": "net"})
    cr = obj.to_crd_v1()
    assert cr["apiVersion"] == "crd.projectcalico.org/v1"
    assert cr["metadata"]["uid"] == "76dce6d6-2a56-41db-ae5b-b5224ffaeffc"
    assert cr["metadata"]["labels"] == {"projectcalico.org/owned": "yes"}
    carried = json.loads(cr["metadata"]["annotations"][METADATA_ANNOTATION])
    assert carried["generation"] == 139
    assert carried["creationTimestamp"] == "2021-10-18T10:30:43Z"
    assert carried["labels"] == {"team": "net"}
    assert "uid" not in carried
    assert cr["status"] == obj.to_wire()["status"]
    assert CalicoNodeStatus.from_crd_v1(cr) == obj


def test_crd_v1_without_metadata_annotation_uses_the_live_metadata() -> None:
    cr = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "CalicoNodeStatus",
        "metadata": {
            "name": "made-by-kubectl",
            "uid": "76dce6d6-2a56-41db-ae5b-b5224ffaeffc",
            "generation": 4,
            "resourceVersion": "77",
            "creationTimestamp": "2024-01-02T03:04:05Z",
        },
        "spec": {"node": "n1", "classes": ["BGP"], "updatePeriodSeconds": 30},
    }
    obj = CalicoNodeStatus.from_crd_v1(cr)
    assert obj.metadata.generation == 4
    assert obj.metadata.uid == "6e3b676b-546a-41db-aeda-ad44f25ff73f"
    assert obj.metadata.resource_version == "77"
    assert obj.status.is_empty()


def test_empty_strings_and_enums_mean_absent_as_in_go() -> None:
    peer = CalicoNodePeer.model_validate({"peerIP": "", "state": "", "type": "NodeMesh", "since": ""})
    assert (peer.peer_ip, peer.state, peer.since) == (None, None, None)
    assert peer.to_wire() == {"type": "NodeMesh"}


def test_crd_v1_with_unreadable_metadata_annotation_names_it() -> None:
    cr = {"kind": "CalicoNodeStatus", "metadata": {"name": "x", "annotations": {METADATA_ANNOTATION: "{"}}}
    with pytest.raises(ValidationFailure, match=r"Metadata\.Annotations\[projectcalico\.org/metadata\]"):
        CalicoNodeStatus.from_crd_v1(cr)


@pytest.mark.parametrize(
    "route",
    [
        {},
        {
            "type": "FIB",
            "destination": "198.19.0.0/26",
            "gateway": "198.18.0.2",
            "interface": "eth0",
            "learnedFrom": {"sourceType": "NodeMesh", "peerIP": "198.18.0.2"},
        },
        {
            "type": "RIB",
            "destination": "2001:db8::/64",
            "gateway": "N/A",
            "interface": "blackhole",
            "learnedFrom": {"sourceType": "Static"},
        },
        {"destination": "", "gateway": "", "interface": "", "learnedFrom": {"sourceType": "", "peerIP": ""}},
    ],
)
def test_hand_written_route_encoding_matches_the_generic_one(route: dict) -> None:
    """Routes are encoded by hand for speed; pydantic's generic dump is the reference."""
    from calico_nodestatus.api import CalicoNodeBGPRouteStatus, CalicoNodeRoute

    model = CalicoNodeRoute.model_validate(route)
    generic = model.model_dump(mode="json", by_alias=True)
    assert model.to_wire() == generic
    assert list(model.to_wire()) == list(generic)  # same key order, so the same JSON text
    routes = CalicoNodeBGPRouteStatus(routes_v4=[model], routes_v6=[model, model])
    assert routes.to_wire() == routes.model_dump(mode="json", by_alias=True)
