"""Private directories for the files only the agent reads and writes (database, status file)."""

from __future__ import annotations

from pathlib import Path

PRIVATE_DIR_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """Creates ``directory`` and every missing directory above it with mode 0700.

    ``Path.mkdir(mode=..., parents=True)`` gives only the last one that mode; the ones above get
    the umask's. Existing directories are left as they are (they are not ours to change)."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile
        # mkdir's mode is masked by the umask, which may take the owner's bits too.
        path.chmod(PRIVATE_DIR_MODE)
