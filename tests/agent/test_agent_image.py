"""The agent as deploy/daemonset.yaml runs it: from the image `make image` builds, on the lab's
real BIRD, against the real kube-apiserver as the DaemonSet's ServiceAccount.

The "pod" is the image's root filesystem (a buildah container, mounted) entered with chroot in a
private mount namespace, set up the way the kubelet sets up the DaemonSet's pod: the root file
system read-only, the node's BIRD sockets at `/var/run/calico` (read-only), a memory-backed
`/run/calico-nodestatus`, the ServiceAccount token, CA and namespace at the in-cluster path with
`KUBERNETES_SERVICE_HOST`/`PORT`, and the container's command, environment and probes read from
the manifest. The host network is the pod's (`hostNetwork: true`)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_nodestatus.lab.controlplane import ControlPlane, free_port
from tests.agent.conftest import wait_for
from tests.plugins.image import image_environment, image_rootfs
from tests.plugins.kubernetes import AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT, DEPLOY, clean_kubernetes

# The first test to use the image may build it cold (debootstrap, wheels, image: ~3 min here).
pytestmark = [pytest.mark.lab, pytest.mark.kubernetes, pytest.mark.slow, pytest.mark.timeout(1800)]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RESOURCE = "caliconodestatuses.crd.projectcalico.org"
STOP_WITHIN_SECONDS = 10  # the manifest's terminationGracePeriodSeconds
# In a private mount namespace: the image's root read-only, then the pod's mounts, then the agent.
# This side's tools by absolute path: the environment is the pod's (the image's PATH).
POD_SETUP = r"""
set -eu
mount={mount} chroot={chroot} root=$1
$mount --bind "$root" "$root"
$mount -o remount,bind,ro "$root"
$mount -t proc proc "$2"
$mount --bind "$3" "$4"
$mount -o remount,bind,ro "$4"
$mount -t tmpfs -o size=1m,mode=0755 tmpfs "$5"
$mount --bind "$6" "$7"
$mount -o remount,bind,ro "$7"
shift 7
exec $chroot "$root" "$@"
"""


def host_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (util-linux)"
    return path


def agent_container() -> dict[str, Any]:
    daemonset = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    return dict(container)


def in_root(root: Path, path: str) -> Path:
    """Where `path` of the container is on this side, following the image's symlinks (its
    /var/run is a link to /run, which must not resolve to this machine's /run)."""
    current = root
    for part in Path(path).relative_to("/").parts:
        candidate = current / part
        hops = 0
        while candidate.is_symlink():
            hops += 1
            assert hops < 10, f"symlink loop at {candidate}"
            target = Path(candidate.readlink())
            candidate = root / target.relative_to("/") if target.is_absolute() else candidate.parent / target
        current = candidate
    return current


def pod_environment(image: str, container: dict[str, Any], node: str, plane: ControlPlane) -> dict[str, str]:
    """The container's environment as the kubelet gives it: the image's own, the manifest's env
    with its field references resolved, and the in-cluster API address."""
    fields = {"spec.nodeName": node, "metadata.namespace": AGENT_NAMESPACE}
    env = {"HOME": "/root", **image_environment(image)}
    for item in container["env"]:
        value = item.get("value")
        env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]] if value is None else value
    host, port = plane.server.removeprefix("https://").rsplit(":", 1)
    return env | {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


def with_metrics_port(command: list[str], port: int) -> list[str]:
    """The manifest's command with a free metrics port: the node's network is shared here."""
    prefix = "--metrics-port="
    assert any(arg.startswith(prefix) for arg in command), command
    return [f"{prefix}{port}" if arg.startswith(prefix) else arg for arg in command]


@contextmanager
def pod(
    image: str, root: Path, node: Any, plane: ControlPlane, secrets: Path, log: Path, metrics_port: int
) -> Iterator[subprocess.Popen[bytes]]:
    container = agent_container()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    targets = [in_root(root, "/proc"), in_root(root, mounts["var-run-calico"])]
    targets += [in_root(root, mounts["run-nodestatus"]), in_root(root, SERVICE_ACCOUNT_DIR)]
    for target in targets:  # mount points, as the runtime makes them
        target.mkdir(parents=True, exist_ok=True)
    proc, sockets, status_dir, service_account = targets
    argv = [
        host_tool("unshare"), "--mount", "--propagation", "private", host_tool("sh"), "-c",
        POD_SETUP.format(mount=host_tool("mount"), chroot=host_tool("chroot")), "pod",
        str(root), str(proc), str(node.directory), str(sockets), str(status_dir),
        str(secrets), str(service_account),
        *with_metrics_port(container["command"], metrics_port),
    ]  # fmt: skip
    env = pod_environment(image, container, node.name, plane)
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_WITHIN_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def probe(process: subprocess.Popen[bytes], command: list[str], env: dict[str, str]) -> int:
    """A probe's command in the pod (its mount namespace and root), as the kubelet's exec runs it."""
    argv = [host_tool("nsenter"), f"--target={process.pid}", "--mount", "--root", "--wd=/", *command]
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def mounts() -> str:
    return Path("/proc/self/mounts").read_text()


def service_account_files(plane: ControlPlane, directory: Path) -> Path:
    """What the kubelet projects into the pod for its ServiceAccount."""
    directory.mkdir(mode=0o700)
    token = plane.kubectl("create", "token", AGENT_SERVICE_ACCOUNT, "-n", AGENT_NAMESPACE).stdout.strip()
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(plane.ca_file.read_bytes())
    (directory / "namespace").write_text(AGENT_NAMESPACE)
    return directory


async def test_the_image_runs_the_daemonset_agent_and_fills_the_status(
    agent_lab: Any, control_plane: ControlPlane, agent_image: str, tmp_path: Path
) -> None:
    container = agent_container()
    assert container["image"] == agent_image, "deploy/daemonset.yaml names an image make image does not build"
    node = agent_lab.nodes[0]
    others = [n for n in agent_lab.nodes if n.name != node.name]
    secrets = service_account_files(control_plane, tmp_path / "serviceaccount")
    log = tmp_path / "agent.log"
    metrics_port = free_port()
    control_plane.apply(
        "apiVersion: crd.projectcalico.org/v1\nkind: CalicoNodeStatus\nmetadata: {name: from-image}\n"
        f"spec: {{node: {node.name}, classes: [Agent, BGP, Routes], updatePeriodSeconds: 2}}\n"
    )
    try:
        with (
            image_rootfs(agent_image) as root,
            pod(agent_image, root, node, control_plane, secrets, log, metrics_port) as process,
        ):

            def stored() -> dict[str, Any]:
                return json.loads(control_plane.kubectl("get", RESOURCE, "from-image", "-o", "json").stdout)

            async def filled() -> dict[str, Any] | None:
                assert process.poll() is None, f"the agent exited:\n{log.read_text(errors='replace')}"
                status = stored().get("status") or {}
                established = (status.get("bgp") or {}).get("numberEstablishedV4") == len(others)
                return status if status.get("lastUpdated") and established else None

            status = await wait_for(
                filled, 60, "the status filled by the agent from the image", explain=log.read_text
            )
            assert status["agent"]["birdV4"]["state"] == "Ready"
            assert status["agent"]["birdV6"]["state"] == "Ready"
            assert status["bgp"]["numberEstablishedV6"] == len(others)
            assert {p["peerIP"] for p in status["bgp"]["peersV4"]} == {str(n.ipv4) for n in others}
            destinations = {r["destination"] for r in status["routes"]["routesV4"]}
            assert {str(n.state.block_v4) for n in others} <= destinations

            env = pod_environment(agent_image, container, node.name, control_plane)
            for name in ("readinessProbe", "livenessProbe"):
                command = container[name]["exec"]["command"]
                assert probe(process, command, env) == 0, f"{name} {command} failed in the pod"
            assert "calico_nodestatus_" in scrape(metrics_port)
            process.send_signal(signal.SIGTERM)
            assert process.wait(STOP_WITHIN_SECONDS) == 0, log.read_text(errors="replace")
            # The pod's mounts lived in its own mount namespace: none of them shows on this side.
            assert f"{root}/" not in mounts()
    finally:
        clean_kubernetes(control_plane)
