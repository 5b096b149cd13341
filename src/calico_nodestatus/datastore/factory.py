"""Opens the backend a DatastoreConfig selects. Backends are imported on demand, so a command
only loads the client libraries (grpc, lightkube) of the datastore it uses."""

from __future__ import annotations

from calico_nodestatus.datastore.base import Datastore
from calico_nodestatus.datastore.config import DatastoreConfig


def open_datastore(config: DatastoreConfig) -> Datastore:
    """The backend `config` selects; nothing is connected until the first call."""
    if config.type == "etcdv3":
        from calico_nodestatus.datastore.etcd import EtcdDatastore

        return EtcdDatastore(config)
    if config.type == "kubernetes":
        from calico_nodestatus.datastore.kubernetes import KubernetesDatastore

        return KubernetesDatastore(config)
    from calico_nodestatus.datastore.embedded import EmbeddedDatastore

    return EmbeddedDatastore(config.db_path)
