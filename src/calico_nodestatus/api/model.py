"""The CalicoNodeStatus resource (`projectcalico.org/v3`) as pydantic models.

Attributes are snake_case; their aliases are the exact wire names. Constructing a model validates
it with Calico's rules (names, classes, period range, peer IPs) plus "no unknown fields";
`CalicoNodeStatus.from_wire` turns a failure into a `ValidationFailure` naming the field.
`to_wire()` encodes like Calico's Go structs: `status` with `agent`/`bgp`/`routes` always present,
the four BGP counters always present, `lastUpdated` null or RFC 3339 UTC with second precision,
every other empty field omitted (an explicit `updatePeriodSeconds: 0` is kept).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    field_validator,
    model_serializer,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from calico_nodestatus.api.crd_v1 import crd_v1_to_wire, wire_to_crd_v1
from calico_nodestatus.api.enums import (
    BGPDaemonState,
    BGPPeerType,
    BGPSessionState,
    CalicoNodeRouteSourceType,
    CalicoNodeRouteType,
    NodeStatusClass,
)
from calico_nodestatus.api.fieldpath import validate_or_fail

API_GROUP: Final = "projectcalico.org"
API_VERSION: Final = "projectcalico.org/v3"
KIND: Final = "CalicoNodeStatus"
LIST_KIND: Final = "CalicoNodeStatusList"
MAX_UPDATE_PERIOD_SECONDS: Final = 86400
MAX_NAME_LENGTH: Final = 253
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
NAME_PATTERN: Final = rf"^{_LABEL}(\.{_LABEL})*$"
_NAME_RE: Final = re.compile(NAME_PATTERN)
_QUALIFIED_NAME_RE: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_NAME_REASON: Final = (
    f"name must consist of lower case alphanumeric characters, '-' or '.' (regex: {NAME_PATTERN.strip('^$')})"
)
_WIRE_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _check_resource_name(value: str) -> str:
    if not value:
        raise _fail("name", "field must be set (a lower-case DNS-1123 subdomain)")
    if len(value) > MAX_NAME_LENGTH:
        raise _fail("name", f"name is too long by {len(value) - MAX_NAME_LENGTH} bytes")
    if not _NAME_RE.match(value):
        raise _fail("name", _NAME_REASON)
    return value


def _check_node_name(value: str) -> str:
    # Calico's `name` tag on spec.node has no length limit, but the seed asks for a valid
    # Kubernetes node name, and a node name is a DNS-1123 subdomain: at most 253 characters.
    if not value:
        raise _fail("name", "field must be set (the node name, a lower-case DNS-1123 subdomain)")
    if len(value) > MAX_NAME_LENGTH:
        raise _fail("name", f"name is too long by {len(value) - MAX_NAME_LENGTH} bytes")
    if not _NAME_RE.match(value):
        raise _fail("name", _NAME_REASON)
    return value


def _check_ip(value: str) -> str:
    # Go's net.ParseIP rejects IPv6 zones, which Python's ipaddress would accept.
    try:
        if "%" in value:
            raise ValueError(value)
        ipaddress.ip_address(value)
    except ValueError:
        raise _fail("ip", "expected an IPv4 or IPv6 address") from None
    return value


def _check_update_period(value: int) -> int:
    if not 0 <= value <= MAX_UPDATE_PERIOD_SECONDS:
        raise _fail(
            "range", f"expected an integer from 0 to {MAX_UPDATE_PERIOD_SECONDS} (seconds; 0 reports once)"
        )
    return value


def _parse_time(value: object) -> datetime:
    expected = "expected an RFC 3339 time with a zone, e.g. 2021-10-18T13:22:03Z"
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _fail("time", expected) from None
    else:
        raise _fail("time", expected)
    if parsed.tzinfo is None:
        raise _fail("time", expected)
    # Kubernetes times carry whole seconds on the wire; keep the model equal to what it encodes.
    return parsed.astimezone(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    """The wire form of a Kubernetes time: RFC 3339, UTC, second precision."""
    return value.astimezone(UTC).strftime(_WIRE_TIME_FORMAT)


def _is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and len(prefix) <= MAX_NAME_LENGTH and _NAME_RE.match(prefix)):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME_RE.match(name))


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key, label_value in value.items():
        if not _is_qualified_name(key):
            raise _fail("label", f"label key {key!r} is not a qualified name ([prefix/]name, name ≤63 chars)")
        if len(label_value) > 63 or (label_value and not _QUALIFIED_NAME_RE.match(label_value)):
            raise _fail(
                "label", f"label {key!r} has an invalid value {label_value!r} (≤63 alphanumerics, '-_.')"
            )
    return value


def _check_annotations(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _is_qualified_name(key.lower()):
            raise _fail("annotation", f"annotation key {key!r} is not a qualified name ([prefix/]name)")
    size = sum(len(key.encode()) + len(item.encode()) for key, item in value.items())
    if size > MAX_ANNOTATIONS_BYTES:
        raise _fail("annotation", f"annotations are {size} bytes; at most {MAX_ANNOTATIONS_BYTES} allowed")
    return value


KubeTime = Annotated[
    datetime,
    PlainValidator(_parse_time),
    PlainSerializer(format_time, return_type=str, when_used="json-unless-none"),
]
ResourceName = Annotated[StrictStr, AfterValidator(_check_resource_name)]
NodeName = Annotated[StrictStr, AfterValidator(_check_node_name)]
IPText = Annotated[StrictStr, AfterValidator(_check_ip)]
UpdatePeriod = Annotated[StrictInt, AfterValidator(_check_update_period)]


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


# Go has no "absent" apart from the zero value: an empty string (or enum) is the same as none.
EmptyIsNone = BeforeValidator(_empty_is_none)
OptionalText = Annotated[StrictStr | None, EmptyIsNone]
OptionalIP = Annotated[IPText | None, EmptyIsNone]


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


class WireModel(BaseModel):
    """Base of every model: wire aliases, unknown fields rejected, Go's omitempty on output."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, extra="forbid", alias_generator=to_camel
    )

    # Fields encoded even when empty (Go fields without omitempty); every other empty one is omitted.
    keep_when_empty: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        keep = self._kept_keys()
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if key in keep or not _is_empty(value)}

    @classmethod
    @cache
    def _kept_keys(cls) -> frozenset[str]:
        fields = cls.model_fields
        return cls.keep_when_empty | {fields[name].alias or name for name in cls.keep_when_empty}

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict, exactly as Calico encodes this object."""
        return self.model_dump(mode="json", by_alias=True)


class ObjectMeta(WireModel):
    name: ResourceName
    uid: OptionalText = None
    resource_version: OptionalText = None
    generation: StrictInt | None = None
    creation_timestamp: KubeTime | None = None
    labels: Annotated[dict[StrictStr, StrictStr], AfterValidator(_check_labels)] = Field(default_factory=dict)
    annotations: Annotated[dict[StrictStr, StrictStr], AfterValidator(_check_annotations)] = Field(
        default_factory=dict
    )


class CalicoNodeStatusSpec(WireModel):
    node: NodeName
    classes: list[NodeStatusClass]
    update_period_seconds: UpdatePeriod

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, classes: list[NodeStatusClass]) -> list[NodeStatusClass]:
        repeated = sorted({str(c) for c in classes if classes.count(c) > 1})
        if repeated:
            raise _fail("unique", f"classes must be distinct; repeated: {', '.join(repeated)}")
        return classes


class BGPDaemonStatus(WireModel):
    state: Annotated[BGPDaemonState | None, EmptyIsNone] = None
    version: OptionalText = None
    router_id: OptionalText = Field(default=None, alias="routerID")
    last_boot_time: OptionalText = None
    last_reconfiguration_time: OptionalText = None


class CalicoNodeAgentStatus(WireModel):
    keep_when_empty = frozenset({"bird_v4", "bird_v6"})

    bird_v4: BGPDaemonStatus = Field(default_factory=BGPDaemonStatus)
    bird_v6: BGPDaemonStatus = Field(default_factory=BGPDaemonStatus)


class CalicoNodePeer(WireModel):
    peer_ip: OptionalIP = Field(default=None, alias="peerIP")
    type: Annotated[BGPPeerType | None, EmptyIsNone] = None
    state: Annotated[BGPSessionState | None, EmptyIsNone] = None
    since: OptionalText = None


class CalicoNodeBGPStatus(WireModel):
    number_established_v4: StrictInt = 0
    number_not_established_v4: StrictInt = 0
    number_established_v6: StrictInt = 0
    number_not_established_v6: StrictInt = 0
    peers_v4: list[CalicoNodePeer] = Field(default_factory=list)
    peers_v6: list[CalicoNodePeer] = Field(default_factory=list)


class CalicoNodeRouteLearnedFrom(WireModel):
    source_type: Annotated[CalicoNodeRouteSourceType | None, EmptyIsNone] = None
    peer_ip: OptionalIP = Field(default=None, alias="peerIP")

    def to_wire(self) -> dict[str, Any]:
        # By hand, like CalicoNodeRoute.to_wire.
        data: dict[str, Any] = {}
        if self.source_type:
            data["sourceType"] = self.source_type.value
        if self.peer_ip:
            data["peerIP"] = self.peer_ip
        return data


class CalicoNodeRoute(WireModel):
    keep_when_empty = frozenset({"learned_from"})

    type: Annotated[CalicoNodeRouteType | None, EmptyIsNone] = None
    destination: OptionalText = None
    gateway: OptionalText = None
    interface: OptionalText = None
    learned_from: CalicoNodeRouteLearnedFrom = Field(default_factory=CalicoNodeRouteLearnedFrom)

    def to_wire(self) -> dict[str, Any]:
        # By hand: an object holds thousands of routes, and the generic path (pydantic's dump,
        # then the omit-empty filter) cost ~12 µs a route, most of an object's encoding time
        # (bench/collect_routes.py). Same dict, same key order as the generic path (tests/api).
        data: dict[str, Any] = {}
        if self.type:
            data["type"] = self.type.value
        if self.destination:
            data["destination"] = self.destination
        if self.gateway:
            data["gateway"] = self.gateway
        if self.interface:
            data["interface"] = self.interface
        data["learnedFrom"] = self.learned_from.to_wire()
        return data


class CalicoNodeBGPRouteStatus(WireModel):
    routes_v4: list[CalicoNodeRoute] = Field(default_factory=list)
    routes_v6: list[CalicoNodeRoute] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        # By hand, route by route (CalicoNodeRoute.to_wire): through pydantic, even a
        # hand-written serializer per route left ~3 µs a route.
        data: dict[str, Any] = {}
        if self.routes_v4:
            data["routesV4"] = [route.to_wire() for route in self.routes_v4]
        if self.routes_v6:
            data["routesV6"] = [route.to_wire() for route in self.routes_v6]
        return data


class CalicoNodeStatusStatus(WireModel):
    keep_when_empty = frozenset({"last_updated", "agent", "bgp", "routes"})

    last_updated: KubeTime | None = None
    agent: CalicoNodeAgentStatus = Field(default_factory=CalicoNodeAgentStatus)
    bgp: CalicoNodeBGPStatus = Field(default_factory=CalicoNodeBGPStatus)
    routes: CalicoNodeBGPRouteStatus = Field(default_factory=CalicoNodeBGPRouteStatus)

    def to_wire(self) -> dict[str, Any]:
        # `routes` (always encoded, last) by its own fast encoder; the rest the generic way.
        data = self.model_dump(mode="json", by_alias=True, exclude={"routes"})
        data["routes"] = self.routes.to_wire()
        return data

    def is_empty(self) -> bool:
        """True when nothing has been reported (the state of a freshly created object)."""
        return self == CalicoNodeStatusStatus()


class CalicoNodeStatus(WireModel):
    keep_when_empty = frozenset({"status"})

    kind: Literal["CalicoNodeStatus"] = KIND
    api_version: Literal["projectcalico.org/v3"] = API_VERSION
    metadata: ObjectMeta
    spec: CalicoNodeStatusSpec
    status: CalicoNodeStatusStatus = Field(default_factory=CalicoNodeStatusStatus)

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_wire(self) -> dict[str, Any]:
        # `status` (always encoded, last) by its own to_wire, which holds the routes' fast path.
        data = self.model_dump(mode="json", by_alias=True, exclude={"status"})
        data["status"] = self.status.to_wire()
        return data

    @classmethod
    def from_wire(cls, data: object) -> Self:
        """Parses and validates a v3 object; raises ValidationFailure naming the first bad field."""
        return validate_or_fail(cls, data)

    def to_crd_v1(self) -> dict[str, Any]:
        """This object as a `crd.projectcalico.org/v1` custom resource (libcalico-go's storage form)."""
        return wire_to_crd_v1(self.to_wire())

    @classmethod
    def from_crd_v1(cls, data: object) -> Self:
        """Reads a `crd.projectcalico.org/v1` custom resource back into the v3 object."""
        return cls.from_wire(crd_v1_to_wire(data))
