"""The generated CRD: its content, and that deploy/crd.yaml and `calico-nodestatus crd` match it."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from calico_nodestatus.api import build_crd, crd_yaml
from calico_nodestatus.cli.main import cli

DEPLOY_CRD = Path(__file__).parent.parent.parent / "deploy" / "crd.yaml"


def test_deploy_copy_matches_the_generated_crd() -> None:
    assert DEPLOY_CRD.read_text() == crd_yaml()


def test_crd_command_prints_the_generated_crd() -> None:
    result = CliRunner().invoke(cli, ["crd"])
    assert result.exit_code == 0
    assert result.stdout == DEPLOY_CRD.read_text()
    v3 = CliRunner().invoke(cli, ["crd", "--group", "projectcalico.org"])
    assert yaml.safe_load(v3.stdout) == build_crd("projectcalico.org")


def test_v1_crd_content() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "caliconodestatuses.crd.projectcalico.org"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["listKind"] == "CalicoNodeStatusList"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1"
    assert version["subresources"] == {"status": {}}
    assert version["selectableFields"] == [{"jsonPath": ".spec.node"}]
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Node": ".spec.node",
        "Classes": ".spec.classes",
        "Period": ".spec.updatePeriodSeconds",
        "Last-Updated": ".status.lastUpdated",
    }
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    spec = schema["spec"]
    assert spec["required"] == ["node", "classes", "updatePeriodSeconds"]
    assert spec["properties"]["classes"]["items"]["enum"] == ["Agent", "BGP", "Routes"]
    assert spec["properties"]["classes"]["x-kubernetes-list-type"] == "set"
    period = spec["properties"]["updatePeriodSeconds"]
    assert (period["type"], period["minimum"], period["maximum"]) == ("integer", 0, 86400)
    status = schema["status"]["properties"]
    assert status["lastUpdated"] == {
        "type": "string",
        "format": "date-time",
        "nullable": True,
        "description": status["lastUpdated"]["description"],
    }
    assert status["bgp"]["required"] == [
        "numberEstablishedV4",
        "numberNotEstablishedV4",
        "numberEstablishedV6",
        "numberNotEstablishedV6",
    ]
    peer = status["bgp"]["properties"]["peersV4"]
    assert peer["x-kubernetes-list-type"] == "atomic"
    assert peer["items"]["properties"]["state"]["enum"][0] == "Idle"
    route = status["routes"]["properties"]["routesV6"]["items"]["properties"]
    assert route["learnedFrom"]["properties"]["sourceType"]["enum"] == [
        "Kernel",
        "Static",
        "Direct",
        "NodeMesh",
        "BGPPeer",
    ]


def test_v3_crd_differs_only_in_group_and_version() -> None:
    v1, v3 = build_crd(), build_crd("projectcalico.org")
    assert v3["metadata"]["name"] == "caliconodestatuses.projectcalico.org"
    assert v3["spec"]["versions"][0]["name"] == "v3"
    assert v3["spec"]["versions"][0]["schema"] == v1["spec"]["versions"][0]["schema"]
