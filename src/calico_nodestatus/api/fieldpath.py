"""Turns pydantic's validation errors into Calico-style `ValidationFailure`s.

Paths use Go field names as Calico prints them (`Spec.UpdatePeriodSeconds`, `Status.BGP.PeersV4[0]
.PeerIP`, `Metadata.Labels[app]`); an unknown key keeps its spelling so the user can find it.
"""

from __future__ import annotations

import types
import typing
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from calico_nodestatus.api.errors import ValidationFailure

ModelT = TypeVar("ModelT", bound=BaseModel)

_GO_NAME_OVERRIDES: Final = {"bgp": "BGP", "uid": "UID", "apiVersion": "APIVersion"}
_MAPPING_FIELDS: Final = frozenset({"labels", "annotations"})
_GENERIC_EXPECTATIONS: Final = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}
# What the user should write, for the fields a user writes; used for absent and wrong-typed values.
_FIELD_EXPECTATIONS: Final = {
    "Metadata.Name": "a lower-case DNS-1123 subdomain, at most 253 characters",
    "Spec.Node": "the node name, a lower-case DNS-1123 subdomain",
    "Spec.Classes": "a list of distinct classes from Agent, BGP, Routes",
    "Spec.UpdatePeriodSeconds": "an integer from 0 to 86400",
}


def validate_or_fail(model: type[ModelT], data: object) -> ModelT:
    """`model.model_validate(data)`, raising ValidationFailure for the first failing field."""
    if not isinstance(data, dict):
        raise ValidationFailure(
            model.__name__, f"expected a mapping (an object), got {type_name(data)}", data
        )
    try:
        # Wire input uses the wire names only; snake_case is for Python callers.
        return model.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise failure_from_error(model, exc.errors()[0]) from None


def type_name(value: object) -> str:
    """How a YAML/JSON value's type is named in messages."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "a mapping"
    return type(value).__name__


def failure_from_error(model: type[BaseModel], error: ErrorDetails) -> ValidationFailure:
    loc = _wire_loc(error["loc"])
    kind = error["type"]
    path = go_path(loc, keep_last=kind == "extra_forbidden")
    if kind == "missing":
        expected = _FIELD_EXPECTATIONS.get(path)
        return ValidationFailure(path, f"field is required: {expected}" if expected else "field is required")
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(model, loc[:-1]))
        return ValidationFailure(path, f"unknown field; expected one of: {allowed}", error["input"])
    if kind in _GENERIC_EXPECTATIONS:
        expected = _FIELD_EXPECTATIONS.get(path)
        reason = f"expected {expected}" if expected else _GENERIC_EXPECTATIONS[kind]
        return ValidationFailure(path, f"{reason}, got {type_name(error['input'])}", error["input"])
    if kind in ("enum", "literal_error"):
        expected = error.get("ctx", {}).get("expected", "")
        return ValidationFailure(path, f"expected {expected}, case-sensitive", error["input"])
    return ValidationFailure(path, error["msg"], error["input"])


def _wire_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Errors about a dict key end with "[key]"; the key itself is the element before it.
    return tuple(part for part in loc if part != "[key]")


def go_path(loc: tuple[int | str, ...], *, keep_last: bool = False) -> str:
    """`('spec', 'classes', 1)` → `Spec.Classes[1]`; `keep_last` leaves an unknown key as written."""
    path = ""
    parent: int | str | None = None
    for position, part in enumerate(loc):
        if isinstance(part, int) or parent in _MAPPING_FIELDS:
            path += f"[{part}]"
        else:
            as_written = keep_last and position == len(loc) - 1
            name = part if as_written else _GO_NAME_OVERRIDES.get(part, part[:1].upper() + part[1:])
            path += f".{name}" if path else name
        parent = part
    return path


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        current = _model_in(field.annotation) if field else None
    if current is None:
        return []
    return [field.alias or name for name, field in current.model_fields.items()]


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `Foo`, `list[Foo]` or `Foo | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None
