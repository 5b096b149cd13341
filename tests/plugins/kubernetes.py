"""pytest plumbing for a real Kubernetes cluster, used only when KUBECONFIG points at one.

- ``kubernetes_unavailable_reason()``: None when a cluster answers at KUBECONFIG, else why not.
- ``kubernetes_unavailable`` (session): that answer, asked once per run; backends parametrised
  over ``kubernetes`` skip with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def kubernetes_unavailable_reason() -> str | None:
    """None when a cluster answers at KUBECONFIG, else why the kubernetes backend is skipped."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        return "KUBECONFIG does not point at a cluster's kubeconfig"
    try:
        from lightkube import Client
        from lightkube.resources.core_v1 import Namespace

        next(iter(Client(timeout=3).list(Namespace, chunk_size=1)), None)
    except Exception as error:  # whatever stops this request also leaves no usable cluster
        return f"no reachable cluster at KUBECONFIG: {error}"
    return None


@pytest.fixture(scope="session")
def kubernetes_unavailable() -> str | None:
    """Why no Kubernetes cluster can be used (None: KUBECONFIG reaches one); checked once."""
    return kubernetes_unavailable_reason()
