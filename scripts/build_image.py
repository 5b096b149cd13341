"""Builds the agent's container image (`make image`): the Containerfile with Debian's buildah.

No container registry is assumed, so the base image is made here: `debootstrap` of the Debian
release this machine runs, from the mirror its apt uses, with python3 and python3-venv, committed
as `localhost/calico-nodestatus-base:<release>`. The project and its pinned dependencies
(requirements/constraints.txt) are gathered as wheels into build/image/wheels on this side, so
the image build runs offline (`buildah build --isolation chroot`, as root).

Both steps are skipped when current: the base when an image with its recipe exists, the agent's
image when one carries the hash of its inputs (Containerfile, pyproject.toml, constraints,
src/, the base's id) as a label. `--print-image` prints the image's name and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NAME = "calico-nodestatus"
BASE_PACKAGES = ("python3", "python3-venv")
INPUTS_LABEL = "io.calico-nodestatus.inputs"
RECIPE_LABEL = "io.calico-nodestatus.base-recipe"
WHEELS = REPO / "build" / "image" / "wheels"
FALLBACK_MIRROR = "http://deb.debian.org/debian"


def say(message: str) -> None:
    print(f">> {message}", flush=True)


def image_name() -> str:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return f"{NAME}:{version}"


def debian_release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    sys.exit("error: /etc/os-release names no VERSION_CODENAME: debootstrap needs a Debian release")


def apt_mirror(release: str) -> str:
    """The mirror apt uses for `release` itself (not its -security or -updates suites)."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            if release in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                words = [w for w in words if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == release:
                    return words[1]
    return FALLBACK_MIRROR


def buildah(*args: str, capture: bool = True) -> str:
    result = subprocess.run(["buildah", *args], capture_output=capture, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or "").strip() if capture else "(output above)"
        sys.exit(f"error: buildah {' '.join(args)} failed (exit {result.returncode}): {detail}")
    return result.stdout.strip() if capture else ""


def inspect_image(image: str) -> dict[str, Any] | None:
    """`buildah inspect` of the image, or None when there is no such image."""
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, text=True, check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def image_labels(image: str) -> dict[str, str] | None:
    """The image's labels, or None when there is no such image."""
    found = inspect_image(image)
    return None if found is None else (found["OCIv1"]["config"].get("Labels") or {})


def ensure_base(release: str) -> str:
    """The base image's name, made with debootstrap unless one of the same recipe exists."""
    base = f"localhost/{NAME}-base:{release}"
    mirror = apt_mirror(release)
    recipe = f"debootstrap minbase {release} {mirror} +{','.join(BASE_PACKAGES)}"
    labels = image_labels(base)
    if labels is not None and labels.get(RECIPE_LABEL) == recipe:
        return base
    say(f"base image {base}: {recipe} (about a minute or two)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nodestatus-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log = WHEELS.parent / "debootstrap.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            made = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", release,
                 str(rootfs), mirror],
                stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if made.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            sys.exit(f"error: debootstrap failed (exit {made.returncode}), the end of {log}:\n{tail}")
        # What apt fetched to build the tree has no use in the image.
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        container = buildah("from", "scratch")
        try:
            mountpoint = buildah("mount", container)
            # tar keeps ownership, modes and device nodes as debootstrap made them.
            pack = subprocess.Popen(["tar", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-C", mountpoint, "-xpf", "-"], stdin=pack.stdout, check=True)
            if pack.wait() != 0:
                sys.exit(f"error: packing {rootfs} failed")
            buildah("umount", container)
            buildah("config", "--label", f"{RECIPE_LABEL}={recipe}", "--cmd", "/bin/sh", container)
            buildah("commit", "--quiet", "--rm", container, base)
        except BaseException:
            subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
            raise
    say(f"base image {base} made in {time.monotonic() - started:.0f} s")
    return base


def inputs_digest(base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    files = [REPO / "Containerfile", REPO / "pyproject.toml", REPO / "requirements" / "constraints.txt"]
    files += sorted(
        path
        for path in (REPO / "src").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)
    )
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def gather_wheels() -> None:
    """The project's wheel and its dependencies' at the pinned versions (reused across builds)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    for old in WHEELS.glob(f"{NAME.replace('-', '_')}-*.whl"):
        old.unlink()
    say(f"wheels into {WHEELS.relative_to(REPO)}")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--constraint",
         str(REPO / "requirements" / "constraints.txt"), "--find-links", str(WHEELS),
         "--wheel-dir", str(WHEELS), str(REPO)],
        # The build backend comes at the pinned version too (its isolated install reads this).
        check=True, env={**os.environ, "PIP_CONSTRAINT": str(REPO / "requirements" / "constraints.txt")},
    )  # fmt: skip


def build(image: str) -> None:
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed (make system-deps)")
    base = ensure_base(debian_release())
    digest = inputs_digest(str((inspect_image(base) or {})["FromImageID"]))
    labels = image_labels(image)
    if labels is not None and labels.get(INPUTS_LABEL) == digest:
        say(f"image {image} is current")
        return
    started = time.monotonic()
    replaced = (inspect_image(image) or {}).get("FromImageID")
    gather_wheels()
    say(f"buildah build {image}")
    buildah(
        "build", "--isolation", "chroot", "--layers", "--quiet",
        "--build-arg", f"BASE={base}", "--label", f"{INPUTS_LABEL}={digest}",
        "--file", str(REPO / "Containerfile"), "--tag", image, str(REPO),
        capture=False,
    )  # fmt: skip
    if replaced and replaced != (inspect_image(image) or {}).get("FromImageID"):
        subprocess.run(["buildah", "rmi", replaced], capture_output=True, check=False)  # now untagged
    say(f"image {image} built in {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--print-image", action="store_true", help="print the image's name and exit")
    args = parser.parse_args()
    if args.print_image:
        print(image_name())
        return
    build(image_name())


if __name__ == "__main__":
    main()
