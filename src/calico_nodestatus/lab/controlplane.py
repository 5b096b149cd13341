"""A private Kubernetes control plane on loopback: etcd and kube-apiserver, for the Kubernetes
datastore's tests, its demo and its benchmarks.

Both are the programs `scripts/build_control_plane.py` builds from the Go module in tools/k8s
(one pinned Kubernetes release and the etcd it requires) into vendor-k8s/bin, or the folder named
by ``CALICO_NODESTATUS_K8S_BIN_DIR``. The set-up follows controller-runtime's envtest:

- etcd serves TLS with client certificates; kube-apiserver talks to it as a client;
- kube-apiserver serves TLS on 127.0.0.1, authenticates clients by certificate (an admin in
  ``system:masters``) and by service-account token, authorises with RBAC only, and signs tokens
  with its own key (the TokenRequest API works; ``ServiceAccount`` admission is off, as there is
  no controller manager to make the tokens it would wait for);
- the Service range is a /24 of the lab's 198.18.0.0/15 that nothing routes;
- every request is recorded in an audit log (``audit_events()``), so tests can derive the RBAC a
  client needs from the requests it really sent.

Everything lives in one work directory: certificates, data, logs and ``controlplane.json`` (pids
and ports), so another process (``make demo-down``) can stop a control plane it did not start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from calico_nodestatus.lab.model import LabError
from calico_nodestatus.lab.pki import CertificateAuthority, signing_key
from calico_nodestatus.lab.system import process_alive, process_cmdline, terminate

BIN_DIR_ENV = "CALICO_NODESTATUS_K8S_BIN_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"
SERVICE_RANGE = "198.19.255.0/24"
ADMIN_USER = "calico-nodestatus-admin"
START_TIMEOUT_SECONDS = 90.0
STATE_FILE = "controlplane.json"
AUDIT_LOG = "audit.log"
# Who did what to which resource, with the answer: enough to derive RBAC, nothing of the bodies.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


@dataclass(frozen=True, slots=True)
class ControlPlaneBinaries:
    etcd: Path
    kube_apiserver: Path
    kubectl: Path

    @classmethod
    def find(cls) -> ControlPlaneBinaries:
        configured = os.environ.get(BIN_DIR_ENV)
        directory = Path(configured) if configured else _REPO_ROOT / "vendor-k8s" / "bin"
        found = cls(directory / "etcd", directory / "kube-apiserver", directory / "kubectl")
        for path in (found.etcd, found.kube_apiserver, found.kubectl):
            if not os.access(path, os.X_OK):
                raise LabError(
                    f"{path} is not an executable file: `make control-plane` builds kube-apiserver, "
                    f"kubectl and etcd into vendor-k8s/bin (or set {BIN_DIR_ENV})"
                )
        return found


@dataclass(slots=True)
class _State:
    etcd_pid: int = 0
    apiserver_pid: int = 0
    etcd_port: int = 0
    etcd_peer_port: int = 0
    apiserver_port: int = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def kubeconfig_document(server: str, ca_file: Path, user: dict[str, str], name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it dies (even by SIGKILL),
    so a killed test run leaves no servers behind."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class ControlPlane:
    """etcd + kube-apiserver in ``workdir``; ``start()``/``stop()``, or reattach with ``open()``."""

    def __init__(
        self, workdir: Path, binaries: ControlPlaneBinaries | None = None, *, owned: bool = False
    ) -> None:
        """``owned``: the servers die with this process (a test run), instead of outliving it
        until ``stop()`` (the demo)."""
        self.workdir = workdir
        self.binaries = binaries or ControlPlaneBinaries.find()
        self._owned = owned
        self._state = _State()

    # ---- where things are ---------------------------------------------------------------------

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.pem"

    @property
    def admin_kubeconfig(self) -> Path:
        """Full rights (``system:masters``), by client certificate."""
        return self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self._state.apiserver_port}"

    @property
    def etcd_endpoint(self) -> str:
        return f"https://{LOOPBACK}:{self._state.etcd_port}"

    @property
    def etcd_client(self) -> tuple[Path, Path]:
        """(certificate, key) of etcd's client (kube-apiserver's identity there)."""
        return self.pki / "etcd-client.pem", self.pki / "etcd-client-key.pem"

    @property
    def apiserver_pid(self) -> int:
        return self._state.apiserver_pid

    @property
    def etcd_pid(self) -> int:
        return self._state.etcd_pid

    # ---- life cycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, workdir: Path) -> ControlPlane:
        """The control plane a previous ``start()`` left in ``workdir`` (running or not)."""
        plane = cls(workdir)
        try:
            plane._state = _State(**json.loads((workdir / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise LabError(f"no control plane recorded in {workdir}: {exc}") from exc
        return plane

    def start(self) -> None:
        """Certificates, etcd, kube-apiserver; returns once ``/readyz`` answers ok."""
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._make_pki()
        self._state = _State(etcd_port=free_port(), etcd_peer_port=free_port(), apiserver_port=free_port())
        try:
            self._start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        self._write_admin_kubeconfig()

    def stop(self) -> None:
        """Stops both servers (tolerates either being gone already); data stays in ``workdir``."""
        self.stop_apiserver()
        if self._ours(self._state.etcd_pid, self.binaries.etcd):
            terminate([self._state.etcd_pid], grace=10.0)
        self._state.etcd_pid = 0
        self._save()

    def stop_apiserver(self) -> None:
        if self._ours(self._state.apiserver_pid, self.binaries.kube_apiserver):
            terminate([self._state.apiserver_pid], grace=15.0)
        self._state.apiserver_pid = 0
        self._save()

    def start_apiserver(self) -> None:
        """kube-apiserver on its port (kept across restarts), waiting for ``/readyz``."""
        pid = self._spawn(self._apiserver_argv(), "kube-apiserver.log")
        self._state.apiserver_pid = pid
        self._save()
        self._wait("kube-apiserver", pid, "kube-apiserver.log", lambda: self._get("/readyz") == "ok")

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    @staticmethod
    def _ours(pid: int, binary: Path) -> bool:
        return bool(pid) and process_alive(pid) and str(binary) in process_cmdline(pid)[:1]

    def running(self) -> bool:
        return self._ours(self._state.apiserver_pid, self.binaries.kube_apiserver) and self._ours(
            self._state.etcd_pid, self.binaries.etcd
        )

    # ---- using it -----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl (the one built with the apiserver) against this control plane."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise LabError(
                f"kubectl {' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}"
            )
        return result

    def apply(self, documents: str | Path) -> None:
        """``kubectl apply`` of a manifest file or YAML text, with the admin's rights."""
        if isinstance(documents, Path):
            self.kubectl("apply", "-f", str(documents))
        else:
            self.kubectl("apply", "-f", "-", stdin=documents)

    def wait_established(self, crd_names: Sequence[str], timeout_seconds: int = 60) -> None:
        self.kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={timeout_seconds}s",
            *(f"crd/{name}" for name in crd_names),
        )

    def install_nodestatus(self, deploy: Path, *, native_v3_crd: str | None = None) -> None:
        """What an operator applies from deploy/: the namespace, the CRD (and, for v3 mode, the
        native `projectcalico.org/v3` CRD given as YAML), the RBAC and the agent's admission policy."""
        self.apply(deploy / "namespace.yaml")
        self.apply(deploy / "crd.yaml")
        names = ["caliconodestatuses.crd.projectcalico.org"]
        if native_v3_crd is not None:
            self.apply(native_v3_crd)
            names.append("caliconodestatuses.projectcalico.org")
        self.wait_established(names)
        self.apply(deploy / "rbac.yaml")
        self.apply(deploy / "agent-admission-policy.yaml")

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, duration: str = "24h"
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` with a token from
        the TokenRequest API (``kubectl create token``), so RBAC applies as on a cluster."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        user = {"token": token}
        _write_private(path, yaml.safe_dump(kubeconfig_document(self.server, self.ca_file, user, name)))
        return path

    # ---- internals ----------------------------------------------------------------------------

    def audit_events(self, user: str | None = None) -> list[dict[str, Any]]:
        """The audit log's events so far (of `user` only, when given), oldest first."""
        try:
            lines = (self.workdir / AUDIT_LOG).read_text().splitlines()
        except FileNotFoundError:
            return []
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if user is None or (e.get("user") or {}).get("username") == user]

    def _make_pki(self) -> None:
        ca = CertificateAuthority(self.pki)
        ca.server("apiserver")
        ca.server("etcd")
        ca.client("etcd-client", "kube-apiserver")
        ca.client("admin", ADMIN_USER, ("system:masters",))
        signing_key(self.pki / "service-accounts-key.pem", self.pki / "service-accounts.pem")
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

    def _write_admin_kubeconfig(self) -> None:
        user = {
            "client-certificate": str(self.pki / "admin.pem"),
            "client-key": str(self.pki / "admin-key.pem"),
        }
        document = kubeconfig_document(self.server, self.ca_file, user, "admin")
        _write_private(self.admin_kubeconfig, yaml.safe_dump(document))

    def _save(self) -> None:
        if self.workdir.is_dir():
            (self.workdir / STATE_FILE).write_text(json.dumps(asdict(self._state)))

    def _spawn(self, argv: list[str], log_name: str) -> int:
        with (self.workdir / log_name).open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_terminate_with_parent if self._owned else None,  # noqa: PLW1509
            )
        return process.pid

    def _wait(self, what: str, pid: int, log_name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                if ready():
                    return
            if not process_alive(pid) or time.monotonic() > deadline:
                tail = (self.workdir / log_name).read_text(errors="replace")[-3000:]
                raise LabError(f"{what} did not become ready (log {self.workdir / log_name}):\n{tail}")
            time.sleep(0.1)

    def _start_etcd(self) -> None:
        peer = f"http://{LOOPBACK}:{self._state.etcd_peer_port}"
        argv = [
            str(self.binaries.etcd),
            "--name=controlplane",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_endpoint}",
            f"--advertise-client-urls={self.etcd_endpoint}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=controlplane={peer}",
            f"--cert-file={self.pki / 'etcd.pem'}",
            f"--key-file={self.pki / 'etcd-key.pem'}",
            f"--trusted-ca-file={self.ca_file}",
            "--client-cert-auth",
            "--log-level=warn",
            # The agent's tests compact etcd themselves (watch expiry); nothing else should.
            "--auto-compaction-retention=0",
        ]
        self._state.etcd_pid = pid = self._spawn(argv, "etcd.log")
        self._save()
        self._wait("etcd", pid, "etcd.log", lambda: '"true"' in self._etcd_get("/health"))

    def _apiserver_argv(self) -> list[str]:
        cert, key = self.etcd_client
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_endpoint}",
            f"--etcd-cafile={self.ca_file}",
            f"--etcd-certfile={cert}",
            f"--etcd-keyfile={key}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self._state.apiserver_port}",
            # A loopback advertise address cannot be published as the `kubernetes` Service's endpoint.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={self.pki / 'apiserver.pem'}",
            f"--tls-private-key-file={self.pki / 'apiserver-key.pem'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki / 'service-accounts.pem'}",
            f"--service-account-signing-key-file={self.pki / 'service-accounts-key.pem'}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--disable-admission-plugins=ServiceAccount",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            # The apiserver compacts etcd every 5 minutes by default; tests compact when they mean to.
            "--etcd-compaction-interval=0",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.workdir / AUDIT_LOG}",
        ]

    def _tls(self, client: tuple[Path, Path]) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(client[0]), str(client[1]))
        return context

    def _get(self, path: str) -> str:
        context = self._tls((self.pki / "admin.pem", self.pki / "admin-key.pem"))
        try:
            with urllib.request.urlopen(f"{self.server}{path}", timeout=2, context=context) as reply:  # noqa: S310
                return str(reply.read().decode())
        except urllib.error.HTTPError:
            return ""

    def _etcd_get(self, path: str) -> str:
        with urllib.request.urlopen(  # noqa: S310 - our own https loopback endpoint
            f"{self.etcd_endpoint}{path}", timeout=2, context=self._tls(self.etcd_client)
        ) as reply:
            return str(reply.read().decode())

    def compact_etcd(self) -> int:
        """Compacts etcd up to its current revision (through its JSON gateway); returns it."""
        context = self._tls(self.etcd_client)
        request = urllib.request.Request(  # noqa: S310
            f"{self.etcd_endpoint}/v3/kv/range", data=json.dumps({"key": "AA==", "limit": 1}).encode()
        )
        with urllib.request.urlopen(request, timeout=5, context=context) as reply:  # noqa: S310
            revision = int(json.loads(reply.read())["header"]["revision"])
        body = json.dumps({"revision": str(revision), "physical": True}).encode()
        request = urllib.request.Request(f"{self.etcd_endpoint}/v3/kv/compaction", data=body)  # noqa: S310
        with urllib.request.urlopen(request, timeout=30, context=context):  # noqa: S310
            pass
        return revision
