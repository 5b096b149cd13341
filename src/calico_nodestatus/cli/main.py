"""The `calico-nodestatus` command: global options, then one module per command family.

Command modules are imported only when their command runs (or help lists it): the agent must not
carry what other commands need (grpc for etcd, lightkube, pyroute2, the lab) — that footprint
is most of a long-running agent's memory.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Mapping

import click

from calico_nodestatus import __version__
from calico_nodestatus.cli.context import CliContext

# Top-level command name -> the module of calico_nodestatus.cli whose `register(group)` adds it.
COMMAND_MODULES: Mapping[str, str] = {
    "create": "resources",
    "apply": "resources",
    "replace": "resources",
    "get": "resources",
    "delete": "resources",
    "crd": "resources",
    "summary": "summary",
    "mesh": "mesh",
    "node": "node",
    "lab": "lab",
    "agent": "agent",
    "health": "health",
    "doctor": "doctor",
}


class LazyGroup(click.Group):
    """A group that imports a command's module on first use and lets it register its commands."""

    def __init__(self, *args: object, command_modules: Mapping[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.command_modules = dict(command_modules)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.command_modules})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = self.command_modules.get(cmd_name)
        if cmd_name not in self.commands and module_name is not None:
            importlib.import_module(f"calico_nodestatus.cli.{module_name}").register(self)
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup,
    command_modules=COMMAND_MODULES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "--datastore-type",
    type=click.Choice(["embedded", "etcdv3", "kubernetes"]),
    envvar="DATASTORE_TYPE",
    default="embedded",
    show_default=True,
    help="Where CalicoNodeStatus objects live (env DATASTORE_TYPE, Calico's name).",
)
@click.option("--db", "db_path", envvar="CALICO_NODESTATUS_DB", help="Embedded datastore file.")
@click.option("--etcd-endpoints", envvar="ETCD_ENDPOINTS", help="Comma-separated etcd URLs.")
@click.option("--etcd-ca-cert-file", envvar="ETCD_CA_CERT_FILE", help="CA bundle for etcd TLS.")
@click.option("--etcd-cert-file", envvar="ETCD_CERT_FILE", help="Client certificate for etcd.")
@click.option("--etcd-key-file", envvar="ETCD_KEY_FILE", help="Client key for etcd.")
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig for the kubernetes datastore.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    envvar="LOG_LEVEL",
    default="warning",
    show_default=True,
)
@click.version_option(__version__, prog_name="calico-nodestatus")
@click.pass_context
def cli(
    ctx: click.Context,
    *,
    datastore_type: str,
    db_path: str | None,
    etcd_endpoints: str | None,
    etcd_ca_cert_file: str | None,
    etcd_cert_file: str | None,
    etcd_key_file: str | None,
    kubeconfig: str | None,
    log_level: str,
) -> None:
    """Calico node status: the CalicoNodeStatus API, its agent, health checks and BGP doctor."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # The HTTP clients log every request at INFO: one line per Lease renewal and status write,
    # which the agent already reports in its own words. Their warnings still show.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    ctx.obj = CliContext(
        datastore_type=datastore_type,
        db_path=db_path,
        etcd_endpoints=etcd_endpoints,
        etcd_ca_cert_file=etcd_ca_cert_file,
        etcd_cert_file=etcd_cert_file,
        etcd_key_file=etcd_key_file,
        kubeconfig=kubeconfig,
    )


def main() -> None:
    cli(prog_name="calico-nodestatus")
