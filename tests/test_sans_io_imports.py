"""The sans-IO rule: protocol cores import only the stdlib and sibling cores.

Every module under ``protocols/*/`` whose name starts with one underscore is a core
(STYLE.md). A core may import the standard library, except the modules that do I/O,
tell time or run threads, and its sibling ``_`` modules; never ``zmq``, never
``plait.cluster``. Rules that live only in a README decay, so this test walks the
AST of every core.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PROTOCOLS = Path(__file__).resolve().parent.parent / "protocols"

FORBIDDEN_STDLIB = frozenset(
    {
        "socket",
        "selectors",
        "select",
        "time",
        "threading",
        "_thread",
        "asyncio",
        "ssl",
        "multiprocessing",
        "subprocess",
        "concurrent",
    }
)


def core_modules() -> list[Path]:
    return sorted(
        path
        for path in PROTOCOLS.glob("*/_*.py")
        if not path.name.startswith("__")
    )


def violations(source: str, filename: str = "<core>") -> list[str]:
    """Return a description of every import ``source`` may not make."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            targets = [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: only `from ._sibling import x` or `from . import _sibling`.
                if node.level != 1:
                    found.append(f"line {node.lineno}: import from a parent package")
                elif node.module is None:
                    found.extend(
                        f"line {node.lineno}: from . import {alias.name}"
                        for alias in node.names
                        if not alias.name.startswith("_")
                    )
                elif not node.module.startswith("_"):
                    found.append(f"line {node.lineno}: from .{node.module} (not a core)")
                continue
            targets = [(node.module or "", 0)]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            found.append(f"line {node.lineno}: __import__()")
            continue
        else:
            continue
        for name, _ in targets:
            top = name.partition(".")[0]
            if top == "__future__":
                continue
            if top not in sys.stdlib_module_names:
                found.append(f"line {node.lineno}: {name} is not in the standard library")
            elif top in FORBIDDEN_STDLIB or top == "importlib":
                found.append(f"line {node.lineno}: {name} does I/O, time or threads")
    return found


def test_the_cores_are_found() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in core_modules()}
    assert {"framing/_lines.py", "http/_connection.py", "http/_readers.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_core_imports_only_the_stdlib_and_sibling_cores(path: Path) -> None:
    assert violations(path.read_text(), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import time",
        "from threading import Lock",
        "import asyncio.events",
        "import ssl",
        "from selectors import DefaultSelector",
        "import zmq",
        "from plait.cluster import reactor",
        "import plait.cluster.reactor",
        "from plait.cluster.interfaces import ITransport",
        "from .protocol import LineProtocol",
        "from .. import http",
        "from . import protocol",
        "__import__('socket')",
        "import importlib",
    ],
)
def test_the_checker_catches_a_forbidden_import(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import struct",
        "from dataclasses import dataclass",
        "from ._errors import RemoteProtocolError",
        "from . import _state",
        "import enum, http",
    ],
)
def test_the_checker_allows_the_stdlib_and_siblings(source: str) -> None:
    assert violations(source) == []
