"""Errors of the resource model, worded like Calico's (`error with field <Field> = '<value>' (<reason>)`)."""

from __future__ import annotations

from typing import Final

_MAX_VALUE_CHARS: Final = 80


class _NoValue:
    """Marks a failure that has no value to show (e.g. a required field that is absent)."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()


def render_value(value: object) -> str:
    """Renders a value the way Calico's messages print it (Go's %v): lists as `[a b]`."""
    if value is None:
        text = "<nil>"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = "[" + " ".join(render_value(item) for item in value) + "]"
    elif isinstance(value, dict):
        text = "map[" + " ".join(f"{key}:{render_value(item)}" for key, item in value.items()) + "]"
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


class ValidationFailure(ValueError):
    """One field of a resource is not acceptable.

    `field` is the Go-style path (`Spec.UpdatePeriodSeconds`, `Spec.Classes[1]`, `Metadata.Name`),
    `value` the offending value (NO_VALUE when there is none), `reason` what was expected.
    """

    def __init__(self, field: str, reason: str, value: object = NO_VALUE) -> None:
        self.field = field
        self.reason = reason
        self.value = value
        if value is NO_VALUE:
            message = f"error with field {field} ({reason})"
        else:
            message = f"error with field {field} = '{render_value(value)}' ({reason})"
        super().__init__(message)


class ManifestError(ValueError):
    """A manifest (file or stdin) cannot be turned into CalicoNodeStatus objects.

    `document` is the 1-based position of the YAML document in the input (None when the input as a
    whole is unusable, e.g. empty); `item` the 1-based position inside a list document; `field` the
    failing field path when one is known.
    """

    def __init__(
        self,
        detail: str,
        *,
        document: int | None = None,
        item: int | None = None,
        field: str | None = None,
    ) -> None:
        self.detail = detail
        self.document = document
        self.item = item
        self.field = field
        where = []
        if document is not None:
            where.append(f"document {document}")
        if item is not None:
            where.append(f"item {item}")
        super().__init__(f"{', '.join(where)}: {detail}" if where else detail)
