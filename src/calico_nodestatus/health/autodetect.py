"""Calico's node IP autodetection methods, as a library that explains its choice.

Semantics follow calico-node's start-up (Calico's autodetection methods and defaults): interfaces
are visited highest ifindex first, addresses in kernel order, the first global-unicast address
wins; ``first-found``/``skip-interface`` apply the default exclusion list, ``interface``/``cidr``/
``can-reach``/``kubernetes-internal-ip`` do not; interface regexes are unanchored searches.
Unlike upstream, every result lists each interface's verdict and warns about the sharp edges
(unanchored regexes, newest-interface-wins, several usable addresses), because those are what
make a node peer from the wrong address.

``detect`` is pure (interfaces and, for ``can-reach``, a route lookup are passed in);
``read_interfaces``, ``lookup_route`` and ``autodetect`` read the kernel through netlink, in the
current or a named network namespace.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# calico-node's Linux default exclusions (first-found, skip-interface and spec.interfaces).
DEFAULT_EXCLUSIONS: tuple[str, ...] = (
    r"^docker.*",
    r"^cbr.*",
    r"^dummy.*",
    r"^podman.*",
    r"^virbr.*",
    r"^lxcbr.*",
    r"^veth.*",
    r"^lo",
    r"^br-.*",
    r"^cali.*",
    r"^tunl.*",
    r"^flannel.*",
    r"^kube-ipvs.*",
    r"^cni.*",
    r"^vxlan\.calico.*",
    r"^vxlan-v6\.calico.*",
    r"^wireguard\.cali.*",
    r"^wg-v6\.cali.*",
    r"^nodelocaldns.*",
)
_IFF_UP = 0x1


class AutodetectError(Exception):
    """Bad method text, or the kernel could not be read (missing namespace, netlink error)."""


class MethodKind(enum.StrEnum):
    FIRST_FOUND = "first-found"
    INTERFACE = "interface"
    SKIP_INTERFACE = "skip-interface"
    CIDR = "cidr"
    CAN_REACH = "can-reach"
    KUBERNETES_INTERNAL_IP = "kubernetes-internal-ip"


METHOD_SYNTAX = (
    "first-found, interface=REGEX[,REGEX...], skip-interface=REGEX[,REGEX...], "
    "cidr=CIDR[,CIDR...], can-reach=DEST, kubernetes-internal-ip"
)


@dataclass(frozen=True)
class AutodetectMethod:
    kind: MethodKind
    args: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}={','.join(self.args)}" if self.args else str(self.kind)


def parse_method(text: str) -> AutodetectMethod:
    """Parses an ``IP_AUTODETECTION_METHOD`` value the way calico-node does (empty = first-found).

    Regexes and CIDRs are validated here so a typo is reported before anything is detected.
    """
    stripped = text.strip()
    if stripped in ("", MethodKind.FIRST_FOUND):
        return AutodetectMethod(MethodKind.FIRST_FOUND)
    if stripped.startswith(MethodKind.KUBERNETES_INTERNAL_IP):
        # Upstream accepts anything that merely starts with the method name.
        extra = stripped[len(MethodKind.KUBERNETES_INTERNAL_IP) :]
        warnings = (
            (f"method {stripped!r} is accepted as kubernetes-internal-ip; the suffix {extra!r} is ignored",)
            if extra
            else ()
        )
        return AutodetectMethod(MethodKind.KUBERNETES_INTERNAL_IP, warnings=warnings)
    for kind in (MethodKind.INTERFACE, MethodKind.SKIP_INTERFACE, MethodKind.CIDR, MethodKind.CAN_REACH):
        prefix = f"{kind}="
        if not stripped.startswith(prefix):
            continue
        value = stripped[len(prefix) :]
        args = (
            (value.strip(),) if kind is MethodKind.CAN_REACH else tuple(a.strip() for a in value.split(","))
        )
        if not all(args):
            raise AutodetectError(f"IP autodetection method {stripped!r}: {kind}= needs a non-empty value")
        for arg in args:
            _validate_arg(kind, arg, stripped)
        return AutodetectMethod(kind, args, tuple(_regex_warnings(kind, args)))
    raise AutodetectError(f"invalid IP autodetection method {stripped!r}; expected one of {METHOD_SYNTAX}")


def _validate_arg(kind: MethodKind, arg: str, method: str) -> None:
    if kind in (MethodKind.INTERFACE, MethodKind.SKIP_INTERFACE):
        try:
            re.compile(arg)
        except re.error as exc:
            raise AutodetectError(
                f"IP autodetection method {method!r}: invalid interface regex {arg!r}: {exc}"
            ) from None
    elif kind is MethodKind.CIDR:
        try:
            ipaddress.ip_network(arg, strict=False)
        except ValueError:
            raise AutodetectError(
                f"IP autodetection method {method!r}: invalid CIDR {arg!r} (expected e.g. 10.0.0.0/8)"
            ) from None


def _regex_warnings(kind: MethodKind, args: tuple[str, ...]) -> list[str]:
    if kind not in (MethodKind.INTERFACE, MethodKind.SKIP_INTERFACE):
        return []
    return [
        f"{kind} regex {regex!r} is unanchored: it matches anywhere in an interface name "
        f"(so 'eth.*' also matches 'veth...'); use '^{regex}' or '^{regex}$' to pin it"
        for regex in args
        if not regex.startswith("^")
    ]


@dataclass(frozen=True)
class HostInterface:
    """One kernel interface; ``addresses`` keep the kernel's dump order (which decides ties)."""

    name: str
    index: int
    up: bool
    addresses: tuple[IPInterface, ...] = ()


@dataclass(frozen=True)
class RouteLookup:
    """What the kernel answers for `ip route get DEST`: source address and outgoing interface."""

    destination: IPAddress
    source: IPAddress | None
    interface: str | None
    gateway: IPAddress | None


@dataclass(frozen=True)
class InterfaceVerdict:
    interface: str
    index: int
    outcome: str  # picked | eligible | skipped
    reason: str


@dataclass
class Detection:
    method: str
    family: int
    address: IPInterface | None = None
    interface: str | None = None
    message: str = ""
    verdicts: list[InterfaceVerdict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    route: RouteLookup | None = None

    @property
    def ok(self) -> bool:
        return self.address is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "family": f"IPv{self.family}",
            "ok": self.ok,
            "address": str(self.address) if self.address else None,
            "interface": self.interface,
            "message": self.message,
            "interfaces": [
                {"name": v.interface, "index": v.index, "outcome": v.outcome, "reason": v.reason}
                for v in self.verdicts
            ],
            "warnings": list(self.warnings),
            "route": None
            if self.route is None
            else {
                "destination": str(self.route.destination),
                "source": str(self.route.source) if self.route.source else None,
                "interface": self.route.interface,
                "gateway": str(self.route.gateway) if self.route.gateway else None,
            },
        }


def is_acceptable(address: IPInterface) -> bool:
    """Global unicast as Go defines it: not loopback, link-local, multicast, unspecified, broadcast."""
    ip = address.ip
    return not (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip == ipaddress.IPv4Address("255.255.255.255")
    )


def _search_any(patterns: Sequence[str], name: str) -> str | None:
    return next((p for p in patterns if re.search(p, name)), None)


def detect(
    method: AutodetectMethod,
    family: int,
    interfaces: Sequence[HostInterface],
    *,
    route_lookup: Callable[[str, int], RouteLookup] | None = None,
    node_addresses: Sequence[Mapping[str, str]] | None = None,
) -> Detection:
    """Runs ``method`` for IPv``family`` over ``interfaces`` and explains the outcome.

    ``route_lookup(dest, family)`` serves ``can-reach`` (it raises ``AutodetectError`` when the
    destination is unreachable); ``node_addresses`` is a Kubernetes Node's ``status.addresses``.
    """
    if family not in (4, 6):
        raise AutodetectError(f"family: expected 4 or 6, got {family!r}")
    detection = Detection(method=str(method), family=family, warnings=list(method.warnings))
    if method.kind is MethodKind.CAN_REACH:
        if route_lookup is None:
            raise AutodetectError("can-reach needs a route lookup")
        _detect_can_reach(detection, method.args[0], interfaces, route_lookup)
    elif method.kind is MethodKind.KUBERNETES_INTERNAL_IP:
        _detect_internal_ip(detection, interfaces, node_addresses)
    else:
        _detect_by_scan(detection, method, interfaces)
    return detection


def _interface_filter(method: AutodetectMethod, interface: HostInterface) -> str | None:
    """Why ``interface`` is not considered by ``method``, or None when it is."""
    if method.kind is MethodKind.INTERFACE:
        if _search_any(method.args, interface.name) is None:
            return f"name does not match interface regex {'|'.join(method.args)!r}"
        return None
    if method.kind is MethodKind.CIDR:
        return None
    excluded_by = _search_any(DEFAULT_EXCLUSIONS, interface.name)
    if excluded_by:
        return f"default exclusion {excluded_by!r}"
    if method.kind is MethodKind.SKIP_INTERFACE:
        skipped_by = _search_any(method.args, interface.name)
        if skipped_by:
            return f"matches skip-interface regex {skipped_by!r}"
    return None


def _detect_by_scan(
    detection: Detection, method: AutodetectMethod, interfaces: Sequence[HostInterface]
) -> None:
    family = detection.family
    networks = (
        [ipaddress.ip_network(a, strict=False) for a in method.args] if method.kind is MethodKind.CIDR else []
    )
    considered = 0
    eligible: list[tuple[HostInterface, list[IPInterface]]] = []
    # Highest ifindex first: upstream walks the OS list backwards.
    for interface in sorted(interfaces, key=lambda i: i.index, reverse=True):
        excluded = _interface_filter(method, interface)
        if excluded:
            detection.verdicts.append(InterfaceVerdict(interface.name, interface.index, "skipped", excluded))
            continue
        considered += 1
        of_family = [a for a in interface.addresses if a.version == family]
        usable = [a for a in of_family if is_acceptable(a)]
        if networks:
            usable = [a for a in usable if any(a.ip in n for n in networks if n.version == family)]
        if not usable:
            reason = _no_usable_reason(family, of_family, networks)
            detection.verdicts.append(InterfaceVerdict(interface.name, interface.index, "skipped", reason))
            continue
        eligible.append((interface, usable))
        listed = ", ".join(str(a) for a in usable)
        if detection.address is None:
            detection.address, detection.interface = usable[0], interface.name
            reason = f"first usable IPv{family} address in visiting order: {usable[0]}"
            if len(usable) > 1:
                reason += f" (also has {', '.join(str(a) for a in usable[1:])})"
            detection.verdicts.append(InterfaceVerdict(interface.name, interface.index, "picked", reason))
        else:
            detection.verdicts.append(
                InterfaceVerdict(
                    interface.name,
                    interface.index,
                    "eligible",
                    f"usable {listed} but visited after {detection.interface}",
                )
            )
    _scan_message(detection, method, considered)
    _scan_warnings(detection, method, eligible, interfaces)


def _no_usable_reason(family: int, of_family: list[IPInterface], networks: list[IPNetwork]) -> str:
    if not of_family:
        return f"no IPv{family} addresses"
    listed = ", ".join(str(a) for a in of_family)
    if networks and any(is_acceptable(a) for a in of_family):
        return f"IPv{family} addresses {listed} are outside {', '.join(str(n) for n in networks)}"
    return f"only loopback/link-local/multicast IPv{family} addresses: {listed}"


def _scan_message(detection: Detection, method: AutodetectMethod, considered: int) -> None:
    v = f"IPv{detection.family}"
    if detection.address is not None:
        cidr, name, args = detection.address, detection.interface, ",".join(method.args)
        using = f"Using autodetected {v} address"
        detection.message = {
            MethodKind.FIRST_FOUND: f"{using} on interface {name}: {cidr}",
            MethodKind.INTERFACE: f"{using} {cidr} on matching interface {name}",
            MethodKind.CIDR: f"{using} {cidr} on interface {name} matching cidrs {args}",
            MethodKind.SKIP_INTERFACE: (
                f"{using} on interface {name}: {cidr} while skipping matching interfaces"
            ),
        }[method.kind]
        return
    error = (
        "no valid host interfaces found"
        if considered == 0
        else f"no valid {v} addresses found on the host interfaces"
    )
    context = {
        MethodKind.FIRST_FOUND: "",
        MethodKind.INTERFACE: f" using interface regexes {list(method.args)}",
        MethodKind.CIDR: f" using interface cidr {list(method.args)}",
        MethodKind.SKIP_INTERFACE: f" while excluding {list(method.args)}",
    }[method.kind]
    detection.message = f"Unable to auto-detect an {v} address{context}: {error}"


def _scan_warnings(
    detection: Detection,
    method: AutodetectMethod,
    eligible: list[tuple[HostInterface, list[IPInterface]]],
    interfaces: Sequence[HostInterface],
) -> None:
    v = f"IPv{detection.family}"
    if method.kind in (MethodKind.INTERFACE, MethodKind.SKIP_INTERFACE):
        for regex in method.args:
            if regex.startswith("^"):
                continue
            surprising = [
                i.name for i in interfaces if re.search(regex, i.name) and not re.match(regex, i.name)
            ]
            if surprising:
                detection.warnings.append(
                    f"{method.kind} regex {regex!r} also matches {', '.join(sorted(surprising))} "
                    "on this host because it is unanchored"
                )
    if method.kind is MethodKind.INTERFACE and detection.interface:
        excluded_by = _search_any(DEFAULT_EXCLUSIONS, detection.interface)
        if excluded_by:
            detection.warnings.append(
                f"interface= applies no default exclusions: it picked {detection.interface}, which "
                f"first-found skips ({excluded_by!r}); anchor the regex to the interface you mean"
            )
    if len(eligible) > 1 and method.kind in (MethodKind.FIRST_FOUND, MethodKind.SKIP_INTERFACE):
        others = ", ".join(f"{i.name} ({addrs[0]})" for i, addrs in eligible[1:])
        detection.warnings.append(
            f"{len(eligible)} interfaces have usable {v} addresses; {method.kind} takes the most recently "
            f"created (highest index) one, {detection.interface}, over {others}; pin the right one with "
            f"interface=^NAME$ or cidr=SUBNET"
        )
    if eligible and len(eligible[0][1]) > 1:
        detection.warnings.append(
            f"{detection.interface} has several usable {v} addresses; the first in kernel order was taken "
            f"({eligible[0][1][0]}); use cidr= to choose another"
        )
    lo_like = [i.name for i in interfaces if i.name != "lo" and i.name.startswith("lo")]
    if lo_like and method.kind in (MethodKind.FIRST_FOUND, MethodKind.SKIP_INTERFACE):
        detection.warnings.append(
            f"default exclusion '^lo' also skips {', '.join(sorted(lo_like))} (any name starting with 'lo')"
        )
    _warn_if_down(detection, interfaces)


def _warn_if_down(detection: Detection, interfaces: Sequence[HostInterface]) -> None:
    picked = next((i for i in interfaces if i.name == detection.interface), None)
    if picked is not None and not picked.up:
        detection.warnings.append(f"the picked interface {picked.name} is down")


def _owner(interfaces: Sequence[HostInterface], ip: IPAddress) -> tuple[HostInterface, IPInterface] | None:
    """The interface (any, no exclusions) holding exactly ``ip``, with its prefix length."""
    for interface in interfaces:
        for address in interface.addresses:
            if address.ip == ip:
                return interface, address
    return None


def _detect_can_reach(
    detection: Detection,
    destination: str,
    interfaces: Sequence[HostInterface],
    route_lookup: Callable[[str, int], RouteLookup],
) -> None:
    v = f"IPv{detection.family}"
    try:
        route = route_lookup(destination, detection.family)
    except AutodetectError as exc:
        detection.message = f"Unable to auto-detect an {v} address by connecting to {destination}: {exc}"
        return
    detection.route = route
    if route.source is None:
        detection.message = (
            f"Unable to auto-detect an {v} address by connecting to {destination}: "
            f"no address detected by connecting to {destination}"
        )
        return
    owner = _owner(interfaces, route.source)
    if owner is None:
        detection.message = (
            f"Unable to auto-detect an {v} address by connecting to {destination}: autodetected {v} address "
            f"does not match any addresses found on local interfaces: {route.source}"
        )
        return
    interface, address = owner
    detection.address, detection.interface = address, interface.name
    via = f" via {route.gateway}" if route.gateway else ""
    detection.verdicts.append(
        InterfaceVerdict(
            interface.name,
            interface.index,
            "picked",
            f"the kernel routes {route.destination} out of {route.interface}{via} with source {route.source}",
        )
    )
    detection.message = f"Using autodetected {v} address {address}, detected by connecting to {destination}"
    _warn_if_down(detection, interfaces)


def _detect_internal_ip(
    detection: Detection,
    interfaces: Sequence[HostInterface],
    node_addresses: Sequence[Mapping[str, str]] | None,
) -> None:
    v = f"IPv{detection.family}"
    prefix = f"Unable to auto-detect an {v} address"
    if node_addresses is None:
        detection.message = (
            f"{prefix}: Cannot use method 'kubernetes-internal-ip' without a Kubernetes Node object "
            "(upstream: only when running on a Kubernetes cluster)"
        )
        return
    internal = []
    for entry in node_addresses:
        if entry.get("type") != "InternalIP":
            continue
        try:
            ip = ipaddress.ip_address(entry.get("address", ""))
        except ValueError:
            continue
        if ip.version == detection.family:
            internal.append(ip)
    if not internal:
        detection.message = f"{prefix}: the Node has no {v} InternalIP in status.addresses"
        return
    owner = _owner(interfaces, internal[0])
    if owner is None:
        detection.message = (
            f"{prefix}: the Node's InternalIP {internal[0]} is not on any local interface, "
            "so no prefix length can be attached"
        )
        return
    interface, address = owner
    detection.address, detection.interface = address, interface.name
    detection.verdicts.append(
        InterfaceVerdict(
            interface.name, interface.index, "picked", f"holds the Node's InternalIP {internal[0]}"
        )
    )
    detection.message = (
        f"Using autodetected {v} address {address} (the Node's InternalIP) on interface {interface.name}"
    )
    _warn_if_down(detection, interfaces)


# --- kernel access (netlink) ---------------------------------------------------------------------


def _open_netlink(netns: str | None) -> IPRoute:
    if netns is None:
        return IPRoute()
    try:
        # flags=0: attach to an existing namespace only, never create one.
        return NetNS(netns, flags=0)
    except FileNotFoundError:
        raise AutodetectError(f"network namespace {netns!r} does not exist") from None


def read_interfaces(netns: str | None = None) -> list[HostInterface]:
    """All interfaces (ifindex order) with their addresses in the kernel's dump order."""
    with _open_netlink(netns) as nl:
        links = nl.get_links()
        addresses: dict[int, list[IPInterface]] = {}
        for message in nl.get_addr():
            # For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on p2p links).
            ip = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
            if ip:
                addresses.setdefault(message["index"], []).append(
                    ipaddress.ip_interface(f"{ip}/{message['prefixlen']}")
                )
    return sorted(
        (
            HostInterface(
                name=link.get_attr("IFLA_IFNAME"),
                index=link["index"],
                up=bool(link["flags"] & _IFF_UP),
                addresses=tuple(addresses.get(link["index"], ())),
            )
            for link in links
        ),
        key=lambda i: i.index,
    )


def resolve_destination(destination: str, family: int) -> IPAddress:
    """An IP literal of ``family`` as is; a hostname through the resolver (as upstream's dial)."""
    try:
        ip = ipaddress.ip_address(destination.strip("[]"))
    except ValueError:
        try:
            infos = socket.getaddrinfo(destination, None, socket.AF_INET if family == 4 else socket.AF_INET6)
        except socket.gaierror as exc:
            raise AutodetectError(
                f"cannot resolve {destination!r} to an IPv{family} address: {exc}"
            ) from None
        ip = ipaddress.ip_address(infos[0][4][0])
    if ip.version != family:
        raise AutodetectError(f"{destination} is not an IPv{family} address")
    return ip


def lookup_route(destination: str, family: int, netns: str | None = None) -> RouteLookup:
    """The kernel's route to ``destination`` (netlink RTM_GETROUTE: no packet is sent)."""
    ip = resolve_destination(destination, family)
    with _open_netlink(netns) as nl:
        try:
            answer = nl.route("get", dst=str(ip))[0]
        except NetlinkError as exc:
            raise AutodetectError(f"no route to {ip}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
        oif = answer.get_attr("RTA_OIF")
        link = nl.get_links(oif)[0] if oif else None
    source = answer.get_attr("RTA_PREFSRC")
    gateway = answer.get_attr("RTA_GATEWAY")
    return RouteLookup(
        destination=ip,
        source=ipaddress.ip_address(source) if source else None,
        interface=link.get_attr("IFLA_IFNAME") if link is not None else None,
        gateway=ipaddress.ip_address(gateway) if gateway else None,
    )


def autodetect(
    method: AutodetectMethod,
    family: int,
    *,
    netns: str | None = None,
    node_addresses: Sequence[Mapping[str, str]] | None = None,
) -> Detection:
    """``detect`` on this host's (or ``netns``'s) interfaces and routes."""
    return detect(
        method,
        family,
        read_interfaces(netns),
        route_lookup=lambda destination, fam: lookup_route(destination, fam, netns),
        node_addresses=node_addresses,
    )
