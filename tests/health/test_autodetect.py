"""IP autodetection against real interfaces and routes in a network namespace (layout: conftest.host)."""

from __future__ import annotations

import ipaddress

import pytest

from calico_nodestatus.health.autodetect import (
    AutodetectError,
    HostInterface,
    MethodKind,
    RouteLookup,
    autodetect,
    detect,
    lookup_route,
    parse_method,
    read_interfaces,
)


def by_name(interfaces: list[HostInterface]) -> dict[str, HostInterface]:
    return {i.name: i for i in interfaces}


def test_read_interfaces_in_index_and_kernel_order(host: str) -> None:
    interfaces = read_interfaces(host)
    named = by_name(interfaces)
    assert [i.index for i in interfaces] == sorted(i.index for i in interfaces)
    # The layout the other tests rely on: later-created interfaces have higher indexes.
    assert named["lo"].index < named["eth0"].index < named["eth1"].index < named["veth7"].index
    v4 = [str(a) for a in named["eth0"].addresses if a.version == 4]
    assert v4 == ["198.18.10.1/24", "198.18.10.2/24"]
    assert ipaddress.ip_interface("2001:db8:10::1/64") in named["eth0"].addresses
    assert named["eth0"].up


def test_first_found_prefers_the_newest_eligible_interface(host: str) -> None:
    result = autodetect(parse_method("first-found"), 4, netns=host)
    assert (str(result.address), result.interface) == ("198.18.12.1/24", "eth1")
    assert result.message == "Using autodetected IPv4 address on interface eth1: 198.18.12.1/24"
    verdicts = {v.interface: (v.outcome, v.reason) for v in result.verdicts}
    assert verdicts["veth7"] == ("skipped", "default exclusion '^veth.*'")
    assert verdicts["lom0"] == ("skipped", "default exclusion '^lo'")
    assert verdicts["lo"] == ("skipped", "default exclusion '^lo'")
    assert verdicts["p1"] == ("skipped", "no IPv4 addresses")
    assert verdicts["eth0"][0] == "eligible"
    assert "198.18.10.1/24, 198.18.10.2/24" in verdicts["eth0"][1]
    # Visiting order is highest index first, every interface accounted for.
    indexes = [v.index for v in result.verdicts]
    assert indexes == sorted((i.index for i in read_interfaces(host)), reverse=True)
    assert any(
        "takes the most recently created (highest index) one, eth1, over eth0" in w for w in result.warnings
    )
    assert any("'^lo' also skips lom0" in w for w in result.warnings)


def test_unanchored_interface_regex_picks_a_veth(host: str) -> None:
    result = autodetect(parse_method("interface=eth.*"), 4, netns=host)
    assert (str(result.address), result.interface) == ("198.18.14.1/24", "veth7")
    assert result.message == "Using autodetected IPv4 address 198.18.14.1/24 on matching interface veth7"
    assert any("also matches veth7 on this host because it is unanchored" in w for w in result.warnings)
    assert any("interface= applies no default exclusions: it picked veth7" in w for w in result.warnings)
    anchored = autodetect(parse_method("interface=^eth.*"), 4, netns=host)
    assert anchored.interface == "eth1"
    assert not any("unanchored" in w for w in anchored.warnings)


def test_interface_with_several_addresses_takes_the_first(host: str) -> None:
    result = autodetect(parse_method("interface=^eth0$"), 4, netns=host)
    assert str(result.address) == "198.18.10.1/24"
    assert any("eth0 has several usable IPv4 addresses" in w for w in result.warnings)
    assert not any("unanchored" in w for w in result.warnings)


def test_skip_interface(host: str) -> None:
    result = autodetect(parse_method("skip-interface=eth1, p.*"), 4, netns=host)
    assert result.interface == "eth0"
    assert result.message.endswith("while skipping matching interfaces")
    verdicts = {v.interface: v.reason for v in result.verdicts}
    assert verdicts["eth1"] == "matches skip-interface regex 'eth1'"
    assert verdicts["p1"] == "matches skip-interface regex 'p.*'"
    assert sum("is unanchored" in w for w in result.warnings) == 2


def test_cidr_ignores_default_exclusions(host: str) -> None:
    assert str(autodetect(parse_method("cidr=198.18.10.0/24"), 4, netns=host).address) == "198.18.10.1/24"
    excluded = autodetect(parse_method("cidr=198.19.200.0/24,198.18.14.0/24"), 4, netns=host)
    assert (str(excluded.address), excluded.interface) == ("198.18.14.1/24", "veth7")
    none = autodetect(parse_method("cidr=198.19.200.0/24"), 4, netns=host)
    assert not none.ok
    assert none.message == (
        "Unable to auto-detect an IPv4 address using interface cidr ['198.19.200.0/24']: "
        "no valid IPv4 addresses found on the host interfaces"
    )
    assert {v.interface: v.reason for v in none.verdicts}["eth1"] == (
        "IPv4 addresses 198.18.12.1/24 are outside 198.19.200.0/24"
    )


def test_ipv6_skips_link_local(host: str) -> None:
    result = autodetect(parse_method(""), 6, netns=host)
    assert (str(result.address), result.interface) == ("2001:db8:10::1/64", "eth0")
    eth1 = {v.interface: v.reason for v in result.verdicts}["eth1"]
    assert eth1.startswith("only loopback/link-local/multicast IPv6 addresses: fe80::")


def test_can_reach_uses_the_kernel_route(host: str) -> None:
    result = autodetect(parse_method("can-reach=198.18.50.9"), 4, netns=host)
    assert (str(result.address), result.interface) == ("198.18.10.2/24", "eth0")
    assert (
        result.message
        == "Using autodetected IPv4 address 198.18.10.2/24, detected by connecting to 198.18.50.9"
    )
    assert result.route == RouteLookup(
        destination=ipaddress.ip_address("198.18.50.9"),
        source=ipaddress.ip_address("198.18.10.2"),
        interface="eth0",
        gateway=ipaddress.ip_address("198.18.10.254"),
    )
    v6 = autodetect(parse_method("can-reach=2001:db8:50::9"), 6, netns=host)
    assert (str(v6.address), v6.interface) == ("2001:db8:10::1/64", "eth0")


def test_can_reach_without_a_route(host: str) -> None:
    result = autodetect(parse_method("can-reach=198.18.99.1"), 4, netns=host)
    assert not result.ok
    assert result.message == (
        "Unable to auto-detect an IPv4 address by connecting to 198.18.99.1: "
        "no route to 198.18.99.1: Network is unreachable"
    )
    with pytest.raises(AutodetectError, match=r"198\.18\.50\.9 is not an IPv6 address"):
        lookup_route("198.18.50.9", 6, host)


def test_can_reach_source_not_on_a_local_interface() -> None:
    # The kernel never answers with a foreign source, but the upstream error path exists.
    eth0 = HostInterface("eth0", 2, True, (ipaddress.ip_interface("198.18.10.1/24"),))
    route = RouteLookup(
        ipaddress.ip_address("198.18.50.9"), ipaddress.ip_address("198.18.77.7"), "eth0", None
    )
    result = detect(parse_method("can-reach=198.18.50.9"), 4, [eth0], route_lookup=lambda _d, _f: route)
    assert result.message.endswith(
        "autodetected IPv4 address does not match any addresses found on local interfaces: 198.18.77.7"
    )


def test_kubernetes_internal_ip(host: str) -> None:
    method = parse_method("kubernetes-internal-ip")
    node = [
        {"type": "Hostname", "address": "n1"},
        {"type": "ExternalIP", "address": "198.18.12.1"},
        {"type": "InternalIP", "address": "198.18.10.2"},
    ]
    result = autodetect(method, 4, netns=host, node_addresses=node)
    assert (str(result.address), result.interface) == ("198.18.10.2/24", "eth0")
    missing = autodetect(
        method, 4, netns=host, node_addresses=[{"type": "InternalIP", "address": "198.18.88.8"}]
    )
    assert "InternalIP 198.18.88.8 is not on any local interface" in missing.message
    assert "no IPv6 InternalIP" in autodetect(method, 6, netns=host, node_addresses=node).message
    assert "without a Kubernetes Node object" in autodetect(method, 4, netns=host).message


def test_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(AutodetectError, match="network namespace 'cnst-h6-absent' does not exist"):
        read_interfaces("cnst-h6-absent")


@pytest.mark.parametrize(
    ("text", "kind", "args"),
    [
        ("", MethodKind.FIRST_FOUND, ()),
        ("first-found", MethodKind.FIRST_FOUND, ()),
        ("interface=eth0, ens.*", MethodKind.INTERFACE, ("eth0", "ens.*")),
        ("cidr=198.18.0.0/15,2001:db8::/32", MethodKind.CIDR, ("198.18.0.0/15", "2001:db8::/32")),
        ("can-reach=198.18.0.1", MethodKind.CAN_REACH, ("198.18.0.1",)),
        ("kubernetes-internal-ip", MethodKind.KUBERNETES_INTERNAL_IP, ()),
    ],
)
def test_parse_method(text: str, kind: MethodKind, args: tuple[str, ...]) -> None:
    method = parse_method(text)
    assert (method.kind, method.args) == (kind, args)


def test_parse_method_quirks_and_errors() -> None:
    assert parse_method("kubernetes-internal-ipv4").warnings == (
        "method 'kubernetes-internal-ipv4' is accepted as kubernetes-internal-ip; the suffix 'v4' is ignored",
    )
    with pytest.raises(
        AutodetectError, match="invalid IP autodetection method 'first_found'; expected one of"
    ):
        parse_method("first_found")
    with pytest.raises(AutodetectError, match=r"invalid interface regex 'eth\(': "):
        parse_method("interface=eth(")
    with pytest.raises(AutodetectError, match=r"invalid CIDR '10.0.0.0/33' \(expected e.g. 10.0.0.0/8\)"):
        parse_method("cidr=10.0.0.0/33")
    with pytest.raises(AutodetectError, match="interface= needs a non-empty value"):
        parse_method("interface=eth0,")
