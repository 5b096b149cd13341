"""Manifests (YAML or JSON text) ⇄ CalicoNodeStatus objects. Pure: text in, objects out.

Accepted input shapes, freely mixed across `---` documents: a single object, a `kind: List` or
`kind: CalicoNodeStatusList` with `items`, and a bare YAML list of objects (what `get -o yaml`
prints). Every document is validated before anything is returned, so a caller can write
all-or-nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import yaml

from calico_nodestatus.api.errors import ManifestError, ValidationFailure
from calico_nodestatus.api.fieldpath import type_name
from calico_nodestatus.api.model import API_VERSION, KIND, LIST_KIND, CalicoNodeStatus

_LIST_KINDS: Final = {"List": "v1", LIST_KIND: API_VERSION}
_EXPECTED_KINDS: Final = f"{KIND}, {LIST_KIND} or List"


class _ManifestLoader(yaml.SafeLoader):
    """Safe YAML that keeps timestamps as text (the model parses them) and rejects duplicate keys."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _ManifestDumper(yaml.SafeDumper):
    """Block style everywhere; multi-line strings (e.g. last-applied-configuration) as `|` blocks."""


# Digit-led text such as `09:23:22` or `2021-10-18 09:23:19` is a number or time to other YAML
# readers (YAML 1.1 sexagesimals, timestamps); quote it as Calico's output does.
_LOOKS_NUMERIC: Final = re.compile(r"^[0-9][0-9:.\-+ TZ]*$")
# Line breaks other than \n (CR, NEL, LS, PS) are folded to \n by YAML readers unless escaped,
# and only double quotes escape them.
_OTHER_BREAKS: Final = re.compile("[\r\x85\u2028\u2029]")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if _OTHER_BREAKS.search(value) or _LOOKS_NUMERIC.match(value):
        style: str | None = '"'
    else:
        style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def dump_yaml(data: object) -> str:
    """YAML as `get -o yaml` prints it: keys sorted, block style."""
    return yaml.dump(
        data, Dumper=_ManifestDumper, sort_keys=True, default_flow_style=False, allow_unicode=True
    )


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object of the input and where it came from (1-based document, item inside a list)."""

    object: CalicoNodeStatus
    document: int
    item: int | None

    @property
    def where(self) -> str:
        return f"document {self.document}" + (f", item {self.item}" if self.item is not None else "")


def load_manifests(text: str) -> list[CalicoNodeStatus]:
    """Every CalicoNodeStatus in `text`; raises ManifestError (with the document index) on any problem."""
    return [manifest.object for manifest in load_manifest_documents(text)]


def load_manifest_documents(text: str) -> list[Manifest]:
    """Like load_manifests, keeping each object's position for messages."""
    manifests: list[Manifest] = []
    for document, data in _documents(text):
        if not isinstance(data, dict | list):
            raise ManifestError(
                f"expected a {KIND} mapping or a list of them, got {type_name(data)}", document=document
            )
        try:
            objects = _objects_of(data)
        except ValidationFailure as failure:
            raise ManifestError(str(failure), document=document, field=failure.field) from None
        for item, raw in objects:
            try:
                obj = _parse_object(raw)
            except ValidationFailure as failure:
                raise ManifestError(str(failure), document=document, item=item, field=failure.field) from None
            manifests.append(Manifest(obj, document, item))
    if not manifests:
        raise ManifestError(f"no {KIND} found in the input (it is empty)")
    _reject_duplicate_names(manifests)
    return manifests


def _documents(text: str) -> Iterator[tuple[int, object]]:
    """(1-based document number, data) for every non-empty YAML document."""
    document = 0
    try:
        for document, data in enumerate(yaml.load_all(text, Loader=_ManifestLoader), start=1):
            if data is not None:
                yield document, data
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML: {_describe_yaml_error(exc)}", document=document + 1) from None


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc).replace("\n", " ")


def _objects_of(data: dict[str, Any] | list[Any]) -> list[tuple[int | None, object]]:
    """The objects a document holds: itself, or the items of a list (1-based item numbers)."""
    if isinstance(data, list):
        return list(enumerate(data, start=1))
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _LIST_KINDS:  # any YAML value may sit here
        return [(None, data)]
    unknown = sorted(set(data) - {"apiVersion", "kind", "metadata", "items"})
    if unknown:
        raise ValidationFailure(
            unknown[0], f"unknown field in a {kind}; expected one of: apiVersion, kind, items"
        )
    if data.get("apiVersion") != _LIST_KINDS[kind]:
        raise ValidationFailure(
            "APIVersion", f"expected {_LIST_KINDS[kind]} for a {kind}", data.get("apiVersion")
        )
    items = data.get("items")
    if not isinstance(items, list):
        raise ValidationFailure("Items", f"expected a list of {KIND}, got {type_name(items)}")
    return list(enumerate(items, start=1))


def _parse_object(raw: object) -> CalicoNodeStatus:
    if isinstance(raw, dict):
        if "kind" not in raw:
            raise ValidationFailure("Kind", f"field is required: expected {KIND}")
        if raw["kind"] != KIND:
            raise ValidationFailure("Kind", f"unknown kind; expected {_EXPECTED_KINDS}", raw["kind"])
        if "apiVersion" not in raw:
            raise ValidationFailure("APIVersion", f"field is required: expected {API_VERSION}")
        if raw["apiVersion"] != API_VERSION:
            raise ValidationFailure(
                "APIVersion", f"unknown apiVersion; expected {API_VERSION}", raw["apiVersion"]
            )
    return CalicoNodeStatus.from_wire(raw)


def _reject_duplicate_names(manifests: list[Manifest]) -> None:
    first_seen: dict[str, Manifest] = {}
    for manifest in manifests:
        earlier = first_seen.setdefault(manifest.object.name, manifest)
        if earlier is not manifest:
            failure = ValidationFailure(
                "Metadata.Name", f"duplicate name; also in {earlier.where}", manifest.object.name
            )
            raise ManifestError(
                str(failure), document=manifest.document, item=manifest.item, field=failure.field
            )
