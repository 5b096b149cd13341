"""DatastoreConfig from Calico's environment names, overrides, and clear errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico_nodestatus.datastore.config import DatastoreConfig, DatastoreConfigError
from calico_nodestatus.datastore.embedded import EmbeddedDatastore
from calico_nodestatus.datastore.etcd import EtcdDatastore
from calico_nodestatus.datastore.factory import open_datastore


def test_defaults_to_embedded_under_xdg_data_home(tmp_path: Path) -> None:
    config = DatastoreConfig.from_env(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert config.type == "embedded"
    assert config.db_path == tmp_path / "calico-nodestatus" / "datastore.db"


def test_without_xdg_data_home_uses_local_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = DatastoreConfig.from_env(environ={})
    assert config.db_path == tmp_path / ".local" / "share" / "calico-nodestatus" / "datastore.db"


def test_reads_calicos_names(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("pem")
    config = DatastoreConfig.from_env(
        environ={
            "DATASTORE_TYPE": "etcdv3",
            "ETCD_ENDPOINTS": "https://198.18.0.10:2379, https://198.18.0.11:2379/",
            "ETCD_CA_CERT_FILE": str(tmp_path / "ca.pem"),
            "ETCD_CERT_FILE": str(tmp_path / "cert.pem"),
            "ETCD_KEY_FILE": str(tmp_path / "key.pem"),
            "CALICO_NODESTATUS_DB": str(tmp_path / "x.db"),
        }
    )
    assert config.type == "etcdv3"
    assert config.etcd_endpoints == ["https://198.18.0.10:2379", "https://198.18.0.11:2379"]
    assert config.etcd_uses_tls
    assert config.etcd_key_file == tmp_path / "key.pem"
    assert config.db_path == tmp_path / "x.db"


def test_overrides_win_over_environment_and_none_means_unset(tmp_path: Path) -> None:
    environ = {"DATASTORE_TYPE": "etcdv3", "CALICO_NODESTATUS_DB": str(tmp_path / "env.db")}
    config = DatastoreConfig.from_env(environ=environ, type="embedded", db_path=None)
    assert config.type == "embedded"
    assert config.db_path == tmp_path / "env.db"
    assert (
        DatastoreConfig.from_env(environ={}, db_path=str(tmp_path / "flag.db")).db_path
        == tmp_path / "flag.db"
    )


@pytest.mark.parametrize(
    ("environ", "setting", "expected"),
    [
        ({"DATASTORE_TYPE": "consul"}, "type (DATASTORE_TYPE) = 'consul'", "embedded, etcdv3, kubernetes"),
        (
            {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "198.18.0.10:2379"},
            "ETCD_ENDPOINTS",
            "http://host:port",
        ),
        ({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://h:notaport"}, "ETCD_ENDPOINTS", "host:port"),
        ({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": " , "}, "ETCD_ENDPOINTS", "at least one"),
        (
            {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://198.18.0.1:2379,https://198.18.0.2:2379"},
            "ETCD_ENDPOINTS",
            "same scheme",
        ),
        (
            {
                "DATASTORE_TYPE": "etcdv3",
                "ETCD_ENDPOINTS": "https://198.18.0.1:2379",
                "ETCD_CERT_FILE": "/c.pem",
            },
            "ETCD_KEY_FILE",
            "needs both",
        ),
        (
            {
                "DATASTORE_TYPE": "etcdv3",
                "ETCD_ENDPOINTS": "https://198.18.0.1:2379",
                "ETCD_CA_CERT_FILE": "/no",
            },
            "ETCD_CA_CERT_FILE",
            "a readable file",
        ),
        (
            {
                "DATASTORE_TYPE": "etcdv3",
                "ETCD_ENDPOINTS": "http://198.18.0.1:2379",
                "ETCD_CA_CERT_FILE": "/no",
            },
            "ETCD_ENDPOINTS",
            "https:// endpoints, since ETCD_CA_CERT_FILE is set",
        ),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], setting: str, expected: str) -> None:
    with pytest.raises(DatastoreConfigError) as caught:
        DatastoreConfig.from_env(environ=environ)
    assert setting in str(caught.value)
    assert expected in str(caught.value)


def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="etcd_endpoint"):
        DatastoreConfig.from_env(environ={}, etcd_endpoint="http://198.18.0.1:2379")


def test_open_datastore_picks_the_backend(tmp_path: Path) -> None:
    embedded = open_datastore(DatastoreConfig.from_env(environ={}, db_path=tmp_path / "d.db"))
    assert isinstance(embedded, EmbeddedDatastore) and embedded.path == tmp_path / "d.db"
    etcd = open_datastore(DatastoreConfig.from_env(environ={"DATASTORE_TYPE": "etcdv3"}))
    assert isinstance(etcd, EtcdDatastore) and etcd.endpoint == "http://127.0.0.1:2379"
