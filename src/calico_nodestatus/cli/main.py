"""The `calico-nodestatus` command: global options, then one module per command family."""

from __future__ import annotations

import logging
import sys

import click

from calico_nodestatus import __version__
from calico_nodestatus.cli import agent, doctor, health, lab, node, resources, summary
from calico_nodestatus.cli.context import CliContext


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
    ctx.obj = CliContext(
        datastore_type=datastore_type,
        db_path=db_path,
        etcd_endpoints=etcd_endpoints,
        etcd_ca_cert_file=etcd_ca_cert_file,
        etcd_cert_file=etcd_cert_file,
        etcd_key_file=etcd_key_file,
        kubeconfig=kubeconfig,
    )


for module in (resources, summary, node, lab, agent, health, doctor):
    module.register(cli)


def main() -> None:
    cli(prog_name="calico-nodestatus")
