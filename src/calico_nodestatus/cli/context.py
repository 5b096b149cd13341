"""Settings the global options hand to every command."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CliContext:
    datastore_type: str
    db_path: str | None
    etcd_endpoints: str | None
    etcd_ca_cert_file: str | None
    etcd_cert_file: str | None
    etcd_key_file: str | None
    kubeconfig: str | None
