"""One async datastore interface (base.py) and its backends: embedded (SQLite), etcdv3, kubernetes.

Backends are imported on demand by `open_datastore`, so importing this package stays cheap.
"""

from calico_nodestatus.datastore.base import (
    AlreadyExists,
    Conflict,
    Datastore,
    DatastoreError,
    EventType,
    InvalidResourceVersion,
    LivenessRecord,
    NotFound,
    Unavailable,
    WatchEvent,
    WatchExpired,
)
from calico_nodestatus.datastore.config import DatastoreConfig, DatastoreConfigError
from calico_nodestatus.datastore.factory import open_datastore

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Datastore",
    "DatastoreConfig",
    "DatastoreConfigError",
    "DatastoreError",
    "EventType",
    "InvalidResourceVersion",
    "LivenessRecord",
    "NotFound",
    "Unavailable",
    "WatchEvent",
    "WatchExpired",
    "open_datastore",
]
