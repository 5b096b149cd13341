"""The one place where expected failures become a single `Error: …` line and exit status 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from calico_nodestatus.api import ManifestError, ValidationFailure
from calico_nodestatus.datastore.base import DatastoreError

P = ParamSpec("P")
T = TypeVar("T")

USER_ERRORS = (DatastoreError, ValidationFailure, ManifestError)


def user_errors(command: Callable[P, T]) -> Callable[P, T]:
    """Wraps a command so datastore, validation and manifest errors print one line and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc).replace("\n", " ")) from exc

    return wrapper
