"""A lab of real BIRD daemons in network namespaces, and the fault levers tests need.

Layout: one namespace `cns-<lab>-br` holds the bridge `br0` (and `br1` for the second-interface
fault); node N lives in namespace `cns-<lab>-N` with `eth0`, a veth whose other end `nN` sits on
`br0`. Nothing is created in the host namespace, so deleting the namespaces removes every link.
Per node files live in `<root>/<lab>/<lab>-node-N/` (configs, control sockets, pid files, logs),
and `<root>/<lab>/lab.json` records the topology so every command acts on the same lab.

Sockets: BIRD 1.6 runs `bird` (bird.ctl) and `bird6` (bird6.ctl) like calico-node. BIRD 2 runs
one daemon serving both families on bird.ctl; there is deliberately no bird6.ctl (a symlink would
make one daemon look like two to socket discovery), so `LabNode.socket_v6` is None and
`LabNode.socket_for(6)` returns bird.ctl.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from calico_nodestatus.bird.client import SOCKET_ENV_V4, SOCKET_ENV_V6
from calico_nodestatus.lab import birdconf, system
from calico_nodestatus.lab.model import (
    LAN_V4,
    LAN_V6,
    MAX_NODES,
    NAMESPACE_PREFIX,
    SECOND_LAN_V4,
    SECOND_LAN_V6,
    BirdVersion,
    Family,
    IPAddress,
    LabError,
    LabState,
    NodeState,
    Peer,
    node_address,
    validate_lab_name,
)

LAB_ROOT_ENV = "CALICO_NODESTATUS_LAB_ROOT"
DEFAULT_LAB_ROOT = Path("/run/calico-nodestatus")
DEFAULT_LAB_NAME = "lab"
STATE_FILE = "lab.json"
NFT_TABLE = "cns_lab"

Progress = Callable[[str], None]


def lab_root() -> Path:
    return Path(os.environ.get(LAB_ROOT_ENV, str(DEFAULT_LAB_ROOT)))


def _quiet(_: str) -> None:
    """Default progress sink."""


@dataclass(frozen=True, slots=True)
class Daemon:
    """One BIRD process of a node: `bird` or `bird6` (BIRD 1.6), or `bird` serving both (BIRD 2)."""

    name: str
    families: tuple[Family, ...]
    binary: Path
    client: Path
    config: Path
    socket: Path
    pid_file: Path

    def pid(self) -> int | None:
        """The daemon's pid while it runs (checked against /proc, not just the pid file)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if system.process_alive(pid) and str(self.socket) in system.process_cmdline(pid):
            return pid
        return None


@dataclass(frozen=True, slots=True)
class Leftovers:
    namespaces: tuple[str, ...]
    pids: tuple[int, ...]
    directory: Path | None

    @property
    def empty(self) -> bool:
        return not self.namespaces and not self.pids and self.directory is None


@dataclass(frozen=True, slots=True)
class Session:
    """A BGP protocol row of `show protocols`: BIRD's protocol state, BGP state and extra info."""

    name: str
    state: str
    bgp_state: str
    info: str

    @property
    def established(self) -> bool:
        return self.bgp_state == "Established"


def parse_bgp_rows(lines: Iterable[str]) -> dict[str, Session]:
    """BGP rows of birdc's `show protocols` text (the lab's own readiness check, not the product's)."""
    sessions = {}
    for line in lines:
        columns = line.split()
        if len(columns) >= 5 and columns[1] == "BGP":
            info = columns[5:]
            sessions[columns[0]] = Session(
                name=columns[0],
                state=columns[3],
                bgp_state=info[0] if info else "",
                info=" ".join(info[1:]),
            )
    return sessions


class LabNode:
    """A read-only view of one node with its paths and sockets."""

    def __init__(self, lab: Lab, state: NodeState) -> None:
        self._lab = lab
        self.state = state

    index = property(lambda self: self.state.index)
    name = property(lambda self: self.state.name)
    namespace = property(lambda self: self.state.namespace)
    directory = property(lambda self: self.state.directory)

    @property
    def ipv4(self) -> ipaddress.IPv4Address:
        """The node's BGP address (its eth1 address while the second-interface fault is on)."""
        return self.state.ipv4

    @property
    def ipv6(self) -> ipaddress.IPv6Address | None:
        return self.state.ipv6

    @property
    def bird_version(self) -> BirdVersion:
        return self._lab.state.bird

    @property
    def daemons(self) -> list[Daemon]:
        binaries = system.bird_binaries(self._lab.state.bird)
        d = self.directory
        if self._lab.state.bird is BirdVersion.V2:
            families: tuple[Family, ...] = (4, 6) if self._lab.state.ipv6 else (4,)
            return [
                Daemon(
                    "bird",
                    families,
                    binaries.daemon_v4,
                    binaries.client_v4,
                    d / "bird.conf",
                    d / "bird.ctl",
                    d / "bird.pid",
                ),
            ]
        daemons = [
            Daemon(
                "bird",
                (4,),
                binaries.daemon_v4,
                binaries.client_v4,
                d / "bird.conf",
                d / "bird.ctl",
                d / "bird.pid",
            ),
        ]
        if self._lab.state.ipv6:
            daemons.append(
                Daemon(
                    "bird6",
                    (6,),
                    binaries.daemon_v6,
                    binaries.client_v6,
                    d / "bird6.conf",
                    d / "bird6.ctl",
                    d / "bird6.pid",
                )
            )
        return daemons

    def daemon_for(self, family: Family) -> Daemon:
        for daemon in self.daemons:
            if family in daemon.families:
                return daemon
        raise LabError(f"family: IPv{family} is not enabled in lab {self._lab.name!r}")

    @property
    def socket_v4(self) -> Path:
        return self.directory / "bird.ctl"

    @property
    def socket_v6(self) -> Path | None:
        """bird6.ctl for BIRD 1.6 with IPv6; None for BIRD 2 (one socket) or an IPv4-only lab."""
        if self._lab.state.bird is BirdVersion.V1_6 and self._lab.state.ipv6:
            return self.directory / "bird6.ctl"
        return None

    def socket_for(self, family: Family) -> Path:
        return self.daemon_for(family).socket

    def environment(self) -> dict[str, str]:
        """Variables `lab exec` sets so product commands find this node's BIRD and name."""
        env = {"NODENAME": self.name, SOCKET_ENV_V4: str(self.socket_v4)}
        if self.socket_v6 is not None:
            env[SOCKET_ENV_V6] = str(self.socket_v6)
        return env

    def __repr__(self) -> str:
        return f"LabNode({self.name!r}, ipv4={self.ipv4}, ipv6={self.ipv6})"


class Lab:
    """A running lab. Create with `Lab.up(...)`, reattach with `Lab.open(name)`, end with `down()`."""

    def __init__(self, state: LabState) -> None:
        self.state = state

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def directory(self) -> Path:
        return self.state.directory

    @staticmethod
    def namespace_prefix(name: str) -> str:
        return f"{NAMESPACE_PREFIX}{name}-"

    @classmethod
    def open(cls, name: str = DEFAULT_LAB_NAME) -> Lab:
        validate_lab_name(name)
        path = lab_root() / name / STATE_FILE
        try:
            return cls(LabState.model_validate_json(path.read_text()))
        except ValidationError as exc:
            raise LabError(
                f"{path}: unreadable lab state ({exc.error_count()} errors); run `lab down --name {name}`"
            ) from None
        except FileNotFoundError:
            raise LabError(
                f"lab {name!r} is not up (no {path}); run `calico-nodestatus lab up --name {name}`"
            ) from None

    @classmethod
    def exists(cls, name: str) -> bool:
        return (lab_root() / name / STATE_FILE).exists()

    @classmethod
    def up(
        cls,
        name: str = DEFAULT_LAB_NAME,
        *,
        nodes: int = 3,
        bird: BirdVersion | str = BirdVersion.V2,
        ipv6: bool = True,
        calico_timers: bool = False,
        wait: bool = True,
        timeout: float = 30.0,
        owner_pid: int | None = None,
        progress: Progress = _quiet,
    ) -> Lab:
        """Builds the lab (or returns the running one if it has the same shape) and, with `wait`,
        returns once every Mesh session is Established. A failed build is torn down again."""
        validate_lab_name(name)
        try:
            version = BirdVersion(str(bird))
        except ValueError:
            raise LabError(f"bird: expected one of 1.6, 2; got {bird!r}") from None
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"nodes: expected 1..{MAX_NODES}; got {nodes}")
        if cls.exists(name):
            lab = cls.open(name)
            shape = (lab.state.bird, len(lab.state.nodes), lab.state.ipv6, lab.state.calico_timers)
            if shape != (version, nodes, ipv6, calico_timers):
                raise LabError(
                    f"lab {name!r} is already up with {len(lab.state.nodes)} nodes, BIRD {lab.state.bird}, "
                    f"ipv6={lab.state.ipv6}; run `calico-nodestatus lab down --name {name}` first"
                )
            progress(f"lab {name}: already up; starting any stopped daemon")
            for node in lab.nodes:
                lab.bird_start(node.index)
        else:
            cls.destroy(name)  # leftovers of an earlier failed or interrupted run
            lab = cls(
                cls.plan(
                    name=name,
                    version=version,
                    count=nodes,
                    ipv6=ipv6,
                    calico_timers=calico_timers,
                    owner=owner_pid,
                )
            )
            try:
                lab._build(progress)
                lab._wait_after_up(wait, timeout, progress)
            except BaseException:
                progress(f"lab {name}: bring-up failed; cleaning up")
                cls.destroy(name)
                raise
            return lab
        lab._wait_after_up(wait, timeout, progress)
        return lab

    def _wait_after_up(self, wait: bool, timeout: float, progress: Progress) -> None:
        if wait:
            progress(f"lab {self.name}: waiting for BGP sessions to reach Established")
            self.wait_established(timeout=timeout)

    @classmethod
    def plan(
        cls,
        *,
        name: str,
        version: BirdVersion,
        count: int,
        ipv6: bool,
        calico_timers: bool,
        owner: int | None,
    ) -> LabState:
        """The state `up` would build (names, addresses, paths), without touching the machine."""
        directory = lab_root() / name
        nodes = [
            NodeState(
                index=i,
                name=f"{name}-node-{i}",
                namespace=f"{cls.namespace_prefix(name)}{i}",
                directory=directory / f"{name}-node-{i}",
                ipv4=node_address(LAN_V4, i),
                ipv6=node_address(LAN_V6, i) if ipv6 else None,
            )
            for i in range(1, count + 1)
        ]
        return LabState(
            name=name,
            bird=version,
            ipv6=ipv6,
            calico_timers=calico_timers,
            directory=directory,
            bridge_namespace=f"{cls.namespace_prefix(name)}br",
            nodes=nodes,
            owner_pid=owner,
        )

    def _build(self, progress: Progress) -> None:
        progress(f"lab {self.name}: creating {len(self.state.nodes)} node namespaces and the bridge")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._save()
        bridge = self.state.bridge_namespace
        system.run(["ip", "netns", "add", bridge])
        for node in self.state.nodes:
            system.run(["ip", "netns", "add", node.namespace])
        bridge_commands = ["link add br0 type bridge mcast_snooping 0", "link set br0 up"]
        for node in self.state.nodes:
            bridge_commands += [
                f"link add n{node.index} type veth peer name eth0 netns {node.namespace}",
                f"link set n{node.index} master br0",
                f"link set n{node.index} up",
            ]
        system.ip_batch(bridge, bridge_commands)
        for node in self.state.nodes:
            system.ip_batch(node.namespace, ["link set lo up", *self._interface_commands(node, "eth0")])
            node.directory.mkdir(parents=True, exist_ok=True)
            self._write_configs(node)
        progress(f"lab {self.name}: starting BIRD {self.state.bird} on every node")
        for node in self.nodes:
            self.bird_start(node.index)

    def _interface_commands(self, node: NodeState, interface: str) -> list[str]:
        """Addresses usable at once: no link-local address, no duplicate address detection."""
        v4, v6 = (node.eth0_ipv4, node.eth0_ipv6) if interface == "eth0" else (node.eth1_ipv4, node.eth1_ipv6)
        lan4, lan6 = (LAN_V4, LAN_V6) if interface == "eth0" else (SECOND_LAN_V4, SECOND_LAN_V6)
        commands = [
            f"link set {interface} addrgenmode none",
            f"address replace {v4}/{lan4.prefixlen} dev {interface}",
        ]
        if self.state.ipv6:
            commands.append(f"address replace {v6}/{lan6.prefixlen} dev {interface} nodad")
        commands.append(f"link set {interface} up")
        return commands

    def down(self, progress: Progress = _quiet) -> None:
        """Removes every namespace, process and file of this lab (idempotent)."""
        Lab.destroy(self.name, progress)

    @classmethod
    def leftovers(cls, name: str) -> Leftovers:
        """What of lab `name` exists on the machine: namespaces, processes, its directory."""
        validate_lab_name(name)
        directory = lab_root() / name
        prefix = cls.namespace_prefix(name)
        namespaces = [ns for ns in system.list_namespaces() if ns.startswith(prefix)]
        # Processes inside the namespaces (daemons, agents started with `lab exec`) and any
        # process naming the lab directory (e.g. a client started outside the namespaces).
        pids = {pid for ns in namespaces for pid in system.namespace_pids(ns)}
        marker = f"{directory}/"
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                pid = int(entry.name)
                if any(marker in arg for arg in system.process_cmdline(pid)) and system.process_alive(pid):
                    pids.add(pid)
        return Leftovers(tuple(namespaces), tuple(sorted(pids)), directory if directory.exists() else None)

    @classmethod
    def destroy(cls, name: str, progress: Progress = _quiet) -> None:
        """Removes everything of lab `name` found by prefix, whether or not its state file exists."""
        found = cls.leftovers(name)
        if found.empty:
            return
        progress(
            f"lab {name}: stopping {len(found.pids)} processes, deleting {len(found.namespaces)} namespaces"
        )
        system.terminate(found.pids)
        for ns in found.namespaces:
            system.delete_namespace(ns)
        if found.directory is not None:
            shutil.rmtree(found.directory, ignore_errors=True)

    @classmethod
    def all_names(cls) -> list[str]:
        """Every lab with a state file or a namespace on this machine."""
        names = {p.parent.name for p in lab_root().glob(f"*/{STATE_FILE}")}
        pattern = re.compile(rf"^{re.escape(NAMESPACE_PREFIX)}([a-z][a-z0-9]*)-(?:br|\d+)$")
        names |= {m.group(1) for ns in system.list_namespaces() if (m := pattern.match(ns))}
        return sorted(names)

    @classmethod
    def stale_names(cls) -> list[str]:
        """Labs whose owning process has exited, and leftovers that have no state file."""
        stale = []
        for name in cls.all_names():
            if not cls.exists(name):
                stale.append(name)
                continue
            try:
                owner = cls.open(name).state.owner_pid
            except LabError:  # removed meanwhile by another cleaner
                continue
            if owner is not None and not system.process_alive(owner):
                stale.append(name)
        return stale

    def _save(self) -> None:
        path = self.directory / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state.model_dump(mode="json"), indent=2) + "\n")
        tmp.replace(path)

    # ---- nodes -------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[LabNode]:
        return [LabNode(self, n) for n in self.state.nodes]

    def node(self, ref: int | str) -> LabNode:
        """A node by number (1-based), name (`<lab>-node-N`) or namespace."""
        text = str(ref)
        for node in self.state.nodes:
            if text in (str(node.index), node.name, node.namespace):
                return LabNode(self, node)
        names = ", ".join(f"{n.index} ({n.name})" for n in self.state.nodes)
        raise LabError(f"node: {ref!r} is not a node of lab {self.name!r}; expected one of {names}")

    def _write_configs(self, node: NodeState) -> None:
        for family in (4, 6) if self.state.ipv6 else (4,):
            path = birdconf.extra_routes_file(node.directory, family)
            if not path.exists():
                path.write_text(birdconf.render_extra_routes(self.state.bird, family, 0))
        if self.state.bird is BirdVersion.V2:
            (node.directory / "bird.conf").write_text(birdconf.render_bird2(self.state, node))
            return
        (node.directory / "bird.conf").write_text(birdconf.render_bird16(self.state, node, 4))
        if self.state.ipv6:
            (node.directory / "bird6.conf").write_text(birdconf.render_bird16(self.state, node, 6))

    def _daemons(self, node: LabNode, family: Family | None) -> list[Daemon]:
        return node.daemons if family is None else [node.daemon_for(family)]

    def _reconfigure(self, nodes: Iterable[LabNode]) -> None:
        """Rewrites configs and has every running daemon load them (`birdc configure`)."""
        for node in nodes:
            self._write_configs(node.state)
            for daemon in node.daemons:
                if daemon.pid() is None:
                    continue
                lines = system.birdc(daemon.client, daemon.socket, "configure", timeout=300)
                if not any(w in line for line in lines for w in ("Reconfigured", "Reconfiguration")):
                    raise LabError(f"{node.name} {daemon.name}: configure failed: {' '.join(lines)}")
        self._save()

    # ---- BIRD processes ----------------------------------------------------------------------

    def bird_start(
        self, node_ref: int | str, family: Family | None = None, *, graceful: bool = False
    ) -> None:
        """Starts the node's daemon(s) unless running; `graceful` passes `-R` (GR recovery)."""
        node = self.node(node_ref)
        for daemon in self._daemons(node, family):
            if daemon.pid() is not None:
                continue
            daemon.pid_file.unlink(missing_ok=True)
            argv = [
                str(daemon.binary),
                "-c",
                str(daemon.config),
                "-s",
                str(daemon.socket),
                "-P",
                str(daemon.pid_file),
                *(["-R"] if graceful else []),
            ]
            system.run(system.in_namespace(node.namespace, argv))
            deadline = time.monotonic() + 5.0
            while daemon.pid() is None or not daemon.socket.exists():
                if time.monotonic() > deadline:
                    raise LabError(f"{node.name} {daemon.name}: started but no pid/socket after 5 s")
                time.sleep(0.01)

    def bird_stop(
        self, node_ref: int | str, family: Family | None = None, *, sig: signal.Signals = signal.SIGTERM
    ) -> None:
        """Stops the node's daemon(s). SIGTERM = clean shutdown (peers get a Cease); SIGKILL =
        crash (peers see the TCP session close and keep routes under graceful restart). With BIRD 2
        either family stops the one daemon."""
        node = self.node(node_ref)
        pids = [pid for d in self._daemons(node, family) if (pid := d.pid()) is not None]
        system.terminate(pids, sig)

    def bird_restart(
        self,
        node_ref: int | str,
        family: Family | None = None,
        *,
        sig: signal.Signals = signal.SIGTERM,
        graceful: bool = False,
    ) -> None:
        self.bird_stop(node_ref, family, sig=sig)
        self.bird_start(node_ref, family, graceful=graceful)

    def bird_running(self, node_ref: int | str, family: Family) -> bool:
        return self.node(node_ref).daemon_for(family).pid() is not None

    def birdc(self, node_ref: int | str, family: Family, command: str) -> list[str]:
        """A command on the node's daemon for `family`, through the matching birdc."""
        daemon = self.node(node_ref).daemon_for(family)
        return system.birdc(daemon.client, daemon.socket, command)

    # ---- BGP sessions ------------------------------------------------------------------------

    def sessions(self, node_ref: int | str, family: Family) -> dict[str, Session]:
        """The node's BGP protocols of one family, by protocol name."""
        node = self.node(node_ref)
        rows = parse_bgp_rows(self.birdc(node_ref, family, "show protocols"))
        if self.state.bird is BirdVersion.V2:
            # One daemon lists both families; keep the sessions whose neighbour has this family.
            wanted = {s.name for s in birdconf.bgp_sessions(self.state, node.state, family)}
            return {name: s for name, s in rows.items() if name in wanted}
        return rows

    def families(self) -> tuple[Family, ...]:
        return (4, 6) if self.state.ipv6 else (4,)

    def wait_sessions(
        self,
        condition: Callable[[Session], bool],
        *,
        node_ref: int | str | None = None,
        protocols: Sequence[str] | None = None,
        family: Family | None = None,
        timeout: float = 30.0,
        what: str = "condition",
    ) -> None:
        """Polls until `condition` holds for the selected sessions (default: every Mesh session
        of every running node), raising LabError with the offending sessions on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            failing = []
            nodes = [self.node(node_ref)] if node_ref is not None else self.nodes
            for node in nodes:
                for fam in (family,) if family else self.families():
                    for name, session in self.sessions(node.index, fam).items():
                        selected = name in protocols if protocols is not None else name.startswith("Mesh_")
                        if selected and not condition(session):
                            failing.append(f"{node.name} {name}: {session.bgp_state} {session.info}".strip())
            if not failing:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.name}: {what} not reached within {timeout} s: " + "; ".join(failing)
                )
            time.sleep(0.1)

    def wait_established(self, timeout: float = 30.0, node_ref: int | str | None = None) -> None:
        self.wait_sessions(
            lambda s: s.established,
            node_ref=node_ref,
            timeout=timeout,
            what="Established on every Mesh session",
        )

    # ---- commands inside a node --------------------------------------------------------------

    def command(self, node_ref: int | str, argv: Sequence[str]) -> list[str]:
        """argv that runs `argv` inside the node's namespace with the node's environment."""
        node = self.node(node_ref)
        # The running interpreter's bin directory first, so `calico-nodestatus` resolves to this
        # installation even when its virtualenv is not activated.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
        env = [f"{k}={v}" for k, v in {**node.environment(), "PATH": path}.items()]
        return system.in_namespace(node.namespace, ["env", *env, *argv])

    def exec(
        self, node_ref: int | str, argv: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return system.run(self.command(node_ref, argv), check=check)

    # ---- fault levers ------------------------------------------------------------------------

    def link_down(self, node_ref: int | str) -> None:
        node = self.node(node_ref)
        system.ip_batch(node.namespace, ["link set eth0 down"])

    def link_up(self, node_ref: int | str) -> None:
        node = self.node(node_ref)
        # IPv6 addresses are dropped with the link; `address replace` puts them back.
        system.ip_batch(node.namespace, self._interface_commands(node.state, "eth0"))

    def _peer_addresses(self, peer_ref: int | str) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(str(peer_ref))]
        except ValueError:
            peer = self.node(peer_ref).state
            addresses: list[IPAddress] = [peer.eth0_ipv4, peer.ipv4]
            if peer.ipv6 is not None:
                addresses += [peer.eth0_ipv6, peer.ipv6]
            return list(dict.fromkeys(addresses))

    def block_bgp(self, node_ref: int | str, peer_ref: int | str) -> None:
        """Drops TCP 179 between the node and a peer (node ref or IP) with nftables in the node.

        Established sessions would only notice at hold-timer expiry, so the affected protocols are
        restarted on both ends: the block takes effect at once and reconnects then fail."""
        self._set_block(node_ref, peer_ref, blocked=True)

    def unblock_bgp(self, node_ref: int | str, peer_ref: int | str) -> None:
        self._set_block(node_ref, peer_ref, blocked=False)

    def _set_block(self, node_ref: int | str, peer_ref: int | str, *, blocked: bool) -> None:
        node = self.node(node_ref)
        addresses = self._peer_addresses(peer_ref)
        current = [a for a in node.state.blocked_peers if a not in addresses]
        node.state.blocked_peers = current + addresses if blocked else current
        system.nft_apply(node.namespace, _nft_script(node.state.blocked_peers))
        self._save()
        if blocked:
            self._restart_sessions(node, set(addresses))
            if not _is_ip(peer_ref):
                peer = self.node(peer_ref)
                self._restart_sessions(peer, set(self._peer_addresses(node.index)))

    def _restart_sessions(self, node: LabNode, neighbors: set[IPAddress]) -> None:
        for family in self.families():
            names = [
                s.name
                for s in birdconf.bgp_sessions(self.state, node.state, family)
                if s.neighbor in neighbors
            ]
            daemon = node.daemon_for(family)
            if names and daemon.pid() is not None:
                for name in names:
                    system.birdc(daemon.client, daemon.socket, f"restart {name}")

    def set_routes(
        self, node_ref: int | str, count: int, family: Family = 4, progress: Progress = _quiet
    ) -> None:
        """Makes the node originate `count` extra blackhole routes its peers learn over BGP
        (0 removes them). Written as a static protocol include and loaded with `configure`."""
        node = self.node(node_ref)
        node.daemon_for(family)  # validates the family
        if count < 0:
            raise LabError(f"count: expected 0 or more; got {count}")
        text = birdconf.render_extra_routes(self.state.bird, family, count)
        progress(f"{node.name}: loading {count} IPv{family} routes")
        path = birdconf.extra_routes_file(node.directory, family)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        if family == 4:
            node.state.extra_routes_v4 = count
        else:
            node.state.extra_routes_v6 = count
        self._reconfigure([node])

    def add_peers(self, node_ref: int | str, peers: Sequence[Peer]) -> None:
        """Adds explicit Node_/Global_ peers (possibly pointing nowhere) with one reconfigure."""
        node = self.node(node_ref)
        existing = {p.protocol for p in node.state.peers}
        for peer in peers:
            node.daemon_for(peer.family)
            if peer.protocol in existing:
                raise LabError(f"peer: {node.name} already has {peer.protocol}")
            existing.add(peer.protocol)
        node.state.peers = [*node.state.peers, *peers]
        self._reconfigure([node])

    def remove_peers(self, node_ref: int | str, protocols: Sequence[str] | None = None) -> None:
        """Removes the named explicit peers (all of them when `protocols` is None)."""
        node = self.node(node_ref)
        names = {p.protocol for p in node.state.peers}
        unknown = set(protocols or ()) - names
        if unknown:
            raise LabError(f"peer: {node.name} has no explicit peer {', '.join(sorted(unknown))}")
        node.state.peers = [
            p for p in node.state.peers if protocols is not None and p.protocol not in protocols
        ]
        self._reconfigure([node])

    def set_as(self, node_ref: int | str, as_number: int) -> None:
        """Runs the node's BIRD with another local AS while its peers still expect the lab's AS
        (the peers then fail with `BGP Error: Bad peer AS`)."""
        if not 1 <= as_number <= 4294967295:
            raise LabError(f"as: expected 1..4294967295; got {as_number}")
        node = self.node(node_ref)
        node.state.as_number = as_number
        self._reconfigure([node])

    def set_second_interface(self, node_ref: int | str, enabled: bool = True) -> None:
        """The wrong-interface fault: the node gets `eth1` on a second bridge (198.18.1.N/24,
        2001:db8:0:1::N/64) and that address becomes its BGP address, as if IP autodetection had
        picked eth1. Every node is reconfigured (mesh peers now dial the unreachable eth1 address),
        so the node's sessions fail. `enabled=False` restores eth0 and removes eth1."""
        node = self.node(node_ref)
        state = node.state
        if enabled and not state.second_interface:
            bridge = [] if self._has_second_bridge() else ["link add br1 type bridge mcast_snooping 0"]
            system.ip_batch(
                self.state.bridge_namespace,
                [
                    *bridge,
                    "link set br1 up",
                    f"link add s{state.index} type veth peer name eth1 netns {state.namespace}",
                    f"link set s{state.index} master br1",
                    f"link set s{state.index} up",
                ],
            )
            system.ip_batch(state.namespace, self._interface_commands(state, "eth1"))
            state.ipv4 = state.eth1_ipv4
            state.ipv6 = state.eth1_ipv6 if self.state.ipv6 else None
        elif not enabled and state.second_interface:
            system.ip_batch(self.state.bridge_namespace, [f"link delete s{state.index}"])
            state.ipv4 = state.eth0_ipv4
            state.ipv6 = state.eth0_ipv6 if self.state.ipv6 else None
        state.second_interface = enabled
        self._reconfigure(self.nodes)

    def _has_second_bridge(self) -> bool:
        result = system.run(["ip", "-n", self.state.bridge_namespace, "link", "show", "br1"], check=False)
        return result.returncode == 0

    # ---- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Nodes, daemons, sockets and per-family session counts, as plain data."""
        nodes = []
        for node in self.nodes:
            daemons = []
            for daemon in node.daemons:
                pid = daemon.pid()
                entry: dict[str, object] = {"name": daemon.name, "socket": str(daemon.socket), "pid": pid}
                for family in daemon.families:
                    if pid is None:
                        continue
                    sessions = self.sessions(node.index, family)
                    entry[f"sessions_v{family}"] = {
                        name: f"{s.bgp_state} {s.info}".strip() for name, s in sessions.items()
                    }
                daemons.append(entry)
            nodes.append(
                {
                    "name": node.name,
                    "namespace": node.namespace,
                    "ipv4": str(node.ipv4),
                    "ipv6": str(node.ipv6) if node.ipv6 else None,
                    "daemons": daemons,
                }
            )
        return {"name": self.name, "bird": str(self.state.bird), "ipv6": self.state.ipv6, "nodes": nodes}


def _is_ip(text: int | str) -> bool:
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def _nft_script(blocked: Sequence[IPAddress]) -> str:
    """Replaces the lab's table atomically; with nothing blocked the table is just removed."""
    lines = [f"table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}"]
    if not blocked:
        return "\n".join(lines) + "\n"
    rules: dict[str, list[str]] = {"input": [], "output": []}
    for version, keyword in ((4, "ip"), (6, "ip6")):
        addrs = ", ".join(str(a) for a in blocked if a.version == version)
        if addrs:
            for port in ("dport", "sport"):
                rules["input"].append(f"{keyword} saddr {{ {addrs} }} tcp {port} 179 drop")
                rules["output"].append(f"{keyword} daddr {{ {addrs} }} tcp {port} 179 drop")
    lines.append(f"table inet {NFT_TABLE} {{")
    for chain, chain_rules in rules.items():
        lines.append(f"  chain {chain} {{ type filter hook {chain} priority 0; policy accept;")
        lines += [f"    {r}" for r in chain_rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
