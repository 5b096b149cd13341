"""Which datastore to use and how to reach it, from Calico's environment names (and CLI overrides)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

from calico_nodestatus.datastore.base import DatastoreError

DatastoreType = Literal["embedded", "etcdv3", "kubernetes"]
DATASTORE_TYPES: tuple[DatastoreType, ...] = ("embedded", "etcdv3", "kubernetes")

# Setting name -> environment variable (Calico's names, plus ours for the embedded file).
ENV_NAMES = {
    "type": "DATASTORE_TYPE",
    "db_path": "CALICO_NODESTATUS_DB",
    "etcd_endpoints": "ETCD_ENDPOINTS",
    "etcd_ca_cert_file": "ETCD_CA_CERT_FILE",
    "etcd_cert_file": "ETCD_CERT_FILE",
    "etcd_key_file": "ETCD_KEY_FILE",
    "kubeconfig": "KUBECONFIG",
    "kube_api_group": "CALICO_API_GROUP",
}
DEFAULT_ETCD_ENDPOINT = "http://127.0.0.1:2379"


class DatastoreConfigError(DatastoreError, ValueError):
    """A datastore setting is missing or malformed; the message names it and what was expected."""

    def __init__(self, setting: str, value: object, expected: str) -> None:
        env = ENV_NAMES.get(setting)
        where = f"{setting} ({env})" if env else setting
        super().__init__(f"invalid datastore setting {where} = {value!r}: expected {expected}")
        self.setting = setting


def default_db_path(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_DATA_HOME/calico-nodestatus/datastore.db, XDG_DATA_HOME defaulting to ~/.local/share."""
    env = os.environ if environ is None else environ
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "calico-nodestatus" / "datastore.db"


def parse_endpoints(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Calico's ETCD_ENDPOINTS: comma-separated http(s)://host:port URLs, one scheme for all."""
    items = value.split(",") if isinstance(value, str) else list(value)
    endpoints = [item.strip().rstrip("/") for item in items if item.strip()]
    if not endpoints:
        raise DatastoreConfigError("etcd_endpoints", value, "at least one http(s)://host:port URL")
    for endpoint in endpoints:
        parts = urlsplit(endpoint)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path:
            raise DatastoreConfigError(
                "etcd_endpoints", endpoint, "a URL of the form http://host:port or https://host:port"
            )
    if len({urlsplit(endpoint).scheme for endpoint in endpoints}) > 1:
        raise DatastoreConfigError("etcd_endpoints", value, "all endpoints using the same scheme")
    return endpoints


@dataclass(frozen=True, slots=True)
class DatastoreConfig:
    type: DatastoreType = "embedded"
    db_path: Path = field(default_factory=default_db_path)
    etcd_endpoints: list[str] = field(default_factory=lambda: [DEFAULT_ETCD_ENDPOINT])
    etcd_ca_cert_file: Path | None = None
    etcd_cert_file: Path | None = None
    etcd_key_file: Path | None = None
    kubeconfig: Path | None = None
    # `crd.projectcalico.org/v1` or `projectcalico.org/v3`; None: decided by API discovery.
    kube_api_group: str | None = None

    def __post_init__(self) -> None:
        if self.type not in DATASTORE_TYPES:
            raise DatastoreConfigError("type", self.type, "one of " + ", ".join(DATASTORE_TYPES))
        if self.type == "etcdv3":
            self._check_etcd()

    @property
    def etcd_uses_tls(self) -> bool:
        return urlsplit(self.etcd_endpoints[0]).scheme == "https"

    def _check_etcd(self) -> None:
        parse_endpoints(self.etcd_endpoints)
        if (self.etcd_cert_file is None) != (self.etcd_key_file is None):
            missing = "etcd_key_file" if self.etcd_key_file is None else "etcd_cert_file"
            raise DatastoreConfigError(missing, None, "a file path: a client certificate needs both")
        tls_files = {
            "etcd_ca_cert_file": self.etcd_ca_cert_file,
            "etcd_cert_file": self.etcd_cert_file,
            "etcd_key_file": self.etcd_key_file,
        }
        for setting, path in tls_files.items():
            if path is None:
                continue
            if not self.etcd_uses_tls:
                raise DatastoreConfigError(
                    "etcd_endpoints",
                    ",".join(self.etcd_endpoints),
                    f"https:// endpoints, since {ENV_NAMES[setting]} is set",
                )
            if not path.is_file():
                raise DatastoreConfigError(setting, str(path), "a readable file")

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **overrides: object) -> DatastoreConfig:
        """Settings from the environment (Calico's names), then `overrides` (None means unset)."""
        env = os.environ if environ is None else environ
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown datastore settings: {', '.join(sorted(unknown))}")
        raw: dict[str, object] = {
            name: env[var] for name, var in ENV_NAMES.items() if env.get(var, "").strip()
        }
        raw |= {name: value for name, value in overrides.items() if value is not None}
        kwargs: dict[str, object] = {}
        for name, value in raw.items():
            if name == "type":
                kwargs[name] = str(value).strip().lower()
            elif name == "etcd_endpoints":
                kwargs[name] = parse_endpoints(cast("str | list[str]", value))
            elif name == "kube_api_group":
                kwargs[name] = str(value).strip()
            elif name == "kubeconfig":
                # KUBECONFIG may list several files; the first one is used, as kubectl merges from it.
                kwargs[name] = Path(str(value).split(os.pathsep)[0]).expanduser()
            else:
                kwargs[name] = Path(str(value)).expanduser()
        if "db_path" not in kwargs:
            kwargs["db_path"] = default_db_path(env)
        return cls(**kwargs)  # type: ignore[arg-type]
