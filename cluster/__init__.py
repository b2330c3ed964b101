"""plait.cluster: what every Plait process runs.

Deferreds and failures, interfaces, the reactors and their transports, time and
tasks, threads, child processes, endpoints, the RPC bus and test helpers. The
public modules (``defer``, ``failure``, ``task``, ``interfaces``, ...) re-export
from private implementation modules, as trio does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["react"]


def __getattr__(name: str) -> Any:
    # ``plait.cluster.react`` (DESIGN) without importing the reactor with the package.
    if name == "react":
        from plait.cluster._react import react

        return react
    raise AttributeError(f"module 'plait.cluster' has no attribute {name!r}")
