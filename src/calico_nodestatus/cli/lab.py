"""CLI commands: `lab` — a thin shell over calico_nodestatus.lab (real BIRD in network namespaces)."""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from calico_nodestatus.lab import DEFAULT_LAB_NAME, Lab, LabError, Peer, PeerType
from calico_nodestatus.lab.model import DEFAULT_AS, LAB_RANGE_V4, LAB_RANGE_V6, Family, IPAddress

F = TypeVar("F", bound=Callable[..., Any])

FAMILY = click.Choice(["4", "6"])


class _LabGroup(click.Group):
    """Renders LabError as one `Error: …` line with exit status 1, for every lab subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            raise click.ClickException(str(exc)) from exc


def _progress(message: str) -> None:
    click.echo(f">> {message}", err=True)


def _name_option(command: F) -> F:
    return click.option(
        "--name",
        "lab_name",
        envvar="CALICO_NODESTATUS_LAB",
        default=None,
        help=f"Lab name (env CALICO_NODESTATUS_LAB). Default: the lab a NODE name like "
        f"`demo-node-1` belongs to, else `{DEFAULT_LAB_NAME}`.",
    )(command)


_NODE_NAME = re.compile(r"^(?P<lab>.+)-node-\d+$")


def _lab_name(lab_name: str | None | None, node: str | None = None) -> str:
    """The explicit lab name, else the lab a `<lab>-node-N` node name names, else the default."""
    if lab_name:
        return lab_name
    match = _NODE_NAME.match(node or "")
    return match["lab"] if match else DEFAULT_LAB_NAME


def _open(lab_name: str | None | None, node: str) -> Lab:
    return Lab.open(_lab_name(lab_name, node))


def _family(value: str | None) -> Family | None:
    return None if value is None else (4 if value == "4" else 6)


@click.group("lab", cls=_LabGroup)
def lab_group() -> None:
    """A lab of real BIRD daemons in network namespaces, Calico-style iBGP mesh, and fault levers."""


@lab_group.command("up")
@_name_option
@click.option("--nodes", type=click.IntRange(1, 200), default=3, show_default=True)
@click.option(
    "--bird",
    type=click.Choice(["1.6", "2"]),
    default="2",
    show_default=True,
    help="1.6 = bird + bird6 daemons like calico-node; 2 = one daemon, ipv4 + ipv6 channels.",
)
@click.option("--ipv6/--no-ipv6", default=True, show_default=True)
@click.option(
    "--calico-timers", is_flag=True, help="Use calico-node's BGP timers instead of the lab's fast ones."
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for every Mesh session.")
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for Established."
)
def up(
    *,
    lab_name: str | None,
    nodes: int,
    bird: str,
    ipv6: bool,
    calico_timers: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Build the lab (no-op when it is already up with the same shape)."""
    lab = Lab.up(
        _lab_name(lab_name),
        nodes=nodes,
        bird=bird,
        ipv6=ipv6,
        calico_timers=calico_timers,
        wait=wait,
        timeout=timeout,
        progress=_progress,
    )
    _print_status(lab, "text")


@lab_group.command("down")
@_name_option
@click.option("--all", "every", is_flag=True, help="Remove every lab on this machine.")
@click.option(
    "--all-stale",
    is_flag=True,
    help="Remove labs whose owning test/benchmark process is gone, and leftovers without a state file.",
)
def down(lab_name: str | None, every: bool, all_stale: bool) -> None:
    """Remove every namespace, link, process and file of the lab (idempotent)."""
    if every or all_stale:
        names = Lab.all_names() if every else Lab.stale_names()
        for name in names:
            Lab.destroy(name, progress=_progress)
        click.echo(f"removed {len(names)} lab(s){': ' + ', '.join(names) if names else ''}")
        return
    lab_name = _lab_name(lab_name)
    Lab.destroy(lab_name, progress=_progress)
    click.echo(f"lab {lab_name} is down")


@lab_group.command("list")
def list_labs() -> None:
    """Labs present on this machine (stale ones marked)."""
    stale = set(Lab.stale_names())
    for name in Lab.all_names():
        click.echo(f"{name}{'  (stale)' if name in stale else ''}")


@lab_group.command("status")
@_name_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(lab_name: str | None, output: str) -> None:
    """Nodes, daemons, sockets and BGP sessions."""
    _print_status(Lab.open(_lab_name(lab_name)), output)


def _print_status(lab: Lab, output: str) -> None:
    data = lab.status()
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"lab {data['name']}: BIRD {data['bird']}, IPv6 {'on' if data['ipv6'] else 'off'}")
    for node in data["nodes"]:  # type: ignore[attr-defined]
        click.echo(
            f"{node['name']}  netns {node['namespace']}  {node['ipv4']}  {node['ipv6'] or ''}".rstrip()
        )
        for daemon in node["daemons"]:
            state = f"pid {daemon['pid']}" if daemon["pid"] else "NOT RUNNING"
            click.echo(f"  {daemon['name']:<6} {state:<12} {daemon['socket']}")
            for key in ("sessions_v4", "sessions_v6"):
                for protocol, info in daemon.get(key, {}).items():
                    click.echo(f"    {protocol:<32} {info}")


@lab_group.command("exec", context_settings={"ignore_unknown_options": True})
@_name_option
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(lab_name: str | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE's namespace (`lab exec 1 -- ip route`), with NODENAME and the
    node's BIRD socket paths in the environment."""
    argv = _open(lab_name, node).command(node, command)
    sys.exit(subprocess.run(argv, check=False).returncode)


@lab_group.group("bird")
def bird() -> None:
    """Stop, start or restart a node's BIRD daemon(s)."""


def _bird_command(action: str) -> None:
    @bird.command(action, help=f"{action.capitalize()} NODE's BIRD daemon(s).")
    @_name_option
    @click.argument("node")
    @click.option(
        "--family", type=FAMILY, help="Only the daemon serving this family (BIRD 2: the one daemon)."
    )
    @click.option(
        "--kill",
        is_flag=True,
        help="SIGKILL (crash: peers keep routes under graceful restart) instead of SIGTERM (clean shutdown).",
    )
    @click.option("--graceful", is_flag=True, help="Start with -R (graceful restart recovery).")
    def command(lab_name: str | None, node: str, family: str | None, kill: bool, graceful: bool) -> None:
        lab = _open(lab_name, node)
        sig = signal.SIGKILL if kill else signal.SIGTERM
        if action == "stop":
            lab.bird_stop(node, _family(family), sig=sig)
        elif action == "start":
            lab.bird_start(node, _family(family), graceful=graceful)
        else:
            lab.bird_restart(node, _family(family), sig=sig, graceful=graceful)
        click.echo(f"{lab.node(node).name}: bird {action} done")


for _action in ("stop", "start", "restart"):
    _bird_command(_action)


@lab_group.group("link")
def link() -> None:
    """Take a node's eth0 down or up."""


def _link_command(state: str) -> None:
    @link.command(state, help=f"Take NODE's eth0 {state}.")
    @_name_option
    @click.argument("node")
    def command(lab_name: str | None, node: str) -> None:
        lab = _open(lab_name, node)
        (lab.link_up if state == "up" else lab.link_down)(node)


for _state in ("down", "up"):
    _link_command(_state)


def _bgp_block_command(name: str, blocked: bool, help_: str) -> None:
    @lab_group.command(name, help=help_)
    @_name_option
    @click.argument("node")
    @click.argument("peer")
    def command(lab_name: str | None, node: str, peer: str) -> None:
        lab = _open(lab_name, node)
        (lab.block_bgp if blocked else lab.unblock_bgp)(node, peer)


_bgp_block_command(
    "block-bgp", True, "Drop TCP 179 between NODE and PEER (a node or an IP) with nftables inside NODE."
)
_bgp_block_command("unblock-bgp", False, "Undo block-bgp.")


@lab_group.command("routes")
@_name_option
@click.argument("node")
@click.option(
    "--count", type=click.IntRange(min=0), required=True, help="Extra routes NODE originates (0 removes)."
)
@click.option("--family", type=FAMILY, default="4", show_default=True)
def routes(lab_name: str | None, node: str, count: int, family: str) -> None:
    """Make NODE originate COUNT extra routes that its peers learn over BGP."""
    fam = _family(family)
    assert fam is not None
    _open(lab_name, node).set_routes(node, count, fam, progress=_progress)


@lab_group.group("peer")
def peer() -> None:
    """Explicit Node_/Global_ BGP peers (may point nowhere)."""


def _ip(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> list[IPAddress]:
    addresses = []
    for value in values:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise click.BadParameter(f"expected an IPv4 or IPv6 address, got {value!r}") from None
        if address not in (LAB_RANGE_V4 if address.version == 4 else LAB_RANGE_V6):
            raise click.BadParameter(
                f"expected an address inside {LAB_RANGE_V4} or {LAB_RANGE_V6}, got {value}"
            )
        addresses.append(address)
    return addresses


@peer.command("add")
@_name_option
@click.argument("node")
@click.option("--type", "peer_type", type=click.Choice(["node", "global"]), required=True)
@click.option("--ip", "ips", multiple=True, required=True, callback=_ip, help="Peer address (repeatable).")
@click.option("--as", "as_number", type=click.IntRange(1, 4294967295), default=DEFAULT_AS, show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Peer port (adds _port_<n> to the name).")
def peer_add(
    *, lab_name: str | None, node: str, peer_type: str, ips: list[IPAddress], as_number: int, port: int | None
) -> None:
    """Add explicit peers to NODE (one reconfigure for all --ip)."""
    kind = PeerType.NODE if peer_type == "node" else PeerType.GLOBAL
    peers = [Peer(type=kind, ip=ip, as_number=as_number, port=port) for ip in ips]
    _open(lab_name, node).add_peers(node, peers)
    click.echo(" ".join(p.protocol for p in peers))


@peer.command("remove")
@_name_option
@click.argument("node")
@click.argument("protocols", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Remove every explicit peer of NODE.")
def peer_remove(lab_name: str | None, node: str, protocols: tuple[str, ...], every: bool) -> None:
    """Remove explicit peers by protocol name (e.g. Global_198_18_250_1)."""
    if not protocols and not every:
        raise click.UsageError("name the peers' protocols or pass --all")
    _open(lab_name, node).remove_peers(node, None if every else list(protocols))


@lab_group.command("set-as")
@_name_option
@click.argument("node")
@click.argument("as_number", type=click.IntRange(1, 4294967295))
def set_as(lab_name: str | None, node: str, as_number: int) -> None:
    """Run NODE's BIRD with local AS AS_NUMBER while peers expect the lab's (wrong-AS fault)."""
    _open(lab_name, node).set_as(node, as_number)


@lab_group.command("wrong-interface")
@_name_option
@click.argument("node")
@click.option("--undo", is_flag=True, help="Back to eth0 and remove eth1.")
def wrong_interface(lab_name: str | None, node: str, undo: bool) -> None:
    """Give NODE an eth1 on a second bridge and make its address NODE's BGP address, as if IP
    autodetection had picked the wrong interface; all nodes are reconfigured."""
    _open(lab_name, node).set_second_interface(node, enabled=not undo)


def register(cli: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    cli.add_command(lab_group)
