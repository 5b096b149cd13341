"""Manifest loading: input shapes, document indexes, and the bad-input corpus (pure, no datastore)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico_nodestatus.api import ManifestError, load_manifest_documents, load_manifests

BAD = sorted((Path(__file__).parent.parent / "fixtures" / "manifests" / "bad").glob("*.yaml"))


def expected_fragment(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def _doc(name: str, period: int = 10) -> str:
    return (
        f"apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata:\n  name: {name}\n"
        f"spec:\n  node: n1\n  classes: [Agent]\n  updatePeriodSeconds: {period}\n"
    )


def _indented_item(text: str) -> str:
    return "- " + text.replace("\n", "\n  ").rstrip() + "\n"


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[path.stem for path in BAD])
def test_bad_manifest_gives_one_line_naming_the_problem(path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests(path.read_text())
    message = str(caught.value)
    assert expected_fragment(path) in message
    assert "\n" not in message


def test_multi_document_list_kinds_and_bare_list_mix() -> None:
    text = "\n---\n".join(
        [
            _doc("a"),
            "apiVersion: v1\nkind: List\nitems:\n" + _indented_item(_doc("b")) + _indented_item(_doc("c")),
            "apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatusList\nmetadata: {}\nitems:\n"
            + _indented_item(_doc("d")),
            _indented_item(_doc("e")),
            "",  # empty documents are skipped
        ]
    )
    manifests = load_manifest_documents(text)
    assert [m.object.name for m in manifests] == ["a", "b", "c", "d", "e"]
    assert [m.where for m in manifests] == [
        "document 1",
        "document 2, item 1",
        "document 2, item 2",
        "document 3, item 1",
        "document 4, item 1",
    ]


def test_json_input_is_accepted() -> None:
    text = (
        '{"apiVersion":"projectcalico.org/v3","kind":"CalicoNodeStatus","metadata":{"name":"j"},'
        '"spec":{"node":"n","classes":["Routes"],"updatePeriodSeconds":0}}'
    )
    (obj,) = load_manifests(text)
    assert obj.spec.update_period_seconds == 0


def test_error_records_document_and_field() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests(_doc("a") + "---\n" + _doc("b", period=90000))
    assert caught.value.document == 2
    assert caught.value.item is None
    assert caught.value.field == "Spec.UpdatePeriodSeconds"


def test_unquoted_timestamps_stay_text_for_the_model() -> None:
    text = _doc("t").replace("  name: t\n", "  name: t\n  creationTimestamp: 2021-10-18T10:30:43Z\n")
    (obj,) = load_manifests(text)
    assert obj.metadata.creation_timestamp is not None
    assert obj.to_wire()["metadata"]["creationTimestamp"] == "2021-10-18T10:30:43Z"
