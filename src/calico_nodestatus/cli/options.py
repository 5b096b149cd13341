"""Options several commands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from calico_nodestatus.bird.client import SOCKET_ENV_V4, SOCKET_ENV_V6

F = TypeVar("F", bound=Callable[..., object])


def bird_socket_options(command: F) -> F:
    """`--bird-socket` / `--bird6-socket`: explicit BIRD control sockets instead of Calico's discovery."""
    command = click.option(
        "--bird6-socket",
        envvar=SOCKET_ENV_V6,
        type=click.Path(dir_okay=False),
        help=f"BIRD 1.6's IPv6 daemon socket (env {SOCKET_ENV_V6}); default: Calico's "
        "/var/run/calico/bird6.ctl, then /var/run/bird/bird6.ctl. BIRD 2 serves both families on one socket.",
    )(command)
    return click.option(
        "--bird-socket",
        envvar=SOCKET_ENV_V4,
        type=click.Path(dir_okay=False),
        help=f"BIRD control socket (env {SOCKET_ENV_V4}); default: Calico's /var/run/calico/bird.ctl, "
        "then /var/run/bird/bird.ctl.",
    )(command)
