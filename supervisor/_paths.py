"""Where a cluster keeps its files: the runtime directory (DESIGN.md).

``--run-dir``, else ``$PLAIT_RUN_DIR``, else ``$XDG_RUNTIME_DIR/plait/<name>``, else
``$TMPDIR/plait-<uid>/<name>``. The directory is created with mode 0700 and refused when
another user owns it or when group or others may enter it: it holds the bus's ``ipc://``
sockets and the CURVE keys, and whoever can reach those can call the cluster.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["KEY_FILE", "UnsafeRunDir", "resolve_run_dir", "runtime_dir"]

KEY_FILE = "bus.key"


class UnsafeRunDir(Exception):
    """The runtime directory is not private to this user."""


def resolve_run_dir(
    name: str = "default", explicit: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The runtime directory's path, by DESIGN.md's order; creates nothing."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("PLAIT_RUN_DIR"):
        return Path(env["PLAIT_RUN_DIR"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "plait" / name
    tmp = env.get("TMPDIR") or tempfile.gettempdir()
    return Path(tmp) / f"plait-{os.getuid()}" / name


def runtime_dir(name: str = "default", explicit: str | None = None) -> Path:
    """Create (0700) or check the runtime directory and return its path.

    Raises:
        UnsafeRunDir: it exists but belongs to another user or is open to others.
    """
    path = resolve_run_dir(name, explicit)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise UnsafeRunDir(f"{path} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafeRunDir(f"{path} is open to group or others (mode "
                           f"{stat.S_IMODE(info.st_mode):o}); it must be 0700")
    return path
